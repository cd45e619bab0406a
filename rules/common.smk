# Config validation and the facts rules ask for. Nothing here repeats a fact
# that convscope already holds (backbone sizes, grid expansion).
import sys

from convscope import config as cfg
from convscope import configcheck
from convscope import layout

try:
    # The files first: a key given twice is merged silently by the YAML loader.
    configcheck.check_files([*workflow.overwrite_configfiles, *workflow.configfiles])
    cfg.load_and_validate(config)
except (cfg.ConfigError, configcheck.ConfigFileError) as e:
    sys.exit(str(e))

R = config["results"]
L = layout.Results(R)  # every results path: convscope/layout.py


# One run at a time per results folder (convscope/results_lock.py). onstart runs only
# in the main process of a real run: dry runs write nothing, and the jobs Snakemake
# spawns (locally or on a cluster) get --no-hooks, so they never wait on it.
from convscope import faults, results_lock


onstart:
    try:
        results_lock.acquire(R)
    except results_lock.ResultsLocked as e:
        sys.exit(str(e))
    except OSError as e:  # a full disk refuses even the lock's line
        sys.exit(f"error: {faults.disk_full_message(e) or e}")


onsuccess:
    results_lock.release(R)
    from convscope import until

    if note := until.stopped_early(workflow):
        print(note, file=sys.stderr)


onerror:
    results_lock.release(R)


CLASSES = cfg.class_names(config)
SOURCE_CLASSES = cfg.pretrain_classes(
    config
)  # pretraining's source classes (may be none)
SIZES = cfg.input_sizes(config)
SPLITS = layout.SPLITS
FIT_SPLITS = layout.FIT_SPLITS


wildcard_constraints:
    cls="|".join(CLASSES + SOURCE_CLASSES),
    size=r"\d+",
    split="|".join(SPLITS),


def after_split(wildcards=None):
    """No file: the input item `after_split` of every rule after split (rules/clean.smk).

    It asks the `split` checkpoint for its output, so the job is one Snakemake plans
    again once split has run. Without it, a job planned only because split was going
    to run would still run after split rewrote the same bytes: Snakemake plans afresh
    only the jobs that depend on the checkpoint itself.
    """
    checkpoints.split.get()
    return []


def crawl_listing(cls):
    from convscope.data.folder_import import listing

    opts = cfg.crawl_params(config, cls)
    return listing(opts["path"]) if opts["source"] == "folder" else ""


def prepared_all():
    return [f for size in SIZES for f in L.prepared_files(size)]


# ---- report (rules/report.smk) -------------------------------------------------
# Inputs follow report.sections: a section left out needs nothing upstream, so
# `sections: [data]` gives a data report before any training.
REPORT = config["report"]
from convscope.report.parts import NEEDS_GRID  # sections that read the grid summary

# ---- audit (rules/audit.smk) ----------------------------------------------------
AUDIT_OPTIONS = {k: v for k, v in config["audit"].items() if k != "backbones"}


def audited_backbones():
    named = config["audit"]["backbones"]
    unknown = sorted(set(named) - set(config["backbones"]))
    if unknown:
        sys.exit(
            f"config key audit.backbones: {unknown} not in backbones {list(config['backbones'])}"
        )
    return named or list(config["backbones"])


def audit_files(backbone):
    return {
        "issues": L.label_issues(backbone),
        "leakage": L.leakage(backbone),
        "summary": L.audit_summary(backbone),
    }


def audit_all():
    return [f for b in audited_backbones() for f in audit_files(b).values()]


def report_inputs(wildcards):
    sections = set(REPORT["sections"])
    inputs = {}
    if "data" in sections:
        inputs["crawl"] = [L.crawl_summary(c) for c in CLASSES]
        inputs["manifest"] = L.clean_manifest
        inputs["splits"] = L.split_lists
    if "audit" in sections:
        inputs["audit"] = audit_all()
        inputs.setdefault("manifest", L.clean_manifest)
    if sections & set(NEEDS_GRID):
        inputs["grid"] = L.grid_index
        inputs["runs"] = L.runs_csv
        inputs["best"] = L.best_json
        inputs["comparisons"] = L.comparisons_csv  # the findings' strategy verdicts
        # The runs table links to, and the compute section reads, every run's metrics.
        inputs["metrics"] = [L.metrics(r.backbone, r.id) for r in grid.runs(config)]
    if sections & {"backbones", "explanations"}:
        inputs["analyses"] = best_run_analyses()
        # The records the findings read by name (convscope.records.ANALYSIS_RECORDS).
        inputs["analysis_records"] = [
            path
            for b, run in best_runs().items()
            for path in L.analysis_records(b, run).values()
        ]
        # CKA and corruptions, a line per strategy (rules/analyse.smk strategy_change).
        inputs["by_strategy"] = by_strategy_all()
    if "compute" in sections:
        inputs["benchmarks"] = report_benchmarks(sections)
    return inputs


