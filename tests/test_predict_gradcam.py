"""The predict page's Grad-CAM is the analysis's: same layer choice, same placement on the image.

Before issue 24 the page overlaid AlexNet's conv5 (2 x 2 at 64 px) stretched uniformly over the
image, while the report showed conv1 (14 x 14) placed by receptive field.
"""

from __future__ import annotations

import numpy as np

from convscope import backbones as registry
from convscope.analysis import options as analysis_options
from convscope.analysis.explain import layer_choice, map_geometry
from convscope.analysis.explain import maps as explain_maps
from convscope.predict.apply import Explainer, Settings

SIZE = 64


def _settings(**changes) -> Settings:
    fields = dict(
        size=SIZE,
        policy="squash",
        max_pixels=10**8,
        top_k=2,
        gradcam=True,
        batch_size=4,
        gradcam_layer="",
        min_map_side=analysis_options.resolve(None)["min_map_side"],
    )
    return Settings(**{**fields, **changes})


def _model():
    from convscope.models.build import build_classifier

    return build_classifier("alexnet", 3, input_size=SIZE, weights="none", seed=0)


def _analysis_gradcam(model, layer: str, x, targets) -> np.ndarray:
    """Grad-CAM exactly as the analyse job computes it (convscope.analysis.explain.run)."""
    from convscope.analysis.split_model import cut

    opts = analysis_options.resolve(None)
    ctx = explain_maps.MapContext(
        model, cut(model, layer), layer, 3, opts, 16, 8, None, map_geometry.of_layer(model, layer)
    )
    return explain_maps.compute_maps(ctx, x, targets, ["gradcam"])[0]["gradcam"]


def test_predict_overlays_the_analysis_gradcam():
    model = _model()
    explainer = Explainer.of(model, "alexnet", _settings())
    chosen = layer_choice.gradcam_layer(model, registry.get("alexnet"), _settings().min_map_side)
    assert explainer.layer == chosen.name != registry.get("alexnet").last_conv, explainer.layer
    assert chosen.side >= _settings().min_map_side

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, SIZE, SIZE, 3)).astype("float32")
    targets = np.array([0, 1, 2, 0, 1])
    maps = explainer.maps(x, targets, 3, batch_size=4)
    assert maps.shape == (5, SIZE, SIZE)
    np.testing.assert_allclose(maps, _analysis_gradcam(model, explainer.layer, x, targets), rtol=1e-5, atol=1e-6)


def test_a_configured_gradcam_layer_is_used_as_given():
    """analysis.gradcam.layer set: predict explains at that layer, placed by its own grid."""
    model = _model()
    last = registry.get("alexnet").last_conv
    explainer = Explainer.of(model, "alexnet", _settings(gradcam_layer=last))
    assert explainer.layer == last and explainer.grid == map_geometry.of_layer(model, last)
