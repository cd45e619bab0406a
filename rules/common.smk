# Config validation and the facts rules ask for. Nothing here repeats a fact
# that convscope already holds (backbone sizes, grid expansion).
import sys

from convscope import config as cfg

try:
    cfg.load_and_validate(config)
except cfg.ConfigError as e:
    sys.exit(str(e))

R = config["results"]
CLASSES = cfg.class_names(config)
SOURCE_CLASSES = cfg.pretrain_classes(
    config
)  # pretraining's source classes (may be none)
SIZES = cfg.input_sizes(config)
SPLITS = ["train", "val", "test"]


wildcard_constraints:
    cls="|".join(CLASSES + SOURCE_CLASSES),
    size=r"\d+",
    split="|".join(SPLITS),


def prepared_files(size):
    return expand(
        f"{R}/prepared/{size}/{{split}}.{{kind}}",
        split=SPLITS,
        kind=["npy", "labels.npy", "index.csv"],
    )


def prepared_all():
    return [f for size in SIZES for f in prepared_files(size)]


# ---- report (rules/report.smk) -------------------------------------------------
# Inputs follow report.sections: a section left out needs nothing upstream, so
# `sections: [data]` gives a data report before any training.
REPORT = config["report"]
NEEDS_GRID = {"grid", "backbones", "explanations", "compute"}


def report_inputs(wildcards):
    sections = set(REPORT["sections"])
    inputs = {}
    if "data" in sections:
        inputs["crawl"] = expand(f"{R}/raw/{{cls}}/crawl.json", cls=CLASSES)
        inputs["manifest"] = f"{R}/clean/manifest.csv"
        inputs["splits"] = f"{R}/clean/splits.csv"
    if sections & NEEDS_GRID:
        inputs["grid"] = f"{R}/analysis/grid/index.json"
    if sections & {"backbones", "explanations"}:
        inputs["analyses"] = best_run_analyses()
    return inputs


def report_outputs():
    out = {
        "html": f"{R}/report/index.html",
        # Every figure and thumbnail of the page, for `snakemake --report`.
        "assets": report(
            directory(f"{R}/report/assets"),
            patterns=["{section,[^/]+}/{figure}.png", "{section,[^/]+}/{figure}.jpg"],
            caption="../report/captions/figures.rst",
            category="Figures",
            subcategory="{section}",
            labels={"figure": "{figure}"},
        ),
    }
    if REPORT["self_contained"]:
        out["standalone"] = report(
            f"{R}/report/report-standalone.html",
            caption="../report/captions/report.rst",
            category="Report",
            labels={"page": "convscope report (self-contained)"},
        )
    return out


# ---- train (rules/train.smk) ---------------------------------------------------
# Run ids and their settings come from convscope.grid, the one place that expands
# the grid; trained runs and features heads are told apart by their id's prefix.
from convscope import grid

try:
    grid.runs(config)  # expand once now: a bad grid fails before any job runs
except (KeyError, ValueError) as e:
    sys.exit(f"invalid config: {e}")

TRAIN_OUTPUTS = ("model.keras", "history.csv", "metrics.json")
TRAINED_RUN = "(?:" + "|".join(grid.TRAINED) + r")-[^/]+"
FEATURES_RUN = r"features-[^/]+"
BACKBONE = "|".join(config["backbones"])


def prepared_split(backbone, split, kind="npy"):
    size = cfg.backbone_sizes(config)[backbone]
    return f"{R}/prepared/{size}/{split}.{kind}"


def pretrained_base(backbone, strategy=None):
    """The pretrained base a job loads ({} when the backbone does not use one; scratch never does)."""
    if not cfg.uses_pretrained(config, backbone) or strategy == "scratch":
        return {}
    return {"pretrained": cfg.pretrained_weights(config, backbone)}


def train_inputs(wildcards):
    strategy = grid.find(config, wildcards.backbone, wildcards.run).strategy
    return {
        **{
            f"{split}_{kind}": prepared_split(wildcards.backbone, split, ext)
            for split in SPLITS
            for kind, ext in (("images", "npy"), ("labels", "labels.npy"))
        },
        **pretrained_base(wildcards.backbone, strategy),
    }


def run_outputs(run):
    files = (
        ("metrics.json", "head.npz") if run.strategy == "features" else TRAIN_OUTPUTS
    )
    return [f"{R}/models/{run.backbone}/{run.id}/{f}" for f in files]


def imagenet_backbones():
    # The sanity check applies to the published networks only.
    return [
        b
        for b in config["backbones"]
        if grid.backbone_options(config, b).get("weights", "imagenet") == "imagenet"
    ]


def trained_all():
    """Every run's outputs plus the ImageNet sanity checks: what `all` asks for."""
    files = [f for run in grid.runs(config) for f in run_outputs(run)]
    files += [f"{R}/sanity/{b}/imagenet_top5.csv" for b in imagenet_backbones()]
    return files


# ---- analyses (rules/analyse.smk) -----------------------------------------------
# Which runs are analysed is known only after the grid summary (the `summarise`
# checkpoint) has picked each backbone's best run; these ask it.
import json

ANALYSIS = config["analysis"]


def analysis_index(backbone, run):
    return f"{R}/analysis/{backbone}/{run}/index.json"


def best_runs():
    """{backbone: run} from best.json; asking makes the summarise checkpoint a dependency."""
    with open(checkpoints.summarise.get().output.best) as f:
        return {b: entry["run"] for b, entry in json.load(f).items()}


def best_run_analyses():
    """index.json of each backbone's best run (the report shows these)."""
    return [analysis_index(b, run) for b, run in best_runs().items()]


def analyses_all(wildcards):
    """What `all` asks for: the analyses of the runs config analysis.runs selects."""
    if ANALYSIS["runs"] == "all":
        return [analysis_index(r.backbone, r.id) for r in grid.runs(config)]
    return best_run_analyses()


def analyse_inputs(wildcards):
    run_dir = f"{R}/models/{wildcards.backbone}/{wildcards.run}"
    inputs = {
        # Features runs get their network from the on-demand features_model rule.
        "model": f"{run_dir}/model.keras",
        "metrics": f"{run_dir}/metrics.json",
        "test": [
            prepared_split(wildcards.backbone, "test", kind)
            for kind in ("npy", "labels.npy", "index.csv")
        ],
    }
    if grid.find(config, wildcards.backbone, wildcards.run).strategy != "features":
        inputs["history"] = f"{run_dir}/history.csv"
    return inputs
