"""The result every ``ra check`` checker returns. No ra equivalent (Jepsen's checker result map).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """``valid`` is True (checked, no anomaly), False (an anomaly; ``counterexample`` explains
    one) or None (unknown: the checker could not decide, e.g. budget exhausted or no final read;
    ``details["reason"]`` says why). A checker never reports True for a history it did not
    finish checking."""

    valid: bool | None
    workload: str
    details: dict[str, Any] = field(default_factory=dict)
    counterexample: str | None = None
