"""Imports fine; building the machine raises."""


class Machine:
    def __init__(self) -> None:
        raise ValueError("cannot build this machine")

    def init(self, config):
        return 0

    def apply(self, meta, command, state):
        return state, state
