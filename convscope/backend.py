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


def select(
    name: str,
    threads: int | None = None,
    compile_cache: str | Path | None = None,
    jobs_per_gpu: int = 1,
) -> str:
    """Make `name` the Keras backend of this process (config key train.backend).

    threads: cap the cores the backend's op pools use (the job's Snakemake
    threads), so parallel jobs do not oversubscribe the machine.
    compile_cache: folder of JAX's persistent compilation cache, shared by all
    runs so that runs of the same architecture skip XLA compilation (jobs:
    layout.Results.compile_cache, set by convscope.entry.job; None keeps the
    folder an earlier call set, else $CONVSCOPE_COMPILE_CACHE or the user cache).
    jobs_per_gpu: GPU jobs sharing one GPU (config key train.jobs_per_gpu); each
    takes at most 1/n of the GPU's memory (see gpu_memory_env).

    Called again in a process that imported Keras already (a library call after
    the job's own, tests), it checks the backend and applies the thread caps
    that the backend still takes.
    """
    if name not in BACKENDS:
        raise BackendError(f"config key train.backend: {name!r} is not supported; allowed values: {list(BACKENDS)}")
    os.environ.update(_thread_env(threads))
    os.environ.update(gpu_memory_env(name, jobs_per_gpu))
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if current != name:
            raise BackendError(
                f"Keras was already imported with backend {current!r} before train.backend={name!r} "
                "could be applied; call convscope.backend.select() before anything imports keras"
            )
        if name == "tensorflow" and threads:
            _tensorflow_threads(int(threads))
    os.environ["KERAS_BACKEND"] = name
    # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) buries job logs.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if name == "jax":
        _jax_compile_cache(compile_cache)
    _import_keras(name)
    if name != "tensorflow":
        _tensorflow_only_once_imported()
    return name


# Optional packages that Keras (and TensorFlow) import at their own import when they are
# installed, for features no convscope Keras job uses: scikit-learn (keras.wrappers), pandas
# (DataFrame inputs), matplotlib (keras.visualization), and JAX under TensorFlow (tf.lite).
# They cost a training job about 1.4 s of its 5 s Keras import (TF, 2 cores; python -X importtime).
NOT_AT_KERAS_IMPORT = {
    "tensorflow": ("sklearn", "pandas", "matplotlib", "jax"),
    "jax": ("sklearn", "pandas", "matplotlib"),
}


def _import_keras(name: str) -> None:
    """Import Keras (and its backend) without the optional packages of NOT_AT_KERAS_IMPORT.

    A None entry in sys.modules makes `import x` raise ImportError (the import
    system's documented way to block one), which Keras and TensorFlow catch as
    "not installed". The entries go once Keras is in: a job that uses one of the
    packages (an analysis: scikit-learn, matplotlib) imports it as usual.
    """
    if "keras" in sys.modules:
        return
    blocked = [m for m in NOT_AT_KERAS_IMPORT[name] if m not in sys.modules]
    sys.modules.update(dict.fromkeys(blocked))
    try:
        import keras  # noqa: F401
    finally:
        for m in blocked:
            if m in sys.modules and sys.modules[m] is None:
                del sys.modules[m]


