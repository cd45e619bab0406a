"""Config validation: every malformed config fails naming the key (and allowed values),
both through convscope.config directly and through a real `snakemake -n`."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, tiny_config
from convscope import backbones as registry
from convscope import config as cfg
from convscope import configcheck


def _set(path: str, value):
    """A patch setting config[path] (dotted) to value; value DELETE removes the key."""

    def patch(config):
        *parents, last = path.split(".")
        node = config
        for p in parents:
            if node.get(p) is None:
                node[p] = {}
            node = node[p]
        if value is DELETE:
            node.pop(last)
        else:
            node[last] = copy.deepcopy(value)
        return config

    return patch


DELETE = object()
SOURCES = ["bing", "baidu", "google", "flickr", "greedy", "urllist", "folder", "synthetic"]

# (id, patch, text the message must contain: the key first, then allowed values/hints)
BAD = [
    ("unknown-top-level-key", _set("epochs", 3), ["config key epochs", "allowed keys", "'backbones'"]),
    ("unknown-nested-key", _set("crawl.max_image", 3), ["config key crawl.max_image", "'max_images'"]),
    (
        "unknown-class-option",
        _set("classes.circle", {"colour": "red"}),
        ["config key classes.circle.colour", "'keywords'"],
    ),
    ("unknown-synthetic-option", _set("crawl.synthetic.blur", 1), ["config key crawl.synthetic.blur", "'noise'"]),
    ("wrong-type-seed", _set("seed", "abc"), ["config key seed", "integer", "'abc'"]),
    ("wrong-type-max-images", _set("crawl.max_images", "many"), ["config key crawl.max_images", "integer"]),
    ("wrong-type-classes-list", _set("classes", ["circle", "square"]), ["config key classes", "mapping"]),
    (
        "wrong-type-keywords",
        _set("classes.circle", {"keywords": "cat"}),
        ["config key classes.circle.keywords", "list"],
    ),
    ("wrong-type-site", _set("classes.circle", {"site": 5}), ["config key classes.circle", "string or a list"]),
    ("empty-class-list", _set("classes", {}), ["config key classes", "at least 2"]),
    ("one-class", _set("classes", {"circle": {}}), ["config key classes", "at least 2", "got 1"]),
    (
        "class-name-path",
        _set("classes", {"../x": {}, "circle": {}}),
        ["config key classes", "'../x'", "letters, digits"],
    ),
    (
        "class-name-space",
        _set("classes", {"a b": {}, "circle": {}}),
        ["config key classes", "'a b'", "letters, digits"],
    ),
    ("class-name-dot", _set("classes", {".hidden": {}, "circle": {}}), ["config key classes", "'.hidden'"]),
    ("split-sum", _set("split", {"train": 0.5, "val": 0.2, "test": 0.2}), ["config key split", "sum to 1", "0.9"]),
    ("split-fraction-above-1", _set("split.train", 1.5), ["config key split.train", "maximum"]),
    ("split-fraction-zero", _set("split.val", 0), ["config key split.val"]),
    ("unknown-source", _set("crawl.source", "yahoo"), ["config key crawl.source", "'yahoo'", *map(repr, SOURCES)]),
    (
        "unknown-class-source",
        _set("classes.circle", {"source": "yahoo"}),
        ["config key classes.circle.source", "'bing'"],
    ),
    ("unknown-shape", _set("classes.circle", {"shape": "blob"}), ["config key classes.circle.shape", "'hexagon'"]),
    (
        "synthetic-class-not-a-shape",
        _set("classes", {"cat": {}, "circle": {}}),
        ["config key classes.cat.shape", "'circle'"],
    ),
    (
        "unknown-backbone",
        _set("backbones", {"lenet": {}}),
        ["config key backbones.lenet", *map(repr, sorted(registry.BACKBONES))],
    ),
    ("no-backbone", _set("backbones", {}), ["config key backbones", "at least 1"]),
    ("missing-backbones", _set("backbones", DELETE), ["config key backbones", "missing"]),
    ("missing-classes", _set("classes", DELETE), ["config key classes", "missing"]),
    (
        "negative-input-size",
        _set("backbones.mobilenetv2", {"input_size": -5}),
        ["config key backbones.mobilenetv2.input_size", "minimum"],
    ),
    (
        "input-size-below-backbone-min",
        _set("backbones", {"inceptionv3": {"input_size": 64}}),
        ["config key backbones.inceptionv3.input_size", "75"],
    ),
    ("negative-max-images", _set("crawl.max_images", -1), ["config key crawl.max_images", "minimum of 1"]),
    ("negative-synthetic-size", _set("crawl.synthetic.size", -64), ["config key crawl.synthetic.size"]),
    ("zero-timeout", _set("crawl.timeout_s", 0), ["config key crawl.timeout_s"]),
    ("negative-min-side", _set("clean.min_side", -1), ["config key clean.min_side"]),
    (
        "urllist-without-urls",
        _set("classes.circle", {"source": "urllist"}),
        ["config key classes.circle.urls", "'urllist'"],
    ),
    (
        "folder-without-path",
        _set("classes.circle", {"source": "folder"}),
        ["config key classes.circle.path", "'folder'"],
    ),
    ("greedy-without-site", _set("crawl.source", "greedy"), ["config key classes.circle.site", "'greedy'"]),
    (
        "unknown-resize",
        _set("prepare.resize", "stretch"),
        ["config key prepare.resize", "'center_crop'", "'pad'", "'squash'"],
    ),
    ("prepare-threads-zero", _set("prepare.threads", 0), ["config key prepare.threads"]),
    # The results folder: every output goes under it.
    ("results-empty", _set("results", ""), ["config key results", "empty"]),
    ("results-blank", _set("results", "  "), ["config key results", "empty"]),
    ("results-root", _set("results", "/"), ["config key results", "'/'", "system"]),
    ("results-etc", _set("results", "/etc"), ["config key results", "'/etc'", "system"]),
    ("results-inside-usr", _set("results", "/usr/share/x"), ["config key results", "system"]),
    ("results-home", _set("results", "~"), ["config key results", "home"]),
    ("results-working-directory", _set("results", "."), ["config key results", "'.' (that is", "runs in"]),
    # Paths the config names exist now, not several jobs later.
    (
        "folder-path-missing",
        _set("classes.circle", {"source": "folder", "path": "no/such/images"}),
        ["config key classes.circle.path", "'no/such/images'", "does not exist"],
    ),
    (
        "folder-path-is-a-file",
        _set("classes.circle", {"source": "folder", "path": "config.yaml"}),
        ["config key classes.circle.path", "is not a folder"],
    ),
    (
        "urllist-file-missing",
        _set("classes.circle", {"source": "urllist", "urls": "no-urls.txt"}),
        ["config key classes.circle.urls", "'no-urls.txt'", "does not exist"],
    ),
    (
        "weights-file-missing",
        _set("backbones.mobilenetv2.weights", "no/base.weights.h5"),
        ["config key backbones.mobilenetv2.weights", "'no/base.weights.h5'", "does not exist"],
    ),
]


def _bad_config(patch):
    return patch(tiny_config(classes=("circle", "square", "triangle")))


@pytest.mark.parametrize("patch,expected", [pytest.param(p, e, id=i) for i, p, e in BAD])
def test_malformed_config_names_the_key(patch, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths are relative to the run's folder
    (tmp_path / "config.yaml").write_text("{}")
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load_and_validate(_bad_config(patch))
    message = str(info.value)
    for text in expected:
        assert text in message, f"{text!r} missing from:\n{message}"


def test_every_problem_is_listed_at_once():
    config = tiny_config()
    config["seed"] = "x"
    config["prepare"]["resize"] = "stretch"
    config["extra"] = 1
    message = str(pytest.raises(cfg.ConfigError, cfg.load_and_validate, config).value)
    for key in ("config key seed", "config key prepare.resize", "config key extra"):
        assert key in message


def test_defaults_are_filled_in():
    config = {"classes": {"cat": None, "dog": {"keywords": ["dog photo"]}}, "backbones": {"resnet50": None}}
    cfg.load_and_validate(config)
    assert config["results"] == "results"
    assert config["seed"] == 1234
    assert config["crawl"]["source"] == "bing" and config["crawl"]["max_images"] == 200
    assert config["crawl"]["synthetic"] == {
        "size": 128,
        "noise": 0.15,
        "clutter": 6,
        "mislabel_fraction": 0,
        "object_size": [0.16, 0.3],
        "rotation": [0, 360],
        "off_centre": 0,
        "off_centre_gap": 0.03125,
    }
    assert config["split"] == {"train": 0.7, "val": 0.15, "test": 0.15, "min_per_split": 1}
    assert config["prepare"] == {"resize": "center_crop", "threads": 4}
    assert config["clean"]["max_pixels"] == 50_000_000
    # Derived facts the rules ask for.
    assert cfg.class_names(config) == ["cat", "dog"]
    assert cfg.input_sizes(config) == [224]
    assert cfg.crawl_options(config, "cat")["keywords"] == ["cat"]
    assert cfg.crawl_params(config, "dog")["keywords"] == ["dog photo"]


def test_input_sizes_are_shared_by_backbones_of_one_size():
    config = tiny_config(
        backbones={
            "alexnet": None,
            "vgg16": {},
            "resnet50": {},
            "inceptionv3": {"input_size": 96},
            "mobilenetv2": {"input_size": 96},
        }
    )
    cfg.load_and_validate(config)
    assert cfg.backbone_sizes(config) == {
        "alexnet": 227,
        "vgg16": 224,
        "resnet50": 224,
        "inceptionv3": 96,
        "mobilenetv2": 96,
    }
    assert cfg.input_sizes(config) == [96, 224, 227]


@pytest.mark.parametrize("name", ["config.yaml", "config.demo.yaml"])
def test_shipped_configs_validate(name):
    config = yaml.safe_load((REPO / name).read_text())
    cfg.load_and_validate(config)
    assert len(cfg.class_names(config)) >= 2
    assert cfg.input_sizes(config)


# ---- the same through a real `snakemake -n`: fails before any job runs ----------

SNAKEMAKE_CASES = [
    "unknown-nested-key",
    "class-name-path",
    "split-sum",
    "unknown-backbone",
    "urllist-without-urls",
    "results-empty",
    "results-root",
    "folder-path-missing",
    "urllist-file-missing",
    "weights-file-missing",
]


def assert_rejected_before_any_job(proc, wf, expected):
    """Non-zero exit, the expected text, a message of a few lines, no traceback, nothing written."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    for text in expected:
        assert text in proc.stderr, f"{text!r} missing from stderr:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in out and 'File "' not in out, out[-3000:]
    assert len(out.strip().splitlines()) <= 6, out
    assert "Building DAG" not in out
    assert sorted(p.name for p in wf.workdir.iterdir()) == ["config.yaml"]


