"""The analyse stage in real snakemake runs: grid -> summary checkpoint -> best runs' analyses.

One tiny grid (one backbone, fine-tuned runs at two tune depths and a features head) is
trained and analysed once; the checks then use dry runs on edited configs, which cost seconds.
"""

from __future__ import annotations

import copy
import html
import json
import re

import numpy as np
import pandas as pd
import pytest

from conftest import quick_analysis, quick_train, tiny_config
from convscope import layout, records
from convscope.analysis import options as analysis_options
from convscope.analysis.index import validate

pytestmark = pytest.mark.slow

BACKBONE = "mobilenetv2"


def config() -> dict:
    train = quick_train()
    # Two tune depths: the strategies-side-by-side figures draw a line per (strategy, tune_depth).
    # Depths 1 and 2 (not "all"): training every block took 2.5x the CPU of either.
    train["grid"]["tune_depth"] = [1, 2]
    return tiny_config(
        classes=("circle", "square", "triangle"),
        images=20,
        backbones={BACKBONE: {"input_size": 48, "weights": "none"}},
        train=train,
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
    runs = pd.read_csv(analysed.tree.runs_csv)
    assert planned.get("analyse") == len(runs) - 1  # the runs that were not the best
    assert "train" not in planned and "summarise" not in planned
    # A features head's network is built on demand, only when it is analysed (or probed: the report's
    # strategy figures, once a test above has built the report).
    (head,) = runs[runs["strategy"] == "features"]["run"]
    built = best["strategy"] == "features" or analysed.tree.model(BACKBONE, head).is_file()
    assert planned.get("features_model", 0) == (0 if built else 1)


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


def _image(path):
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_strategies_side_by_side_through_the_report(analysed):
    """Per backbone: CKA against depth, a line per (strategy, tune_depth) best run, and accuracy under
    corruptions, a line per strategy; the runs other than the analysed one are probed, not analysed."""
    L = analysed.layout
    analysed.run("analyses", str(L.report_page), timeout=900)
    tree = analysed.tree
    best = records.read_best(tree.best_json)[BACKBONE]
    lines = {(e["strategy"], e["tune_depth"]): e["run"] for e in best.by_strategy}
    assert set(lines) == {("finetune", 1), ("finetune", 2), ("features", None)}
    # Probes hold CKA and corruptions only: no forward pass of their own, no index of analyses.
    for run in set(lines.values()) - {best.run}:
        probe = tree.probe(BACKBONE, run)
        assert records.CKA.read(probe.cka) is not None and records.CORRUPTIONS.read(probe.corruptions)
        assert not probe.probabilities.exists() and not probe.index.exists()
        assert tree.benchmark("probe", BACKBONE, run).is_file()
    folder = tree.by_strategy(BACKBONE)
    for png in (folder.cka_png, folder.corruptions_png):
        pixels = _image(png)
        assert min(pixels.shape[:2]) > 200 and pixels.std() > 20, png  # a drawn figure, not a blank
    cka = pd.read_csv(folder.cka_csv)
    assert set(cka["run"]) == set(lines.values())  # one line per (strategy, tune_depth) best run
    blocks = cka.groupby("run")["block"].apply(list)
    assert len({tuple(b) for b in blocks}) == 1  # every line over the same blocks
    frozen = cka[~cka["trained"]]
    assert (frozen["cka"] > 0.999).all()  # frozen blocks kept, marked (hollow), at 1.0 as computed
    assert cka[cka["run"] == lines["features", None]]["trained"].sum() == 0  # a features head trains no block
    for depth in (1, 2):  # the last `depth` blocks trained, the ones below stayed frozen
        assert list(cka[cka["run"] == lines["finetune", depth]]["trained"])[-depth - 1 :] == [False] + [True] * depth
    table = pd.read_csv(folder.corruptions_csv)
    drawn = table[table["strategy_best"]]
    opts = analysis_options.resolve(config()["analysis"])["corruptions"]
    want = {(s, c, v) for s in ("finetune", "features") for c in opts["names"] for v in (0, *opts["severities"])}
    assert set(zip(drawn["strategy"], drawn["corruption"], drawn["severity"])) == want
    assert len(drawn) == len(want)
    record = records.BY_STRATEGY.read(folder.record)
    assert "finetune" in record["corruptions_statement"] and "features" in record["corruptions_statement"]
    assert "features kept the base frozen" in record["cka_statement"]
    page = tree.report_page.read_text()
    for png in (folder.cka_png, folder.corruptions_png):
        assert f"by_strategy/{BACKBONE}/{png.name}" in page
    assert record["corruptions_statement"].split(",")[0] in html.unescape(page)


def test_runs_all_analyses_every_line_and_probes_none(analysed):
    edited = copy.deepcopy(analysed.config)
    edited["analysis"]["runs"] = "all"
    analysed.write_config(edited)
    try:
        planned = analysed.planned(str(analysed.layout.report_page))
    finally:
        analysed.write_config(config())
    assert "probe" not in planned and planned.get("strategy_change") == 1
