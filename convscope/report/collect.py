"""Gather what the report shows from the results tree (the file layout contract).

Everything here reads files other stages wrote and returns plain data (dicts,
lists, strings) for the templates; nothing here writes HTML. Missing inputs raise
naming the file and the stage that writes it: a report that silently leaves out
a section would hide a broken pipeline.
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import json
import logging
import math
import os
import platform
import re
import shutil
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

from convscope import layout, records
from convscope.layout import SPLITS
from convscope.records import KEPT, OK

log = logging.getLogger(__name__)


class ReportInputError(FileNotFoundError):
    """An input the report needs is missing or malformed."""


def _need(path: Path, producer: str) -> Path:
    if not path.is_file():
        raise ReportInputError(f"{path}: missing; it is written by the {producer} (run the workflow up to it first)")
    return path


def read_csv(path: Path, producer: str) -> list[dict]:
    with open(_need(Path(path), producer), newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def read_json(path: Path, producer: str):
    path = _need(Path(path), producer)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ReportInputError(f"{path}: not valid JSON ({e}); re-run the {producer}") from e


def number(value):
    """A CSV/JSON cell as int or float when it is one, else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return value if not (isinstance(value, float) and math.isnan(value)) else None
    try:
        f = float(str(value).strip())
    except ValueError:
        return None
    if math.isnan(f):
        return None
    return int(f) if f.is_integer() and re.fullmatch(r"-?\d+", str(value).strip()) else f


# ---- data ---------------------------------------------------------------------


def data_summary(results: Path, classes: list[str]) -> dict:
    """Images per class at each stage, the quarantine list and the kept files.

    raw = kept + quarantined per class (the clean stage guarantees it; we check).
    `downloads` counts the crawl ledger's rows by status (attempts, failures).
    """
    results = layout.Results(results)
    manifest = read_csv(results.clean_manifest, "clean stage (rule clean)")
    splits = [r for path in results.split_lists for r in read_csv(path, "split stage (rule split)")]
    unknown = sorted({r["cls"] for r in manifest} - set(classes))
    if unknown:
        log.warning("clean manifest has classes not in the config (left out of the report): %s", unknown)

    reasons = sorted({r["reason"] for r in manifest if r["status"] != KEPT and r["reason"]})
    statuses: set[str] = set()
    rows = []
    ledger_urls: dict[str, str] = {}
    for cls in classes:
        row, urls = _class_row(results, cls, manifest, splits)
        statuses.update(row["downloads"])
        ledger_urls.update(urls)
        rows.append(row)
    quarantine = [
        {
            "cls": r["cls"],
            "file": r["file"],
            "reason": r["reason"],
            "dup_of": r.get("dup_of", ""),
            "detail": r.get("detail", ""),
            "source": r.get("source") or ledger_urls.get(r["file"], ""),
            "stage": r.get("stage") or "clean",  # "import": turned away by the crawl, no file kept
        }
        for r in manifest
        if r["status"] != KEPT and r["cls"] in classes
    ]
    kept_files = defaultdict(list)
    for r in splits:
        kept_files[r["cls"]].append((r["split"], r["file"]))
    totals = {
        "raw": sum(r["raw"] for r in rows),
        "kept": sum(r["kept"] for r in rows),
        "quarantined": sum(r["quarantined"] for r in rows),
        "by_reason": {x: sum(r["by_reason"].get(x, 0) for r in rows) for x in reasons},
        "splits": {s: sum(r["splits"][s] for r in rows) for s in SPLITS},
        "downloads": {s: sum(r["downloads"].get(s, 0) for r in rows) for s in sorted(statuses)},
    }
    return {
        "classes": rows,
        "reasons": reasons,
        "download_statuses": sorted(statuses),
        "totals": totals,
        "quarantine": quarantine,
        "kept_files": {cls: sorted(files) for cls, files in kept_files.items()},
    }


