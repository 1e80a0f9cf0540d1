"""Mirrors ra_log_wal.erl and ra_log_segment_writer.erl (their client side): the node's
write-ahead log process and segment writer, and the segment files they produce
(:mod:`wal.segment`, :mod:`wal.segments`, read back by ``ra.log``). Message protocol: see
:mod:`wal.wal`; the messages themselves and their validators: :mod:`wal.messages`.

This package imports nothing of ``ra`` (storage runs one way: ``ra.log`` uses ``wal``). The
processes take their config as data (:mod:`wal.config`: ``run(WalConfig)``, or the same as a
command line, ``python -m wal.wal --help``); ra maps its node configuration onto it and places
the processes in its tree (``ra.node.sup.wal_child_specs``).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from raerror import RaError
from wal.messages import SegOverview, WalFence, WalForgetWriter, WalOverview, WalRollOver

__all__ = ["overview", "force_roll_over", "forget_writer", "fence", "segment_writer_overview"]

_log = logging.getLogger("wal")


def overview(mailbox: Any, wal_endpoint: str, timeout: float = 5.0) -> dict[str, Any]:
    """The WAL's counters and error state (a call to the WAL process)."""
    return mailbox.call(wal_endpoint, WalOverview(), timeout)  # type: ignore[no-any-return]


def force_roll_over(mailbox: Any, wal_endpoint: str, timeout: float = 5.0) -> Any:
    """Close the current WAL file now (its entries then go to segments)."""
    return mailbox.call(wal_endpoint, WalRollOver(), timeout)


def forget_writer(mailbox: Any, wal_endpoint: str, uid: str, timeout: float = 5.0) -> Any:
    """Tell the WAL a server is gone for good."""
    return mailbox.call(wal_endpoint, WalForgetWriter(uid), timeout)


def fence(mailbox: Any, wal_endpoint: str, uid: str, seq: int, timeout: float = 30.0) -> None:
    """The ``WalFence`` call a writer process makes before it reads its log from disk (the
    ``fence`` of ``ra.log.DiskLog``): once it returns, nothing an earlier process of ``uid``
    sent is ever written. Retried while the WAL does not answer (it may be restarting); raises
    ``RuntimeError`` if it has not answered ``"ok"`` within ``timeout`` seconds."""
    start = time.monotonic()
    deadline = start + timeout
    warned = False
    while True:
        try:
            reply: Any = mailbox.call(wal_endpoint, WalFence(uid, seq), min(2.0, timeout))
        except RaError as exc:          # not delivered, or no answer: ask again
            reply = exc
        if reply == "ok":
            if warned:
                _log.warning("the WAL answered %s's WalFence after %.1f s", uid,
                             time.monotonic() - start)
            return
        if not warned and time.monotonic() - start > 5.0:
            warned = True
            _log.warning("%s waits for the WAL at %s (WalFence, up to %.0f s; last: %r)", uid,
                         wal_endpoint, timeout, reply)
        if time.monotonic() > deadline:
            raise RuntimeError(f"the WAL at {wal_endpoint} did not answer WalFence for {uid!r} "
                               f"within {timeout:.0f} s (last: {reply!r}); is it running?")
        time.sleep(0.05)


def segment_writer_overview(mailbox: Any, endpoint: str, timeout: float = 5.0) -> Any:
    """The segment writer's counters: files flushed, nudges, messages dropped by reason."""
    return mailbox.call(endpoint, SegOverview(), timeout)
