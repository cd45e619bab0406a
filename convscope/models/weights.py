"""Loading backbone weights: ImageNet from the Keras cache, files, and AlexNet's .npy.

Config (`backbones.<name>`): `weights` is "imagenet", "none" or a path;
`weights_sha256` optionally pins AlexNet's .npy file.

bvlc_alexnet.npy
----------------
The widely circulated AlexNet weights converted from Caffe for TensorFlow
(https://www.cs.toronto.edu/~guerzhoy/tf_alexnet/bvlc_alexnet.npy, 233 MB) are
`np.save` of a dict {layer: [W, b]} for conv1..conv5, fc6..fc8, in the
"TF-converted" layout this loader expects by default:

    conv W: (kh, kw, in_channels / groups, out)  e.g. conv2 (5, 5, 48, 256)
            groups=2 in conv2/4/5, output channels of group g = g-th contiguous half,
            which is exactly keras Conv2D(groups=2)'s kernel layout
    fc   W: (in, out); fc6's 9216 inputs are pool5 flattened in (h, w, c) order
    b:      (out,)
    input:  BGR, ImageNet mean subtracted (our "caffe" preprocess mode)

Files still in Caffe's own blob layout (conv W (out, in / groups, kh, kw), fc
W (out, in) with fc6 inputs in (c, h, w) order) are recognised by conv1's shape
and transposed. Keras has no AlexNet download, so weights="imagenet" fetches the
file into the Keras cache on first use (atomically; $CONVSCOPE_ALEXNET_URL names
a mirror). The file is a pickle, and unpickling can execute arbitrary code, so
it is read by convscope.models.safe_npy, which builds only NumPy arrays and
plain containers and refuses anything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import tempfile
from pathlib import Path

import keras
import numpy as np

from convscope import keras_compat

log = logging.getLogger(__name__)

ALEXNET_FILE = "bvlc_alexnet.npy"
ALEXNET_URL = "https://www.cs.toronto.edu/~guerzhoy/tf_alexnet/bvlc_alexnet.npy"
ALEXNET_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
# A failed connection should fail, not hang a job; slow but live downloads are fine
# (this bounds each socket operation, not the whole transfer).
DOWNLOAD_SOCKET_TIMEOUT_S = 60


class WeightsError(RuntimeError):
    """Weights could not be obtained or loaded; the message says what to do."""


# ---- the Keras cache ---------------------------------------------------------


def keras_home() -> Path:
    """Where Keras caches downloads: $KERAS_HOME, else ~/.keras (as Keras decides)."""
    try:
        return keras_compat.keras_home()
    except ImportError:  # pragma: no cover - private helper moved
        return Path(os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras"))


def _cache_dir(cache_dir, cache_subdir) -> Path:
    # Mirrors keras.utils.get_file: an unwritable cache falls back to /tmp/.keras.
    base = Path(os.path.expanduser(str(cache_dir))) if cache_dir else keras_home()
    with contextlib.suppress(OSError):  # as Keras does at import for ~/.keras
        base.mkdir(parents=True, exist_ok=True)
    if not os.access(base, os.W_OK):
        base = Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()) / ".keras"
    return base / (cache_subdir or "datasets")


def keras_models_dir() -> Path:
    return _cache_dir(None, "models")


@contextlib.contextmanager
def _recorded_downloads():
    """Record the files keras.applications asks keras.utils.get_file for.

    The applications call Keras' private file_utils.get_file; wrapping it is
    the only way to learn the exact file name and URL when the download fails
    with an error that does not name them (timeouts, DNS failures).
    """
    calls: list[dict] = []
    try:
        file_utils = keras_compat.file_utils_module()
    except ImportError:  # pragma: no cover - private module moved; messages get vaguer
        yield calls
        return
    original = file_utils.get_file

    def recording(fname=None, origin=None, *args, **kwargs):
        name = fname or os.path.basename(str(origin).split("?")[0])
        calls.append(
            {
                "fname": name,
                "origin": origin,
                "dir": _cache_dir(kwargs.get("cache_dir"), kwargs.get("cache_subdir", "datasets")),
            }
        )
        return original(fname, origin, *args, **kwargs)

    previous_timeout = socket.getdefaulttimeout()
    file_utils.get_file = recording
    if previous_timeout is None:
        socket.setdefaulttimeout(DOWNLOAD_SOCKET_TIMEOUT_S)
    try:
        yield calls
    finally:
        file_utils.get_file = original
        socket.setdefaulttimeout(previous_timeout)


def imagenet_app(
    backbone: str, app_name: str, input_shape: tuple | None = None, *, include_top: bool = False
) -> keras.Model:
    """keras.applications.<app_name>(include_top=include_top, weights="imagenet").

    A failed download (offline machine, firewall, corrupt cache) becomes a
    WeightsError naming the file, its URL and the directory to put it in.
    """
    constructor = getattr(keras.applications, app_name)
    with _recorded_downloads() as calls:
        try:
            return constructor(include_top=include_top, weights="imagenet", input_shape=input_shape)
        except Exception as exc:  # any failure during download/load
            if not calls:
                raise
            call = calls[-1]
            target = call["dir"] / call["fname"]
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if target.exists():  # downloaded (or cached) but unusable: not a network problem
                raise WeightsError(
                    f"ImageNet weights for backbone {backbone!r} (keras.applications.{app_name}) in {target} "
                    f"could not be loaded: {reason}\nDelete {target} and run again to download it afresh, "
                    f"or set config key backbones.{backbone}.weights to 'none' or a path."
                ) from exc
            raise WeightsError(
                f"ImageNet weights for backbone {backbone!r} (keras.applications.{app_name}) could not be "
                f"downloaded: {reason}\n"
                f"If this machine is offline, download\n    {call['origin']}\n"
                f"on one that is not and put it at\n    {target}\n"
                f"(file {call['fname']!r} in directory {call['dir']}, the Keras cache: $KERAS_HOME/models, "
                f"default ~/.keras/models), then run again. Or set config key backbones.{backbone}.weights "
                f"to 'none' (random init) or to the path of a weights file."
            ) from None


# ---- files -------------------------------------------------------------------


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def alexnet_url() -> str:
    """Where AlexNet's ImageNet weights come from: $CONVSCOPE_ALEXNET_URL (a mirror) or ALEXNET_URL."""
    return os.environ.get("CONVSCOPE_ALEXNET_URL") or ALEXNET_URL


