"""Mirrors the call and cast terms of ra_server_proc.erl (``{command, ...}``, ``{local_query,
...}``, ``ping``...) and of ra_server_sup_sup.erl / ra_system.erl, which Erlang sends as tuples.
Here each is a frozen slotted dataclass registered with the codec (codes in :mod:`ra.wire`),
with ONE validator in :data:`CHECKS`, exactly as the peer RPCs of :mod:`ra.core.messages`
(checked by :mod:`ra.core.validate`).

Three protocols:

* client -> ra server (``ra.client.api`` sends, ``ra.server.proc`` serves): the ``...Call`` classes are
  calls (answered ``("ok", value, leader)``, ``("redirect", leader)`` or ``("error", reason)``),
  the ``...Cast`` classes casts;
* server -> node daemon: :class:`MetricsReport` (cast), :class:`ServerLoaded` /
  :class:`ServerLoadFailed` (calls: the machine was built, or why not; ``ServerLoaded`` is a
  cast from a server whose record the node already holds durably, a restart's),
  :class:`ServerUp` (call: recovered, registered and subscribed) and
  :class:`ForceDeleteServer` (cast, when a member applies its cluster's end of life);
* client -> node daemon (``ra.node.daemon`` and ``ra.server.sup`` serve): the ``Node*`` and ``*Child``
  classes (the daemon itself, its server supervisor), and the ``*Server*`` classes (ra's
  ``start_server``, ``restart_server``...). Errors come back as ``("error", tag, text)``.

Door contract, the same in every process: a message is checked once, where it enters; a
malformed one (wrong type, wrong arity — the codec refuses to build it —, a field of the wrong
type or range, a message of another protocol, a call sent as a cast) is dropped and counted
per reason, and a call is answered ``("error", "bad_request", reason)``, which the client
raises as :class:`ra.errors.BadRequest`. Handlers may rely on every field's type and range.
"""
from __future__ import annotations

from typing import Any

from ra.core.config import SERVER
from ra.core.frozen import frozen
from transport.messages import (
    Check, any_term, dict_of, fields, is_bool, list_of, nat, nonempty_str, one_of, sid,
    valid_endpoint, valid_node,
)

__all__ = [
    # client -> server
    "CommandCall", "PipelineCast", "PipelineBatch", "PIPELINE_STRIDE", "ConsistentQueryCall",
    "LocalQueryCall", "LeaderQueryCall", "MembersCall", "AuxCall", "AuxCast",
    "InitialMembersCall", "TransferLeadershipCall", "TriggerElectionCall", "OverviewCall",
    "KeyMetricsCall", "PingCall",
    # server -> daemon
    "MetricsReport", "ServerLoaded", "ServerUp", "ServerLoadFailed",
    # client -> daemon
    "NodePing", "NodeStatus", "NodeStop", "StartChild", "TerminateChild", "RestartChild",
    "DeleteChild", "WhichChildren", "StartServer", "RestartServer", "StopServer",
    "ForceDeleteServer", "ListServers", "ServerMetrics", "StartStatus", "AwaitStarted",
    "AWAIT_MAX_MS",
    # groups, validators
    "SERVER_CALLS", "SERVER_CASTS", "DAEMON_CALLS", "DAEMON_CASTS", "COMMAND_KINDS",
    "CHECKS", "valid_query",
]

#: the wire tag of a leader's applied notifications: the (corr, reply) pairs flat in one list
#: (a tuple per pair costs the codec a Python call each way, for every pipelined command)
APPLIED_FLAT = "applied_flat"
COMMAND_KINDS = ("usr", "join", "leave", "delete_cluster", "open_session", "close_session")
PRIORITIES = ("normal", "low")


# --- client -> ra server --------------------------------------------------------------------

