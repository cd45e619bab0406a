"""The index.json contract between analyses and the report.

    {"title": str, "sections": [{"id": str, "title": str, "group": str, "kind": str, "items": [
        {"kind": "image"|"table"|"json", "file": "relative/path", "caption": str,
         "data": "relative/path" | null, "badges": [{"method", "title", "passed", "note"}] (optional)}]}]}

A section's group says which part of the analyses it belongs to (e.g. "explanations",
"trust") and its kind what it holds (e.g. "maps", "sanity", "ranking"): the report
selects sections by these fields, not by matching ids.

Every analysis returns one or more sections built with `section`/`item`; the
orchestrator writes them with `write_index`, which checks that every named file
exists (a figure the report cannot find is a bug here, not there).
"""

from __future__ import annotations

import json
from pathlib import Path

KINDS = ("image", "table", "json")


def item(kind: str, file, caption: str, data=None, *, root=None) -> dict:
    """One artifact. With `root` (the index.json folder), `file`/`data` are paths under it
    (absolute, or relative to the working directory like root) and become relative to it;
    without, they must already be relative to the index.json folder."""
    if kind not in KINDS:
        raise ValueError(f"index item kind {kind!r} is not one of {KINDS}")

    def rel(p):
        if p is None:
            return None
        p = Path(p)
        if root is not None:
            p = p.absolute().relative_to(Path(root).absolute())
        return p.as_posix()

    return {"kind": kind, "file": rel(file), "caption": caption, "data": rel(data)}


def section(id: str, title: str, items: list[dict], *, group: str = "model", kind: str | None = None) -> dict:
    return {"id": id, "title": title, "group": group, "kind": kind or id, "items": list(items)}


def validate(index: dict, root) -> None:
    """Raise naming the section and file when the index breaks the contract."""
    root = Path(root)
    if not isinstance(index.get("title"), str):
        raise ValueError(f"{root}/index.json: 'title' must be a string")
    seen = set()
    for sec in index.get("sections", []):
        sid = sec.get("id")
        if not sid or sid in seen:
            raise ValueError(f"{root}/index.json: section id {sid!r} is empty or repeated")
        seen.add(sid)
        for it in sec["items"]:
            if it["kind"] not in KINDS:
                raise ValueError(f"{root}/index.json section {sid}: kind {it['kind']!r} not in {KINDS}")
            for key in ("file", "data"):
                if it.get(key) is not None:
                    p = Path(it[key])
                    if p.is_absolute() or ".." in p.parts:
                        raise ValueError(f"{root}/index.json section {sid}: {key} {it[key]!r} must be relative")
                    if not (root / p).is_file():
                        raise FileNotFoundError(f"{root}/index.json section {sid}: {key} {it[key]!r} was not written")


def write_index(out_dir, title: str, sections: list[dict]) -> Path:
    out_dir = Path(out_dir)
    index = {"title": title, "sections": sections}
    validate(index, out_dir)
    path = out_dir / "index.json"
    path.write_text(json.dumps(index, indent=1))
    return path


def read_index(out_dir) -> dict:
    return json.loads((Path(out_dir) / "index.json").read_text())
