from pathlib import Path

from convscope.entry import job

with job(snakemake, backend=snakemake.params.backend):
    from convscope.analysis.run import analyse_model

    analyse_model(
        model_path=Path(snakemake.input.model),
        prepared_dir=Path(snakemake.input.test[0]).parent,
        run_dir=Path(snakemake.input.metrics).parent,
        out_dir=Path(snakemake.output.index).parent,
        classes=snakemake.params.classes,
        options=snakemake.params.options,
        backbone=snakemake.wildcards.backbone,
        fresh=True,
        backbone_options=snakemake.params.backbone_options,
    )