@frozen
class CommandCall:
    """``ra:process_command`` and membership changes: ``kind`` as ``ra.core.messages.Command``
    (``"usr"`` with the machine command as ``payload``; ``"join"`` / ``"leave"`` with a server
    id; ``"delete_cluster"`` and ``"open_session"`` with ``None``; ``"close_session"`` with the
    session id); ``session`` is ``(session_id, seq, first_outstanding)`` for a ``usr`` command
    of a client session, else ``None``. Answered once applied (``join``/``leave``: appended)."""

    kind: str
    payload: Any
    priority: str = "normal"
    session: Any = None


@frozen
class PipelineCast:
    """``ra:pipeline_command``: with a ``correlation``, ``pid`` (the client's mailbox address)
    later gets ``("ra_event", leader, ("applied_flat", [corr, reply, corr, reply, ...]))``
    (:data:`APPLIED_FLAT`; ``ra.Client.receive`` gives it as ``("applied", [(corr, reply),
    ...])``) or ``("rejected", ...)``.

    A command of a client session carries it flat: ``session`` is the session id, with
    ``seq`` and ``first_out`` (``first_outstanding``) beside it (three plain ints: no nested
    tuple for the codec to build and rebuild on every pipelined command). The older form,
    ``session`` as the triple ``(session_id, seq, first_outstanding)`` with ``seq`` and
    ``first_out`` left 0, is still accepted; no session: ``None`` and both 0."""

    payload: Any
    correlation: Any
    pid: str
    priority: str = "low"
    session: Any = None
    seq: int = 0
    first_out: int = 0


@frozen
class PipelineBatch:
    """Several ``ra:pipeline_command`` casts to one server, sent as one frame by a client
    whose connection to that server is backed up (``ra.client.api``): the same as a
    :class:`PipelineCast` ``(payload, correlation, pid, priority, session, seq, first_out)``
    for each command, in order. ``cmds`` is flat, :data:`PIPELINE_STRIDE` items per command
    (``payload, correlation, session, seq, first_out``; session fields in the flat form of
    ``PipelineCast``): no tuple per command for the codec to build and take apart."""

    pid: str
    priority: str
    cmds: list[Any]


#: items per command in :attr:`PipelineBatch.cmds`
PIPELINE_STRIDE = 5


@frozen
class ConsistentQueryCall:
    """``query`` is ``"pkg.mod:func"`` or ``("pkg.mod:func", args)``, imported by the server."""

    query: Any


@frozen
class LocalQueryCall:
    query: Any


@frozen
class LeaderQueryCall:
    query: Any


@frozen
class MembersCall:
    """``leader``: answer only as the leader (else a redirect)."""

    leader: bool = True


@frozen
class AuxCall:
    cmd: Any


@frozen
class AuxCast:
    cmd: Any


@frozen
class InitialMembersCall:
    pass


@frozen
class TransferLeadershipCall:
    target: Any


@frozen
class TriggerElectionCall:
    pass


@frozen
class OverviewCall:
    pass


@frozen
class KeyMetricsCall:
    pass


@frozen
class PingCall:
    pass


# --- server -> node daemon ------------------------------------------------------------------

@frozen
class MetricsReport:
    """Cast: server ``name``'s key metrics, kept by the daemon for ``ra.key_metrics``."""

    name: str
    metrics: dict[str, Any]


@frozen
class ServerLoaded:
    """Call: server ``name``'s process ``pid`` imported and built its machine -> ``"ok"``."""

    name: str
    pid: int


@frozen
class ServerUp:
    """Call: server ``name`` (process ``pid``) has recovered and serves at ``endpoints``: one
    call where a start made three (``RegRegister``, ``FdSubscribe``, the first
    ``MetricsReport``) -> ``("ok", {node: status})`` (the failure detector's view; ``subscriber``
    then receives its ``NodeEvent`` casts) or ``("error", "already_registered", endpoints)``.
    A loading server's ``ServerUp`` also counts as its ``ServerLoaded``. Each round trip to a
    daemon restarting 1,000 servers waited 0.4-0.6 s (issue 17)."""

    name: str
    endpoints: list[str]
    pid: int
    subscriber: str
    metrics: dict[str, Any]


