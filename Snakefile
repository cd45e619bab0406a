# convscope: crawl -> clean -> split -> prepare -> train -> analyse -> report.
# `snakemake --cores N` runs config.yaml; `--configfile other.yaml` replaces it.
import os
import sys

# Scripts import the convscope package from this checkout, also inside conda envs
# and on cluster nodes (which inherit the environment).
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])
    )
)


if not workflow.overwrite_configfiles:
    # Snakemake's own YAML error names no line; ours does (convscope.configcheck).
    from convscope.configcheck import ConfigFileError, check_files

    try:
        check_files(["config.yaml"] if os.path.exists("config.yaml") else [])
    except ConfigFileError as e:
        sys.exit(str(e))

    configfile: "config.yaml"


# `snakemake --report report.html`: this text on its front page; rules/report.smk
# marks the report and its figures for it.
report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/crawl.smk"
include: "rules/clean.smk"
include: "rules/prepare.smk"
include: "rules/pretrain.smk"
include: "rules/train.smk"
include: "rules/analyse.smk"
include: "rules/audit.smk"
include: "rules/report.smk"
include: "rules/predict.smk"


rule all:
    default_target: True
    input:
        prepared_all(),
        trained_all(),
        L.grid_index,
        analyses_all,
        audit_all(),
        rules.report.output,
        after_split=after_split,  # planned again once split has run (common.smk)
