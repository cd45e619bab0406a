"""Grid expansion (convscope/grid.py): stable, readable, unique run ids; params per run."""

from __future__ import annotations

import copy
import itertools

import pytest

from convscope import backbones as registry
from convscope import config as cfg
from convscope import grid
from tests.conftest import tiny_config


def validated(train=None, backbones=None, **extra) -> dict:
    config = tiny_config(backbones=backbones or {"alexnet": {"input_size": 64}, "mobilenetv2": {"input_size": 32}})
    if train is not None:
        config["train"] = copy.deepcopy(train)
    config.update(extra)
    return cfg.load_and_validate(config)


def ids(config, backbone="alexnet", strategies=grid.STRATEGIES):
    return grid.run_ids(config, backbone, strategies)


def test_defaults_give_one_readable_finetune_run():
    config = validated()
    assert ids(config) == ["finetune-lr1e-4-do0.5-d2"]
    (run,) = grid.runs(config, "alexnet")
    assert run.hp == {
        "learning_rate": 0.0001,
        "dropout": 0.5,
        "tune_depth": 2,
        "batch_size": 32,
        "epochs": 10,
        "optimizer": "adam",
        "label_smoothing": 0.0,
        "augment": "standard",
        "seed": config["seed"],
    }


def test_ids_name_non_default_values_with_short_keys():
    config = validated(
        {
            "grid": {
                "learning_rate": 0.001,
                "dropout": 0.2,
                "tune_depth": "all",
                "batch_size": 64,
                "epochs": 3,
                "optimizer": "sgd",
                "label_smoothing": 0.1,
                "augment": "none",
                "seed": 99,
            }
        }
    )
    assert ids(config) == ["finetune-lr1e-3-do0.2-dall-bs64-ep3-sgd-ls0.1-augnone-s99"]


@pytest.mark.parametrize(
    "value, text",
    [
        (1e-4, "1e-4"),
        (0.0003, "3e-4"),
        (2.5e-5, "2.5e-5"),
        (0.01, "0.01"),
        (0.5, "0.5"),
        (0.0, "0"),
        (1.0, "1"),
        (32, "32"),
        ("all", "all"),
        (10.0, "10"),
    ],
)
def test_value_format(value, text):
    assert grid.fmt(value) == text


BASE = {
    "strategies": ["finetune", "progressive", "scratch", "features"],
    "grid": {
        "learning_rate": [1e-4],
        "dropout": [0.5],
        "tune_depth": [1],
        "batch_size": [32],
        "epochs": [2],
        "optimizer": ["adam"],
        "label_smoothing": [0.0],
        "augment": ["light"],
        "seed": [7],
    },  # 7 = the global seed: not in ids
    "features": {"classifiers": ["logreg"], "C": [1.0]},
}
ADDED = {
    "learning_rate": 3e-3,
    "dropout": 0.2,
    "tune_depth": "all",
    "batch_size": 64,
    "epochs": 5,
    "optimizer": "rmsprop",
    "label_smoothing": 0.1,
    "augment": "standard",
    "seed": 8,
}


@pytest.mark.parametrize("key", list(ADDED))
def test_adding_a_value_adds_runs_and_renames_none(key):
    before = validated(BASE)
    train = copy.deepcopy(BASE)
    train["grid"][key].append(ADDED[key])
    after = validated(train)
    old = {r.id: r for r in grid.runs(before)}
    new = {r.id: r for r in grid.runs(after)}
    assert set(old) < set(new)
    for rid, run in old.items():
        assert new[rid].hp == run.hp and new[rid].strategy == run.strategy
    added = [new[r] for r in set(new) - set(old)]
    assert all(
        r.hp.get(key, None) == ADDED[key] or (key == "tune_depth" and r.strategy == "scratch")
        for r in added
        if r.strategy != "features"
    )
    if key == "tune_depth":  # scratch trains everything: no new scratch run
        assert not [r for r in added if r.strategy == "scratch"]
    if key != "seed":  # a features head depends on classifier, C and seed only
        assert not [r for r in added if r.strategy == "features"]


