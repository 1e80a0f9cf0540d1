"""Shared pytest configuration: markers, seed options."""
from __future__ import annotations

import os
import tempfile

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # every process of the run (daemons, servers, clients) shares one node secret, made in a
    # fresh directory on first use: the developer's ~/.ra/cookie is neither read nor created
    if "RA_COOKIE" not in os.environ and "RA_COOKIE_FILE" not in os.environ:
        os.environ["RA_COOKIE_FILE"] = os.path.join(
            tempfile.mkdtemp(prefix="ra-test-cookie-"), "cookie")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--seed", type=int, default=None, help="run one simulation seed only")
    parser.addoption("--seeds", type=int, default=None, help="number of simulation seeds")
    parser.addoption("--rewrite", action="store_true", help="rewrite interaction test expectations")
