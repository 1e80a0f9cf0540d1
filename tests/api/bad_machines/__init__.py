"""Machine modules that misbehave at import, for tests/api/test_user_code.py. Never imported by
the test process itself: only by server processes (and log_children children) of the nodes
under test, which must survive them."""
