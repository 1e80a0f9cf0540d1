"""No ra equivalent (Jepsen's test runner): one end-to-end check of a real cluster.

:func:`run_check` does, in order:

1. start ``nodes`` node daemons with data directories under ``out_dir/data`` (in network
   namespaces when the ``partition`` nemesis is asked for and can run here; otherwise on
   loopback, and ``partition`` is skipped with its one-line reason in ``stats["skipped"]``);
2. start a cluster of the workload's machine (:mod:`ra.check.machines`) on them and wait for a
   leader;
3. run ``clients`` client threads and ``processes`` client OS processes
   (:mod:`ra.check.workloads`) for ``duration`` seconds while the nemesis schedule
   (:mod:`ra.check.nemesis`) injects and heals faults every ``interval`` seconds;
4. stop the clients, heal every fault, wait until the cluster has a leader that every member
   follows and every member has applied the leader's commit index (``stats["recovered_s"]``);
5. for ``set`` and ``counter``, the final read (a read command, retried until it answers);
6. stop everything; write ``history.jsonl`` (every client's history merged) and
   ``result.json`` into ``out_dir``; check the history with :func:`ra.check.checkers.check`.

Whatever happens (an error, ``KeyboardInterrupt``), every client is stopped, every fault healed,
every process of every node tree killed and every namespace deleted before it returns or
raises. A problem before the clients start (nodes, namespaces, cluster) raises
:class:`SetupError`.
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter as _Tally
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import psutil

import ra
from ra.check import checkers, netns
from ra.check import history as hist
from ra.check.machines import MACHINES
from ra.check.nemesis import NEMESES, PARTITION_MODES, Context, Schedule, make
from ra.check.nodes import NodeSet
from ra.check.workloads import READ_MODES, ClientSpec, client_argv, final_read, run_client

__all__ = ["AUTO_RATES", "Options", "Result", "SetupError", "run_check"]

_log = logging.getLogger("ra.check")

#: operations per second per client when ``rate="auto"``: the register's checker (a
#: linearizability search) is the costly one, so its clients are paced; the others run flat out
AUTO_RATES: dict[str, float | None] = {"register": 20.0, "set": None, "counter": None}
_HEALTHY_WAIT_S = 60.0
_FINAL_READ_S = 30.0


class SetupError(Exception):
    """The check could not be set up (namespaces, node daemons, the cluster)."""


@dataclass
class Result:
    """One run: the checker's ``verdict`` (``.valid`` True / False / None = unknown,
    ``.counterexample``, ``.details``), where the history and result were written, and
    ``stats``: ``ops`` (completions by type, and by function), ``faults`` (injected count),
    ``nemesis_log``, ``errors`` (client errors by class), ``skipped`` (nemesis -> reason),
    ``recovered_s`` (``None``: not within 60 s, and ``unhealthy`` says why), ``final_read``,
    ``elapsed_s``, ``seed``, ``leaked``."""

    workload: str
    verdict: Any
    out_dir: str
    history_path: str
    result_path: str
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool | None:
        return self.verdict.valid


@dataclass
class _Run:
    """The live parts of a run, so that cleanup finds whatever was started."""

    net: netns.Netns | None = None
    nodes: NodeSet | None = None
    client: ra.Client | None = None
    schedule: Schedule | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    """One run's parameters (see :func:`run_check`); :meth:`check` raises ``ValueError``."""

    workload: str
    nodes: int = 3
    clients: int = 5
    processes: int = 2
    duration: float = 30.0
    nemesis: tuple[str, ...] = ()
    interval: float = 3.0
    reads: str = "consistent"
    seed: int = 0
    keys: int = 5
    op_timeout: float = 2.0
    rate: float | None = None
    partition_mode: str = "mixed"

    def check(self) -> None:
        if self.workload not in MACHINES:
            raise ValueError(f"unknown workload {self.workload!r}; known: {', '.join(MACHINES)}")
        if self.nodes not in (3, 5):
            raise ValueError(f"nodes must be 3 or 5, not {self.nodes}")
        if self.clients < 0 or self.processes < 0 or self.clients + self.processes == 0:
            raise ValueError("need at least one client (thread or process)")
        if self.duration <= 0 or self.interval <= 0 or self.op_timeout <= 0 or self.keys < 1:
            raise ValueError("duration, interval, op_timeout and keys must be > 0")
        for n in self.nemesis:
            if n not in NEMESES:
                raise ValueError(f"unknown nemesis {n!r}; known: {', '.join(NEMESES)}")
        if self.reads not in READ_MODES:
            raise ValueError(f"reads must be one of {', '.join(READ_MODES)}, not {self.reads!r}")
        if self.partition_mode not in PARTITION_MODES:
            raise ValueError(f"partition_mode must be one of {', '.join(PARTITION_MODES)}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be > 0, None or 'auto', not {self.rate!r}")


