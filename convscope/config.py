"""Config validation and the derived facts rules ask for.

`load_and_validate` is what the Snakefile calls: JSON-schema validation via
snakemake.utils.validate (which also fills defaults), preceded by a pass that
turns every schema error into a message naming the config key and the allowed
values, followed by the checks a schema cannot express.
"""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path

import yaml

from convscope import backbones as registry
from convscope import configcheck
from convscope.shapes import SHAPES

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config problem, worded for the person editing config.yaml."""


def _key(path) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "(top level)"


_JSON_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true/false",
    "null": "empty",
}


def _type_words(types) -> str:
    types = [types] if isinstance(types, str) else list(types)
    return " or ".join(_JSON_TYPES.get(t, t) for t in types)


def _describe(error) -> list[str]:
    """Lines for one schema error: the config key, what is wrong, what is allowed."""
    key = _key(error.absolute_path)
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = key if error.absolute_path else "the top level"
        return [
            f"config key {_key([*error.absolute_path, k])}: unknown key in {where}; allowed keys: {allowed}"
            for k in extra
        ]
    if v == "enum":
        return [f"config key {key}: {error.instance!r} is not allowed; allowed values: {error.validator_value}"]
    if v == "required":
        missing = [k for k in error.validator_value if k not in (error.instance or {})]
        return [f"config key {_key([*error.absolute_path, k])}: required but missing" for k in missing]
    if v == "pattern" and "propertyNames" in error.relative_schema_path:
        # propertyNames errors point at the mapping, not the offending name.
        return [
            f"config key {key}: name {error.instance!r} is not allowed; names must match "
            f"{error.validator_value} (letters, digits, '_' and '-', starting with a letter or digit)"
        ]
    if v == "type":
        return [f"config key {key}: expected {_type_words(error.validator_value)}, got {error.instance!r}"]
    if v == "oneOf" and error.context:
        # Branches whose only complaint is the instance's type are not what the user
        # meant; report the errors of the branch(es) of the right type.
        branches: dict = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        meant = [errs for errs in branches.values() if not all(e.validator == "type" and not e.path for e in errs)]
        if not meant:
            types = [e.validator_value for errs in branches.values() for e in errs]
            return [f"config key {key}: expected {_type_words(types)}, got {error.instance!r}"]
        return [line for errs in meant for sub in errs for line in _describe(sub)]
    if v in ("minProperties", "minItems"):
        what = "entries" if v == "minProperties" else "items"
        return [f"config key {key}: needs at least {error.validator_value} {what}, got {len(error.instance or ())}"]
    return [f"config key {key}: {error.message}"]


@functools.lru_cache(maxsize=4)
def _schema(schema_path: Path = SCHEMA) -> dict:
    return yaml.safe_load(Path(schema_path).read_text())


def section_schema(section: str) -> dict:
    """The schema properties of a config section: "analysis", "report", or "$defs.<name>"."""
    schema = _schema()
    node = schema["$defs"][section.split(".", 1)[1]] if section.startswith("$defs.") else schema["properties"][section]
    return node["properties"]


def _defaults(properties: dict) -> dict:
    out = {}
    for key, spec in properties.items():
        if "properties" in spec:
            out[key] = _defaults(spec["properties"])
        elif "default" in spec:
            out[key] = spec["default"]
    return out


def defaults(section: str) -> dict:
    """A section's defaults as the schema writes them (nested sections too); a fresh copy each call."""
    return copy.deepcopy(_section_defaults(section))


@functools.cache
def _section_defaults(section: str) -> dict:
    return _defaults(section_schema(section))


def merged(section: str, options: dict | None, *, strict: bool = False) -> dict:
    """`options` over the section's defaults, nested mappings merged key by key.

    For library callers that skip validation (which fills the same defaults). strict:
    an unknown key inside a nested mapping raises ValueError naming the config key.
    """
    out = defaults(section)
    for k, v in (options or {}).items():
        if isinstance(out.get(k), dict) and isinstance(v, dict):
            unknown = set(v) - set(out[k])
            if strict and unknown:
                raise ValueError(
                    f"config key {section}.{k}: unknown key(s) {sorted(unknown)}; allowed: {sorted(out[k])}"
                )
            out[k].update(v)
        else:
            out[k] = v
    return out


def value_errors(node, path: tuple = ()) -> list[str]:
    """What JSON Schema cannot say, anywhere in the config: numbers are finite, keys are strings.

    NaN compares false with every bound, so `minimum: 0` lets `.nan` through; `.inf`
    passes every `exclusiveMinimum`. YAML reads `3:` as an integer key, and
    `propertyNames` checks only string names.
    """
    if isinstance(node, bool):
        return []
    if isinstance(node, float) and not math.isfinite(node):
        return [f"config key {_key(path)}: {node} is not a finite number; give a finite value"]
    if isinstance(node, list):
        return [e for i, item in enumerate(node) for e in value_errors(item, (*path, i))]
    if not isinstance(node, dict):
        return []
    errors = [
        f"config key {_key([*path, k])}: names are strings, got the {type(k).__name__} {k!r}; "
        f"quote it ('{k}') or rename it"
        for k in node
        if not isinstance(k, str)
    ]
    return errors + [e for k, v in node.items() for e in value_errors(v, (*path, k))]


