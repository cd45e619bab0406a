"""Standard analyses of one model, on a tiny classifier whose predictions are known.

The model follows the model contract (image -> augment -> preprocess -> base ->
pool -> dropout -> head) with weights set by hand: conv1's first three filters
copy the R, G, B channels, the head scores class k by the mean of channel k. So a
mostly-red image is "class 0", and every probability, embedding and activation
can be recomputed here with plain NumPy, independently of Keras.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from convscope import layout
from convscope.layout import Results

CLASSES = ["red", "green", "blue"]
SIZE = 32
HEAD_GAIN = 8.0
# CONFUSION[i][j] test images of true class i drawn in colour j (predicted j).
CONFUSION = np.array([[3, 1, 0], [0, 2, 2], [1, 0, 4]])
RNG_KERNEL = np.random.default_rng(42).normal(size=(3, 3, 3, 5)).astype("float32")


def kernel() -> np.ndarray:
    k = np.zeros((3, 3, 3, 8), dtype="float32")
    for c in range(3):
        k[1, 1, c, c] = 1.0  # centre tap: filter c copies channel c
    k[..., 3:] = RNG_KERNEL
    return k


def build_model():
    import keras
    from keras import layers

    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.Sequential([layers.Identity()], name="augment")(inputs)
    x = layers.Rescaling(1 / 255.0, name="preprocess")(x)
    base_in = keras.Input((SIZE, SIZE, 3))
    y = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(base_in)
    y = layers.ReLU(name="relu1")(y)
    base = keras.Model(base_in, y, name="base")
    x = base(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.5, name="dropout")(x)
    outputs = layers.Dense(3, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs, name="tiny_classifier")
    base.get_layer("conv1").set_weights([kernel()])
    w = np.zeros((8, 3), dtype="float32")
    w[[0, 1, 2], [0, 1, 2]] = HEAD_GAIN
    model.get_layer("head").set_weights([w, np.zeros(3, dtype="float32")])
    return model


def make_images() -> tuple[np.ndarray, np.ndarray]:
    """Images in colour j (distinct brightness each) with labels i, per CONFUSION."""
    rng = np.random.default_rng(0)
    images, labels, n = [], [], 0
    for i in range(3):
        for j in range(3):
            for _ in range(CONFUSION[i, j]):
                img = rng.integers(0, 20, size=(SIZE, SIZE, 3))
                img[..., j] += 60 + 12 * n  # brightness decides the confidence; all distinct
                images.append(img)
                labels.append(i)
                n += 1
    return np.clip(images, 0, 255).astype(np.uint8), np.array(labels, dtype=np.int32)


def numpy_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """conv1 activations (N, H, W, 8), embeddings (N, 8) and probabilities, in float64."""
    x = x.astype(np.float64) / 255.0
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    k = kernel().astype(np.float64)
    conv = np.zeros(x.shape[:3] + (8,))
    for dy in range(3):
        for dx in range(3):
            conv += padded[:, dy : dy + SIZE, dx : dx + SIZE, :] @ k[dy, dx]
    relu = np.maximum(conv, 0)
    emb = relu.mean(axis=(1, 2))
    logits = HEAD_GAIN * emb[:, :3]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return conv, emb, p / p.sum(axis=1, keepdims=True)


def write_inputs(root: Path, backbone: str = "alexnet") -> dict:
    """A saved model, its history and metrics, and a prepared test split, as the workflow lays them out."""
    run_dir = Results(root).run_dir(backbone, "tiny-run")
    run_dir.mkdir(parents=True)
    build_model().save(run_dir / layout.MODEL)
    pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "accuracy": [0.4, 0.6, 0.8],
            "loss": [1.1, 0.9, 0.5],
            "val_accuracy": [0.3, 0.5, 0.6],
            "val_loss": [1.2, 1.0, 0.9],
        }
    ).to_csv(run_dir / layout.HISTORY, index=False)
    from convscope.records import RunMetrics, write_metrics

    write_metrics(
        run_dir / layout.METRICS, RunMetrics(backbone, "tiny-run", "finetune", val={}, test={}, train_time_s=20.0)
    )
    prepared = Results(root).prepared_dir(str(SIZE))
    prepared.mkdir(parents=True)
    x, labels = make_images()
    np.save(layout.prepared_in(prepared, "test"), x)
    np.save(layout.prepared_in(prepared, "test", "labels.npy"), labels)
    pd.DataFrame(
        {
            "row": range(len(x)),
            "cls": [CLASSES[k] for k in labels],
            "label": labels,
            "file": [f"{CLASSES[k]}/{i:06d}.png" for i, k in enumerate(labels)],
            "sha256": "x",
        }
    ).to_csv(layout.prepared_in(prepared, "test", "index.csv"), index=False)
    # The val split the temperature is fitted on: the same images in reverse order.
    np.save(layout.prepared_in(prepared, "val"), x[::-1])
    np.save(layout.prepared_in(prepared, "val", "labels.npy"), labels[::-1])
    pd.read_csv(layout.prepared_in(prepared, "test", "index.csv")).iloc[::-1].to_csv(
        layout.prepared_in(prepared, "val", "index.csv"), index=False
    )
    return {
        "model": run_dir / layout.MODEL,
        "run": run_dir,
        "prepared": prepared,
        "out": Results(root).analysis_dir(backbone, "tiny-run"),
        "x": x,
        "labels": labels,
    }


OPTIONS = {
    "sample_images": 4,
    "examples": {"per_class": 2, "mistakes": 3},
    "embedding": {"perplexity": 5, "thumbnails": 5},
    "filters": {"max_filters": 96},
    "activations": {"layers": [0.0, 1.0, "conv1"], "channels": 8},
    "seed": 3,
}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """One run of the orchestrator (TensorFlow backend) shared by the checks below.

    explain=False: the explanation analyses need a registry backbone's layers and
    have their own tests; the workflow test runs everything together.
    """
    from convscope.analysis.run import JobPaths, JobSettings, analyse_model

    paths = write_inputs(tmp_path_factory.mktemp("analysis"))
    index = analyse_model(
        JobPaths(paths["model"], paths["prepared"], paths["run"], paths["out"]),
        CLASSES,
        OPTIONS,
        JobSettings(explain=False),
    )
    return {**paths, "index": json.loads(index.read_text())}


def test_index_lists_every_standard_analysis(analysed):
    out, index = analysed["out"], analysed["index"]
    ids = [s["id"] for s in index["sections"]]
    for sid in ("curves", "confusion", "examples", "embedding", "filters", "activations", "cost"):
        assert sid in ids
    for sec in index["sections"]:
        for it in sec["items"]:
            assert (out / it["file"]).is_file(), it
            if it["kind"] == "image":
                with Image.open(out / it["file"]) as im:
                    assert im.format == "PNG" and min(im.size) > 20
            assert it["caption"]
    assert index["title"] == "alexnet / tiny-run"
    timings = json.loads((out / "timings.json").read_text())
    assert timings["train_seconds"] == 20.0 and timings["analysis_seconds"] > 0
    assert timings["analysis_over_train"] == pytest.approx(timings["analysis_seconds"] / 20.0, abs=1e-3)


def test_predictions_match_an_independent_forward_pass(analysed):
    _, _, p = numpy_forward(analysed["x"])
    pred = pd.read_csv(layout.AnalysisFolder(analysed["out"]).probabilities)
    np.testing.assert_allclose(pred[[f"p_{c}" for c in CLASSES]].to_numpy(), p, atol=1e-4)
    assert list(pred["pred"]) == [CLASSES[k] for k in p.argmax(axis=1)]


def test_confusion_matrix_is_the_constructed_one(analysed):
    cm = pd.read_csv(analysed["out"] / "confusion.csv", index_col=0)
    assert list(cm.index) == CLASSES and list(cm.columns) == CLASSES
    np.testing.assert_array_equal(cm.to_numpy(), CONFUSION)
    report = pd.read_csv(analysed["out"] / "per_class.csv").set_index("class")
    tp = np.diag(CONFUSION)
    np.testing.assert_allclose(report.loc[CLASSES, "precision"], tp / CONFUSION.sum(axis=0), atol=1e-4)
    np.testing.assert_allclose(report.loc[CLASSES, "recall"], tp / CONFUSION.sum(axis=1), atol=1e-4)
    assert report.loc["accuracy", "f1"] == pytest.approx(tp.sum() / CONFUSION.sum(), abs=1e-4)


def test_top_images_are_the_highest_probability_ones(analysed):
    _, _, p = numpy_forward(analysed["x"])
    ex = pd.read_csv(analysed["out"] / "examples.csv")
    for k, cls in enumerate(CLASSES):
        top = ex[(ex["kind"] == "top") & (ex["class"] == cls)].sort_values("rank")
        assert list(top["row"]) == list(np.argsort(-p[:, k])[:2])
        np.testing.assert_allclose(top["prob_class"], np.sort(p[:, k])[::-1][:2], atol=1e-4)


def test_most_confident_mistakes_are_ordered_by_confidence(analysed):
    _, _, p = numpy_forward(analysed["x"])
    labels = analysed["labels"]
    wrong = np.flatnonzero(p.argmax(axis=1) != labels)
    expected = wrong[np.argsort(-p[wrong].max(axis=1))][:3]
    ex = pd.read_csv(analysed["out"] / "examples.csv")
    mistakes = ex[ex["kind"] == "mistake"].sort_values("rank")
    assert list(mistakes["row"]) == list(expected)
    assert all(mistakes["true"] != mistakes["pred"])
    assert (analysed["out"] / "mistakes.png").is_file()


def test_embedding_csv_rows_are_the_test_set_and_pca_matches_numpy(analysed):
    _, emb, _ = numpy_forward(analysed["x"])
    table = pd.read_csv(analysed["out"] / "embedding.csv")
    index = pd.read_csv(layout.prepared_in(analysed["prepared"], "test", "index.csv"))
    assert list(table["file"]) == list(index["file"])
    assert list(table["label"]) == list(analysed["labels"])
    assert np.isfinite(table[["tsne_x", "tsne_y"]].to_numpy()).all()
    centred = emb - emb.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    ref = centred @ vt[:2].T
    got = table[["pca_x", "pca_y"]].to_numpy()
    for c in range(2):  # a principal axis is defined up to its sign
        sign = np.sign(ref[:, c] @ got[:, c])
        np.testing.assert_allclose(got[:, c], sign * ref[:, c], atol=1e-3)


def test_filter_grid_has_one_tile_per_filter_drawn_from_the_weights(analysed):
    out = analysed["out"]
    tiles = pd.read_csv(out / "filters.csv")
    k = kernel()
    assert list(tiles["filter"]) == list(range(k.shape[-1]))
    png = np.asarray(Image.open(out / "filters.png").convert("RGB"))
    # alexnet is a "caffe" backbone: its first layer sees BGR, so tiles flip to RGB.
    boxes = tiles[["x0", "y0", "x1", "y1"]].astype(int).to_numpy()
    for f, (x0, y0, x1, y1) in enumerate(boxes):
        tile = png[y0:y1, x0:x1]
        w = k[..., f][..., ::-1].astype(np.float64)
        unit = (w - w.min()) / (w.max() - w.min())
        factor = tile.shape[0] // 3
        expected = np.rint(np.kron(unit, np.ones((factor, factor, 1))) * 255)
        np.testing.assert_allclose(tile, expected, atol=1)
    # The cell after the last tile is background: there are exactly len(tiles) tiles.
    x0, y0, x1, y1 = boxes[-1]
    assert (png[y0:y1, x1 + 2 : x1 + 2 + (x1 - x0)] == 255).all()


def test_filter_grid_respects_max_filters(tmp_path):
    from convscope.analysis.standard.filters import first_layer_filters
    from convscope.models.build import base_of

    sec = first_layer_filters(base_of(build_model()), tmp_path, max_filters=5)
    assert len(pd.read_csv(tmp_path / "filters.csv")) == 5
    assert sec["items"][0]["file"] == "filters.png"


def test_activation_layers_exist_and_values_are_the_layer_outputs(analysed):
    conv, _, _ = numpy_forward(analysed["x"])
    acts = pd.read_csv(analysed["out"] / "activations.csv")
    # 0.0 and 1.0 are the first and last spatial layers; "conv1" repeats the first.
    assert list(dict.fromkeys(acts["layer"])) == ["conv1", "relu1"]
    relu = np.maximum(conv, 0)
    for r in acts.itertuples():
        a = conv if r.layer == "conv1" else relu
        assert r.mean == pytest.approx(a[r.image_row, :, :, r.channel].mean(), abs=1e-4)
    assert set(acts["image_row"]) == {0, 4, 8, 1}  # first image of each class, then class 0's second
    pngs = sorted(p.name for p in analysed["out"].glob("activations_*.png"))
    assert pngs == ["activations_0_conv1.png", "activations_1_relu1.png"]


def test_unknown_activation_layer_names_the_config_key():
    from convscope.analysis.standard.activations import resolve_layers
    from convscope.models.build import base_of

    base = base_of(build_model())
    with pytest.raises(ValueError, match=r"analysis\.activations\.layers: 'nope'.*conv1"):
        resolve_layers(base, ["nope"], 7)
    assert resolve_layers(base, [0.5, "relu1"], 7) == ["relu1"]


def test_learning_curves_keep_the_history(analysed):
    curves = pd.read_csv(analysed["out"] / "curves.csv")
    assert list(curves["val_accuracy"]) == [0.3, 0.5, 0.6]
    assert list(curves["step"]) == [1, 2, 3]


def test_overlay_blends_a_resized_heatmap():
    from convscope.analysis.plots import overlay

    image = np.zeros((8, 8, 3), dtype=np.uint8)
    heat = np.array([[0.0, 1.0], [0.0, 0.0]])
    out = overlay(image, heat, alpha=0.5, cmap="gray")
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert out[0, 7, 0] > 100 and out[7, 0, 0] == 0  # the hot corner is bright, the cold one dark


def test_orchestrator_on_jax_backend_matches_tensorflow(analysed, tmp_path):
    """The same saved model analysed in a JAX process gives the same numbers."""
    out = tmp_path / "jax"
    code = textwrap.dedent(
        f"""
        import json, keras
        assert keras.backend.backend() == "jax"
        from convscope.analysis.run import JobPaths, JobSettings, analyse_model
        analyse_model(JobPaths({str(analysed["model"])!r}, {str(analysed["prepared"])!r}, {str(analysed["run"])!r},
                      {str(out)!r}), {CLASSES!r}, {OPTIONS!r}, JobSettings(explain=False))
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tf_pred = pd.read_csv(layout.AnalysisFolder(analysed["out"]).probabilities)
    jax_pred = pd.read_csv(layout.AnalysisFolder(out).probabilities)
    cols = [f"p_{c}" for c in CLASSES]
    np.testing.assert_allclose(jax_pred[cols], tf_pred[cols], atol=1e-5)
    np.testing.assert_array_equal(pd.read_csv(out / "confusion.csv", index_col=0).to_numpy(), CONFUSION)
    tf_act = pd.read_csv(analysed["out"] / "activations.csv")
    jax_act = pd.read_csv(out / "activations.csv")
    np.testing.assert_allclose(jax_act["mean"], tf_act["mean"], atol=1e-4)
    assert json.loads((out / layout.INDEX).read_text())["sections"]


