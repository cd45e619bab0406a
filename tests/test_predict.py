"""The predict and export targets in real snakemake runs on a tiny trained grid.

One AlexNet@64 run is trained once; `predict` is applied to a folder of awkward
files (truncated JPEG, text named .jpg, CMYK JPEG, 16-bit PNG, EXIF-rotated PNG),
then the folder gains an image; `export` writes model.keras + SavedModel, which
this test loads itself and compares with the trained model.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import tiny_config
from convscope.layout import Results
from convscope.records import read_best

pytestmark = pytest.mark.slow

BACKBONE = "alexnet"


def config() -> dict:
    return tiny_config(
        images=20,
        backbones={BACKBONE: {"input_size": 64, "weights": "none"}},
        train={
            "strategies": ["finetune"],
            "grid": {"learning_rate": [0.001], "epochs": [1], "batch_size": [16], "augment": ["standard"]},
            "threads": 1,
            "bootstrap": 100,
            "tensorboard": False,
        },
        analysis={"gpu": False, "threads": 1},
        predict={"top_k": 2},
        export={"check_images": 8},
    )


def shape_image(kind: str, size=(90, 60)) -> Image.Image:
    img = Image.new("RGB", size, (235, 235, 235))
    d = ImageDraw.Draw(img)
    w, h = size
    if kind == "circle":
        d.ellipse([w * 0.2, h * 0.2, w * 0.8, h * 0.8], fill=(200, 30, 30))
    else:
        d.rectangle([w * 0.25, h * 0.25, w * 0.75, h * 0.75], fill=(30, 30, 200))
    return img


def write_awkward_folder(folder):
    folder.mkdir()
    shape_image("circle").save(folder / "good.jpg", quality=95)
    buf = io.BytesIO()
    shape_image("square").save(buf, format="JPEG", quality=95)
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "notes.jpg").write_text("this is not an image\n")
    shape_image("square").convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    gray16 = (np.asarray(shape_image("circle").convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(folder / "gray16.png")
    assert Image.open(folder / "gray16.png").mode.startswith("I")
    upright = shape_image("square", size=(60, 90))
    upright.save(folder / "upright.png")
    # Stored rotated, with EXIF orientation 6 ("rotate 90 CW to display"): displays as `upright`.
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(folder / "rotated.png", exif=exif)
    (folder / ".hidden.jpg").write_bytes(b"skipped")


def read_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    from conftest import Workflow

    workdir = tmp_path_factory.mktemp("predict")
    folder = workdir / "new images"
    write_awkward_folder(folder)
    wf = Workflow(workdir, config())
    wf.write_config()
    wf.run("predict", "--config", f"predict_folder={folder}", timeout=900)
    best = read_best(Results(wf.results).best_json)[BACKBONE].run
    return wf, folder, Results(wf.results).predict_dir(BACKBONE, best)


def test_predictions_csv_reports_every_file(predicted):
    wf, folder, out = predicted
    rows = read_rows(wf.tree.predictions(BACKBONE, out.name))
    by_file: dict[str, list[dict]] = {}
    for r in rows:
        by_file.setdefault(r["file"], []).append(r)
    assert sorted(by_file) == [
        "cmyk.jpg",
        "good.jpg",
        "gray16.png",
        "notes.jpg",
        "rotated.png",
        "truncated.jpg",
        "upright.png",
    ]
    assert [r["status"] for r in by_file["notes.jpg"]] == ["rejected"]
    assert by_file["notes.jpg"][0]["reason"].startswith("not_an_image")
    assert [r["status"] for r in by_file["truncated.jpg"]] == ["rejected"]
    assert by_file["truncated.jpg"][0]["reason"].startswith("truncated")
    classes = set(wf.config["classes"])
    for name in ("good.jpg", "cmyk.jpg", "gray16.png", "rotated.png", "upright.png"):
        got = by_file[name]
        assert [r["rank"] for r in got] == ["1", "2"] and {r["status"] for r in got} == {"ok"}
        probs = [float(r["probability"]) for r in got]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert {r["class"] for r in got} <= classes and len({r["class"] for r in got}) == 2
        assert (out / got[0]["overlay"]).is_file()
        assert Image.open(out / got[0]["overlay"]).size == (64, 64)
    # EXIF orientation applied as prepare applies it: the rotated file predicts like its upright twin.
    assert [(r["class"], r["probability"]) for r in by_file["rotated.png"]] == [
        (r["class"], r["probability"]) for r in by_file["upright.png"]
    ]
    html = wf.tree.predict_page(BACKBONE, out.name).read_text()
    assert "good.jpg" in html and "notes.jpg" in html and "Files that could not be read" in html
    assert "predictions.csv" in html and ".hidden.jpg" not in html


def test_adding_an_image_predicts_only_it(predicted):
    wf, folder, out = predicted
    before = {p.name: p.stat().st_mtime_ns for p in (out / "overlays").iterdir()}
    assert len(before) == 5
    assert wf.planned("predict", "--config", f"predict_folder={folder}") == {}
    shape_image("circle", size=(50, 80)).save(folder / "added.png")
    assert wf.planned("predict", "--config", f"predict_folder={folder}") == {"predict": 1, "predict_model": 1}
    wf.run("predict", "--config", f"predict_folder={folder}", timeout=600)
    log = next(wf.workdir.glob(str(wf.layout.log("predict", BACKBONE, "*")))).read_text()
    assert "8 files, 5 from the cache, 1 to predict" in log
    after = {p.name: p.stat().st_mtime_ns for p in (out / "overlays").iterdir()}
    assert len(after) == 6 and all(after[name] == t for name, t in before.items())  # old overlays untouched
    assert "added.png" in {r["file"] for r in read_rows(wf.tree.predictions(BACKBONE, out.name))}


def test_missing_folder_is_named(predicted):
    wf, _, _ = predicted
    proc = wf.run("predict", check=False)
    assert proc.returncode != 0
    assert "predict.folder" in proc.stderr and "predict_folder" in proc.stderr


def test_export_reproduces_the_trained_model(predicted):
    wf, _, out = predicted
    run = out.name
    wf.run("export", timeout=600)
    res = Results(wf.results)
    check = json.loads(res.export_check(BACKBONE, run).read_text())
    assert set(check["formats"]) == {"keras", "saved_model"}
    # Independently of the job's own check: load both exports here and compare on test images.
    import keras
    import tensorflow as tf

    from convscope.models.build import load_model

    x = np.load(res.prepared(64, "test"))[:12].astype("float32")
    want = load_model(res.model(BACKBONE, run), compile=False).predict(x, verbose=0)
    saved = tf.saved_model.load(str(res.export_saved_model(BACKBONE, run)))
    served = saved.serve(x).numpy()
    native = keras.saving.load_model(str(res.export_keras(BACKBONE, run)), compile=False).predict(x, verbose=0)
    assert want.shape == (len(x), 3) and len(x) >= 8
    np.testing.assert_allclose(served, want, atol=1e-5)
    np.testing.assert_allclose(native, want, atol=1e-5)
    assert "augment" not in {
        layer.name for layer in keras.saving.load_model(str(res.export_keras(BACKBONE, run))).layers
    }
