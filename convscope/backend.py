"""The Keras backend: chosen from config before Keras is imported.

With convscope/analysis/gradients.py, the only module that knows backend names.
Keras reads KERAS_BACKEND once, at its first import, so `select` must run
before anything imports keras; job entry points call it first thing.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from pathlib import Path

BACKENDS = ("tensorflow", "jax")
log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    pass


def select(name: str, threads: int | None = None, compile_cache: str | Path | None = None) -> str:
    """Make `name` the Keras backend of this process (config key train.backend).

    threads: cap the cores the backend's op pools use (the job's Snakemake
    threads), so parallel jobs do not oversubscribe the machine.
    compile_cache: folder of JAX's persistent compilation cache, shared by all
    runs so that runs of the same architecture skip XLA compilation.
    """
    if name not in BACKENDS:
        raise BackendError(f"config key train.backend: {name!r} is not supported; allowed values: {list(BACKENDS)}")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise BackendError(
                f"Keras was already imported with backend {current!r} before train.backend={name!r} "
                "could be applied; call convscope.backend.select() before anything imports keras"
            )
        if name != "tensorflow":
            _tensorflow_only_once_imported()
        return name
    os.environ["KERAS_BACKEND"] = name
    # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) buries job logs.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if threads:
        n = str(int(threads))
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", n)
        os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1" if int(threads) <= 2 else "2")
        os.environ.setdefault("OMP_NUM_THREADS", n)
        if int(threads) == 1:
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_cpu_multi_thread_eigen" not in flags:
                os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    if name == "jax":
        # JAX grabs 75% of GPU memory up front by default; several jobs may share a GPU's host.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        _jax_compile_cache(compile_cache)
    if name != "tensorflow":
        _tensorflow_only_once_imported()
    return name


def _tensorflow_only_once_imported() -> None:
    """Stop Keras importing TensorFlow into a non-TF process just because it is installed.

    Keras asks its lazy `tensorflow` handle whether TF is available, which
    imports it, to seed TF in set_random_seed and to recognise TF objects when
    saving a model: each JAX run paid 5 s of TF import (2 CPU cores), plus TF's
    CUDA start-up on GPU nodes. No TF object exists before TF is imported and
    convscope's JAX jobs use no TF, so the handle now reports TF available only
    once something has imported it; code that uses TF still imports it.
    """
    from convscope import keras_compat  # imports keras: KERAS_BACKEND is set, this is the process's import

    try:
        lazy = keras_compat.lazy_tensorflow_handle()
    except (ImportError, AttributeError):
        return  # a Keras without that handle: correct, only slower
    if getattr(type(lazy), "convscope_imported_only", False):  # (lazy.attr would import TF)
        return

    class ImportedOnly(type(lazy)):
        convscope_imported_only = True

        @property
        def available(self):
            return "tensorflow" in sys.modules and super().available

    lazy.__class__ = ImportedOnly


def default_compile_cache() -> Path:
    base = os.environ.get("CONVSCOPE_COMPILE_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "convscope" / "jax"


def _jax_compile_cache(folder) -> None:
    import jax

    folder = Path(folder) if folder else default_compile_cache()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.warning("no persistent JAX compilation cache (%s): every run compiles from scratch", e)
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Cache every program, the tiny ones too: building a model and its optimizer
    # runs hundreds of small eager programs (initializers, zeros per weight shape)
    # that each compile once per process. On CPU (MobileNetV2@32, 1-epoch run,
    # warm cache) this took a fresh job from 20-24 s to 19-20 s; GPU compiles cost more.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def current() -> str:
    import keras

    return keras.backend.backend()


def jit_compile(setting):
    """compile(jit_compile=...) for config key train.jit_compile.

    JAX always compiles (Keras' non-jitted JAX path is an eager debugging mode);
    TensorFlow takes the setting ("auto" lets Keras enable XLA where it helps).
    """
    if current() == "jax":
        return True
    return setting


def keep_compiled(model) -> bool:
    """After model.compile: make JAX compile the steps even where Keras declined.

    Keras turns jit_compile off for a whole model when any layer says
    supports_jit=False, and RandomRotation/RandomZoom (our "standard"
    augmentation) say so for every backend because TensorFlow's image transform
    op has no XLA kernel. Under JAX those layers are plain jax.numpy code and
    compile fine, while the uncompiled JAX path runs op by op (half the speed
    on CPU, far worse on GPUs). Returns whether the steps are compiled.
    """
    if current() == "jax" and not model.jit_compile:
        from convscope import keras_compat

        keras_compat.force_jit_compile(model)  # the property's setter would refuse it again
    return bool(model.jit_compile)


def accelerators() -> list[str]:
    """Accelerator devices visible to the backend (empty on CPU-only machines)."""
    backend = current()
    if backend == "jax":
        import jax

        return [f"{d} ({d.device_kind})" for d in jax.devices() if d.platform != "cpu"]
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def versions() -> dict:
    """Versions that decide numerics: recorded in every run's metrics.json."""
    import keras

    out = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "numpy": __import__("numpy").__version__,
    }
    for mod in ("tensorflow", "jax", "jaxlib"):
        if mod in sys.modules or mod == keras.backend.backend():
            try:
                out[mod] = __import__(mod).__version__
            except ImportError:
                pass
    try:
        import sklearn

        out["scikit-learn"] = sklearn.__version__
    except ImportError:
        pass
    return out
