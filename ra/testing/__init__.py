"""Public test doubles and the deterministic simulator (like ``trio.testing``). No ra equivalent."""