def run_check(workload: str, nodes: int = 3, clients: int = 5, processes: int = 2,
              duration: float = 30.0, nemesis: list[str] | tuple[str, ...] = (),
              interval: float = 3.0, reads: str = "consistent", out_dir: str | None = None,
              seed: int | None = None, keys: int = 5, op_timeout: float = 2.0,
              rate: float | None | str = "auto", partition_mode: str = "mixed",
              keep_data: bool = False) -> Result:
    """Run one check (see the module docstring) and return its :class:`Result`.

    ``clients`` client threads and ``processes`` client OS processes; ``rate`` operations per
    second per client (``None``: back to back; ``"auto"``: :data:`AUTO_RATES`); ``keys`` the
    register's key count; ``op_timeout`` each operation's timeout; ``partition_mode`` one of
    ``"isolate-leader"``, ``"halves"``, ``"mixed"``. ``out_dir`` defaults to a new temporary
    directory; the node data directories in it are deleted at the end unless ``keep_data``.
    Raises ``ValueError`` for bad arguments and :class:`SetupError` when the namespaces, the
    nodes or the cluster cannot be started.
    """
    if rate == "auto":
        rate = AUTO_RATES.get(workload)
    if isinstance(rate, str):
        raise ValueError(f"rate must be > 0, None or 'auto', not {rate!r}")  # noqa: TRY004 - a bad value
    opts = Options(workload, nodes, clients, processes, duration,
                   tuple(dict.fromkeys(nemesis)), interval, reads,
                   random.randrange(1 << 30) if seed is None else seed, keys, op_timeout, rate,
                   partition_mode)
    opts.check()
    out_dir = os.path.abspath(out_dir or tempfile.mkdtemp(prefix=f"ra-check-{workload}-"))
    os.makedirs(out_dir, exist_ok=True)
    skipped: dict[str, str] = {}
    if "partition" in opts.nemesis:
        reason = netns.unavailable()
        if reason is not None:
            skipped["partition"] = reason
            opts = replace(opts, nemesis=tuple(n for n in opts.nemesis if n != "partition"))
    started = time.monotonic()
    run = _Run()
    stats: dict[str, Any] = {"seed": opts.seed, "skipped": skipped,
                             "nemesis": list(opts.nemesis), "options": asdict(opts)}
    try:
        ops = _run(run, opts, out_dir, stats)
    finally:
        stats["leaked"] = _cleanup(run)
        if not keep_data:
            shutil.rmtree(os.path.join(out_dir, "data"), ignore_errors=True)
    stats["elapsed_s"] = round(time.monotonic() - started, 2)
    return _finish(workload, ops, out_dir, stats)


