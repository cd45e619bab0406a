"""The demo learns: a reduced copy of config.demo.yaml through the real Snakefile.

This is the end-to-end proof that training learns (a change that stops
learning fails here): the demo's own classes, images, pretraining, backbone and
training, with the finetune and scratch strategies only and the analyses cut
down to the CAM family and its pointing game. Read from the outputs of the run: the
pretrained base's validation accuracy, the best trained run's test accuracy,
that fine-tuning from the pretrained base beats scratch at equal epochs, and that
Grad-CAM beats a map that always points at the image centre in the pointing game
(60 % of the objects are drawn clear of the centre; boxes grown by 5 px).

Earlier copies and why they changed: with centred objects the centre baseline was 1.00, so
the test compared Grad-CAM++ with area chance, which failed under other seeds (0.049 above
chance); 200 images a class at 8 epochs reached only 0.750 at its worst (tf-noonednn,
seed 2), hence the demo's own 300 images a class at 6 epochs.
"""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from convscope import layout, records
from tests.conftest import REPO
from tests.learned import Check, require

# Off: everything but the CAM family and the pointing game (they take most of an analysis job's time).
ANALYSIS_OFF = ("occlusion", "saliency", "filter_vis", "change", "sanity", "corruptions", "cka")


def reduced_demo() -> dict:
    config = yaml.safe_load((REPO / "config.demo.yaml").read_text())
    config = copy.deepcopy(config)
    # The demo's own data, base and training (80 px, 300 images a class, every block
    # fine-tuned for 6 epochs, off-centre targets, the pointing game's tolerance); reduced
    # to finetune and scratch and to the CAM analyses (CI time). 200 images a class at 8
    # epochs cost as much and reached 0.750 at its worst seed (tf-noonednn, seed 2).
    config["train"]["strategies"] = ["finetune", "scratch"]
    config["train"]["bootstrap"] = 200
    config["train"]["tensorboard"] = False
    analysis = config.setdefault("analysis", {})
    for name in ANALYSIS_OFF:
        analysis[name] = {**analysis.get(name, {}), "enabled": False}
    analysis["methods"] = {**analysis.get("methods", {}), "scorecam": False, "integrated_gradients": False}
    analysis["embedding"] = {**analysis.get("embedding", {}), "thumbnails": 0}
    config["report"] = {**config.get("report", {}), "sections": ["data"]}
    return config


def demo_checks(wf, config: dict) -> list[Check]:
    """Run the reduced demo in `wf` and read its learned figures as checks."""
    wf.run("analyses", timeout=1200)
    runs = {}
    for path in wf.workdir.glob(str(wf.layout.metrics("*", "*"))):
        m = json.loads(path.read_text())
        runs[m["strategy"]] = m
    assert set(runs) == {"finetune", "scratch"}, sorted(runs)
    chance = 1 / len(config["classes"])
    assert 0.75 > 2 * chance
    best = max(m["test"]["accuracy"] for m in runs.values())
    record = json.loads(wf.tree.pretrain_record("alexnet").read_text())
    # Every analysis folder has a pointing record; the game was played where explanations ran.
    played = [records.POINTING.read(p) for p in wf.tree.analyses_dir.rglob(layout.ExplainFolder(".").pointing.name)]
    games = [g for g in played if g is not None]
    assert len(games) == 1, played
    game = games[0]
    assert game["images"] >= 20
    return [
        Check("demo: best trained test accuracy", best, 0.75),
        # fine-tuning the pretrained base beats scratch at equal epochs
        Check(
            "demo: finetune - scratch test accuracy",
            runs["finetune"]["test"]["accuracy"] - runs["scratch"]["test"]["accuracy"],
            1e-9,
        ),
        Check("demo: base val accuracy / chance", record["val_accuracy"] / record["chance"], 3.0),
        # off-centre objects: a map that always points at the middle is the bar to beat
        Check(
            "demo: Grad-CAM pointing - centre baseline",
            game["methods"]["gradcam"]["accuracy"] - game["centre_baseline"],
            0.1,
        ),
    ]


@pytest.mark.learned
@pytest.mark.slow
def test_the_reduced_demo_learns_transfers_and_points_at_the_object(workflow):
    """Best run >= 0.75, finetune above scratch, base val >= 3x chance, Grad-CAM >= centre + 0.1.

    Over seeds: `bench/seed_robustness.py --suites demo --seeds 0 1 2 3 4 5 6 7 8 9
    --settings tf tf-noonednn` (2026-12-06, 2 cores, two runs side by side) passed all 20
    runs. Minimum against each bar: best run 0.840 (tf, seed 9) vs 0.75; finetune - scratch
    0.212 (tf, seed 8) vs > 0; base 3.55x chance (tf, seed 7) vs 3x; Grad-CAM 0.208 above
    the centre baseline (tf, seed 4) vs 0.1. Medians: 0.913, 0.313, 4.34x, 0.396.
    """
    config = reduced_demo()
    require(demo_checks(workflow(config), config))
