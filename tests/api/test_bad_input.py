"""Bad input: each a clear typed error, and nothing is written."""
from __future__ import annotations

import os

import pytest

import ra
from tests.api.conftest import COUNTER

pytestmark = pytest.mark.integration


def test_unserialisable_command_raises_type_error_before_sending(cluster):
    with pytest.raises(TypeError, match="object"):
        ra.process_command(cluster, object())
    with pytest.raises(TypeError, match=r"\[1\]"):
        ra.process_command(cluster, [1, lambda: 0])
    with pytest.raises(TypeError):
        ra.pipeline_command(cluster[0], {"k": object()}, correlation=1)
    with pytest.raises(TypeError, match="correlation"):
        ra.pipeline_command(cluster[0], 1, correlation=object())
    assert ra.process_command(cluster, 1)[0] == 1       # only this one reached the log


def test_lambda_query_raises_type_error(cluster):
    with pytest.raises(TypeError, match="lambda|top-level"):
        ra.consistent_query(cluster, lambda s: s)

    def closure(s):
        return s
    with pytest.raises(TypeError, match="top-level"):
        ra.local_query(cluster[0], closure)


def test_unknown_server_on_live_node_is_noproc(shared_three):
    with pytest.raises(ra.NoProc):
        ra.process_command(shared_three.sid("nobody", 0), 1, timeout=2)
    with pytest.raises(ra.NoProc):
        ra.ping(shared_three.sid("nobody", 1))


def test_unknown_node_is_nodedown(shared_three):
    with pytest.raises(ra.NodeDown):
        ra.process_command(ra.ServerId("c", "127.0.0.1:9"), 1, timeout=2)
    with pytest.raises(ra.NodeDown):
        ra.restart_server(ra.ServerId("c", "127.0.0.1:9"))


def test_wrong_argument_types(shared_three):
    with pytest.raises(TypeError, match="server_loc"):
        ra.process_command("not-a-server", 1)
    with pytest.raises(TypeError, match="server_loc"):
        ra.process_command([], 1)
    with pytest.raises(TypeError, match="timeout"):
        ra.process_command(shared_three.sid("c", 0), 1, timeout="soon")
    with pytest.raises(ValueError, match="priority"):
        ra.pipeline_command(shared_three.sid("c", 0), 1, priority="urgent")
    with pytest.raises(TypeError):
        ra.start_cluster("c", COUNTER)
    with pytest.raises(TypeError):
        ra.new_uid(5)


def test_machine_that_does_not_import_is_invalid_config_and_writes_nothing(three):
    ids = [three.sid("fresh", i) for i in range(3)]
    with pytest.raises(ra.InvalidConfig) as ei:
        ra.start_cluster("fresh", ("module", "no_such_pkg.mod:Machine", None), ids)
    assert "machine" in str(ei.value) and "no_such_pkg" in str(ei.value)
    with pytest.raises(ra.InvalidConfig, match="machine"):
        ra.start_cluster("fresh", ("module", "ra.testing.machines:NoSuchClass", None), ids)
    for i in range(3):
        d = three.data_dir(i)
        assert not [x for x in os.listdir(d) if x not in ("wal", "ra_node.lock", "node.log")
                    and os.path.isdir(os.path.join(d, x))]
    # and the same names can be used afterwards
    assert ra.start_cluster("fresh", COUNTER, ids)[0]


def test_invalid_configs(shared_three):
    three = shared_three
    sid = three.sid("c", 0)
    with pytest.raises(ra.InvalidConfig, match="machine"):
        ra.start_cluster("c", ("bogus", "x:y", None), [sid])
    with pytest.raises(ra.InvalidConfig, match="cluster_name"):
        ra.start_server({"cluster_name": "", "id": sid, "machine": COUNTER,
                         "initial_members": [sid]})
    with pytest.raises(ra.InvalidConfig, match="election_timeout_ms"):
        ra.start_server({"cluster_name": "c", "id": sid, "machine": COUNTER,
                         "initial_members": [sid], "election_timeout_ms": -1})
    with pytest.raises(ra.InvalidConfig, match="no_such_key"):
        ra.start_server({"cluster_name": "c", "id": sid, "machine": COUNTER,
                         "initial_members": [sid], "no_such_key": 1})
    for key, bad in (("max_checkpoints", 0), ("group_commit_ms", -1), ("group_commit_ms", 0.5),
                     ("min_checkpoint_interval", -1), ("max_pipeline_count", True)):
        with pytest.raises(ra.InvalidConfig, match=key):
            ra.start_server({"cluster_name": "c", "id": sid, "machine": COUNTER,
                             "initial_members": [sid], key: bad})
    with pytest.raises(ra.InvalidConfig, match="max_checkpoints"):
        ra.restart_server(sid, {"max_checkpoints": "2"})
    with pytest.raises(ra.InvalidConfig, match="initial_members"):
        ra.start_server({"cluster_name": "c", "id": sid, "machine": COUNTER,
                         "initial_members": []})
    with pytest.raises(ra.InvalidConfig, match="wal_write_strategy"):
        ra.start(data_dir=three.data_dir(9), wal_write_strategy="sometimes")
    with pytest.raises(ra.InvalidConfig, match="segment_max_entries"):
        ra.start(data_dir=three.data_dir(9), segment_max_entries=0)


def test_second_daemon_on_same_data_dir_fails_fast(shared_three):
    with pytest.raises(ra.AlreadyStarted, match="in use"):
        ra.start(data_dir=shared_three.data_dir(0))


def test_membership_errors(cluster):
    with pytest.raises(ra.MembershipError) as ei:
        ra.add_member(cluster, cluster[1])
    assert ei.value.reason == "already_member"
    with pytest.raises(ra.MembershipError) as ei:
        ra.remove_member(cluster, ra.ServerId("x", "127.0.0.1:1"))
    assert ei.value.reason == "not_member"
    with pytest.raises(ra.NotFound):
        ra.transfer_leadership(cluster[0], ra.ServerId("x", "127.0.0.1:1"))
