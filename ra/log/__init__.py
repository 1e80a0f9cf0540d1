"""The durable log behind ``ra.core.log.Log``. Mirrors ra_log.erl."""
