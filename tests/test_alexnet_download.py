"""AlexNet's weights="imagenet": downloaded on first use from a loopback server, atomically."""

from __future__ import annotations

import http.server
import io
import threading

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from convscope import keras_compat  # noqa: E402
from convscope.models import build  # noqa: E402
from convscope.models import weights as weights_lib  # noqa: E402
from convscope.models.alexnet import AlexNet, Top  # noqa: E402


def bvlc_bytes(seed: int = 0) -> tuple[bytes, dict]:
    """A file in the bvlc format (np.save of a 0-d object array holding {layer: [W, b]})."""
    reference = AlexNet(include_top=True, input_shape=(227, 227, 3), classes=4, top=Top(fc_units=8))
    rng = np.random.default_rng(seed)
    params = {
        layer.name: [
            rng.normal(0, 0.01, size=tuple(layer.kernel.shape)).astype("float32"),
            rng.normal(0, 0.1, size=tuple(layer.bias.shape)).astype("float32"),
        ]
        for layer in reference.layers
        if layer.name in weights_lib.ALEXNET_LAYERS
    }
    buf = io.BytesIO()
    np.save(buf, np.array(params, dtype=object), allow_pickle=True)
    return buf.getvalue(), params


class Server:
    """http.server on 127.0.0.1 in a thread; `cut_after` bytes then a dropped connection."""

    def __init__(self, body: bytes, cut_after: int | None = None):
        self.body, self.cut_after, self.hits = body, cut_after, 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.hits += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body if owner.cut_after is None else owner.body[: owner.cut_after])
                self.wfile.flush()
                if owner.cut_after is not None:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/bvlc_alexnet.npy"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def keras_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(*keras_compat.keras_home_setting(), str(tmp_path / "keras"))
    return tmp_path / "keras" / "models"


KW = dict(input_size=64, dropout=0.0, augment="none", seed=0)


def test_first_use_downloads_and_loads_the_file(keras_cache, monkeypatch, caplog):
    body, params = bvlc_bytes()
    with Server(body) as server:
        monkeypatch.setenv("CONVSCOPE_ALEXNET_URL", server.url)
        with caplog.at_level("INFO", logger="convscope.models.weights"):
            model = build.build_classifier("alexnet", 3, weights="imagenet", **KW)
        assert server.hits == 1
        assert (keras_cache / "bvlc_alexnet.npy").read_bytes() == body
        assert sorted(p.name for p in keras_cache.iterdir()) == ["bvlc_alexnet.npy"]  # no temp file left
        assert "downloading alexnet weights" in caplog.text and "100 %" in caplog.text  # progress
        base = build.base_of(model)
        for name in ("conv1", "conv5"):
            np.testing.assert_array_equal(base.get_layer(name).get_weights()[0], params[name][0])
        build.build_classifier("alexnet", 3, weights="imagenet", **KW)
        assert server.hits == 1  # second use: the cache


def test_a_cut_off_download_is_not_used(keras_cache, monkeypatch):
    body, params = bvlc_bytes(seed=1)
    with Server(body, cut_after=len(body) // 2) as server:
        monkeypatch.setenv("CONVSCOPE_ALEXNET_URL", server.url)
        with pytest.raises(weights_lib.WeightsError, match="could not be downloaded") as caught:
            build.build_classifier("alexnet", 3, weights="imagenet", **KW)
    assert server.url in str(caught.value) and str(keras_cache / "bvlc_alexnet.npy") in str(caught.value)
    assert list(keras_cache.iterdir()) == []  # neither the target nor a partial file
    # A leftover partial file from a killed run is never taken for the real one.
    (keras_cache / ".bvlc_alexnet.npy.killed.part").write_bytes(body[: len(body) // 3])
    with Server(body) as server:
        monkeypatch.setenv("CONVSCOPE_ALEXNET_URL", server.url)
        model = build.build_classifier("alexnet", 3, weights="imagenet", **KW)
        assert server.hits == 1
    np.testing.assert_array_equal(build.base_of(model).get_layer("conv2").get_weights()[1], params["conv2"][1])


def test_offline_message_names_url_file_and_key(keras_cache, monkeypatch):
    monkeypatch.setenv("CONVSCOPE_ALEXNET_URL", "http://127.0.0.1:9/bvlc_alexnet.npy")  # nothing listens on 9
    with pytest.raises(weights_lib.WeightsError) as caught:
        weights_lib.alexnet_imagenet_path()
    message = str(caught.value)
    for part in ("could not be downloaded", "offline", "127.0.0.1:9", str(keras_cache), "backbones.alexnet.weights"):
        assert part in message
    assert weights_lib.ALEXNET_URL.startswith("https://")
