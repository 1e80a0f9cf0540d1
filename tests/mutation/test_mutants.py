"""The mutation run of ``ra.testing.mutants``.

Every run: each mutant's edit applies to the current ``ra/core/server.py`` exactly once and
compiles, so a snippet that moved fails at once, naming its mutant (the run would fail anyway:
a mutant is never skipped).

Soak only (``make soak``; ``make mutants`` runs the same from the command line): every mutant in
a fresh interpreter over seeds ``0 .. DEFAULT_SEEDS-1`` of the default rotation, i.e. exactly
the runs of ``make test``; each must be caught by at least one seed (seeds the real core fails
too are skipped). The score table is printed
and written to ``$RA_MUTANTS_JSON`` (default ``build/mutants.json``); ``RA_MUTANT_SEEDS`` and
``RA_MUTANT_JOBS`` change the seed count and how many mutants run at once (default 1).
"""
from __future__ import annotations

import os

import pytest

from ra.testing.mutants import (
    MUTANTS, REAL, Mutant, MutantError, load, mutated_source, run_all, table,
)
from tests.sim.test_sim_seeds import DEFAULT_SEEDS


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_mutant_applies_once_and_compiles(mutant: Mutant) -> None:
    mod = load(mutant)
    assert callable(mod.step) and mutant.old != mutant.new


def test_a_missing_snippet_fails_naming_the_mutant() -> None:
    with pytest.raises(MutantError, match="'moved_away'.*occurs 0 times"):
        mutated_source(Mutant("moved_away", "no such code", "", ""), "def f(): pass\n")
    with pytest.raises(MutantError, match="'twice'.*occurs 2 times"):
        mutated_source(Mutant("twice", "x", "y", ""), "x = x\n")


def test_mutant_names_are_unique() -> None:
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RA_SOAK"), reason="soak only (make soak / RA_SOAK=1)")
def test_mutation_run_catches_every_mutant() -> None:
    import json
    seeds = int(os.environ.get("RA_MUTANT_SEEDS", DEFAULT_SEEDS))
    jobs = int(os.environ.get("RA_MUTANT_JOBS", "1"))
    path = os.environ.get("RA_MUTANTS_JSON", os.path.join("build", "mutants.json"))
    results = run_all([m.name for m in MUTANTS], seeds, jobs, out=lambda line: None)
    print("\n" + table(results))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"seeds": seeds, "results": results}, f, indent=1)
    survivors = [r["name"] for r in results if not r["caught"] and r["name"] != REAL]
    assert not survivors, f"mutants not caught in {seeds} seeds: {survivors}\n{table(results)}"
