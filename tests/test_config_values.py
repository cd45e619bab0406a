"""Values that pass a JSON schema but are wrong: non-finite numbers, integer class names,
counts past any sane size. Each is refused by the real `snakemake -n` in a few lines
naming the key, before any job is planned."""

from __future__ import annotations

import pytest
from test_config import assert_rejected_before_any_job

from conftest import quick_train, tiny_config
from convscope import config as cfg


def _grid(**values):
    train = quick_train()
    train["grid"].update(values)
    return tiny_config(train=train)


def _integer_class():
    config = tiny_config()
    config["classes"] = {"circle": {}, "square": {}, 3: {}}
    return config


# (id, config, text stderr must hold). yaml.safe_dump writes inf as .inf, nan as .nan,
# 1e20 as 1.0e+20 and the key 3 as `3:`, as a user would type them.
CASES = [
    ("lr-inf", lambda: _grid(learning_rate=float("inf")), ["config key train.grid.learning_rate", "finite"]),
    ("dropout-nan", lambda: _grid(dropout=float("nan")), ["config key train.grid.dropout", "finite"]),
    ("class-key-int", _integer_class, ["config key classes.3", "strings"]),
    ("epochs-1e20", lambda: _grid(epochs=1e20), ["config key train.grid.epochs", "maximum"]),
]


@pytest.mark.parametrize("make,expected", [pytest.param(m, e, id=i) for i, m, e in CASES])
def test_dry_run_refuses_the_value_naming_the_key(workflow, make, expected):
    wf = workflow(make())
    assert_rejected_before_any_job(wf.run("-n", check=False), wf, expected)


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("clean", "quality", {"blur": float("-inf")}),
        ("pretrain", "learning_rate", float("nan")),
        ("analysis", "saliency", {"smoothgrad_noise": float("inf")}),
        ("crawl", "synthetic", {"object_size": [0.1, float("nan")]}),
    ],
)
def test_non_finite_numbers_are_refused_everywhere(section, key, value):
    config = tiny_config()
    config.setdefault(section, {})[key] = value
    message = str(pytest.raises(cfg.ConfigError, cfg.load_and_validate, config).value)
    assert f"config key {section}.{key}" in message and "not a finite number" in message, message


def test_integer_pretrain_class_is_refused_too():
    config = tiny_config(pretrain={"classes": {"star": {}, 5: {}}})
    message = str(pytest.raises(cfg.ConfigError, cfg.load_and_validate, config).value)
    assert "config key pretrain.classes.5" in message, message


@pytest.mark.parametrize(
    "patch,key",
    [
        (lambda c: c["crawl"].update(max_images=10**9), "crawl.max_images"),
        (lambda c: c.update(seed=2**40), "seed"),
        (lambda c: c.setdefault("train", {}).update(threads=10**6), "train.threads"),
        (
            lambda c: c.setdefault("train", {}).setdefault("grid", {}).update(batch_size=[32, 10**7]),
            "train.grid.batch_size",
        ),
    ],
)
def test_counts_have_upper_bounds(patch, key):
    config = tiny_config()
    patch(config)
    message = str(pytest.raises(cfg.ConfigError, cfg.load_and_validate, config).value)
    assert f"config key {key}" in message and "maximum" in message, message


def test_largest_sane_values_pass():
    config = _grid(epochs=[1, 100_000], batch_size=[65536])
    config["crawl"]["max_images"] = 1_000_000
    config["seed"] = 2**32 - 1
    cfg.load_and_validate(config)