def report_benchmarks(sections):
    """Benchmark files of the jobs behind the report's other inputs (the compute section's table).

    A rule's `benchmark:` file is one of its products, so it can be declared here.
    Only jobs the report's inputs already need are listed: declaring one must never
    make the report run it (so no ImageNet sanity checks, predict or export jobs).
    compute needs the grid, so every run and the data stages are behind it.
    """
    runs = grid.runs(config)
    embedded = {r.backbone for r in runs if r.strategy == "features"}
    if "audit" in sections:
        embedded |= set(audited_backbones())
    # The pretrained base is read by the embed job and every trained run but scratch.
    based = embedded | {r.backbone for r in runs if r.strategy not in NO_BASE}
    pretrained = [
        b for b in config["backbones"] if b in based and cfg.uses_pretrained(config, b)
    ]
    files = [L.benchmark("crawl", c) for c in CLASSES]
    files += [L.benchmark("crawl", c) for c in SOURCE_CLASSES if pretrained]
    files += [L.benchmark("clean"), L.benchmark("split")]
    files += [L.benchmark("prepare", str(size), s) for size in SIZES for s in SPLITS]
    files += [L.benchmark("pretrain", b) for b in pretrained]
    files += [
        L.benchmark("embed", b, s)
        for b in config["backbones"]
        if b in embedded
        for s in SPLITS
    ]
    for r in runs:
        # features heads' benchmarks are under features/ and evaluate_head/
        heads = r.strategy == "features"
        files.append(L.benchmark("features" if heads else "train", r.backbone, r.id))
        files.append(
            L.benchmark("evaluate_head" if heads else "evaluate", r.backbone, r.id)
        )
    files.append(L.benchmark("summarise"))
    if "audit" in sections:
        files += [L.benchmark("audit", b) for b in audited_backbones()]
    if sections & {"backbones", "explanations"}:
        for b, run in best_runs().items():
            files.append(L.benchmark("analyse", b, run))
            # A features run's network is built on demand, by features_model.
            if grid.find(config, b, run).strategy == "features":
                files.append(L.benchmark("features_model", b, run))
        files += by_strategy_benchmarks()
    return list(dict.fromkeys(files))  # a source class may also be a target class


NO_BASE = ("scratch", "features")  # trained strategies that load no pretrained base


def report_outputs():
    out = {
        "html": L.report_page,
        # Every figure and thumbnail of the page, for `snakemake --report`.
        "assets": report(
            directory(L.report_dir / "assets"),
            patterns=["{section,[^/]+}/{figure}.png", "{section,[^/]+}/{figure}.jpg"],
            caption="../report/captions/figures.rst",
            category="Figures",
            subcategory="{section}",
            labels={"figure": "{figure}"},
        ),
    }
    if REPORT["self_contained"]:
        out["standalone"] = report(
            L.report_standalone,
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


# GPU sharing (README "Sharing a GPU"): a GPU is gpu_share=100 (profiles/default and
# profiles/local give one); every job that runs a network claims 100/n of one, with
# n = train.jobs_per_gpu, so n such jobs run on a GPU at once. `gpu` stays the number
# of GPUs a job uses (data parallel; SLURM maps it to --gpus).
def gpu_share(uses_gpu):
    return 100 // config["train"]["jobs_per_gpu"] if uses_gpu else 0


# Job order (Snakemake priorities). With a GPU, embeddings go first so that the features
# heads run on the CPU beside the trainings queued for the GPU. On cores alone the longest
# jobs go first (training, then the analyses), so the critical path training -> analysis
# waits for no embedding or probe (demo: finetune started 9 s and its analysis 19 s late).
ON_GPU = config["train"]["gpu"]
EMBED_PRIORITY = 10 if ON_GPU else 0
LONGEST_FIRST = 0 if ON_GPU else 5


TRAINED_RUN = "(?:" + "|".join(grid.TRAINED) + r")-[^/]+"
FEATURES_RUN = r"features-[^/]+"
BACKBONE = "|".join(config["backbones"])


def prepared_split(backbone, split, kind="npy"):
    return L.prepared(cfg.backbone_sizes(config)[backbone], split, kind)


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
            for split in FIT_SPLITS
            for kind, ext in (
                ("images", layout.PREPARED_IMAGES),
                ("labels", layout.PREPARED_LABELS),
            )
        },
        **pretrained_base(wildcards.backbone, strategy),
    }


def run_outputs(run):
    files = (
        layout.FEATURES_OUTPUTS if run.strategy == "features" else layout.TRAIN_OUTPUTS
    )
    return [L.run_dir(run.backbone, run.id) / f for f in files]


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
    files += [L.sanity(b) for b in imagenet_backbones()]
    return files


