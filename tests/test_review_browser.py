"""The report's review download in a real headless Chromium: pick decisions under images,
click the button, and the file that lands on disk is a review.csv clean can read."""

from __future__ import annotations

import csv
import json

import pytest
from test_report import OPTIONS, _config, make_results
from test_report_browser import CHROMIUM, REPORT_PAGE, Browser, assert_page_ok, serve

from convscope.data.review import read_review
from convscope.layout import Results
from convscope.report.render import render_report

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed")
CLASSES = ["circle", "square", "triangle"]


def _audit(R, backbone="alexnet"):
    """An audit of one backbone over make_results' files: one label issue, one leakage pair."""
    res = Results(R)
    res.audit_dir(backbone).mkdir(parents=True)
    with open(res.label_issues(backbone), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "file", "split", "given", "suggested", "score", "issue"])
        w.writerow([1, "circle/000003.png", "train", "circle", "square", 0.97, True])
        w.writerow([2, "square/000004.png", "test", "square", "square", 0.1, False])
    with open(res.leakage(backbone), "w", newline="") as f:
        csv.writer(f).writerows(
            [
                ["split", "file", "twin_split", "twin", "residual", "similarity", "found_by", "criterion"],
                ["test", "square/000004.png", "train", "square/000005.png", 0.001, 0.995, "pixels", "residual"],
            ]
        )
    res.audit_summary(backbone).write_text(
        json.dumps(
            {
                "images": 18,
                "label_issues": 1,
                "folds": 5,
                "leakage_criterion": "aligned pixel residual <= 0.02",
                "label_criterion": "cleanlab self-confidence",
                "near_twin_pairs": 1,
                "test_images": 4,
                "test_with_train_twin": 1,
                "test_twin_files": ["square/000004.png"],
            }
        )
    )


def test_review_file_downloads_from_the_page(tmp_path):
    R = make_results(tmp_path / "results", classes=CLASSES)
    _audit(R)
    options = {**OPTIONS, "sections": ["data", "audit"]}
    render_report(R, Results(R).report_dir, options, False, config=_config(CLASSES, **options))
    saved = tmp_path / "downloaded-review.csv"
    b = Browser()
    try:
        with serve(R) as base:
            b.load(f"{base}/{REPORT_PAGE}")
            assert_page_ok(b)  # the CSP lets the script run: no violation, nothing blocked
            b.evaluate("""(() => {
                const pick = (file, value) => document.querySelectorAll(`select.review-pick[data-file="${file}"]`)
                  .forEach(s => { s.value = value; s.dispatchEvent(new Event('change', {bubbles: true})); });
                pick('circle/000003.png', 'relabel:square');
                pick('square/000004.png', 'drop');
            })()""")
            assert b.evaluate("document.getElementById('review-count').textContent") == "2 decisions"
            with b.page.expect_download() as download:
                b.page.click("#review-download")
            assert download.value.suggested_filename == "review.csv"
            download.value.save_as(saved)
            assert not b.problems(), b.problems()
    finally:
        b.close()
    text = saved.read_text()
    assert text == "file,action,new_class\ncircle/000003.png,relabel,square\nsquare/000004.png,drop,\n"
    assert read_review(saved, CLASSES) == {
        "circle/000003.png": {"action": "relabel", "new_class": "square"},
        "square/000004.png": {"action": "drop", "new_class": ""},
    }
