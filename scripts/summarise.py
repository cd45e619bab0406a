from pathlib import Path

from convscope.analysis.grid_summary import Selection, summarise_grid
from convscope.logs import job_log

with job_log(snakemake.log[0]):
    summarise_grid(
        snakemake.input.metrics,
        Path(snakemake.output.index).parent,
        selection=Selection(**snakemake.params.selection),
    )
