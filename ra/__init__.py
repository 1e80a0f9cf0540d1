"""ra for Python: RabbitMQ's multi-Raft consensus library as a multiprocess actor system.

Mirrors ra.erl. The public API (start_cluster, process_command, ...) joins the pure Raft core
(`ra.core`), the runtime (`transport`, `supervisor`) and the durable log (`wal`, `ra.log`).
"""

__all__: list[str] = []
