"""The fine-tuning grid: the one place that expands config lists into runs.

A run is one (backbone, strategy, grid point). Its id names it in paths
(R/models/{backbone}/{run}/) and must never change when the grid grows:

    {strategy}-lr{lr}-do{dropout}-d{tune_depth}[-bs{batch}][-ep{epochs}][-{optimizer}]
              [-ls{label_smoothing}][-aug{augment}][-s{seed}]
    features-{classifier}-C{c}[-s{seed}]

The core (lr, do, d) is always written; every other key is written only when
its value differs from its default (the schema default of `train.grid`, the
global `seed` for seed). So an id depends on the run's own values only, never
on which other values the lists hold: adding a value adds runs and renames
none. `scratch` trains every layer from random weights, so it has no `d` (and
grid points differing only in tune_depth are one scratch run). `features` runs
read the frozen base's embeddings, so only the classifier, C and seed name them.

(Changing the global seed changes every such run anyway; runs whose seed is
listed explicitly then gain or lose their `-s` part.)

`backbones.<name>.grid` replaces whole lists (and `strategies`) for one
backbone; ids follow the same rule, so a run's id does not depend on where
its values were set.

Example: learning_rate [1e-4, 1e-3] x tune_depth [2, all] with batch_size 64
(default 32) gives finetune-lr1e-4-do0.5-d2-bs64, finetune-lr1e-3-do0.5-dall-bs64, ...

Importing this module is cheap (no Keras): the Snakefile asks it for run ids.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from dataclasses import dataclass, field

from convscope import backbones as registry
from convscope import config as cfg

STRATEGIES = ("finetune", "progressive", "scratch", "features")
TRAINED = ("finetune", "progressive", "scratch")  # strategies that run model.fit
# Grid keys in id order, with the short name written before the value.
KEYS = (
    ("learning_rate", "lr"),
    ("dropout", "do"),
    ("tune_depth", "d"),
    ("batch_size", "bs"),
    ("epochs", "ep"),
    ("optimizer", ""),  # the optimizer's name alone reads best: ...-sgd
    ("label_smoothing", "ls"),
    ("augment", "aug"),
    ("seed", "s"),
)
GRID_KEYS = tuple(k for k, _ in KEYS)
CORE = ("learning_rate", "dropout", "tune_depth")  # always written
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]*$")


@dataclass(frozen=True)
class Run:
    backbone: str
    id: str
    strategy: str
    hp: dict = field(hash=False)  # grid point: every GRID_KEYS value (features: classifier, C, seed)


def defaults(config: dict) -> dict:
    """Value of each grid key that ids leave out: schema defaults, the global seed."""
    d = {k: _as_list(v)[0] for k, v in cfg.defaults("$defs.train_grid").items()}
    d["seed"] = config["seed"]
    return d


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def fmt(value) -> str:
    """A value as written in ids: 1e-4 -> '1e-4', 0.5 -> '0.5', 32 -> '32', 'all' -> 'all'."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        if abs(value) < 1e-2:
            mantissa, exponent = f"{value:.12e}".split("e")
            mantissa = mantissa.rstrip("0").rstrip(".")
            return f"{mantissa}e{int(exponent)}"
        return repr(value)
    return str(value)


def _train(config: dict) -> dict:
    train = config.get("train")
    if not train or "grid" not in train or "features" not in train:
        raise ValueError(
            "config has no validated `train` section: pass it through convscope.config.load_and_validate "
            "(which fills the schema defaults) before expanding the grid"
        )
    return train


def grid_lists(config: dict, backbone: str) -> dict[str, list]:
    """The grid lists of one backbone: `train.grid` overlaid by `backbones.<name>.grid`."""
    lists = {"seed": [config["seed"]]}
    lists.update({k: _as_list(v) for k, v in _train(config)["grid"].items()})
    override = (config["backbones"].get(backbone) or {}).get("grid") or {}
    lists.update({k: _as_list(v) for k, v in override.items() if k != "strategies"})
    blocks = registry.tune_blocks(backbone, registry.head(backbone, config["backbones"].get(backbone)))
    for depth in lists["tune_depth"]:
        if depth != "all" and depth > len(blocks):
            where = f"backbones.{backbone}.grid" if "tune_depth" in override else "train.grid"
            raise ValueError(
                f"config key {where}.tune_depth: {depth} is more blocks than {backbone} has "
                f"({len(blocks)}: {', '.join(blocks)}); use at most {len(blocks)} or 'all'"
            )
    return {k: _dedupe(lists[k]) for k in GRID_KEYS}


def _dedupe(values: list) -> list:
    seen, out = set(), []
    for v in values:
        key = fmt(v)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def run_id(strategy: str, hp: dict, config: dict) -> str:
    """The stable id of one grid point (see the module docstring)."""
    if strategy == "features":
        parts = ["features", hp["classifier"], f"C{fmt(hp['C'])}"]
        if hp["seed"] != defaults(config)["seed"]:
            parts.append(f"s{fmt(hp['seed'])}")
        return "-".join(parts)
    if strategy not in TRAINED:
        raise ValueError(f"config key train.strategies: unknown strategy {strategy!r}; allowed: {list(STRATEGIES)}")
    dflt = defaults(config)
    parts = [strategy]
    for key, short in KEYS:
        if strategy == "scratch" and key == "tune_depth":
            continue
        value = hp[key]
        if key in CORE or fmt(value) != fmt(dflt.get(key)):
            parts.append(f"{short}{fmt(value)}")
    return "-".join(parts)


