"""The report says everything it measured, in words true to the run (issue 28, part 4).

Each test reproduces one place where the findings or captions misled on a real set:
a strategy pair left out, a verdict column off-screen, a "pass" badge over failing
methods, fine-tuning wording for a scratch run, clipped figure titles, and a
temperature that made calibration worse without a word.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_report import OPTIONS, Page, _config, make_results

from convscope import layout, records
from convscope.layout import Results
from convscope.report import findings
from convscope.report.render import render_report


def _comparison_row(a, acc_a, b, acc_b):
    from convscope.analysis.grid import paired

    correct_a = [True] * int(acc_a * 100) + [False] * (100 - int(acc_a * 100))
    correct_b = [True] * int(acc_b * 100) + [False] * (100 - int(acc_b * 100))
    row = paired.compare(
        paired.Arm(a, acc_a, (acc_a - 0.03, acc_a + 0.02), correct_a),
        paired.Arm(b, acc_b, (acc_b - 0.03, acc_b + 0.02), correct_b),
    )
    return {"backbone": "alexnet", "strategy_a": a, "strategy_b": b, **row}


def test_every_strategy_pair_is_compared():
    """Scratch and features alone: the better features head is said, not only scratch's number."""
    rows = [_comparison_row("scratch", 0.96, "features", 0.98), _comparison_row("finetune", 0.9, "progressive", 0.91)]
    lines = findings.strategy_lines("alexnet", rows)
    assert [line["pair"] for line in lines] == ["scratch vs features", "finetune vs progressive"]
    assert "features scores higher than scratch on test accuracy (0.980 vs 0.960)" in lines[0]["text"]
    assert findings.strategy_lines("resnet50", rows) == []


def test_comparison_verdicts_read_above_the_table(tmp_path):
    """The sentence of each comparison is a line above the table, and no longer a squeezed last column."""
    from convscope.analysis.grid import summary

    R = make_results(tmp_path / "results", backbones=("alexnet",))
    res = Results(R)
    table = pd.DataFrame(
        {
            "backbone": ["alexnet"] * 2,
            "strategy": ["scratch", "features"],
            "run": ["scratch-a", "features-b"],
            "val_accuracy": [0.95, 0.97],
            "test_accuracy": [0.961, 0.982],
            "test_ci95_low": [0.93, 0.96],
            "test_ci95_high": [0.98, 0.99],
        }
    )
    sec = summary.strategy_comparison(table, res.grid_dir)
    index = json.loads((res.grid_dir / "index.json").read_text())
    index["sections"] = [s for s in index["sections"] if s["id"] != "strategies"] + [sec]
    (res.grid_dir / "index.json").write_text(json.dumps(index))
    out = render_report(R, res.report_dir, OPTIONS, False, config=_config(["circle", "square", "triangle"]))
    text = out["html"].read_text()
    statement = pd.read_csv(res.grid_dir / "comparisons.csv")["statement"][0]
    start = text.index('id="grid-strategies"') if 'id="grid-strategies"' in text else text.index("Strategy comparison")
    part = text[start:]
    verdicts = part.index('<ul class="verdicts">')
    assert statement in part[verdicts : part.index("</ul>", verdicts)]
    table_html = part[part.index("<table", verdicts) : part.index("</table>", verdicts)]
    assert "strategy_a" in table_html and "statement" not in table_html and statement not in table_html


def _analysis_folder(path) -> layout.AnalysisFolder:
    """An analysis folder as the analyse job leaves it when every analysis was off."""
    folder = layout.AnalysisFolder(path)
    folder.explain.path.mkdir(parents=True, exist_ok=True)
    for name, record in folder.records.items():
        records.ANALYSIS_RECORDS[name].not_run(record, "off in this test")
    return folder


def _sanity_folder(tmp_path, verdicts: dict):
    folder = _analysis_folder(tmp_path / "run")
    methods = {m: {"passed": ok} for m, ok in verdicts.items()}
    records.SANITY.write(folder.explain.sanity, {"threshold": 0.5, "images": 8, "stages": [], "methods": methods})
    return folder