@pytest.mark.parametrize("case", SNAKEMAKE_CASES)
def test_snakemake_rejects_bad_config_before_any_job(workflow, case):
    _, patch, expected = next(c for c in BAD if c[0] == case)
    wf = workflow(_bad_config(patch))
    assert_rejected_before_any_job(wf.run("-n", check=False), wf, expected)


DUPLICATE_CLASS = """\
classes:
  circle: {}
  square: {}
  circle: {keywords: [round]}
backbones:
  mobilenetv2: {input_size: 48}
"""


def test_duplicate_key_names_the_key_and_both_lines(workflow):
    wf = workflow(tiny_config())
    wf.configfile.write_text(DUPLICATE_CLASS)
    proc = wf.run("-n", check=False)
    assert_rejected_before_any_job(proc, wf, ["config key classes.circle", "given twice", "lines 2 and 4"])
    assert str(wf.configfile) in proc.stderr


def test_duplicate_key_in_a_list_item_and_nested(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  grid:\n    lr: [0.1]\n    lr: [0.2]\nseed: 1\nseed: 2\n")
    message = str(pytest.raises(configcheck.ConfigFileError, configcheck.read_config_file, path).value)
    assert "config key train.grid.lr is given twice (lines 3 and 4)" in message
    assert "config key seed is given twice (lines 5 and 6)" in message


def test_results_folders_that_are_fine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for ok in ("results", "out/run1", "../elsewhere", str(tmp_path / "r"), "/usr/local/src/convscope/results"):
        assert configcheck.results_errors(ok) == [], ok


def test_json_config_files_are_checked_too(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{\n\t"seed": 1,\n\t"classes": {"a": {}, "b": {}}\n}\n')  # tabs: JSON, not YAML
    assert configcheck.read_config_file(path)["seed"] == 1
    path.write_text('{"seed": 1, "classes": {"a": {}, "a": {}}}')
    with pytest.raises(configcheck.ConfigFileError, match="config key a is given twice"):
        configcheck.read_config_file(path)


BROKEN_YAML = "seed: 1\nclasses:\n  circle: {}\n  square: x: y\n"


def test_yaml_syntax_error_names_file_line_and_column(workflow):
    """config.yaml read by the Snakefile's own `configfile:` (no --configfile)."""
    wf = workflow(tiny_config())
    wf.configfile.write_text(BROKEN_YAML)
    command = [a for a in wf.command("-n") if a not in ("--configfile", str(wf.configfile))]
    proc = subprocess.run(command, check=False, cwd=wf.workdir, capture_output=True, text=True, timeout=120)
    assert_rejected_before_any_job(
        proc, wf, ["config file config.yaml, line 4, column 12", "mapping values are not allowed"]
    )


def test_yaml_syntax_error_in_a_configfile_argument(workflow):
    """--configfile files are parsed by Snakemake's command line before the Snakefile, with a
    message naming no line: the run still stops before any job, and the checker named in the
    README points at the line."""
    wf = workflow(tiny_config())
    wf.configfile.write_text(BROKEN_YAML)
    proc = wf.run("-n", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    assert sorted(p.name for p in wf.workdir.iterdir()) == ["config.yaml"]
    check = subprocess.run(
        [sys.executable, "-m", "convscope.configcheck", str(wf.configfile)],
        check=False,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert check.returncode != 0
    assert f"config file {wf.configfile}, line 4, column 12" in check.stderr


def test_no_output_lands_outside_results(workflow):
    wf = workflow(tiny_config(results="out/run1"))
    proc = wf.run("-n", check=True)
    files = [
        f
        for line in proc.stdout.splitlines()
        if re.match(r"\s+(output|log|benchmark): ", line)
        for f in line.split(": ", 1)[1].split(", ")
    ]
    assert len(files) > 10
    assert [f for f in files if not f.startswith("out/run1/")] == []


def test_snakemake_rejects_bad_config_on_a_real_run(workflow):
    """Not only the dry run: a real run stops before creating anything."""
    wf = workflow(_bad_config(_set("crawl.source", "yahoo")))
    proc = wf.run(check=False)
    assert proc.returncode != 0
    assert "config key crawl.source" in proc.stderr and "'synthetic'" in proc.stderr
    assert not wf.results.exists()


def test_snakemake_accepts_tiny_config(workflow):
    wf = workflow(tiny_config())
    planned = wf.planned(*wf.prepared(48))
    assert planned == {"crawl": 3, "clean": 1, "split": 1, "prepare": 3}


def test_planted_label_errors_only_in_target_classes_and_defaults_leave_params_unchanged():
    config = tiny_config(("circle", "triangle"))
    config["crawl"]["synthetic"]["mislabel_fraction"] = 0.1  # object_size stays at its default
    config["pretrain"] = {"classes": {"star": {}, "ring": {}}}
    cfg.load_and_validate(config)
    target = cfg.crawl_params(config, "circle")
    assert target["synthetic"]["mislabel_fraction"] == 0.1
    assert target["other_shapes"] == ["triangle"]  # the other target class, never a source's
    assert not {"object_size", "rotation", "off_centre"} & set(target["synthetic"])
    source = cfg.crawl_params(config, "star")
    assert "mislabel_fraction" not in source["synthetic"] and "other_shapes" not in source
    config["crawl"]["synthetic"]["rotation"] = [0, 0]
    assert cfg.crawl_params(config, "circle")["synthetic"]["rotation"] == [0, 0]
