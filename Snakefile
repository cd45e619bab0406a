# convscope: crawl -> clean -> split -> prepare -> train -> analyse -> report.
# `snakemake --cores N` runs config.yaml; `--configfile other.yaml` replaces it.
import os

# Scripts import the convscope package from this checkout, also inside conda envs
# and on cluster nodes (which inherit the environment).
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])
    )
)


if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/crawl.smk"
include: "rules/clean.smk"
include: "rules/prepare.smk"


rule all:
    default_target: True
    input:
        prepared_all(),
