"""The exported model.keras loads with plain Keras, in an interpreter that cannot import convscope.

convscope.export writes convscope's own layers (Preprocess, AlexNet's LRN) as the
same computation in keras.ops, so a user loads the file with
keras.saving.load_model alone. The fresh interpreter runs isolated (-I: no
PYTHONPATH, no current folder on sys.path; -S: no .pth files, so not the
editable install of convscope either, only the installed packages' folders) from
a folder outside the repository, and first proves that `import convscope` fails there.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from convscope import export  # noqa: E402
from convscope.models import build  # noqa: E402

LOAD = r"""
import json, sys
sys.path.extend(json.loads(sys.argv[4]))
try:
    import convscope
    sys.exit("convscope is importable here: " + convscope.__file__)
except ImportError:
    pass
import keras, numpy as np
model = keras.saving.load_model(sys.argv[1])
probs = model.predict(np.load(sys.argv[2]), verbose=0)
np.save(sys.argv[3], probs)
print(json.dumps({"backend": keras.backend.backend(), "layers": sorted({type(l).__module__ for l in model.layers})}))
"""


def _classifier():
    """AlexNet (Preprocess "caffe" and LRN) with random weights, as training builds it."""
    return build.build_classifier("alexnet", 3, input_size=32, weights="none", augment="light", seed=0)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_exported_model_loads_and_predicts_without_convscope(tmp_path, backend):
    model = _classifier()
    model_path = tmp_path / "model.keras"
    model.save(str(model_path))
    x = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3)).astype("float32")
    check = export.export_model(model_path=model_path, out_dir=tmp_path / "export", check_images=x)
    assert check["formats"]["keras"]["max_abs_diff"] <= export.TOLERANCE
    np.save(tmp_path / "x.npy", x)

    elsewhere = tmp_path / "user"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["KERAS_BACKEND"] = backend
    proc = subprocess.run(
        [
            *(sys.executable, "-I", "-S", "-c", LOAD),
            *(str(tmp_path / "export" / "model.keras"), str(tmp_path / "x.npy"), "p.npy"),
            json.dumps(site.getsitepackages()),
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-1000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["backend"] == backend
    assert not [m for m in info["layers"] if m.startswith("convscope")]
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(np.load(elsewhere / "p.npy"), want, atol=1e-5)


@pytest.mark.parametrize("mode", build.PREPROCESS_MODES)
def test_serving_model_has_no_convscope_layer_and_computes_the_same(mode):
    inputs = keras.Input((16, 16, 3), name="image")
    x = build.Preprocess(mode, name="preprocess", dtype="float32")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    serving = export.serving_model(model)

    def classes(m):
        for layer in m.layers:
            yield type(layer)
            if isinstance(layer, keras.Model):
                yield from classes(layer)

    assert not [c for c in classes(serving) if c.__module__.startswith("convscope")]
    x = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(serving.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
