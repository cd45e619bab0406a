"""Proof that the explanations point at the object: a small CNN trained on shapes drawn on
clutter, then the pointing game (is the heatmap's maximum inside the object's box?) for
Grad-CAM, occlusion and saliency, against chance = the mean box area fraction.

The images and the CNN: tests/shapes.py (shared with tests/test_trust.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.learned import Check, require
from tests.shapes import SHAPES, SIZE, shapes_on_clutter, train_shapes_cnn

SEED = 0  # bench/seed_robustness.py runs the same checks over seeds 0-9


def test_shapes_boxes_are_tight():
    x, y, boxes = shapes_on_clutter(4, seed=3)
    assert x.shape == (12, SIZE, SIZE, 3) and x.dtype == np.uint8
    assert ((boxes[:, 2] - boxes[:, 0]) >= 8).all() and ((boxes[:, 3] - boxes[:, 1]) >= 6).all()
    assert (boxes >= 0).all() and (boxes <= SIZE).all()


def pointing_checks(seed: int = SEED) -> tuple[list[Check], dict]:
    """(checks, figures): the pointing game and deletion curves of the shared shapes CNN."""
    from convscope.analysis.explain import gradcam, occlusion, saliency
    from convscope.analysis.split_model import cut
    from convscope.analysis.trust import checks

    t = train_shapes_cnn(seed)
    model, x_test, y_test, boxes = t.model, t.x_test, t.y_test, t.boxes
    c = cut(model, "last_conv")
    maps = gradcam.gradcam(c, x_test, y_test, len(SHAPES))
    maps["occlusion"] = occlusion.occlusion(model, x_test, y_test, occlusion.Patches(patch=8, stride=4, fill="mean"))
    maps["saliency"] = saliency.saliency(c, x_test, y_test, len(SHAPES))
    game = checks.pointing_game(maps, boxes, (SIZE, SIZE))
    fractions, curves = checks.deletion_curves(
        model, x_test, y_test, maps, checks.CurveSettings(steps=8, batch_size=64)
    )
    aucs = {name: float(checks.auc(fractions, c).mean()) for name, c in curves.items()}
    figures = {
        "test_accuracy": t.accuracy,
        "chance": game["chance"],
        "centre_baseline": game["centre_baseline"],
        **{name: m["accuracy"] for name, m in game["methods"].items()},
        "off_centre_images": game["off_centre_images"],
        "off_centre_chance": game["off_centre_chance"],
        **{f"{name}_off_centre": m["off_centre_accuracy"] for name, m in game["methods"].items()},
        "deletion_auc": aucs,
    }
    print("pointing game:", json.dumps(figures))
    chance, off_chance = game["chance"], game["off_centre_chance"]
    assert game["images"] == len(x_test) and 0.05 < chance < 0.35 and game["off_centre_images"] >= 30
    # deletion curves start at the model's own probabilities and stay probabilities
    p0 = model.predict(x_test.astype(np.float32), verbose=0)[np.arange(len(x_test)), y_test]
    for curve in curves.values():
        np.testing.assert_allclose(curve[:, 0], p0, rtol=1e-4, atol=1e-5)
        assert ((curve >= 0) & (curve <= 1)).all()
    gc = game["methods"]["gradcam"]
    out = [
        # chance is 1/3; something to explain
        Check("shapes CNN test accuracy", t.accuracy, 0.5),
        # well above chance, and above a map that always points at the centre; off-centre
        # objects (where that map scores 0) are found too
        Check("Grad-CAM pointing", gc["accuracy"], max(0.6, 3 * chance, game["centre_baseline"] + 0.15)),
        Check("Grad-CAM pointing off-centre", gc["off_centre_accuracy"], max(0.5, 3 * off_chance)),
    ]
    for name in ("gradcam++", "occlusion", "saliency"):
        m = game["methods"][name]
        out.append(Check(f"{name} pointing / chance", m["accuracy"] / chance, 2.0))
        out.append(Check(f"{name} pointing off-centre / chance", m["off_centre_accuracy"] / off_chance, 2.0))
    # Not asserted: that deleting the pixels the maps rank first hurts more than random
    # deletion. On a CNN that has learned, random pixel deletion knocks it to chance about as
    # fast (random minus the maps' mean AUC measured 0.007-0.056 over seeds: a coin toss on
    # another CPU); the AUCs stay in the recorded figures.
    return out, figures


@pytest.mark.learned
def test_gradcam_points_at_the_object(record_property):
    """Grad-CAM, Grad-CAM++, occlusion and saliency point at the object on the trained shapes CNN.

    Measured by bench/seed_robustness.py (tf: TF as installed; tf-noonednn: TF_ENABLE_ONEDNN_OPTS=0) in
    18 runs (tf seeds 2,3,4,5,6,7,8,9; tf-noonednn seeds 0-9; tf seeds 0 and 1 passed
    before values were recorded), worst value and threshold:
    - shapes CNN test accuracy: min 0.933 (>= 0.500)
    - Grad-CAM pointing: min 0.842 (>= 0.775)
    - Grad-CAM pointing off-centre: min 0.822 (>= 0.500)
    - gradcam++ pointing / chance: min 5.654 (>= 2.000)
    - gradcam++ pointing off-centre / chance: min 6.702 (>= 2.000)
    - occlusion pointing / chance: min 4.819 (>= 2.000)
    - occlusion pointing off-centre / chance: min 5.139 (>= 2.000)
    - saliency pointing / chance: min 3.339 (>= 2.000)
    - saliency pointing off-centre / chance: min 3.597 (>= 2.000)
    """
    found, figures = pointing_checks()
    record_property("pointing_game", json.dumps(figures))
    require(found, figures)


def test_pointing_game_scores_hand_made_maps():
    from convscope.analysis.trust.checks import pointing_game

    size = (20, 30)
    boxes = np.array([[10, 5, 20, 10], [0, 0, 5, 5], [10, 5, 20, 10], [25, 15, 40, 25], [np.nan] * 4])
    maps = np.zeros((5, 10, 15))  # half resolution: resized to 20 x 30 before the argmax
    maps[0, 3, 7] = 1  # ~ (6.5, 14.5) in image pixels: inside box 0
    maps[1, 8, 12] = 1  # far from box 1
    # map 2 is flat (all zero): points nowhere, a miss
    maps[3, 9, 14] = 1  # bottom-right corner: inside box 3 (which is clipped to the image)
    game = pointing_game({"m": maps}, boxes, size)
    assert game["images"] == 4  # the row without a box is left out
    np.testing.assert_array_equal(game["hits"]["m"], [True, False, False, True])
    assert game["methods"]["m"] == {"accuracy": 0.5, "hits": 2, "images": 4, "off_centre_accuracy": 0.5}
    # box areas clipped to the image: 50, 25, 50, 5 x 5 = 25 pixels of 600
    assert game["chance"] == pytest.approx((50 + 25 + 50 + 25) / 4 / 600)
    # the centre pixel (9, 14) lies only in boxes 0 and 2: images 1 and 3 are off-centre
    assert game["centre_baseline"] == 0.5
    assert game["off_centre_images"] == 2 and game["off_centre_chance"] == pytest.approx((25 + 25) / 2 / 600)
    # growing the boxes by a tolerance turns the near miss into a hit
    near = np.zeros((1, 20, 30))
    near[0, 4, 8] = 1  # pixel centre (8.5, 4.5): 1.5 px left of and 0.5 px above box 0
    assert not pointing_game({"m": near}, boxes[:1], size)["hits"]["m"][0]
    assert pointing_game({"m": near}, boxes[:1], size, tolerance=2)["hits"]["m"][0]


def test_pointing_tolerance_grows_the_chance_level_with_the_box():
    from convscope.analysis.trust.checks import pointing_game

    size = (20, 30)
    boxes = np.array([[10, 5, 20, 10], [0, 0, 5, 5]])
    maps = np.zeros((2, 20, 30))
    game = pointing_game({"m": maps}, boxes, size, tolerance=2)
    # (10 + 4) x (5 + 4) and, clipped to the image, (5 + 2) x (5 + 2) pixels of 600
    assert game["chance"] == pytest.approx((14 * 9 + 7 * 7) / 2 / 600)
    assert game["tolerance_px"] == 2
