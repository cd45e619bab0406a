from pathlib import Path

from convscope.analysis.grid.summary import Selection, summarise_grid
from convscope.entry import job

with job(snakemake):
    summarise_grid(
        metric_files=snakemake.input.metrics,
        out_dir=Path(snakemake.output.index).parent,
        selection=Selection(**snakemake.params.selection),
    )
