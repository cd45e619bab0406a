from pathlib import Path

from convscope.analysis.grid_summary import summarise_grid
from convscope.entry import job

with job(snakemake):
    summarise_grid(metric_files=snakemake.input.metrics, out_dir=Path(snakemake.output.index).parent)
