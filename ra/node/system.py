"""Mirrors ra_system.erl. The one schema of a node's configuration, and the node's paths.

:class:`SystemConfig` is the node's configuration as a frozen dataclass; each field carries its
:class:`ra.core.config.Key` (type, default, range, one-line doc), and :data:`NODE` is the table
of them. Its one validator, :func:`validate_env` (``ra.start(**env)``, ``ra node start``, the
daemon's own start) / :func:`system_config` (the same, building the object), raises
``ra.errors.InvalidConfig(key, value, allowed)`` for an unknown key or a bad value. ``None``
for a key means its default. The README's node table is generated from it
(``tests/test_config_schema.py``). What the WAL and segment writer processes take is derived
from it by ``ra.node.sup.wal_child_specs`` (``wal.config``: the WAL's own dataclasses).

:func:`prepare_dir` checks a directory on disk (it is a directory or can be made one, and this
process can create files in it) and is called for ``data_dir`` and the WAL directory before a
node daemon starts anything.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ra.core.config import REQUIRED, Key, Schema
from ra.errors import InvalidConfig
from wal import config as walcfg

__all__ = ["SystemConfig", "NODE", "system_config", "validate", "validate_env", "wal_dir",
           "wal_endpoint", "segment_writer_endpoint", "prepare_dir", "prepare_dirs", "KEYS",
           "check_idle_poll",
           "WRITE_STRATEGIES", "CPU_SCHEDULING", "LOG_LEVELS", "DEFAULT_DATA_DIR",
           "WILDCARD_HOSTS", "listen_host", "node_address"]

WRITE_STRATEGIES = walcfg.WRITE_STRATEGIES
CPU_SCHEDULING = ("batch", "normal")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_DATA_DIR = "ra_data"           # under the current directory, for ra.start


#: the WAL's own defaults (wal.config), which the node's WAL keys take
_WAL = {f.name: f.default for f in dataclasses.fields(walcfg.WalConfig)}


def _path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike)) and bool(os.fspath(x))


def _listen(x: Any) -> bool:
    host, sep, port = x.rpartition(":")
    return bool(sep and host and port.isascii() and port.isdigit() and int(port) <= 65535)


#: hosts that bind every interface: no peer can connect to such an address
WILDCARD_HOSTS = ("0.0.0.0", "::", "*", "")


def _advertise(x: Any) -> bool:
    return _listen(x) and x.rpartition(":")[0].strip("[]") not in WILDCARD_HOSTS


def listen_host(addr: str) -> str:
    """The host of ``"host:port"`` (IPv6 brackets removed)."""
    return addr.rpartition(":")[0].strip("[]")


def _factory(x: Any) -> bool:
    mod, sep, name = x.partition(":")
    return bool(sep and mod and name)


def _key(default: Any, doc: str, typ: type = int, **kw: Any) -> Any:
    """A field of :class:`SystemConfig` and its key spec (named after the field by NODE)."""
    key = Key("", typ, default, doc, **kw)
    if default is REQUIRED:
        return dataclasses.field(metadata={"key": key})
    return dataclasses.field(default=default, metadata={"key": key})


@dataclass(frozen=True)
class SystemConfig:
    """A node's configuration (built and checked by :func:`system_config`)."""

    data_dir: str = _key(
        REQUIRED, "where the node keeps everything", object, pred=_path,
        allowed_text="a non-empty directory path",
        default_text="required by `ra node start`; `ra.start`: `./ra_data`")
    listen: str = _key(
        "127.0.0.1:0", "the daemon's address; servers listen on the same host (tcp, plus an ipc "
                       "socket in `data_dir` for peers on this host)", str, pred=_listen,
        allowed_text='"host:port" (port 0 = ephemeral)')
    advertise: str | None = _key(
        None, "the address other hosts reach the node at, when it is not `listen` (a wildcard "
              "`listen` such as `0.0.0.0:7000`, or a NAT): it names the node in server ids and "
              "replies; the node's servers bind `listen`'s host and advertise this host (see "
              "[Running on several machines](#running-on-several-machines))", str,
        pred=_advertise, none_ok=True,
        allowed_text='"host:port", not a wildcard host (port 0: the port bound)',
        default_text="`listen` (required when `listen` is a wildcard address)")
    wal_data_dir: str | None = _key(
        None, "the WAL's directory (another disk)", object, pred=_path, none_ok=True,
        allowed_text="a non-empty directory path", default_text="`data_dir/wal`")
    wal_max_size_bytes: int = _key(_WAL["max_size_bytes"], "a WAL file rolls over at this size",
                                   low=4096)
    wal_compute_checksums: bool = _key(_WAL["checksums"], "an xxh64 checksum per WAL record",
                                       bool)
    wal_write_strategy: str = _key(
        _WAL["write_strategy"],
        '"default": write + one `fdatasync` per batch; "o_sync": the file is opened `O_SYNC`',
        str, choices=WRITE_STRATEGIES)
    wal_max_batch_bytes: int = _key(_WAL["max_batch_bytes"], "cap of one batch the WAL drains",
                                    low=4096)
    wal_endpoint: str | None = _key(
        None, "the WAL's mailbox address", str, pred=lambda x: "://" in x, none_ok=True,
        allowed_text='"ipc://..." or "tcp://..."', default_text="an ipc socket in `data_dir`")
    segment_max_entries: int = _key(_WAL["segment_max_entries"], "entries per segment file",
                                    low=1, high=1 << 24)
    cpu_scheduling: str = _key(
        "batch", "the daemon and every process it starts run as Linux `SCHED_BATCH`: a woken "
                 "server does not preempt the process that woke it, so under load it takes its "
                 "messages in batches (W2: 10-15 % more, 25-30 % fewer context switches; W1 "
                 'unchanged); "normal": `SCHED_OTHER`', str, choices=CPU_SCHEDULING)
    server_nice: int = _key(
        19, "the niceness its servers add to the node's (`nice(2)`): the daemon, the WAL and "
            "the segment writer serve every server of the node, so they run first when more "
            "servers are runnable than there are cores (at 1,000 servers per node, the "
            "daemon's failure detector otherwise starves, reports the other nodes down, and "
            "every cluster holds an election at once); a starting server takes half of it "
            "until it has recovered and registered, so that a restart's recovering servers go "
            "before the running ones; where the daemon may raise its own priority (root, "
            "`CAP_SYS_NICE`) it raises itself by as much instead, and the servers run at the "
            "priority the node was started with; 0: all alike", low=0, high=19)
    wal_notice_defer_ms: int = _key(
        _WAL["notice_defer_ms"], "a server whose answer to an append its WAL sent for it "
                                 "(`durable_replies`) hears that the write is durable when the "
                                 "WAL starts its next batch, or this long after: the server "
                                 "then applies during the next `fdatasync` instead of beside "
                                 "the leader, which the answer has just woken (W1, 2 vCPUs: "
                                 "-2 to -7 %, BENCHMARKS.md session 24); 0: at once",
        low=0, high=1000)
    idle_poll_ms: int = _key(
        _WAL["idle_poll_ms"], "while its WAL writes, and this long after its last batch, the "
                              "node keeps the machine's idle CPUs polling instead of halted "
                              "(a Linux PM QoS request of 0 µs, `/dev/cpu_dma_latency`): a "
                              "process woken on an idle CPU runs at once, where a halted "
                              "virtual CPU takes 20-30 µs (W1 on a 2-vCPU VM: -20 %); costs "
                              "the CPU time of those idle CPUs, and the node must be allowed "
                              "to write the device (root, or a udev rule), which it checks at "
                              "its start (see *Latency* in [Processes of a node]"
                              "(#processes-of-a-node)); 0: off", low=0, high=60_000)
    log_children: str | None = _key(
        None, "the log supervisor's children instead of the WAL and segment writer (tests; "
              "called in a throwaway child process, never in the daemon)", str,
        pred=_factory, none_ok=True, allowed_text='"pkg.mod:func" returning child specs',
        default_text="the WAL, then the segment writer")
    load_timeout_ms: int = _key(
        10_000, "how long a server process may take to import and build its machine (and a "
                "`log_children` factory to return) before the node gives it up", low=1)
    restart_window: int = _key(
        32, "servers a restarting node lets recover at once (forked, their log not yet read "
            "back): the rest wait their turn, so that a node of 1,000 servers does not make "
            "them all runnable at once and starve its daemon (see [Restarting "
            "nodes](#restarting-nodes))", low=1)
    cookie_file: str | None = _key(
        None, "the node secret's file (every process that talks to the node must hold the same "
              "secret; see [Security](#security))", object, pred=_path, none_ok=True,
        allowed_text="a file path, readable only by its owner",
        default_text="`$RA_COOKIE`, `$RA_COOKIE_FILE`, else `~/.ra/cookie`")
    curve_secret_key_file: str | None = _key(
        None, "CURVE with this node's own key pair (every connection encrypted; each process "
              "of the node presents it); peers and clients need its public key (see "
              "[Security](#security))", object, pred=_path, none_ok=True,
        allowed_text="a secret key file (`python -m transport.curve keygen`, or one Z85 "
                     "secret key), readable only by its owner",
        default_text="`$RA_CURVE_SECRET_KEY[_FILE]`, else no key pair: PLAIN, or the "
                     "secret-derived CURVE with `RA_TRANSPORT=curve`")
    curve_allow: str | None = _key(
        None, "the peers let in when the node has a key pair: one Z85 public key per line, "
              "optionally followed by the `host:port` of the node daemon holding it (how "
              "processes learn a node's key); `#` comments", object, pred=_path, none_ok=True,
        allowed_text="a file path, not writable by group or others",
        default_text="`$RA_CURVE_ALLOW`, else only the node's own key")
    restart_servers: bool = _key(
        True, "at its start, the node restarts every server it hosts that was not stopped "
              "with `stop_server` (see [Restarting nodes](#restarting-nodes))", bool)
    preload_machines: bool = _key(
        False, "the fork server imports the machine module of a server that loaded it (and, at "
               "the node's start, those of the servers it restarts), so that later servers share "
               "it instead of each importing it (0.4 MB less per server, 1.3 MB when the module's "
               "bytecode is not cached and each server compiles it); only for machine "
               "modules whose import has no side effect (a connection, a thread, an open file "
               "would be shared by every server)", bool)
    memory_merge: bool = _key(
        False, "mark the node's processes for kernel same-page merging (KSM, Linux >= 6.4): "
               "the pages an idle server holds only because CPython touched them (reference "
               "counts) are merged back into one copy, about 1.5 MB per idle server instead "
               "of 5 MB on CPython 3.11 (2.6 MB on 3.12 without it); takes effect only while KSM runs machine-wide (`echo 1 > "
               "/sys/kernel/mm/ksm/run` as root; the node warns when it does not) and costs "
               "`ksmd` CPU; merged pages are shared with other marked processes of the machine "
               "(see *Memory per server* in [Processes of a node](#processes-of-a-node))", bool)
    metrics: str | None = _key(
        None, "serve Prometheus metrics at `http://host:port/metrics` (`ra node start "
              "--metrics`; see [Logs and metrics](#logs-and-metrics))", str, pred=_listen,
        none_ok=True, allowed_text='"host:port" (port 0: any free port)',
        default_text="none")

    log_level: str | None = _key(
        None, "the level of every process of the node (`ra node start --log-level`)", str,
        choices=LOG_LEVELS, none_ok=True, default_text="`$RA_LOG_LEVEL`, else `'INFO'`")
    log_file: str | None = _key(
        None, "the file every process of the node logs to, one line per record (`ra node "
              "start --log-file`; see [Logs and metrics](#logs-and-metrics))", object,
        pred=_path, none_ok=True, allowed_text="a file path",
        default_text="`data_dir/node.log` for a node started by `ra.start` or `--daemon`; "
                     "stderr in the foreground")
    log_max_bytes: int = _key(
        10_000_000, "the node rotates its log file at this size (0: never; an external "
                    "`logrotate` works too: every process reopens a moved file)", low=0)
    log_backups: int = _key(5, "rotated files kept: `FILE.1` (newest) .. `FILE.N`", low=0)


