from pathlib import Path

from convscope.data.audit import AuditPaths, run_audit
from convscope.logs import job_log

with job_log(snakemake.log[0]):
    run_audit(
        Path(snakemake.input.embeddings[0]).parent,
        Path(snakemake.input.index[0]).parent,
        snakemake.params.classes,
        snakemake.params.options,
        AuditPaths(Path(snakemake.output.issues), Path(snakemake.output.leakage), Path(snakemake.output.summary)),
    )