@frozen
class ServerLoadFailed:
    """Call: server ``name``'s process ``pid`` could not load its machine; ``info`` says why
    (``reason``, ``fix``, ``machine``) -> ``"ok"``; the process then exits."""

    name: str
    pid: int
    info: dict[str, Any]


# --- client -> node daemon ------------------------------------------------------------------

@frozen
class NodePing:
    """-> ``"pong"``."""


@frozen
class NodeStatus:
    """-> the daemon's status dict (``ra.node.daemon.NodeDaemon.status``)."""


@frozen
class NodeStop:
    """-> ``("ok", pid)``; the daemon then shuts down in order."""


@frozen
class StartChild:
    """A raw child of the server supervisor, forked from ``target`` (``"pkg.mod:func"``)
    -> its pid."""

    id: str
    target: str
    args: list[Any]
    env: dict[str, str]
    restart: str = "transient"
    shutdown: Any = 5000


@frozen
class TerminateChild:
    id: str


@frozen
class RestartChild:
    id: str


@frozen
class DeleteChild:
    id: str


@frozen
class WhichChildren:
    """-> ``[(id, pid, restart), ...]``."""


@frozen
class StartServer:
    """``ra:start_server``: ``conf`` in wire form (``ra.client.api._server_conf``) -> ``("ok", pid)``."""

    conf: dict[str, Any]


@frozen
class RestartServer:
    """``ra:restart_server``; ``add_config`` changes the stored config -> ``("ok", pid)``."""

    name: str
    add_config: dict[str, Any] | None = None


@frozen
class StopServer:
    name: str


@frozen
class ForceDeleteServer:
    name: str


@frozen
class ListServers:
    """-> ``{name: {"uid", "cluster_name", "pid", "restarts"}}``."""


@frozen
class ServerMetrics:
    """-> the metrics server ``name`` last reported (without calling it)."""

    name: str


@frozen
class StartStatus:
    """-> where the start of server ``name`` is (``ra.server.sup.ServerSup.start_status``)."""

    name: str


#: the longest an ``AwaitStarted`` may hold its reply back
AWAIT_MAX_MS = 60_000


@frozen
class AwaitStarted:
    """-> ``StartStatus(name)``'s answer once the start of ``name`` has settled: ``("running",
    pid)`` once the server has *registered* (it answers calls from then on), ``("failed",
    info)`` or ``("stopped", reason)``; or after ``wait_ms`` (at most ``AWAIT_MAX_MS``), where
    it is then (``("loading", ...)``, or ``("starting", pid)``: loaded, not yet registered). One call instead of polling: a start of 1,000 servers
    from 16 threads polled each node's daemon about a thousand times a second."""

    name: str
    wait_ms: int


SERVER_CALLS = (CommandCall, ConsistentQueryCall, LocalQueryCall, LeaderQueryCall, MembersCall,
                AuxCall, InitialMembersCall, TransferLeadershipCall, TriggerElectionCall,
                OverviewCall, KeyMetricsCall, PingCall)
SERVER_CASTS = (PipelineCast, PipelineBatch, AuxCast)
DAEMON_CALLS = (NodePing, NodeStatus, NodeStop, StartChild, TerminateChild, RestartChild,
                DeleteChild, WhichChildren, StartServer, RestartServer, StopServer,
                ListServers, ServerMetrics, StartStatus, ServerLoaded, ServerLoadFailed,
                AwaitStarted, ServerUp)
#: ForceDeleteServer may be called (a client) or cast (a server deleting itself)
DAEMON_CASTS = (MetricsReport, ForceDeleteServer)


# --- validators -----------------------------------------------------------------------------

def _path(x: Any) -> bool:
    """``"pkg.mod:func"``: both halves non-empty, no NUL, of a sane length."""
    if type(x) is not str or len(x) > 1024 or "\x00" in x:
        return False
    mod, sep, name = x.partition(":")
    return bool(sep and mod and name)


def _wait_ms(x: Any) -> bool:
    return nat(x) and x <= AWAIT_MAX_MS


def valid_query(q: Any) -> bool:
    """A query function in wire form: ``"pkg.mod:func"`` or ``("pkg.mod:func", [args])``."""
    return _path(q) or (type(q) is tuple and len(q) == 2 and _path(q[0])
                        and type(q[1]) is list)


