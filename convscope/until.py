"""`snakemake --until RULE` past the split checkpoint: say why the run stopped and what to run.

Snakemake plans the jobs after a checkpoint again once it has run, and in that second
plan (Snakemake 9.27) the `--until` targets after the checkpoint are dropped: the call
ends with exit 0 after split ("5 of 20 steps"). A second call, with split up to date,
goes on to the rule. rules/common.smk's onsuccess prints this module's line then.
"""

from __future__ import annotations

import os

BEFORE_SPLIT = ("crawl", "clean", "split")  # the rules --until reaches in one call


def stopped_early(workflow) -> str | None:
    """The line saying --until stopped at the split checkpoint, or None when it did not."""
    until = set(workflow.dag_settings.until or ())
    dag = workflow.dag
    if not until or dag is None or workflow.dryrun:
        return None
    rules = {r.name for r in workflow.rules}
    finished = {j.rule.name for j in dag.jobs if dag.finished(j)}
    if "split" not in finished:
        return None  # split did not run in this call: --until was planned once and holds
    missing = sorted(u for u in until if u in rules and u not in BEFORE_SPLIT and u not in finished)
    missing += sorted(u for u in until if u not in rules and not os.path.exists(u))
    if not missing:
        return None
    return (
        f"stopped after the split checkpoint, before {', '.join(missing)}: Snakemake plans the jobs after "
        f"split again once it has run, and drops --until's targets then; run the same command again to go on "
        f"(split is up to date now)"
    )
