"""One schema per config kind (issue 16 part 3): the server config (``ra.core.config.SERVER``)
and the node config (``ra.node.system.SystemConfig`` / ``NODE``).

* structure: every place that needs a key's default or check takes it from the schema, and no
  other module keeps a list of config keys (an AST scan for literal collections of key names);
* every bad value of every key raises ``InvalidConfig`` naming that key, at each way in:
  ``ra.start(...)``, ``ra.start_server(...)`` / ``ra.start_cluster(...)``,
  ``ra.restart_server(sid, add_config)``, and the daemon's door for a forged wire config (the
  door here; a real daemon in ``tests/api/test_bad_input.py``). The API checks before it sends
  anything, so none of these need a node;
* the README's config tables are the schema's (generated; this test keeps them equal).
"""
from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

import ra
from ra import messages as rm
from ra.node import daemon as ranode
from ra.server import proc as server_proc
from ra.node import system
from ra.core import server as core
from ra.core.config import REQUIRED, SERVER, SERVER_DEFAULTS, Key, markdown_table
from ra.errors import InvalidConfig
from ra.node.sup import wal_child_specs
from wal import config as walcfg

REPO = Path(__file__).resolve().parents[1]
NODE_ADDR = "127.0.0.1:9"          # never contacted: every config is checked before sending
SID = ra.ServerId("s", NODE_ADDR)
MACHINE = ("module", "ra.testing.machines:Counter", None)
GOOD_USER = {"cluster_name": "c", "id": SID, "initial_members": [SID], "machine": MACHINE}
#: modules allowed to list config keys: the schemas themselves
SCHEMA_MODULES = {"ra/core/config.py", "ra/node/system.py", "wal/config.py"}


# --- bad values, from each key's spec ---------------------------------------------------------

_BY_HAND: dict[str, list[Any]] = {
    # the user form of the identity keys
    "cluster_name": ["", 3, None],
    "id": [None, "s", ("s",), ("", NODE_ADDR), ("s", "nohost"), ("s", "h:0")],
    "uid": ["a/b", ".hidden", 5],
    "initial_members": [[], "s", [("s", "h:99999")], [("s",)], None],
    "machine": [None, ("bogus", "x:y", None), ("module", "nocolon", None), ("module", "m:C"),
                ("module", "m:C", object())],
    # node keys whose check is a predicate
    "data_dir": ["", 3],
    "wal_data_dir": ["", 3],
    "listen": ["nohost", "h:", "h:70000", ":1", 5],
    "wal_endpoint": ["nowhere", 5],
    "metrics": ["nohost", "h:70000", 9100],
    "advertise": ["nohost", "h:70000", "0.0.0.0:7000", "[::]:7000", 7000],
    "cookie_file": ["", 3],
    "curve_secret_key_file": ["", 3],
    "curve_allow": ["", 3],
    "log_children": ["nocolon", ":f", 5],
    "log_file": ["", 3],
}


def bad_values(key: Key) -> list[Any]:
    """Values ``key`` must refuse."""
    if key.user_name in _BY_HAND:
        return _BY_HAND[key.user_name]
    if key.type is int:
        out: list[Any] = [True, "1", 1.5]
        if key.low is not None:
            out.append(key.low - 1)
        if key.high is not None:
            out.append(key.high + 1)
        return out
    if key.type is bool:
        return [1, "yes", 0]
    if key.choices:
        return ["nope", 1]
    raise AssertionError(f"no bad values for {key.name}: add some to _BY_HAND")


SERVER_BAD = [(k.user_name, v) for k in SERVER for v in bad_values(k)]
NODE_BAD = [(k.name, v) for k in system.NODE for v in bad_values(k)]
MUTABLE_BAD = [(k.user_name, v) for k in SERVER if k.mutable for v in bad_values(k)
               if v is not None]


def _raises_for(key: str, fn: Any, *args: Any, **kw: Any) -> InvalidConfig:
    with pytest.raises(InvalidConfig) as ei:
        fn(*args, **kw)
    assert ei.value.key == key, (key, ei.value)
    assert ei.value.allowed, ei.value
    return ei.value


# --- structure --------------------------------------------------------------------------------

