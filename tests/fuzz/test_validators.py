"""The validators alone (no processes): every message class of every protocol has one
validator and a fixed codec code; a valid message round-trips and stays valid; no door check
ever raises, whatever it is given; a field given a value of a type no validator accepts is
refused with a reason naming that very field."""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ra.wire
from ra import messages as rm
from ra.node import daemon as ranode
from ra.server import proc as server_proc
from ra.core import validate
from ra.core.types import ServerId
from tests.fuzz.gen import fuzz_count, terms
from transport import codec
from transport import messages as tm
from transport.envelope import Envelope, From
from wal import messages as wm
from wal import segment_writer as sw
from wal import wal as walproc

EXAMPLES = fuzz_count(2000, 20_000)
# under soak each property draws 20,000 messages: minutes on a busy machine, not a hang
pytestmark = pytest.mark.timeout(1800 if EXAMPLES > 2000 else 300)
_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))

ALL_CHECKS: dict[type, Any] = {**rm.CHECKS, **tm.CHECKS, **wm.CHECKS}
ALL_CODES: dict[int, type] = {**ra.wire.CODES, **tm.CODES, **wm.CODES}
N = ServerId("a", "127.0.0.1:1")

#: one valid instance of every message class
EXEMPLARS: list[Any] = [
    rm.CommandCall("usr", 1), rm.CommandCall("usr", [1], "low", (1, 2, 1)),
    rm.CommandCall("join", N), rm.CommandCall("close_session", 3),
    rm.PipelineCast(1, "c", "tcp://127.0.0.1:1", "low", None),
    rm.PipelineCast(1, "c", "tcp://127.0.0.1:1", "low", 3, 5, 4),         # flat session
    rm.PipelineCast(1, "c", "tcp://127.0.0.1:1", "low", (3, 5, 4)),       # the older triple
    rm.PipelineBatch("tcp://127.0.0.1:1", "low", [1, "c", 3, 5, 4, [2], None, None, 0, 0]),
    rm.ConsistentQueryCall("m:f"), rm.LocalQueryCall(("m:f", [1])), rm.LeaderQueryCall("m:f"),
    rm.MembersCall(True), rm.AuxCall(1), rm.AuxCast(None), rm.InitialMembersCall(),
    rm.TransferLeadershipCall(N), rm.TriggerElectionCall(), rm.OverviewCall(),
    rm.KeyMetricsCall(), rm.PingCall(), rm.MetricsReport("s", {"term": 1}), rm.NodePing(),
    rm.NodeStatus(), rm.NodeStop(), rm.StartChild("c", "m:f", [1], {"K": "v"}, "temporary", 0),
    rm.TerminateChild("c"), rm.RestartChild("c"), rm.DeleteChild("c"), rm.WhichChildren(),
    rm.StartServer({"name": "s", "uid": "sUID", "cluster_name": "c",
                    "initial_members": [["s", "127.0.0.1:1"]],
                    "machine": ["module", "m:C", None], "tick_ms": 5}),
    rm.RestartServer("s", {"machine": ["simple", "m:f", 0], "group_commit_ms": 0}),
    rm.RestartServer("s"), rm.StopServer("s"), rm.ForceDeleteServer("s"), rm.ListServers(),
    rm.ServerMetrics("s"), rm.StartStatus("s"), rm.AwaitStarted("s", 100),
    rm.ServerLoaded("s", 12),
    rm.ServerUp("s", ["ipc:///tmp/x", "tcp://h:1"], 12, "tcp://h:1", {"state": "follower"}),
    rm.ServerLoadFailed("s", 12, {"reason": "ImportError: x", "machine": ["simple", "m:f", 0]}),
    tm.RegRegister("n", ["ipc:///tmp/x", "tcp://h:1"], 5), tm.RegUnregister("n"),
    tm.RegWhereis("n"), tm.RegRegistered(), tm.RegResolve("n", "h:1", "ipc:///tmp/x"),
    tm.RegResolved("n", "tcp://h:1", ["tcp://h:2"]), tm.RegResolved("n", "h:1", None),
    tm.RegRelay("n", "h:1", "tcp://h:3"),
    tm.FdHeartbeat("127.0.0.1:1"),
    tm.FdSubscribe("tcp://[::1]:5"), tm.FdUnsubscribe("x"), tm.FdWatch("tcp://h:1"),
    tm.FdStatus(), tm.NodeEvent("nodeup", "h:1"),
    wm.WalAppend("u", 0, [[1, 0, b""], [2, 1, b"x"]], 7), wm.WalWritten("u", [[1, 1, 2]]),
    wm.WalResendWrite("u", 1), wm.WalError("u", "x"), wm.WalStarted(0), wm.WalRollOver(),
    wm.WalOverview(), wm.WalForgetWriter("u"), wm.WalFence("u", 9), wm.SegRoll(), wm.SegOverview(),
]

