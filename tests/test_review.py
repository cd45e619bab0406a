"""The review loop on real `snakemake` runs: a review file reruns only clean and split, changes only
the rows it names, and its decisions survive a re-crawl."""

from __future__ import annotations

import csv

import pytest

from conftest import tiny_config
from convscope.data.review import ReviewError, read_review


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_review_reruns_only_what_it_affects_and_survives_recrawls(workflow):
    wf = workflow(tiny_config(("circle", "square"), images=16))
    wf.run(*wf.splits)
    R = wf.tree
    before = {r["file"]: r for r in read(R.clean_manifest)}
    splits_before = {r["file"]: r for r in wf.split_rows()}
    kept = sorted(f for f, r in before.items() if r["status"] == "kept" and r["cls"] == "circle")
    dropped, moved = kept[0], kept[1]
    (wf.workdir / "review.csv").write_text(f"file,action,new_class\n{dropped},drop,\n{moved},relabel,square\n")
    wf.config["clean"]["review"] = "review.csv"
    wf.write_config()
    assert wf.planned(*wf.splits) == {"clean": 1, "split": 1}  # no crawl, nothing else
    wf.run(*wf.splits)

    after = {r["file"]: r for r in read(R.clean_manifest)}
    changed = {f for f in after if after[f] != before[f]}
    assert changed == {dropped, moved}
    assert (after[dropped]["status"], after[dropped]["reason"]) == ("quarantined", "review_drop")
    assert (after[moved]["status"], after[moved]["cls"]) == ("kept", "square")
    splits_after = {r["file"]: r for r in wf.split_rows()}
    assert dropped not in splits_after
    assert splits_after[moved]["split"] == splits_before[moved]["split"] and splits_after[moved]["cls"] == "square"
    untouched = set(splits_before) - {dropped, moved}
    assert all(splits_after[f] == splits_before[f] for f in untouched)
    assert wf.planned(*wf.splits) == {}

    # A re-crawl (more images) keeps the review's decisions and every earlier split.
    wf.config["crawl"]["max_images"] = 20
    wf.write_config()
    wf.run(*wf.splits)
    again = {r["file"]: r for r in read(R.clean_manifest)}
    assert again[dropped]["reason"] == "review_drop" and again[moved]["cls"] == "square"
    assert len(again) > len(after)
    splits_again = {r["file"]: r["split"] for r in wf.split_rows()}
    assert all(splits_again[f] == splits_after[f]["split"] for f in splits_after)

    # Without the review the automatic decisions come back.
    wf.config["clean"]["review"] = ""
    wf.write_config()
    wf.run(*wf.splits)
    plain = {r["file"]: r for r in read(R.clean_manifest)}
    assert plain[dropped]["status"] == plain[moved]["status"] == "kept" and plain[moved]["cls"] == "circle"


def test_review_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "review.csv"
    bad.write_text("file,action,new_class\ncat/1.png,delete,\n")
    with pytest.raises(ReviewError, match=r"line 2: action 'delete'.*'drop' or 'relabel'"):
        read_review(bad, ["cat", "dog"])
    bad.write_text("file,action,new_class\ncat/1.png,relabel,horse\n")
    with pytest.raises(ReviewError, match=r"line 2: relabel of cat/1.png to 'horse'"):
        read_review(bad, ["cat", "dog"])
