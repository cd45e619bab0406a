"""Proof that the explanations point at the object: a small CNN trained on shapes drawn on
clutter, then the pointing game (is the heatmap's maximum inside the object's box?) for
Grad-CAM, occlusion and saliency, against chance = the mean box area fraction.

The images and the CNN: tests/shapes.py (shared with tests/test_trust.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.shapes import SHAPES, SIZE, shapes_on_clutter, small_cnn


def test_shapes_boxes_are_tight():
    x, y, boxes = shapes_on_clutter(4, seed=3)
    assert x.shape == (12, SIZE, SIZE, 3) and x.dtype == np.uint8
    assert ((boxes[:, 2] - boxes[:, 0]) >= 8).all() and ((boxes[:, 3] - boxes[:, 1]) >= 6).all()
    assert (boxes >= 0).all() and (boxes <= SIZE).all()


def test_gradcam_points_at_the_object(record_property):
    from convscope.analysis.explain import gradcam, occlusion, saliency
    from convscope.analysis.split_model import cut
    from convscope.analysis.trust import checks

    x_train, y_train, _ = shapes_on_clutter(1500, seed=0)
    x_test, y_test, boxes = shapes_on_clutter(40, seed=1)
    model = small_cnn(last_width=64)
    model.fit(x_train.astype(np.float32), y_train, epochs=4, batch_size=32, verbose=0, shuffle=True)
    accuracy = float(model.evaluate(x_test.astype(np.float32), y_test, verbose=0)[1])
    # chance is 1/3; 0.72 measured (TF 2.21, 2 cores)
    assert accuracy > 0.5, f"the small CNN did not learn the shapes (test accuracy {accuracy:.2f}); nothing to explain"

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
        "test_accuracy": accuracy,
        "chance": game["chance"],
        "centre_baseline": game["centre_baseline"],
        **{name: m["accuracy"] for name, m in game["methods"].items()},
        "off_centre_images": game["off_centre_images"],
        "off_centre_chance": game["off_centre_chance"],
        **{f"{name}_off_centre": m["off_centre_accuracy"] for name, m in game["methods"].items()},
        "deletion_auc": aucs,
    }
    record_property("pointing_game", json.dumps(figures))
    print("pointing game:", json.dumps(figures))
    chance, off_chance = game["chance"], game["off_centre_chance"]
    assert game["images"] == len(x_test) and 0.05 < chance < 0.35 and game["off_centre_images"] >= 30
    gc = game["methods"]["gradcam"]
    # well above chance, and above a map that always points at the centre; off-centre
    # objects (where that map scores 0) are found too
    assert gc["accuracy"] >= max(0.6, 3 * chance, game["centre_baseline"] + 0.15), figures
    assert gc["off_centre_accuracy"] >= max(0.5, 3 * off_chance), figures
    for name in ("gradcam++", "occlusion", "saliency"):
        m = game["methods"][name]
        assert m["accuracy"] >= 2 * chance and m["off_centre_accuracy"] >= 2 * off_chance, (name, figures)
    # deleting the pixels the maps rank first hurts more, on average, than deleting at random
    mean_auc = np.mean([aucs[name] for name in ("gradcam", "gradcam++", "occlusion", "saliency")])
    assert mean_auc < aucs["random"], figures
    # deletion curves start at the model's own probabilities and stay probabilities
    p0 = model.predict(x_test.astype(np.float32), verbose=0)[np.arange(len(x_test)), y_test]
    for curve in curves.values():
        np.testing.assert_allclose(curve[:, 0], p0, rtol=1e-4, atol=1e-5)
        assert ((curve >= 0) & (curve <= 1)).all()


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