#: The node config's key specs, in the order of :class:`SystemConfig`'s fields.
NODE = Schema("node config", [dataclasses.replace(f.metadata["key"], name=f.name)
                              for f in dataclasses.fields(SystemConfig)])
KEYS = tuple(NODE.keys)


def validate_env(env: Mapping[str, Any]) -> dict[str, Any]:
    """Check a node config (``ra.start(**env)``; ``data_dir`` may be absent) and return it with
    paths as str and ``None`` values dropped (``None`` means the default). Raises
    ``InvalidConfig`` naming the first unknown key or bad value."""
    out = NODE.validate({k: v for k, v in env.items() if v is not None}, partial=True)
    if listen_host(out.get("listen", NODE["listen"].default)) in WILDCARD_HOSTS \
            and "advertise" not in out:
        raise InvalidConfig("advertise", None, '"host:port" that other hosts reach the node at, '
                            f"required when listen ({out['listen']}) is a wildcard address")
    for k in ("data_dir", "wal_data_dir", "cookie_file", "log_file", "curve_secret_key_file",
              "curve_allow"):
        if k in out:
            out[k] = os.fspath(out[k])
    return out


def node_address(listen: str, advertise: str | None) -> str:
    """The address the node is known by, given the port it bound in ``listen``:
    ``advertise`` (its port 0 being the bound one), else ``listen``."""
    if advertise is None:
        return listen
    host, _, port = advertise.rpartition(":")
    return f"{host}:{listen.rpartition(':')[2] if port == '0' else port}"


