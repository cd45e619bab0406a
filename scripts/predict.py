from convscope import backend
from convscope.logs import job_log

with job_log(snakemake.log[0]):
    backend.select(snakemake.params.backend, threads=snakemake.threads)
    from convscope.predict.apply import Predicted, Settings, predict_folder

    predict_folder(
        Predicted(
            snakemake.input.model,
            snakemake.wildcards.backbone,
            snakemake.wildcards.run,
            tuple(snakemake.params.classes),
        ),
        folder=snakemake.params.folder,
        out_dir=snakemake.params.out_dir,
        settings=Settings(**snakemake.params.settings),
    )
