from pathlib import Path

from convscope.entry import job

with job(snakemake, backend=snakemake.params.pretrain["backend"]):
    from convscope.training.pretrain import PretrainSpec, pretrain

    pretrain(
        raw_root=Path(snakemake.params.raw),
        out_dir=Path(snakemake.output.weights).parent,
        spec=PretrainSpec(**snakemake.params.pretrain),
        threads=snakemake.threads,
    )