def test_adding_features_values_adds_only_heads():
    before = validated(BASE)
    train = copy.deepcopy(BASE)
    train["features"] = {"classifiers": ["logreg", "linsvm"], "C": [1.0, 0.1]}
    after = validated(train)
    old, new = set(ids(before)), set(ids(after))
    assert old < new
    assert sorted(new - old) == ["features-linsvm-C0.1", "features-linsvm-C1", "features-logreg-C0.1"]


def test_ids_unique_and_path_safe_over_a_large_grid():
    train = {
        "strategies": ["finetune", "progressive", "scratch", "features"],
        "grid": {
            "learning_rate": [1e-4, 1e-3, 0.01, 0.1],
            "dropout": [0.0, 0.5],
            "tune_depth": [0, 1, 2, "all"],
            "batch_size": [16, 32],
            "epochs": [1, 10],
            "optimizer": ["adam", "sgd", "adamw", "rmsprop"],
            "label_smoothing": [0.0, 0.1],
            "augment": ["none", "light", "standard"],
            "seed": [1, 2],
        },
        "features": {"classifiers": ["logreg", "linsvm"], "C": [0.01, 0.1, 1.0, 10.0]},
    }
    config = validated(train)
    runs = grid.runs(config, "alexnet")
    points = 4 * 2 * 4 * 2 * 2 * 4 * 2 * 3 * 2
    assert len(runs) == 2 * points + points // 4 + 2 * 4 * 2
    names = [r.id for r in runs]
    assert len(set(names)) == len(names)
    assert all(grid.RUN_ID.match(n) and "/" not in n for n in names)
    # distinct hyperparameters always give distinct ids, identical ones the same id
    by_hp = {(r.strategy, tuple(sorted(map(str, r.hp.items())))): r.id for r in runs}
    assert len(by_hp) == len(runs)


def test_scratch_ignores_tune_depth_and_features_ignore_training_keys():
    train = copy.deepcopy(BASE)
    train["grid"]["tune_depth"] = [0, 1, "all"]
    train["grid"]["learning_rate"] = [1e-4, 1e-3]
    config = validated(train)
    scratch = [r for r in grid.runs(config, "alexnet") if r.strategy == "scratch"]
    assert sorted(r.id for r in scratch) == ["scratch-lr1e-3-do0.5-ep2-auglight", "scratch-lr1e-4-do0.5-ep2-auglight"]
    assert all(r.hp["tune_depth"] == "all" for r in scratch)
    assert ids(config, strategies=("features",)) == ["features-logreg-C1"]
    assert len(ids(config, strategies=("finetune",))) == 6


def test_per_backbone_override_replaces_lists_of_that_backbone_only():
    backbones = {
        "alexnet": {"input_size": 64, "grid": {"learning_rate": [0.01, 0.001]}},
        "mobilenetv2": {"input_size": 32},
    }
    config = validated({"grid": {"learning_rate": [1e-4]}}, backbones=backbones)
    assert ids(config, "alexnet") == ["finetune-lr0.01-do0.5-d2", "finetune-lr1e-3-do0.5-d2"]
    assert ids(config, "mobilenetv2") == ["finetune-lr1e-4-do0.5-d2"]


def test_per_backbone_strategies_replace_the_global_list():
    backbones = {
        "alexnet": {"input_size": 64, "grid": {"strategies": ["scratch", "features"]}},
        "mobilenetv2": {"input_size": 32},
    }
    config = validated(BASE, backbones=backbones)
    assert {r.strategy for r in grid.runs(config, "alexnet")} == {"scratch", "features"}
    assert {r.strategy for r in grid.runs(config, "mobilenetv2")} == set(grid.STRATEGIES)
    # the same values give the same id whichever list they came from
    assert set(ids(config, "alexnet")) <= set(ids(validated(BASE)))
    assert "strategies" not in grid.train_params(config, "alexnet", ids(config, "alexnet")[0])["options"]


