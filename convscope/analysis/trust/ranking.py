"""Which map to believe for this model: the methods ranked by the evidence the checks found.

Evidence per method: the randomisation sanity check (a method that fails it shows
the image, not the model, and goes to the bottom whatever else it scores), the
deletion and insertion AUCs as gains over the random order on the same images
(positive = more faithful than chance), and the pointing game when the test images
have object boxes (accuracy over the always-the-centre baseline). The methods are
ordered by sanity first, then by the mean of their ranks on each faithfulness
criterion (1 = best); ties keep the registry order.
"""

from __future__ import annotations

import numpy as np


def _ranks(values: dict) -> dict:
    """1 = the highest value; methods without a value get none."""
    have = {k: v for k, v in values.items() if v is not None and np.isfinite(v)}
    order = sorted(have, key=lambda k: -have[k])
    return {k: order.index(k) + 1 for k in have}


def rank_methods(names, faith: dict, *, sanity: dict | None = None, pointing: dict | None = None) -> list[dict]:
    """Rows (best first) with the evidence and the rank of each method.

    faith: checks.faithfulness(...) result (auc and gain per direction).
    sanity: method -> {"passed", "spearman"} from sanity.randomisation_check, or None (not run).
    pointing: checks.pointing_game(...) result, or None / without images (no boxes).
    """
    names = list(names)
    criteria = {f"{d}_gain": {n: faith["gain"][d].get(n) for n in names} for d in faith["gain"]}
    if pointing and pointing.get("images"):
        base = pointing["centre_baseline"]
        criteria["pointing_over_centre"] = {
            n: pointing["methods"][n]["accuracy"] - base for n in names if n in pointing["methods"]
        }
    ranks = {c: _ranks(v) for c, v in criteria.items()}
    rows = []
    for pos, n in enumerate(names):
        verdict = (sanity or {}).get(n)
        r = [ranks[c][n] for c in criteria if n in ranks[c]]
        row = {
            "method": n,
            "sanity": "not run" if verdict is None else ("pass" if verdict["passed"] else "fail"),
            "sanity_spearman": None if verdict is None else round(verdict["spearman"], 3),
            **{f"{d}_auc": round(faith["auc"][d][n], 4) for d in faith["auc"] if n in faith["auc"][d]},
            **{c: (None if v.get(n) is None else round(v[n], 4)) for c, v in criteria.items()},
            "beats_random_both_ways": all((faith["gain"][d].get(n) or 0) > 0 for d in faith["gain"]),
            "mean_rank": round(float(np.mean(r)), 3) if r else None,
            "_order": pos,
        }
        rows.append(row)
    rows.sort(
        key=lambda row: (
            row["sanity"] == "fail",
            row["mean_rank"] if row["mean_rank"] is not None else 1e9,
            row["_order"],
        )
    )
    for k, row in enumerate(rows, start=1):
        row.pop("_order")
        row["rank"] = k
    return rows


def verdict_line(rows, titles: dict) -> str:
    """One sentence for the report: which map to believe first, and why."""
    if not rows:
        return "No explanation method was checked."
    best = rows[0]
    t = titles.get(best["method"], best["method"])
    if best["sanity"] == "fail":
        return (
            f"No method passed the randomisation sanity check; {t} scored best on faithfulness, but distrust all maps."
        )
    both = "beats" if best["beats_random_both_ways"] else "does not beat"
    extra = "" if best["sanity"] == "not run" else " passes the randomisation check and"
    return f"Believe {t} first for this model: it{extra} {both} the random order in both deletion and insertion."
