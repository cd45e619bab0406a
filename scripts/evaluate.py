from pathlib import Path

from convscope.entry import job_options, warm_job

# A trained run's test scores, in a warm fork like training (config train.warm_start).
warm_job(
    snakemake,
    "convscope.training.evaluate:evaluate_model",
    dict(
        model_path=Path(snakemake.input.model),
        fit_path=Path(snakemake.input.fit),
        prepared_dir=Path(snakemake.input.images).parent,
        out_dir=Path(snakemake.output.metrics).parent,
        backend=snakemake.params.backend,
        job=job_options(snakemake),
    ),
    backend=snakemake.params.backend,
    enabled=snakemake.config["train"]["warm_start"],
)
