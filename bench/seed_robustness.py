"""Every learned-quality assertion of the test suite over seeds and numeric settings.

The tests that assert what a trained network achieves (tests/test_trust.py,
tests/test_pointing.py, tests/test_audit.py, tests/test_border_model.py,
tests/test_workflow_data_trust.py, tests/test_demo.py: marked `learned`) build
their assertions as `tests.learned.Check`s from one seed. This runs the same functions
for each seed, each in a fresh process under each numeric setting, and prints per check
its threshold and the min/median/max it measured, and whether every run passed.

Settings: `tf` (TensorFlow as installed), `tf-noonednn` (TF_ENABLE_ONEDNN_OPTS=0: other
CPU kernels, a cheap stand-in for another CPU), `jax` (KERAS_BACKEND=jax).
Suites: `shapes` (the small CNN of the trust and pointing tests, about 1 min a seed on
2 cores), `audit` (label issues, seconds), `border` (three small CNNs taught a planted
colour, and the border-mass check on their maps), `datatrust` (the digit-folder audit of
tests/test_workflow_data_trust.py through Snakemake), `demo` (the reduced demo of
tests/test_demo.py through Snakemake, several minutes a seed).

    python bench/seed_robustness.py                                  # shapes, audit, border: seeds 0-9, tf and tf-noonednn
    python bench/seed_robustness.py --suites demo --seeds 0 1 2 --settings tf
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "tf": {"KERAS_BACKEND": "tensorflow"},
    "tf-noonednn": {"KERAS_BACKEND": "tensorflow", "TF_ENABLE_ONEDNN_OPTS": "0"},
    "jax": {"KERAS_BACKEND": "jax"},
}
SUITES = ("shapes", "audit", "border", "datatrust", "demo")
MARK = "CHECK "
sys.path.insert(0, str(REPO))
from convscope.layout import Results  # noqa: E402

RECORD = Results(REPO / "results").benchmarks / "seed_robustness.jsonl"  # every run's checks, appended


def run_one(suite: str, seed: int) -> list:
    """The suite's checks for one seed, in this process (the child side)."""
    if suite == "shapes":
        from tests.test_pointing import pointing_checks
        from tests.test_trust import faithfulness_checks, learned_check, randomisation_checks, trained_subset

        found, _ = pointing_checks(seed)
        subset = trained_subset(seed, check=False)  # a network that did not learn is a figure, not a crash
        return [*found, learned_check(seed), *randomisation_checks(subset), *faithfulness_checks(subset)]
    if suite == "audit":
        from tests.test_audit import label_issue_checks

        return label_issue_checks(seed)
    if suite == "border":
        from tests.test_border_model import PLANTS, border_checks

        return [check for where in PLANTS for check in border_checks(seed, where)[0]]
    if suite == "datatrust":
        return datatrust_checks(seed)
    from tests.conftest import Workflow
    from tests.test_demo import demo_checks, reduced_demo

    config = reduced_demo()
    config["seed"] = seed
    with tempfile.TemporaryDirectory(prefix="seed_robustness_") as tmp:
        wf = Workflow(Path(tmp), config)
        wf.write_config()
        return demo_checks(wf, config)


def datatrust_checks(seed: int) -> list:
    """The data-trust workflow test's audit on digit folders, the config's seed set to `seed`."""
    from tests.conftest import Workflow
    from tests.test_workflow_data_trust import _config, audit_checks, make_folders

    with tempfile.TemporaryDirectory(prefix="seed_robustness_") as tmp:
        (Path(tmp) / "folders").mkdir()
        (Path(tmp) / "wf").mkdir()
        root, moved = make_folders(Path(tmp) / "folders")
        wf = Workflow(Path(tmp) / "wf", _config(root, 0, seed))
        wf.write_config()
        return audit_checks(wf, moved)


def current_setting() -> str:
    """This process's numeric setting, from the environment the parent gave it."""
    if os.environ.get("KERAS_BACKEND") == "jax":
        return "jax"
    return "tf-noonednn" if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0" else "tf"


