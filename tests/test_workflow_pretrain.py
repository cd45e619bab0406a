"""Pretraining feeds fine-tuning, with the real Snakefile on a tiny config.

Source classes (other synthetic shapes) are crawled like the target classes,
the pretrain job trains AlexNet on them, and the finetune run starts from that
base: checked on the weights (its frozen conv1 equals the pretrained file's,
and differs from the random init the same seed would give). The pretrained
base is an ordinary tracked output: editing the target grid does not
re-pretrain, editing pretraining reruns it and the runs built on it only.
"""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest

from convscope import config as cfg
from convscope import grid, layout
from convscope.layout import Results
from tests.conftest import tiny_config

TRAIN = {
    "strategies": ["finetune", "scratch"],
    "grid": {
        "learning_rate": [0.001],
        "dropout": [0.2],
        "tune_depth": [1],
        "batch_size": [16],
        "epochs": [1],
        "augment": ["none"],
    },
    "threads": 1,
    "bootstrap": 100,
    "tensorboard": False,
}
PRETRAIN = {
    "classes": {"cross": {}, "ring": {}},
    "epochs": 1,
    "batch_size": 16,
    "augment": "none",
}


def make_config(**changes):
    config = tiny_config(
        classes=("circle", "square"),
        images=12,
        image_size=48,
        backbones={"alexnet": {"input_size": 48, "weights": "pretrained"}},
        train=copy.deepcopy(TRAIN),
        pretrain=copy.deepcopy(PRETRAIN),
    )
    config.update(copy.deepcopy(changes))
    return config


def trained(config) -> list[str]:
    validated = cfg.load_and_validate(copy.deepcopy(config))
    return [str(Results(validated["results"]).metrics("alexnet", r.id)) for r in grid.runs(validated)]


def run_of(config, strategy: str) -> str:
    validated = cfg.load_and_validate(copy.deepcopy(config))
    return next(r.id for r in grid.runs(validated) if r.strategy == strategy)


def conv1(model_or_base):
    return [np.asarray(w) for w in model_or_base.get_layer("conv1").get_weights()]


@pytest.mark.slow
def test_finetune_starts_from_the_pretrained_base_and_grid_edits_do_not_repretrain(
    workflow,
):
    import keras

    from convscope.models import build

    config = make_config()
    wf = workflow(config)
    wf.run(*trained(config))

    pretrained = wf.tree.pretrained_dir("alexnet")
    record = json.loads((pretrained / layout.PRETRAIN_RECORD).read_text())
    assert record["classes"] == ["cross", "ring"] and record["images"] == {
        "cross": 12,
        "ring": 12,
    }
    assert record["train_images"] + record["val_images"] == 24 and len(record["history"]) == 1
    assert wf.tree.crawl_summary("cross").exists()
    with open(wf.tree.clean_manifest, newline="") as f:
        assert {r["cls"] for r in csv.DictReader(f)} == {"circle", "square"}, (
            "source classes stay out of the target data"
        )

    base = build.build_base("alexnet", 48, str(wf.tree.pretrained_base("alexnet")))
    random_init = build.build_base("alexnet", 48, "none")
    finetuned = build.load_model(
        wf.tree.model("alexnet", run_of(config, "finetune")),
        compile=False,
    )
    inner = build.base_of(finetuned)
    for got, want, rand in zip(conv1(inner), conv1(base), conv1(random_init)):
        np.testing.assert_array_equal(got, want)  # frozen in fine-tuning: exactly the pretrained weights
        assert not np.allclose(want, rand), "the pretrained conv1 must differ from a random init"
    scratch = build.load_model(
        wf.tree.model("alexnet", run_of(config, "scratch")),
        compile=False,
    )
    assert not np.allclose(conv1(build.base_of(scratch))[0], conv1(base)[0]), "scratch does not start from the base"
    metrics = json.loads(wf.tree.metrics("alexnet", run_of(config, "finetune")).read_text())
    assert metrics["weights"].endswith("pretrained/alexnet/base.weights.h5")
    keras.backend.clear_session()

    # Only the target grid changes: new and changed runs train, pretraining does not rerun.
    grid_edit = make_config(
        train={
            **copy.deepcopy(TRAIN),
            "grid": {**TRAIN["grid"], "learning_rate": [0.001, 0.01], "epochs": [2]},
        }
    )
    wf.write_config(grid_edit)
    plan = wf.planned(*trained(grid_edit))
    assert plan.get("train") == 4 and "pretrain" not in plan and "crawl" not in plan, plan

    # Pretraining changes: it reruns, and so does the finetune run built on it, not scratch.
    wf.write_config(make_config(pretrain={**PRETRAIN, "epochs": 2}))
    plan = wf.planned(*trained(config))
    assert plan == {"pretrain": 1, "train": 1, "evaluate": 1}, plan


def test_pretrained_weights_need_source_classes_and_names_apart_from_the_targets():
    config = make_config(pretrain={"classes": {}})
    with pytest.raises(
        cfg.ConfigError,
        match=r"backbones\.alexnet\.weights: 'pretrained' needs at least 2",
    ):
        cfg.load_and_validate(config)
    clash = make_config(pretrain={"classes": {"circle": {}, "ring": {}}})
    with pytest.raises(
        cfg.ConfigError,
        match=r"pretrain\.classes\.circle: 'circle' is also a target class",
    ):
        cfg.load_and_validate(clash)
    bad_shape = make_config(pretrain={"classes": {"blob": {}, "ring": {}}})
    with pytest.raises(cfg.ConfigError, match=r"pretrain\.classes\.blob\.shape"):
        cfg.load_and_validate(bad_shape)


def test_pretrain_params_hold_only_pretraining_settings():
    base = cfg.load_and_validate(make_config())
    edited = cfg.load_and_validate(make_config(train={**copy.deepcopy(TRAIN), "strategies": ["finetune"]}))
    assert cfg.pretrain_params(base, "alexnet") == cfg.pretrain_params(edited, "alexnet")
    more = cfg.load_and_validate(make_config(pretrain={**PRETRAIN, "learning_rate": 0.01}))
    assert cfg.pretrain_params(more, "alexnet")["settings"]["learning_rate"] == 0.01
    # the run's weights option names the pretrained file, so every network build loads it
    assert grid.backbone_options(base, "alexnet")["weights"] == str(Results("results").pretrained_base("alexnet"))