def validate(cfg: SystemConfig) -> SystemConfig:
    """Check every field; return ``cfg`` unchanged or raise InvalidConfig."""
    validate_env(dataclasses.asdict(cfg))
    return cfg


def system_config(conf: Mapping[str, Any] | None = None, **kw: Any) -> SystemConfig:
    """Build and validate a node config from a mapping and/or keywords (``data_dir``
    required)."""
    d = dict(conf or {})
    d.update(kw)
    d = validate_env(d)
    if "data_dir" not in d:
        NODE.validate(d)          # raises: data_dir is required
    return SystemConfig(**d)


def as_dict(cfg: SystemConfig) -> dict[str, Any]:
    """The keys of ``cfg`` that differ from their defaults (what a server process is given)."""
    return {k.name: getattr(cfg, k.name) for k in NODE
            if getattr(cfg, k.name) != k.default}


def _first_non_dir(path: str) -> str | None:
    """The first existing component of ``path`` that is not a directory, if any."""
    parts = os.path.abspath(path).split(os.sep)
    for i in range(2, len(parts) + 1):
        p = os.sep.join(parts[:i])
        if not os.path.lexists(p):
            return None
        if not os.path.isdir(p):
            return p
    return None


def prepare_dir(key: str, path: Any) -> str:
    """Make ``path`` a directory this process can write (created if missing) and return it;
    else raise ``InvalidConfig(key, path, ...)`` saying what is in the way: a file at or above
    it, a permission, a read-only file system, with the OS error."""
    path = os.fspath(path)
    blocker = _first_non_dir(path)
    if blocker is not None:
        what = "it is" if os.path.abspath(blocker) == os.path.abspath(path) else f"{blocker} is"
        raise InvalidConfig(key, path, f"a directory, but {what} a file: choose another path "
                                       "or remove the file")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ra-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InvalidConfig(key, path, f"a directory this user (uid {os.getuid()}) can create "
                                       f"and write: {type(e).__name__}: {e}") from None
    return path


