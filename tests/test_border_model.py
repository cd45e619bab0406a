"""The border-mass check on a trained network's own maps (Grad-CAM and occlusion, computed as
the explain step computes them). A small CNN that can tell the classes only by a coloured frame
is said to decide every class from the border; one whose triangles alone are framed is said to
decide triangles (and nothing else) from it; one taught a colour patch in the centre is not.
Shapes and clutter fill every set, so the maps have something else to look at.
"""

from __future__ import annotations

import numpy as np
import pytest

from convscope.analysis.trust import border_mass
from tests.learned import Check, require
from tests.shapes import SHAPES, SIZE, shapes_on_clutter, small_cnn

pytestmark = pytest.mark.learned

COLOURS = np.array([(230, 20, 20), (20, 200, 20), (20, 20, 230)], np.uint8)
THRESHOLD, BORDER = 0.6, 0.125  # the schema's defaults for analysis.checks.border_share, border


def planted(per_class: int, seed: int, where: str):
    """Shapes on clutter whose label is a colour: a 3-px frame ("border"), a centred 10-px patch ("centre"),
    or a patch for all classes but the last, which alone is framed ("one").

    The label is drawn independently of the shape, so only the planted colour predicts it.
    """
    x, _, _ = shapes_on_clutter(per_class, seed)
    x = x.copy()
    y = np.random.default_rng(seed + 1).permutation(np.repeat(np.arange(len(SHAPES)), per_class))
    colour = COLOURS[y][:, None, None, :]
    lo = SIZE // 2 - 5
    if where == "border":
        for edge in (np.s_[:, :3], np.s_[:, -3:], np.s_[:, :, :3], np.s_[:, :, -3:]):
            x[edge] = np.broadcast_to(colour, x[edge].shape)
    elif where == "one":
        # The last class alone is framed; its centre patch takes another class's colour at random.
        last = y == len(SHAPES) - 1
        decoy = np.random.default_rng(seed + 2).integers(0, len(SHAPES) - 1, len(y))
        x[:, lo : lo + 10, lo : lo + 10] = np.where(last[:, None, None, None], COLOURS[decoy][:, None, None], colour)
        for edge in (np.s_[:3], np.s_[-3:], np.s_[:, :3], np.s_[:, -3:]):
            sub = x[last]
            sub[(slice(None), *np.index_exp[edge])] = COLOURS[-1]
            x[last] = sub
    else:
        x[:, lo : lo + 10, lo : lo + 10] = colour
    return x, y


def trained_maps(seed: int, where: str):
    """(maps by method, labels, test accuracy) of a small CNN trained 3 epochs on the planted set."""
    from convscope.analysis import options
    from convscope.analysis.explain import map_geometry
    from convscope.analysis.explain import maps as explain_maps
    from convscope.analysis.split_model import cut

    x_train, y_train = planted(200, seed, where)
    x_test, y_test = planted(8, 10_000 + seed, where)
    model = small_cnn(seed, last_width=32)
    model.fit(x_train.astype(np.float32), y_train, epochs=3, batch_size=32, verbose=0)
    accuracy = float(model.evaluate(x_test.astype(np.float32), y_test, verbose=0)[1])
    opts = options.resolve({"batch_size": 32})
    ctx = explain_maps.MapContext(
        model,
        cut(model, "last_conv"),
        "last_conv",
        len(SHAPES),
        opts,
        8,
        4,
        None,
        map_geometry.of_layer(model, "last_conv"),
    )
    maps, _ = explain_maps.compute_maps(ctx, x_test, y_test, ["gradcam", "occlusion"])
    return maps, y_test, accuracy


def shares(seed: int, where: str) -> tuple[dict, float]:
    maps, labels, accuracy = trained_maps(seed, where)
    result = border_mass.check(maps, labels, list(SHAPES), BORDER, THRESHOLD)
    return result, accuracy


# What each planted set is called in the checks, and which classes' border it must name.
PLANTS = {"border": ("frame", set(SHAPES)), "centre": ("centre patch", set()), "one": ("one framed", {"triangle"})}


def border_checks(seed: int, where: str) -> tuple[list[Check], dict]:
    """The trained network's figures on one planted set as checks, and the border-mass result.

    A class that must be named needs occlusion's border share at the threshold (Grad-CAM at the
    8 x 8 last conv spreads a 3-px frame inwards, so it is not asked); every other class stays
    below it by both methods."""
    result, accuracy = shares(seed, where)
    label, named = PLANTS[where]
    checks = [Check(f"{label}: test accuracy", accuracy, 0.9)]
    for r in result["rows"]:
        if r["method"] not in border_mass.FLAG_METHODS:
            continue
        name = f"{label}: {r['method']} border share of {r['class']}"
        if r["class"] not in named:
            checks.append(Check(name, r["border_share"], THRESHOLD, above=False))
        elif r["method"] == "occlusion":
            checks.append(Check(name, r["border_share"], THRESHOLD))
    return checks, result


@pytest.mark.parametrize("seed", [0])
def test_a_frame_learned_is_named(seed):
    """Frame-coloured labels: every class flagged, by occlusion.

    Measured over seeds 0-9, with and without TF_ENABLE_ONEDNN_OPTS=0 (20 runs,
    `bench/seed_robustness.py --suites border`): test accuracy 1.0 (>= 0.9); occlusion's
    border share 0.675-0.876 per class (threshold 0.6);
    Grad-CAM's 0.43-0.54, against at most 0.29 for the centre patch: Grad-CAM at the
    8 x 8 last conv spreads a 3-px frame's evidence inwards, occlusion does not.
    """
    checks, result = border_checks(seed, "border")
    require(checks, result["rows"])
    assert len(checks) == 1 + len(SHAPES)
    assert result["statement"].startswith("Possible shortcut") and all(f"{c} (" in result["statement"] for c in SHAPES)


@pytest.mark.parametrize("seed", [0])
def test_a_centre_patch_learned_stays_quiet(seed):
    """Patch-coloured labels: no class flagged.

    Measured over seeds 0-9, with and without TF_ENABLE_ONEDNN_OPTS=0 (20 runs, `--suites
    border`): test accuracy 1.0 (>= 0.9); border share at most 0.288 (Grad-CAM) and 0.103
    (occlusion), threshold 0.6.
    """
    checks, result = border_checks(seed, "centre")
    require(checks, result["rows"])
    assert len(checks) == 1 + 2 * len(SHAPES)
    assert result["flagged"] == [] and result["statement"].startswith("No class is decided")


@pytest.mark.parametrize("seed", [0])
def test_one_framed_class_is_named_alone(seed):
    """Triangles alone framed (their centre patch a decoy in another class's colour): triangle named, no other.

    Measured over seeds 0-9, with and without TF_ENABLE_ONEDNN_OPTS=0 (20 runs, `--suites
    border`): test accuracy 1.0 (>= 0.9); triangle's occlusion share 0.659-0.785 (threshold
    0.6); disk and square at most 0.136 (occlusion) and 0.430 (Grad-CAM), below 0.6.
    """
    checks, result = border_checks(seed, "one")
    require(checks, result["rows"])
    assert len(checks) == 1 + 1 + 2 * (len(SHAPES) - 1)
    assert {f["class"] for f in result["flagged"]} == {"triangle"}
    assert (
        "triangle (" in result["statement"]
        and "disk" not in result["statement"]
        and "square" not in result["statement"]
    )
