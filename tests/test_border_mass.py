"""The model-side shortcut check (convscope.analysis.trust.border_mass): maps whose mass sits on the
image border for one class name that class; maps on centred objects stay quiet. The record goes
through records.BORDER_MASS into the findings card.
"""

from __future__ import annotations

import numpy as np
import pytest

from convscope import layout, records
from convscope.analysis.trust import border_mass
from convscope.report import findings

CLASSES = ["disk", "square", "triangle"]
SIZE = 32


def _blobs(rng, n: int, centre_jitter: float) -> np.ndarray:
    """n Grad-CAM-like maps: a Gaussian blob (sigma 3 px) on an object near the centre."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    c = SIZE / 2 + rng.uniform(-centre_jitter, centre_jitter, size=(n, 2))
    return np.exp(-((yy - c[:, :1, None]) ** 2 + (xx - c[:, 1:, None]) ** 2) / (2 * 3.0**2))


def _frames(rng, n: int) -> np.ndarray:
    """n maps of a model reading a 3-px frame: high on the frame, low noise inside."""
    m = rng.uniform(0, 0.1, size=(n, SIZE, SIZE))
    m[:, :3], m[:, -3:], m[:, :, :3], m[:, :, -3:] = 1.0, 1.0, 1.0, 1.0
    return m


def _maps(seed: int, framed: int | None):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 8)
    maps = _blobs(rng, len(labels), centre_jitter=6)
    if framed is not None:
        maps[labels == framed] = _frames(rng, 8)
    # Occlusion drops can be negative (occluding helped): only the positive mass counts.
    occ = maps + rng.normal(0, 0.05, maps.shape)
    return {"gradcam": maps, "occlusion": occ, "saliency": rng.uniform(size=maps.shape)}, labels


def test_share_of_simple_maps():
    """An even map puts the ring's area share in the ring (1 - (24/32)^2 at 4 px of 32); a centre dot none."""
    even = np.ones((1, SIZE, SIZE))
    assert border_mass.border_shares(even, 0.125)[0] == pytest.approx(1 - (24 / 32) ** 2)
    dot = np.zeros((1, SIZE, SIZE))
    dot[0, 16, 16] = 1
    edge = np.zeros((1, SIZE, SIZE))
    edge[0, 0, 16], edge[0, 16, 16] = 3, 1
    assert border_mass.border_shares(dot, 0.125)[0] == 0
    assert border_mass.border_shares(edge, 0.125)[0] == pytest.approx(0.75)
    assert np.isnan(border_mass.border_shares(-even, 0.125)[0])  # no positive mass: no share


@pytest.mark.parametrize("seed", range(3))
def test_border_class_is_named(seed):
    """Triangles explained by a frame: flagged for Grad-CAM and occlusion, the other classes not.

    Measured over seeds 0-9: triangle 0.91-0.92, the other classes at most 0.13 (threshold 0.6).
    """
    maps, labels = _maps(seed, framed=2)
    result = border_mass.check(maps, labels, CLASSES, border=0.125, threshold=0.6)
    assert {(f["method"], f["class"]) for f in result["flagged"]} == {
        ("gradcam", "triangle"),
        ("occlusion", "triangle"),
    }
    s = result["statement"]
    assert s.startswith("Possible shortcut") and "triangle (Grad-CAM" in s and "disk" not in s and "square" not in s
    # saliency (uniform noise: 0.44 of its mass in the ring) is tabulated but never flags
    assert any(r["method"] == "saliency" for r in result["rows"])


@pytest.mark.parametrize("seed", range(3))
def test_centred_maps_stay_quiet(seed):
    """Blobs on objects within 6 px of the centre: no class flagged (at most 0.13 over seeds 0-9; threshold 0.6)."""
    maps, labels = _maps(seed, framed=None)
    result = border_mass.check(maps, labels, CLASSES, border=0.125, threshold=0.6)
    assert result["flagged"] == []
    assert result["statement"].startswith("No class is decided mostly from the image border")


def test_findings_card_carries_the_warning(tmp_path):
    """Written as the explain step writes it (records.BORDER_MASS + csv); the card's check fails naming the class."""
    folder = layout.AnalysisFolder(tmp_path / "run")
    folder.explain.path.mkdir(parents=True)
    for name, path in folder.records.items():
        records.ANALYSIS_RECORDS[name].not_run(path, "off in this test")
    maps, labels = _maps(0, framed=1)
    result = border_mass.check(maps, labels, CLASSES, border=0.125, threshold=0.6)
    entry = border_mass.write(result, folder.explain.path, folder.path)
    assert entry["kind"] == "table" and folder.explain.border_mass_csv.is_file()
    check = findings.border_check(folder)
    assert check.passed is False and "square (Grad-CAM" in check.text
    quiet, labels = _maps(0, framed=None)
    border_mass.write(border_mass.check(quiet, labels, CLASSES, 0.125, 0.6), folder.explain.path, folder.path)
    assert findings.border_check(folder).passed is True
    records.BORDER_MASS.not_run(folder.explain.border_mass, "checks off")
    assert findings.border_check(folder) is None
