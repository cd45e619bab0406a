"""The one convention of scripts/*.py (Snakemake `script:` entry points).

    from convscope.entry import job

    with job(snakemake, backend=snakemake.params.backend):   # backend only for Keras jobs
        from convscope.x import f   # after job(): Keras is imported with the chosen backend
        f(path_in=snakemake.input.x, path_out=snakemake.output.y, **snakemake.params.z)

job() sets up the job's logging (its log file and stderr) and, for jobs that use
Keras, selects the backend before anything imports Keras, with JAX's persistent
compilation cache in the results tree (layout.Results.compile_cache). Every job is
its own process, so Snakemake's benchmark, log and retries describe the real work.
Scripts pass keyword arguments and explicit paths from snakemake.input/output/params;
they hold no logic.
"""

from __future__ import annotations

import contextlib
import time

from convscope.logs import job_log

_started: float | None = None  # when this process's job() began: JobOptions.started


@contextlib.contextmanager
def job(snakemake, *, backend: str | None = None):
    global _started
    _started = time.perf_counter()
    with job_log(snakemake.log[0]) as log:
        if backend is not None:
            from convscope import backend as backend_lib
            from convscope.layout import Results

            cache = Results(snakemake.config["results"]).compile_cache
            backend_lib.select(backend, threads=snakemake.threads, compile_cache=cache)
        yield log


def job_options(snakemake):
    """The job's share of the machine (threads, GPUs, GPU sharing) as a Keras job's JobOptions."""
    from convscope.training.run import JobOptions

    return JobOptions(
        threads=snakemake.threads,
        n_gpus=snakemake.resources.get("gpu", 0),
        jobs_per_gpu=snakemake.config["train"]["jobs_per_gpu"],
        started=_started,
    )


def model_job(snakemake, out_dir) -> dict:
    """The keyword arguments of an analyse or probe job (analyse_model, probe_model): one
    run's model, its prepared test split and run folder, and where the job writes."""
    from pathlib import Path

    from convscope.analysis.run import JobPaths, JobSettings

    return {
        "paths": JobPaths(
            model=Path(snakemake.input.model),
            prepared=Path(snakemake.input.test[0]).parent,
            run=Path(snakemake.input.metrics).parent,
            out=Path(out_dir),
        ),
        "classes": snakemake.params.classes,
        "options": snakemake.params.options,
        "settings": JobSettings(
            backbone=snakemake.wildcards.backbone,
            fresh=True,
            backbone_options=snakemake.params.backbone_options,
        ),
    }
