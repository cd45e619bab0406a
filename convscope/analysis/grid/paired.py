"""Paired comparison of two classifiers on the same test images.

Two accuracies whose 95% confidence intervals overlap can still differ
significantly when both models saw the same images: most images are right (or
wrong) for both, and only the images where they disagree carry evidence.
McNemar's exact test (McNemar 1947; the exact binomial form recommended by
Dietterich 1998 for comparing classifiers) asks whether the disagreements split
evenly: under "no difference", the images only A gets right and those only B gets
right are equally likely, so their counts are Binomial(n_discordant, 1/2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # significance level of the statements written for the report


def disagreement(correct_a, correct_b) -> dict:
    """The 2 x 2 table of two models' right/wrong answers on the same images."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"the two runs answered different test sets ({a.shape[0]} vs {b.shape[0]} images)")
    return {
        "both_right": int((a & b).sum()),
        "a_only_right": int((a & ~b).sum()),
        "b_only_right": int((~a & b).sum()),
        "both_wrong": int((~a & ~b).sum()),
    }


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the two discordant counts (1.0 when there are none)."""
    from scipy.stats import binomtest

    n = int(a_only) + int(b_only)
    if n == 0:
        return 1.0
    return float(binomtest(int(a_only), n, 0.5, alternative="two-sided").pvalue)


def intervals_overlap(a: tuple[float, float], b: tuple[float, float]) -> bool | None:
    if any(v is None or not np.isfinite(v) for v in (*a, *b)):
        return None
    return bool(a[0] <= b[1] and b[0] <= a[1])


@dataclass(frozen=True)
class Arm:
    """One side of a paired comparison: a run's name, test accuracy, its 95% CI, per-image correctness."""

    name: str
    accuracy: float
    ci: tuple  # (low, high)
    correct: np.ndarray  # N booleans, the same test images on both sides


def compare(a: Arm, b: Arm) -> dict:
    """Table, p-value, CI overlap and one plain sentence on A vs B."""
    name_a, acc_a, ci_a, correct_a = a.name, a.accuracy, a.ci, a.correct
    name_b, acc_b, ci_b, correct_b = b.name, b.accuracy, b.ci, b.correct
    table = disagreement(correct_a, correct_b)
    p = mcnemar_exact(table["a_only_right"], table["b_only_right"])
    overlap = intervals_overlap(ci_a, ci_b)
    significant = p < ALPHA
    n = sum(table.values())
    if acc_a == acc_b:
        lead = f"{name_a} and {name_b} have the same test accuracy ({acc_a:.3f})"
    else:
        hi, lo = (name_a, name_b) if acc_a > acc_b else (name_b, name_a)
        lead = f"{hi} scores higher than {lo} on test accuracy ({max(acc_a, acc_b):.3f} vs {min(acc_a, acc_b):.3f})"
    ci_text = {
        True: "their 95% CIs overlap",
        False: "their 95% CIs do not overlap",
        None: "no CIs to compare",
    }[overlap]
    verdict = "significant" if significant else "not significant"
    statement = (
        f"{lead}; {ci_text}; on the same {n} test images {table['a_only_right']} are right only for {name_a} and "
        f"{table['b_only_right']} only for {name_b}: McNemar exact p = {p:.3g}, {verdict} at {ALPHA}."
    )
    return {
        **table,
        "p_value": p,
        "significant": bool(significant),
        "ci_overlap": overlap,
        "statement": statement,
    }