def strategies_of(config: dict, backbone: str) -> list[str]:
    """train.strategies, or the backbone's own `backbones.<name>.grid.strategies`."""
    override = (config["backbones"].get(backbone) or {}).get("grid") or {}
    return list(override.get("strategies") or _train(config)["strategies"])


def _points(lists: dict[str, list]):
    for values in itertools.product(*(lists[k] for k in GRID_KEYS)):
        yield dict(zip(GRID_KEYS, values))


def runs(config: dict, backbone: str | None = None) -> list[Run]:
    """Every run of the grid (of one backbone, or of all configured backbones), ids unique."""
    every = _expand(_key(config))
    return [r for r in every if backbone is None or r.backbone == backbone]


def _key(config: dict) -> str:
    # Everything the expansion reads; Snakemake asks once per job, so expand once per config.
    return json.dumps(
        {"seed": config["seed"], "train": _train(config), "backbones": config["backbones"]}, sort_keys=True
    )


@functools.lru_cache(maxsize=16)
def _expand(key: str) -> tuple[Run, ...]:
    config = json.loads(key)
    train = config["train"]
    out: list[Run] = []
    for name in config["backbones"]:
        registry.get(name)
        lists = grid_lists(config, name)
        seen: dict[str, tuple] = {}
        for strategy in strategies_of(config, name):
            if strategy == "features":
                feats = train["features"]
                for clf, c, seed in itertools.product(feats["classifiers"], feats["C"], lists["seed"]):
                    hp = {"classifier": clf, "C": c, "seed": seed}
                    seen.setdefault(run_id("features", hp, config), (strategy, hp))
                continue
            for hp in _points(lists):
                if strategy == "scratch":
                    hp = {**hp, "tune_depth": "all"}
                seen.setdefault(run_id(strategy, hp, config), (strategy, hp))
        for rid, (strategy, hp) in seen.items():
            if not RUN_ID.match(rid):
                raise ValueError(f"grid of backbone {name}: run id {rid!r} has characters unfit for a path")
            out.append(Run(name, rid, strategy, hp))
    return tuple(out)


@functools.lru_cache(maxsize=16)
def _index(key: str) -> dict:
    return {(r.backbone, r.id): r for r in _expand(key)}


def run_ids(config: dict, backbone: str, strategies=STRATEGIES) -> list[str]:
    return [r.id for r in runs(config, backbone) if r.strategy in strategies]


def find(config: dict, backbone: str, run: str) -> Run:
    """The run named `run` of `backbone`, or an error listing what the grid holds."""
    found = _index(_key(config)).get((backbone, run))
    if found is not None:
        return found
    known = run_ids(config, backbone)
    raise KeyError(
        f"run {run!r} is not in the grid of backbone {backbone!r} (config keys train.grid, "
        f"backbones.{backbone}.grid, train.strategies); the grid has: {', '.join(known) or 'no runs'}"
    )


def backbone_options(config: dict, backbone: str) -> dict:
    """The backbone's own options (input size, weights, head, ...) without its grid override."""
    opts = dict(config["backbones"].get(backbone) or {})
    opts.pop("grid", None)
    opts["head"] = registry.head(backbone, opts)  # resolved: "auto" follows the input size
    return opts


def train_params(config: dict, backbone: str, run: str) -> dict:
    """Exactly the settings that change one trained run's outputs (the train rule's params)."""
    r = find(config, backbone, run)
    train = _train(config)
    params = {
        "backbone": backbone,
        "options": backbone_options(config, backbone),
        "input_size": registry.input_size(backbone, config["backbones"].get(backbone)),
        "strategy": r.strategy,
        "hp": dict(r.hp),
        "classes": list(config["classes"]),
        "backend": train["backend"],
        "jit_compile": train["jit_compile"],
        "bootstrap": train["bootstrap"],
        "tensorboard": train["tensorboard"],
    }
    if r.strategy == "progressive":
        params["progressive"] = dict(train["progressive"])
    return params


def features_params(config: dict, backbone: str) -> dict:
    """Settings that change a backbone's embeddings (the embed rule's params)."""
    train = _train(config)
    return {
        "backbone": backbone,
        "options": backbone_options(config, backbone),
        "input_size": registry.input_size(backbone, config["backbones"].get(backbone)),
        "backend": train["backend"],
        "seed": config["seed"],
        "batch_size": train["features"]["batch_size"],
    }


def head_params(config: dict, backbone: str, run: str) -> dict:
    """Settings that change one features head (the features_head rule's params)."""
    r = find(config, backbone, run)
    if r.strategy != "features":
        raise KeyError(f"run {run!r} of backbone {backbone!r} is not a features run")
    train = _train(config)
    return {
        "backbone": backbone,
        "hp": dict(r.hp),
        "classes": list(config["classes"]),
        "max_iter": train["features"]["max_iter"],
        "bootstrap": train["bootstrap"],
    }
