"""Review and quality edits rerun only what depends on the images they change, on real `snakemake` runs.

One tiny grid (a fine-tuned run, a features head, the audit, the grid summary and a data
report) is built once; then each kind of edit is made and the jobs a real run executes are
read from its log ("Finished jobid: N (Rule: X)"), beside the mtimes of what must not move:
- a review line dropping an image that is already quarantined, and a change of the quality
  thresholds (flags only), rerun clean and split (whose split lists keep their bytes) and the
  report that shows the manifest; no prepare, training, embedding, audit or summary;
- a review line dropping a test image rescores every run (prepare, embed and evaluate of the
  test split, the audit, the summary) and retrains none: the train and val data are the same;
- a review line dropping a train image reruns prepare and retrains: its data changed.
"""

from __future__ import annotations

import collections
import csv
import json
import re
import shutil

import pytest

from conftest import quick_train, tiny_config

pytestmark = pytest.mark.slow

CLASSES = ("circle", "square")
COPY = "circle/zz-copy.png"  # an exact copy of a kept image: clean quarantines it
HEADER = "file,action,new_class\n"


def config() -> dict:
    cfg = tiny_config(
        CLASSES,
        images=16,
        backbones={"alexnet": {"input_size": 64, "weights": "none"}},
        train=quick_train(),
        report={"title": "review reruns", "sections": ["data", "audit"]},
    )
    cfg["clean"]["review"] = "review.csv"
    return cfg


def executed(proc) -> dict[str, int]:
    """{rule: jobs} a real run finished (Snakemake logs each one)."""
    found = re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", proc.stdout + proc.stderr)
    return dict(collections.Counter(found))


def read(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_review_and_quality_edits_rerun_only_what_they_affect(workflow):
    wf = workflow(config())
    L, R = wf.layout, wf.results
    (wf.workdir / "review.csv").write_text(HEADER)
    wf.run(*[str(L.crawl_summary(c)) for c in CLASSES])
    shutil.copy(sorted((R / "raw" / "circle").glob("*.png"))[0], R / "raw" / COPY)

    runs = ("finetune-lr1e-3-do0.5-d2-bs16-ep1-augnone", "features-logreg-C1")
    targets = [
        str(L.grid_index),
        str(L.audit_summary("alexnet")),
        str(L.report_dir / "index.html"),
    ]
    first = executed(wf.run(*targets, timeout=900))
    assert first["train"] == 1 and first["features_head"] == 1 and first["prepare"] == 3, first
    manifest = {r["file"]: r for r in read(wf.workdir / L.clean_manifest)}
    assert manifest[COPY]["status"] == "quarantined" and manifest[COPY]["reason"] == "duplicate"

    trained = [  # what only the train and val splits make
        L.prepared(64, "train"),
        L.prepared(64, "val"),
        L.model("alexnet", runs[0]),
        L.fit("alexnet", runs[0]),
        L.embedding("alexnet", "train"),
        L.head("alexnet", runs[1]),
        L.fit("alexnet", runs[1]),
    ]
    scored = [L.metrics("alexnet", r) for r in runs] + [L.audit_summary("alexnet"), L.grid_index]

    def stamps(files=trained + scored):
        return {str(f): (wf.workdir / f).stat().st_mtime_ns for f in files}

    def split_bytes():
        return [(wf.workdir / p).read_bytes() for p in L.split_lists]

    before, splits = stamps(), split_bytes()

    # 1. Drop an image that is already quarantined: the manifest records it, the kept images are the same.
    (wf.workdir / "review.csv").write_text(HEADER + f"{COPY},drop,\n")
    ran = executed(wf.run(*targets))
    assert ran == {"clean": 1, "split": 1, "report": 1}, ran
    assert {r["file"]: r for r in read(wf.workdir / L.clean_manifest)}[COPY]["review"] == "drop"
    assert split_bytes() == splits
    assert stamps() == before
    assert wf.planned(*targets) == {}

    # 2. Quality thresholds: flags only, so the same kept images and the same splits.
    edited = config()
    edited["clean"]["quality"] = {"dark": 0.9}  # nearly every image is darker than that
    wf.write_config(edited)
    ran = executed(wf.run(*targets))
    assert ran == {"clean": 1, "split": 1, "report": 1}, ran
    flags = [r["flags"] for r in read(wf.workdir / L.clean_manifest) if r["status"] == "kept"]
    assert sum("dark" in f for f in flags) > len(flags) // 2
    assert split_bytes() == splits
    assert stamps() == before

    # The thresholds back to their defaults, seen by a dry run once the data stages have run: of the
    # jobs after them only the report, which shows the flags, is planned.
    wf.write_config(config())
    assert wf.planned(*wf.splits) == {"clean": 1, "split": 1}
    wf.run(*wf.splits)
    assert not any("dark" in r["flags"] for r in read(wf.workdir / L.clean_manifest))
    assert wf.planned(*targets) == {"report": 1}
    wf.run(*targets)

    # 3. Drop a test image: every run is scored again on the smaller test split; none is retrained.
    test_rows = [r for r in wf.split_rows() if r["split"] == "test"]
    fullest = collections.Counter(r["cls"] for r in test_rows).most_common(1)[0][0]  # keeps a test image
    left_out = next(r["file"] for r in test_rows if r["cls"] == fullest)
    (wf.workdir / "review.csv").write_text(HEADER + f"{COPY},drop,\n{left_out},drop,\n")
    ran = executed(wf.run(*targets, timeout=900))
    assert ran == {
        **{"clean": 1, "split": 1, "prepare": 1, "embed": 1, "evaluate": 1, "evaluate_head": 1},
        **{"audit": 1, "summarise": 1, "report": 1},
    }, ran
    unmoved, rescored = stamps(trained), stamps(scored)
    assert unmoved == {k: before[k] for k in unmoved}, "a train/val product was rewritten"
    assert all(rescored[k] > before[k] for k in rescored)
    for run in runs:
        metrics = json.loads((wf.workdir / L.metrics("alexnet", run)).read_text())
        assert metrics["test"]["n"] == len(test_rows) - 1, run
        assert metrics["val"] == json.loads((wf.workdir / L.fit("alexnet", run)).read_text())["val"]
    assert wf.planned(*targets) == {}
    before = stamps()

    # 4. Drop a train image: its data changed, so prepare reruns and the model is trained again.
    train_rows = [r for r in wf.split_rows() if r["split"] == "train"]
    dropped = train_rows[0]["file"]
    (wf.workdir / "review.csv").write_text(HEADER + f"{COPY},drop,\n{left_out},drop,\n{dropped},drop,\n")
    ran = executed(wf.run(*targets, timeout=900))
    for rule in ("clean", "split", "prepare", "train", "embed", "features_head", "evaluate", "audit", "summarise"):
        assert ran.get(rule) == 1, (rule, ran)  # the train split's prepare and embed only
    index = read(wf.workdir / L.prepared(64, "train", "index.csv"))
    assert dropped not in {r["file"] for r in index} and len(index) == len(train_rows) - 1
    after = stamps()
    assert after[str(L.model("alexnet", runs[0]))] > before[str(L.model("alexnet", runs[0]))]
    assert wf.planned(*targets) == {}
