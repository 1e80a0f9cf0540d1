from tests.wal.conftest import procs  # noqa: F401
