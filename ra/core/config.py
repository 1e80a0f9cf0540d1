"""Mirrors the ``ra_server_config()`` type of ra.hrl, with its defaults from ra_server.erl. The
one schema of a server's configuration, and the key-spec type the node's schema
(:mod:`ra.node.system`) is written in too.

A key is a :class:`Key`: its type, default, range or choices, whether ``restart_server`` may
change it, and a one-line doc. :data:`SERVER` lists every key of a server config, and
:meth:`Schema.validate` is the one check of a server config: it raises
:class:`~ra.core.errors.InvalidConfig` ``(key, value, allowed)`` naming the first bad key, and
``allowed`` says what would do. Everything else derives from this module: the API's checks
(:mod:`ra.client.api`), the daemon's door (:mod:`ra.messages` refuses a malformed wire config with the
key in its reason), the server process's defaults (:data:`SERVER_DEFAULTS`), the fields of
:class:`ra.core.server.ServerConfig`, and the README's table (:func:`markdown_table`;
``tests/test_config_schema.py`` keeps the two equal).

The schema describes the *wire form* that the API builds and the node records: ``name`` (the
user writes ``id``, a server id, whose node the API takes apart), ``uid``, ``cluster_name``,
``initial_members`` (``[name, node]`` pairs), ``machine`` and the tuning keys. Pure: no I/O.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ra.core.errors import InvalidConfig
from ra.core.types import check_node

__all__ = ["Key", "Schema", "REQUIRED", "SERVER", "SERVER_DEFAULTS", "markdown_table"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: the default of a key that must be given
REQUIRED: Any = _Required()


@dataclass(frozen=True, slots=True)
class Key:
    """One configuration key. ``type`` is ``int``, ``bool``, ``str`` or ``object`` (checked by
    ``pred``); an int lies in ``[low, high]``; ``choices`` bounds a str; ``pred`` is an extra
    predicate with ``allowed`` its description; ``none_ok``: ``None`` is accepted (absent).
    ``mutable``: ``restart_server(add_config=...)`` may change it. ``user``: the name users
    write when it differs from the recorded one."""

    name: str
    type: type
    default: Any = REQUIRED
    doc: str = ""
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()
    pred: Callable[[Any], bool] | None = None
    allowed_text: str = ""
    none_ok: bool = False
    mutable: bool = False
    user: str = ""
    default_text: str = ""

    @property
    def user_name(self) -> str:
        return self.user or self.name

    def ok(self, v: Any) -> bool:
        """Whether ``v`` is a valid value (exact types: ``True`` is not an int here)."""
        if v is None and self.none_ok:
            return True
        if self.type is int:
            return (type(v) is int and (self.low is None or v >= self.low)
                    and (self.high is None or v <= self.high))
        if self.type is bool:
            return type(v) is bool
        if self.type is str and type(v) is not str:
            return False
        if self.choices and v not in self.choices:
            return False
        return self.pred(v) if self.pred is not None else True

    def allowed(self) -> str:
        """What would do, in words (the ``allowed`` of its :class:`InvalidConfig`)."""
        if self.allowed_text:
            text = self.allowed_text
        elif self.type is int:
            text = ("a positive integer" if self.low == 1 else
                    "a non-negative integer" if self.low == 0 else
                    f"an integer >= {self.low}" if self.low is not None else "an integer")
            if self.high is not None:
                text += f" <= {self.high}"
        elif self.type is bool:
            text = "True or False"
        elif self.choices:
            text = " or ".join(repr(c) for c in self.choices)
        else:
            text = f"a {self.type.__name__}"
        return ("None or " + text) if self.none_ok else text

    def check(self, v: Any) -> Any:
        """Return ``v``, or raise ``InvalidConfig(name, v, allowed)``."""
        if not self.ok(v):
            raise InvalidConfig(self.user_name, v, self.allowed())
        return v

    def range_text(self) -> str:
        """The README's range column."""
        if self.type is int:
            lo = "" if self.low is None else f">= {self.low}"
            hi = "" if self.high is None else f"<= {self.high}"
            return ", ".join(x for x in (lo, hi) if x)
        return self.allowed()


