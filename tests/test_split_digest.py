"""Edits plan the same jobs whatever the size of the split lists (issue 25).

Snakemake compares checksums of files up to --max-checksum-file-size (1 MB) only; a split
list passes that at about 9,000 images, and a list rewritten with the same bytes is then
just newer. Here the limit is set below the lists' size but above their digests' (about
80 bytes), which is what 15,000 images do at the default: prepare must still follow the
digests (results/clean/splits/*.sha256) and rerun only the split whose images changed.
"""

from __future__ import annotations

import hashlib
import shutil

from conftest import tiny_config

LIMIT = ("--max-checksum-file-size", "120")  # bytes: each digest is under it, each list over it
COPY = "circle/zz-copy.png"


def test_edits_plan_the_same_when_lists_pass_the_checksum_limit(workflow):
    config = tiny_config()
    config["clean"]["review"] = "review.csv"
    wf = workflow(config)
    review = wf.workdir / "review.csv"
    review.write_text("file,action,new_class\n")
    L = wf.tree
    wf.run(*[str(wf.layout.crawl_summary(c)) for c in ("circle", "square", "triangle")])
    shutil.copy(sorted(L.raw("circle").glob("*.png"))[0], L.raw("circle") / "zz-copy.png")
    targets = wf.prepared(48)
    wf.run(*LIMIT, *targets)
    for split in ("train", "val", "test"):
        data = L.split_list(split).read_bytes()
        assert len(data) > 120 and L.split_digest(split).stat().st_size < 120
        assert L.split_digest(split).read_text() == f"{hashlib.sha256(data).hexdigest()}  {split}.csv\n"

    def plan_after(lines):
        review.write_text("file,action,new_class\n" + "".join(f"{f},drop,\n" for f in lines))
        wf.run(*LIMIT, *wf.splits)  # clean and split: the lists are rewritten
        plan = wf.planned(*LIMIT, *targets)
        wf.run(*LIMIT, *targets)
        return plan

    assert plan_after([COPY]) == {}  # already quarantined: the lists keep their bytes
    test = next(r["file"] for r in wf.split_rows() if r["split"] == "test")
    fitted = {s: L.prepared(48, s).stat().st_mtime_ns for s in ("train", "val")}
    assert plan_after([COPY, test]) == {"prepare": 1}
    assert {s: L.prepared(48, s).stat().st_mtime_ns for s in ("train", "val")} == fitted
    assert wf.planned(*LIMIT, *targets) == {}