def schema_errors(config: dict, schema_path: Path = SCHEMA) -> list[str]:
    from jsonschema import Draft202012Validator

    problems = value_errors(config)
    if problems:  # the schema's own messages on these would only repeat or mislead
        return problems
    validator = Draft202012Validator(_schema(Path(schema_path)))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    return [line for e in errors for line in _describe(e)]


def semantic_errors(config: dict) -> list[str]:
    """Checks the schema cannot express. `config` has defaults filled in."""
    errors = []
    split = config.get("split", {})
    fractions = [split.get(k, 0) for k in ("train", "val", "test")]
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        errors.append(
            f"config key split: train + val + test must sum to 1, got "
            f"{' + '.join(map(str, fractions))} = {sum(fractions):g}"
        )
    for name, options in (config.get("backbones") or {}).items():
        if name not in registry.BACKBONES:
            errors.append(
                f"config key backbones.{name}: unknown backbone; allowed values: {sorted(registry.BACKBONES)}"
            )
            continue
        size = (options or {}).get("input_size")
        low = registry.get(name).min_size
        if size is not None and size < low:
            errors.append(f"config key backbones.{name}.input_size: {size} is below {name}'s minimum of {low}")
        problem = registry.head_problem(name, options)
        if problem:
            errors.append(problem)
    errors += pretrain_errors(config)
    for cls in crawled_classes(config):
        opts = crawl_options(config, cls)
        need = {"urllist": "urls", "folder": "path", "greedy": "site"}.get(opts["source"])
        if need and not opts.get(need):
            errors.append(
                f"config key {_class_key(config, cls)}.{need}: source {opts['source']!r} needs {need!r} "
                f"(set it under {_class_key(config, cls)})"
            )
        if opts["source"] == "synthetic":
            shape = opts.get("shape", cls)
            if shape not in SHAPES:
                errors.append(
                    f"config key {_class_key(config, cls)}.shape: class {cls!r} uses the synthetic source but "
                    f"{shape!r} is not a shape; set shape to one of {sorted(SHAPES)}"
                )
    return errors


def load_and_validate(config: dict, schema_path: Path = SCHEMA) -> dict:
    """Validate `config` in place (defaults filled) or raise ConfigError listing every problem."""
    problems = schema_errors(config, schema_path)
    if not problems:
        from snakemake.utils import validate

        validate(config, str(schema_path), set_default=True)
        problems = semantic_errors(config)
        problems += configcheck.results_errors(config["results"]) + configcheck.path_errors(config, crawl_options)
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
    return config


# ---- derived facts (rules ask these; nothing else repeats them) -------------


def crawl_options(config: dict, cls: str) -> dict:
    """The crawl settings of one class (target or pretrain source): global `crawl` overlaid by the class's own."""
    base = {k: v for k, v in (config.get("crawl") or {}).items()}
    own = (config.get("classes") or {}).get(cls) if cls in (config.get("classes") or {}) else None
    if own is None:
        own = (_pretrain(config).get("classes") or {}).get(cls)
    base.update(own or {})
    base.setdefault("keywords", [cls.replace("_", " ")])
    return base


_NETWORK = ("timeout_s", "retries", "request_timeout_s", "threads", "min_side")
_SOURCE_KEYS = {
    "bing": ("keywords", *_NETWORK),
    "baidu": ("keywords", *_NETWORK),
    "google": ("keywords", *_NETWORK),
    "flickr": ("keywords", "flickr_api_key_env", *_NETWORK),
    "greedy": ("site", *_NETWORK),
    "urllist": ("urls", *_NETWORK),
    "folder": ("path",),
    "synthetic": ("shape", "synthetic"),
}


def crawl_cores(config: dict, cls: str) -> int:
    """Cores one class's crawl job claims: the network engines decode and check what their
    downloader threads fetch side by side (2); drawing and a folder import run in one thread (1),
    so two classes draw at once instead of one after the other."""
    downloads = "threads" in _SOURCE_KEYS[crawl_options(config, cls)["source"]]  # the network engines' option
    return 2 if downloads else 1


def crawl_params(config: dict, cls: str) -> dict:
    """Exactly the settings that change one class's crawl (the crawl rule's params)."""
    opts = crawl_options(config, cls)
    source = opts["source"]
    params = {"source": source, "max_images": opts["max_images"]}
    params.update({k: opts[k] for k in _SOURCE_KEYS[source] if k in opts})
    if source == "synthetic":
        params.setdefault("shape", cls)
        params["seed"] = config["seed"]
        source_class = cls not in class_names(config)
        # Planted label errors check the label-issue audit, which audits the target
        # classes: pretraining sources are drawn clean.
        params["synthetic"] = _synthetic_params(params["synthetic"], planted=not source_class)
        if params["synthetic"].get("mislabel_fraction", 0):
            # They show the shapes of the other synthetic target classes.
            others = {c: crawl_options(config, c) for c in class_names(config) if c != cls}
            shapes = {o.get("shape", c) for c, o in others.items() if o["source"] == "synthetic"}
            params["other_shapes"] = sorted(shapes - {params["shape"]})
    return params