def _name(x: Any) -> bool:
    """A server or child name: non-empty str, no NUL, at most 255 bytes."""
    return (type(x) is str and x != "" and "\x00" not in x
            and len(x.encode("utf-8", "replace")) <= 255)


def _member_id(x: Any) -> bool:
    """A server id a server can reach: ``(name, "host:port")``."""
    return sid(x) and valid_node(x[1])


def _session(x: Any) -> bool:
    """``(session, seq, first_outstanding)``: positive ints, ``first_outstanding <= seq``.
    On every pipelined command's path: plain comparisons, no generator."""
    if type(x) is not tuple or len(x) != 3:
        return False
    s, q, f = x
    return (type(s) is int and type(q) is int and type(f) is int
            and s > 0 and 0 < f <= q)


_PRIORITIES = frozenset(PRIORITIES)


def _pipeline(m: PipelineCast) -> str | None:
    """:class:`PipelineCast`, on every pipelined command's path: written out rather than
    :func:`fields` (one call, plain comparisons); the reasons are those ``fields`` gives."""
    if not valid_endpoint(m.pid):
        return "bad_field:PipelineCast.pid"
    if type(m.priority) is not str or m.priority not in _PRIORITIES:
        return "bad_field:PipelineCast.priority"
    s, q, f = m.session, m.seq, m.first_out
    if type(q) is not int:
        return "bad_field:PipelineCast.seq"
    if type(f) is not int:
        return "bad_field:PipelineCast.first_out"
    if type(s) is int:                      # the flat form
        if s > 0 and 0 < f <= q:
            return None
        return "bad_rule:PipelineCast"
    if s is not None and not _session(s):
        return "bad_field:PipelineCast.session"
    return None if q == 0 and f == 0 else "bad_rule:PipelineCast"


def _pipeline_batch(m: PipelineBatch) -> str | None:
    """:class:`PipelineBatch`: every command checked as :func:`_pipeline` checks the flat form
    of one (a session command: ``0 < first_out <= seq``; none: ``None, 0, 0``); one bad
    command refuses the whole batch (a well-behaved client never sends one)."""
    if not valid_endpoint(m.pid):
        return "bad_field:PipelineBatch.pid"
    if type(m.priority) is not str or m.priority not in _PRIORITIES:
        return "bad_field:PipelineBatch.priority"
    cmds = m.cmds
    if type(cmds) is not list or not cmds or len(cmds) % PIPELINE_STRIDE:
        return "bad_field:PipelineBatch.cmds"
    for i in range(2, len(cmds), PIPELINE_STRIDE):
        s, q, f = cmds[i], cmds[i + 1], cmds[i + 2]
        if type(q) is not int or type(f) is not int:
            return "bad_field:PipelineBatch.cmds"
        if type(s) is int:
            if not (s > 0 and 0 < f <= q):
                return "bad_rule:PipelineBatch"
        elif s is not None or q != 0 or f != 0:
            return "bad_rule:PipelineBatch"
    return None


def _command_rule(m: CommandCall) -> bool:
    if m.session is not None and m.kind != "usr":
        return False
    if m.kind in ("join", "leave"):
        return _member_id(m.payload)
    if m.kind == "close_session":
        return type(m.payload) is int and m.payload > 0
    if m.kind in ("delete_cluster", "open_session"):
        return m.payload is None
    return True


_COMMAND_KINDS = frozenset(COMMAND_KINDS)


def _command_call(m: CommandCall) -> str | None:
    """:class:`CommandCall`, on every ``process_command``'s path: written out rather than
    :func:`fields` (one call, plain comparisons); the reasons are those ``fields`` gives."""
    kind = m.kind
    if type(kind) is not str or kind not in _COMMAND_KINDS:
        return "bad_field:CommandCall.kind"
    if type(m.priority) is not str or m.priority not in _PRIORITIES:
        return "bad_field:CommandCall.priority"
    session = m.session
    if kind == "usr":
        if session is None or _session(session):
            return None
        return "bad_field:CommandCall.session"
    if session is not None:
        return "bad_field:CommandCall.session" if not _session(session) \
            else "bad_rule:CommandCall"
    return None if _command_rule(m) else "bad_rule:CommandCall"


