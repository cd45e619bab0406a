from pathlib import Path

from convscope.logs import job_log

with job_log(snakemake.log[0]):
    from convscope.training.pretrain import pretrain

    pretrain(
        raw_root=snakemake.params.raw,
        out_dir=Path(snakemake.output.weights).parent,
        threads=snakemake.threads,
        **snakemake.params.pretrain,
    )
