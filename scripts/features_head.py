from pathlib import Path

from convscope.entry import job

# A head reads embeddings and labels only: no Keras, so no backend to select.
with job(snakemake):
    from convscope.training.features import HeadSettings, fit_head

    fit_head(
        features_dir=Path(snakemake.input.info).parent,
        prepared_dir=Path(snakemake.input.labels[0]).parent,
        out_dir=Path(snakemake.output.fit).parent,
        head=HeadSettings(**snakemake.params.head),
    )