def alexnet_imagenet_path() -> Path:
    """bvlc_alexnet.npy in the Keras cache (AlexNet's weights="imagenet"), downloaded on first use."""
    path = keras_models_dir() / ALEXNET_FILE
    if not path.is_file():
        download(alexnet_url(), path, backbone="alexnet")
    return path


def download(url: str, target: Path, *, backbone: str, chunk: int = 1 << 20) -> Path:
    """Fetch `url` to `target` atomically: a temporary file beside it, renamed when whole.

    A killed or cut-off transfer leaves at most the temporary file (never taken
    for the real one); a short body (fewer bytes than Content-Length) is an error.
    """
    import urllib.request

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    log.info("downloading %s weights from %s to %s", backbone, url, target)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_SOCKET_TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            done, reported = 0, 0.0
            for block in iter(lambda: resp.read(chunk), b""):
                out.write(block)
                done += len(block)
                if total and (done == total or done / total - reported >= 0.1):  # a line per 10 %
                    reported = done / total
                    log.info("  %s: %.0f %% of %.1f MB", target.name, 100 * reported, total / 1e6)
            if total and done != total:
                raise OSError(f"transfer cut off after {done} of {total} bytes")
        os.replace(tmp, target)
    except Exception as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"ImageNet weights for backbone {backbone!r} could not be downloaded: {reason}\n"
            f"If this machine is offline, download\n    {url}\n"
            f"on one that is not and put it at\n    {target}\n"
            f"(file {target.name!r} in directory {target.parent}, the Keras cache: $KERAS_HOME/models, "
            f"default ~/.keras/models), then run again. Or set config key backbones.{backbone}.weights "
            f"to 'none' (random init) or to the path of a weights file."
        ) from None
    log.info("downloaded %s (%.1f MB)", target, target.stat().st_size / 1e6)
    return target


def read_alexnet_npy(path, *, sha256: str | None = None) -> dict:
    """The {layer: [W, b]} dict of a bvlc_alexnet.npy, read without running pickled code.

    safe_npy's restricted unpickler builds only NumPy arrays and plain
    containers, so no file needs to be trusted; `sha256` (config key
    backbones.alexnet.weights_sha256) optionally pins the exact file.
    """
    from convscope.models import safe_npy

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"AlexNet weights file {path} not found (config key backbones.alexnet.weights)")
    if sha256:
        actual = sha256_file(path)
        if actual.lower() != str(sha256).strip().lower():
            raise WeightsError(
                f"refusing to load {path}: its SHA-256 is {actual}, but config key "
                f"backbones.alexnet.weights_sha256 expects {sha256}. Delete the file to download it afresh, "
                f"or update backbones.alexnet.weights_sha256 if this file is the one you want."
            )
    try:
        params = safe_npy.load(path)
    except safe_npy.UnsafePickleError as exc:
        raise WeightsError(f"refusing to load {path}: {exc}. Is this bvlc_alexnet.npy?") from None
    except Exception as exc:
        raise WeightsError(
            f"{path} is not a readable .npy weights file ({type(exc).__name__}: {exc}); delete it to download "
            f"it afresh, or point config key backbones.alexnet.weights at a good copy"
        ) from None
    if not isinstance(params, dict):
        raise WeightsError(f"{path}: expected a pickled dict layer -> [weights, biases], got {type(params).__name__}")
    out = {}
    for name, value in params.items():
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise WeightsError(f"{path}: entry {name!r} should be [weights, biases], got {type(value).__name__}")
        out[str(name)] = [np.asarray(value[0], dtype="float32"), np.asarray(value[1], dtype="float32")]
    return out