def _run(run: _Run, o: Options, out_dir: str, stats: dict[str, Any]) -> list[hist.Op]:
    """Steps 1-5 of the module docstring; returns the merged history."""
    name = f"check_{o.workload}"
    endpoint, ids = _setup(run, o.nodes, name, o.workload, out_dir, "partition" in o.nemesis)
    t0 = time.time()
    base = ClientSpec(o.workload, tuple((s.name, s.node) for s in ids), 0,
                      o.clients + o.processes, t0, t0 + o.duration, o.seed, o.reads, o.keys,
                      o.op_timeout, o.rate, endpoint)
    history = hist.History(clock=time.time, t0=t0)
    errors: _Tally[str] = _Tally()
    _start_clients(run, base, o.clients, o.processes, history, errors, out_dir)
    assert run.nodes is not None and run.client is not None
    ctx = Context(run.nodes, name, ra.Client(endpoint), random.Random(o.seed), run.net,
                  o.partition_mode)
    try:
        run.schedule = Schedule([make(w, ctx) for w in o.nemesis], o.interval,
                                random.Random(o.seed + 1), t0)
        run.schedule.start()
        run.stop.wait(o.duration)
        run.schedule.stop()            # no fault after the load; everything healed
        _stop_clients(run, o.op_timeout)
    finally:
        ctx.client.close()
    stats["faults"] = run.schedule.faults()
    stats["nemesis_log"] = [asdict(e) for e in run.schedule.log]
    if run.schedule.error is not None:
        stats["nemesis_error"] = f"{type(run.schedule.error).__name__}: {run.schedule.error}"
    ops = _collect(history, run, errors, out_dir, o.processes)
    stats["errors"] = dict(errors)
    _wait_healthy(run.client, ids, stats)
    if o.workload in ("set", "counter"):
        final = hist.History(clock=time.time, t0=t0)
        process = max((op.process for op in ops), default=0) + 1
        stats["final_read"] = final_read(replace(base, worker=process), final, process,
                                         time.monotonic() + _FINAL_READ_S)
        ops = hist.merge([ops, final.ops])
    return ops


def _setup(run: _Run, n: int, name: str, workload: str, out_dir: str,
           namespaces: bool) -> tuple[str | None, list[ra.ServerId]]:
    """Namespaces (if asked), node daemons, client, cluster with a leader. Returns the
    client endpoint and the member ids. Raises :class:`SetupError`."""
    try:
        if namespaces:
            run.net = netns.Netns(n)
            run.net.setup()
        hosts = [run.net.host(i) for i in range(n)] if run.net else None
        run.nodes = NodeSet(os.path.join(out_dir, "data"), n, hosts,
                            run.net.exec_prefix if run.net else None, log_dir=out_dir)
        addrs = run.nodes.start_all()
        endpoint = f"tcp://{run.net.bridge_ip}:0" if run.net else None
        run.client = ra.Client(endpoint)
        ids = [ra.ServerId(name, a) for a in addrs]
        run.client.start_cluster(name, MACHINES[workload], ids, timeout=15)
        run.client.members(ids, timeout=15)
    except (ra.RaError, RuntimeError, OSError, TimeoutError) as e:
        raise SetupError(f"{type(e).__name__}: {e}") from e
    return endpoint, ids


def _start_clients(run: _Run, base: ClientSpec, clients: int, processes: int,
                   history: hist.History, errors: _Tally[str], out_dir: str) -> None:
    """Client threads ``0..clients-1`` (into ``history``), then client processes (each into
    ``out_dir/client-<w>.jsonl``, stdin as its stop signal and lifeline)."""
    lock = threading.Lock()

    def thread_main(spec: ClientSpec) -> None:
        tally = run_client(spec, history, run.stop)
        with lock:
            errors.update(tally)

    for w in range(clients):
        t = threading.Thread(target=thread_main, args=(replace(base, worker=w),),
                             name=f"client-{w}", daemon=True)
        run.threads.append(t)
        t.start()
    for w in range(clients, clients + processes):
        path = os.path.join(out_dir, f"client-{w}.jsonl")
        run.procs.append(subprocess.Popen(client_argv(replace(base, worker=w), path),
                                          stdin=subprocess.PIPE))


def _stop_clients(run: _Run, op_timeout: float) -> None:
    """Tell every client to stop and wait for it (an operation in flight ends within its
    timeout); a client still running after that is killed (its history is then lost)."""
    run.stop.set()
    for p in run.procs:
        if p.stdin is not None and not p.stdin.closed:
            p.stdin.close()
    deadline = time.monotonic() + 2 * op_timeout + 10
    for t in run.threads:
        t.join(max(0.0, deadline - time.monotonic()))
    for p in run.procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _collect(history: hist.History, run: _Run, errors: _Tally[str], out_dir: str,
             processes: int) -> list[hist.Op]:
    """Merge the threads' history with each client process's saved one."""
    lists = [list(history.ops)]
    for w in range(len(run.threads), len(run.threads) + processes):
        path = os.path.join(out_dir, f"client-{w}.jsonl")
        if os.path.exists(path):
            lists.append(hist.load(path))
            with open(path + ".stats.json") as fh:
                errors.update(json.load(fh)["errors"])
    return hist.merge(lists)


