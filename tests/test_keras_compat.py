"""The private Keras names convscope relies on (convscope/keras_compat.py) exist in the pinned Keras."""

import importlib.metadata
import tomllib
from pathlib import Path

from convscope import keras_compat

ROOT = Path(__file__).resolve().parent.parent


def test_installed_keras_is_the_pinned_one():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = next(p.split("==")[1] for p in pins if p.startswith("keras=="))
    assert importlib.metadata.version("keras") == pinned, "the check below is about the pinned Keras"


def test_every_private_keras_name_still_exists():
    missing = keras_compat.missing_internals()
    assert not missing, "convscope/keras_compat.py needs updating for this Keras:\n" + "\n".join(missing)


def test_a_missing_name_is_reported_by_name(monkeypatch):
    """The check itself can fail: remove one internal and it names it."""
    from keras.src.utils import module_utils

    monkeypatch.delattr(module_utils, "tensorflow")
    missing = keras_compat.missing_internals()
    assert len(missing) == 1 and "keras.src.utils.module_utils.tensorflow" in missing[0]
    assert "JAX jobs never import TensorFlow" in missing[0]
