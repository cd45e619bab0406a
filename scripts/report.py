from pathlib import Path

from convscope.logs import job_log
from convscope.report.render import render_report

with job_log(snakemake.log[0]):
    render_report(
        Path(snakemake.output.html).parent.parent,  # the results folder
        Path(snakemake.output.html).parent,
        snakemake.params.options,
        # Shown collapsed in the header. Read from the workflow, not params: params
        # carry only report settings, so editing other keys re-runs only what they affect.
        config=snakemake.config,
    )
