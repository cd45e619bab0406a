"""The runs table's cheap view of representation change: CKA at the last block per run.

CKA needs the starting weights' activations on the test images, so it runs in the
analyse job (convscope.analysis.standard.cka), not in every training job. The column
therefore has a number only for the runs the report reads an analysis of (each
backbone's best run, when the report shows the backbones or explanations); the other
cells say "n/a" and the table's note says why.
"""

from __future__ import annotations

from pathlib import Path

from convscope import layout, records
from convscope.report import collect

COLUMN = "cka_last_block"
NOT_ANALYSED = "n/a"
NOTE = (
    f"{COLUMN}: linear CKA at the last block between the run and the weights it started from (1 = the same "
    f"representation, near 0 = unrelated). It is measured by the analyse job, not in training, so only the "
    f"analysed runs this report shows (★) have one; {NOT_ANALYSED}: the run was not analysed for this report."
)


def last_block_cka(results: Path, backbone: str, run: str) -> float | None:
    """The run's CKA record's last-block value; None when CKA did not run for it."""
    try:
        found = records.CKA.read(layout.Results(results).analysis(backbone, run).cka)
    except ValueError as e:
        raise collect.ReportInputError(str(e)) from e
    return None if not found else found.get("last_block_cka")


def with_cka(runs: dict, analysed: dict[str, str], results: Path) -> dict:
    """runs (collect.grid_runs) with the CKA column; analysed: {backbone: run} whose analyses the report reads."""
    if not runs["rows"] or not {"backbone", "run"} <= set(runs["columns"]):
        return runs
    rows = []
    for row in runs["rows"]:
        value = None
        if analysed.get(row["backbone"]) == row["run"]:
            value = last_block_cka(results, row["backbone"], row["run"])
        rows.append({**row, COLUMN: NOT_ANALYSED if value is None else f"{float(value):.3f}"})
    return {**runs, "columns": [*runs["columns"], COLUMN], "rows": rows, "note": NOTE}
