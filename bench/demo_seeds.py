"""The demo's headline figures over seeds: does what the README says hold however the dice fall?

Runs config.demo.yaml (or, with --reduced, the reduced copy of tests/test_demo.py) through
the Snakefile once per seed (the config's `seed`: the drawn images, the split and the
training), each in its own temporary folder, and prints each headline figure's
min/median/max over the seeds, then the demo's targets and whether every seed meets them.

    python bench/demo_seeds.py --seeds 1 2 3 4 5            # the full demo: ~4-8 min a seed on 2 cores
    python bench/demo_seeds.py --seeds 1 2 3 4 5 --reduced  # the test's reduction
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from convscope.report.audit_section import _planted  # noqa: E402
from tests.conftest import Workflow  # noqa: E402


def figures(wf: Workflow) -> dict:
    """The headline figures of one finished demo run."""
    tree, classes = wf.tree, list(wf.config["classes"])
    out = {}
    for path in wf.workdir.glob(str(wf.layout.metrics("*", "*"))):
        m = json.loads(path.read_text())
        out[f"{m['strategy']} test accuracy"] = max(m["test"]["accuracy"], out.get(f"{m['strategy']} test accuracy", 0))
    out["best test accuracy"] = max(out.values())
    record = json.loads(tree.pretrain_record("alexnet").read_text())
    out["base val accuracy / chance"] = record["val_accuracy"] / record["chance"]
    analysed = json.loads(tree.best_json.read_text())["alexnet"]["run"]
    game = json.loads(tree.analysis("alexnet", analysed).explain.pointing.read_text())
    out["pointing: centre baseline"] = game["centre_baseline"]
    out["pointing: chance"] = game["chance"]
    for name in ("gradcam", "gradcam++"):
        out[f"pointing: {name}"] = game["methods"][name]["accuracy"]
    out["pointing: gradcam - centre"] = out["pointing: gradcam"] - game["centre_baseline"]
    comp = pd.read_csv(tree.comparisons_csv)
    pair = comp[(comp.strategy_a + "/" + comp.strategy_b).isin(["finetune/scratch", "scratch/finetune"])]
    if len(pair) and "p_value" in pair:
        out["McNemar p, finetune vs scratch"] = float(pair.p_value.iloc[0])
    out["finetune - scratch"] = out["finetune test accuracy"] - out["scratch test accuracy"]
    planted = _planted(tree.root, classes)
    issues = pd.read_csv(tree.label_issues("alexnet"))
    if planted:
        out["planted label errors in the top k, share"] = len(set(issues.file[: len(planted)]) & set(planted)) / len(
            planted
        )
    return out


# (figure, threshold, every seed or the median, >= or <=)
TARGETS = [
    ("best test accuracy", 0.85, "every", ">="),
    ("best test accuracy", 0.90, "median", ">="),
    ("finetune - scratch", 0.0, "every", ">"),
    ("base val accuracy / chance", 3.0, "every", ">="),
    ("pointing: centre baseline", 0.6, "every", "<="),
    ("pointing: gradcam - centre", 0.15, "median", ">="),
    ("pointing: gradcam - centre", 0.0, "every", ">="),
]


def verdicts(by_seed: dict) -> list[str]:
    lines = []
    for name, threshold, over, side in TARGETS:
        values = [f[name] for f in by_seed.values() if name in f]
        if not values:
            lines.append(f"{name}: not measured")
            continue
        tested = values if over == "every" else [statistics.median(values)]
        ok = all({">=": v >= threshold, ">": v > threshold, "<=": v <= threshold}[side] for v in tested)
        lines.append(
            f"{name} {side} {threshold} on {over} seed: {'yes' if ok else 'NO'} ({', '.join(f'{v:.3f}' for v in values)})"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--reduced", action="store_true", help="the reduced demo of tests/test_demo.py")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--config", type=Path, default=REPO / "config.demo.yaml", help="a variant of the demo config")
    args = parser.parse_args()
    if args.reduced:
        from tests.test_demo import reduced_demo

        base = reduced_demo()
    else:
        base = yaml.safe_load(args.config.read_text())
    by_seed = {}
    for seed in args.seeds:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="demo_seeds_") as tmp:
            wf = Workflow(Path(tmp), {**base, "seed": seed})
            wf.write_config()
            wf.run(cores=args.cores, timeout=3600)
            by_seed[seed] = figures(wf)
        print(f"seed {seed} ({time.perf_counter() - start:.0f} s): {json.dumps(by_seed[seed])}", flush=True)
    names = list(dict.fromkeys(k for f in by_seed.values() for k in f))
    print(f"\n{'figure':<44} {'min':>7} {'median':>7} {'max':>7}  seeds {args.seeds}")
    for name in names:
        v = [f[name] for f in by_seed.values() if name in f]
        print(f"{name:<44} {min(v):7.3f} {statistics.median(v):7.3f} {max(v):7.3f}")
    print("\ntargets:")
    print("\n".join(verdicts(by_seed)))


if __name__ == "__main__":
    main()
