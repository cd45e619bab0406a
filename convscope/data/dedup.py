"""Duplicate and ambiguous-label decisions that never move an image already decided.

The clean stage hands over every inspected row split in two: *established* rows
(decided by the previous clean run, same file and bytes: they keep their status,
reason and cluster) and *newcomers*. Only newcomers are decided here, in file
order (the crawl's order), each against the kept images before it:

- a newcomer that is a near copy (convscope.data.nearcopy: aligned pixel residual
  under the threshold calibrated on the set) of a kept image of another class is
  `ambiguous_label`; two newcomers of different classes that are near copies of each
  other are both quarantined (neither label can be preferred). Look-alikes of
  different classes are not near copies and stay;
- a newcomer with the bytes of an earlier image of its class is a `duplicate`;
- a newcomer that is a near copy of one or more kept images of its class is a
  `near_duplicate` of the closest; the detail names every kept image it is near and
  the real residuals, so a newcomer that bridges two kept images says so.

Comparing with kept images only (no connected components) means no chain: the
stated residual is the one to the named image, and adding images can only
quarantine the newcomers themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from convscope.data import nearcopy
from convscope.records import KEPT, QUARANTINED  # the manifest status strings, one place

DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"
AMBIGUOUS = "ambiguous_label"
CLUSTER_CHARS = 16  # cluster id = leading sha256 hex digits of the kept image


@dataclass
class Near:
    """Pixel near-copy search over the inspected images of one clean run (threshold < 0: off)."""

    pixels: nearcopy.Pixels | None = None
    index: dict[str, int] = field(default_factory=dict)  # manifest file -> row of `pixels`
    calibration: nearcopy.Calibration = nearcopy.Calibration(float("nan"), 0, -1.0, 0)

    @classmethod
    def build(cls, thumbs: dict[str, np.ndarray], kept: list[str], factor: float, seed: int = 0) -> Near:
        """Thumbnails of every inspected file; the threshold calibrated on the kept ones."""
        if factor <= 0 or not thumbs:
            return cls()
        files = sorted(thumbs)
        pixels = nearcopy.Pixels([thumbs[f] for f in files], nearcopy.common_side(list(thumbs.values())))
        index = {f: i for i, f in enumerate(files)}
        among = np.array(sorted(index[f] for f in kept if f in index), dtype=int)
        return cls(pixels, index, pixels.calibrate(among, factor, seed))

    def matches(self, rows: list[dict], pool: list[dict]) -> dict[int, list[tuple[float, dict]]]:
        """{id(row): [(residual, pool row), ...] closest first} for near copies of rows in pool."""
        if self.pixels is None or self.calibration.threshold < 0:
            return {}
        by_index = {self.index[r["file"]]: r for r in pool if r["file"] in self.index}
        queries = np.array([self.index[r["file"]] for r in rows if r["file"] in self.index], dtype=int)
        found = self.pixels.matches(queries, np.array(sorted(by_index), dtype=int), self.calibration.threshold)
        of = {self.index[r["file"]]: r for r in rows if r["file"] in self.index}
        return {id(of[q]): [(d, by_index[p]) for d, p in ps] for q, ps in found.items()}


def _named(matches: list[tuple[int, dict]]) -> str:
    return ", ".join(f"{m['file']} (residual {d})" for d, m in matches)


def mark_ambiguous(established: list[dict], newcomers: list[dict], near: Near) -> None:
    """Quarantine newcomers whose bytes or pixels match a kept image of another class."""
    # Established ambiguous images count too: a new copy of a known ambiguous picture is ambiguous.
    kept = [r for r in established if r["status"] == KEPT or r["reason"] == AMBIGUOUS]
    usable = [r for r in newcomers if r["status"] == KEPT]
    classes_of: dict[str, dict[str, str]] = {}  # sha -> {cls: first file}
    for r in kept + usable:
        classes_of.setdefault(r["sha256"], {}).setdefault(r["cls"], r["file"])
    hits: dict[int, list[tuple[float, dict]]] = {}
    for r in usable:
        for cls, file in classes_of[r["sha256"]].items():  # exact copies, also when near copies are off
            if cls != r["cls"]:
                hits.setdefault(id(r), []).append((0.0, {"file": file}))
    found_near = near.matches(usable, kept + usable)
    for r in usable:
        near_rows = [
            (d, m)
            for d, m in found_near.get(id(r), [])
            if m is not r and (m["cls"] != r["cls"] or m["reason"] == AMBIGUOUS)
        ]
        if near_rows:
            hits.setdefault(id(r), []).extend(near_rows)
    for r in usable:
        if id(r) in hits:
            found = sorted(
                {m["file"]: (d, m) for d, m in reversed(hits[id(r)])}.values(),
                key=lambda x: x[0],
            )
            r.update(
                status=QUARANTINED,
                reason=AMBIGUOUS,
                dup_of=found[0][1]["file"],
                detail=f"the same or nearly the same image is in another class: {_named(found)}",
            )


def collapse(established: list[dict], newcomers: list[dict], near: Near) -> None:
    """Within one class: newcomers that duplicate or nearly duplicate a kept image are quarantined."""
    first = {r["sha256"]: r for r in reversed(established) if r["sha256"] and r["phash"]}
    pool = [r for r in established if r["status"] == KEPT]
    candidates = near.matches([r for r in newcomers if r["status"] == KEPT], pool + newcomers)
    in_pool = {id(r) for r in pool}
    for r in newcomers:
        if r["status"] != KEPT:
            continue
        same = first.get(r["sha256"])
        if same is not None:
            r.update(
                status=QUARANTINED,
                reason=DUPLICATE,
                dup_of=same["file"],
                cluster=same["cluster"],
                detail=f"same bytes as {same['file']}",
            )
            continue
        first[r["sha256"]] = r
        found = [(d, m) for d, m in candidates.get(id(r), []) if id(m) in in_pool]
        if found:
            closest = found[0][1]
            bridge = " (it would join kept images that are apart)" if len(found) > 1 else ""
            r.update(
                status=QUARANTINED,
                reason=NEAR_DUPLICATE,
                dup_of=closest["file"],
                cluster=closest["cluster"],
                detail=f"near copy of kept {_named(found)}{bridge}; {near.calibration.describe()}",
            )
            continue
        r["cluster"] = r["sha256"][:CLUSTER_CHARS]
        in_pool.add(id(r))