def test_sanity_badge_counts_the_methods(tmp_path):
    """Grad-CAM passing does not make the badge "pass" while 5 of 10 methods fail."""
    names = ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "scorecam", "saliency", "ig", "sg"]
    half = _sanity_folder(tmp_path, {m: k < 5 for k, m in enumerate(names)})
    check = findings.sanity_check(half)
    assert check.passed is False and check.badge == "5 of 10 passed"
    assert check.text.startswith("5 of 10 methods passed")
    card = findings.backbone_card("alexnet", {"run": "run"}, tmp_path, [], analysed=False)
    assert card["checks_badge"] is None
    every = findings.sanity_check(_sanity_folder(tmp_path / "all", {m: True for m in names}))
    assert every.passed is True and every.badge == "10 of 10 passed"


def test_findings_badge_says_n_of_m(tmp_path):
    """The card's heading badge counts checks, rendered in the page."""
    R = make_results(tmp_path / "results", backbones=("alexnet",))
    res = Results(R)
    best = json.loads(res.best_json.read_text())
    run = best["alexnet"]["run"]
    a = res.analysis("alexnet", run)
    a.explain.path.mkdir(exist_ok=True)
    methods = {"gradcam": {"passed": True}, "eigencam": {"passed": False}, "ig": {"passed": False}}
    records.SANITY.write(a.explain.sanity, {"threshold": 0.5, "images": 8, "stages": [], "methods": methods})
    records.POINTING.write(
        a.explain.pointing,
        {"images": 40, "chance": 0.2, "centre_baseline": 0.5, "methods": {"gradcam": {"accuracy": 0.8}}},
    )
    out = render_report(R, res.report_dir, OPTIONS, False, config=_config(["circle", "square", "triangle"]))
    text = out["html"].read_text()
    part = text[text.index('id="findings"') : text.index('id="data"')]
    assert '<span class="badge fail">1 of 2 checks passed</span>' in part
    assert '<span class="badge fail">1 of 3 passed</span> randomisation sanity' in part
    assert '<span class="badge pass">pass</span> pointing game' in part
    assert Page(text).scripts >= 0


@pytest.mark.parametrize(
    ("strategy", "weights", "title", "before"),
    [
        ("scratch", "imagenet", "Change from the random initial weights", "random init"),
        ("finetune", "none", "Change from the random initial weights", "random init"),
        ("finetune", "imagenet", "Change from the ImageNet weights", "ImageNet"),
        ("finetune", "results/pretrained/alexnet/base.weights.h5", "Change from the base pretrained", "pretrained"),
    ],
)
def test_change_wording_follows_the_start(strategy, weights, title, before):
    from convscope.analysis.standard.change import start_of

    start = start_of(strategy, weights)
    assert start.title.startswith(title) and start.before == before
    scratch = strategy == "scratch" or weights == "none"
    assert ("fine-tun" in f"{start.title} {start.what} {start.training} {start.after}") is not scratch


def test_scratch_change_section_never_says_fine_tuning(tmp_path):
    """The change section of a run that started from random weights, as written to disk."""
    from convscope.analysis.explain import figures
    from convscope.analysis.standard.change import Comparison, start_of

    class Pictures:
        images = np.zeros((1, 16, 16, 3), np.float32)

    result = {
        "reference": Pictures(),
        "finetuned": Pictures(),
        "rows": [
            {
                "channel": 3,
                "cosine_similarity": 0.2,
                "reference_dead": False,
                "finetuned_dead": False,
                "reference_gray": False,
                "finetuned_gray": False,
            }
        ],
        "dead": {"layer": "conv5", "channels": 8, "test_images": 5, "reference_dead": [], "finetuned_dead": [1]},
    }
    weights = [{"layer": "conv5", "relative_change": 1.3}]
    what = Comparison("conv5", [3], "conv5", (16, 16), settings=None, gray_std=0.02)
    sec = figures.change_section(result, weights, what, tmp_path, tmp_path, start_of("scratch", "imagenet"))
    words = json.dumps(sec)
    assert sec["title"] == "Change from the random initial weights"
    assert "fine-tun" not in words and "pretrained" not in words
    assert "after training from scratch" in words