def test_tune_depth_beyond_the_backbone_fails_naming_the_key():
    n = len(registry.get("alexnet").blocks)
    with pytest.raises(ValueError, match=rf"train\.grid\.tune_depth: {n + 1} is more blocks than alexnet has \({n}"):
        grid.runs(validated({"grid": {"tune_depth": [1, n + 1]}}))
    backbones = {"alexnet": {"input_size": 64, "grid": {"tune_depth": 9}}}
    with pytest.raises(ValueError, match=r"backbones\.alexnet\.grid\.tune_depth"):
        grid.runs(validated(backbones=backbones))


def test_unknown_run_is_refused_with_the_grid_listed():
    config = validated()
    with pytest.raises(KeyError, match="finetune-lr1e-4-do0.5-d2"):
        grid.find(config, "alexnet", "finetune-lr9-do0.5-d2")


def test_params_carry_what_changes_a_run_and_nothing_else():
    train = copy.deepcopy(BASE)
    config = validated(train)
    finetune = "finetune-lr1e-4-do0.5-d1-ep2-auglight"
    progressive = "progressive-lr1e-4-do0.5-d1-ep2-auglight"
    p_ft = grid.train_params(config, "alexnet", finetune)
    p_pr = grid.train_params(config, "alexnet", progressive)
    assert p_ft["hp"]["tune_depth"] == 1 and p_ft["strategy"] == "finetune"
    assert "progressive" not in p_ft and p_pr["progressive"] == {"every": 2, "lr_decay": 0.5}
    assert "grid" not in p_ft["options"] and p_ft["input_size"] == 64

    unrelated = [
        ("crawl", {"source": "synthetic", "max_images": 99}),
        ("train", {**train, "features": {"classifiers": ["linsvm"], "C": [3.0]}}),
        ("train", {**train, "threads": 3, "mem_mb": 1234, "runtime": 9}),
        ("train", {**train, "grid": {**train["grid"], "learning_rate": [1e-4, 0.1]}}),
        ("backbones", {"alexnet": {"input_size": 64}, "mobilenetv2": {"input_size": 48}}),
    ]
    for key, value in unrelated:
        changed = validated(train, **{key: copy.deepcopy(value)}) if key != "train" else validated(value)
        if key == "backbones":
            changed = validated(train, backbones=value)
        assert grid.train_params(changed, "alexnet", finetune) == p_ft, key

    schedule = validated({**train, "progressive": {"every": 1, "lr_decay": 0.1}})
    assert grid.train_params(schedule, "alexnet", finetune) == p_ft
    assert grid.train_params(schedule, "alexnet", progressive)["progressive"] == {"every": 1, "lr_decay": 0.1}
    other_size = validated(train, backbones={"alexnet": {"input_size": 96}})
    assert grid.train_params(other_size, "alexnet", finetune)["input_size"] == 96


def test_every_run_of_the_demo_config_has_params():
    import yaml

    from tests.conftest import REPO

    config = cfg.load_and_validate(yaml.safe_load((REPO / "config.demo.yaml").read_text()))
    runs = grid.runs(config)
    assert {r.strategy for r in runs} == set(grid.STRATEGIES)
    assert {r.backbone for r in runs} == set(config["backbones"]) and "alexnet" in config["backbones"]
    for r in runs:
        params = (
            grid.head_params(config, r.backbone, r.id)
            if r.strategy == "features"
            else grid.train_params(config, r.backbone, r.id)
        )
        assert params["hp"] == r.hp
    # the combinations are the product of the lists (plus heads), nothing silently dropped
    lists = grid.grid_lists(config, "alexnet")
    product = list(itertools.product(*lists.values()))
    assert len([r for r in runs if r.backbone == "alexnet" and r.strategy == "finetune"]) == len(product)
