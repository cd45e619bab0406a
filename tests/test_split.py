"""Split: stable under additions, clusters never cross splits, clear errors for small classes."""

import csv
import hashlib

import numpy as np
import pytest
from PIL import Image

from convscope.data import clean as clean_mod
from convscope.data.clean import clean
from convscope.data.split import SplitError, split
from convscope.layout import SPLITS, Results

OPTIONS = {"train": 0.7, "val": 0.15, "test": 0.15, "min_per_split": 1}
CLEAN = {"min_side": 32, "max_pixels": 50_000_000, "near_copy": 10}


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def write_manifest(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=clean_mod.COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)


def kept_rows(cls, n, start=0, per_cluster=1):
    """n kept rows; consecutive groups of `per_cluster` share a cluster."""
    rows = []
    for i in range(start, start + n):
        rows.append(
            {
                "cls": cls,
                "file": f"{cls}/{i:06d}.jpg",
                "sha256": sha(f"{cls}{i}"),
                "status": "kept",
                "cluster": sha(f"{cls}-cluster-{i // per_cluster}")[:16],
            }
        )
    return rows


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def lists(folder):
    """{split: path} of the split stage's lists in `folder`."""
    return {s: folder / f"{s}.csv" for s in SPLITS}


def test_fractions_clusters_and_stability_under_additions(tmp_path):
    first = kept_rows("cat", 600, per_cluster=3) + kept_rows("dog", 300)
    quarantined = {**first[0], "file": "cat/bad.jpg", "sha256": sha("bad"), "status": "quarantined", "cluster": ""}
    write_manifest(tmp_path / "m1.csv", first + [quarantined])
    rows = split(tmp_path / "m1.csv", OPTIONS, 7, lists(tmp_path / "s1"))
    for name, path in lists(tmp_path / "s1").items():  # one list per split
        assert read(path) == [r for r in rows if r["split"] == name]
    assert list(rows[0]) == ["cls", "file", "sha256", "cluster", "split"]
    assert {r["file"] for r in rows} == {r["file"] for r in first}  # kept rows only, all of them
    for cls, n in (("cat", 600), ("dog", 300)):
        got = [r["split"] for r in rows if r["cls"] == cls]
        for name, frac in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
            assert abs(got.count(name) / n - frac) < 0.08, (cls, name, got.count(name))
    split_of_cluster = {}
    for r in rows:
        assert split_of_cluster.setdefault(r["cluster"], r["split"]) == r["split"]  # never crosses
    assert len(split_of_cluster) == 200 + 300

    # Add images (new clusters and new members of an existing cluster), re-run.
    extra = kept_rows("cat", 300, start=600, per_cluster=3) + kept_rows("dog", 150, start=300)
    extra.append({**first[0], "file": "cat/late_member.jpg", "sha256": sha("late")})
    write_manifest(tmp_path / "m2.csv", first + extra)
    again = {r["file"]: r["split"] for r in split(tmp_path / "m2.csv", OPTIONS, 7, lists(tmp_path / "s2"))}
    assert all(again[r["file"]] == r["split"] for r in rows)  # nothing existing moved
    assert again["cat/late_member.jpg"] == again[first[0]["file"]]  # joins its cluster's split
    assert {again[r["file"]] for r in extra} == {"train", "val", "test"}

    # The seed matters; the same seed reproduces.
    other = split(tmp_path / "m1.csv", OPTIONS, 8, lists(tmp_path / "s3"))
    assert [r["split"] for r in other] != [r["split"] for r in rows]
    assert split(tmp_path / "m1.csv", OPTIONS, 7, lists(tmp_path / "s4")) == rows


def test_too_few_images_fails_naming_class_counts_and_remedy(tmp_path):
    write_manifest(tmp_path / "m.csv", kept_rows("cat", 200) + kept_rows("tiny", 2))
    with pytest.raises(SplitError) as info:
        split(tmp_path / "m.csv", OPTIONS, 1, lists(tmp_path / "s"))
    msg = str(info.value)
    assert "class 'tiny': 2 kept images" in msg and "'cat'" not in msg
    assert "max_images" in msg and "split.min_per_split" in msg and "kept images fill that split" in msg
    assert not any(p.exists() for p in lists(tmp_path / "s").values())

    write_manifest(tmp_path / "m.csv", kept_rows("cat", 40))
    with pytest.raises(
        SplitError, match=r"class 'cat': 40 kept images -> train \d+, val \d+, test \d+ \(split.min_per_split = 15\)"
    ):
        split(tmp_path / "m.csv", {**OPTIONS, "min_per_split": 15}, 1, lists(tmp_path / "s"))


def blocks(seed, size=48, cell=8):
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (8, 3), dtype=np.uint8)
    idx = rng.integers(0, 8, (size // cell, size // cell))
    return palette[idx].repeat(cell, 0).repeat(cell, 1)


def test_clean_then_split_on_real_files_is_stable(tmp_path):
    """Real images through clean and split; then the crawl adds more and near duplicates."""
    raw = Results(tmp_path).raw_dir
    for c, cls in enumerate(("circle", "square")):
        (raw / cls).mkdir(parents=True)
        for i in range(30):
            Image.fromarray(blocks(1000 * c + i)).save(raw / cls / f"{i:06d}.png")
    clean(raw, ["circle", "square"], CLEAN, tmp_path / "m1.csv")
    before = {r["file"]: r["split"] for r in split(tmp_path / "m1.csv", OPTIONS, 3, lists(tmp_path / "s1"))}
    assert len(before) == 60

    for c, cls in enumerate(("circle", "square")):
        for i in range(30, 45):
            Image.fromarray(blocks(1000 * c + i)).save(raw / cls / f"{i:06d}.png")
        # a re-encoded near duplicate of an existing image, crawled later
        Image.fromarray(blocks(1000 * c)).save(raw / cls / "000999.jpg", quality=85)
    manifest = clean(raw, ["circle", "square"], CLEAN, tmp_path / "m2.csv")
    after = {r["file"]: r["split"] for r in split(tmp_path / "m2.csv", OPTIONS, 3, lists(tmp_path / "s2"))}
    assert all(after[f] == s for f, s in before.items())
    assert len(after) == 90
    near = {r["file"]: r for r in manifest if r["reason"] == "near_duplicate"}
    assert set(near) == {"circle/000999.jpg", "square/000999.jpg"}
    assert near["circle/000999.jpg"]["dup_of"] == "circle/000000.png"
