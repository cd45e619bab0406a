"""What keeps the data stages linear at 100,000 images (issue 25), checked at small size.

The costs themselves are measured by `bench/review_reruns.py --scale`; these tests pin the
behaviour the fixes must keep: the ledger's running ok count equals its rows, the chunked
candidate search returns the exact nearest neighbours, and a clean rerun with no new file
skips the near-copy search and writes the same manifest.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from convscope.data import clean as clean_mod
from convscope.data import dedup, nearcopy, synthetic
from convscope.data.ledger import Ledger

OPTIONS = {"min_side": 16, "max_pixels": 50_000_000, "near_copy": 10}


def png(seed: int) -> bytes:
    return synthetic.png_bytes(synthetic.draw("c", "circle", seed, 1, synthetic.Scene.of(size=24)).image)


def test_ledger_ok_count_follows_every_status_change(tmp_path):
    """ok_count is kept as rows change (no longer recounted per image): failures, their
    retries, duplicates, files deleted between runs and files adopted on load."""
    folder = tmp_path / "cls"
    ledger = Ledger(folder, "cls")
    ledger.record("urllist", "http://x/a", "failed", "timeout")
    assert ledger.ok_count == 0
    ledger.store("urllist", "http://x/a", png(1), "png")  # the retry replaces the failed row
    ledger.store("urllist", "http://x/b", png(2), "png")
    ledger.store("urllist", "http://x/c", png(1), "png")  # duplicate bytes: not ok
    ledger.store("urllist", "http://x/b", png(3), "png")  # final already: ignored
    assert ledger.ok_count == 2
    assert [r["url_or_path"] for r in ledger.rows()] == ["http://x/a", "http://x/b", "http://x/c"]
    ledger.close()
    (folder / ledger.rows()[0]["file"]).unlink()  # deleted by hand: missing on reload
    (folder / "000099.png").write_bytes(png(4))  # copied in by hand: adopted on reload
    again = Ledger(folder, "cls")
    rows = again.rows()
    assert again.ok_count == sum(r["status"] == "ok" for r in rows) == 2
    assert sorted(r["status"] for r in rows) == ["duplicate", "missing", "ok", "ok"]


def thumbs(n: int, side: int = 16) -> list[np.ndarray]:
    return [
        nearcopy.thumbnail(synthetic.draw("c", "square", 3, i, synthetic.Scene.of(size=side)).image) for i in range(n)
    ]


def test_candidates_are_the_exact_nearest_by_correlation():
    """The chunked search (scikit-learn) returns each query's k most correlated pool images
    (self excluded), the same as the full similarity matrix it replaces, up to float ties."""
    px = nearcopy.Pixels(thumbs(300), 16)
    queries, pool = np.arange(0, 300, 3), np.arange(100, 300)
    found = px.candidates(queries, pool, k=nearcopy.CANDIDATES)
    for feats in (px.coarse, px.moments):
        sim = feats[queries] @ feats[pool].T
        sim[queries[:, None] == pool[None, :]] = -np.inf
        kth = -np.sort(-sim, axis=1)[:, nearcopy.CANDIDATES - 1]
        for r, q in enumerate(queries):
            must = set(pool[sim[r] > kth[r] + 1e-5].tolist())
            assert must <= set(found[int(q)].tolist()), f"query {q}: a nearer image is missing"
    for q, ps in found.items():
        assert q not in ps.tolist()
        assert nearcopy.CANDIDATES <= len(ps) <= 2 * nearcopy.CANDIDATES


def test_candidates_find_a_shifted_copy_and_a_tiny_pool():
    ts = thumbs(60)
    shifted = np.roll(ts[7], 1, axis=1)
    px = nearcopy.Pixels([*ts, shifted], 16)
    assert 7 in px.candidates(np.array([60]), np.arange(61))[60].tolist()
    assert px.candidates(np.array([0]), np.array([0, 5]))[0].tolist() == [5]


def write_raw(root, per_class: int = 40):
    for c, shape in (("circle", "circle"), ("square", "square")):
        folder = root / c
        folder.mkdir(parents=True)
        for i in range(per_class):
            synthetic.draw(c, shape, 5, i, synthetic.Scene.of(size=32)).image.save(folder / f"{i:06d}.png")
    src = Image.open(root / "circle" / "000003.png")
    src.save(root / "circle" / "000900.png")  # an exact copy
    Image.fromarray(np.clip(np.asarray(src, np.int16) + 6, 0, 255).astype(np.uint8)).save(
        root / "circle" / "000901.png"
    )  # a near copy: a little brighter


def test_rerun_without_new_files_skips_the_search_and_keeps_the_manifest(tmp_path, monkeypatch):
    """A review edit reruns clean over every file; with no newcomer the near-copy search
    (build + calibration, minutes at 100,000 images) is skipped and nothing changes."""
    raw, out = tmp_path / "raw", tmp_path / "manifest.csv"
    write_raw(raw)
    rows = clean_mod.clean(raw, ["circle", "square"], OPTIONS, out, clean_mod.Memory(prior=out))
    reasons = {r["file"]: r["reason"] for r in rows}
    assert reasons["circle/000900.png"] == "duplicate" and reasons["circle/000901.png"] == "near_duplicate"
    first = out.read_bytes()

    def no_search(*args, **kwargs):
        raise AssertionError("the near-copy search was built on a rerun without newcomers")

    monkeypatch.setattr(dedup.Near, "build", no_search)
    clean_mod.clean(raw, ["circle", "square"], OPTIONS, out, clean_mod.Memory(prior=out))
    assert out.read_bytes() == first
    (raw / "square" / "000777.png").write_bytes((raw / "square" / "000001.png").read_bytes())
    with pytest.raises(AssertionError, match="near-copy search was built"):
        clean_mod.clean(raw, ["circle", "square"], OPTIONS, out, clean_mod.Memory(prior=out))
