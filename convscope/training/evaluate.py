"""The evaluate job: a run's test-split scores, added to its fit.json as metrics.json.

A job of its own (rule evaluate) so that no training job reads the test split: an
edit that changes only the test images (a review line dropping one) reruns this
job, never the training. Trained runs are scored by their model.keras on the
prepared test arrays; features heads by head.npz on the test embeddings (no Keras).
Writes test_predictions.csv (what the grid summary's paired tests compare), then
metrics.json, last: the run's "complete" mark.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from convscope import layout, records
from convscope.training import metrics

log = logging.getLogger(__name__)


def evaluate_model(*, model_path, fit_path, prepared_dir, out_dir, backend: str = "tensorflow", job=None) -> dict:
    """Score a trained run's model.keras on the prepared test split; returns metrics.json's dict.

    job: convscope.training.run.JobOptions (threads, GPUs, GPU sharing).
    """
    from convscope import backend as backend_lib
    from convscope.training.run import JobOptions, distribution_for

    job = job or JobOptions.cpu()
    t0 = time.perf_counter() if job.started is None else job.started
    backend_lib.select(backend, threads=job.threads, jobs_per_gpu=job.jobs_per_gpu)
    from convscope.models import build
    from convscope.training import data

    fit = records.read_fit(fit_path)
    t_imported = time.perf_counter()
    test = data.MemmapDataset(
        *data.split_paths(prepared_dir, "test"),
        int(fit.hp["batch_size"]),
        len(fit.classes),
        data.Reading(for_predict=True, workers=job.threads),
    )
    with distribution_for(job.n_gpus) as replicas:
        model = build.load_model(model_path, compile=False)
        t_loaded = time.perf_counter()
        scores = data.predict(model, test, replicas)
    costs = {
        "imports": round(t_imported - t0, 3),
        "load": round(t_loaded - t_imported, 3),
        "predict": round(time.perf_counter() - t_loaded, 3),
    }
    return _finish(fit, (test.y, scores), Path(out_dir), costs)


def evaluate_head(*, head_path, fit_path, features_dir, prepared_dir, out_dir) -> dict:
    """Score a features head on the test embeddings; returns metrics.json's dict."""
    from convscope.training import features

    t0 = time.perf_counter()
    fit = records.read_fit(fit_path)
    X, y = features.load_arrays(Path(features_dir), Path(prepared_dir), splits=("test",))
    scores = features.head_scores(head_path, X["test"])
    return _finish(fit, (y["test"], scores), Path(out_dir), {"predict": round(time.perf_counter() - t0, 3)})


def _finish(fit: records.RunMetrics, test: tuple, out: Path, costs: dict) -> dict:
    """test_predictions.csv, then metrics.json: fit.json with the test scores and this job's costs."""
    y, scores = test
    report = metrics.test_section((y, scores), list(fit.classes), bootstrap=fit.extra["bootstrap"])
    records.write_predictions(out / layout.PREDICTIONS, y, scores)
    done = dataclasses.replace(fit, test=report, extra={**fit.extra, "evaluate_s": costs})
    records.write_metrics(out / layout.METRICS, done)
    log.info(
        "run %s/%s: test accuracy %.3f (95%% CI %.3f-%.3f) on %d images",
        fit.backbone,
        fit.run,
        report["accuracy"],
        *report["accuracy_ci95"],
        report["n"],
    )
    return done.to_json()