def prepare_dirs(data_dir: Any, wal_data_dir: Any = None) -> None:
    """:func:`prepare_dir` for a node's ``data_dir`` and its WAL directory (``wal_data_dir``,
    or ``data_dir/wal``)."""
    prepare_dir("data_dir", data_dir)
    if wal_data_dir:
        prepare_dir("wal_data_dir", wal_data_dir)
    else:
        prepare_dir("data_dir", os.path.join(os.fspath(data_dir), "wal"))


def check_idle_poll(ms: Any) -> None:
    """Raise ``InvalidConfig("idle_poll_ms", ...)`` when ``ms`` asks for idle polling and this
    process may not make the request (no ``/dev/cpu_dma_latency``, or not writable by it)."""
    if not ms:
        return
    from wal.idle_poll import IdlePoll
    try:
        IdlePoll(ms / 1000).close()
    except OSError as e:
        raise InvalidConfig("idle_poll_ms", ms, f"0, or a node allowed to write the PM QoS "
                                                f"device (root, or a udev rule granting this "
                                                f"user, uid {os.getuid()}): "
                                                f"{type(e).__name__}: {e}") from None


def wal_dir(cfg: SystemConfig) -> str:
    """Where the WAL files live."""
    return cfg.wal_data_dir or os.path.join(cfg.data_dir, "wal")


def _ipc(cfg: SystemConfig, name: str) -> str:
    path = os.path.join(os.path.abspath(cfg.data_dir), name)
    if len(path) <= 100:
        return "ipc://" + path
    h = hashlib.sha1(os.path.abspath(cfg.data_dir).encode()).hexdigest()[:16]
    return "ipc://" + os.path.join(tempfile.gettempdir(), f"ra-{h}-{name}")


def server_ipc_endpoint(cfg: SystemConfig, pid: int | None = None) -> str:
    """The ipc address a server process listens on besides tcp, for peers on this host."""
    return _ipc(cfg, f"srv-{os.getpid() if pid is None else pid}.sock")


def remove_stale_server_sockets(cfg: SystemConfig) -> None:
    """Remove the ipc socket files of server processes that died without cleaning up (a
    SIGKILL): called by the node daemon when it starts, before any of its servers."""
    pattern = server_ipc_endpoint(cfg, 0)[6:].replace("srv-0.sock", "srv-*.sock")
    for path in glob.glob(pattern):
        try:
            os.unlink(path)
        except OSError:
            pass


def wal_endpoint(cfg: SystemConfig) -> str:
    """The WAL process's mailbox address (an ipc socket beside the data, or a short tmp path)."""
    return cfg.wal_endpoint or _ipc(cfg, "wal.sock")


def segment_writer_endpoint(cfg: SystemConfig) -> str:
    return _ipc(cfg, "segwriter.sock")