def _class_row(results: layout.Results, cls: str, manifest: list[dict], splits: list[dict]) -> tuple[dict, dict]:
    """One class's counts per stage, and {file: source URL} from its crawl ledger."""
    mine = [r for r in manifest if r["cls"] == cls]
    quarantined = Counter(r["reason"] or "(no reason)" for r in mine if r["status"] != KEPT)
    per_split = Counter(r["split"] for r in splits if r["cls"] == cls)
    ledger_path = results.ledger(cls)  # beside the crawl rule's declared crawl.json
    ledger = read_csv(ledger_path, f"crawl stage (rule crawl, class {cls})") if ledger_path.is_file() else []
    downloads = Counter(r.get("status") or "(none)" for r in ledger)
    urls: dict[str, str] = {}
    for r in ledger:
        key = f"{cls}/{Path(r['file']).name}" if r.get("file") else None
        # A `duplicate` row names the file it duplicates: the source is the `ok` row's.
        if key and (r.get("status") == OK or key not in urls):
            urls[key] = r.get("url_or_path") or ""
    row = {
        "cls": cls,
        "downloads": dict(downloads),
        "raw": len(mine),
        "kept": sum(r["status"] == KEPT for r in mine),
        "quarantined": sum(quarantined.values()),
        "by_reason": dict(quarantined),
        "splits": {s: per_split.get(s, 0) for s in SPLITS},
    }
    return row, urls


def make_thumbnails(results: Path, kept_files: dict, classes: list[str], per_class: int, out_dir: Path) -> dict:
    """Write up to `per_class` thumbnails per class (spread over its kept images) into out_dir.

    Returns {cls: [{"path": relative to out_dir.parent, "file": raw file, "split": ...}]}.
    File names are ours (class index and a counter), never taken from user data.
    """
    from PIL import Image, ImageOps

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    thumbs = {}
    for ci, cls in enumerate(classes):
        files = kept_files.get(cls, [])
        # Evenly spaced picks: deterministic, and not just the first crawl batch.
        picks = [files[int(i * len(files) / per_class)] for i in range(min(per_class, len(files)))]
        thumbs[cls] = []
        for n, (split, rel) in enumerate(picks):
            src = layout.Results(results).raw_dir / rel
            dst = out_dir / f"c{ci}-{n}.jpg"
            try:
                with Image.open(src) as im:
                    im = ImageOps.exif_transpose(im)
                    im.draft("RGB", (192, 192))
                    im = im.convert("RGB")
                    im.thumbnail((128, 128))
                    im.save(dst, "JPEG", quality=85)
            except (OSError, ValueError) as e:
                raise ReportInputError(
                    f"{src}: kept by the clean stage but cannot be read for a thumbnail ({e}); re-run the clean stage"
                ) from e
            thumbs[cls].append({"path": f"{out_dir.name}/{dst.name}", "file": rel, "split": split})
    return thumbs


# ---- grid and analyses --------------------------------------------------------


def best_runs(best_json: Path) -> dict[str, records.BestRun]:
    """best.json (the grid summary's choice) as {backbone: BestRun}."""
    path = _need(Path(best_json), "grid summary (analysis stage)")
    try:
        return records.read_best(path)
    except (ValueError, TypeError) as e:
        raise ReportInputError(str(e)) from e


def grid_runs(runs_csv: Path) -> dict:
    """runs.csv of the grid summary: columns and rows (cells as written)."""
    path = Path(runs_csv)
    rows = read_csv(path, "grid summary (analysis stage)")
    columns = list(rows[0]) if rows else []
    return {"columns": columns, "rows": rows, "path": path}


def load_index(folder: Path, producer: str) -> dict:
    """An analysis folder's index.json, checked against the contract (files exist)."""
    folder = Path(folder)
    index = read_json(folder / layout.INDEX, producer)
    where = folder / layout.INDEX
    if not isinstance(index, dict) or not isinstance(index.get("sections"), list):
        raise ReportInputError(f"{where}: expected {{'title': ..., 'sections': [...]}}")
    for sec in index["sections"]:
        if sec.get("group") not in records.GROUPS:
            raise ReportInputError(
                f"{where} section {sec.get('id')!r}: group {sec.get('group')!r} is not one of {records.GROUPS}; "
                f"re-run the {producer}"
            )
        for it in sec.get("items", []):
            if it.get("kind") not in ("image", "table", "json"):
                raise ReportInputError(f"{where} section {sec.get('id')!r}: unknown item kind {it.get('kind')!r}")
            for key in ("file", "data"):
                rel = it.get(key)
                if rel is None:
                    continue
                p = Path(rel)
                if p.is_absolute() or ".." in p.parts:
                    raise ReportInputError(f"{where} section {sec.get('id')!r}: {key} {rel!r} must be relative")
                if not (folder / p).is_file():
                    raise ReportInputError(
                        f"{where} section {sec.get('id')!r}: {key} {rel!r} does not exist; re-run the {producer}"
                    )
    return index


