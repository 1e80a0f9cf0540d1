"""Shared pytest configuration: markers, seed options."""
from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seed", type=int, default=None, help="run one simulation seed only")
    parser.addoption("--seeds", type=int, default=None, help="number of simulation seeds")
    parser.addoption("--rewrite", action="store_true", help="rewrite interaction test expectations")
