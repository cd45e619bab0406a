"""What a config file and the paths it names must be before any job runs.

convscope.config validates the config's *values*; this module checks the things
around them that would otherwise fail jobs later or silently mislead:

- the config file(s) themselves: a YAML syntax error names file, line and column,
  and a key given twice in one mapping (PyYAML keeps the later one silently) is
  an error naming the key and both lines (`read_config_file`, `check_files`);
- the results folder: not empty, not `/`, not a system folder or the home folder,
  since every output is written under it (`results_errors`);
- the files and folders the config names (folder sources, URL lists, weight
  files): they exist, with the config key in the message (`path_errors`).

Relative paths are relative to the working directory of the run (Snakemake's
--directory), the same folder the jobs run in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

# `results` may be none of these folders, nor anything inside the first group.
_SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/proc",
    "/sbin",
    "/sys",
    "/usr/bin",
    "/usr/include",
    "/usr/lib",
    "/usr/sbin",
    "/usr/share",
)
_SYSTEM_FOLDERS = (
    "/",
    "/home",
    "/media",
    "/mnt",
    "/opt",
    "/root",
    "/run",
    "/srv",
    "/tmp",
    "/usr",
    "/usr/local",
    "/var",
    "/var/tmp",
)


class ConfigFileError(ValueError):
    """A config file that cannot be read as one unambiguous YAML mapping."""


def _where(path: str, mark) -> str:
    return f"{path}, line {mark.line + 1}, column {mark.column + 1}"


def _duplicates(node, path: str, key: tuple = ()) -> list[str]:
    """Keys given twice in one mapping anywhere under `node`, as messages with both lines."""
    problems = []
    if isinstance(node, yaml.MappingNode):
        first: dict = {}
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else str(k.value)
            dotted = ".".join(map(str, (*key, name)))
            if name in first:
                problems.append(
                    f"{path}: config key {dotted} is given twice (lines {first[name] + 1} and "
                    f"{k.start_mark.line + 1}); the later one would silently replace the earlier: keep one"
                )
            else:
                first[name] = k.start_mark.line
            problems += _duplicates(v, path, (*key, name))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += _duplicates(item, path, (*key, i))
    return problems


def _read_json(path: str, text: str) -> dict:
    problems = []

    def pairs(items):
        keys = [k for k, _ in items]
        problems.extend(
            f"{path}: config key {k} is given twice in one mapping; keep one"
            for k in dict.fromkeys(k for k in keys if keys.count(k) > 1)
        )
        return dict(items)

    data = json.loads(text, object_pairs_hook=pairs)
    if problems:
        raise ConfigFileError("\n  - ".join(["invalid config:", *problems]))
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {path}: expected a mapping of config keys at the top level")
    return data


def read_config_file(path) -> dict:
    """The mapping in config file `path`, or ConfigFileError naming file, line and column."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigFileError(f"config file {path} cannot be read: {e.strerror or e}") from None
    try:  # JSON first, as Snakemake reads it (JSON with tabs is no YAML)
        return _read_json(path, text)
    except json.JSONDecodeError:
        pass
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = _where(path, mark) if mark else path
        what = e.problem or "syntax error"
        if e.context and e.context_mark:
            what += (
                f" ({e.context}, which starts at line {e.context_mark.line + 1}, column {e.context_mark.column + 1})"
            )
        raise ConfigFileError(f"config file {where}: not valid YAML: {what}") from None
    except yaml.YAMLError as e:
        raise ConfigFileError(f"config file {path}: not valid YAML: {e}") from None
    problems = _duplicates(node, path) if node is not None else []
    if problems:
        raise ConfigFileError("\n  - ".join(["invalid config:", *problems]))
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ConfigFileError(f"config file {path}: expected a mapping of config keys at the top level")
    return data


def check_files(paths) -> None:
    """Read every config file in `paths` (duplicates once); raise ConfigFileError on the first bad one."""
    for path in dict.fromkeys(map(str, paths)):
        read_config_file(path)


def results_errors(results) -> list[str]:
    """Why `results` cannot be the folder every output goes under (empty when it can)."""
    if not isinstance(results, str):
        return []  # the schema reports the type
    if not results.strip():
        return ["config key results: empty; name the folder all outputs go under (default: results)"]
    folder = Path(results).expanduser().resolve()
    home = Path.home().resolve()
    system = folder in {Path(p) for p in _SYSTEM_FOLDERS} or folder == home
    system = system or any(folder == Path(t) or Path(t) in folder.parents for t in _SYSTEM_TREES)
    shown = repr(results) if Path(results) == folder else f"{results!r} (that is {str(folder)!r})"
    hint = "every output is written under it: name a folder of its own, e.g. results"
    if system:
        return [f"config key results: {shown} is a system or home folder; {hint}"]
    if folder == Path.cwd().resolve():
        return [f"config key results: {shown} is the folder the workflow runs in; {hint}"]
    return []


def _missing(key: str, value: str, kind: str, hint: str) -> str | None:
    p = Path(value).expanduser()
    ok = p.is_dir() if kind == "folder" else p.is_file()
    if ok:
        return None
    state = "is not a folder" if kind == "folder" and p.exists() else "does not exist"
    return f"config key {key}: {kind} {value!r} {state} (in {os.getcwd()}); {hint}"


def path_errors(config: dict, crawl_options) -> list[str]:
    """Files and folders the config names that are not there. `config` has defaults filled in.

    `crawl_options(config, cls)` is convscope.config's merge of crawl and class options.
    """
    problems = []
    sources = list((config.get("pretrain") or {}).get("classes") or {})  # pretraining's source classes
    for cls in [*(config.get("classes") or {}), *sources]:
        opts = crawl_options(config, cls)
        key = f"classes.{cls}" if cls in (config.get("classes") or {}) else f"pretrain.classes.{cls}"
        if opts.get("source") == "folder" and opts.get("path"):
            problems.append(
                _missing(
                    f"{key}.path",
                    opts["path"],
                    "folder",
                    "point it at this class's images",
                )
            )
        if opts.get("source") == "urllist" and opts.get("urls"):
            problems.append(
                _missing(
                    f"{key}.urls",
                    opts["urls"],
                    "file",
                    "give a text file with one image URL per line",
                )
            )
    for name, options in (config.get("backbones") or {}).items():
        weights = (options or {}).get("weights")
        if weights and weights not in ("imagenet", "none", "pretrained"):
            problems.append(
                _missing(
                    f"backbones.{name}.weights",
                    weights,
                    "file",
                    "give a weights file, or 'imagenet', 'none' or 'pretrained'",
                )
            )
    return [p for p in problems if p]


if __name__ == "__main__":  # `python -m convscope.configcheck FILE...`: where exactly a config file is broken
    import sys

    try:
        check_files(sys.argv[1:])
    except ConfigFileError as e:
        sys.exit(str(e))
    print("config file(s) read fine:", ", ".join(sys.argv[1:]))