#: fields that carry the user's terms: any value is valid there
ANY_FIELDS = {("CommandCall", "payload"), ("PipelineCast", "payload"),
              ("PipelineCast", "correlation"), ("AuxCall", "cmd"), ("AuxCast", "cmd")}
_NOBODY_ACCEPTS = frozenset({1.5})     # a value no predicate but "any term" lets through


def _doors() -> list[Any]:
    def wal_door(p: Any) -> Any:
        return walproc._door(Envelope("call", From("ipc:///x", 1), p))
    return [server_proc._check, ranode._check, wm.check, tm.check, validate.check, wal_door,
            lambda p: sw._door(p, "cast"), lambda p: server_proc._door(p, "cast"),
            lambda p: ranode._door(p, "call")]


DOORS = _doors()


def test_every_class_has_one_validator_and_one_code() -> None:
    classes = set(ALL_CHECKS)
    assert classes == {c for c in ALL_CODES.values() if c.__module__ != "ra.core.messages"}
    assert len(ALL_CODES) == len(set(ALL_CODES.values()))
    reg = codec.registered()
    for code, cls in ALL_CODES.items():
        assert reg[code] is cls
    for cls in classes:
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen   # type: ignore
        assert "__slots__" in cls.__dict__, cls
    assert {type(m) for m in EXEMPLARS} == classes


@pytest.mark.parametrize("m", EXEMPLARS, ids=lambda m: type(m).__name__)
def test_exemplars_are_valid_and_round_trip(m: Any) -> None:
    assert ALL_CHECKS[type(m)](m) is None
    back = codec.decode(codec.encode(m))
    assert back == m and type(back) is type(m) and ALL_CHECKS[type(m)](back) is None


@pytest.mark.parametrize("m", EXEMPLARS, ids=lambda m: type(m).__name__)
def test_a_field_no_validator_accepts_is_refused_by_name(m: Any) -> None:
    cls = type(m)
    for f in dataclasses.fields(m):
        bad = dataclasses.replace(m, **{f.name: _NOBODY_ACCEPTS})
        reason = ALL_CHECKS[cls](bad)
        if (cls.__name__, f.name) in ANY_FIELDS:
            assert reason in (None, f"bad_rule:{cls.__name__}"), reason
        else:
            assert reason == f"bad_field:{cls.__name__}.{f.name}", (f.name, reason)


@_SETTINGS
@given(terms(12))
def test_no_door_raises_on_any_term(t: Any) -> None:
    for door in DOORS:
        r = door(t)
        assert r is None or type(r) is str


@_SETTINGS
@given(st.sampled_from(EXEMPLARS), st.data())
def test_no_door_raises_on_a_message_with_random_fields(ex: Any, data: Any) -> None:
    cls = type(ex)
    fields = [data.draw(terms(3) | st.just(getattr(ex, f.name)))
              for f in dataclasses.fields(ex)]
    m = cls(*fields)
    for door in DOORS:
        r = door(m)
        assert r is None or type(r) is str
    r = ALL_CHECKS[cls](m)
    assert r is None or r.startswith((f"bad_field:{cls.__name__}.", f"bad_rule:{cls.__name__}"))


@_SETTINGS
@given(st.binary(max_size=200))
def test_decoding_garbage_never_builds_a_half_message(data: bytes) -> None:
    try:
        t = codec.decode(data)
    except codec.DecodeError:
        return
    for door in DOORS:
        r = door(t)
        assert r is None or type(r) is str


