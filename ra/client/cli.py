"""No ra equivalent (rabbitmqctl-like tooling around ra): the ``ra`` command.

``ra node start --data-dir DIR --listen HOST:PORT [--advertise HOST:PORT] [--daemon] [--log-level L] [--log-file F]``
    Run a node daemon in the foreground (logs to stderr unless ``--log-file``; SIGTERM or ^C
    stops it in order), or with ``--daemon`` detached in its own session (logs to
    ``DIR/node.log``, or ``--log-file``): the command prints the address once the daemon is
    ready and exits 0.
``ra node stop ADDR``
    Ask the daemon at ``ADDR`` (``host:port``) to shut down and wait until it no longer answers.
``ra node status ADDR [--json]``
    The daemon's overview: address, pid, data directory, uptime, fork server, supervision tree.
``ra overview ADDR [--json]``
    Every ra server on the node at ``ADDR``: cluster, role, term, indexes, leader (ra:overview).
``ra members NAME@ADDR [--json]``
    The members of the cluster that server ``NAME`` on node ``ADDR`` belongs to, and its leader.
``ra check [--workload register|set|counter|all] [--nodes 3] [--clients 5] [--processes 2]
[--time 30] [--nemesis kill-node,kill-leader,kill-wal,pause,partition] [--interval 3]
[--reads consistent|command|local] [--out DIR] [--seed N]``
    A Jepsen-style check (:mod:`ra.check.runner`): nodes, a cluster, concurrent clients, faults,
    a recorded history and the checker's verdict, per workload. Exit 0 valid, 1 invalid,
    2 unknown, 3 the check could not be set up.

Errors: one line on stderr, ``ra: error: <what went wrong and what to do>``, never a traceback
(``RA_DEBUG=1`` in the environment shows it for an unexpected error). Exit codes (other
commands): 0 success, 1 the node cannot be reached or refused the request, 2 bad input or a
refused start (a bad address or ``--data-dir``, the data directory locked by another daemon:
the message says by whom), 70 an unexpected error (a bug: please report it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from ra.check import cli as check_cli
from ra.node.system import NODE
from ra.errors import AlreadyStarted, InvalidConfig, NodeDown, NoProc, OutcomeUnknown, RaError

__all__ = ["main", "format_status", "format_overview"]


def format_status(st: dict[str, Any]) -> str:
    """Render a node status dict as a readable table."""
    lines = [
        f"node            {st['node']}",
        f"pid             {st['pid']}",
        f"data_dir        {st['data_dir']}",
        f"uptime          {st['uptime_s']:.1f} s",
        f"fork server     {st.get('forkserver_pid')}",
        "watched nodes   " + (", ".join(f"{n} {s}" for n, s in sorted(st.get("nodes", {}).items()))
                              or "-"),
        "",
        f"{'SUPERVISION TREE':<34} {'TYPE':<11} {'RESTART':<10} {'PID':>8}",
    ]

    def walk(sup: dict[str, Any], depth: int) -> None:
        for c in sup["children"]:
            name = "  " * depth + str(c["id"])
            extra = ""
            if "sup" in c:
                s = c["sup"]
                extra = f"  {s['strategy']} {s['intensity']}/{s['period']}s"
            pid = "-" if c["pid"] is None else str(c["pid"])
            if "sup" in c:
                pid = ""
            lines.append(f"{name:<34} {c['type']:<11} {c['restart']:<10} {pid:>8}{extra}")
            if "sup" in c:
                walk(c["sup"], depth + 1)

    tree = st.get("tree")
    if tree:
        lines.append(f"{tree['name']:<34} {'supervisor':<11} {'-':<10} {st['pid']:>8}"
                     f"  {tree['strategy']} {tree['intensity']}/{tree['period']}s")
        walk(tree, 1)
    return "\n".join(lines)


def format_overview(ov: dict[str, Any]) -> str:
    """Render ``ra.overview(node)`` as a table, one server a line."""
    lines = [(f"node {ov['node']}  (daemon pid {ov['daemon']['pid']}, "
              f"up {ov['daemon']['uptime_s']:.0f} s)"), ""]
    hdr = (f"{'SERVER':<16} {'CLUSTER':<14} {'ROLE':<17} {'TERM':>5} {'COMMIT':>8} "
           f"{'APPLIED':>8} {'LAST':>8} {'WRITTEN':>8} {'SNAP':>7} {'PID':>7}  LEADER")
    lines.append(hdr)
    for name, row in sorted(ov["servers"].items()):
        if "role" not in row:
            status = row.get("status")
            if status == "failed":
                state = f"failed: {row.get('error')}"
            elif status == "loading":
                state = "loading its machine"
            else:
                state = ("stopped" if not row.get("pid") else "?") + (
                    f": {row['error']}" if row.get("error") else "")
            if row.get("restarts"):
                state += f" ({row['restarts']} restarts in the last period)"
            lines.append(f"{name:<16} {row.get('cluster_name') or '':<14} {state}")
            continue
        leader = row.get("leader_id")
        lead = f"{leader[0]}@{leader[1]}" if leader else "-"
        lines.append(
            f"{name:<16} {row['cluster_name']:<14} {row['role']:<17} {row['current_term']:>5} "
            f"{row['commit_index']:>8} {row['last_applied']:>8} {row['last_index']:>8} "
            f"{row['last_written_index']:>8} {row['snapshot_index']:>7} {row.get('pid') or '-':>7}"
            f"  {lead}")
    if not ov["servers"]:
        lines.append("(no servers)")
    return "\n".join(lines)


def _overview(a: argparse.Namespace) -> int:
    import ra

    ov = ra.overview(a.addr, timeout=a.timeout)
    print(json.dumps(ov, indent=2, default=str) if a.json else format_overview(ov))
    return 0


def _members(a: argparse.Namespace) -> int:
    import ra

    name, sep, addr = a.server.partition("@")
    if not sep or not name or not addr:
        return _error(f"members takes NAME@HOST:PORT, not {a.server!r}", 2)
    members, leader = ra.members(ra.ServerId(name, addr), timeout=a.timeout)
    if a.json:
        print(json.dumps({"members": [list(m) for m in members], "leader": list(leader)}))
    else:
        for m in members:
            print(f"{m.name}@{m.node}" + ("  (leader)" if m == leader else ""))
    return 0


def _node_start(a: argparse.Namespace) -> int:
    from ra.node import daemon as node
    from ra.node import system

    extra: dict[str, Any] = {}
    if a.no_restart_servers:
        extra["restart_servers"] = False
    if a.metrics:
        extra["metrics"] = a.metrics
    if a.advertise:
        extra["advertise"] = a.advertise
    if a.log_level:
        extra["log_level"] = a.log_level.upper()
    if a.log_file:
        extra["log_file"] = os.path.abspath(a.log_file)
    for k in (k for k in NODE.keys if k.startswith("curve_")):     # --curve-* mirror them
        if getattr(a, k):
            extra[k] = os.path.abspath(getattr(a, k))
    env = node.validate_env({"data_dir": a.data_dir, "listen": a.listen, **extra})
    system.prepare_dirs(env["data_dir"])
    if not a.daemon:
        os.close(node.lock_data_dir(env["data_dir"]))     # a locked directory: say so now
        argv = ["--data-dir", a.data_dir, "--listen", a.listen]
        if extra:
            argv += ["--config", json.dumps(extra)]
        return node.main(argv)
    log = os.path.join(os.path.abspath(a.data_dir), "node.log")
    addr, _proc, _ = node.spawn_daemon(env, lifeline=False, log_path=log)
    print(addr)
    return 0


def _node_stop(a: argparse.Namespace) -> int:
    from ra.messages import NodePing, NodeStop
    from ra.node.daemon import node_call

    node_call(a.addr, NodeStop(), timeout=a.timeout)
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        try:
            node_call(a.addr, NodePing(), timeout=0.5)
        except (NodeDown, NoProc, OutcomeUnknown):
            print(f"node {a.addr} stopped")
            return 0
    return _error(f"node {a.addr} still answering after {a.timeout} s", 1)


def _node_status(a: argparse.Namespace) -> int:
    from ra.messages import NodeStatus
    from ra.node.daemon import node_call

    st = node_call(a.addr, NodeStatus(), timeout=a.timeout)
    print(json.dumps(st, indent=2, default=str) if a.json else format_status(st))
    return 0


def _error(text: str, code: int) -> int:
    print(f"ra: error: {text}", file=sys.stderr)
    return code


def _explain(e: BaseException, a: argparse.Namespace) -> tuple[str, int]:
    """The one line and the exit code for an error that ended a command."""
    addr = getattr(a, "addr", None) or getattr(a, "server", None)
    if isinstance(e, InvalidConfig) and e.key in ("node", "server_id"):
        return f"bad node address {e.value!r}: {e.allowed}", 2
    if isinstance(e, (InvalidConfig, AlreadyStarted)):
        return str(e), 2
    if isinstance(e, (NodeDown, NoProc, OutcomeUnknown)):
        return ((f"node {addr} is not reachable ({type(e).__name__}): is its daemon running? "
                 "(start one with: ra node start --data-dir DIR --daemon)"), 1)
    if isinstance(e, RaError):
        return f"{type(e).__name__}: {e}", 1
    if isinstance(e, OSError):
        return f"{e.strerror or e} ({e.filename or type(e).__name__})", 1
    return (f"unexpected {type(e).__name__}: {e} (a bug: RA_DEBUG=1 shows the traceback)", 70)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ra`` console script: every error is one line (:func:`_explain`)."""
    p = argparse.ArgumentParser(prog="ra", description="ra for Python")
    sub = p.add_subparsers(dest="cmd", required=True)
    node_p = sub.add_parser("node", help="node daemon")
    ns = node_p.add_subparsers(dest="node_cmd", required=True)
    st = ns.add_parser("start", help="start a node daemon")
    st.add_argument("--data-dir", required=True)
    st.add_argument("--listen", default=NODE["listen"].default,
                    help="HOST:PORT (port 0: the port of the node's first start, else any)")
    st.add_argument("--advertise", metavar="HOST:PORT",
                    help="the address other hosts reach the node at, if not --listen's "
                         "(required with a wildcard --listen such as 0.0.0.0:7000)")
    st.add_argument("--daemon", action="store_true", help="detach; print the address")
    st.add_argument("--metrics", metavar="HOST:PORT",
                    help="serve Prometheus metrics at http://HOST:PORT/metrics")
    st.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO (default: "
                    "$RA_LOG_LEVEL, else INFO), WARNING, ERROR or CRITICAL")
    st.add_argument("--log-file", metavar="FILE", help="the node's log file, rotated (default: "
                    "DIR/node.log with --daemon, else stderr)")
    st.add_argument("--curve-secret-key-file", metavar="FILE",
                    help="CURVE with this node's own key pair (python -m transport.curve "
                         "keygen DIR NAME makes one); see README, Security")
    st.add_argument("--curve-allow", metavar="FILE",
                    help="the peer public keys let in, one per line, optionally followed by "
                         "the HOST:PORT of the node holding it")
    st.add_argument("--no-restart-servers", action="store_true",
                    help="do not restart the servers this node ran before (ra's behaviour)")
    sp = ns.add_parser("stop", help="stop the node daemon at ADDR")
    sp.add_argument("addr")
    sp.add_argument("--timeout", type=float, default=30.0)
    ss = ns.add_parser("status", help="show the node daemon at ADDR")
    ss.add_argument("addr")
    ss.add_argument("--json", action="store_true")
    ss.add_argument("--timeout", type=float, default=5.0)
    ov = sub.add_parser("overview", help="the ra servers of the node at ADDR")
    ov.add_argument("addr")
    ov.add_argument("--json", action="store_true")
    ov.add_argument("--timeout", type=float, default=5.0)
    mp = sub.add_parser("members", help="members of the cluster of server NAME@ADDR")
    mp.add_argument("server", metavar="NAME@ADDR")
    mp.add_argument("--json", action="store_true")
    mp.add_argument("--timeout", type=float, default=5.0)
    cp = sub.add_parser("check", help="Jepsen-style check: cluster, clients, faults, verdict")
    check_cli.add_arguments(cp)
    a = p.parse_args(argv)
    try:
        return _run(a)
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    except Exception as e:
        if os.environ.get("RA_DEBUG") and not isinstance(e, RaError):
            raise
        return _error(*_explain(e, a))


def _run(a: argparse.Namespace) -> int:
    if a.cmd == "check":
        return check_cli.run(a)
    if a.cmd == "overview":
        return _overview(a)
    if a.cmd == "members":
        return _members(a)
    if a.cmd == "node":
        return {"start": _node_start, "stop": _node_stop, "status": _node_status}[a.node_cmd](a)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