@pytest.mark.parametrize(("n", "ncols", "tile_px"), [(2, 1, 64), (4, 2, 32), (1, 1, 16), (9, 3, 96), (12, None, 48)])
def test_figure_titles_are_never_clipped(tmp_path, n, ncols, tile_px):
    """Long headings and tile titles wrap inside the picture: no ink touches its left, right or top edge."""
    from convscope.analysis import plots

    images = [np.full((tile_px, tile_px, 3), 255, np.uint8)] * n
    path = plots.image_grid(
        images,
        tmp_path / "grid.png",
        titles=["circle -> triangle 0.99, a long tile title"] * n,
        style=plots.GridStyle(
            ncols=ncols,
            tile_px=tile_px,
            suptitle="Most confident mistakes (predicted class and probability, true class)",
        ),
    )
    ink = np.asarray(Image.open(path).convert("L")) < 200
    assert ink.any(), "the titles were drawn"
    assert not ink[:, :2].any() and not ink[:, -2:].any() and not ink[:2].any()


def test_titles_that_fit_stay_on_one_line():
    from convscope.analysis import plots

    assert plots.wrap_to_width("Occlusion 16px patches, stride 8", 9, 400) == "Occlusion 16px patches, stride 8"
    wrapped = plots.wrap_to_width("Occlusion 16px patches, stride 8", 9, 80)
    assert wrapped.replace("\n", " ") == "Occlusion 16px patches, stride 8"
    assert all(plots.text_width_px(line, 9) <= 80 for line in wrapped.split("\n"))


def test_worse_calibration_is_said(tmp_path):
    """ECE 0.018 -> 0.022 at T = 0.74: the findings say to keep the probabilities as trained."""
    folder = _analysis_folder(tmp_path / "run")
    records.CALIBRATION.write(folder.calibration, {"temperature": 0.74, "ece_before": 0.018, "ece_after": 0.022})
    line = findings.model_line("alexnet", {"run": "r", "test_accuracy": 0.9}, folder)
    assert any("0.018 → 0.022" in d and "worse than as trained" in d for d in line["details"])
    records.CALIBRATION.write(folder.calibration, {"temperature": 1.8, "ece_before": 0.12, "ece_after": 0.03})
    line = findings.model_line("alexnet", {"run": "r", "test_accuracy": 0.9}, folder)
    assert not any("worse" in d for d in line["details"])


def test_findings_carry_the_cka_and_corruption_sentences(tmp_path):
    """The sentences the analyses wrote (cka.json, corruptions.json) open the model's card."""
    from convscope import layout
    from convscope.analysis.standard import change, cka
    from convscope.analysis.trust import corruptions

    folder = _analysis_folder(tmp_path / "run").path
    rows = [
        {"block": "conv1", "trained": False, "cka": 1.0},
        {"block": "conv2", "trained": True, "cka": 0.62},
        {"block": "conv3", "trained": True, "cka": 0.41},
    ]
    cka.cka_section(rows, folder, change.start_of("finetune", "imagenet"), cka.Thresholds(0.95, 0.2), 30)
    table = [
        {"corruption": "gaussian_noise", "severity": 0, "accuracy": 0.9},
        {"corruption": "gaussian_noise", "severity": 3, "accuracy": 0.81},
    ]
    corruptions.robustness_section(table, folder, "finetune", 30)
    assert layout.AnalysisFolder(folder).cka_png.is_file() and layout.AnalysisFolder(folder).corruptions_png.is_file()
    line = findings.model_line("alexnet", {"run": "r"}, layout.AnalysisFolder(folder))
    assert (
        line["change"] == "Fine-tuning changed conv2–conv3 (CKA 0.62, 0.41); conv1 stayed frozen (1.0 by construction)."
    )
    assert line["robustness"].startswith("finetune keeps 0.81 under Gaussian noise at severity 3")