def read_table(path: Path, max_rows: int = 200) -> dict:
    """A CSV for display: header, up to max_rows rows, and how many were left out."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        rows, total = [], 0
        for row in reader:
            total += 1
            if len(rows) < max_rows:
                rows.append(row)
    return {"header": header, "rows": rows, "left_out": total - len(rows)}


def metrics(results: Path, backbone: str, run: str) -> records.RunMetrics:
    path = _need(layout.Results(results).metrics(backbone, run), f"train rule ({backbone} {run})")
    try:
        return records.read_metrics(path)
    except ValueError as e:
        raise ReportInputError(str(e)) from e


# ---- compute cost ---------------------------------------------------------------


def benchmarks(files, bench_dir: Path) -> dict:
    """Snakemake benchmark files, per job and per rule.

    `files` are the ones the report was handed (the report rule declares them:
    rules/common.smk report_benchmarks), named by their place under `bench_dir`
    (R/benchmarks/{rule}[/{job}].tsv). Columns as Snakemake writes them: s, h:m:s,
    max_rss (MB), ..., cpu_time. A job too short to sample has '-' for memory:
    shown as unknown, not zero.
    """
    bench_dir = Path(bench_dir).resolve()
    jobs = []
    for path in sorted(Path(f) for f in files):
        try:
            rel = path.resolve().relative_to(bench_dir).with_suffix("")
        except ValueError:
            raise ReportInputError(
                f"benchmark file {path}: not under {bench_dir}, where its folder names its rule"
            ) from None
        with open(_need(path, f"benchmark: directive of the {rel.parts[0]} rule"), newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        if not rows:
            log.warning("benchmark file %s is empty (job killed?); left out of the compute table", path)
            continue
        for row in rows:  # one row per repeat of the benchmark directive
            jobs.append(
                {
                    "rule": rel.parts[0],
                    "job": "/".join(rel.parts[1:]),
                    "s": number(row.get("s")),
                    "max_rss": number(row.get("max_rss")),
                    "cpu_time": number(row.get("cpu_time")),
                }
            )
    rules = {}
    for j in jobs:
        r = rules.setdefault(j["rule"], {"rule": j["rule"], "jobs": 0, "total_s": 0.0, "max_s": 0.0, "max_rss": None})
        r["jobs"] += 1
        r["total_s"] += j["s"] or 0.0
        r["max_s"] = max(r["max_s"], j["s"] or 0.0)
        if j["max_rss"] is not None:
            r["max_rss"] = max(r["max_rss"] or 0.0, j["max_rss"])
    per_rule = sorted(rules.values(), key=lambda r: -r["total_s"])
    return {"jobs": jobs, "rules": per_rule, "total_s": sum(r["total_s"] for r in per_rule)}


# ---- environment -----------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def keras_backend() -> str:
    """The backend Keras would use here, read the way Keras reads it (without importing it)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        return json.loads(Path(home, "keras.json").read_text()).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def versions(backend: str | None = None) -> dict:
    """Versions in the environment rendering the report (importing no framework: it costs seconds).

    `backend` is the Keras backend the workflow trains with (config train.backend);
    without it, the one Keras would pick here.
    """
    found = {
        "Python": platform.python_version(),
        "Snakemake": _version("snakemake"),
        "Keras": _version("keras"),
        "Keras backend": backend or keras_backend(),
        "TensorFlow": _version("tensorflow") or _version("tensorflow-cpu"),
        "JAX": _version("jax"),
        "NumPy": _version("numpy"),
        "Pillow": _version("pillow"),
        "convscope": _version("convscope"),
    }
    return {k: v for k, v in found.items() if v}


def machine() -> dict:
    info = {
        "host": platform.node(),
        "system": platform.platform(),
        "CPU cores": str(os.cpu_count()),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
        if model:
            info["CPU"] = model.group(1).strip()
        mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        if mem:
            info["memory"] = f"{int(mem.group(1)) / 2**20:.1f} GiB"
    except OSError:
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
            gpus = [line.split(" (UUID")[0] for line in out.splitlines() if line.strip()]
            if gpus:
                info["GPUs"] = "; ".join(gpus)
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def now() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
