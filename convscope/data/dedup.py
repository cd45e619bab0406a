"""Duplicate and ambiguous-label decisions that never move an image already decided.

The clean stage hands over every inspected row split in two: *established* rows
(decided by the previous clean run, same file and bytes: they keep their status,
reason and cluster) and *newcomers*. Only newcomers are decided here, in file
order (the crawl's order), each against the kept images before it:

- a newcomer near (phash distance <= threshold) a kept image of another class is
  `ambiguous_label`; two newcomers of different classes near each other are both
  quarantined (neither label can be preferred);
- a newcomer with the bytes of an earlier image of its class is a `duplicate`;
- a newcomer near one or more kept images of its class is a `near_duplicate` of
  the closest; the detail names every kept image it is near and the real
  distances, so a newcomer that bridges two kept images says so.

Comparing with kept images only (no connected components) means no chain: the
stated distance is the distance to the named image, and adding images can only
quarantine the newcomers themselves.
"""

from __future__ import annotations

import numpy as np

from convscope.records import KEPT, QUARANTINED  # the manifest status strings, one place

DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"
AMBIGUOUS = "ambiguous_label"
CLUSTER_CHARS = 16  # cluster id = leading sha256 hex digits of the kept image


def phash_int(row: dict) -> int:
    return int(row["phash"], 16)


def distances(hashes: np.ndarray, h: int) -> np.ndarray:
    """Hamming distances between 64-bit hash `h` and every hash in `hashes`."""
    return np.bitwise_count(hashes ^ np.uint64(h))


def _matches(pool: list[dict], hashes: np.ndarray, row: dict, threshold: int) -> list[tuple[int, dict]]:
    """(distance, pool row) of every pool row within threshold of `row`, closest first."""
    if not len(pool) or threshold < 0:
        return []
    d = distances(hashes, phash_int(row))
    idx = np.nonzero(d <= threshold)[0]
    return sorted(((int(d[i]), pool[i]) for i in idx), key=lambda m: (m[0], m[1]["file"]))


def _named(matches: list[tuple[int, dict]]) -> str:
    return ", ".join(f"{m['file']} (distance {d})" for d, m in matches)


def mark_ambiguous(established: list[dict], newcomers: list[dict], threshold: int) -> None:
    """Quarantine newcomers whose bytes or phash match a kept image of another class."""
    # Established ambiguous images count too: a new copy of a known ambiguous picture is ambiguous.
    kept = [r for r in established if r["status"] == KEPT or r["reason"] == AMBIGUOUS]
    usable = [r for r in newcomers if r["status"] == KEPT]
    classes_of: dict[str, dict[str, str]] = {}  # sha -> {cls: first file}
    for r in kept + usable:
        classes_of.setdefault(r["sha256"], {}).setdefault(r["cls"], r["file"])
    hits: dict[int, list[tuple[int, dict]]] = {}
    for r in usable:
        for cls, file in classes_of[r["sha256"]].items():  # exact copies, also when phash is off
            if cls != r["cls"]:
                hits.setdefault(id(r), []).append((0, {"file": file}))
    pool = kept + usable
    if threshold >= 0 and pool:
        hashes = np.array([phash_int(r) for r in pool], dtype=np.uint64)
        for r in usable:
            near = [
                (d, m)
                for d, m in _matches(pool, hashes, r, threshold)
                if m is not r and (m["cls"] != r["cls"] or m["reason"] == AMBIGUOUS)
            ]
            if near:
                hits.setdefault(id(r), []).extend(near)
    for r in usable:
        if id(r) in hits:
            near = sorted(
                {m["file"]: (d, m) for d, m in reversed(hits[id(r)])}.values(),
                key=lambda x: x[0],
            )
            r.update(
                status=QUARANTINED,
                reason=AMBIGUOUS,
                dup_of=near[0][1]["file"],
                detail=f"the same or nearly the same image is in another class: {_named(near)}",
            )


def collapse(established: list[dict], newcomers: list[dict], threshold: int) -> None:
    """Within one class: newcomers that duplicate or nearly duplicate a kept image are quarantined."""
    first = {r["sha256"]: r for r in reversed(established) if r["sha256"] and r["phash"]}
    pool = [r for r in established if r["status"] == KEPT]
    hashes = np.array([phash_int(r) for r in pool], dtype=np.uint64)
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
        near = _matches(pool, hashes, r, threshold)
        if near:
            closest = near[0][1]
            bridge = " (it would join kept images that are apart)" if len(near) > 1 else ""
            r.update(
                status=QUARANTINED,
                reason=NEAR_DUPLICATE,
                dup_of=closest["file"],
                cluster=closest["cluster"],
                detail=f"phash within {threshold} bits of kept {_named(near)}{bridge}",
            )
            continue
        r["cluster"] = r["sha256"][:CLUSTER_CHARS]
        pool.append(r)
        hashes = np.append(hashes, np.uint64(phash_int(r)))
