import numpy as np

from convscope import backend
from convscope.logs import job_log

with job_log(snakemake.log[0]):
    # SavedModel export needs TensorFlow, whatever backend trained the model.
    backend.select("tensorflow", threads=snakemake.threads)
    from convscope.export import export_model

    test = np.load(snakemake.input.test, mmap_mode="r")
    export_model(
        model_path=snakemake.input.model,
        out_dir=snakemake.params.out_dir,
        check_images=np.asarray(test[: snakemake.params.check_images]),
    )
