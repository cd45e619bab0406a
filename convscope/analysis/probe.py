"""A probe: CKA and corruptions only, for a strategy's best run that is not analysed in full.

The cross-run figures (convscope.analysis.grid.by_strategy) draw a line for the best run of
each (strategy, tune_depth) of a backbone. The analysed run has its CKA and corruption
records from its analyse job; every other such run gets a probe job (rules/analyse.smk
`probe`): the model loaded once, no forward pass of its own, and the same two steps the
analyse job runs (convscope.analysis.run.PROBE_STEPS), written to analysis/probes/{backbone}/{run}/.

Importing this module is cheap (the rules ask `params` at parse time).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

# The config keys of `analysis` a probe's output depends on (the probe rule's params).
OPTIONS = ("cka", "corruptions", "batch_size", "seed")


def params(analysis_params: dict) -> dict:
    """The probe rule's params: of the analyse rule's options (config.analysis_params), those OPTIONS names."""
    return {k: v for k, v in analysis_params.items() if k in OPTIONS}


def probe_model(paths, classes, options, settings) -> dict[str, Path]:
    """CKA and corruption records of one model in paths.out; returns {record name: path}.

    paths, settings: convscope.analysis.run.JobPaths and JobSettings (forward is forced off:
    neither step reads the test probabilities). A step that is off in config, or cannot run
    (no starting base to compare with), leaves a "not run" record, as in the analyse job.
    """
    from convscope import layout
    from convscope.analysis.run import PROBE_STEPS, mark_not_run, open_job

    start = time.perf_counter()
    job = open_job(paths, classes, options, dataclasses.replace(settings, forward=False))
    for name, step in PROBE_STEPS:
        with job.timer(name):
            step(job)
    mark_not_run(job.out_dir, layout.PROBED)
    log.info("probe of %s: %.1f s (%s)", paths.run, time.perf_counter() - start, job.timer.seconds)
    records = layout.AnalysisFolder(job.out_dir).records
    return {name: records[name] for name in layout.PROBED}
