"""Which parts of an analysed network its run trained, and which stayed frozen.

A features head trains nothing in the base; `finetune` with tune_depth k trains
the last k blocks. The weights of a frozen block are the ones the run started
from (random init, ImageNet or a pretrained base), so their filters and their
zero change say nothing about what this run learned: the report states this
instead of reading them as "learned little".

Read from the saved model's trainable flags (the train stage freezes with
convscope.models.build.set_tune_depth; progressive runs only ever unfreeze, so
the final flags are every block that trained at some point).
"""

from __future__ import annotations

import math
from pathlib import Path

from convscope import backbones as registry
from convscope import layout, records
from convscope.analysis.index import item, section

_WHERE_FROM = {"none": "a random init", "imagenet": "the ImageNet weights"}


def blocks(base, backbone: str) -> list[dict]:
    """One row per block of the base (the registry's tunable blocks; each weighted layer for other models)."""
    names = {layer.name for layer in base.layers}
    if backbone in registry.BACKBONES and set(registry.get(backbone).blocks) <= names:
        from convscope.models.build import block_layers

        spec = registry.get(backbone)
        # A block is named by the boundary layer that closes it (conv blocks, then kept fc layers).
        boundaries = {*spec.blocks, *(getattr(spec, "fc_stack", None) or ())}
        groups = []
        for layers in block_layers(base, backbone):
            closing = [layer.name for layer in layers if layer.name in boundaries]
            groups.append((closing[-1] if closing else layers[-1].name, layers))
    else:
        groups = [(layer.name, [layer]) for layer in base.layers if layer.weights]
    rows = []
    for name, layers in groups:
        weighted = [layer for layer in layers if layer.weights]
        if not weighted:
            continue
        rows.append(
            {
                "block": name,
                "layers": [layer.name for layer in weighted],
                "params": int(sum(math.prod(w.shape) for layer in weighted for w in layer.weights)),
                "trained": any(layer.trainable for layer in weighted),
            }
        )
    return rows


def frozen_layer_names(rows: list[dict]) -> set[str]:
    return {name for r in rows if not r["trained"] for name in r["layers"]}


def start_of(metrics: dict) -> str:
    weights = str(metrics.get("weights") or "")
    return _WHERE_FROM.get(weights, f"the weights file {weights}" if weights else "its starting weights")


def statement(rows: list[dict], metrics: dict) -> str:
    frozen = [r["block"] for r in rows if not r["trained"]]
    trained = [r["block"] for r in rows if r["trained"]]
    start = start_of(metrics)
    if not frozen:
        return f"Every block of the base trained (starting from {start})."
    if not trained:
        return (
            f"The whole base stayed frozen at {start} (blocks {', '.join(frozen)}); only the head was fitted. "
            "Its filters, activations and feature visualizations show that start, not anything this run learned."
        )
    return (
        f"Blocks {', '.join(frozen)} stayed frozen at {start}; {', '.join(trained)} and the head trained. "
        "The frozen blocks' filters and their zero weight change show that start, not what this run learned."
    )


def frozen_section(rows: list[dict], metrics: dict, out_dir) -> dict:
    out_dir = Path(out_dir)
    path = layout.AnalysisFolder(out_dir).frozen
    summary = {
        "strategy": metrics.get("strategy"),
        "weights": metrics.get("weights"),
        "frozen_blocks": [r["block"] for r in rows if not r["trained"]],
        "trained_blocks": [r["block"] for r in rows if r["trained"]],
        "statement": statement(rows, metrics),
        "blocks": rows,
    }
    records.FROZEN.write(path, summary)
    return section(
        "frozen",
        "What this run trained",
        [
            item("json", path, summary["statement"], path, root=out_dir),
        ],
    )
