"""Non-blocking name resolution: :class:`transport.registry.Resolver` against a fake mailbox and
clock (no processes), the registry's answer to ``RegResolve``, and the two messages'
validators on hostile fields. The end-to-end run with node daemons is in
tests/api/test_peer_resolve.py."""
from __future__ import annotations

from typing import Any

import pytest

from transport import codec
from transport import messages as tm
from transport.envelope import Envelope, From
from transport.registry import Registry, RegistryServer, Resolver, invalidate_node, resolve

NODE = "127.0.0.1:7001"
OTHER = "127.0.0.1:7002"


class _Mb:
    """What a Resolver uses of a mailbox: casts are recorded, never sent."""

    def __init__(self) -> None:
        self.casts: list[tuple[str, Any]] = []
        self.nodes: dict[str, str] = {}
        self.refuse = False
        self.name_cache: dict[tuple[str, str], str] = {}   # the registry's, per mailbox

    def cast(self, to: str, msg: Any) -> None:
        if self.refuse:
            raise ValueError(f"bad mailbox address {to!r}")
        codec.encode(msg)           # what leaves must be a term the codec carries
        self.casts.append((to, msg))

    def note_node(self, ep: str, node_ep: str) -> None:
        self.nodes[ep] = node_ep

    def reply_address(self, to: str) -> str:
        return "tcp://127.0.0.1:9999"


class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _resolver(**kw: Any) -> tuple[Resolver, _Mb, _Clock]:
    mb, clock = _Mb(), _Clock()
    return Resolver(mb, clock=clock, **kw), mb, clock  # type: ignore[arg-type]


def test_one_request_in_flight_per_name_and_the_answer_fills_the_cache() -> None:
    r, mb, clock = _resolver(timeout=1.0)
    assert r.request("s1", NODE)
    assert mb.casts == [("tcp://" + NODE, tm.RegResolve("s1", NODE, "tcp://127.0.0.1:9999"))]
    assert not r.request("s1", NODE)                # in flight: not asked again
    assert r.pending("s1", NODE) and len(mb.casts) == 1
    assert r.request("s2", NODE)                    # another name on the same node is
    assert r.next_deadline() == clock.t + 1.0
    got = r.on_resolved(tm.RegResolved("s1", NODE, ["tcp://127.0.0.1:5000"]))
    assert got == (("s1", NODE), "tcp://127.0.0.1:5000")
    assert r.cached("s1", NODE) == "tcp://127.0.0.1:5000"
    # the cache is the mailbox's: the blocking resolve() finds it without a call
    assert resolve(mb, "s1", NODE) == "tcp://127.0.0.1:5000"  # type: ignore[arg-type]
    assert mb.nodes["tcp://127.0.0.1:5000"] == "tcp://" + NODE
    assert not r.pending("s1", NODE)
    invalidate_node(mb, NODE)                       # type: ignore[arg-type]
    assert r.cached("s1", NODE) is None
    assert r.counters["requests"] == 2 and r.counters["resolved"] == 1


def test_an_answer_nobody_asked_for_is_ignored() -> None:
    r, mb, clock = _resolver()
    assert r.on_resolved(tm.RegResolved("evil", NODE, ["tcp://6.6.6.6:1"])) is None
    assert r.cached("evil", NODE) is None
    r.request("s1", NODE)
    assert r.on_resolved(tm.RegResolved("s1", OTHER, ["tcp://6.6.6.6:1"])) is None  # wrong node
    assert r.on_resolved(tm.RegResolved("s1", NODE, ["tcp://127.0.0.1:5"])) is not None
    # answered once: a duplicate cannot overwrite it
    assert r.on_resolved(tm.RegResolved("s1", NODE, ["tcp://6.6.6.6:1"])) is None
    assert r.cached("s1", NODE) == "tcp://127.0.0.1:5"
    assert r.counters["ignored"] == 3


