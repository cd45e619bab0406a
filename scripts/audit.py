from pathlib import Path

from convscope.entry import job

with job(snakemake, backend=snakemake.params.backend):  # Keras only for audit.label_model cnn
    from convscope.data.audit import AuditPaths, run_audit

    run_audit(
        features_dir=Path(snakemake.input.embeddings[0]).parent,
        prepared_dir=Path(snakemake.input.index[0]).parent,
        classes=snakemake.params.classes,
        options=snakemake.params.options,
        out=AuditPaths(Path(snakemake.output.issues), Path(snakemake.output.leakage), Path(snakemake.output.summary)),
    )