def test_index_items_are_relative_to_the_index_folder(tmp_path, monkeypatch):
    from convscope.analysis.index import item, section, write_index

    monkeypatch.chdir(tmp_path)
    out = Results("results").grid_dir  # relative, as Snakemake passes paths
    out.mkdir(parents=True)
    (out / "a.png").write_bytes(b"png")
    (out / "a.csv").write_text("x\n1\n")
    sec = section("s", "S", [item("image", out / "a.png", "how to read it", (out / "a.csv").absolute(), root=out)])
    assert sec["items"][0]["file"] == "a.png" and sec["items"][0]["data"] == "a.csv"
    write_index(out, "t", [sec])
    with pytest.raises(FileNotFoundError, match="section s: file 'missing.png' was not written"):
        write_index(out, "t", [section("s", "S", [item("image", "missing.png", "c")])])


def test_starting_base_is_rebuilt_exactly_and_checked_against_frozen_layers():
    """The change-from-base reference: the train stage's build, redone; refused when it cannot be the start."""
    import keras

    from convscope.analysis.run import starting_base
    from convscope.models.build import base_of, build_classifier, set_tune_depth
    from convscope.records import RunMetrics

    metrics = RunMetrics(
        backbone="alexnet",
        run="r",
        strategy="finetune",
        val={},
        test={},
        hp={"seed": 5},
        versions={"backend": keras.backend.backend()},
    )
    options = {"weights": "none"}
    model = build_classifier("alexnet", 3, input_size=64, weights="none", seed=5)
    set_tune_depth(model, "alexnet", 2)  # conv4 and conv5 train, conv1-3 stay frozen
    conv5 = base_of(model).get_layer("conv5")
    conv5.set_weights([w + 1.0 for w in conv5.get_weights()])  # "training" changed a tuned layer
    reference = starting_base(model, "alexnet", metrics, options, 64, 3)
    assert reference is not None
    for name in ("conv1", "conv2", "conv3"):
        for w, r in zip(base_of(model).get_layer(name).get_weights(), reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(w, r)
    for w, r in zip(conv5.get_weights(), reference.get_layer("conv5").get_weights()):
        np.testing.assert_allclose(w - r, 1.0, atol=1e-5)

    conv1 = base_of(model).get_layer("conv1")
    conv1.set_weights([w * 2 for w in conv1.get_weights()])  # a frozen layer that moved: not the start
    assert starting_base(model, "alexnet", metrics, options, 64, 3) is None
    other = dataclasses.replace(
        metrics, versions={"backend": "jax" if keras.backend.backend() != "jax" else "tensorflow"}
    )
    assert starting_base(model, "alexnet", other, options, 64, 3) is None  # another backend's random init


def test_calibration_is_fitted_on_val_and_keeps_every_prediction(analysed):
    from convscope.stats import calibration

    cal = json.loads((analysed["out"] / "calibration.json").read_text())
    pred = pd.read_csv(layout.AnalysisFolder(analysed["out"]).probabilities)
    probs = pred[[f"p_{c}" for c in CLASSES]].to_numpy()
    labels = np.asarray([CLASSES.index(c) for c in pred["true"]])
    assert cal["fitted_on"] == "val" and cal["val_images"] == len(analysed["x"])
    assert cal["ece_before"] == pytest.approx(calibration.expected_calibration_error(probs, labels, cal["bins"]))
    # The val split holds the same images, so the fit is reproducible from the test probabilities.
    assert cal["temperature"] == pytest.approx(calibration.fit_temperature(probs, labels), rel=1e-3)
    assert cal["accuracy_after"] == cal["accuracy_before"] == pytest.approx((pred["true"] == pred["pred"]).mean())
    assert cal["nll_after"] <= cal["nll_before"] + 1e-9
    ids = [s["id"] for s in analysed["index"]["sections"]]
    assert ids.index("confusion") < ids.index("calibration") and (analysed["out"] / "calibration.png").is_file()


def test_frozen_layers_are_named_and_their_filters_not_judged(tmp_path):
    from convscope.analysis.run import JobPaths, JobSettings, analyse_model

    paths = write_inputs(tmp_path)
    import keras

    model = keras.models.load_model(paths["model"])
    model.get_layer("base").get_layer("conv1").trainable = False
    model.save(paths["model"])
    index = json.loads(
        analyse_model(
            JobPaths(paths["model"], paths["prepared"], paths["run"], paths["out"]),
            CLASSES,
            {**OPTIONS, "calibration": {"enabled": False}},
            JobSettings(explain=False),
        ).read_text()
    )
    frozen = json.loads((paths["out"] / "frozen.json").read_text())
    assert frozen["frozen_blocks"] == ["conv1"] and frozen["trained_blocks"] == []
    assert "stayed frozen" in frozen["statement"]
    caption = next(s for s in index["sections"] if s["id"] == "filters")["items"][0]["caption"]
    assert "stayed frozen in training" in caption and "learned little" not in caption
    assert "calibration" not in [s["id"] for s in index["sections"]]
