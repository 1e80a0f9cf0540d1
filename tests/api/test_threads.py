"""Module functions from many threads at once (issue 12): each thread gets its own default
client, so calls neither steal each other's replies nor interleave session numbers; every
command is applied exactly once; a finished thread's client is closed."""
from __future__ import annotations

import gc
import logging
import threading

import psutil

import ra
from tests.api.conftest import leader_of

THREADS = 32
PER_THREAD = 20


def test_module_functions_from_32_threads(cluster, caplog):
    ids = cluster
    leader_of(ids)
    ra.process_command(ids, 0)           # this thread's client exists before the baseline
    me = psutil.Process()
    fds0 = me.num_fds()
    errors: list[BaseException] = []
    replies: list[int] = []
    lock = threading.Lock()
    clients: set[int] = set()
    start = threading.Barrier(THREADS)

    def worker() -> None:
        try:
            start.wait(10)
            with lock:
                clients.add(id(ra.default_client()))
            for _ in range(PER_THREAD):
                reply, _leader = ra.process_command(ids, 1, timeout=20)
                with lock:
                    replies.append(reply)
            ra.local_query(ids[0], "ra.testing.machines:get_state", timeout=10)
        except BaseException as e:   # reported below, with the thread's error
            errors.append(e)

    caplog.set_level(logging.WARNING, logger="transport")
    ts = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not [t for t in ts if t.is_alive()], "a thread hung"
    assert errors == []
    assert len(clients) == THREADS                     # one client per thread
    # exactly once: the counter's replies are the totals 1..N, each seen once
    n = THREADS * PER_THREAD
    assert sorted(replies) == list(range(1, n + 1))
    assert ra.consistent_query(ids, "ra.testing.machines:get_state")[0] == n
    assert not [r for r in caplog.records if "stale_reply" in r.getMessage()]
    # the threads' clients went with their threads: their sockets are closed
    del ts
    gc.collect()
    assert me.num_fds() <= fds0 + 2
