"""Split: kept images -> train/val/test, stable under additions.

Each near-duplicate cluster (clean's `cluster` column, content-derived) is hashed
with the seed to a number u in [0, 1); u below train goes to train, below
train + val to val, the rest to test. An image's split therefore depends only on
its own cluster key and the seed: adding images to a class never moves an
existing one, and a whole cluster always lands in one split.

Why no "repair" for small classes: with hashing, a small class can by chance
leave a split (nearly) empty. Any repair that moves images into the short split
must depend on the other images of the class, so it would move them back once
the class grows: that breaks stability. We prefer stability and fail with a
message naming the class, its counts and what to do.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
from pathlib import Path

from convscope import atomic
from convscope.layout import SPLITS

log = logging.getLogger(__name__)

COLUMNS = ["cls", "file", "sha256", "cluster", "split"]


class SplitError(ValueError):
    """A class that cannot fill every split as configured."""


def unit_key(cluster: str, seed: int) -> float:
    """A uniform number in [0, 1) from the cluster key and the seed."""
    digest = hashlib.sha256(f"{seed}:{cluster}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(cluster: str, seed: int, fractions: dict) -> str:
    u = unit_key(cluster, seed)
    if u < fractions["train"]:
        return "train"
    if u < fractions["train"] + fractions["val"]:
        return "val"
    return "test"


def images_needed(fraction: float, min_per_split: int, confidence: float = 0.99) -> int:
    """Smallest class size whose hashed split gets >= min_per_split with `confidence`."""
    n = min_per_split
    while True:
        # P(Binomial(n, fraction) < min_per_split)
        short = sum(
            math.exp(
                math.lgamma(n + 1)
                - math.lgamma(k + 1)
                - math.lgamma(n - k + 1)
                + k * math.log(fraction)
                + (n - k) * math.log1p(-fraction)
            )
            for k in range(min_per_split)
        )
        if short <= 1 - confidence:
            return n
        n += 1


def split(manifest_csv: Path, options: dict, seed: int, out_lists: dict, out_digests: dict | None = None) -> list[dict]:
    """Write one list per split (kept rows of the clean manifest with their split); return all rows.

    options: the config's `split` section (train, val, test, min_per_split).
    out_lists: {split: path} (layout.Results.split_list). One file per split because the
    jobs after split read only the splits they need: an edit that changes the test split
    leaves the train and val lists byte-identical.
    out_digests: {split: path} (layout.Results.split_digest), each list's SHA-256: the
    jobs after split take these as input, so Snakemake's checksum of them keeps their
    prepare and training jobs however large the lists grow.
    """
    fractions = {s: float(options[s]) for s in SPLITS}
    min_per_split = int(options["min_per_split"])
    with open(manifest_csv, newline="") as f:
        kept = [r for r in csv.DictReader(f) if r["status"] == "kept"]
    rows = _assigned(kept, seed, fractions)
    order = list(dict.fromkeys(r["cls"] for r in rows))
    counts = {cls: dict.fromkeys(SPLITS, 0) for cls in order}
    for r in rows:
        counts[r["cls"]][r["split"]] += 1
    width = max((len(c) for c in order), default=5)
    log.info(
        "split (seed %d, %s):\n%s",
        seed,
        ", ".join(f"{s} {fractions[s]:g}" for s in SPLITS),
        "\n".join(f"{cls.rjust(width)}  " + "  ".join(f"{s} {counts[cls][s]:4d}" for s in SPLITS) for cls in order),
    )
    short = {cls: c for cls, c in counts.items() if min(c.values()) < min_per_split}
    if short:
        smallest = min(SPLITS, key=lambda s: fractions[s])
        need = images_needed(fractions[smallest], min_per_split)
        lines = [
            f"class {cls!r}: {sum(c.values())} kept images -> "
            + ", ".join(f"{s} {c[s]}" for s in SPLITS)
            + f" (split.min_per_split = {min_per_split})"
            for cls, c in short.items()
        ]
        raise SplitError(
            "too few images to fill every split:\n  "
            + "\n  ".join(lines)
            + f"\nSplits are assigned by a seeded hash (stable when images are added), so small classes "
            f"can leave a split short. Give the class more images (with {smallest} = {fractions[smallest]:g}, "
            f"about {need} kept images fill that split to min_per_split with 99% probability): "
            f"raise crawl max_images or add sources; or change split fractions (split.train/val/test), "
            f"lower split.min_per_split, or try another seed."
        )
    _write_lists(rows, out_lists, out_digests or {})
    return rows


def _assigned(kept: list[dict], seed: int, fractions: dict) -> list[dict]:
    """The kept manifest rows with their split (by their cluster's seeded hash)."""
    rows = []
    for r in kept:
        # An empty cluster (a manifest from elsewhere) means a cluster of its own.
        cluster = r.get("cluster") or r["sha256"]
        rows.append(
            {
                "cls": r["cls"],
                "file": r["file"],
                "sha256": r["sha256"],
                "cluster": cluster,
                "split": assign(cluster, seed, fractions),
            }
        )
    return rows


def _write_lists(rows: list[dict], out_lists: dict, out_digests: dict) -> None:
    """Each split's list, and its SHA-256 in `sha256sum` format where out_digests names a file."""
    for name in SPLITS:
        data = atomic.write_csv(out_lists[name], [r for r in rows if r["split"] == name], COLUMNS)
        if name in out_digests:
            digest = hashlib.sha256(data).hexdigest()
            atomic.write_text(out_digests[name], f"{digest}  {Path(out_lists[name]).name}\n")
