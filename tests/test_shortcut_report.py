"""The data shortcut check in the report: images written to disk as the prepare rule leaves them,
the audit rule's own call (convscope.data.audit.run_audit) on them, the report rendered. A red frame planted around
one class is named (property and class) in the data-health card and the audit section; a clean
set gives one quiet line and no warning.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from shapes import SHAPES, shapes_on_clutter
from test_report import OPTIONS, _config, make_results

from convscope import layout
from convscope.data import audit
from convscope.layout import Results
from convscope.report.render import render_report

OPTS = {"enabled": True, "auc": 0.95}  # the schema's defaults for audit.shortcuts


def _prepared(folder, features, planted: bool, seed: int):
    """The three shapes on clutter as the prepare rule leaves them (train/val/test memmaps, labels, index),
    with `planted` the triangles framed in red; and, standing in for the embed rule, 8 x 8 mean-pooled
    pixels as each split's embeddings."""
    x, y, _ = shapes_on_clutter(40, seed)
    x = x.copy()
    if planted:
        sel = y == SHAPES.index("triangle")
        for edge in (np.s_[:, :3], np.s_[:, -3:], np.s_[:, :, :3], np.s_[:, :, -3:]):
            sub = x[sel]
            sub[edge] = (230, 20, 20)
            x[sel] = sub
    order = np.random.default_rng(seed).permutation(len(y))
    for split, idx in zip(layout.SPLITS, np.array_split(order, [60, 90])):
        np.save(layout.prepared_in(folder, split), x[idx])
        np.save(layout.prepared_in(folder, split, layout.PREPARED_LABELS), y[idx])
        files = [f"{SHAPES[y[i]]}/{i:04d}.png" for i in idx]
        pd.DataFrame({"file": files}).to_csv(layout.prepared_in(folder, split, layout.PREPARED_INDEX), index=False)
        pooled = x[idx].reshape(len(idx), 8, 4, 8, 4, 3).mean(axis=(2, 4)).reshape(len(idx), -1)
        np.save(layout.embedding_in(features, split), pooled.astype(np.float32))


def _report(tmp_path, planted: bool, seed: int = 0) -> str:
    """The rendered report of a results tree whose one audited backbone went through the audit's own call."""
    R = make_results(tmp_path / "results", classes=SHAPES, backbones=("alexnet",))
    prepared, features = tmp_path / "prepared", tmp_path / "features"
    prepared.mkdir()
    features.mkdir()
    _prepared(prepared, features, planted, seed)
    res = Results(R)
    res.audit_dir("alexnet").mkdir(parents=True, exist_ok=True)
    out = audit.AuditPaths(res.label_issues("alexnet"), res.leakage("alexnet"), res.audit_summary("alexnet"))
    options = {"folds": 3, "seed": seed, "label_model": "embeddings", "shortcuts": OPTS}
    audit.run_audit(features, prepared, list(SHAPES), options, out)
    page = render_report(R, res.report_dir, OPTIONS, False, config=_config(list(SHAPES)))
    return page["html"].read_text()


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
