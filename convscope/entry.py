"""The one convention of scripts/*.py (Snakemake `script:` entry points).

    from convscope.entry import job

    with job(snakemake, backend=snakemake.params.backend):   # backend only for Keras jobs
        from convscope.x import f   # after job(): Keras is imported with the chosen backend
        f(path_in=snakemake.input.x, path_out=snakemake.output.y, **snakemake.params.z)

job() sets up the job's logging (its log file and stderr) and, for jobs that use
Keras, selects the backend before anything imports Keras. Scripts pass keyword
arguments and explicit paths from snakemake.input/output/params; they hold no logic.
"""

from __future__ import annotations

import contextlib

from convscope.logs import job_log


@contextlib.contextmanager
def job(snakemake, *, backend: str | None = None):
    with job_log(snakemake.log[0]) as log:
        if backend is not None:
            from convscope import backend as backend_lib

            backend_lib.select(backend, threads=snakemake.threads)
        yield log


def job_options(snakemake):
    """The job's share of the machine (threads, GPUs, GPU sharing) as a Keras job's JobOptions."""
    from convscope.training.run import JobOptions

    return JobOptions(
        threads=snakemake.threads,
        n_gpus=snakemake.resources.get("gpu", 0),
        jobs_per_gpu=snakemake.config["train"]["jobs_per_gpu"],
    )


def warm_job(snakemake, target: str, kwargs: dict, *, backend: str, enabled: bool = True) -> None:
    """job() for Keras jobs that run in a warm fork (convscope.warm, config train.warm_start).

    The fork, not this process, sets up logging and selects the backend, so
    this process never imports Keras; `target` ("module:function") is then
    called with `kwargs`, as a script would inside job().
    """
    from convscope import warm

    call = {"log": snakemake.log[0], "threads": snakemake.threads, "backend": backend, "target": target}
    warm.call("convscope.entry:_in_job", {**call, "kwargs": kwargs}, backend=backend, enabled=enabled)


def _in_job(*, log, threads, backend, target, kwargs) -> None:
    from convscope import backend as backend_lib
    from convscope import warm

    with job_log(log):
        backend_lib.select(backend, threads=threads)
        warm.resolve(target)(**kwargs)
