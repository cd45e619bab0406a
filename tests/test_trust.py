"""Trust checks of explanation maps on a small CNN trained on shapes drawn on clutter.

- Parameter randomisation (Adebayo et al. 2018): Grad-CAM and plain gradients change
  when the trained weights are shuffled, from the head down; an "explanation" that is
  the image's own gradient magnitude (an edge detector, independent of the weights)
  does not, and must fail.
- Deletion and insertion: a map that ranks the object's pixels (from its true box)
  first beats the reverse ranking in both directions and the random order on insertion
  (on deletion, random order knocks the trained CNN to chance about as fast).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.learned import Check, require
from tests.shapes import SIZE, TEST_PER_CLASS, train_shapes_cnn

BLOCKS = ("b1_pool", "b2_pool", "last_conv")
SEED = 0  # bench/seed_robustness.py runs the same checks over seeds 0-9
# The trained network must have learned before its maps are judged (chance 0.33).
LEARNED = 0.75
PER_CLASS = 12  # test images per class the checks explain


def learned_check(seed: int = SEED) -> Check:
    return Check("trust: shapes CNN test accuracy", train_shapes_cnn(seed).accuracy, LEARNED)


def trained_subset(seed: int = SEED, *, check: bool = True):
    """(model, x, y, boxes): the shared shapes CNN and PER_CLASS of its test images per class."""
    t = train_shapes_cnn(seed)
    if check:
        require([learned_check(seed)])
    keep = np.concatenate([np.arange(PER_CLASS) + k * TEST_PER_CLASS for k in range(3)])
    return t.model, t.x_test[keep], t.y_test[keep], t.boxes[keep]


@pytest.fixture(scope="module")
def trained():
    return trained_subset()


def base_blocks(model):
    base = model.get_layer("base")
    names = [layer.name for layer in base.layers]
    cuts = [names.index(b) + 1 for b in BLOCKS]
    return [base.layers[s:e] for s, e in zip([0, *cuts[:-1]], cuts)]


def edge_map(images) -> np.ndarray:
    """Image-gradient magnitude: an 'explanation' that never looks at the network."""
    g = np.asarray(images, np.float64).mean(axis=-1)
    gy, gx = np.gradient(g, axis=(1, 2))
    return np.hypot(gx, gy)


def randomisation_checks(trained) -> list[Check]:
    """The parameter-randomisation test on the trained CNN, as checks; asserts its mechanics."""
    from convscope.analysis.explain import gradcam, saliency
    from convscope.analysis.split_model import cut
    from convscope.analysis.trust import sanity

    model, x, y, _ = trained
    c = cut(model, "last_conv")
    images, targets = x[:8], y[:8]

    def compute():
        return {
            "gradcam": gradcam.gradcam(c, images, targets, 3)["gradcam"],
            "saliency": saliency.saliency(c, images, targets, 3),
            "edges": edge_map(images),
        }

    trained_maps = compute()
    weights_before = [w.copy() for w in model.get_weights()]
    stage_list = sanity.stages([model.get_layer("head")], base_blocks(model), n_blocks=2)
    assert [(s.name, s.mode) for s in stage_list] == [
        ("head", "cascading"),
        ("last_conv", "cascading"),
        ("b2_pool", "cascading"),
        ("last_conv", "independent"),
        ("b2_pool", "independent"),
    ]
    result = sanity.randomisation_check(stage_list, compute, trained_maps, (SIZE, SIZE), threshold=0.5, seed=3)
    # the trained weights are back, every one
    for a, b in zip(model.get_weights(), weights_before):
        np.testing.assert_array_equal(a, b)
    v = result.verdicts
    print({k: (r["passed"], round(r["spearman"], 3), round(r["ssim"], 3)) for k, r in v.items()})
    assert v["gradcam"]["passed"] == (v["gradcam"]["spearman"] < 0.5), v
    assert not v["edges"]["passed"] and "barely change" in v["edges"]["reason"], v
    edges = [r for r in result.rows if r["method"] == "edges"]
    gc = {r["stage"]: r for r in result.rows if r["method"] == "gradcam" and r["mode"] == "cascading"}
    return [
        # the sanity verdict: passed when the rank correlation falls below 0.5
        Check("randomisation: Grad-CAM spearman", v["gradcam"]["spearman"], 0.5, above=False),
        Check("randomisation: saliency spearman", v["saliency"]["spearman"], 0.5, above=False),
        Check("randomisation: edge map min spearman", min(r["spearman"] for r in edges), 0.999),
        Check("randomisation: edge map min SSIM", min(r["ssim"] for r in edges), 0.999),
        # randomising deeper (cascading) moves Grad-CAM further from the trained maps than the head alone
        Check("randomisation: Grad-CAM SSIM at b2_pool", gc["b2_pool"]["ssim"], 0.9, above=False),
        # rank correlation's size is the similarity: on seed 7 the head alone already took it
        # to -0.17 and b2_pool to 0.00, which the signed difference (0.175 < 0.2) nearly failed
        Check(
            "randomisation: Grad-CAM |spearman| b2_pool - head",
            abs(gc["b2_pool"]["spearman"]) - abs(gc["head"]["spearman"]),
            0.2,
            above=False,
        ),
    ]


@pytest.mark.learned
def test_randomisation_check_fails_an_edge_detector(trained):
    """Grad-CAM and saliency pass the randomisation check on the trained CNN, an edge map fails it.

    Measured by bench/seed_robustness.py (tf: TF as installed; tf-noonednn: TF_ENABLE_ONEDNN_OPTS=0) in
    18 runs (tf seeds 2,3,4,5,6,7,8,9; tf-noonednn seeds 0-9; tf seeds 0 and 1 passed
    before values were recorded), worst value and threshold:
    - trust: shapes CNN test accuracy: min 0.933 (>= 0.750)
    - randomisation: Grad-CAM spearman: max 0.317 (< 0.500)
    - randomisation: saliency spearman: max 0.261 (< 0.500)
    - randomisation: edge map min spearman: min 1.000 (>= 0.999)
    - randomisation: edge map min SSIM: min 1.000 (>= 0.999)
    - randomisation: Grad-CAM SSIM at b2_pool: max 0.322 (< 0.900)
    - randomisation: Grad-CAM |spearman| b2_pool - head: max 0.045 (< 0.200; this form in 6 of the runs)
    """
    require(randomisation_checks(trained))


def test_similarity_measures_on_known_maps():
    from convscope.analysis.trust.sanity import spearman, ssim

    rng = np.random.default_rng(0)
    a = rng.random((3, 16, 16))
    np.testing.assert_allclose(spearman(a, a), 1.0)
    np.testing.assert_allclose(spearman(a, -a), -1.0)
    np.testing.assert_allclose(spearman(a, a**3 + 2), 1.0)  # ranks only
    np.testing.assert_allclose(ssim(a, a), 1.0)
    assert (ssim(a, rng.random((3, 16, 16))) < 0.3).all()
    assert (spearman(a, np.zeros_like(a)) == 0).all()  # a flat map has no ranking: no similarity


def faithfulness_checks(trained) -> list[Check]:
    """Deletion and insertion of an object-first and a background-first map, as checks."""
    from convscope.analysis.trust.checks import CurveSettings, faithfulness

    model, x, y, boxes = trained
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    inside = (
        (xx >= boxes[:, 0, None, None])
        & (xx <= boxes[:, 2, None, None])
        & (yy >= boxes[:, 1, None, None])
        & (yy <= boxes[:, 3, None, None])
    ).astype(np.float64)
    # box pixels first, nearest the box centre first; the reverse ranks the background first
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    near = 1.0 / (1.0 + np.hypot(xx - cx[:, None, None], yy - cy[:, None, None]))
    maps = {"object": inside + near, "background": -(inside + near)}
    f = faithfulness(model, x, y, maps, settings=CurveSettings(steps=8, batch_size=32, seed=0))
    auc, gain = f["auc"], f["gain"]
    print(auc)
    # both directions share their end points: the intact and the mean-colour image
    d, i = f["curves"]["deletion"]["random"], f["curves"]["insertion"]["random"]
    np.testing.assert_allclose(d[:, 0], i[:, -1], rtol=1e-5)
    np.testing.assert_allclose(d[:, -1], i[:, 0], rtol=1e-5)
    dele, ins = auc["deletion"], auc["insertion"]
    return [
        # Deleting pixels in random order knocks a trained CNN to chance about as fast as
        # deleting the object (scattered mean-colour pixels are far off its training
        # images): object-first minus random deletion AUC measured -0.030 to +0.028 over
        # seeds, a sign that flips. So deletion is asserted against the background-first
        # order, insertion against random and background-first.
        Check("deletion AUC: background - object", dele["background"] - dele["object"], 0.3),
        Check("insertion AUC: object - random", ins["object"] - ins["random"], 0.05),
        Check("insertion AUC: object - background", ins["object"] - ins["background"], 0.3),
        Check("insertion gain of the object map", gain["insertion"]["object"], 0.0),
    ]


@pytest.mark.learned
def test_object_first_map_beats_random_in_both_directions(trained):
    """Deleting the object's pixels first hurts far more than deleting the background first;
    inserting them first helps more than random and than the background.

    Measured by bench/seed_robustness.py (tf: TF as installed; tf-noonednn: TF_ENABLE_ONEDNN_OPTS=0) in
    18 runs (tf seeds 2,3,4,5,6,7,8,9; tf-noonednn seeds 0-9; tf seeds 0 and 1 passed
    before values were recorded), worst value and threshold:
    - deletion AUC: background - object: min 0.402 (>= 0.300)
    - insertion AUC: object - random: min 0.364 (>= 0.050)
    - insertion AUC: object - background: min 0.398 (>= 0.300)
    - insertion gain of the object map: min 0.364 (>= 0.000)
    """
    require(faithfulness_checks(trained))


def test_ranking_puts_sanity_failures_last_and_orders_by_evidence():
    from convscope.analysis.trust.ranking import rank_methods, verdict_line

    faith = {
        "auc": {"deletion": {"a": 0.2, "b": 0.3, "c": 0.1, "random": 0.4}, "insertion": {"a": 0.7, "b": 0.5, "c": 0.8}},
        "gain": {"deletion": {"a": 0.2, "b": 0.1, "c": 0.3}, "insertion": {"a": 0.3, "b": -0.1, "c": 0.4}},
    }
    sanity = {
        "a": {"passed": True, "spearman": 0.1},
        "b": {"passed": True, "spearman": 0.2},
        "c": {"passed": False, "spearman": 0.95},  # the most "faithful" one shows edges: last
    }
    pointing = {"images": 10, "centre_baseline": 0.5, "methods": {n: {"accuracy": 0.8} for n in "abc"}}
    rows = rank_methods(["a", "b", "c"], faith, sanity=sanity, pointing=pointing)
    assert [r["method"] for r in rows] == ["a", "b", "c"] and [r["rank"] for r in rows] == [1, 2, 3]
    assert rows[0]["beats_random_both_ways"] and not rows[1]["beats_random_both_ways"]
    assert rows[0]["pointing_over_centre"] == pytest.approx(0.3)
    assert "Believe A first" in verdict_line(rows, {"a": "A"})
    # without the sanity check, the evidence alone decides
    assert [r["method"] for r in rank_methods(["a", "b", "c"], faith)] == ["c", "a", "b"]
    all_fail = {n: {"passed": False, "spearman": 0.9} for n in "abc"}
    assert "distrust" in verdict_line(rank_methods(["a", "b", "c"], faith, sanity=all_fail), {"c": "C"})
