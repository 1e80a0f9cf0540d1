"""wal.idle_poll: the PM QoS request the WAL holds while it writes (the node key
``idle_poll_ms``): what it writes and when, that the kernel does stop halting idle CPUs while it
is held, that a WAL process holds and drops it, and that a node not allowed to make it says so
at its start."""
from __future__ import annotations

import glob
import os
import struct
import time
from typing import Any

import pytest

import ra
from ra.errors import InvalidConfig
from ra.log import DiskLog
from ra.node import system
from tests.wal.procs import Procs, wait_for, wait_written, wal_overview
from transport import Mailbox
from wal import idle_poll
from wal.idle_poll import IdlePoll

POLL, FREE = 0, 2_000_000_000
CAN_REQUEST = os.access(idle_poll.DEVICE, os.W_OK)


def _values(path: str) -> list[int]:
    data = open(path, "rb").read()
    return [v for (v,) in struct.iter_unpack("=i", data)]


def test_holds_from_a_batch_until_hold_s_after_the_last(tmp_path: Any) -> None:
    # a plain file stands in for the device: it records every value written, in order
    dev = str(tmp_path / "dev")
    open(dev, "wb").close()
    p = IdlePoll(0.05, dev)
    assert _values(dev) == [FREE] and not p.held
    assert p.sleep(100.0, 0.2) == 0.2                  # nothing held: the loop's own wait
    p.busy(100.0)
    assert _values(dev) == [FREE, POLL] and p.held and p.holds == 1
    p.busy(100.03)                                     # a burst: one write, not one per batch
    assert _values(dev) == [FREE, POLL]
    assert p.sleep(100.04, 0.2) == pytest.approx(0.04)  # woken in time to drop it
    assert p.sleep(100.04, 0.01) == 0.01
    assert _values(dev) == [FREE, POLL]
    assert p.sleep(100.08, 0.2) == 0.2                 # hold_s after the last batch: dropped
    assert _values(dev) == [FREE, POLL, FREE] and not p.held
    p.busy(101.0)                                      # the next burst holds again
    assert _values(dev) == [FREE, POLL, FREE, POLL] and p.holds == 2
    p.close()
    p.close()                                          # idempotent
    assert not p.held


def test_refused_when_the_device_cannot_be_opened(tmp_path: Any) -> None:
    with pytest.raises(OSError):
        IdlePoll(0.01, str(tmp_path / "no-such-device"))
    with pytest.raises(ValueError):
        IdlePoll(0, str(tmp_path / "no-such-device"))


def _halts() -> int:
    """Entries into every idle state but the polling one, summed over the CPUs."""
    n = 0
    for d in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpuidle/state[0-9]*"):
        if open(os.path.join(d, "name")).read().strip() != "POLL":
            n += int(open(os.path.join(d, "usage")).read())
    return n


@pytest.mark.skipif(not CAN_REQUEST or not glob.glob("/sys/devices/system/cpu/cpu0/cpuidle"),
                    reason="needs a writable /dev/cpu_dma_latency and cpuidle (root on Linux)")
def test_the_kernel_stops_halting_idle_cpus_while_it_is_held() -> None:
    def halts_during(seconds: float) -> int:
        a = _halts()
        time.sleep(seconds)        # idle on purpose: what the CPUs do when nothing runs
        return _halts() - a

    free = halts_during(0.3)
    p = IdlePoll(10.0)
    try:
        p.busy(time.monotonic())
        held = halts_during(0.3)
    finally:
        p.close()
    again = halts_during(0.3)
    assert free + again > 0, "idle CPUs never halted: nothing to compare with"
    assert held * 10 <= free + again, (held, free, again)


@pytest.mark.skipif(not CAN_REQUEST, reason="needs a writable /dev/cpu_dma_latency (root)")
def test_a_wal_process_holds_it_while_it_writes(tmp_path: Any, procs: Procs) -> None:
    tmp = str(tmp_path)
    _, data, ep = procs.spawn_wal(tmp, "--idle-poll-ms", "50")
    mb = Mailbox(None)
    try:
        ov = wait_for(lambda: wal_overview(mb, ep), 20, "WAL ready")
        assert ov["idle_poll_holds"] == 0 and not ov["idle_poll_held"]
        lg = DiskLog("u1", data, send=lambda m: mb.cast(ep, m))
        for i in (1, 2, 3):
            lg.append((i, 1, "a"))
            lg.flush()
            wait_written(mb, lg, i, 10, "confirmation")
        ov = wal_overview(mb, ep)
        assert ov["idle_poll_holds"] == 1                      # three batches, one burst
        wait_for(lambda: not wal_overview(mb, ep)["idle_poll_held"], 10,
                 "the request dropped 50 ms after the last batch")
        lg.append((4, 1, "a"))
        lg.flush()
        wait_written(mb, lg, 4, 10, "confirmation")
        assert wal_overview(mb, ep)["idle_poll_holds"] == 2
        lg.close()
    finally:
        mb.close()


def test_without_it_the_wal_reports_no_request(tmp_path: Any, procs: Procs) -> None:
    tmp = str(tmp_path)
    _, data, ep = procs.spawn_wal(tmp)
    mb = Mailbox(None)
    try:
        assert wait_for(lambda: wal_overview(mb, ep), 20, "WAL ready")["idle_poll_holds"] is None
    finally:
        mb.close()


def test_a_node_that_may_not_make_the_request_says_so(tmp_path: Any,
                                                      monkeypatch: Any) -> None:
    system.check_idle_poll(0)                          # off: nothing to check
    monkeypatch.setattr(idle_poll, "DEVICE", str(tmp_path / "no-such-device"))
    with pytest.raises(InvalidConfig) as e:
        system.check_idle_poll(5)
    assert e.value.key == "idle_poll_ms" and "udev" in str(e.value)
    with pytest.raises(InvalidConfig) as e:            # before any daemon is started
        ra.start(data_dir=str(tmp_path / "n"), idle_poll_ms=5)
    assert e.value.key == "idle_poll_ms"
    with pytest.raises(InvalidConfig) as e:
        ra.start(data_dir=str(tmp_path / "n"), idle_poll_ms=-1)
    assert e.value.key == "idle_poll_ms"