def _wait_healthy(client: ra.Client | None, ids: list[ra.ServerId],
                  stats: dict[str, Any]) -> None:
    """Wait until one leader is followed by every member and every member has applied the
    leader's commit index; ``stats["recovered_s"]`` is how long that took, ``None`` if it did
    not happen within 60 s (``stats["unhealthy"]`` then says what was last seen)."""
    assert client is not None
    start = time.monotonic()
    stats["recovered_s"] = None
    while time.monotonic() - start < _HEALTHY_WAIT_S:
        why = _unhealthy(client, ids)
        if why is None:
            stats["recovered_s"] = round(time.monotonic() - start, 2)
            stats.pop("unhealthy", None)
            return
        stats["unhealthy"] = why
        time.sleep(0.05)


def _unhealthy(client: ra.Client, ids: list[ra.ServerId]) -> str | None:
    """What keeps the cluster from being healthy right now, or ``None`` if it is."""
    rows = []
    for sid in ids:
        try:
            row = client.overview(sid.node, timeout=2.0)["servers"].get(sid.name) or {}
        except ra.RaError as e:
            return f"{sid.node}: {type(e).__name__}: {e}"
        if "role" not in row:
            return f"{sid.node}: server not running ({row.get('error', row)})"
        rows.append(row)
    summary = "; ".join(f"{r['id'].node} {r['role']} term {r['current_term']} leader "
                        f"{r['leader_id'].node if r['leader_id'] else None} commit "
                        f"{r['commit_index']} applied {r['last_applied']}" for r in rows)
    leaders = {r["leader_id"] for r in rows}
    lead = [r for r in rows if r["role"] == "leader"]
    if len(leaders) != 1 or len(lead) != 1 or lead[0]["id"] not in leaders:
        return f"no leader followed by all: {summary}"
    if any(r["last_applied"] < lead[0]["commit_index"] for r in rows):
        return f"not caught up: {summary}"
    return None


def _cleanup(run: _Run) -> dict[str, list[str]]:
    """Stop clients, heal, kill every node tree, delete namespaces; returns what is left
    (``{"processes": [...], "namespaces": [...]}``, both empty when nothing leaked)."""
    run.stop.set()
    for p in run.procs:
        if p.poll() is None:
            p.kill()
        p.wait()
    if run.schedule is not None:
        try:
            run.schedule.stop()
        except Exception as e:   # the nodes are killed next anyway
            _log.warning("heal during cleanup failed: %s", e)
    if run.client is not None:
        run.client.close()
    procs: list[str] = []
    if run.nodes is not None:
        run.nodes.close()
        procs = [f"{p.pid} {p.name()}" for p in run.nodes.leftovers()]
    procs += [str(p.pid) for p in run.procs if psutil.pid_exists(p.pid) and p.poll() is None]
    spaces: list[str] = []
    if run.net is not None:
        run.net.close()
        spaces = netns.leftovers(run.net.prefix)
    return {"processes": procs, "namespaces": spaces}


def _finish(workload: str, ops: list[hist.Op], out_dir: str, stats: dict[str, Any]) -> Result:
    """Save the history, run the checker, write ``result.json``."""
    history_path = os.path.join(out_dir, "history.jsonl")
    hist.save(ops, history_path)
    stats["ops"] = _tally(ops)
    verdict = checkers.check(workload, ops)
    result_path = os.path.join(out_dir, "result.json")
    with open(result_path, "w") as fh:
        json.dump({"workload": workload, "valid": verdict.valid,
                   "counterexample": verdict.counterexample, "details": verdict.details,
                   "history": history_path, "stats": stats}, fh, indent=2, default=str)
    return Result(workload, verdict, out_dir, history_path, result_path, stats)


def _tally(ops: list[hist.Op]) -> dict[str, Any]:
    by_type = _Tally(op.type for op in ops if op.type != "invoke")
    by_f = _Tally(f"{op.f}:{op.type}" for op in ops if op.type != "invoke")
    return {"ok": by_type["ok"], "fail": by_type["fail"], "info": by_type["info"],
            "by_f": dict(sorted(by_f.items()))}
