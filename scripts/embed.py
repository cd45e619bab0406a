from pathlib import Path

from convscope.entry import job

# One split's embeddings: the test split's change alone when only test images do.
with job(snakemake, backend=snakemake.params.features["backend"]):
    from convscope.training.features import FeatureSettings, compute_embeddings

    compute_embeddings(
        prepared_dir=Path(snakemake.input.images).parent,
        out_dir=Path(snakemake.output.info).parent,
        features=FeatureSettings(**snakemake.params.features),
        num_classes=snakemake.params.num_classes,
        threads=snakemake.threads,
        splits=(snakemake.wildcards.split,),
    )