class Schema:
    """An ordered table of :class:`Key`; :meth:`validate` is its one check."""

    def __init__(self, kind: str, keys: Iterable[Key]) -> None:
        self.kind = kind
        self.keys: dict[str, Key] = {}
        for k in keys:
            if k.name in self.keys:
                raise ValueError(f"{kind}: key {k.name!r} listed twice")
            self.keys[k.name] = k
        self.by_user = {k.user_name: k for k in self.keys.values()}

    def __iter__(self) -> Any:
        return iter(self.keys.values())

    def __getitem__(self, name: str) -> Key:
        return self.keys[name]

    def defaults(self) -> dict[str, Any]:
        """Every key that has a default, with it."""
        return {k.name: k.default for k in self if k.default is not REQUIRED}

    def mutable(self) -> tuple[str, ...]:
        return tuple(k.user_name for k in self if k.mutable)

    def validate(self, conf: Mapping[Any, Any], *, partial: bool = False,
                 mutable_only: bool = False) -> dict[str, Any]:
        """Check ``conf`` (wire names) and return it as a dict; raise ``InvalidConfig`` naming
        the first unknown, missing (unless ``partial``) or bad key. ``mutable_only``: a
        ``restart_server`` change, which may hold only the mutable keys."""
        if not isinstance(conf, Mapping):
            raise InvalidConfig(self.kind, conf, f"a dict of {self.kind} keys")
        for k, v in conf.items():
            key = self.keys.get(k) if type(k) is str else None
            if mutable_only and (key is not None or k in self.by_user) and not (
                    key is not None and key.mutable):
                raise InvalidConfig(str(k), v, "restart_server can change: "
                                               f"{', '.join(sorted(self.mutable()))}")
            if key is None:
                raise InvalidConfig(str(k), v, f"unknown {self.kind} key; known: "
                                               f"{', '.join(sorted(self.by_user))}")
        if not partial:
            for key in self:
                if key.default is REQUIRED and key.name not in conf:
                    raise InvalidConfig(key.user_name, None, f"required: {key.allowed()}")
        for k, v in conf.items():
            self.keys[k].check(v)
        return dict(conf)

    def fault(self, conf: Any, **kw: Any) -> str | None:
        """The key :meth:`validate` refuses ``conf`` for (``"unknown_key"`` for a key not in the
        table: a bounded name, fit for a counter), or ``None``."""
        try:
            self.validate(conf, **kw)
        except InvalidConfig as e:
            known = e.key in self.by_user or e.key in self.keys or e.key == self.kind
            return e.key if known else "unknown_key"
        return None


def _name(x: Any) -> bool:
    return x != "" and "\x00" not in x and len(x.encode("utf-8", "replace")) <= 255


def _path_component(x: Any) -> bool:
    """Names a directory: a uid is the name of the server's data directory."""
    return _name(x) and "/" not in x and not x.startswith(".")


def _node_ok(x: Any) -> bool:
    try:
        check_node(x)
    except (TypeError, InvalidConfig):
        return False
    return True


def _members(x: Any) -> bool:
    return type(x) is list and bool(x) and all(
        type(m) in (list, tuple) and len(m) == 2 and type(m[0]) is str and _name(m[0])
        and _node_ok(m[1]) for m in x)


def _import_path(x: Any) -> bool:
    """``"pkg.mod:name"``: both halves non-empty, no NUL, of a sane length."""
    if type(x) is not str or len(x) > 1024 or "\x00" in x:
        return False
    mod, sep, name = x.partition(":")
    return bool(sep and mod and name)


def _machine(x: Any) -> bool:
    return (type(x) in (list, tuple) and len(x) == 3 and x[0] in ("module", "simple")
            and _import_path(x[1]))


MACHINE_FORM = "('module', 'pkg.mod:Class', config) or ('simple', 'pkg.mod:func', initial_state)"

