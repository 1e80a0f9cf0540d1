"""No ra equivalent (ra exports through ra_counters and the RabbitMQ Prometheus plugin). A node's
metrics in Prometheus' text format, over HTTP (``ra node start --metrics HOST:PORT``, or the
node config key ``metrics``), with the official ``prometheus-client``.

What is exported, labelled ``node`` and ``server``:

* per server, from the reports every server sends its daemon (the ``key_metrics`` figures):
  ``ra_server_up`` (1 while its process runs), ``ra_server_leader`` (1 on the leader),
  ``ra_server_term``, ``ra_server_commit_index``, ``ra_server_last_applied``,
  ``ra_server_last_written_index``, ``ra_server_snapshot_index``,
  ``ra_server_commands_total`` (commands received by this process), ``ra_server_elections_total``
  (campaigns started), ``ra_server_leader_changes_total``, ``ra_server_snapshots_total``
  (taken), ``ra_server_snapshots_installed_total`` (from a leader),
  ``ra_server_peer_messages_received_total`` / ``ra_server_peer_messages_sent_total``,
  ``ra_server_timeouts_total`` (election and heartbeat timeouts), ``ra_server_restarts`` (restarts by
  its supervisor within the current intensity period) and
  ``ra_server_dropped_messages_total{reason}`` (malformed input dropped at its door);
* per WAL, asked at each scrape: ``ra_wal_batches_total``, ``ra_wal_syncs_total``,
  ``ra_wal_entries_total``, ``ra_wal_bytes_total``, ``ra_wal_entries_per_sync`` (entries /
  syncs since start), ``ra_wal_last_batch_entries`` (how deep the last batch was),
  ``ra_wal_queue_depth`` (appends waiting when the last batch began), ``ra_wal_max_batch_entries``,
  ``ra_wal_dropped_messages_total`` and ``ra_wal_failed`` (1 after a write or sync error).

The ``_total`` counters count since the process started (a restarted server starts again at
0, which Prometheus' ``rate()`` handles). Threads: the HTTP server runs on a thread of the
daemon; a scrape reads a snapshot the daemon's loop refreshes every second (so no data
structure of the loop is touched from another thread) and calls the WAL with a mailbox of its
own.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["NodeMetrics", "serve"]

_log = logging.getLogger("ra.node.metrics")

#: key_metrics field -> (metric name, help)
_GAUGES = {
    "term": ("ra_server_term", "Current Raft term."),
    "commit_index": ("ra_server_commit_index", "Highest log index known committed."),
    "last_applied": ("ra_server_last_applied", "Highest log index applied to the machine."),
    "last_written_index": ("ra_server_last_written_index", "Highest log index durable (fsynced)."),
    "snapshot_index": ("ra_server_snapshot_index", "Log index of the current snapshot."),
}
_COUNTERS = {
    "commands": ("ra_server_commands", "Commands received by this server process."),
    "elections": ("ra_server_elections", "Elections this server process started."),
    "leader_changes": ("ra_server_leader_changes", "Leaders this server process has followed."),
    "snapshots": ("ra_server_snapshots",
                  "Snapshots this server process took (release cursor or promoted checkpoint)."),
    "snapshots_installed": ("ra_server_snapshots_installed",
                            "Snapshots this server process installed from its leader."),
    "peer_msgs_in": ("ra_server_peer_messages_received",
                     "Raft messages this server process received from its peers."),
    "peer_msgs_out": ("ra_server_peer_messages_sent",
                      "Raft messages this server process sent to its peers."),
    "timeouts": ("ra_server_timeouts",
                 "Election and heartbeat timeouts this server process handled."),
    "resolve_requests": ("ra_server_resolve_requests",
                         "Peer addresses this server process asked a node daemon for."),
    "resolved": ("ra_server_resolved", "Peer addresses node daemons gave this server process."),
    "resolve_timeouts": ("ra_server_resolve_timeouts",
                         "Peer address requests of this server process nobody answered in time."),
    "resolve_dropped": ("ra_server_resolve_dropped",
                        "Messages for peers not found yet that this server process dropped."),
}
_WAL = {
    "batches": ("ra_wal_batches", "WAL write batches."),
    "syncs": ("ra_wal_syncs", "WAL fsyncs."),
    "entries": ("ra_wal_entries", "Log entries written by the WAL."),
    "bytes": ("ra_wal_bytes", "Bytes written by the WAL."),
    "dropped_bad_messages": ("ra_wal_dropped_messages", "Malformed messages the WAL dropped."),
}


class NodeMetrics:
    """A Prometheus collector for one node. ``refresh(servers, reports)`` is called by the
    daemon's loop; ``collect`` runs on the HTTP thread. ``wal_overview`` is a callable that
    returns the WAL's overview dict (or raises), called at each scrape on the HTTP thread."""

    def __init__(self, node: str, wal_overview: Any) -> None:
        self.node = node
        self._wal = wal_overview
        self._lock = threading.Lock()
        self._servers: dict[str, dict[str, Any]] = {}
        self._reports: dict[str, dict[str, Any]] = {}

    def refresh(self, servers: dict[str, dict[str, Any]],
                reports: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            self._servers, self._reports = servers, reports

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            servers, reports = self._servers, self._reports
        lbl = ["node", "server"]
        up = GaugeMetricFamily("ra_server_up", "1 while the server's process runs.", labels=lbl)
        leader = GaugeMetricFamily("ra_server_leader", "1 on the cluster's leader.", labels=lbl)
        restarts = GaugeMetricFamily("ra_server_restarts", "Restarts by the server's supervisor "
                                     "within its intensity period.", labels=lbl)
        gauges = {k: GaugeMetricFamily(n, h, labels=lbl) for k, (n, h) in _GAUGES.items()}
        counters = {k: CounterMetricFamily(n, h, labels=lbl) for k, (n, h) in _COUNTERS.items()}
        dropped = CounterMetricFamily("ra_server_dropped_messages", "Malformed messages the "
                                      "server dropped at its door.", labels=[*lbl, "reason"])
        for name in sorted(servers):
            row, rep = servers[name], reports.get(name) or {}
            ls = [self.node, name]
            running = row.get("pid") is not None
            up.add_metric(ls, 1 if running else 0)
            restarts.add_metric(ls, int(row.get("restarts") or 0))
            if not running:
                continue
            leader.add_metric(ls, 1 if rep.get("state") == "leader" else 0)
            for k, g in gauges.items():
                if isinstance(rep.get(k), int):
                    g.add_metric(ls, rep[k])
            for k, c in counters.items():
                v = (rep.get("counters") or {}).get(k)
                if isinstance(v, int):
                    c.add_metric(ls, v)
            for reason, n in sorted((rep.get("bad_messages") or {}).items()):
                if isinstance(n, int):
                    dropped.add_metric([*ls, str(reason)], n)
        yield from (up, leader, restarts, *gauges.values(), *counters.values(), dropped)
        yield from self._collect_wal()

    def _collect_wal(self) -> Iterator[Metric]:
        try:
            ov = self._wal()
        except Exception as e:       # a slow or restarting WAL: leave its series out
            _log.warning("metrics: the WAL did not answer: %s", e)
            return
        lbl = ["node"]
        for k, (n, h) in _WAL.items():
            if isinstance(ov.get(k), int):
                fam = CounterMetricFamily(n, h, labels=lbl)
                fam.add_metric([self.node], ov[k])
                yield fam
        syncs, entries = ov.get("syncs") or 0, ov.get("entries") or 0
        per = GaugeMetricFamily("ra_wal_entries_per_sync", "Entries per fsync since the WAL "
                                "started.", labels=lbl)
        per.add_metric([self.node], entries / syncs if syncs else 0.0)
        last = GaugeMetricFamily("ra_wal_last_batch_entries", "Entries in the WAL's last "
                                 "batch (its queue depth when it started writing).", labels=lbl)
        last.add_metric([self.node], int(ov.get("last_batch_entries") or 0))
        depth = GaugeMetricFamily("ra_wal_queue_depth", "Appends (server writes) waiting "
                                  "when the WAL began its last batch.", labels=lbl)
        depth.add_metric([self.node], int(ov.get("last_batch_writes") or 0))
        most = GaugeMetricFamily("ra_wal_max_batch_entries", "Entries in the WAL's largest "
                                 "batch since it started.", labels=lbl)
        most.add_metric([self.node], int(ov.get("max_batch_entries") or 0))
        failed = GaugeMetricFamily("ra_wal_failed", "1 after a WAL write or sync error.",
                                   labels=lbl)
        failed.add_metric([self.node], 1 if ov.get("failed") else 0)
        yield from (per, last, depth, most, failed)


def serve(metrics: NodeMetrics, listen: str) -> tuple[Any, str]:
    """Serve ``metrics`` at ``http://HOST:PORT/metrics`` (port 0: any free port) on a thread
    of this process; return ``(server, "host:port")`` (``server.shutdown()`` stops it)."""
    host, _, port = listen.rpartition(":")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)       # type: ignore[arg-type]
    server, _thread = start_http_server(int(port), addr=host, registry=registry)
    return server, f"{host}:{server.server_address[1]}"
