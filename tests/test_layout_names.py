"""Every results file name is spelled in convscope/layout.py alone (issue 24, part 2).

Scans the string literals of convscope/, scripts/, bench/ and the rules (Snakefile, rules/*.smk) for a bare file name
(`name.csv`, `{split}.npy`, `activations_{depth}.png`): a stage that spells one re-declares a
piece of the inter-stage contract that layout.py owns. Docstrings and comments are free text
and not scanned; error messages are sentences, so they do not match a bare name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTENSIONS = ("json", "csv", "npy", "npz", "keras", "png", "h5", "html", "tsv")
# A whole literal that is a file name (placeholders of f-strings read as "{}").
NAME = re.compile(r"^[\w{}\-/.]*[\w}]\.(?:" + "|".join(re.escape(e) for e in EXTENSIONS) + r")$")

# Names that are not files of the results tree, each with the reason.
NOT_RESULTS = {
    "imagenet_class_index.json": "Keras' own download in ~/.keras/models (training/sanity.py)",
    "keras.json": "Keras' settings file in ~/.keras, read for the backend name",
    "bvlc_alexnet.npy": "the AlexNet weights download in the Keras cache (models/weights.py)",
    "review.csv": "the name the report's download button gives the user's decisions (config clean.review)",
}
# Inputs a benchmark writes for the workflow to read, not results: (file, literal) -> why.
BENCH_INPUTS = {
    ("bench/data_trust.py", "{}.png"): "the digit scans it writes into class folders, the clean step's input",
    ("bench/review_reruns.py", "circle/zz-copy.png"): "the exact copy it plants in a raw class folder",
}


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _literals(path: Path):
    """(line, text) of every string literal of a Python file but docstrings; f-strings with {} holes."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _docstrings(tree)
    inside_fstring = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = [v.value if isinstance(v, ast.Constant) else "{}" for v in node.values]
            inside_fstring.update(id(v) for v in node.values)
            yield node.lineno, "".join(str(p) for p in parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in skip and id(node) not in inside_fstring:
                yield node.lineno, node.value


def _rule_literals(path: Path):
    """(line, text) of the quoted strings of a Snakemake file, comments left out."""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
        for m in re.finditer(r"f?\"([^\"]*)\"|f?'([^']*)'", code):
            yield n, m.group(1) if m.group(1) is not None else m.group(2)


def spelled_names(root: Path = ROOT) -> list[str]:
    """'file:line: name' for each results file name spelled outside convscope/layout.py."""
    found = []
    python = [p for d in ("convscope", "scripts", "bench") for p in sorted((root / d).rglob("*.py"))]
    rules = [root / "Snakefile", *sorted((root / "rules").glob("*.smk"))]
    for path, literals in [(p, _literals) for p in python] + [(p, _rule_literals) for p in rules]:
        if path == root / "convscope" / "layout.py":
            continue
        for line, text in literals(path):
            name = text.replace("{}", "x").rsplit("/", 1)[-1]
            allowed = name in NOT_RESULTS or (path.relative_to(root).as_posix(), text) in BENCH_INPUTS
            if NAME.match(text) and not allowed:
                found.append(f"{path.relative_to(root)}:{line}: {text}")
    return found


def test_no_results_file_name_outside_layout():
    found = spelled_names()
    assert not found, "results file names spelled outside convscope/layout.py:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "source, spelled",
    [
        ('x = out / "heatmaps.csv"\n', True),
        ('x = out / f"heatmaps_{backbone}.png"\n', True),
        ('raise ValueError(f"{path}: not valid JSON; re-run the analyse rule")\n', False),
        ('def f():\n    """Writes calibration.json."""\n', False),
        ('x = Path(home, "keras.json")\n', False),
    ],
)
def test_the_scan_finds_a_spelled_name(tmp_path, source, spelled):
    """The scan itself: a name in code is found; sentences, docstrings and the allow-list are not."""
    (tmp_path / "convscope").mkdir()
    (tmp_path / "rules").mkdir()
    (tmp_path / "Snakefile").write_text("")
    (tmp_path / "convscope" / "m.py").write_text(source)
    assert bool(spelled_names(tmp_path)) is spelled
