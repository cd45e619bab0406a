"""The data shortcut check in the report: images written to disk as the prepare rule leaves them,
the audit's shortcut block computed from them, the report rendered. A red frame planted around
one class is named (property and class) in the data-health card and the audit section; a clean
set gives one quiet line and no warning.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from shapes import SHAPES, shapes_on_clutter
from test_report import OPTIONS, _config, make_results

from convscope import atomic, layout
from convscope.data import audit, shortcuts
from convscope.layout import Results
from convscope.report.render import render_report

OPTS = {"enabled": True, "auc": 0.95}  # the schema's defaults for audit.shortcuts


def _prepared(folder, planted: bool, seed: int):
    """The three shapes on clutter as prepared train/test memmaps; with `planted`, triangles framed in red."""
    x, y, _ = shapes_on_clutter(40, seed)
    x = x.copy()
    if planted:
        sel = y == SHAPES.index("triangle")
        for edge in (np.s_[:, :3], np.s_[:, -3:], np.s_[:, :, :3], np.s_[:, :, -3:]):
            sub = x[sel]
            sub[edge] = (230, 20, 20)
            x[sel] = sub
    half = len(y) // 2
    order = np.random.default_rng(seed).permutation(len(y))
    for split, idx in (("train", order[:half]), ("test", order[half:])):
        np.save(layout.prepared_in(folder, split), x[idx])
        np.save(layout.prepared_in(folder, split, layout.PREPARED_LABELS), y[idx])
        files = [f"{SHAPES[y[i]]}/{i:04d}.png" for i in idx]
        pd.DataFrame({"file": files}).to_csv(layout.prepared_in(folder, split, layout.PREPARED_INDEX), index=False)


def _report(tmp_path, planted: bool, seed: int = 0) -> str:
    """The rendered report of a results tree whose one audited backbone carries the shortcut block."""
    R = make_results(tmp_path / "results", classes=SHAPES, backbones=("alexnet",))
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    _prepared(prepared, planted, seed)
    block = shortcuts.audit_block(prepared, list(SHAPES), OPTS, seed)
    res = Results(R)
    res.audit_dir("alexnet").mkdir(parents=True, exist_ok=True)
    atomic.write_csv(res.label_issues("alexnet"), [], audit.ISSUE_COLUMNS)
    atomic.write_csv(res.leakage("alexnet"), [], audit.LEAK_COLUMNS)
    summary = {"images": 120, "label_issues": 0, "folds": 5, "near_twin_pairs": 0, "test_images": 60}
    summary |= {"test_with_train_twin": 0, "test_twin_files": [], "shortcuts": block}
    res.audit_summary("alexnet").write_text(json.dumps(summary))
    out = render_report(R, res.report_dir, OPTIONS, False, config=_config(list(SHAPES)))
    return out["html"].read_text()


def _warnings(text: str) -> list[str]:
    return re.findall(r'<p class="warning shortcut">(.*?)</p>', text, flags=re.S)


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_border_is_named_in_card_and_audit(tmp_path, seed):
    """Triangles framed in red: the card's shortcut line and the audit section both warn, naming both."""
    text = _report(tmp_path, planted=True, seed=seed)
    warnings = _warnings(text)
    assert len(warnings) == 2, warnings  # the data-health card and the audit section
    for w in warnings:
        assert "triangle: " in w and "border_red" in w
        assert "disk:" not in w and "square:" not in w
    card = text[text.index("Data health") :]
    assert "<b>shortcuts (alexnet):</b> 1 class(es) sorted from the rest" in card and "(triangle)" in card


def test_clean_set_gives_a_quiet_line(tmp_path):
    """Shapes of random colour on clutter (largest AUC 0.60-0.61 in test_shortcuts): no warning, one quiet line."""
    text = _report(tmp_path, planted=False)
    assert _warnings(text) == []
    assert "<b>shortcuts (alexnet):</b> 0 class(es) sorted from the rest" in text
    assert "No simple image property alone predicts a class." in text