def test_expiry_backs_the_node_off_doubling_and_a_late_answer_is_taken() -> None:
    r, mb, clock = _resolver(timeout=1.0, backoff=0.5, max_backoff=2.0)
    r.request("s1", NODE)
    r.request("s2", NODE)
    r.request("s3", OTHER)
    clock.t += 0.5
    assert r.expire() == []
    r.on_resolved(tm.RegResolved("s3", OTHER, ["tcp://127.0.0.1:3"]))
    clock.t += 0.5
    assert sorted(r.expire()) == [("s1", NODE), ("s2", NODE)]
    assert r.next_deadline() is None and r.counters["timeouts"] == 2
    assert not r.request("s1", NODE)        # its node backs off 0.5 s (once for both names)
    assert r.request("s9", OTHER)           # another node does not
    r.on_resolved(tm.RegResolved("s9", OTHER, ["tcp://127.0.0.1:9"]))
    clock.t += 0.5
    assert r.request("s1", NODE)            # asked again after the back-off
    clock.t += 1.0
    assert r.expire() == [("s1", NODE)]
    clock.t += 0.9
    assert not r.request("s1", NODE)        # second miss in a row: 1 s
    clock.t += 0.1
    assert r.request("s1", NODE)
    clock.t += 1.0
    assert r.expire() == [("s1", NODE)]     # third miss: 2 s
    clock.t += 2.0
    assert r.request("s1", NODE)
    clock.t += 1.0
    assert r.expire() == [("s1", NODE)]     # fourth miss: capped at 2 s, not 4
    clock.t += 1.99
    assert not r.request("s1", NODE)
    clock.t += 0.01
    assert r.request("s1", NODE)
    # an answer after its request expired still counts, and ends the node's back-off
    clock.t += 1.0
    assert r.expire() == [("s1", NODE)]
    assert r.on_resolved(tm.RegResolved("s1", NODE, ["tcp://127.0.0.1:1"])) is not None
    assert r.request("s2", NODE)


def test_not_registered_is_remembered_briefly_and_nodeup_forgets_it() -> None:
    r, mb, clock = _resolver(noproc_backoff=0.2, max_backoff=0.5)
    r.request("s1", NODE)
    assert r.on_resolved(tm.RegResolved("s1", NODE, None)) == (("s1", NODE), None)
    assert r.cached("s1", NODE) is None
    assert not r.request("s1", NODE)
    clock.t += 0.2
    assert r.request("s1", NODE)
    r.on_resolved(tm.RegResolved("s1", NODE, None))
    clock.t += 0.2
    assert not r.request("s1", NODE)        # twice in a row: 0.4 s
    clock.t += 0.2
    assert r.request("s1", NODE)
    r.on_resolved(tm.RegResolved("s1", NODE, None))
    clock.t += 0.49
    assert not r.request("s1", NODE)        # capped at max_backoff
    clock.t += 0.01
    assert r.request("s1", NODE)
    r.on_resolved(tm.RegResolved("s1", NODE, None))
    r.forget_node(NODE)                     # nodeup: asked again at once
    assert r.request("s1", NODE)
    r.on_resolved(tm.RegResolved("s1", NODE, ["tcp://127.0.0.1:1"]))
    r.forget_node(OTHER)
    invalidate_node(mb, NODE)               # type: ignore[arg-type]
    assert r.request("s1", NODE)            # found once: the count starts again
    r.on_resolved(tm.RegResolved("s1", NODE, None))
    clock.t += 0.2
    assert r.request("s1", NODE)
    assert r.counters["noproc"] == 5


def test_a_node_the_socket_layer_refuses_backs_off_without_raising() -> None:
    r, mb, clock = _resolver(max_backoff=4.0)
    mb.refuse = True
    assert not r.request("s1", NODE)
    assert not r.pending("s1", NODE)
    mb.refuse = False
    assert not r.request("s1", NODE)
    clock.t += 4.0
    assert r.request("s1", NODE)


def test_picks_the_ipc_endpoint_of_a_local_node_that_exists(tmp_path: Any) -> None:
    sock = tmp_path / "s.sock"
    sock.write_bytes(b"")
    r, mb, clock = _resolver()
    r.request("s1", NODE)
    got = r.on_resolved(tm.RegResolved("s1", NODE, ["tcp://127.0.0.1:5", f"ipc://{sock}"]))
    assert got == (("s1", NODE), f"ipc://{sock}")


# -- the daemon's side ----------------------------------------------------------------------

class _ServerMb(_Mb):
    def __init__(self) -> None:
        super().__init__()
        self.replies: list[Any] = []

    def reply(self, frm: Any, value: Any) -> None:
        self.replies.append(value)


