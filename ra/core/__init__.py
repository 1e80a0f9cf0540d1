"""The pure Raft core. No ra equivalent as a package; `server.py` mirrors ra_server.erl.

Rule: nothing under `ra.core` performs I/O, reads a clock or draws unseeded randomness
(tests/core/test_purity.py enforces it by scanning imports). The contract is
``step(role, msg, state) -> (role, state, effects)``: messages in, the new role, the (in-place
updated) state and an ordered list of effects out. The shell carries the effects out.
"""
