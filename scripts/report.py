from pathlib import Path

from convscope.entry import job
from convscope.report.render import render_report

with job(snakemake):
    render_report(
        results=Path(snakemake.config["results"]),  # the tree rules/common.smk lays out (convscope.layout)
        out_dir=Path(snakemake.output.html).parent,
        options=snakemake.params.options,
        # Shown collapsed in the header. Read from the workflow, not params: params
        # carry only report settings, so editing other keys re-runs only what they affect.
        config=snakemake.config,
        # The compute section's table: only the benchmark files the rule declares.
        benchmarks=list(getattr(snakemake.input, "benchmarks", [])),
    )
