"""Every function in convscope/ fits the project's shape: at most 60 lines and 6 parameters.

Lines run from the `def` to the last line of the body (docstring included); parameters
count every named one but self/cls, plus *args and **kwargs. A longer function is split
into named steps; a longer signature groups what belongs together into a dataclass.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES, MAX_PARAMS = 60, 6


def parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = node.args
    named = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
    return named + [p.arg for p in (a.vararg, a.kwarg) if p is not None]


def oversized(root: Path) -> list[str]:
    """'file:line name: N lines, M parameters' for every function over a limit."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines, params = node.end_lineno - node.lineno + 1, len(parameters(node))
                if lines > MAX_LINES or params > MAX_PARAMS:
                    found.append(
                        f"{path.relative_to(root.parent)}:{node.lineno} {node.name}: {lines} lines, {params} parameters"
                    )
    return found


def test_functions_are_short_with_few_parameters():
    found = oversized(ROOT / "convscope")
    assert not found, f"over {MAX_LINES} lines or {MAX_PARAMS} parameters:\n" + "\n".join(found)


def test_the_check_finds_a_long_function_and_a_long_signature(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(60))
    (pkg / "m.py").write_text(
        f"def long():\n{body}\n\n\ndef wide(a, b, c, d, e, f, *, g):\n    pass\n\n\n"
        "class C:\n    def fine(self, a, b, c, d, e, f):\n        pass\n"
    )
    found = oversized(pkg)
    assert [f.split(" ")[1] for f in found] == ["long:", "wide:"], found
