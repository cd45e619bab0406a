from convscope import backend
from convscope.logs import job_log

with job_log(snakemake.log[0]):
    backend.select(snakemake.params.backend, threads=snakemake.threads)
    from convscope.predict.apply import Settings, predict_folder

    predict_folder(
        model_path=snakemake.input.model,
        folder=snakemake.params.folder,
        out_dir=snakemake.params.out_dir,
        backbone=snakemake.wildcards.backbone,
        run=snakemake.wildcards.run,
        classes=snakemake.params.classes,
        settings=Settings(**snakemake.params.settings),
    )
