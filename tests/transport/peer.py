"""A peer process for the transport tests: ``python -m tests.transport.peer MODE ENDPOINT [k=v]``.

Prints its bound address on the first stdout line, then serves until told to stop.
Modes: ``echo`` (a mailbox answering test requests; ``name=N node=ADDR`` registers it with a
daemon first, ``max=BYTES`` sets its frame limit, ``kind=direct`` makes it a
:class:`~transport.direct.DirectMailbox`) and ``daemon`` (a node daemon stand-in: a
mailbox serving the name registry and the failure detector's heartbeats).
"""
from __future__ import annotations

import sys
import time
from typing import Any

from transport import Mailbox
from transport.direct import DirectMailbox
from transport.failure_detector import FailureDetector
from transport.registry import RegistryServer, register


def serve_echo(endpoint: str, opts: dict[str, str]) -> None:
    kind = DirectMailbox if opts.get("kind") == "direct" else Mailbox
    mb: Any = kind(endpoint, max_frame_bytes=int(opts.get("max", 64 << 20)))
    if "name" in opts:
        assert register(mb, opts["name"], opts["node"]) == "ok"
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
        elif type(p) is tuple and p[0] == "sleep":
            time.sleep(p[1])      # a busy server: answers after p[1] seconds
            mb.reply(env.frm, ("slept", p[2]))
        elif type(p) is tuple and p[0] == "from":
            mb.reply(env.frm, env.frm)
        else:
            mb.reply(env.frm, ("echo", p))


def serve_daemon(endpoint: str, opts: dict[str, str]) -> None:
    """Node daemon stand-in: registry + failure detector (``self=NODE watch=N1,N2``)."""
    mb = Mailbox(endpoint)
    reg = RegistryServer()
    self_node = opts.get("self", mb.address[len("tcp://"):])
    watch = [n for n in opts.get("watch", "").split(",") if n]
    fd = FailureDetector(mb, self_node, watch, interval=float(opts.get("interval", 0.05)),
                         down_after=float(opts.get("down_after", 0.3)))
    print(mb.address, flush=True)
    while True:
        fd.tick()
        wait = max(0.0, fd.next_deadline() - time.monotonic())
        env = mb.recv(wait)
        if env is None:
            continue
        if reg.handle(mb, env) or fd.handle(env):
            continue
        if env.kind == "call":
            mb.reply(env.frm, ("daemon", env.payload))


if __name__ == "__main__":
    mode, endpoint = sys.argv[1], sys.argv[2]
    options = dict(a.split("=", 1) for a in sys.argv[3:])
    {"echo": serve_echo, "daemon": serve_daemon}[mode](endpoint, options)