def test_registry_answers_a_resolve_cast_by_a_cast_to_reply_to() -> None:
    srv = RegistryServer(Registry(is_alive=lambda pid: pid == 5))
    srv.answer(tm.RegRegister("s1", ["ipc:///x", "tcp://127.0.0.1:5"], 5))
    srv.answer(tm.RegRegister("dead", ["ipc:///y"], 6))
    mb = _ServerMb()
    ask = tm.RegResolve("s1", NODE, "tcp://127.0.0.1:9")
    assert srv.handle(mb, Envelope("cast", From("tcp://127.0.0.1:9", 0), ask))  # type: ignore[arg-type]
    assert srv.handle(mb, Envelope("cast", From("tcp://127.0.0.1:9", 0),  # type: ignore[arg-type]
                                   tm.RegResolve("dead", NODE, "tcp://127.0.0.1:9")))
    assert mb.casts == [
        ("tcp://127.0.0.1:9", tm.RegResolved("s1", NODE, ["ipc:///x", "tcp://127.0.0.1:5"])),
        ("tcp://127.0.0.1:9", tm.RegResolved("dead", NODE, None))]
    # called instead of cast: refused with a reason, nothing cast
    assert srv.handle(mb, Envelope("call", From("tcp://127.0.0.1:9", 1), ask))  # type: ignore[arg-type]
    assert mb.replies == [("error", "bad_request", "bad_kind:RegResolve")]
    # malformed: dropped and counted, never raises
    for bad in (tm.RegResolve("", NODE, "tcp://h:1"), tm.RegResolve("s", "nonode", "tcp://h:1"),
                tm.RegResolve("s", NODE, "http://h:1"), tm.RegResolve(["s"], NODE, 7)):  # type: ignore[arg-type]
        assert srv.handle(mb, Envelope("cast", From("tcp://h:1", 0), bad))  # type: ignore[arg-type]
    assert len(mb.casts) == 2 and sum(srv.dropped.values()) == 5
    # an answer that cannot leave is counted, not raised
    mb.refuse = True
    srv.resolve_to(mb, ask)     # type: ignore[arg-type]
    assert srv.dropped["unsendable:RegResolved"] == 1


def test_with_a_relay_other_nodes_are_asked_through_it_and_its_own_directly() -> None:
    r, mb, clock = _resolver(timeout=1.0, relay="tcp://" + NODE)
    assert r.request("s1", OTHER)
    assert r.request("s1", NODE)
    assert mb.casts == [
        ("tcp://" + NODE, tm.RegRelay("s1", OTHER, "tcp://127.0.0.1:9999")),
        ("tcp://" + NODE, tm.RegResolve("s1", NODE, "tcp://127.0.0.1:9999"))]
    assert not r.request("s1", OTHER)               # one in flight per name, as ever
    # the relayed answer is taken like a direct one; the endpoint's node is OTHER
    assert r.on_resolved(tm.RegResolved("s1", OTHER, ["tcp://127.0.0.1:5"])) == (
        ("s1", OTHER), "tcp://127.0.0.1:5")
    assert r.cached("s1", OTHER) == "tcp://127.0.0.1:5"
    assert mb.nodes["tcp://127.0.0.1:5"] == "tcp://" + OTHER
    assert r.on_resolved(tm.RegResolved("s1", NODE, ["tcp://127.0.0.1:6"])) is not None
    # an unanswered relay backs OTHER off, not the relay
    assert r.request("s2", OTHER)
    clock.t += 1.01
    assert r.expire() == [("s2", OTHER)]
    assert not r.request("s3", OTHER)
    assert r.request("s3", NODE)


def _relayed(srv: RegistryServer, mb: _ServerMb, name: str, node: str, to: str) -> bool:
    return srv.handle(mb, Envelope("cast", From(to, 0),  # type: ignore[arg-type]
                                   tm.RegRelay(name, node, to)))


def test_registry_relays_a_question_once_and_answers_every_asker() -> None:
    t = [50.0]
    srv = RegistryServer(clock=lambda: t[0])
    mb = _ServerMb()
    a, b = "tcp://127.0.0.1:21", "tcp://127.0.0.1:22"
    assert _relayed(srv, mb, "s1", OTHER, a)
    assert _relayed(srv, mb, "s1", OTHER, b)        # the same question: not asked again
    assert _relayed(srv, mb, "s1", OTHER, a)        # the same asker twice: answered once
    assert mb.casts == [("tcp://" + OTHER, tm.RegResolve("s1", OTHER, "tcp://127.0.0.1:9999"))]
    answer = tm.RegResolved("s1", OTHER, ["tcp://127.0.0.1:5"])
    assert srv.handle(mb, Envelope("cast", From("tcp://" + OTHER, 0), answer))  # type: ignore[arg-type]
    assert mb.casts[1:] == [(a, answer), (b, answer)]
    # a second answer, or one to nothing asked, plants nothing
    for ans in (answer, tm.RegResolved("s9", OTHER, ["tcp://127.0.0.1:6"])):
        srv.handle(mb, Envelope("cast", From("tcp://h:1", 0), ans))  # type: ignore[arg-type]
    assert len(mb.casts) == 3 and srv.relay_counters["ignored"] == 2
    # an unanswered question is forgotten after RELAY_TIMEOUT; the next one leaves again
    assert _relayed(srv, mb, "s2", OTHER, a)
    t[0] += srv.RELAY_TIMEOUT + 0.01
    srv.handle(mb, Envelope("cast", From("tcp://h:1", 0),  # type: ignore[arg-type]
                            tm.RegResolved("s2", OTHER, ["tcp://127.0.0.1:7"])))
    assert len(mb.casts) == 4 and srv.relay_counters["expired"] == 1
    assert _relayed(srv, mb, "s2", OTHER, a) and len(mb.casts) == 5
    # its node reported down or up: the open question is dropped, the next ask leaves at once
    srv.forget_node("tcp://" + OTHER)
    assert _relayed(srv, mb, "s2", OTHER, a) and len(mb.casts) == 6
    # called instead of cast, or malformed: refused and counted, nothing relayed
    assert srv.handle(mb, Envelope("call", From(a, 1), tm.RegRelay("s3", OTHER, a)))  # type: ignore[arg-type]
    assert srv.handle(mb, Envelope("call", From(a, 1), answer))  # type: ignore[arg-type]
    assert mb.replies == [("error", "bad_request", "bad_kind:RegRelay"),
                          ("error", "bad_request", "bad_kind:RegResolved")]
    assert _relayed(srv, mb, "s3", "nonode", a) and len(mb.casts) == 6
    assert srv.dropped == {"bad_kind:RegRelay": 1, "bad_kind:RegResolved": 1,
                           "bad_field:RegRelay.node": 1}
    assert srv.relay_counters["relayed"] == 4 and srv.relay_counters["joined"] == 2