def test_every_consumer_derives_from_the_schemas() -> None:
    assert server_proc.DEFAULTS is SERVER_DEFAULTS
    core_fields = {f.name: f.default for f in dataclasses.fields(core.ServerConfig)}
    tuning = {k: v for k, v in core_fields.items() if k in SERVER_DEFAULTS}
    assert len(tuning) == 6 and all(tuning[k] == SERVER[k].default for k in tuning)
    assert [f.name for f in dataclasses.fields(system.SystemConfig)] == list(system.NODE.keys)
    assert ranode.ENV_KEYS is system.KEYS and ranode.validate_env is system.validate_env
    assert not hasattr(rm, "TUNING_KEYS")
    # ra's node schema maps onto the WAL's: every WAL default ra leaves alone is the WAL's own
    specs = wal_child_specs({"data_dir": "/tmp/x", "segment_max_entries": 7})
    wal, seg = specs[0].start.args[0], specs[1].start.args[0]
    assert isinstance(wal, walcfg.WalConfig) and isinstance(seg, walcfg.SegmentWriterConfig)
    assert wal.segment_max_entries == seg.segment_max_entries == 7
    assert wal.max_batch_bytes == system.NODE["wal_max_batch_bytes"].default
    assert specs[0].start.target == "wal.wal:run"
    assert walcfg.from_argv(walcfg.WalConfig, walcfg.to_argv(wal), "wal.wal") == wal
    assert walcfg.from_argv(walcfg.SegmentWriterConfig, walcfg.to_argv(seg), "sw") == seg


def _key_literals(tree: ast.AST, names: set[str]) -> list[tuple[int, list[str]]]:
    """Literal collections (tuple, list, set; a dict of constant values: a defaults table) that
    hold two or more config key names."""
    out = []
    for node in ast.walk(tree):
        elts: list[ast.expr | None] = []
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            elts = list(node.elts)
        elif isinstance(node, ast.Dict) and all(isinstance(v, ast.Constant)
                                                 for v in node.values):
            elts = list(node.keys)
        keys = [e.value for e in elts if isinstance(e, ast.Constant) and e.value in names]
        if len(keys) >= 2:
            out.append((getattr(node, "lineno", 0), keys))
    return out


def test_no_other_module_keeps_a_list_of_config_keys() -> None:
    names = set(SERVER.keys) | set(SERVER.by_user) | set(system.NODE.keys)
    found = {}
    for pkg in ("ra", "wal", "transport", "supervisor"):
        for p in sorted((REPO / pkg).rglob("*.py")):
            rel = p.relative_to(REPO).as_posix()
            if rel in SCHEMA_MODULES:
                continue
            hits = _key_literals(ast.parse(p.read_text()), names)
            if hits:
                found[rel] = hits
    assert not found, f"config keys listed outside their schema: {found}"


def test_the_scan_would_see_a_list_of_keys() -> None:
    tree = ast.parse('K = ("heartbeat_ms", "tick_ms")\nD = {"data_dir": 1, "listen": "x"}')
    assert [k for _, k in _key_literals(tree, {"heartbeat_ms", "tick_ms", "data_dir",
                                               "listen"})] == [["heartbeat_ms", "tick_ms"],
                                                               ["data_dir", "listen"]]


def test_every_key_has_a_doc_and_its_default_passes_its_own_check() -> None:
    for k in [*SERVER, *system.NODE]:
        assert k.doc, k.name
        if k.default is not REQUIRED and k.default is not None:
            assert k.ok(k.default), k.name


# --- each bad value of each key ----------------------------------------------------------------

@pytest.mark.parametrize("key,value", SERVER_BAD)
def test_start_server_names_the_bad_key(key: str, value: Any) -> None:
    conf = dict(GOOD_USER, **{key: value})
    if value is None and key != "id" and SERVER.by_user[key].default is REQUIRED:
        del conf[key]                   # a required key that is missing
    e = _raises_for(key, ra.start_server, conf)
    assert key in str(e)


@pytest.mark.parametrize("key,value", SERVER_BAD)
def test_start_cluster_names_the_bad_key(key: str, value: Any) -> None:
    conf = dict(GOOD_USER, **{key: value})
    _raises_for(key, ra.start_cluster, [dict(GOOD_USER), conf])


@pytest.mark.parametrize("key,value", MUTABLE_BAD)
def test_restart_server_add_config_names_the_bad_key(key: str, value: Any) -> None:
    _raises_for(key, ra.restart_server, SID, {key: value})


@pytest.mark.parametrize("key", [k.user_name for k in SERVER if not k.mutable])
def test_restart_server_refuses_a_key_it_cannot_change(key: str) -> None:
    e = _raises_for(key, ra.restart_server, SID, {key: GOOD_USER.get(key, "u1")})
    assert "restart_server can change" in e.allowed


