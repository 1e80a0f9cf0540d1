"""DirectMailbox hardening (issue 13 part 3): a peer that connects and never finishes its
handshake is dropped after HANDSHAKE_TIMEOUT and counted; TCP connections have keepalive on."""
from __future__ import annotations

import socket
import time

import pytest

from transport import direct
from transport.direct import DirectMailbox


def test_a_half_open_handshake_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "HANDSHAKE_TIMEOUT", 0.3)
    with DirectMailbox("tcp://127.0.0.1:0") as mb:
        host, port = mb.address[6:].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"\xff" + b"\x00" * 8)       # a greeting's first bytes, then silence
            deadline = time.monotonic() + 5
            while mb.counters.get("handshake_timeout", 0) == 0:
                assert time.monotonic() < deadline, "the stalled handshake was never dropped"
                mb.recv(0.1)
            s.settimeout(5)
            data = b""
            try:
                while True:                          # the mailbox closed its side
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except ConnectionResetError:
                pass
        assert mb.counters["handshake_timeout"] == 1


def test_tcp_connections_have_keepalive() -> None:
    with DirectMailbox("tcp://127.0.0.1:0") as srv:
        host, port = srv.address[6:].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as s:
            deadline = time.monotonic() + 5
            while not srv._conns:                    # accepted on the next poll
                assert time.monotonic() < deadline
                srv.recv(0.05)
            conn = next(iter(srv._conns.values()))
            assert conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 10
            s.close()