def _env_key(k: Any) -> bool:
    return type(k) is str and k != "" and "=" not in k and "\x00" not in k


def _env_value(v: Any) -> bool:
    return type(v) is str and "\x00" not in v


def _start_server(m: StartServer) -> str | None:
    """A server config in wire form, checked by its one schema (``ra.core.config.SERVER``); the
    reason names the key at fault (a bounded set: ``unknown_key`` for any other)."""
    if type(m.conf) is not dict:
        return "bad_field:StartServer.conf"
    key = SERVER.fault(m.conf)
    return None if key is None else f"bad_field:StartServer.conf.{key}"


def _restart_server(m: RestartServer) -> str | None:
    """``add_config``: None, or the keys ``restart_server`` may change, checked by the schema."""
    if not _name(m.name):
        return "bad_field:RestartServer.name"
    if m.add_config is None:
        return None
    if type(m.add_config) is not dict:
        return "bad_field:RestartServer.add_config"
    key = SERVER.fault(m.add_config, partial=True, mutable_only=True)
    return None if key is None else f"bad_field:RestartServer.add_config.{key}"


def _pid(x: Any) -> bool:
    return type(x) is int and 0 < x < 2**31


def _shutdown(x: Any) -> bool:
    return (type(x) is int and x >= 0) or x in ("brutal_kill", "infinity")


_query_fields = (valid_query,)

#: One validator per message type of this module.
CHECKS: dict[type, Check] = {
    CommandCall: _command_call,
    PipelineCast: _pipeline,
    PipelineBatch: _pipeline_batch,
    ConsistentQueryCall: fields(ConsistentQueryCall, *_query_fields),
    LocalQueryCall: fields(LocalQueryCall, *_query_fields),
    LeaderQueryCall: fields(LeaderQueryCall, *_query_fields),
    MembersCall: fields(MembersCall, is_bool),
    AuxCall: fields(AuxCall, any_term),
    AuxCast: fields(AuxCast, any_term),
    InitialMembersCall: fields(InitialMembersCall),
    TransferLeadershipCall: fields(TransferLeadershipCall, _member_id),
    TriggerElectionCall: fields(TriggerElectionCall),
    OverviewCall: fields(OverviewCall),
    KeyMetricsCall: fields(KeyMetricsCall),
    PingCall: fields(PingCall),
    MetricsReport: fields(MetricsReport, _name, dict_of(nonempty_str, any_term)),
    NodePing: fields(NodePing),
    NodeStatus: fields(NodeStatus),
    NodeStop: fields(NodeStop),
    StartChild: fields(StartChild, _name, _path, list_of(any_term, tuples=True),
                       dict_of(_env_key, _env_value),
                       one_of("permanent", "transient", "temporary"), _shutdown),
    TerminateChild: fields(TerminateChild, _name),
    RestartChild: fields(RestartChild, _name),
    DeleteChild: fields(DeleteChild, _name),
    WhichChildren: fields(WhichChildren),
    StartServer: _start_server,
    RestartServer: _restart_server,
    StopServer: fields(StopServer, _name),
    ForceDeleteServer: fields(ForceDeleteServer, _name),
    ListServers: fields(ListServers),
    ServerMetrics: fields(ServerMetrics, _name),
    StartStatus: fields(StartStatus, _name),
    AwaitStarted: fields(AwaitStarted, _name, _wait_ms),
    ServerLoaded: fields(ServerLoaded, _name, _pid),
    ServerUp: fields(ServerUp, _name, list_of(valid_endpoint, nonempty=True), _pid,
                     valid_endpoint, dict_of(nonempty_str, any_term)),
    ServerLoadFailed: fields(ServerLoadFailed, _name, _pid, dict_of(nonempty_str, any_term)),
}
