"""The real job's four backbones at their native input sizes, through every stage.

config.rehearsal.yaml (bench/rehearsal.py) is the full rehearsal: every strategy and the
default analyses, ~30 min or more on 2 cores. This is its smallest form for the suite:
AlexNet@227, VGG16@224, ResNet50@224 and InceptionV3@299 with random weights, 3 images
per class, one fine-tuning epoch, and every analysis and explanation switched on but at
the smallest settings that still run each code path (one sanity stage, two Score-CAM
masks, two feature-visualisation steps, 2 x 2 occlusion patches). Then the report.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import Workflow, tiny_config
from convscope import backbones as registry
from convscope.analysis.index import validate

pytestmark = pytest.mark.slow

# The Grad-CAM layer at native size: each backbone's last conv layer (VGG16's block5_conv3,
# not the block5_pool behind it: convscope/analysis/explain/layer_choice.py).
GRADCAM = {
    "alexnet": "conv5 (13x13 maps)",
    "vgg16": "block5_conv3 (14x14 maps)",
    "resnet50": "conv5_block3_out (7x7 maps)",
    "inceptionv3": "mixed10 (8x8 maps)",
}
MEMORY_LIMIT_MB = 16 * 1024


def config() -> dict:
    return tiny_config(
        images=3,
        image_size=320,  # larger than every native size: prepare downscales, as for photos
        backbones={b: {"weights": "none"} for b in GRADCAM},
        # seed 15 puts one image of each class in each split (splits hash the image content)
        seed=15,
        split={"train": 0.34, "val": 0.33, "test": 0.33},
        train={
            "strategies": ["finetune"],
            "grid": {"learning_rate": [0.001], "epochs": [1], "batch_size": [8], "augment": ["none"]},
            "threads": 1,
            "gpu": False,
            "bootstrap": 100,
            "tensorboard": False,
        },
        audit={"backbones": ["alexnet"]},  # the embedding pass at 227; label issues, leakage
        analysis=small_analysis(),
    )


def small_analysis() -> dict:
    """Every analysis on, each at the least work that still runs its code."""
    return {
        "sample_images": 2,
        "examples": {"per_class": 1, "mistakes": 2},
        "embedding": {"thumbnails": 3},
        "activations": {"channels": 2},
        "occlusion": {"patch": 150, "stride": 150},  # 2 x 2 positions at 224-299 px
        "saliency": {"smoothgrad_samples": 2},
        "filter_vis": {"channels": 2, "steps": 2},
        "checks": {"max_images": 3, "curve_images": 2, "deletion_steps": 2},
        "scorecam": {"channels": 2},
        "integrated_gradients": {"steps": 2},
        "sanity": {"images": 1, "blocks": 1, "independent": False},
        "gpu": False,
    }


@pytest.fixture(scope="module")
def rehearsed(tmp_path_factory):
    wf = Workflow(tmp_path_factory.mktemp("native"), config())
    wf.write_config()
    wf.run(timeout=2400)  # ~30 min on 2 cores shared with other work
    return wf


def test_every_backbone_is_prepared_trained_and_evaluated_at_its_native_size(rehearsed):
    for backbone in GRADCAM:
        size = registry.get(backbone).input_size
        x = np.load(rehearsed.tree.prepared(size, "train"), mmap_mode="r")
        assert x.shape[1:] == (size, size, 3), backbone
        runs = sorted(p.name for p in rehearsed.tree.backbone_models(backbone).iterdir())
        assert len(runs) == 1 and runs[0].startswith("finetune-"), runs
        metrics = json.loads(rehearsed.tree.metrics(backbone, runs[0]).read_text())
        assert 0 <= metrics["test"]["accuracy"] <= 1


def test_analyses_use_the_deepest_layer_and_every_section_is_written(rehearsed):
    for backbone, label in GRADCAM.items():
        (folder,) = [p for p in rehearsed.tree.backbone_analyses(backbone).iterdir() if p.is_dir()]
        index = json.loads((folder / "index.json").read_text())
        validate(index, folder)
        assert f"layer {label}" in json.dumps(index), f"{backbone}: Grad-CAM not at {label}"
        ids = {s["id"] for s in index["sections"]}
        assert {"activations", "filters", "calibration", "embedding", "cost"} <= ids, ids
        steps = json.loads(rehearsed.tree.analysis(backbone, folder.name).explain.timings.read_text())
        # each explanation family ran (names as explain/run.py times them)
        for word in ("Score-CAM", "feature visualization", "sanity"):
            assert any(word.lower() in s.lower() for s in steps), (backbone, word, list(steps))


def test_every_analysis_job_fits_in_16_gb(rehearsed):
    """The analyses are the memory-hungry jobs at native size (input gradients in batches,
    Score-CAM masks, feature visualisation at 299 px) and run as processes of their own,
    so their benchmark files measure them (a warm-started training job's records its client)."""
    peaks = {}
    for backbone in GRADCAM:
        for tsv in (rehearsed.tree.benchmarks / "analyse" / backbone).glob("*.tsv"):
            peaks[f"{backbone}/{tsv.stem}"] = float(pd.read_csv(tsv, sep="\t")["max_rss"].iloc[-1])
    assert len(peaks) == len(GRADCAM), peaks
    worst = max(peaks, key=peaks.get)
    assert 500 < peaks[worst] < MEMORY_LIMIT_MB, f"{worst}: {peaks[worst]:.0f} MB"


def test_the_report_shows_all_four_backbones(rehearsed):
    page = rehearsed.tree.report_page.read_text()
    for backbone in GRADCAM:
        assert backbone in page
