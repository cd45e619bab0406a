from pathlib import Path

from convscope.entry import job

with job(snakemake, backend=snakemake.params.features["backend"]):
    from convscope.training.features import FeatureSettings, compute_embeddings

    compute_embeddings(
        prepared_dir=Path(snakemake.input.images[0]).parent,
        out_dir=Path(snakemake.output.info).parent,
        features=FeatureSettings(**snakemake.params.features),
        threads=snakemake.threads,
    )
