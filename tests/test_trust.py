"""Trust checks of explanation maps on a small CNN trained on shapes drawn on clutter.

- Parameter randomisation (Adebayo et al. 2018): Grad-CAM and plain gradients change
  when the trained weights are shuffled, from the head down; an "explanation" that is
  the image's own gradient magnitude (an edge detector, independent of the weights)
  does not, and must fail.
- Deletion and insertion: a map that ranks the object's pixels (from its true box)
  first beats the random order in both directions; the reverse ranking loses to it.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.shapes import SIZE, shapes_on_clutter, small_cnn

BLOCKS = ("b1_pool", "b2_pool", "last_conv")


@pytest.fixture(scope="module")
def trained():
    x_train, y_train, _ = shapes_on_clutter(700, seed=0)
    x_test, y_test, boxes = shapes_on_clutter(12, seed=1)
    model = small_cnn()
    model.fit(x_train.astype(np.float32), y_train, epochs=4, batch_size=32, verbose=0, shuffle=True)
    accuracy = float(model.evaluate(x_test.astype(np.float32), y_test, verbose=0)[1])
    assert accuracy > 0.55, f"the small CNN did not learn the shapes (test accuracy {accuracy:.2f})"
    return model, x_test, y_test, boxes


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


def test_randomisation_check_fails_an_edge_detector(trained):
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
    assert v["gradcam"]["passed"] and v["saliency"]["passed"], v
    assert not v["edges"]["passed"] and "barely change" in v["edges"]["reason"], v
    edges = [r for r in result.rows if r["method"] == "edges"]
    assert all(r["spearman"] > 0.999 and r["ssim"] > 0.999 for r in edges)
    # randomising deeper (cascading) moves Grad-CAM further from the trained maps than the head alone
    gc = {r["stage"]: r for r in result.rows if r["method"] == "gradcam" and r["mode"] == "cascading"}
    assert gc["b2_pool"]["ssim"] < 0.9 and gc["b2_pool"]["spearman"] < gc["head"]["spearman"] + 0.2


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


def test_object_first_map_beats_random_in_both_directions(trained):
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
    assert auc["deletion"]["object"] < auc["deletion"]["random"] - 0.02, auc
    assert auc["insertion"]["object"] > auc["insertion"]["random"] + 0.05, auc
    assert auc["deletion"]["background"] > auc["deletion"]["object"], auc
    assert auc["insertion"]["background"] < auc["insertion"]["object"], auc
    assert gain["deletion"]["object"] > 0 and gain["insertion"]["object"] > 0
    # both directions share their end points: the intact and the mean-colour image
    d, i = f["curves"]["deletion"]["random"], f["curves"]["insertion"]["random"]
    np.testing.assert_allclose(d[:, 0], i[:, -1], rtol=1e-5)
    np.testing.assert_allclose(d[:, -1], i[:, 0], rtol=1e-5)


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
