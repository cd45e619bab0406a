from pathlib import Path

from convscope.data.split import split
from convscope.entry import job
from convscope.layout import SPLITS

with job(snakemake):
    split(
        manifest_csv=Path(snakemake.input[0]),
        options=snakemake.params.options,
        seed=snakemake.params.seed,
        out_lists={s: Path(snakemake.output[s]) for s in SPLITS},
        out_digests={s: Path(snakemake.output[f"{s}_digest"]) for s in SPLITS},
    )
