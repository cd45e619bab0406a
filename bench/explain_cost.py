"""Cost of the explanation analyses of one demo-shaped model, today's methods against all of them.

Builds the demo's model (AlexNet at 64 px, 4 classes, random weights: the cost does
not depend on what the weights learned), draws a test set the size of the demo's
(48 images with object boxes), loads it once, and times `explain_model` twice in
the same process: with only the methods and checks the analyses had before issue 13
(Grad-CAM(++), occlusion, saliency/SmoothGrad, pointing game, deletion) — the
reference — and with everything (new CAMs, Score-CAM, Integrated Gradients,
insertion curves, the randomisation sanity check). Prints both and their ratio, in
wall and in CPU time (the CPU ratio holds up better on a shared, loaded machine).

    PYTHONPATH=. .venv/bin/python bench/explain_cost.py [--backbone alexnet --size 64 --images 48]

--filter-vis-size N instead times feature visualisation alone (the schema's default
settings: 6 channels, 96 steps) of the backbone's last conv layer at the input size
and at N px (analysis.filter_vis.size, issue 27), in the same process, and prints
both and their ratio:

    PYTHONPATH=. .venv/bin/python bench/explain_cost.py --backbone vgg16 --size 224 --filter-vis-size 128
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from convscope import layout  # noqa: E402 - the layout is pure paths: no Keras import

# Switches of what issue 13 added; absent keys on a tree without them.
NEW_OFF = {
    "methods": {
        "hirescam": False,
        "xgradcam": False,
        "layercam": False,
        "scorecam": False,
        "eigencam": False,
        "integrated_gradients": False,
    },
    "sanity": {"enabled": False},
    # today's deletion curves used every checked image
    "checks": {"insertion": False, "curve_images": 64, "max_images": 64, "deletion_steps": 10},
}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="alexnet")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reference-only", action="store_true", help="time only today's methods (a tree before issue 13)")
    p.add_argument("--filter-vis-size", type=int, help="time feature visualisation alone: input size vs this size")
    p.add_argument("--channels", type=int, default=6, help="channels feature visualisation optimises (with the above)")
    args = p.parse_args(argv)

    from convscope import backend

    backend.select(args.backend, threads=args.threads)
    if args.filter_vis_size:
        return filter_vis_sizes(args)
    import numpy as np

    from convscope.analysis import options as analysis_options
    from convscope.analysis.explain import run as explain
    from convscope.models.build import build_classifier

    model = build_classifier(args.backbone, args.classes, input_size=args.size, weights="none", seed=1)
    reference = build_classifier(args.backbone, args.classes, input_size=args.size, weights="none", seed=2)
    rng = np.random.default_rng(0)
    n, s = args.images, args.size
    x = rng.integers(0, 256, (n, s, s, 3)).astype(np.uint8)
    lo = rng.integers(0, s // 2, (n, 2))
    boxes = np.concatenate([lo, lo + rng.integers(s // 4, s // 2, (n, 2))], axis=1).astype(float)
    data = {
        "x": x,
        "labels": np.arange(n) % args.classes,
        "classes": [f"c{k}" for k in range(args.classes)],
        "probs": model.predict(x.astype("float32"), verbose=0),
        "boxes": boxes,
    }
    defaults = analysis_options.resolve(None)
    known = set(defaults)
    reference_opts = {k: v for k, v in NEW_OFF.items() if k in known}
    if "checks" in reference_opts and "curve_images" not in defaults["checks"]:
        reference_opts.pop("checks")
    variants = {"reference (before issue 13)": reference_opts}
    if not args.reference_only:
        variants["all methods and checks"] = {}
    seconds, cpu = {}, {}
    for name, opts in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            explain.explain_model(model, args.backbone, data, Path(tmp), opts, base_reference=reference)
            seconds[name] = round(time.perf_counter() - t0, 2)
            cpu[name] = round(time.process_time() - c0, 2)
            folder = layout.AnalysisFolder(tmp).explain
            steps = json.loads(folder.timings.read_text())
            for extra in (folder.ig_completeness, folder.sanity, folder.method_ranking_csv):
                if extra.is_file():
                    print(f"  {extra.name}:", extra.read_text()[:3000], flush=True)
        print(f"{name}: {seconds[name]:.1f} s wall, {cpu[name]:.1f} s CPU", flush=True)
        print("  steps:", json.dumps(steps), flush=True)
    if len(seconds) == 2:
        ref, new = seconds.values()
        (cref, cnew) = cpu.values()
        print(f"ratio all / reference: {new / ref:.2f} wall, {cnew / cref:.2f} CPU")
    return seconds


def filter_vis_sizes(args) -> dict:
    """Feature visualisation of `--channels` channels of the last conv layer at the input size, then at
    --filter-vis-size px; the schema's default settings otherwise. Returns seconds per size."""
    import numpy as np

    from convscope import backbones as registry
    from convscope.analysis.split_model import cut
    from convscope.analysis.standard.filter_vis import Settings, visualize
    from convscope.models.build import build_classifier

    model = build_classifier(args.backbone, args.classes, input_size=args.size, weights="none", seed=1)
    to_layer = cut(model, registry.get(args.backbone).last_conv).to_layer
    size = (args.size, args.size)
    seconds, cpu = {}, {}
    for side in (None, args.filter_vis_size):
        settings = Settings.from_options({"size": side})
        shown = settings.image_size(size)[0]
        t0, c0 = time.perf_counter(), time.process_time()
        r = visualize(to_layer, list(range(args.channels)), size=size, settings=settings)
        seconds[shown], cpu[shown] = time.perf_counter() - t0, time.process_time() - c0
        rose = int((r.final > r.start).sum())
        print(
            f"{args.backbone}@{args.size}, {args.channels} channels, {settings.steps} steps, images {shown} px: "
            f"{seconds[shown]:.1f} s wall, {cpu[shown]:.1f} s CPU; activation rose on {rose} of {args.channels}, "
            f"final/start median {np.median(r.final / np.maximum(np.abs(r.start), 1e-9)):.3g}",
            flush=True,
        )
    (native, small) = seconds
    print(
        f"ratio {native} px / {small} px: {seconds[native] / seconds[small]:.2f} wall, "
        f"{cpu[native] / cpu[small]:.2f} CPU"
    )
    return seconds


if __name__ == "__main__":
    main()
