"""The config `analysis` section as every analysis reads it, merged over the schema's defaults once.

An analyse job merges at its entry (convscope.analysis.run.open_job) and hands the result
down; library entries (explain_model) merge at theirs. Nothing below re-merges or restates
a default.
"""

from __future__ import annotations


def resolve(options: dict | None) -> dict:
    """`options` over the schema defaults of `analysis`, nested sections key by key.

    An unknown key inside a nested section raises ValueError naming the config key (the
    rule's options are validated already; library callers may pass less or misspell).
    "seed" (not a key of the section: the analyse rule adds the global seed) defaults to 0.
    """
    from convscope import config as cfg

    merged = cfg.merged("analysis", options, strict=True)
    merged.setdefault("seed", 0)
    return merged