#: The server config (ra's ``ra_server_config()``), in the order the README lists it.
SERVER = Schema("server config", [
    Key("cluster_name", str, doc="the cluster's name", pred=_name,
        allowed_text="a non-empty str"),
    Key("name", str, user="id", doc="the server's id `(name, \"host:port\")`: where it runs",
        pred=_name, allowed_text="a server id (name, node) with a non-empty name"),
    Key("uid", str, default_text="made from the name (`ra.new_uid`)",
        doc="names the server's data directory", pred=_path_component,
        allowed_text="a str without '/' that does not start with '.'"),
    Key("initial_members", list, doc="the server ids of the cluster at its start",
        pred=_members, allowed_text='a non-empty list of server ids (name, "host:port")'),
    Key("machine", object, doc="the state machine, imported by the server's process",
        pred=_machine, allowed_text=MACHINE_FORM, mutable=True),
    Key("election_timeout_ms", int, 1000, low=1, mutable=True,
        doc="a follower that hears nothing campaigns after a random time in [T, 2T) (a lost "
            "leader is usually noticed much sooner: its connection closes)"),
    Key("heartbeat_ms", int, 100, low=1, mutable=True, doc="leader heartbeats"),
    Key("quiet_when_idle", bool, True,
        doc="idle is free: a leader whose followers hold its whole log and its commit index "
            "sends nothing and runs no timer, and its followers run no election timer while the "
            "node failure detector and the connection say their leader is alive; a follower "
            "that lost it (a restart, a dropped connection) finds it again by its pre-vote, "
            "which the leader answers with an append; a member that does not answer 3 "
            "heartbeats (down, cut off) is heartbeated every 4th period until it answers; a "
            "client request at a follower makes it "
            "probe the leader (a hung leader process is replaced within 2 election timeouts of "
            "a client asking a follower, and only then); give every member the same value "
            "(contract: `ra.core.server`, 'Quiet when idle')"),
    Key("tick_ms", int, 1000, low=1, mutable=True,
        doc="the machine's `tick` (a leader's, every `tick_ms`) and housekeeping (jittered "
            "±5 %; an idle server's backs off up to 32 `tick_ms` until its next commit)"),
    Key("max_append_entries_rpc_batch_size", int, 1024, low=1, mutable=True,
        doc="entries per AppendEntries RPC (ra's default is 128: a message costs a Python "
            "process more than it costs BEAM; one of more than 16 MiB of commands leaves in "
            "parts)"),
    Key("max_pipeline_count", int, 4096, low=1, mutable=True,
        doc="entries a follower may have unacknowledged"),
    Key("low_priority_batch_size", int, 1024, low=1, mutable=True,
        doc="low-priority commands appended per flush (each flush sends its own appends)"),
    Key("snapshot_chunk_size", int, 1 << 20, low=1, mutable=True,
        doc="bytes per install_snapshot chunk"),
    Key("group_commit_ms", int, 2, low=0, mutable=True,
        doc="while a leader's previous batch is uncommitted, new commands wait up to this long "
            "so that they leave together (one append per follower, one WAL write); a leader "
            "with nothing uncommitted never waits; 0 turns it off"),
    Key("durable_replies", bool, True, mutable=True,
        doc="a follower hands its answer to an append to its node's WAL with the write, and "
            "the WAL sends it to the leader the moment the write is synced, one process hop "
            "before the follower could (`ra.core.effects.DurableReply`); only while nothing "
            "else of it is unconfirmed but the previous such write (a follower with other "
            "writes in flight answers on each `Written` itself). With the WAL's "
            "`wal_notice_defer_ms`, W1 on 2 vCPUs: -2 to -7 % (BENCHMARKS.md, sessions 21 "
            "and 24)"),
    Key("max_checkpoints", int, 10, low=1, mutable=True, doc="checkpoints kept"),
    Key("min_checkpoint_interval", int, 0, low=0, mutable=True,
        doc="entries between two checkpoints (ra's default interval is 16384; 0 takes every "
            "checkpoint asked for)"),
])

#: The defaults of every server key that has one (the server process starts from these).
SERVER_DEFAULTS: dict[str, Any] = SERVER.defaults()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(schema: Schema) -> str:
    """The README's table of ``schema``: key, default, allowed values, whether
    ``restart_server`` may change it (for a schema where some key is mutable), meaning."""
    mutable = any(k.mutable for k in schema)     # a column only where something is
    rows = ["| key | default | allowed |" + (" `restart_server` |" if mutable else "")
            + " meaning |", "|---|---|---|" + ("---|" if mutable else "") + "---|"]
    for k in schema:
        if k.default_text:
            default = k.default_text
        elif k.default is REQUIRED:
            default = "required"
        else:
            default = f"`{k.default!r}`"
        mut = (" yes |" if k.mutable else " no |") if mutable else ""
        rows.append(f"| `{k.user_name}` | {_cell(default)} | {_cell(k.range_text())} |{mut} "
                    f"{_cell(k.doc)} |")
    return "\n".join(rows) + "\n"