def record(suite: str, seed: int, rows: list[dict]) -> None:
    """Append one run's checks to RECORD: a long sweep can be summarised before it ends."""
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    with open(RECORD, "a") as f:
        for row in rows:
            f.write(json.dumps({"suite": suite, "seed": seed, "setting": current_setting(), **row}) + "\n")


def summarise_record(suites, seeds, settings) -> None:
    rows = [json.loads(line) for line in RECORD.read_text().splitlines()] if RECORD.is_file() else []
    for suite in suites:
        # the latest run of each (setting, seed, check) counts
        latest = {(r["setting"], r["seed"], r["name"]): r for r in rows if r["suite"] == suite}
        chosen = [r for (setting, seed, _), r in latest.items() if setting in settings and seed in seeds]
        measured: dict[str, list] = {}
        for r in chosen:
            measured.setdefault(r["name"], []).append(r)
        covered = {s: sorted({r["seed"] for r in chosen if r["setting"] == s}) for s in settings}
        print(f"\n{suite}: recorded seeds per setting {covered}")
        if measured:
            print(summary(measured), flush=True)


def child(suite: str, seed: int, setting: str) -> list[dict]:
    env = {**os.environ, **SETTINGS[setting], "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, __file__, "--one", suite, str(seed)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    rows = [json.loads(line[len(MARK) :]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not rows:
        tail = (proc.stdout + proc.stderr)[-1500:]
        print(f"  {suite} seed {seed} {setting}: failed (exit {proc.returncode})\n{tail}", flush=True)
        rows.append({"name": f"{suite}: ran to the end", "value": 0.0, "threshold": 1.0, "above": True})
    return rows


def summary(measured: dict) -> str:
    """One line per check: threshold, min/median/max over every (setting, seed), runs, all passed."""
    lines = [f"{'check':<52} {'needs':>10} {'min':>7} {'median':>7} {'max':>7} {'runs':>5}  all"]
    for name, rows in measured.items():
        values = [r["value"] for r in rows]
        above = rows[0]["above"]
        ok = all((v >= r["threshold"]) if r["above"] else (v < r["threshold"]) for v, r in zip(values, rows))
        # thresholds that depend on the data (e.g. 3 x chance) show their largest value
        shown = max(r["threshold"] for r in rows) if above else min(r["threshold"] for r in rows)
        needs = f"{'>=' if above else '<'} {shown:.3f}" + ("*" if len({r["threshold"] for r in rows}) > 1 else "")
        lines.append(
            f"{name:<52} {needs:>10} {min(values):7.3f} {statistics.median(values):7.3f} {max(values):7.3f} "
            f"{len(values):5d}  {'yes' if ok else 'NO'}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["tf", "tf-noonednn"])
    parser.add_argument("--suites", nargs="+", choices=SUITES, default=["shapes", "audit", "border"])
    parser.add_argument("--one", nargs=2, metavar=("SUITE", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--summarise", action="store_true", help=f"summarise what earlier runs recorded in {RECORD} (no new runs)"
    )
    args = parser.parse_args()
    if args.one:
        suite, seed = args.one[0], int(args.one[1])
        rows = [
            {"name": c.name, "value": c.value, "threshold": c.threshold, "above": c.above} for c in run_one(suite, seed)
        ]
        record(suite, seed, rows)
        for row in rows:
            print(MARK + json.dumps(row))
        return
    if args.summarise:
        summarise_record(args.suites, args.seeds, args.settings)
        return
    for suite in args.suites:
        measured: dict[str, list] = {}
        for setting in args.settings:
            for seed in args.seeds:
                start = time.perf_counter()
                rows = child(suite, seed, setting)
                for r in rows:
                    measured.setdefault(r["name"], []).append(r)
                failed = [
                    r["name"]
                    for r in rows
                    if not ((r["value"] >= r["threshold"]) if r["above"] else (r["value"] < r["threshold"]))
                ]
                print(
                    f"  {suite} {setting} seed {seed}: {time.perf_counter() - start:.0f} s, failed: {failed or 'none'}",
                    flush=True,
                )
        print(
            f"\n{suite}: seeds {args.seeds}, settings {args.settings} ({'* threshold depends on the data; largest shown'})"
        )
        print(summary(measured), flush=True)


if __name__ == "__main__":
    main()
