from pathlib import Path

from convscope.entry import job

# A head's test scores read embeddings and labels only: no Keras, so no backend to select.
with job(snakemake):
    from convscope.training.evaluate import evaluate_head

    evaluate_head(
        head_path=Path(snakemake.input.head),
        fit_path=Path(snakemake.input.fit),
        features_dir=Path(snakemake.input.embeddings).parent,
        prepared_dir=Path(snakemake.input.labels).parent,
        out_dir=Path(snakemake.output.metrics).parent,
    )