def test_unknown_server_keys() -> None:
    e = _raises_for("no_such_key", ra.start_server, dict(GOOD_USER, no_such_key=1))
    assert "heartbeat_ms" in e.allowed
    _raises_for("name", ra.start_server, dict(GOOD_USER, name="s"))    # wire-only: write id
    _raises_for("no_such_key", ra.restart_server, SID, {"no_such_key": 1})


def _wire(conf: dict[str, Any]) -> dict[str, Any]:
    from ra.client.api import _server_conf
    out = _server_conf(conf)
    out.pop("node")
    return out


@pytest.mark.parametrize("key", list(SERVER.keys))
def test_the_door_refuses_a_forged_wire_config_naming_the_key(key: str) -> None:
    """A wire config the API would never send, for every key: the daemon's door check (the
    schema's validator) refuses it and its reason names the key."""
    good = _wire(GOOD_USER)
    assert ranode._door(rm.StartServer(good), "call") is None
    spec = SERVER[key]
    wire_bad = {"name": ["", 5], "initial_members": [[], [["s", "nohost"]], [["s"]]],
                "machine": [["bogus", "x:y", None], ["module", "m:C"]],
                "uid": ["a/b", ".x", 5], "cluster_name": ["", 3]}
    values = wire_bad.get(key) or bad_values(spec)
    for v in values:
        reason = ranode._door(rm.StartServer(dict(good, **{key: v})), "call")
        assert reason == f"bad_field:StartServer.conf.{spec.user_name}", (key, v, reason)
        if spec.mutable and v is not None:
            reason = ranode._door(rm.RestartServer("s", {key: v}), "call")
            assert reason == f"bad_field:RestartServer.add_config.{key}", (key, v, reason)
    if spec.default is REQUIRED:
        missing = {k: v for k, v in good.items() if k != key}
        assert (ranode._door(rm.StartServer(missing), "call")
                == f"bad_field:StartServer.conf.{spec.user_name}")


@pytest.mark.parametrize("key,value", NODE_BAD)
def test_ra_start_names_the_bad_key(key: str, value: Any, tmp_path: Path) -> None:
    env = {"data_dir": str(tmp_path / "d"), key: value}
    _raises_for(key, ra.start, **env)
    assert not (tmp_path / "d").exists()          # refused before anything was made
    _raises_for(key, system.system_config, env)


def test_node_config_none_means_default_and_unknown_keys_are_named(tmp_path: Path) -> None:
    assert system.validate_env({"segment_max_entries": None, "listen": None}) == {}
    _raises_for("nope", ra.start, data_dir=str(tmp_path), nope=1)
    _raises_for("data_dir", system.system_config, {})
    assert system.validate_env({"data_dir": tmp_path})["data_dir"] == os.fspath(tmp_path)


def test_a_wildcard_listen_needs_an_advertised_address(tmp_path: Path) -> None:
    for wild in ("0.0.0.0:7000", "[::]:0"):
        e = _raises_for("advertise", ra.start, data_dir=str(tmp_path / "d"), listen=wild)
        assert "wildcard" in str(e) and wild in str(e)
        _raises_for("advertise", system.system_config, {"data_dir": "d", "listen": wild})
    assert not (tmp_path / "d").exists()
    assert system.validate_env({"listen": "0.0.0.0:7000", "advertise": "10.0.0.1:0"}) == {
        "listen": "0.0.0.0:7000", "advertise": "10.0.0.1:0"}
    assert system.node_address("0.0.0.0:7000", "10.0.0.1:0") == "10.0.0.1:7000"
    assert system.node_address("0.0.0.0:7000", "203.0.113.9:17000") == "203.0.113.9:17000"
    assert system.node_address("127.0.0.1:7000", None) == "127.0.0.1:7000"


# --- the README --------------------------------------------------------------------------------

def _readme_table(tag: str) -> str:
    text = (REPO / "README.md").read_text()
    start, end = f"<!-- {tag}: generated from the schema -->\n", f"<!-- /{tag} -->"
    assert start in text and end in text, f"README lost its {tag} markers"
    return text.split(start, 1)[1].split(end, 1)[0]


@pytest.mark.parametrize("tag,table", [("server-config", SERVER), ("node-config", system.NODE)],
                         ids=["server", "node"])
def test_readme_tables_are_the_schemas(tag: str, table: Any) -> None:
    assert _readme_table(tag) == markdown_table(table), (
        f"README's {tag} table differs from the schema; paste this:\n{markdown_table(table)}")