def test_endpoint_and_node_predicates() -> None:
    ok = ["tcp://127.0.0.1:1", "tcp://host-1.example:65535", "tcp://[::1]:5", "ipc:///tmp/x"]
    bad = ["tcp://127.0.0.1:0", "tcp://127.0.0.1:65536", "tcp://:1", "tcp://a b:1", "tcp://h",
           "ipc://", "ipc://" + "x" * 200, "ipc:///a\x00b", "udp://h:1", "h:1", 5, None,
           b"tcp://h:1"]
    assert all(tm.valid_endpoint(x) for x in ok)
    assert not any(tm.valid_endpoint(x) for x in bad)
    assert tm.valid_node("127.0.0.1:5") and tm.valid_node("tcp://h:1")
    assert not any(tm.valid_node(x) for x in ("h", "h:0", ":1", "ipc:///x", 1, "h:1:2"))


def test_the_door_refuses_a_bad_server_config_naming_the_key() -> None:
    """The daemon's door checks a wire config with the server schema itself (one validator):
    each bad key is named in the reason (tests/test_config_schema.py tries every key)."""
    start = next(m for m in EXEMPLARS if type(m) is rm.StartServer)
    bad = dataclasses.replace(start, conf={**start.conf, "heartbeat_ms": 0})
    assert ranode._door(bad, "call") == "bad_field:StartServer.conf.heartbeat_ms"
    bad = dataclasses.replace(start, conf={**start.conf, "what": 1})
    assert ranode._door(bad, "call") == "bad_field:StartServer.conf.unknown_key"
    assert (ranode._door(rm.RestartServer("s", {"uid": "x"}), "call")
            == "bad_field:RestartServer.add_config.uid")


