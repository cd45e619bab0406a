"""The data audit: planted label noise is ranked first, a leakage pair planted across splits is found."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance
from sklearn.datasets import load_digits

from convscope.data import audit, nearcopy
from tests.learned import Check, require


def label_issue_checks(seed: int = 0) -> list[Check]:
    """Planted label noise on 600 digit scans (10% of the labels moved), ranked by the audit."""
    x, y = load_digits(return_X_y=True)
    x, y = x[:600].astype(np.float32), y[:600]
    rng = np.random.default_rng(seed)
    moved = rng.choice(len(y), size=60, replace=False)  # 10% of the labels moved to a wrong class
    noisy = y.copy()
    noisy[moved] = (noisy[moved] + rng.integers(1, 10, len(moved))) % 10
    files = [f"d/{i}.png" for i in range(len(y))]
    data = audit.Embedded(x, noisy, files, np.array(["train"] * len(y)))
    issues = audit.label_issues(data, [str(c) for c in range(10)], folds=5, seed=seed)
    s = audit.scores(issues, {files[i] for i in moved})
    top = issues.set_index("file").loc[[files[i] for i in moved]]
    true = {files[i]: str(y[i]) for i in moved}
    return [
        Check("label issues: recall at k", s["at_k"], 0.6),  # chance: 0.1
        Check("label issues: issue recall", s["issue_recall"], 0.6),
        Check("label issues: issue precision", s["issue_precision"], 0.4),
        # and says which class
        Check(
            "label issues: suggested class right", float((top["suggested"] == [true[f] for f in top.index]).mean()), 0.6
        ),
    ]


@pytest.mark.learned
def test_planted_label_noise_is_ranked_far_above_chance():
    """Planted label noise is ranked far above chance, and the audit names the right class.

    Measured over seeds 0-9, TF default and TF_ENABLE_ONEDNN_OPTS=0 (20 runs,
    `bench/seed_robustness.py --suites audit`), minimum against threshold: recall at k
    0.833 (>= 0.6), issue recall 0.833 (>= 0.6), issue precision 0.600 (>= 0.4),
    suggested class right 0.867 (>= 0.6).
    """
    require(label_issue_checks())


def _digit_images(n: int) -> list[Image.Image]:
    """scikit-learn's real digit scans, upscaled to 32 px as a user's folder would hold them."""
    x, _ = load_digits(return_X_y=True)
    return [Image.fromarray((v.reshape(8, 8) * 255 / 16).astype(np.uint8)).resize((32, 32)) for v in x[:n]]


def test_leakage_flags_planted_copies_and_no_look_alike():
    """Real digit scans: 90 train, 30 test, plus a 2 px shifted and a 10% brighter copy of train images
    in test. With random embeddings (unrelated images all similar, as with a random-weight base) the
    pixel criterion flags the two copies and none of the 30 distinct test scans."""
    imgs = _digit_images(120)
    shifted = imgs[5].transform(imgs[5].size, Image.AFFINE, (1, 0, 2, 0, 1, 1))
    brighter = ImageEnhance.Brightness(imgs[40]).enhance(1.1)
    every = imgs + [shifted, brighter]
    splits = np.array(["train"] * 90 + ["test"] * 32)
    order = np.argsort(splits == "test", kind="stable")
    files = [f"c/{i}.png" for i in range(len(every))]
    x = np.random.default_rng(0).normal(1, 0.01, (len(every), 16)).astype(np.float32)  # cosine ~1 for all
    data = audit.Embedded(x[order], np.zeros(len(every), int), [files[i] for i in order], splits[order])
    thumbs = [nearcopy.thumbnail(every[i]) for i in order]
    twins, criterion = audit.near_twins(data, thumbs, factor=10)
    assert sorted(twins[["file", "twin"]].values.tolist()) == [["c/120.png", "c/5.png"], ["c/121.png", "c/40.png"]]
    assert (twins["criterion"] == criterion).all() and "median nearest-neighbour residual" in criterion
    assert set(twins["found_by"]) <= {"pixels", "embedding", "pixels+embedding"}


def test_the_label_convnet_gives_a_small_set_enough_steps_and_a_large_one_full_batches():
    from convscope.data import label_model

    small = 154  # a fold's training images in tests/test_workflow_data_trust.py
    assert -(-small // label_model.batch_size(small)) >= label_model.STEPS_PER_EPOCH  # 64 made 3 steps
    assert label_model.batch_size(20) == label_model.MIN_BATCH
    assert label_model.batch_size(100_000) == label_model.MAX_BATCH