def test_registry_relays_are_bounded() -> None:
    srv = RegistryServer(clock=lambda: 0.0)
    srv.MAX_RELAYS, srv.MAX_ASKERS = 3, 2           # type: ignore[misc]
    mb = _ServerMb()
    for k in range(5):
        _relayed(srv, mb, f"s{k}", OTHER, "tcp://127.0.0.1:21")
    for port in (22, 23, 24):
        _relayed(srv, mb, "s0", OTHER, f"tcp://127.0.0.1:{port}")
    assert len(mb.casts) == 3                       # 3 questions open, the others refused
    assert srv.relay_counters["refused"] == 2 + 2   # 2 questions, 2 askers past the cap
    mb.refuse = True                                # a node the socket layer refuses
    srv2 = RegistryServer(clock=lambda: 0.0)
    _relayed(srv2, mb, "s0", OTHER, "tcp://127.0.0.1:21")
    assert srv2.relay_counters["refused"] == 1 and not srv2._relayed


@pytest.mark.parametrize("msg,reason", [
    (tm.RegResolve("s", NODE, "tcp://h:1"), None),
    (tm.RegResolve("s", "tcp://" + NODE, "ipc:///p"), None),
    (tm.RegResolve("", NODE, "tcp://h:1"), "bad_field:RegResolve.name"),
    (tm.RegResolve(b"s", NODE, "tcp://h:1"), "bad_field:RegResolve.name"),
    (tm.RegResolve("s", "h:99999", "tcp://h:1"), "bad_field:RegResolve.node"),
    (tm.RegResolve("s", NODE, "tcp://h:0"), "bad_field:RegResolve.reply_to"),
    (tm.RegResolve("s", NODE, None), "bad_field:RegResolve.reply_to"),
    (tm.RegRelay("s", NODE, "tcp://h:1"), None),
    (tm.RegRelay("", NODE, "tcp://h:1"), "bad_field:RegRelay.name"),
    (tm.RegRelay("s", "h", "tcp://h:1"), "bad_field:RegRelay.node"),
    (tm.RegRelay("s", NODE, "tcp://h:0"), "bad_field:RegRelay.reply_to"),
    (tm.RegResolved("s", NODE, None), None),
    (tm.RegResolved("s", NODE, ["ipc:///a", "tcp://h:1"]), None),
    (tm.RegResolved("s", NODE, []), "bad_field:RegResolved.endpoints"),
    (tm.RegResolved("s", NODE, ("tcp://h:1",)), "bad_field:RegResolved.endpoints"),
    (tm.RegResolved("s", NODE, ["tcp://h:1"] * 17), "bad_field:RegResolved.endpoints"),
    (tm.RegResolved("s", NODE, ["tcp://h:1", 5]), "bad_field:RegResolved.endpoints"),
    (tm.RegResolved("s", NODE, {"tcp://h:1": 1}), "bad_field:RegResolved.endpoints"),
    (tm.RegResolved("s", None, None), "bad_field:RegResolved.node"),
    (tm.RegResolved(None, NODE, None), "bad_field:RegResolved.name"),
])
def test_validators(msg: Any, reason: str | None) -> None:
    assert tm.check(msg) == reason
    if reason is None:      # a valid message crosses the wire as itself
        assert codec.decode(codec.encode(msg)) == msg


def test_codes_are_fixed_and_distinct() -> None:
    assert tm.CODES[100] is tm.RegResolve and tm.CODES[101] is tm.RegResolved
    assert tm.CODES[102] is tm.RegRelay
    reg = codec.registered()
    assert reg[100] is tm.RegResolve and reg[101] is tm.RegResolved and reg[102] is tm.RegRelay
