"""The node's write-ahead log process and segment writer. Mirrors ra_log_wal.erl."""
