"""The training stage end to end with the real Snakefile: a tiny grid with every strategy.

Also checks that the features strategy computes embeddings once per backbone
(one `embed` job however many heads; adding a head later runs that head only
and leaves the embeddings untouched), that every job wrote its log and
benchmark, and that the ImageNet sanity check is planned only for ImageNet
weights.
"""

from __future__ import annotations

import copy
import json

import pytest

from convscope import config as cfg
from convscope import grid, layout
from convscope.layout import Results
from tests.conftest import parse_job_stats, tiny_config

TRAIN = {
    "strategies": ["finetune", "progressive", "scratch", "features"],
    "grid": {
        "learning_rate": [0.001],
        "dropout": [0.2],
        "tune_depth": [1],
        "batch_size": [16],
        "epochs": [2],
        "augment": ["none"],
    },
    "progressive": {"every": 1, "lr_decay": 0.5},
    "features": {"classifiers": ["logreg"], "C": [0.1, 1.0], "batch_size": 32},
    "threads": 1,
    "bootstrap": 200,
}


def make_config(train=TRAIN, weights="none"):
    return tiny_config(
        classes=("circle", "square", "triangle"),
        images=16,
        image_size=64,
        backbones={"alexnet": {"input_size": 64, "weights": weights}},
        train=copy.deepcopy(train),
    )


def run_files(config) -> list[str]:
    validated = cfg.load_and_validate(copy.deepcopy(config))
    files = []
    for r in grid.runs(validated):
        names = (
            (layout.METRICS, layout.HEAD)
            if r.strategy == "features"
            else (layout.MODEL, layout.HISTORY, layout.METRICS)
        )
        files += [str(Results(validated["results"]).run_dir(r.backbone, r.id) / n) for n in names]
    return files


@pytest.mark.slow
def test_tiny_grid_trains_end_to_end_and_heads_share_one_embedding(workflow):
    config = make_config()
    wf = workflow(config)
    targets = run_files(config)
    proc = wf.run(*targets)
    stats = parse_job_stats(proc.stdout + proc.stderr)
    assert stats["train"] == 3 and stats["features_head"] == 2, stats
    assert stats["embed"] == 3, "one embedding job per split, shared by every head"
    assert stats["evaluate"] == 3 and stats["evaluate_head"] == 2, stats

    models = wf.tree.backbone_models("alexnet")
    runs = sorted(p.name for p in models.iterdir())
    assert runs == sorted(
        [
            "features-logreg-C0.1",
            "features-logreg-C1",
            "finetune-lr1e-3-do0.2-d1-bs16-ep2-augnone",
            "progressive-lr1e-3-do0.2-d1-bs16-ep2-augnone",
            "scratch-lr1e-3-do0.2-bs16-ep2-augnone",
        ]
    )
    for run in runs:
        metrics = json.loads((models / run / layout.METRICS).read_text())
        assert metrics["run"] == run and metrics["classes"] == ["circle", "square", "triangle"]
        assert 0 <= metrics["test"]["accuracy"] <= 1 and len(metrics["test"]["accuracy_ci95"]) == 2
        kind = "features" if run.startswith("features") else "train"
        assert wf.tree.log(kind, "alexnet", run).is_file()
        assert wf.tree.benchmark(kind, "alexnet", run).is_file()
        if kind == "train":
            assert not (models / run / "backup").exists()
            assert list((models / run / "tensorboard").rglob("events.out.tfevents.*"))
    progressive = json.loads((models / "progressive-lr1e-3-do0.2-d1-bs16-ep2-augnone" / layout.METRICS).read_text())
    assert [p["depth"] for p in progressive["phases"]] == [0, 1]
    assert wf.planned(*targets) == {}

    # One more C: exactly one new head job; the embeddings are not recomputed.
    feats = wf.tree.features_dir("alexnet")
    before = {p.name: p.stat().st_mtime_ns for p in feats.iterdir()}
    old_head = (models / "features-logreg-C1" / layout.METRICS).stat().st_mtime_ns
    more = copy.deepcopy(config)
    more["train"]["features"]["C"].append(10.0)
    wf.write_config(more)
    new_targets = run_files(more)
    assert wf.planned(*new_targets) == {"features_head": 1, "evaluate_head": 1}
    wf.run(*new_targets)
    assert (models / "features-logreg-C10" / layout.METRICS).is_file()
    assert {p.name: p.stat().st_mtime_ns for p in feats.iterdir()} == before
    assert (models / "features-logreg-C1" / layout.METRICS).stat().st_mtime_ns == old_head

    # A changed training setting re-runs the runs it reaches and nothing else.
    slower = copy.deepcopy(more)
    slower["train"]["progressive"]["lr_decay"] = 0.1
    wf.write_config(slower)
    assert wf.planned(*new_targets) == {"train": 1, "evaluate": 1}


@pytest.mark.slow
def test_sanity_check_is_planned_only_for_imagenet_weights(workflow):
    train = {**TRAIN, "strategies": ["finetune"]}
    offline = workflow(make_config(train, weights="none"), name="offline")
    assert "sanity" not in parse_job_stats(offline.run("-n", "--until", "sanity", "train").stdout)
    imagenet = workflow(make_config(train, weights="imagenet"), name="imagenet")
    stats = parse_job_stats(imagenet.run("-n", "--until", "sanity", "train").stdout)
    assert stats.get("sanity") == 1 and stats.get("train") == 1
