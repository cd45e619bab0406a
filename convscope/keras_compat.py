"""Every touch of a private Keras name, one place.

convscope relies on a few Keras internals that have no public equivalent in the
pinned Keras (pyproject.toml). Each is behind a named function here, and
REQUIRED lists them so tests/test_keras_compat.py fails, naming the missing
internal, when a Keras upgrade removes one. Callers that can do without one catch
ImportError/AttributeError and fall back (documented where they do).
"""

from __future__ import annotations

from pathlib import Path

# (private name, what convscope uses it for): checked by missing_internals().
REQUIRED = (
    ("keras.src.utils.module_utils.tensorflow", "backend: JAX jobs never import TensorFlow"),
    ("keras.src.backend.config.keras_home", "models.weights: where Keras caches downloads"),
    ("keras.src.utils.file_utils.get_file", "models.weights: name the file a failed download wanted"),
    ("keras.src.applications.imagenet_utils.CLASS_INDEX_PATH", "training.sanity: the class index URL"),
    ("Model._jit_compile", "backend: compile JAX steps despite augmentation layers"),
    ("Model._initial_epoch", "training: resume a phase at the epoch its backup holds"),
    ("Layer._layers", "models.build: set trainable on every nested layer"),
    ("Functional._nodes_by_depth", "analysis.split_model: find where a layer is called"),
    ("KerasTensor._keras_history", "analysis.split_model: the layer that made a model output"),
    ("Function._run_through_graph", "analysis.flexible_input: replay a model's graph on an input of another size"),
    ("keras.src.backend.config._KERAS_DIR", "tests: a throw-away Keras cache"),
    (
        "keras.src.trainers.data_adapters.py_dataset_adapter.PyDatasetAdapter",
        "tests, bench/input_pipeline.py: iterate a PyDataset as fit does",
    ),
)


# ---- modules and constants -------------------------------------------------------
def lazy_tensorflow_handle():
    """The lazy TensorFlow module Keras' modules share (keras.src.utils.module_utils.tensorflow)."""
    from keras.src.utils import module_utils

    return module_utils.tensorflow


def keras_home() -> Path:
    """Where Keras caches downloads, as Keras itself decides ($KERAS_HOME, else ~/.keras)."""
    import os

    from keras.src.backend.config import keras_home as _keras_home

    return Path(os.path.expanduser(_keras_home()))


def file_utils_module():
    """The module whose get_file keras.applications call (patched to record downloads)."""
    from keras.src.utils import file_utils

    return file_utils


def keras_home_setting() -> tuple:
    """(module, attribute) holding the Keras cache folder read at import (KERAS_HOME); for monkeypatch.setattr."""
    from keras.src.backend import config

    if not hasattr(config, "_KERAS_DIR"):
        raise AttributeError("keras.src.backend.config has no _KERAS_DIR")
    return config, "_KERAS_DIR"


def py_dataset_adapter(dataset, shuffle: bool = False):
    """The adapter model.fit wraps a keras.utils.PyDataset in (its workers, its read-ahead)."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    return PyDatasetAdapter(dataset, shuffle=shuffle)


def imagenet_class_index_url() -> str:
    from keras.src.applications.imagenet_utils import CLASS_INDEX_PATH

    return CLASS_INDEX_PATH


# ---- attributes of Keras objects -------------------------------------------------
def force_jit_compile(model) -> None:
    """Turn a model's jit_compile on where the public setter refuses (then rebuild its step functions)."""
    model._jit_compile = True
    model.train_function = model.test_function = model.predict_function = None


def set_initial_epoch(model, epoch: int | None) -> None:
    """The epoch the running (or next) fit starts counting from; None: fit's own initial_epoch."""
    model._initial_epoch = epoch


def initial_epoch(model) -> int | None:
    return model._initial_epoch


def sublayers(layer) -> tuple:
    """A layer's direct sublayers (Keras tracks them in `_layers`)."""
    return tuple(getattr(layer, "_layers", ()))


def call_nodes(model) -> list:
    """Every node (one call of an operation) of a functional model's graph."""
    return [n for depth in model._nodes_by_depth.values() for n in depth]


def run_graph(model, inputs, call_fn):
    """A functional model's graph applied to `inputs`, each node's call made by call_fn(operation, *args, **kwargs)."""
    return model._run_through_graph(inputs, call_fn=call_fn)


def producing_operation(tensor):
    """The layer/operation whose call produced a symbolic tensor."""
    return tensor._keras_history.operation


# ---- the check -------------------------------------------------------------------
def missing_internals() -> list[str]:
    """Lines naming each REQUIRED internal the installed Keras lacks (empty when all are there)."""
    import keras

    probes = {
        "keras.src.utils.module_utils.tensorflow": lazy_tensorflow_handle,
        "keras.src.backend.config.keras_home": keras_home,
        "keras.src.utils.file_utils.get_file": lambda: file_utils_module().get_file,
        "keras.src.applications.imagenet_utils.CLASS_INDEX_PATH": imagenet_class_index_url,
        "Model._jit_compile": lambda: _probe_model().__dict__["_jit_compile"],
        "Model._initial_epoch": lambda: _probe_model().__dict__["_initial_epoch"],
        "Layer._layers": lambda: _probe_model().get_layer("block").__dict__["_layers"],
        "Functional._nodes_by_depth": lambda: call_nodes(_probe_model()),
        "KerasTensor._keras_history": lambda: producing_operation(_probe_model().outputs[0]),
        "Function._run_through_graph": lambda: _probe_model()._run_through_graph,
        "keras.src.backend.config._KERAS_DIR": keras_home_setting,
        "keras.src.trainers.data_adapters.py_dataset_adapter.PyDatasetAdapter": _probe_adapter,
    }
    missing = []
    for name, why in REQUIRED:
        try:
            probes[name]()
        except (ImportError, AttributeError, KeyError) as e:
            missing.append(f"Keras {keras.__version__} has no {name} ({why}): {type(e).__name__}: {e}")
    return missing


def _probe_model():
    import keras

    inputs = keras.Input((4,))
    block = keras.Sequential([keras.layers.Dense(3)], name="block")
    return keras.Model(inputs, keras.layers.Dense(2)(block(inputs)))


def _probe_adapter():
    import keras
    import numpy as np

    class One(keras.utils.PyDataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return np.zeros((1, 1)), np.zeros((1,))

    return py_dataset_adapter(One())
