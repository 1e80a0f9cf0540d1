"""No ra equivalent: the tiny child program of bench/runtime.py (stdlib imports only, so a
child that has to import it pays next to nothing, as a preloaded ra server would)."""
from __future__ import annotations

import os
import signal
import socket

__all__ = ["ready_child"]


def ready_child(path: str) -> int:
    """Send our pid to the datagram socket at ``path``, then idle until killed."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(str(os.getpid()).encode(), path)
    s.close()
    while True:
        signal.pause()
