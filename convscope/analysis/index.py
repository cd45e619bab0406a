"""The index.json contract between analyses and the report.

    {"title": str, "sections": [{"id": str, "title": str, "group": str, "kind": str, "items": [
        {"kind": "image"|"table"|"json", "file": "relative/path", "caption": str,
         "data": "relative/path" | null, "badges": [{"method", "title", "passed", "note"}] (optional),
         "text_column": str (optional; a table column of sentences the report shows above the table)}]}]}

`group` (convscope.records.GROUPS) tells the report where a section goes: with its
model or grid (results), beside the other backbones' explanation checks (checks),
or nowhere because the report draws that file itself (own_table); `kind` what it holds
(e.g. "maps", "sanity", "ranking"; default its id), so readers select sections by field,
not by matching ids.

Every analysis returns one or more sections built with `section`/`item`; the
orchestrator writes them with `write_index`, which checks that every named file
exists (a figure the report cannot find is a bug here, not there).
"""

from __future__ import annotations

import json
from pathlib import Path

from convscope import atomic, layout, records

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


def section(id: str, title: str, items: list[dict], group: str = records.RESULTS, *, kind: str | None = None) -> dict:
    if group not in records.GROUPS:
        raise ValueError(f"index section {id!r}: group {group!r} is not one of {records.GROUPS}")
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
        if sec.get("group") not in records.GROUPS:
            raise ValueError(f"{root}/index.json section {sid}: group {sec.get('group')!r} not in {records.GROUPS}")
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
    path = out_dir / layout.INDEX
    atomic.write_text(path, json.dumps(index, indent=1))
    return path


def read_index(out_dir) -> dict:
    return json.loads((Path(out_dir) / layout.INDEX).read_text())