# ---- analyses (rules/analyse.smk) -----------------------------------------------
# Which runs are analysed is known only after the grid summary (the `summarise`
# checkpoint) has picked each backbone's best run; these ask it.
from convscope import records

ANALYSIS = config["analysis"]


def selection_params():
    """What picks each backbone's analysed run (the summarise rule's params).

    `all` analyses every run but the report shows the same run as `best`, so
    switching between the two does not re-run the summary.
    """
    analysed = "best_any" if ANALYSIS["runs"] == "best_any" else "best"
    return {"analysed": analysed, "by": ANALYSIS["best_by"]}


def best_runs():
    """{backbone: run analysed} from best.json; asking makes the summarise checkpoint a dependency."""
    # Split first: a job planned again after split then asks for the summary as a new
    # checkpoint, and Snakemake plans it once more from the summary (else it keeps the
    # summary as a placeholder input and skips checking its other inputs).
    after_split()
    best = records.read_best(checkpoints.summarise.get().output.best)
    return {b: choice.run for b, choice in best.items()}


def best_run_analyses():
    """index.json of each backbone's best run (the report shows these)."""
    return [L.analysis_index(b, run) for b, run in best_runs().items()]


def analyses_all(wildcards):
    """What `all` asks for: the analyses of the runs config analysis.runs selects."""
    if ANALYSIS["runs"] == "all":
        return [L.analysis_index(r.backbone, r.id) for r in grid.runs(config)]
    return best_run_analyses()


# ---- strategies side by side (rules/analyse.smk probe, strategy_change) ----------
# best.json's by_strategy names the best run of each (strategy, tune_depth) of a
# backbone. An analysed run has its CKA and corruption records from its analyse job;
# each of the others gets a probe job that writes just those two.
from convscope.analysis import probe as probe_lib


def best_choices():
    """{backbone: records.BestRun} from best.json (the summarise checkpoint)."""
    after_split()
    return records.read_best(checkpoints.summarise.get().output.best)


def by_strategy_runs(backbone):
    """[(run, analysed)] of the by_strategy runs in best.json's order; analysed: it has an analyse job, else a probe."""
    choice = best_choices()[backbone]
    return [
        (e["run"], ANALYSIS["runs"] == "all" or e["run"] == choice.run)
        for e in choice.by_strategy
    ]


def by_strategy_records(backbone):
    """The cka and corruptions records of each by_strategy run, in best.json's order."""
    return [
        (L.analysis_records if analysed else L.probe_records)(backbone, run)
        for run, analysed in by_strategy_runs(backbone)
    ]


def by_strategy_inputs(wildcards):
    files = by_strategy_records(wildcards.backbone)
    return {
        "best": L.best_json,
        "cka": [f["cka"] for f in files],
        "corruptions": [f["corruptions"] for f in files],
    }


def by_strategy_all():
    """Every file of each backbone's strategies-side-by-side folder (the report's input)."""
    return [f for b in best_choices() for f in L.by_strategy(b).outputs.values()]


def by_strategy_benchmarks():
    """Benchmarks of the strategy_change jobs and of the probes (and features networks) they read."""
    files = []
    for b, choice in best_choices().items():
        files.append(L.benchmark("strategy_change", b))
        for run, analysed in by_strategy_runs(b):
            if run == choice.run:
                continue  # listed with the analyses
            # analysis.runs: all analyses the other runs too, and they are read here.
            files.append(L.benchmark("analyse" if analysed else "probe", b, run))
            if grid.find(config, b, run).strategy == "features":
                files.append(L.benchmark("features_model", b, run))
    return files


def probe_inputs(wildcards):
    """A probe reads what analyse reads for CKA and corruptions: the model, its metrics, the test split."""
    inputs = analyse_inputs(wildcards)
    return {k: inputs[k] for k in ("model", "metrics", "test")}


def analyse_inputs(wildcards):
    b, run = wildcards.backbone, wildcards.run
    inputs = {
        # Features runs get their network from the on-demand features_model rule.
        "model": L.model(b, run),
        "metrics": L.metrics(b, run),
        "test": [
            prepared_split(wildcards.backbone, "test", kind)
            for kind in layout.PREPARED_KINDS
        ],
        # Temperature scaling is fitted on the validation split.
        "val": [
            prepared_split(wildcards.backbone, "val", kind)
            for kind in layout.PREPARED_KINDS
        ],
    }
    if grid.find(config, b, run).strategy != "features":
        inputs["history"] = L.history(b, run)
    return inputs


# ---- predict and export (rules/predict.smk) ------------------------------------
from convscope.predict import images as predict_images
from convscope.predict import params as predict_params


def predict_runs():
    """[(backbone, run)]: predict.runs, or each backbone's best run (the summarise checkpoint)."""
    try:
        named = predict_params.named_runs(config)
    except (KeyError, ValueError) as e:
        raise ValueError(f"invalid config: {e}") from None
    return named if named is not None else list(best_runs().items())