# Synthetic knobs added after the first ledgers existed, with the value that draws as
# before them: at that value a knob is left out of the params (no re-crawl).
_SYNTHETIC_NEUTRAL = {
    "mislabel_fraction": 0,
    "object_size": [0.16, 0.3],
    "rotation": [0, 360],
    "off_centre": 0,
    "off_centre_gap": 0.03125,
}


def _synthetic_params(settings: dict, planted: bool) -> dict:
    def neutral(key, value):
        same = _SYNTHETIC_NEUTRAL[key]
        return list(value) == same if isinstance(same, list) else value == same

    # Pretraining sources are drawn clean and as before: off-centre objects are for the
    # pointing game, which is played on the target classes.
    if not planted:
        settings = {
            **settings,
            **{k: _SYNTHETIC_NEUTRAL[k] for k in ("mislabel_fraction", "off_centre", "off_centre_gap")},
        }
    return {k: v for k, v in settings.items() if not (k in _SYNTHETIC_NEUTRAL and neutral(k, v))}


def class_names(config: dict) -> list[str]:
    """Classes in config order; label i is class_names()[i]."""
    return list(config["classes"])


def crawled_classes(config: dict) -> list[str]:
    """Every class the crawl stage fetches: the target classes, then pretrain's source classes."""
    return class_names(config) + pretrain_classes(config)


def _class_key(config: dict, cls: str) -> str:
    return f"classes.{cls}" if cls in (config.get("classes") or {}) else f"pretrain.classes.{cls}"


# ---- pretraining (convscope/training/pretrain.py) ----------------------------

PRETRAINED = "pretrained"  # backbones.<name>.weights value: start from R/pretrained/{backbone}/
_PRETRAIN_TRAINING = ("epochs", "learning_rate", "batch_size", "optimizer", "dropout", "augment", "val_fraction")


def _pretrain(config: dict) -> dict:
    return config.get("pretrain") or {}


def pretrain_classes(config: dict) -> list[str]:
    """The source classes of pretraining, in config order (label i = pretrain_classes()[i])."""
    return list(_pretrain(config).get("classes") or {})


def uses_pretrained(config: dict, backbone: str) -> bool:
    return ((config["backbones"].get(backbone) or {}).get("weights")) == PRETRAINED


def pretrained_weights(config: dict, backbone: str) -> str:
    """The pretrained base of `backbone` (what weights: pretrained loads), relative to the workdir."""
    from convscope import layout

    return str(layout.Results(config["results"]).pretrained_base(backbone))


def pretrain_params(config: dict, backbone: str) -> dict:
    """Exactly the settings that change one backbone's pretrained base (the pretrain rule's params).

    The source images themselves are the rule's inputs (each source class's crawl
    summary), so crawl settings need not be repeated here.
    """
    section = _pretrain(config)
    settings = {k: section[k] for k in _PRETRAIN_TRAINING}
    settings["seed"] = config["seed"]
    return {
        "backbone": backbone,
        "input_size": registry.input_size(backbone, config["backbones"].get(backbone)),
        "classes": pretrain_classes(config),
        "settings": settings,
        "resize": config["prepare"]["resize"],
        "backend": config["train"]["backend"],
    }


def pretrain_errors(config: dict) -> list[str]:
    errors = []
    sources = pretrain_classes(config)
    for cls in sorted(set(sources) & set(config.get("classes") or {})):
        errors.append(
            f"config key pretrain.classes.{cls}: {cls!r} is also a target class (classes.{cls}); source classes "
            f"must be other classes (rename one: both would share results/raw/{cls}/)"
        )
    for name in config.get("backbones") or {}:
        if uses_pretrained(config, name) and len(sources) < 2:
            errors.append(
                f"config key backbones.{name}.weights: 'pretrained' needs at least 2 source classes under "
                f"pretrain.classes (got {len(sources)}); add them, or use imagenet, none or a path"
            )
    return errors


def backbone_sizes(config: dict) -> dict[str, int]:
    return {name: registry.input_size(name, opts) for name, opts in config["backbones"].items()}


def input_sizes(config: dict) -> list[int]:
    """Distinct input sizes: one prepare job each, shared by backbones of that size."""
    return sorted(set(backbone_sizes(config).values()))


# ---- analysis (convscope/analysis) ------------------------------------------

# Keys of the `analysis` section that decide which jobs run or what they may use,
# not what an analysis writes: kept out of the analyse rule's params.
_ANALYSIS_SCHEDULING = ("runs", "best_by", "gpu", "threads", "mem_mb", "runtime")


def analysis_params(config: dict) -> dict:
    """Exactly the settings that change one model's analyses (the analyse rule's params)."""
    options = {k: v for k, v in config["analysis"].items() if k not in _ANALYSIS_SCHEDULING}
    options["seed"] = config["seed"]
    return options
