"""Explanation analyses end to end (convscope.analysis.explain.run) and their parts, on both backends.

Occlusion is checked against a naive loop (one image, one patch, one predict call
at a time); feature visualization must raise its channel's activation; the change
analysis must find a weight change and a dead channel planted by hand; explain_model
must write every file its index sections name, for a nested-base classifier.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_gradients import classifier, other_backend, run_checks_on

REPO = Path(__file__).resolve().parent.parent


def tiny_data(model, n=9, size=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    y = np.arange(n) % classes
    probs = np.asarray(model.predict(x.astype(np.float32), verbose=0))
    boxes = np.tile([2.0, 3.0, 9.0, 10.0], (n, 1))
    boxes[0] = np.nan  # an image without a box
    return {"x": x, "labels": y, "probs": probs, "classes": ["a", "b", "c"][:classes], "boxes": boxes}


# ---- checks (run on each backend) -------------------------------------------------


def check_occlusion_matches_naive_loop():
    from convscope.analysis.explain.occlusion import Patches, occlusion

    model = classifier(nested=True, size=12)
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (2, 12, 12, 3)).astype(np.uint8)
    targets = np.array([1, 2])
    # a stride that does not divide the side (last patch flush with the edge), and one patch = whole image
    for patch, stride, fill in ((5, 3, "mean"), (12, 1, 128)):
        fast = occlusion(model, images, targets, Patches(patch, stride, fill), batch_size=7, chunk=10)
        # naive: every patch of every image on its own
        starts = sorted(set(range(0, 12 - patch + 1, stride)) | {12 - patch})

        def prob(one, k):  # one image per call
            return float(model.predict_on_batch(one[None])[0, k])

        for i, img in enumerate(images):
            p0 = prob(img.astype(np.float32), targets[i])
            colour = img.reshape(-1, 3).mean(axis=0) if fill == "mean" else np.full(3, float(fill))
            total, count = np.zeros((12, 12)), np.zeros((12, 12))
            for y in starts:
                for x in starts:
                    covered = img.astype(np.float32).copy()
                    covered[y : y + patch, x : x + patch] = colour
                    p = prob(covered, targets[i])
                    total[y : y + patch, x : x + patch] += p0 - p
                    count[y : y + patch, x : x + patch] += 1
            np.testing.assert_allclose(fast[i], total / count, rtol=1e-4, atol=1e-6)
        assert np.abs(fast).max() > 0


def check_deletion_matches_naive_loop():
    from convscope.analysis.explain.gradcam import upsample
    from convscope.analysis.trust.checks import CurveSettings, auc, deletion_curves

    model = classifier(nested=True, size=12)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 12, 12, 3)).astype(np.uint8)
    targets = np.array([0, 1, 2])
    maps = {"m": rng.random((3, 6, 6))}  # no ties: the order is unambiguous
    fractions, curves = deletion_curves(model, images, targets, maps, CurveSettings(steps=4, batch_size=5, chunk=5))
    np.testing.assert_allclose(fractions, [0, 0.25, 0.5, 0.75, 1])
    assert set(curves) == {"m", "random"} and curves["m"].shape == (3, 5)
    ranked = upsample(maps["m"], (12, 12)).reshape(3, -1)
    for i in range(3):
        order = np.argsort(-ranked[i])
        for j, f in enumerate(fractions):
            pixels = images[i].astype(np.float32).reshape(-1, 3)
            pixels[order[: round(f * 144)]] = images[i].reshape(-1, 3).mean(axis=0)
            p = model.predict_on_batch(pixels.reshape(1, 12, 12, 3))[0, targets[i]]
            assert abs(p - curves["m"][i, j]) < 1e-5, (i, f, p, curves["m"][i, j])
    # both orders start from the intact and end at the fully deleted images
    np.testing.assert_allclose(curves["random"][:, [0, -1]], curves["m"][:, [0, -1]])
    np.testing.assert_allclose(auc(fractions, np.ones((1, 5))), [1.0])


def check_filter_vis_raises_activation():
    from convscope.analysis.split_model import cut
    from convscope.analysis.standard.filter_vis import Settings, channel_means, visualize

    model = classifier(nested=True, size=16, seed=2)
    c = cut(model, "last")
    natural = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3)).astype(np.float32)
    typical = channel_means(c.to_layer, natural).mean(axis=0)
    channels = [0, 2, 4]
    for fourier in (True, False):
        r = visualize(
            c.to_layer,
            channels,
            size=(16, 16),
            settings=Settings.from_options({"steps": 48, "fourier": fourier, "seed": 1}),
        )
        assert r.images.shape == (3, 16, 16, 3) and r.images.dtype == np.uint8  # size 128 > 16: the input's
        # the optimised image excites its channel far more than the (flat grey) starting image
        assert (r.final > 10 * np.abs(r.start) + 0.03).all(), (fourier, r.start, r.final)
        if not fourier:
            # plain pixels climb fastest: within 48 steps they beat random uint8 images (the
            # 1/f-weighted Fourier images start smooth and need more steps than this test spends)
            assert (r.final > typical[channels]).all(), (r.final, typical[channels])
        # reported activations are the channel's on the returned picture
        np.testing.assert_allclose(
            channel_means(c.to_layer, r.images.astype(np.float32))[np.arange(3), channels],
            r.final,
            rtol=0.05,
            atol=0.02,
        )
    # below the input size (analysis.filter_vis.size): smaller pictures, through the same layers
    small = visualize(
        c.to_layer, channels, size=(16, 16), settings=Settings.from_options({"steps": 48, "size": 10, "seed": 1})
    )
    assert small.images.shape == (3, 10, 10, 3) and small.input_size == (16, 16)
    assert (small.final > 10 * np.abs(small.start) + 0.03).all(), (small.start, small.final)


def check_change_finds_planted_changes():
    from convscope.analysis.standard.change import Comparison, compare_channels, weight_change
    from convscope.analysis.standard.filter_vis import Settings

    reference = classifier(nested=True, size=12, seed=3)
    model = classifier(nested=True, size=12, seed=3)
    base = model.get_layer("base")
    conv1 = base.get_layer("conv1")
    k, b = conv1.get_weights()
    conv1.set_weights([k * 1.5, b])  # conv1 moved by exactly half its kernel norm over the layer norm
    last = base.get_layer("last")
    lk, lb = last.get_weights()
    lk[..., 3] = 0.0
    lb[3] = -1.0  # channel 3 of "last": relu(-1) = 0 everywhere -> dead after "fine-tuning"
    last.set_weights([lk, lb])
    rows = {r["layer"]: r for r in weight_change(model, reference)}
    assert set(rows) == {"conv1", "last"}
    expect = 0.5 * np.linalg.norm(k) / np.sqrt(np.linalg.norm(k) ** 2 + np.linalg.norm(b) ** 2)
    assert rows["conv1"]["relative_change"] == pytest.approx(expect, rel=1e-5)
    assert rows["last"]["relative_change"] > 0
    # the same with a bare reference base
    bare = {r["layer"]: r for r in weight_change(model, reference.get_layer("base"))}
    assert bare["conv1"]["relative_change"] == pytest.approx(expect, rel=1e-5)

    images = np.random.default_rng(1).integers(0, 256, (10, 12, 12, 3)).astype(np.uint8)
    # the bare base's pictures below the input size (analysis.filter_vis.size), through the same layers
    for ref, side in ((reference, None), (reference.get_layer("base"), 8)):
        what = Comparison(
            "last",
            [1, 3],
            embed_layer="last",
            size=(12, 12),
            settings=Settings.from_options({"steps": 24, "seed": 0, "size": side}),
            gray_std=0.02,
        )
        out = compare_channels(model, ref, images, what)
        assert out["reference"].images.shape[1:3] == out["finetuned"].images.shape[1:3] == (side or 12,) * 2
        by_ch = {r["channel"]: r for r in out["rows"]}
        assert by_ch[3]["finetuned_dead"] and not by_ch[3]["reference_dead"]
        assert by_ch[3]["finetuned_gray"] and not by_ch[3]["reference_gray"]
        assert not by_ch[1]["finetuned_dead"] and not by_ch[1]["finetuned_gray"]
        assert 3 in out["dead"]["finetuned_dead"] and 3 not in out["dead"]["reference_dead"]
        assert all(-1 <= r["cosine_similarity"] <= 1 for r in out["rows"])


ALL_METHODS = [
    "gradcam",
    "gradcam++",
    "hirescam",
    "xgradcam",
    "layercam",
    "eigencam",
    "scorecam",
    "occlusion",
    "saliency",
    "smoothgrad",
    "integrated_gradients",
]
CHECKED = [m for m in ALL_METHODS if m != "smoothgrad"]


def check_explain_model_writes_its_sections():
    import tempfile

    from PIL import Image

    from convscope.analysis.explain.run import explain_model
    from convscope.analysis.index import write_index
    from convscope.backbones import Backbone

    model = classifier(nested=True, size=12, seed=4)
    reference = classifier(nested=True, size=12, seed=5)
    data = tiny_data(model)
    options = {
        "sample_images": 3,
        "batch_size": 4,
        "occlusion": {"patch": 4, "stride": 4},
        "saliency": {"smoothgrad_samples": 2},
        "filter_vis": {"steps": 8, "channels": 2, "size": 8},  # below the 12 px input: the flexible cut
        "checks": {"max_images": 6, "curve_images": 4, "deletion_steps": 4},
        "scorecam": {"channels": 2},
        "integrated_gradients": {"steps": 4},
        "sanity": {"images": 2, "blocks": 1},
    }
    # not a registry backbone: a Backbone record naming the tiny model's last conv
    backbone = Backbone("tiny", 12, 8, "tf", ("conv1", "last"), "last")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        sections = explain_model(model, backbone, data, out, options, base_reference=reference)
        ids = [s["id"] for s in sections]
        assert ids == [
            "gradcam",
            "cams",
            "occlusion",
            "saliency",
            "filter_vis",
            "change",
            "explanation_checks",
            "explanation_sanity",
            "method_ranking",
        ], ids
        assert {s["group"] for s in sections} == {"results", "checks"}
        assert [s["kind"] for s in sections if s["group"] == "checks"] == ["checks", "sanity", "ranking"]
        write_index(out, "tiny", sections)  # raises if any named file is missing
        # every method drawn carries its sanity badge, next to its figure
        drawn = [b["method"] for s in sections if s["kind"] == "maps" for b in s["items"][0]["badges"]]
        assert drawn == [m for m in ALL_METHODS if m != "smoothgrad"], drawn
        sanity = json.loads((out / "explain" / "sanity.json").read_text())
        assert set(sanity["methods"]) == set(CHECKED) and sanity["threshold"] == 0.5
        # head, then one block (cascading), then that block alone
        assert sanity["stages"] == ["cascading: head", "cascading: last", "independent: last"]
        assert all(isinstance(v["passed"], bool) and v["reason"] for v in sanity["methods"].values())
        rows = pd.read_csv(out / "explain" / "sanity.csv").set_index(["method", "mode", "stage"])
        # EigenCAM never reads the head: shuffling the head leaves it exactly as it was; shuffling
        # the conv layer changes it (the weights really are shuffled in place, on either backend)
        assert rows.loc[("eigencam", "cascading", "head"), "spearman"] == pytest.approx(1.0)
        assert rows.loc[("eigencam", "independent", "last"), "spearman"] < 0.99
        assert rows.loc[("gradcam", "cascading", "head"), "ssim"] < 0.99
        ranking = pd.read_csv(out / "explain" / "method_ranking.csv")
        assert sorted(ranking["method"]) == sorted(CHECKED) and list(ranking["rank"]) == list(range(1, 11))
        failed = set(ranking[ranking.sanity == "fail"]["method"])
        assert all(ranking["method"].iloc[-len(failed) :].isin(failed)) if failed else True
        faith = json.loads((out / "explain" / "faithfulness.json").read_text())
        assert faith["images"] == 4 and set(faith["auc"]) == {"deletion", "insertion"}
        assert set(faith["gain_over_random"]["insertion"]) == set(CHECKED)
        # the border-mass check reuses the checked maps: a share per method and class, a sentence
        border = json.loads((out / "explain" / "border_mass.json").read_text())
        assert {r["method"] for r in border["rows"]} == set(CHECKED) and border["statement"]
        assert all(0 <= r["border_share"] <= 1 for r in border["rows"])
        ig = json.loads((out / "explain" / "ig_completeness.json").read_text())
        assert ig["images"] == 6 and ig["steps"] == 4
        for sec in sections:
            for it in sec["items"]:
                assert it["caption"]
                if it["kind"] == "image":
                    with Image.open(out / it["file"]) as im:
                        assert im.size[0] > 50 and im.size[1] > 50
        pointing = json.loads((out / "explain" / "pointing.json").read_text())
        assert pointing["images"] == 6  # the boxed images among the 8, capped at max_images
        assert set(pointing["methods"]) == set(CHECKED)
        assert 0 < pointing["chance"] < 1
        expect_chance = (7 * 7) / (12 * 12)
        assert pointing["chance"] == pytest.approx(expect_chance)
        # the centre pixel (5, 5) lies in every box (x 2..9, y 3..10)
        assert pointing["centre_baseline"] == 1.0
        deletion = json.loads((out / "explain" / "deletion.json").read_text())
        assert set(deletion["auc"]) == {*CHECKED, "random"}
        assert all(0 <= v <= 1 for v in deletion["auc"].values())
        curve = pd.read_csv(out / "explain" / "deletion.csv")
        start = curve[curve.fraction_deleted == 0].mean_probability
        assert np.allclose(start, start.iloc[0])  # every method starts from the same, undeleted images
        change = pd.read_csv(out / "explain" / "change_channels.csv")
        assert len(change) == 2
        # the pictures' resolution is said in the table and the captions
        assert list(pd.read_csv(out / "explain" / "filter_vis.csv")["size"]) == [8, 8]
        for sid in ("filter_vis", "change"):
            caption = [s for s in sections if s["id"] == sid][0]["items"][0]["caption"]
            assert "optimised at 8 px (analysis.filter_vis.size; the network's input is 12 px)" in caption, caption
        samples = pd.read_csv(out / "explain" / "explained_samples.csv")
        assert len(samples) == 3 and {"gradcam_peak_row", "occlusion_peak_col", "smoothgrad_peak_row"} <= set(
            samples.columns
        )
        # without a reference the change section explains itself instead of vanishing
        sections = explain_model(
            model,
            backbone,
            data,
            out / "noref",
            {**options, "filter_vis": {"enabled": False, "steps": 4}, "checks": {"enabled": False}},
        )
        change_sec = [s for s in sections if s["id"] == "change"][0]
        assert "base_reference" in (out / "noref" / change_sec["items"][0]["file"]).read_text()


def check_registry_backbones_cut_at_last_conv():
    """The real classifier contract (nested keras.applications / AlexNet base) cut at the registry's last_conv."""
    from convscope import backbones as registry
    from convscope.analysis.explain.gradcam import gradcam
    from convscope.analysis.split_model import cut
    from convscope.models.build import build_classifier

    rng = np.random.default_rng(0)
    for name, size in (("alexnet", 64), ("mobilenetv2", 32)):
        model = build_classifier(name, 3, input_size=size, weights="none", seed=1)
        c = cut(model, registry.get(name).last_conv)
        assert c.path[1] == "base"
        x = rng.integers(0, 256, (2, size, size, 3)).astype(np.float32)
        acts = c.to_layer.predict(x, verbose=0)
        from keras import ops

        np.testing.assert_allclose(
            ops.convert_to_numpy(c.from_layer(acts)), model.predict(x, verbose=0), rtol=1e-4, atol=1e-6
        )
        maps = gradcam(c, x, [0, 2], 3)
        assert maps["gradcam"].shape == acts.shape[:3] and np.isfinite(maps["gradcam"]).all()


