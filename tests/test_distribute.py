"""Multi-GPU (data-parallel) training on CPU: two virtual devices stand in for two GPUs.

Each backend runs in its own process, because the device count is fixed when the
backend starts: XLA_FLAGS=--xla_force_host_platform_device_count=2 for JAX,
tf.config.set_logical_device_configuration for TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from convscope import layout

CHILD = textwrap.dedent(
    """
    import json, os, sys, logging
    logging.basicConfig(level=logging.INFO)
    backend = sys.argv[1]
    os.environ["KERAS_BACKEND"] = backend
    if backend == "tensorflow":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    from convscope import distribute

    class Data(keras.utils.PyDataset):
        def __init__(self, x, y, batch_size):
            super().__init__()
            self.x, self.y, self.batch_size = x, y, batch_size
        def __len__(self):
            return -(-len(self.x) // self.batch_size)
        def __getitem__(self, i):
            s = slice(i * self.batch_size, (i + 1) * self.batch_size)
            return self.x[s], self.y[s]

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (21, 16, 16, 3), dtype=np.uint8)   # 21 = 5 batches of 4 + 1
    labels = rng.integers(0, 3, 21)
    y = np.eye(3, dtype="float32")[labels]

    def build():
        keras.utils.set_random_seed(1)
        model = keras.Sequential([
            keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ])
        # weighted_metrics: metrics that honour the zero weight of padded samples.
        model.compile(keras.optimizers.Adam(0.01), "categorical_crossentropy",
                      weighted_metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
        return model

    out = {"devices": distribute.devices()}
    with distribute.scope(1) as one:
        data = Data(x, y, 4)
        out["one_n"] = one.n
        out["one_passthrough"] = one.batches(data, training=True) is data
    with distribute.scope(2) as rep:
        model = build()
        train = rep.batches(Data(x, y, 4), training=True)
        val = rep.batches(Data(x, y, 4), training=False)
        out["train_sizes"] = [len(train[i][0]) for i in range(len(train))]
        out["val_sizes"] = [len(val[i][0]) for i in range(len(val))]
        out["val_last_weights"] = val[len(val) - 1][2].tolist()
        history = model.fit(train, validation_data=val, epochs=2, verbose=0)
        out["loss"] = history.history["loss"]
        scores = rep.predict(model, Data(x, y, 4))
        out["evaluated_accuracy"] = model.evaluate(val, verbose=0, return_dict=True)["accuracy"]
        out["n"] = rep.n
        if backend == "jax":
            out["weight_devices"] = len(model.weights[0].value.sharding.device_set)
        else:
            strategy = model.distribute_strategy
            out["strategy"] = [type(strategy).__name__, strategy.num_replicas_in_sync]
        weights = model.get_weights()
    out["rows"] = len(scores)
    out["accuracy_from_scores"] = float((scores.argmax(1) == labels).mean())
    single = build()
    single.set_weights(weights)
    out["max_diff_to_single_device"] = float(np.abs(single.predict(x, verbose=0) - scores).max())
    try:
        with distribute.scope(2) as rep:
            rep.batches(Data(x, y, 3), training=True)
        out["odd_batch"] = "accepted"
    except ValueError as e:
        out["odd_batch"] = str(e)
    with distribute.scope(4) as capped:
        out["capped_n"] = capped.n
    print("RESULT " + json.dumps(out))
    """
)


def run_child(backend: str) -> tuple[dict, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([sys.executable, "-c", CHILD, backend], capture_output=True, text=True, timeout=300, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{backend} child failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return json.loads(lines[-1][len("RESULT ") :]), proc.stderr


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_data_parallel_over_two_virtual_devices(backend):
    out, stderr = run_child(backend)
    assert len(out["devices"]) == 2, out["devices"]
    # One device: nothing changes.
    assert out["one_n"] == 1 and out["one_passthrough"]
    # Two: the model really is distributed.
    assert out["n"] == 2
    if backend == "jax":
        assert out["weight_devices"] == 2  # variables replicated on both devices
    else:
        assert out["strategy"] == ["MirroredStrategy", 2]
    assert "data-parallel training over 2 devices" in stderr
    # Training batches split evenly (the 1-sample remainder is left out);
    # evaluation pads the last batch to 2 with a zero-weighted copy.
    assert out["train_sizes"] == [4, 4, 4, 4, 4]
    assert out["val_sizes"] == [4, 4, 4, 4, 4, 2]
    assert out["val_last_weights"] == [1.0, 0.0]
    assert all(v == v and v > 0 for v in out["loss"])  # finite, trained two epochs
    # predict returns one row per sample, the same scores as one device with those weights,
    # and evaluation with the padded batch counts every sample once.
    assert out["rows"] == 21
    assert out["max_diff_to_single_device"] < 1e-5
    assert out["evaluated_accuracy"] == pytest.approx(out["accuracy_from_scores"], abs=1e-6)
    # A global batch that does not split is refused, naming the config key.
    assert "train.grid.batch_size" in out["odd_batch"] and "multiple of 2" in out["odd_batch"]
    # More GPUs asked than seen: a warning, and training on what there is.
    assert out["capped_n"] == 2
    assert "was given 4 GPUs but the backend sees 2 device(s)" in stderr


TRAIN_CHILD = textwrap.dedent(
    """
    import json, logging, sys
    logging.basicConfig(level=logging.INFO)
    from convscope.training.run import JobOptions, train_run
    from tests.test_training import CLASSES, hp, write_prepared
    from convscope.layout import Results

    # 48/13/13 images in batches of 16: the last validation and test batches (13) do
    # not split over 2 devices, so they must be padded.
    prepared = write_prepared(Results(sys.argv[1]).prepared_dir(32), size=32, counts=(48, 13, 13))
    metrics = train_run(
        prepared_dir=prepared, out_dir=sys.argv[1] + "/run", backbone="alexnet", options={"weights": "none"},
        input_size=32, strategy="finetune", hp=hp(batch_size=16, epochs=2), classes=CLASSES,
        backend="jax", bootstrap=100, tensorboard=False, job=JobOptions(threads=1, n_gpus=2, jobs_per_gpu=1),
    )
    print("RESULT " + json.dumps({"epochs": metrics["epochs_trained"], "val": metrics["val"]["accuracy"]}))
    """
)


def test_a_train_job_given_two_gpus_trains_data_parallel(tmp_path):
    """The training entry point with n_gpus=2 (a job's resources gpu=2) uses scope(2)."""
    from conftest import REPO

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "KERAS_BACKEND": "jax"}
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "data-parallel training over 2 devices (jax backend): cpu:0, cpu:1" in proc.stderr
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert result["epochs"] == 2 and 0 <= result["val"] <= 1
    assert (tmp_path / "run" / layout.MODEL).stat().st_size > 0
