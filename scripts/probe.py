from pathlib import Path

from convscope.entry import job

with job(snakemake, backend=snakemake.params.backend):
    from convscope.analysis.probe import probe_model
    from convscope.analysis.run import JobPaths, JobSettings

    probe_model(
        paths=JobPaths(
            model=Path(snakemake.input.model),
            prepared=Path(snakemake.input.test[0]).parent,
            run=Path(snakemake.input.metrics).parent,
            out=Path(snakemake.output.cka).parent,
        ),
        classes=snakemake.params.classes,
        options=snakemake.params.options,
        settings=JobSettings(
            backbone=snakemake.wildcards.backbone,
            fresh=True,
            backbone_options=snakemake.params.backbone_options,
        ),
    )
