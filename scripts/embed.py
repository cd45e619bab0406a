from pathlib import Path

from convscope.entry import warm_job
from convscope.training.features import FeatureSettings

# One split's embeddings, in a warm fork like training (config train.warm_start): three
# jobs per backbone (one per split) then cost one import of Keras, not three.
warm_job(
    snakemake,
    "convscope.training.features:compute_embeddings",
    dict(
        prepared_dir=Path(snakemake.input.images).parent,
        out_dir=Path(snakemake.output.info).parent,
        features=FeatureSettings(**snakemake.params.features),
        num_classes=snakemake.params.num_classes,
        threads=snakemake.threads,
        splits=(snakemake.wildcards.split,),
    ),
    backend=snakemake.params.features["backend"],
    enabled=snakemake.config["train"]["warm_start"],
)
