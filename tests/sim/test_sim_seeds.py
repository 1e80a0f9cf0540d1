"""Thousands of simulation seeds over 3- and 5-member clusters and every fault profile.

Seed ``n`` alone fixes the run: ``scenario_for_seed(n)`` picks the cluster size and the profile
(the profile cycles fastest), so any ``2 * len(PROFILE_NAMES)`` consecutive seeds cover every
combination. A failing seed is reported with its replay command (``make sim SEED=n``).

Seed count: ``DEFAULT_SEEDS`` in ``make test``; ``--seeds N`` or ``RA_SOAK`` (``make soak``:
``RA_SOAK=1`` means ``SOAK_SEEDS``, a larger number means that many) for more; ``--seed N`` runs
just that one seed.

The chunks run side by side in a pool of worker processes (one per CPU, or ``RA_SIM_JOBS``),
started when the first chunk's test runs; each chunk's test waits for its own chunk. The seeds
are pure computation, so on CI's 2 cores this halves the wall time of the 2,600 seeds.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import pytest

from ra.testing.sim import SimCluster, run_seeds
from ra.testing.sim_net import PROFILE_NAMES, scenario_for_seed

DEFAULT_SEEDS = 2600          # 76 or 77 of each of the 34 (size, profile) combinations
SOAK_SEEDS = 30000
CHUNK = 100


def _seed_count(config: pytest.Config) -> int:
    n = config.getoption("--seeds")
    if n:
        return int(n)
    soak = os.environ.get("RA_SOAK", "")
    if soak:
        return int(soak) if soak.isdigit() and int(soak) > 1 else SOAK_SEEDS
    return DEFAULT_SEEDS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed_chunk" in metafunc.fixturenames:
        one = metafunc.config.getoption("--seed")
        if one is not None:
            chunks = [(one, one + 1)]
        else:
            total = _seed_count(metafunc.config)
            chunks = [(a, min(a + CHUNK, total)) for a in range(0, total, CHUNK)]
        metafunc.parametrize("seed_chunk", chunks, ids=[f"seeds{a}-{b - 1}" for a, b in chunks])


def _jobs() -> int:
    env = os.environ.get("RA_SIM_JOBS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


@pytest.fixture(scope="module")
def seed_pool(request: pytest.FixtureRequest) -> Iterator[dict[tuple[int, int], Future[Any]]]:
    """Every selected chunk submitted at once to a process pool (spawned workers: the test
    process may hold threads and sockets of other tests); empty when one process is enough."""
    chunks = [item.callspec.params["seed_chunk"] for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec")
              and "seed_chunk" in item.callspec.params]
    if _jobs() == 1 or len(chunks) < 2:
        yield {}
        return
    ex = ProcessPoolExecutor(max_workers=min(_jobs(), len(chunks)),
                             mp_context=multiprocessing.get_context("spawn"))
    try:
        yield {c: ex.submit(run_seeds, *c) for c in chunks}
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def test_seeds(seed_chunk: tuple[int, int], seed_pool: dict[tuple[int, int], Future[Any]]
               ) -> None:
    fut = seed_pool.get(seed_chunk)
    failures = run_seeds(*seed_chunk) if fut is None else fut.result()
    assert not failures, f"{len(failures)} failing seed(s):\n\n" + "\n\n".join(failures)


def test_seed_mapping_covers_every_profile_and_size() -> None:
    seen = {scenario_for_seed(s) for s in range(2 * len(PROFILE_NAMES))}
    assert seen == {(n, p) for n in (3, 5) for p in PROFILE_NAMES}


def test_the_simulation_actually_exercises_faults() -> None:
    """Across one pass over every (size, profile) the faults and features really happen; a
    simulator whose faults never fire would pass everything."""
    total: Counter[str] = Counter()
    terms = 0
    for seed in range(4 * len(PROFILE_NAMES)):
        sim = SimCluster(seed)
        r = sim.run()
        total.update(r.stats)
        terms += len(r.leaders)
    for key in ("acked", "queries", "crashes", "partitions", "joins", "leaves", "transfers",
                "snapshots_taken", "snapshots_installed", "checkpoints_taken",
                "checkpoints_promoted", "dropped", "duplicated", "unknown", "quiet_windows",
                "prevote_replays"):
        assert total[key] > 0, f"no {key} in {dict(total)}"
    assert terms > 4 * len(PROFILE_NAMES), "leaders never change"


def _trace_digest(seed: int, hashseed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=hashseed)
    out = subprocess.run([sys.executable, "-m", "ra.testing.sim", "--seed", str(seed),
                          "--trace"], capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return hashlib.sha256(out.stdout.encode()).hexdigest()


@pytest.mark.parametrize("seed", [4, 5 + len(PROFILE_NAMES), 10,
                                  PROFILE_NAMES.index("snapshot_slow_sync"),
                                  PROFILE_NAMES.index("healthy_leader") + len(PROFILE_NAMES)])
def test_replay_is_identical_across_processes(seed: int) -> None:
    """``make sim SEED=n`` replays exactly: same trace in fresh interpreters with different
    string-hash seeds (so nothing depends on set or hash order)."""
    assert _trace_digest(seed, "1") == _trace_digest(seed, "2")


def test_cli_failure_prints_seed_and_replay_command() -> None:
    out = subprocess.run([sys.executable, "-m", "ra.testing.sim", "--seed", "0",
                          "--bug", "apply_before_commit"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 1
    assert "FAILED seed 0" in out.stdout
    assert "replay: python -m ra.testing.sim --seed 0 --bug apply_before_commit --trace" \
        in out.stdout
    assert "last events:" in out.stdout
