"""A peer process for the transport tests: ``python -m tests.transport.peer MODE ENDPOINT``.

Prints its bound address on the first stdout line, then serves until told to stop.
Modes: ``echo`` (a mailbox answering test requests).
"""
from __future__ import annotations

import sys
from typing import Any

from transport import Mailbox


def serve_echo(endpoint: str) -> None:
    mb = Mailbox(endpoint, max_frame_bytes=int(sys.argv[3]) if len(sys.argv) > 3 else 64 << 20)
    print(mb.address, flush=True)
    deferred: list[Any] = []
    while True:
        env = mb.recv(None)
        assert env is not None
        p = env.payload
        if env.kind == "cast":
            if type(p) is tuple and p[0] == "cast_back":
                mb.cast(p[1], p[2])
            elif type(p) is tuple and p[0] == "release":
                for frm in deferred:
                    mb.reply(frm, ("deferred", p[1]))
                deferred.clear()
            continue
        if p == "stop":
            mb.reply(env.frm, "bye")
            mb.close()
            return
        if p == "counters":
            mb.reply(env.frm, mb.counters)
        elif type(p) is tuple and p[0] == "defer":
            deferred.append(env.frm)  # answered when a ("release", x) cast arrives
        elif type(p) is tuple and p[0] == "call":
            mb.reply(env.frm, ("relayed", mb.call(p[1], p[2], timeout=5)))
        elif type(p) is tuple and p[0] == "from":
            mb.reply(env.frm, env.frm)
        else:
            mb.reply(env.frm, ("echo", p))


if __name__ == "__main__":
    mode, endpoint = sys.argv[1], sys.argv[2]
    {"echo": serve_echo}[mode](endpoint)
