"""Learned-quality assertions as data: each is a measured figure, its threshold and a side.

A test that asserts what a trained network achieves builds a list of `Check`s and calls
`require`; bench/seed_robustness.py calls the same functions over seeds and numeric
settings and prints, per check, the threshold and the min/median/max it measured.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float
    above: bool = True  # value must be >= threshold (above) or < threshold (below)

    @property
    def passed(self) -> bool:
        return self.value >= self.threshold if self.above else self.value < self.threshold

    def __str__(self) -> str:
        side = ">=" if self.above else "<"
        return f"{self.name}: {self.value:.3f} (needs {side} {self.threshold:.3f})"


def require(checks: list[Check], context=None) -> None:
    """Assert every check, naming all that failed (and `context`, e.g. all figures measured)."""
    failed = [str(c) for c in checks if not c.passed]
    assert not failed, f"{'; '.join(failed)}; measured: {context}"
