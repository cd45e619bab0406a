from pathlib import Path

from convscope.data.clean import Memory, clean
from convscope.entry import job

with job(snakemake):
    clean(
        raw_root=Path(snakemake.input.raw[0]).parent.parent,  # raw/ holding each class's crawl.json
        classes=snakemake.params.classes,
        options=snakemake.params.options,
        out_csv=Path(snakemake.output[0]),
        # The output is flagged update(): Snakemake leaves the last manifest in place, and its
        # decisions stand for the files it already listed (splits never move).
        memory=Memory(
            prior=Path(snakemake.output[0]),
            review=Path(snakemake.input.review[0]) if snakemake.input.review else None,
        ),
    )
