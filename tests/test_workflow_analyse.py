"""The analyse stage in real snakemake runs: grid -> summary checkpoint -> best runs' analyses.

One tiny grid (one backbone, a fine-tuned run and a features head) is trained and
analysed once; the checks then use dry runs on edited configs, which cost seconds.
"""

from __future__ import annotations

import copy
import json
import re

import pandas as pd
import pytest

from conftest import quick_analysis, quick_train, tiny_config
from convscope import layout, records
from convscope.analysis.index import validate

pytestmark = pytest.mark.slow

BACKBONE = "mobilenetv2"


def config() -> dict:
    return tiny_config(
        classes=("circle", "square", "triangle"),
        images=20,
        backbones={BACKBONE: {"input_size": 48, "weights": "none"}},
        train=quick_train(),
        analysis=quick_analysis(),
    )


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    from conftest import Workflow

    workdir = tmp_path_factory.mktemp("analyse")
    wf = Workflow(workdir, config())
    wf.write_config()
    wf.run("analyses", timeout=900)
    return wf


def test_summary_picks_the_best_run_and_only_it_is_analysed(analysed):
    runs = pd.read_csv(analysed.tree.runs_csv)
    best = json.loads(analysed.tree.best_json.read_text())
    assert set(runs["strategy"]) == {"finetune", "features"}
    # The analysed run is the best *trained* one; the features head is compared, not analysed.
    trained = runs[runs["strategy"] != "features"]
    top = trained.loc[trained["val_accuracy"].idxmax()]
    assert best[BACKBONE]["run"] == top["run"]
    assert best[BACKBONE]["best_features"]["run"] == "features-logreg-C1"
    analysed_runs = sorted(p.name for p in analysed.tree.backbone_analyses(BACKBONE).iterdir())
    assert analysed_runs == [top["run"]]


def test_the_analysis_folder_holds_every_analysis_and_its_index(analysed):
    best = json.loads(analysed.tree.best_json.read_text())[BACKBONE]
    folder = analysed.tree.analysis_dir(BACKBONE, best["run"])
    index = json.loads((folder / layout.INDEX).read_text())
    validate(index, folder)  # every listed file exists, paths relative, ids unique
    ids = {s["id"] for s in index["sections"]}
    assert {"frozen", "confusion", "calibration", "examples", "embedding", "filters", "activations", "cost"} <= ids
    if best["strategy"] != "features":
        assert "curves" in ids
    # The explanation analyses run in the same job, with the same loaded model.
    assert any("gradcam" in s["id"] or "grad" in s["title"].lower() for s in index["sections"])
    timings = json.loads((folder / "timings.json").read_text())
    assert timings["train_seconds"] > 0 and timings["analysis_over_train"] > 0
    test_n = len(pd.read_csv(analysed.tree.prepared("48", "test", "index.csv")))
    assert len(pd.read_csv(folder / "embedding.csv")) == test_n
    # The analysis job's own forward pass agrees with the accuracy training measured.
    pred = pd.read_csv(layout.AnalysisFolder(folder).probabilities)
    metrics = json.loads(analysed.tree.metrics(BACKBONE, best["run"]).read_text())
    assert (pred["true"] == pred["pred"]).mean() == pytest.approx(metrics["test"]["accuracy"], abs=1e-9)
    # The model-side shortcut check ran on the checked maps: a share per class for Grad-CAM and occlusion.
    border = records.BORDER_MASS.read(layout.AnalysisFolder(folder).explain.border_mass)
    # (a class whose maps have no positive mass on a barely trained model has no row: not asserted)
    assert border["rows"] and {r["class"] for r in border["rows"]} <= {"circle", "square", "triangle"}
    assert all(0 <= r["border_share"] <= 1 for r in border["rows"]) and border["statement"]
    bench = analysed.tree.benchmark("analyse", BACKBONE, best["run"])
    assert bench.is_file() and analysed.tree.log("analyse", BACKBONE, best["run"]).is_file()


def test_nothing_left_to_do_after_the_run(analysed):
    assert analysed.planned("analyses") == {}


def test_an_analysis_setting_reruns_only_the_analyses(analysed):
    edited = copy.deepcopy(analysed.config)
    edited["analysis"]["examples"]["per_class"] = 3
    analysed.write_config(edited)
    try:
        assert analysed.planned("analyses") == {"analyse": 1, "analyses": 1}
        # Scheduling settings change no output: nothing to redo.
        scheduling = config()
        scheduling["analysis"].update(threads=1, mem_mb=1000, gpu=True)
        analysed.write_config(scheduling)
        assert analysed.planned("analyses") == {}
    finally:
        analysed.write_config(config())


def test_runs_all_adds_the_other_runs_without_retraining(analysed):
    edited = copy.deepcopy(analysed.config)
    edited["analysis"]["runs"] = "all"
    analysed.write_config(edited)
    try:
        planned = analysed.planned("analyses")
    finally:
        analysed.write_config(config())
    best = json.loads(analysed.tree.best_json.read_text())[BACKBONE]
    assert planned.get("analyse") == 1  # the run that was not the best
    assert "train" not in planned and "summarise" not in planned
    # A features head's network is built on demand, only when it is analysed.
    assert planned.get("features_model", 0) == (0 if best["strategy"] == "features" else 1)


def test_a_quality_edit_reruns_the_report_but_no_training_or_analysis(analysed):
    """Flags only (issue 14): clean, split (same splits.csv) and the report that shows the flags.

    The report asks for the best runs' analyses (the summarise checkpoint) as well as for the
    manifest: it must still rerun once split has kept its output, not keep the summary as a
    placeholder input and go unchecked.
    """
    L = analysed.layout
    report = str(L.report_dir / "index.html")
    analysed.run("analyses", report, timeout=900)
    best = json.loads((analysed.workdir / L.best_json).read_text())[BACKBONE]["run"]
    kept = [analysed.workdir / f for f in (L.model(BACKBONE, best), L.analysis_index(BACKBONE, best), L.grid_index)]
    before = [p.stat().st_mtime_ns for p in kept]
    edited = copy.deepcopy(analysed.config)
    edited["clean"]["quality"] = {"dark": 0.9, "bright": 0.05}  # flags on nearly every image
    analysed.write_config(edited)
    try:
        proc = analysed.run("analyses", report, timeout=900)
    finally:
        analysed.write_config(config())
    ran = re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", proc.stdout + proc.stderr)
    assert sorted(ran) == ["clean", "report", "split"], ran
    assert [p.stat().st_mtime_ns for p in kept] == before
