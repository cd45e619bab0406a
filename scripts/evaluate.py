from pathlib import Path

from convscope.entry import job, job_options

# A trained run's test scores (its own job: new test images rescore without retraining).
with job(snakemake, backend=snakemake.params.backend):
    from convscope.training.evaluate import evaluate_model

    evaluate_model(
        model_path=Path(snakemake.input.model),
        fit_path=Path(snakemake.input.fit),
        prepared_dir=Path(snakemake.input.images).parent,
        out_dir=Path(snakemake.output.metrics).parent,
        backend=snakemake.params.backend,
        job=job_options(snakemake),
    )