def _thread_env(threads: int | None) -> dict:
    if not threads:
        return {}
    n = str(int(threads))
    env = {
        "TF_NUM_INTRAOP_THREADS": os.environ.get("TF_NUM_INTRAOP_THREADS", n),
        "TF_NUM_INTEROP_THREADS": os.environ.get("TF_NUM_INTEROP_THREADS", "1" if int(threads) <= 2 else "2"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", n),
    }
    flags = os.environ.get("XLA_FLAGS", "")
    if int(threads) == 1 and "xla_cpu_multi_thread_eigen" not in flags:
        env["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    return env


def _tensorflow_threads(threads: int) -> None:
    """TF already imported (an earlier call in this process): its thread pools start with the first op."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1 if threads <= 2 else 2)
    except RuntimeError:  # the runtime already started: the earlier setting stays
        log.warning(
            "TensorFlow's runtime started before train.threads=%d could be applied",
            threads,
        )


# Share of a GPU's memory that the jobs on it may take together; the rest is
# the CUDA context of each process and fragmentation.
GPU_MEMORY_FRACTION = 0.9


def gpu_memory_env(name: str, jobs_per_gpu: int = 1) -> dict:
    """Environment that caps one job's GPU memory when `jobs_per_gpu` jobs share a GPU.

    JAX: no preallocation (by default it grabs 75% of the GPU at start) and at
    most 0.9/n of the GPU (XLA_PYTHON_CLIENT_MEM_FRACTION). TensorFlow: memory
    growth (TF_FORCE_GPU_ALLOW_GROWTH) instead of taking the whole GPU at start,
    and with n > 1 a per-process limit of 0.9/n of the GPU's memory, applied by
    tensorflow_memory_limit once TF is imported. Values the user set win.
    """
    n = max(1, int(jobs_per_gpu))
    fraction = f"{GPU_MEMORY_FRACTION / n:.3f}"
    if name == "jax":
        env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
        if n > 1:
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = fraction
    else:
        env = {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}
        if n > 1:
            env["CONVSCOPE_TF_GPU_MEMORY_FRACTION"] = fraction
    env = {k: os.environ.get(k, v) for k, v in env.items()}
    env["CONVSCOPE_JOBS_PER_GPU"] = str(n)
    return env


def tensorflow_memory_limit() -> None:
    """Under TF with jobs sharing a GPU: a logical device of 0.9/n of each GPU's memory.

    TF has no memory-fraction variable in TF 2; memory growth alone would let
    one job take what the others need. Called before the first TF operation.
    """
    fraction = os.environ.get("CONVSCOPE_TF_GPU_MEMORY_FRACTION")
    if current() != "tensorflow" or not fraction:
        return
    import tensorflow as tf

    for i, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        total_mb = _gpu_total_mb(i)
        if total_mb is None:
            continue
        limit = int(total_mb * float(fraction))
        try:
            tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)])
        except RuntimeError as e:
            log.warning("could not cap GPU %d at %d MB (%s)", i, limit, e)


def _gpu_total_mb(index: int) -> int | None:
    import subprocess

    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=memory.total",
                "--format=csv,noheader,nounits",
                f"--id={index}",
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        return int(float(out.split()[0]))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


# What a job's environment says about GPU sharing and threads: recorded in metrics.json (job_env).
JOB_ENV_KEYS = (
    "CONVSCOPE_JOBS_PER_GPU",
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "TF_FORCE_GPU_ALLOW_GROWTH",
    "CONVSCOPE_TF_GPU_MEMORY_FRACTION",
    "CUDA_VISIBLE_DEVICES",
    "TF_NUM_INTRAOP_THREADS",
    "OMP_NUM_THREADS",
)


def job_env() -> dict:
    return {k: os.environ[k] for k in JOB_ENV_KEYS if k in os.environ}


class GpuMemoryError(RuntimeError):
    """A job ran out of GPU memory: the message names the config key to lower."""


def is_out_of_memory(exc: BaseException) -> bool:
    """The backends' out-of-memory errors: TF ResourceExhaustedError, XLA RESOURCE_EXHAUSTED (JAX)."""
    if type(exc).__name__ == "ResourceExhaustedError":
        return True
    text = str(exc)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def out_of_memory_message(exc: BaseException, jobs_per_gpu: int, batch_size: int) -> str:
    return (
        f"the job ran out of GPU memory ({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}) "
        f"with {jobs_per_gpu} job(s) sharing each GPU: lower config key train.jobs_per_gpu (now {jobs_per_gpu})"
        f" or the run's batch_size (train.grid.batch_size, now {batch_size}); a retry resumes from the epoch backup"
    )


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

    if folder is None and jax.config.jax_compilation_cache_dir:
        return  # this process's first select chose it (a job: the results tree)
    folder = Path(folder).resolve() if folder else default_compile_cache()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.warning(
            "no persistent JAX compilation cache (%s): every run compiles from scratch",
            e,
        )
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
    from importlib import metadata

    try:  # its version, not the package: a training job never imports scikit-learn
        out["scikit-learn"] = metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        pass
    return out
