"""Training strategies on tiny real data: outputs, metrics, tuning depth, progressive schedule,
features heads, the ImageNet sanity check's failure path, and the JAX backend.

Keras runs in this process with the TensorFlow backend (the JAX test and the
features-head isolation test use subprocesses). AlexNet at 64 px trains a step
in well under a second on CPU.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convscope import layout
from convscope.layout import Results
from tests.conftest import REPO

CLASSES = ["red", "green", "blue"]
SIZE = 64


def write_prepared(folder: Path, size: int = SIZE, counts=(48, 12, 12), seed: int = 0) -> Path:
    """Prepared splits as the prepare stage writes them: uint8 N x H x W x 3 + int32 labels + index.

    Class c is an image whose channel c is bright: learnable in a few steps.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in zip(("train", "val", "test"), counts):
        y = (np.arange(n) % len(CLASSES)).astype("int32")
        x = rng.integers(0, 80, (n, size, size, 3), dtype=np.uint8)
        x[np.arange(n), :, :, y] += 150
        np.save(layout.prepared_in(folder, split), x)
        np.save(layout.prepared_in(folder, split, "labels.npy"), y)
        with open(layout.prepared_in(folder, split, "index.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["row", "cls", "label", "file", "sha256"])
            for i, label in enumerate(y):
                w.writerow([i, CLASSES[label], label, f"{CLASSES[label]}/{split}{i:04d}.png", ""])
    return folder


def hp(**changes) -> dict:
    base = {
        "learning_rate": 1e-3,
        "dropout": 0.2,
        "tune_depth": 1,
        "batch_size": 16,
        "epochs": 2,
        "optimizer": "adam",
        "label_smoothing": 0.0,
        "augment": "light",
        "seed": 5,
    }
    base.update(changes)
    return base


def backend_in_use() -> str:
    """The backend this test process runs Keras with (KERAS_BACKEND, default tensorflow)."""
    import keras

    return keras.backend.backend()


def read_history(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    return write_prepared(tmp_path_factory.mktemp("prepared") / str(SIZE))


def run(prepared, out, strategy="finetune", options=None, progressive=None, **changes):
    from convscope.training.run import train_run

    return train_run(
        prepared_dir=prepared,
        out_dir=out,
        backbone="alexnet",
        options=options or {"weights": "none"},
        input_size=SIZE,
        strategy=strategy,
        hp=hp(**changes),
        classes=CLASSES,
        backend=backend_in_use(),
        bootstrap=200,
        progressive=progressive,
        threads=2,
    )


def tensorboard_scalars(folder: Path, tag: str) -> list:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return events.Scalars(tag)


def conv_params(model, *names) -> int:
    base = model.get_layer("base")
    return sum(base.get_layer(n).count_params() for n in names)


def test_finetune_writes_outputs_whose_metrics_match_the_saved_model(prepared, tmp_path):
    from convscope.models.build import load_model
    from convscope.training.evaluate import evaluate_model

    out = tmp_path / "finetune-x"
    result = run(prepared, out, tune_depth=1, label_smoothing=0.1)
    for name in (layout.MODEL, layout.HISTORY, layout.FIT):
        assert (out / name).is_file()
    assert not (out / "backup").exists(), "the resume state is removed once the outputs are in place"
    assert "test" not in json.loads((out / layout.FIT).read_text()), "training never scores the test split"
    assert not (out / layout.METRICS).exists()
    # TensorBoard's own reader sees each epoch's logs, val_ metrics under validation/
    history = read_history(out / layout.HISTORY)
    for run_name, prefix in (("train", ""), ("validation", "val_")):
        for metric in ("loss", "accuracy"):
            events = tensorboard_scalars(out / "tensorboard" / run_name, f"epoch_{metric}")
            assert [e.step for e in events] == [0, 1]
            assert [e.value for e in events] == pytest.approx([r[prefix + metric] for r in history], rel=1e-5)
    assert json.loads((out / layout.FIT).read_text()) == json.loads(json.dumps(result))
    # The evaluate job: fit.json plus the test split's scores.
    evaluated = evaluate_model(
        model_path=out / layout.MODEL,
        fit_path=out / layout.FIT,
        prepared_dir=prepared,
        out_dir=out,
        backend=backend_in_use(),
    )
    metrics = json.loads((out / layout.METRICS).read_text())
    assert metrics == json.loads(json.dumps(evaluated))
    assert {k: v for k, v in metrics.items() if k not in ("test", "evaluate_s")} == json.loads(json.dumps(result))

    # metrics recomputed independently from the saved model and the test arrays
    model = load_model(out / layout.MODEL, compile=False)
    x = np.load(layout.prepared_in(prepared, "test"))
    y = np.load(layout.prepared_in(prepared, "test", "labels.npy"))
    probs = model.predict(x, verbose=0)
    assert metrics["test"]["accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == y)))
    top2 = np.argsort(-probs, axis=1)[:, :2]
    assert metrics["test"]["k"] == 2
    assert metrics["test"]["top_k_accuracy"] == pytest.approx(float(np.mean((top2 == y[:, None]).any(1))))
    cm = np.array(metrics["test"]["confusion_matrix"])
    assert cm.sum() == len(y) and list(cm.sum(axis=1)) == list(np.bincount(y, minlength=3))
    assert [metrics["test"]["per_class"][c]["support"] for c in CLASSES] == list(np.bincount(y, minlength=3))
    low, high = metrics["test"]["accuracy_ci95"]
    assert 0 <= low <= metrics["test"]["accuracy"] <= high <= 1
    # per-image test predictions (for the grid summary's paired tests) and the ECE, from the same model
    from convscope.layout import PREDICTIONS
    from convscope.records import read_predictions
    from convscope.stats.calibration import expected_calibration_error

    true, pred = read_predictions(out / PREDICTIONS)
    assert np.array_equal(true, y) and np.array_equal(pred, probs.argmax(1))
    assert metrics["test"]["ece"] == pytest.approx(expected_calibration_error(probs, y), abs=1e-4)
    assert metrics["val"]["n"] == 12 and metrics["epochs_trained"] == 2
    assert metrics["images_per_s"] > 0 and metrics["train_time_s"] > 0
    # the first step's time is taken on Keras' async callback thread: still recorded, within the run
    assert 0 < metrics["fixed_cost_s"]["first_step"] < metrics["wall_s"]
    assert all(0 < r["train_s"] <= r["epoch_s"] for r in read_history(out / layout.HISTORY))
    assert metrics["versions"]["backend"] == backend_in_use() and "keras" in metrics["versions"]
    assert metrics["tensorboard"] == {"enabled": True, "ok": True, "warning": None}

    # tune_depth 1 trains the head and AlexNet's last block (conv5) only
    assert [int(r["epoch"]) for r in history] == [0, 1]
    head = model.get_layer("head").count_params()
    assert {int(r["trainable_params"]) for r in history} == {head + conv_params(model, "conv5")}
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(history[0])


def test_scratch_trains_every_layer_from_random_weights(prepared, tmp_path):
    out = tmp_path / "scratch"
    # A file where TensorBoard wants its folder: its writer fails for real, the run must not.
    out.mkdir()
    (out / "tensorboard").write_text("in the way")
    # scratch must not load the configured weights: this path does not exist
    result = run(prepared, out, strategy="scratch", options={"weights": str(tmp_path / "missing.weights.h5")})
    from convscope.models.build import load_model

    model = load_model(out / layout.MODEL, compile=False)
    history = read_history(out / layout.HISTORY)
    assert {int(r["trainable_params"]) for r in history} == {model.count_params()}
    assert result["weights"] == "none" and result["phases"][0]["depth"] == "all"
    tb = json.loads((out / layout.FIT).read_text())["tensorboard"]
    assert tb["enabled"] and not tb["ok"] and "TensorBoard logging disabled" in tb["warning"]


def test_progressive_unfreezes_one_block_per_step_with_decaying_lr(prepared, tmp_path):
    out = tmp_path / "progressive"
    result = run(
        prepared,
        out,
        strategy="progressive",
        progressive={"every": 1, "lr_decay": 0.5},
        tune_depth=2,
        epochs=4,
        learning_rate=1e-3,
    )
    from convscope.models.build import load_model

    model = load_model(out / layout.MODEL, compile=False)
    head = model.get_layer("head").count_params()
    history = read_history(out / layout.HISTORY)
    assert [int(r["epoch"]) for r in history] == [0, 1, 2, 3]
    assert [int(r["depth"]) for r in history] == [0, 1, 2, 2]
    assert [int(r["trainable_params"]) for r in history] == [
        head,
        head + conv_params(model, "conv5"),
        head + conv_params(model, "conv5", "conv4"),
        head + conv_params(model, "conv5", "conv4"),
    ]
    assert [r["learning_rate"] for r in history] == pytest.approx([1e-3, 5e-4, 2.5e-4, 2.5e-4])
    assert [p["epochs"] for p in result["phases"]] == [[0, 1], [1, 2], [2, 4]]


def test_progressive_schedule_shorter_than_the_depth_says_so(caplog):
    from convscope.training.strategies import phases

    plan = phases(
        "progressive", "alexnet", hp(tune_depth="all", epochs=3, learning_rate=0.1), {"every": 1, "lr_decay": 0.1}
    )
    assert [(p.depth, p.start, p.end) for p in plan] == [(0, 0, 1), (1, 1, 2), (2, 2, 3)]
    assert [p.learning_rate for p in plan] == pytest.approx([0.1, 0.01, 0.001])
    assert "reach depth 2, not the tune_depth all" in caplog.text
    full = phases("progressive", "alexnet", hp(tune_depth="all", epochs=12), {"every": 2, "lr_decay": 0.5})
    assert [p.depth for p in full] == [0, 1, 2, 3, 4, "all"] and full[-1].end == 12


def test_dataset_reads_memmaps_and_shuffles_per_epoch_by_seed(prepared):
    from convscope.training.data import MemmapDataset, Reading, split_paths

    ds = MemmapDataset(*split_paths(prepared, "train"), 16, 3, Reading(shuffle=True, seed=3))
    assert isinstance(ds.x, np.memmap)
    x, y = ds[0]
    assert x.dtype == np.uint8 and x.shape == (16, SIZE, SIZE, 3) and y.shape == (16, 3)
    # labels travel with their images (class c has channel c bright)
    assert np.array_equal(x.mean(axis=(1, 2)).argmax(1), y.argmax(1))
    epoch0 = ds.order().copy()
    ds.set_epoch(1)
    epoch1 = ds.order().copy()
    assert not np.array_equal(epoch0, epoch1) and sorted(epoch0) == sorted(epoch1)
    again = MemmapDataset(*split_paths(prepared, "train"), 16, 3, Reading(shuffle=True, seed=3))
    again.set_epoch(1)
    assert np.array_equal(again.order(), epoch1), "an epoch's order depends on (seed, epoch) only"
    seen = np.concatenate([ds[i][1].argmax(1) for i in range(len(ds))])
    assert len(seen) == 48 and np.array_equal(np.bincount(seen), [16, 16, 16])

    # training drops the short last batch (one traced shape); prediction pads it and cuts it off again
    train = MemmapDataset(*split_paths(prepared, "train"), 20, 3, Reading(shuffle=True, drop_remainder=True))
    assert len(train) == 2 and train.samples_per_epoch == 40 and {len(train[i][0]) for i in range(2)} == {20}
    pred = MemmapDataset(*split_paths(prepared, "train"), 20, 3, Reading(for_predict=True))
    assert len(pred) == 3 and [len(pred[i][0]) for i in range(3)] == [20, 20, 20]
    assert (
        np.array_equal(pred[2][0][:8], np.load(layout.prepared_in(prepared, "train"))[40:]) and not pred[2][0][8:].any()
    )


def test_dataset_read_ahead_serves_the_same_batches_as_reading_on_the_spot(prepared):
    from convscope import keras_compat
    from convscope.training.data import MemmapDataset, Reading, split_paths

    def make(workers):
        return MemmapDataset(*split_paths(prepared, "train"), 8, 3, Reading(shuffle=True, seed=7, workers=workers))

    plain, ahead = make(1), make(3)
    assert plain.read_ahead == 0 and ahead.read_ahead > 0

    def same(i):
        a, b = plain[i], ahead[i]
        return all(np.array_equal(u, v) for u, v in zip(a, b))

    # in order over two epochs (stale read-ahead of epoch 0 dropped), then out of order and repeated
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        ahead.set_epoch(epoch)
        assert all(same(i) for i in range(len(plain)))
    plain.set_epoch(2)
    ahead.set_epoch(2)
    assert all(same(i) for i in (3, 0, 5, 5, 1, 2, 4))
    assert all(k[0] == 2 for k in ahead._pending), "read-ahead of earlier epochs is dropped"

    # Keras iterates it without its threaded enqueuer (which stalls 0.1 s at every epoch end)
    adapter = keras_compat.py_dataset_adapter(ahead, shuffle=False)
    assert adapter.enqueuer is None
    ahead.set_epoch(3)
    plain.set_epoch(3)
    adapter.on_epoch_begin()
    got = [batch[0] for batch in adapter.get_numpy_iterator()]
    adapter.on_epoch_end()
    assert len(got) == len(plain) and all(np.array_equal(g, plain[i][0]) for i, g in enumerate(got))
    ahead.close()
    assert ahead._pool is None and not ahead._pending


HEAD_SCRIPT = """
import json, sys
from convscope.training.features import HeadSettings, fit_head
fit_head(features_dir=sys.argv[1], prepared_dir=sys.argv[2], out_dir=sys.argv[3],
         head=HeadSettings(backbone="alexnet", hp=json.loads(sys.argv[4]), classes=["red", "green", "blue"],
                           max_iter=500, bootstrap=200))
heavy = sorted(m for m in ("keras", "tensorflow", "jax") if m in sys.modules)
print("HEAVY", json.dumps(heavy))
"""


def test_features_embed_once_and_heads_never_touch_the_network(prepared, tmp_path):
    from sklearn.linear_model import LogisticRegression

    from convscope.training.evaluate import evaluate_head
    from convscope.training.features import FeatureSettings, compute_embeddings, head_model

    feats = Results(tmp_path).features_dir("alexnet")
    features = FeatureSettings(
        backbone="alexnet",
        options={"weights": "none"},
        input_size=SIZE,
        seed=5,
        batch_size=32,
        backend=backend_in_use(),
    )
    info = compute_embeddings(prepared_dir=prepared, out_dir=feats, features=features, num_classes=3)
    assert info["splits"]["train"] == {"n": 48, "dim": 256, "seconds": info["splits"]["train"]["seconds"]}
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in feats.glob("*.npy")}
    assert sorted(before) == ["test.npy", "train.npy", "val.npy"]

    heads = [("logreg", 0.1), ("logreg", 1.0), ("linsvm", 1.0)]
    for clf, c in heads:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                HEAD_SCRIPT,
                str(feats),
                str(prepared),
                str(tmp_path / f"features-{clf}-C{c}"),
                json.dumps({"classifier": clf, "C": c, "seed": 5}),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "HEAVY []" in proc.stdout, f"a head imported a deep-learning framework: {proc.stdout}"
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in feats.glob("*.npy")}
    assert after == before, "heads must only read the embeddings"
    for clf, c in heads:  # the evaluate job of each head: the test split's scores, no network either
        run_dir = tmp_path / f"features-{clf}-C{c}"
        assert "test" not in json.loads((run_dir / layout.FIT).read_text())
        evaluate_head(
            head_path=run_dir / layout.HEAD,
            fit_path=run_dir / layout.FIT,
            features_dir=feats,
            prepared_dir=prepared,
            out_dir=run_dir,
        )

    # the saved head equals an independently fitted scikit-learn pipeline
    X = {s: np.load(layout.embedding_in(feats, s)) for s in ("train", "test")}
    y = {s: np.load(layout.prepared_in(prepared, s, "labels.npy")) for s in ("train", "test")}
    mean, std = X["train"].mean(0), X["train"].std(0)
    std[std == 0] = 1
    ref = LogisticRegression(C=1.0, max_iter=500, random_state=5).fit((X["train"] - mean) / std, y["train"])
    ref_probs = ref.predict_proba((X["test"] - mean) / std)
    head = np.load(tmp_path / "features-logreg-C1.0" / layout.HEAD)
    logits = X["test"] @ head["W"] + head["b"]
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert np.allclose(probs, ref_probs, atol=1e-4)
    metrics = json.loads((tmp_path / "features-logreg-C1.0" / layout.METRICS).read_text())
    assert metrics["test"]["accuracy"] == pytest.approx(float(np.mean(ref_probs.argmax(1) == y["test"])))
    assert metrics["strategy"] == "features" and metrics["embedding"]["dim"] == 256
    from convscope.layout import PREDICTIONS
    from convscope.records import read_predictions

    true, pred = read_predictions(tmp_path / "features-logreg-C1.0" / PREDICTIONS)
    assert np.array_equal(true, y["test"]) and np.array_equal(pred, ref_probs.argmax(1))
    svm = json.loads((tmp_path / "features-linsvm-C1.0" / layout.METRICS).read_text())
    true, pred = read_predictions(tmp_path / "features-linsvm-C1.0" / PREDICTIONS)
    assert np.mean(pred == true) == pytest.approx(svm["test"]["accuracy"])
    assert svm["test"]["ece"] is None and metrics["test"]["ece"] >= 0  # margins have no calibration

    # the Keras model of the run (frozen base + folded head) reproduces the head from images
    model = head_model(
        head_path=tmp_path / "features-logreg-C1.0" / layout.HEAD,
        out_path=tmp_path / "m.keras",
        features=features,
        num_classes=3,
    )
    keras_probs = model.predict(np.load(layout.prepared_in(prepared, "test")), verbose=0)
    assert np.allclose(keras_probs, ref_probs, atol=1e-3)
    assert (tmp_path / "m.keras").is_file()


def test_metrics_bootstrap_is_seeded_and_covers_the_estimate():
    from convscope.training.metrics import bootstrap_accuracy_ci, evaluate

    correct = np.array([1] * 300 + [0] * 100)
    a = bootstrap_accuracy_ci(correct, 1000, seed=1)
    assert a == bootstrap_accuracy_ci(correct, 1000, seed=1)
    assert a != bootstrap_accuracy_ci(correct, 1000, seed=2)
    # normal approximation: 0.75 +- 1.96 * sqrt(0.75 * 0.25 / 400) = 0.75 +- 0.042
    assert a[0] == pytest.approx(0.708, abs=0.012) and a[1] == pytest.approx(0.792, abs=0.012)
    y = np.array([0, 0, 1, 1, 2, 2])
    scores = np.eye(3)[[0, 1, 1, 1, 2, 0]]
    m = evaluate(y, scores, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["b"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "support": 2,
    }
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


SANITY_SCRIPT = """
import sys
import numpy as np
import keras
from convscope.training.sanity import SanityError, top5_rows
inputs = keras.Input((32, 32, 3))
x = keras.layers.Conv2D(4, 3)(inputs)
x = keras.layers.GlobalAveragePooling2D()(x)
model = keras.Model(inputs, keras.layers.Dense(1000, activation="softmax")(x))  # weights=None, 1000 classes
images = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
try:
    top5_rows(model, images, names=["a", "b", "c"], preprocess="tf")
except SanityError as e:
    print("SANITY-ERROR", e)
    sys.exit(3)
print("DECODED")
"""


def test_sanity_check_fails_with_a_clear_message_when_class_names_cannot_be_fetched(tmp_path):
    # A fresh Keras cache: decode_predictions must download imagenet_class_index.json,
    # which this offline machine cannot; the message must say where to put it.
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras"), "KERAS_BACKEND": "jax"}
    proc = subprocess.run(
        [sys.executable, "-c", SANITY_SCRIPT], capture_output=True, text=True, env=env, cwd=REPO, timeout=180
    )
    if "DECODED" in proc.stdout:
        pytest.skip("this machine reached the ImageNet class index online; the offline message is not exercised")
    assert proc.returncode == 3, proc.stderr[-3000:]
    message = proc.stdout
    assert "imagenet_class_index.json" in message
    assert str(tmp_path / "keras" / "models" / "imagenet_class_index.json") in message
    assert "could not be downloaded" in message and "Traceback" not in message


def test_sanity_csv_has_one_row_per_image_and_rank(tmp_path):
    from convscope.training.sanity import CSV_COLUMNS, write_csv

    rows = [
        {
            "image": i,
            "file": f"f{i}.png",
            "true_class": "red",
            "rank": r,
            "wnid": f"n{r:08d}",
            "imagenet_label": f"label{r}",
            "probability": 0.1 * r,
        }
        for i in range(2)
        for r in range(1, 6)
    ]
    write_csv(rows, tmp_path / "top5.csv")
    with open(tmp_path / "top5.csv", newline="") as f:
        back = list(csv.DictReader(f))
    assert tuple(back[0]) == CSV_COLUMNS and len(back) == 10
    assert [int(r["rank"]) for r in back[:5]] == [1, 2, 3, 4, 5]


JAX_SCRIPT = """
import json, sys
from convscope.training.run import train_run
result = train_run(prepared_dir=sys.argv[1], out_dir=sys.argv[2], backbone="alexnet", options={"weights": "none"},
                   input_size=64, strategy="finetune", hp=json.loads(sys.argv[3]), classes=["red", "green", "blue"],
                   backend="jax", bootstrap=200, threads=2)
tf_imported = "tensorflow" in sys.modules  # seeding and TensorBoard logs must not need it
import keras
from pathlib import Path
from convscope.training import callbacks as cb
from convscope.training.data import MemmapDataset, Reading, split_paths

# Keras runs batch callbacks on a worker thread (so JAX never waits for a step's logs)
# only when no callback needs them synchronously; Keras' own BackupAndRestore is the control.
tmp = Path(sys.argv[2]).parent
ds = MemmapDataset(*split_paths(sys.argv[1], "train"), 8, 3, Reading(shuffle=True))
ours = cb.phase_callbacks(ds, cb.RunLog("all", ds.samples_per_epoch), tmp / "h.csv", cb.EpochTensorBoard(tmp / "tb"),
                          tmp / "done.weights.h5", cb.EpochBackup(tmp / "bk"))
upstream = [c for c in ours if not isinstance(c, cb.EpochBackup)]
upstream.append(keras.callbacks.BackupAndRestore(str(tmp / "bk2"), save_freq="epoch"))
print("RESULT", json.dumps({"backend": keras.backend.backend(), "versions": result["versions"],
                            "epochs": result["epochs_trained"], "acc": result["val"]["accuracy"],
                            "jit": result["jit_compile"], "first_step": result["fixed_cost_s"]["first_step"],
                            "tf_imported": tf_imported, "tensorboard": result["tensorboard"],
                            "async": [keras.callbacks.CallbackList(c)._async_train for c in (ours, upstream)]}))
"""


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") == "jax", reason="the whole suite already runs under JAX")
def test_training_runs_under_the_jax_backend(prepared, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["CONVSCOPE_COMPILE_CACHE"] = str(tmp_path / "jax-cache")
    out = tmp_path / "jax-run"
    proc = subprocess.run(
        # "standard" augmentation: Keras would leave its steps uncompiled under JAX; ours must not
        [sys.executable, "-c", JAX_SCRIPT, str(prepared), str(out), json.dumps(hp(epochs=1, augment="standard"))],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["backend"] == "jax" and result["versions"]["backend"] == "jax" and "jax" in result["versions"]
    assert result["epochs"] == 1 and result["jit"] is True
    assert result["async"] == [True, False], "a run callback makes every JAX step wait for its logs"
    assert result["first_step"] > 0, "the first step's time is still recorded from the async callback thread"
    assert (out / layout.MODEL).is_file()
    assert not result["tf_imported"], "a JAX job imported TensorFlow (5 s of fixed cost per run)"
    assert result["tensorboard"]["ok"]
    assert [e.step for e in tensorboard_scalars(out / "tensorboard" / "validation", "epoch_loss")] == [0]
    assert any((tmp_path / "jax-cache").iterdir()), "the persistent compilation cache stayed empty"
    # the model saved under JAX loads and predicts under this process's backend
    from convscope.models.build import load_model

    model = load_model(out / layout.MODEL, compile=False)
    probs = model.predict(np.load(layout.prepared_in(prepared, "val")), verbose=0)
    y = np.load(layout.prepared_in(prepared, "val", "labels.npy"))
    assert float(np.mean(probs.argmax(1) == y)) == pytest.approx(result["acc"], abs=1 / len(y))