@settings(_SETTINGS, max_examples=EXAMPLES // 2)
@given(st.lists(terms(3) | st.sampled_from([1, 2, 3, "tcp://127.0.0.1:1", None]),
                min_size=5, max_size=5), st.booleans())
def test_an_envelope_of_any_five_terms_is_unpacked_or_refused(parts: list[Any],
                                                               check_from: bool) -> None:
    """Found by the daemon fuzz: a dict as the envelope's ``kind`` raised TypeError (unhashable)
    in ``unpack`` and killed the daemon."""
    from transport import envelope
    parts[0] = envelope.VERSION if check_from else parts[0]
    try:
        kind, frm, ref, payload = envelope.unpack(codec.encode(parts), check_from)
    except envelope.BadEnvelope:
        return
    assert kind in (envelope.CAST, envelope.CALL, envelope.REPLY)


def test_an_unhashable_envelope_kind_is_refused() -> None:
    from transport import envelope
    with pytest.raises(envelope.BadEnvelope):
        envelope.unpack(codec.encode([envelope.VERSION, {1: 2}, None, None, 1]))


def test_a_pipelined_session_is_flat_or_the_older_triple_never_both() -> None:
    def check(*session: Any) -> Any:
        return rm.CHECKS[rm.PipelineCast](rm.PipelineCast(1, "c", "tcp://h:1", "low", *session))
    assert check() is None and check(None) is None and check(None, 0, 0) is None
    assert check(3, 5, 5) is None and check((3, 5, 4)) is None
    for bad in [(3,), (3, 5, 0), (3, 4, 5), (0, 5, 5), (-1, 5, 5), (None, 5, 5), ((3, 5, 4), 5, 4),
                ((3, 5, 4), 0, 4)]:
        assert check(*bad) == "bad_rule:PipelineCast", bad
    assert check(True, 5, 5) == "bad_field:PipelineCast.session"
    assert check((3, 4, 5)) == "bad_field:PipelineCast.session"
    assert check(3, 5, 5.0) == "bad_field:PipelineCast.first_out"
    assert check(3, True, 1) == "bad_field:PipelineCast.seq"


_ME = "tcp://h:1"


def _batch(*cmds: Any) -> Any:
    return rm.CHECKS[rm.PipelineBatch](rm.PipelineBatch(_ME, "low", list(cmds)))


def test_a_pipelined_batch_is_checked_command_by_command() -> None:
    """Every command of a ``PipelineBatch`` is held to the flat form of ``PipelineCast``; a
    batch that is not whole commands, or has one bad command anywhere, is refused whole."""
    ok = (1, "c", 3, 5, 4)
    assert _batch(*ok) is None and _batch(*ok, "x", None, None, 0, 0) is None
    assert _batch(*ok * 1000) is None
    for bad in [(3, 5, 0), (3, 4, 5), (0, 5, 5), (-1, 5, 5), (None, 5, 5), (None, 0, 1),
                ((3, 5, 4), 5, 4), ((3, 5, 4), 0, 0), (True, 5, 5), ("3", 5, 5), (3.0, 5, 5)]:
        assert _batch(*ok, 1, "c", *bad) == "bad_rule:PipelineBatch", bad
        assert _batch(*(1, "c", *bad), *ok * 3) == "bad_rule:PipelineBatch", bad
    for bad in [(3, True, 1), (3, 5, 4.0), (3, "5", 4), (None, None, 0), (None, 0, [0])]:
        assert _batch(*ok, 1, "c", *bad) == "bad_field:PipelineBatch.cmds", bad
    for cmds in [[], list(ok)[:4], list(ok) + [1], (1, "c", 3, 5, 4), {1: 2}, None, b"x" * 5]:
        m = rm.PipelineBatch(_ME, "low", cmds)   # type: ignore[arg-type]
        assert rm.CHECKS[rm.PipelineBatch](m) == "bad_field:PipelineBatch.cmds", cmds
    assert (rm.CHECKS[rm.PipelineBatch](rm.PipelineBatch("h:1", "low", list(ok)))
            == "bad_field:PipelineBatch.pid")
    assert (rm.CHECKS[rm.PipelineBatch](rm.PipelineBatch(_ME, "high", list(ok)))
            == "bad_field:PipelineBatch.priority")
    # a batch is a cast: as a call it is refused at a server's door
    assert server_proc._door(rm.PipelineBatch(_ME, "low", list(ok)), "call") \
        == "bad_kind:PipelineBatch"


_SESSION_PART = st.sampled_from([None, 0, 1, 3, -1, True, 2.0, "1", (3, 5, 4)]) | terms(2)


@_SETTINGS
@given(st.lists(st.tuples(terms(2), terms(2), _SESSION_PART, _SESSION_PART, _SESSION_PART),
                min_size=1, max_size=6))
def test_a_batch_is_valid_exactly_when_each_command_is_a_valid_flat_pipeline_cast(
        cmds: list[tuple[Any, ...]]) -> None:
    """The one validator of ``PipelineBatch`` agrees with ``PipelineCast``'s on every command
    (the older nested session form aside, which a batch never carries)."""
    def one_ok(c: tuple[Any, ...]) -> bool:
        if type(c[2]) is tuple:
            return False
        return rm.CHECKS[rm.PipelineCast](rm.PipelineCast(c[0], c[1], _ME, "low", *c[2:])) \
            is None
    r = _batch(*(x for c in cmds for x in c))
    assert (r is None) == all(one_ok(c) for c in cmds), (cmds, r)
    assert r is None or r in ("bad_rule:PipelineBatch", "bad_field:PipelineBatch.cmds")


@_SETTINGS
@given(st.sampled_from([*rm.COMMAND_KINDS, "x", 1, None]), terms(),
       st.sampled_from(["normal", "low", "x", None]),
       st.one_of(st.none(), terms(), st.tuples(st.integers(-1, 3), st.integers(-1, 3),
                                                st.integers(-1, 3))))
def test_the_written_out_command_call_check_is_the_generic_one(kind: Any, payload: Any,
                                                               prio: Any, session: Any) -> None:
    """``CommandCall``'s check is written out for speed (every process_command passes it):
    the same verdicts and reasons as the generic ``fields`` check it replaced."""
    generic = tm.fields(rm.CommandCall, tm.one_of(*rm.COMMAND_KINDS), tm.any_term,
                        tm.one_of(*rm.PRIORITIES), tm.opt(rm._session), rule=rm._command_rule)
    m = rm.CommandCall(kind, payload, prio, session)
    assert rm.CHECKS[rm.CommandCall](m) == generic(m)
