"""The conda envs named by rules pin the same versions as pyproject.toml."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pins(requirements):
    pins = {}
    for req in requirements:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*==\s*([^\s;]+)\s*", req)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(3)
    return pins


def _project_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pins.update(_pins(extra))
    return pins


ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))


def test_every_rule_env_exists():
    named = set()
    for smk in (ROOT / "rules").glob("*.smk"):
        named.update(re.findall(r'"\.\./(envs/[^"]+\.yaml)"', smk.read_text()))
    assert named, "rules name no conda envs"
    missing = [e for e in named if not (ROOT / e).is_file()]
    assert not missing, f"rules name env files that do not exist: {missing}"


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_match_pyproject(env_file):
    env = yaml.safe_load(env_file.read_text())
    pip_reqs = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    env_pins = _pins(pip_reqs)
    assert len(env_pins) == len(pip_reqs), f"{env_file.name}: every pip requirement must be pinned with =="
    project = _project_pins()
    unknown = sorted(set(env_pins) - set(project))
    assert not unknown, f"{env_file.name} pins packages pyproject.toml does not: {unknown}"
    mismatched = {k: (v, project[k]) for k, v in env_pins.items() if project[k] != v}
    assert not mismatched, f"{env_file.name} pins differ from pyproject.toml (env, pyproject): {mismatched}"