def _alexnet_layout(params: dict, path) -> str:
    shape = params["conv1"][0].shape if "conv1" in params else None
    if shape == (11, 11, 3, 96):
        return "tf"
    if shape == (96, 3, 11, 11):
        return "caffe"
    raise WeightsError(
        f"{path}: conv1 weights have shape {shape}; expected (11, 11, 3, 96) (TF-converted layout) "
        f"or (96, 3, 11, 11) (Caffe layout). Is this bvlc_alexnet.npy?"
    )


def load_alexnet_npy(model: keras.Model, path, *, sha256: str | None = None) -> list[str]:
    """Set conv1..conv5 (and fc6..fc8 when the model has them) from a bvlc_alexnet.npy.

    Returns the names of the layers loaded. Shapes must match exactly; fc6 fits
    only at the native 227 px input.
    """
    params = read_alexnet_npy(path, sha256=sha256)
    layout = _alexnet_layout(params, path)
    present = {layer.name: layer for layer in model.layers}
    loaded, skipped = [], []
    for name in ALEXNET_LAYERS:
        if name not in present:
            skipped.append(name)
            continue
        if name not in params:
            raise WeightsError(f"{path}: no entry {name!r}; an AlexNet weights file has {list(ALEXNET_LAYERS)}")
        layer = present[name]
        w, b = params[name]
        if layout == "caffe":
            if name.startswith("conv"):
                w = w.transpose(2, 3, 1, 0)
            elif name == "fc6":
                h, wd, c = model.get_layer("pool5").output.shape[1:]  # Caffe flattens (c, h, w)
                w = w.reshape(w.shape[0], c, h, wd).transpose(2, 3, 1, 0).reshape(h * wd * c, w.shape[0])
            else:
                w = w.T
        want = tuple(layer.kernel.shape)
        if w.shape != want or b.shape != tuple(layer.bias.shape):
            hint = " (fc6 fits only at input 227)" if name == "fc6" else ""
            raise WeightsError(
                f"{path}: layer {name!r} weights {w.shape} / bias {b.shape} do not fit the model's "
                f"{want} / {tuple(layer.bias.shape)}{hint}"
            )
        layer.set_weights([w, b])
        loaded.append(name)
    if skipped:
        log.info("%s: %s not in model %r (no top), not loaded", path, ", ".join(skipped), model.name)
    log.info("loaded AlexNet weights (%s layout) for %s from %s", layout, ", ".join(loaded), path)
    return loaded


def copy_weights_by_name(source: keras.Model, target: keras.Model, origin: str = "source") -> None:
    """Set every weighted layer of `target` from the same-named layer of `source`."""
    problems = []
    by_name = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if not layer.weights:
            continue
        src = by_name.get(layer.name)
        if src is None:
            problems.append(f"{layer.name}: missing")
            continue
        got = [tuple(w.shape) for w in src.weights]
        want = [tuple(w.shape) for w in layer.weights]
        if got != want:
            problems.append(f"{layer.name}: shapes {got} != {want}")
            continue
        layer.set_weights(src.get_weights())
    if problems:
        raise WeightsError(
            f"{origin} does not fit model {target.name!r} (same backbone and input size?): "
            + "; ".join(problems[:5])
            + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        )


def load_weights_file(base: keras.Model, path, backbone: str, *, sha256=None) -> None:
    """Load `backbones.<backbone>.weights: <path>` into the base model.

    .npy         AlexNet only: bvlc_alexnet.npy (read by the restricted unpickler)
    .keras       a saved model: its "base" layer (a convscope classifier) or the
                 model itself (a bare backbone); weights copied by layer name
    .weights.h5  weights saved from a base (base.save_weights), or Keras'
    / .h5        own *_notop.h5 files for keras.applications backbones
    """
    p = Path(str(path)).expanduser()
    key = f"config key backbones.{backbone}.weights"
    if not p.is_file():
        raise WeightsError(f"{key}: weights file {p} not found; use 'imagenet', 'none' or the path of an existing file")
    name = p.name.lower()
    if name.endswith(".npy"):
        if backbone != "alexnet":
            raise WeightsError(f"{key}: {p} is a .npy file; only alexnet loads .npy (bvlc_alexnet.npy) weights")
        load_alexnet_npy(base, p, sha256=sha256)
    elif name.endswith(".keras"):
        source = keras.saving.load_model(str(p), compile=False)
        names = [layer.name for layer in source.layers]
        copy_weights_by_name(source.get_layer("base") if "base" in names else source, base, origin=f"{key}: {p}")
    elif name.endswith(".h5"):
        try:
            base.load_weights(str(p))
        except Exception as exc:  # keras raises several types here
            raise WeightsError(f"{key}: {p} does not fit {backbone}'s base at this input size: {exc}") from None
    else:
        raise WeightsError(f"{key}: {p} has an unknown suffix; use a .weights.h5, .h5, .keras or (alexnet) .npy file")
    log.info("loaded %s weights from %s", backbone, p)


def weights_for(strategy: str, options: dict) -> dict:
    """build_classifier's weight and head arguments from backbone options; scratch starts from random weights."""
    kwargs = {k: options[k] for k in ("weights", "weights_sha256", "head") if k in options}
    if strategy == "scratch":
        kwargs["weights"] = "none"
    return kwargs
