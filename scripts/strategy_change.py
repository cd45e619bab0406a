from pathlib import Path

from convscope.entry import job

with job(snakemake):
    from convscope.analysis.grid.by_strategy import from_best

    from_best(
        best_json=snakemake.input.best,
        backbone=snakemake.wildcards.backbone,
        cka_files=snakemake.input.cka,
        corruption_files=snakemake.input.corruptions,
        out_dir=Path(snakemake.output.index).parent,
    )