# ---- tests ----------------------------------------------------------------------

CHECKS = [
    "check_occlusion_matches_naive_loop",
    "check_deletion_matches_naive_loop",
    "check_filter_vis_raises_activation",
    "check_change_finds_planted_changes",
    "check_explain_model_writes_its_sections",
]


# The registry check runs on the loaded backend only: building AlexNet and MobileNetV2
# costs ~25 s of CPU on JAX, and the other checks already cover the nested-base
# classifier shape there.
@pytest.mark.parametrize("check", [*CHECKS, "check_registry_backbones_cut_at_last_conv"])
def test_on_loaded_backend(check):
    """Each check on the backend this process runs (TensorFlow unless KERAS_BACKEND says otherwise)."""
    globals()[check]()


def test_on_other_backend():
    """Every check again on the other backend (JAX by default), in one subprocess."""
    run_checks_on(other_backend(), "test_explain", CHECKS)


def test_options_reject_unknown_keys():
    from convscope.analysis.options import resolve as resolve_options

    with pytest.raises(ValueError, match="analysis.occlusion.*'size'"):
        resolve_options({"occlusion": {"size": 3}})
    opts = resolve_options({"occlusion": {"patch": 6}})
    assert opts["occlusion"] == {"enabled": True, "patch": 6, "stride": None, "fill": "mean"}
