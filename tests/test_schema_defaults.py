"""No dataclass field restates a schema default (issue 24, part 3).

A settings dataclass whose field `bootstrap: int = 1000` repeats the schema's `bootstrap:
default 1000` is a second source of truth: edit the schema and library callers silently
keep the old value. Such fields are required, or filled from convscope.config's defaults.
Matched by field name and value against every default the schema writes.
"""

from __future__ import annotations

import ast
from pathlib import Path

from convscope import config as cfg

ROOT = Path(__file__).resolve().parents[1]


def schema_defaults() -> set[tuple[str, str]]:
    """(key, repr(default)) of every scalar default in the schema."""
    found = set()

    def walk(properties: dict) -> None:
        for key, spec in properties.items():
            if not isinstance(spec, dict):
                continue
            default = spec.get("default")
            if default is not None and not isinstance(default, (dict, list)):
                found.add((key, repr(default)))
            walk(spec.get("properties", {}))

    schema = cfg._schema()
    walk(schema["properties"])
    for spec in schema.get("$defs", {}).values():
        if isinstance(spec, dict):
            walk(spec.get("properties", {}))
    return found


def _is_dataclass(node: ast.ClassDef) -> bool:
    names = [d.func if isinstance(d, ast.Call) else d for d in node.decorator_list]
    return any(getattr(n, "id", getattr(n, "attr", None)) == "dataclass" for n in names)


def restated(root: Path, defaults: set[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(file, class, field) of dataclass fields whose name and default equal a schema default."""
    found = []
    for path in sorted((root / "convscope").rglob("*.py")):
        for cls in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(cls, ast.ClassDef) and _is_dataclass(cls)):
                continue
            for f in cls.body:
                if (
                    isinstance(f, ast.AnnAssign)
                    and isinstance(f.target, ast.Name)
                    and isinstance(f.value, ast.Constant)
                    and (f.target.id, repr(f.value.value)) in defaults
                ):
                    found.append((path.relative_to(root).as_posix(), cls.name, f.target.id))
    return found


def test_no_dataclass_field_restates_a_schema_default():
    found = restated(ROOT, schema_defaults())
    assert not found, "dataclass fields restating a schema default (make them required):\n" + "\n".join(map(str, found))


def test_the_scan_finds_a_restated_default(tmp_path):
    (tmp_path / "convscope").mkdir()
    (tmp_path / "convscope" / "m.py").write_text(
        "from dataclasses import dataclass\n\n\n@dataclass\nclass S:\n    bootstrap: int = 1000\n    other: int = 1000\n"
    )
    assert restated(tmp_path, {("bootstrap", "1000")}) == [("convscope/m.py", "S", "bootstrap")]
