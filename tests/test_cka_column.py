"""The runs table's CKA column (convscope.report.cka_column): the last block's CKA for the analysed
runs, read from the cka.json the analyse job wrote; "n/a" for every other run, and the caption says why.
"""

from __future__ import annotations

import html
import json
import re

from test_report import OPTIONS, _config, make_results

from convscope.analysis.standard import change, cka
from convscope.layout import Results
from convscope.report.render import render_report

CLASSES = ["circle", "square", "triangle"]


def _runs_table(text: str) -> tuple[list[str], dict[str, list[str]], str]:
    """(header, {(backbone, run): cells}, caption) of the page's runs table."""
    table = text[text.index('id="runs"') : text.index("</table>", text.index('id="runs"'))]
    caption = re.search(r"<caption>(.*?)</caption>", table, re.S)
    header = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", table)]
    rows = {}
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)[1:]:
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
        rows[cells[header.index("backbone")], cells[header.index("run")]] = cells
    return header, rows, caption.group(1) if caption else ""


def _tree(tmp_path):
    R = make_results(tmp_path / "results", backbones=("mobilenetv2", "alexnet"))
    res = Results(R)
    best = json.loads(res.best_json.read_text())
    run = best["alexnet"]["run"]
    rows = [
        {"block": "conv1", "trained": False, "cka": 1.0},
        {"block": "conv5", "trained": True, "cka": 0.412},
    ]
    # Written by the analyse job's own writer; mobilenetv2's best run has CKA "not run".
    cka.cka_section(
        rows, res.analysis_dir("alexnet", run), change.start_of("finetune", "imagenet"), cka.Thresholds(0.95, 0.2), 30
    )
    return R, res, run


def test_analysed_run_has_its_last_block_cka(tmp_path):
    R, res, run = _tree(tmp_path)
    out = render_report(R, res.report_dir, OPTIONS, False, config=_config(CLASSES))
    header, rows, caption = _runs_table(out["html"].read_text())
    col = header.index("cka_last_block")
    assert rows["alexnet", run][col] == "0.412"
    others = [cells[col] for key, cells in rows.items() if key != ("alexnet", run)]
    assert len(others) == 3 and set(others) == {"n/a"}  # not analysed, or CKA did not run for it
    assert "only the analysed runs this report shows" in caption and "n/a: the run was not analysed" in caption


def test_without_analyses_in_the_report_every_cell_is_na(tmp_path):
    """With no backbones or explanations section the report does not read (nor depend on) any cka.json."""
    R, res, run = _tree(tmp_path)
    options = {**OPTIONS, "sections": ["grid"]}
    out = render_report(R, res.report_dir, options, False, config=_config(CLASSES))
    header, rows, _ = _runs_table(out["html"].read_text())
    col = header.index("cka_last_block")
    assert {cells[col] for cells in rows.values()} == {"n/a"}
