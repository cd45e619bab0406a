"""The HTML report: rendered from a results tree written to disk (real PNGs, CSVs,
JSON in the layout of the team contract), checked for its sections, links and
images, for escaping of every user-controlled string, and, on a real snakemake
run, for re-running exactly the report job when only report settings change.

`make_results` is also used by test_report_browser.py.
"""

from __future__ import annotations

import csv
import hashlib
import html.parser
import json
import re
import urllib.parse
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from conftest import parse_job_stats, tiny_config
from convscope import layout, records
from convscope.layout import Results
from convscope.records import BestRun, RunMetrics, write_best, write_metrics
from convscope.report import collect
from convscope.report.render import STANDALONE, render_report

EVIL = "<script>alert('x')</script>\"'&"


# ---- a results tree as the other stages write it ------------------------------


def _png(path: Path, color, size: int = 48, shape: str = "circle"):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (size, size), (240, 240, 240))
    d = ImageDraw.Draw(im)
    box = (size // 5, size // 5, size - size // 5, size - size // 5)
    (d.ellipse if shape == "circle" else d.rectangle)(box, fill=color)
    im.save(path)


def _figure(path: Path, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(3, 2), dpi=60)
    ax.plot([1, 2, 3], [0.3, 0.6, 0.8])
    ax.set_title(title)
    fig.savefig(path)
    plt.close(fig)


def _csv(path: Path, rows: list[dict], delimiter=","):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        w.writeheader()
        w.writerows(rows)


def make_results(
    root: Path,
    classes=("circle", "square", "triangle"),
    *,
    images: int = 8,
    backbones=("mobilenetv2", "alexnet"),
    evil: str | None = None,
) -> Path:
    """Write R/raw, R/clean, R/models, R/analysis and R/benchmarks for `classes`.

    With `evil`, the string is planted in file names, URLs, captions, titles,
    table cells and run ids (everything the report shows that users control).
    """
    R = Path(root)
    res = Results(R)
    ev = evil or ""
    manifest, splits = [], []
    for ci, cls in enumerate(classes):
        ledger = []
        for i in range(images):
            name = f"{i:06d}{ev if i == 1 else ''}.png"
            path = res.raw(cls) / name
            _png(path, (40 * ci % 255, 90, 200 - 30 * ci), shape="circle" if ci % 2 == 0 else "square")
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            url = f"https://example.org/{cls}/{i}.png?q={ev}" if i != 2 else f"javascript:alert(1)//{ev}"
            ledger.append(
                {
                    "source": "bing",
                    "url_or_path": url,
                    "file": name,
                    "sha256": sha,
                    "time": "2026-11-01T00:00:00",
                    "status": "ok",
                    "detail": "",
                }
            )
            # Files 0 and 1 are quarantined (one duplicate, one too small); the rest kept.
            status, reason = ("quarantined", "duplicate" if i == 0 else "too_small") if i < 2 else ("kept", "")
            manifest.append(
                {
                    "cls": cls,
                    "file": f"{cls}/{name}",
                    "sha256": sha,
                    "phash": "0" * 16,
                    "width": 48,
                    "height": 48,
                    "mode": "RGB",
                    "format": "PNG",
                    "status": status,
                    "reason": reason,
                    "dup_of": f"{cls}/000003.png" if i == 0 else "",
                    "cluster": sha[:16],
                    "detail": ev,
                }
            )
            if status == "kept":
                splits.append(
                    {
                        "cls": cls,
                        "file": f"{cls}/{name}",
                        "sha256": sha,
                        "cluster": sha[:16],
                        "split": ("train", "train", "val", "test")[i % 4],
                    }
                )
        ledger.append(
            {
                "source": "bing",
                "url_or_path": f"https://example.org/{cls}/404",
                "file": "",
                "sha256": "",
                "time": "2026-11-01T00:00:00",
                "status": "failed",
                "detail": "HTTP 404",
            }
        )
        _csv(res.ledger(cls), ledger)
        res.crawl_summary(cls).write_text(json.dumps({"class": cls, "downloaded": images}))
        _csv(
            res.benchmark("crawl", cls),
            [
                {
                    "s": 1.5 + ci,
                    "h:m:s": "0:00:01",
                    "max_rss": "-",
                    "max_vms": "-",
                    "max_uss": "-",
                    "max_pss": "-",
                    "io_in": "-",
                    "io_out": "-",
                    "mean_load": "0.0",
                    "cpu_time": "0.5",
                }
            ],
            delimiter="\t",
        )
    _csv(res.clean_manifest, manifest)
    for split in layout.SPLITS:
        _csv(res.split_list(split), [r for r in splits if r["split"] == split])
    _csv(
        res.benchmark("clean"),
        [
            {
                "s": 4.25,
                "h:m:s": "0:00:04",
                "max_rss": 210.5,
                "max_vms": 900,
                "max_uss": 200,
                "max_pss": 201,
                "io_in": 1,
                "io_out": 2,
                "mean_load": 80.0,
                "cpu_time": 3.9,
            }
        ],
        delimiter="\t",
    )

    runs, best = [], {}
    for bi, b in enumerate(backbones):
        for ri, lr in enumerate(("1e-3", "1e-4")):
            run = f"finetune-lr{lr}-d{ri}{ev if ri == 1 else ''}"
            acc = 0.5 + 0.1 * ri + 0.05 * bi
            metrics = RunMetrics(
                backbone=b,
                run=run,
                strategy="finetune",
                val={"accuracy": acc},
                test={"accuracy": acc - 0.02, "accuracy_ci95": [acc - 0.1, acc]},
                hp={"learning_rate": lr},
                images_per_s=100.0 + 10 * ri,
                train_time_s=12.5,
                seed=7,
                versions={"keras": "3.15.1", "backend": "tensorflow", "python": "3.11"},
            )
            d = res.run_dir(b, run)
            write_metrics(d / layout.METRICS, metrics)
            _csv(d / layout.HISTORY, [{"epoch": 0, "loss": 1.0, "accuracy": 0.4, "val_loss": 1.1, "val_accuracy": 0.4}])
            runs.append(
                {
                    "backbone": b,
                    "run": run,
                    "strategy": "finetune",
                    "learning_rate": lr,
                    "val_accuracy": acc,
                    "test_accuracy": acc - 0.02,
                    "train_time_s": 12.5,
                }
            )
            _csv(
                res.benchmark("train", b, run),
                [
                    {
                        "s": 30.0 + ri,
                        "h:m:s": "0:00:30",
                        "max_rss": 1500.0 + ri,
                        "max_vms": 3000,
                        "max_uss": 1400,
                        "max_pss": 1450,
                        "io_in": 0,
                        "io_out": 5,
                        "mean_load": 150.0,
                        "cpu_time": 55.0,
                    }
                ],
                delimiter="\t",
            )
        best[b] = BestRun(
            run=run,
            strategy="finetune",
            val_accuracy=acc,
            test_accuracy=acc - 0.02,
            test_ci95_low=acc - 0.1,
            test_ci95_high=acc,
            runs=2,
        )
        a = res.analysis_dir(b, run)
        for name, path in res.analysis_records(b, run).items():  # the analyse job writes each, run or not
            path.parent.mkdir(parents=True, exist_ok=True)
            records.ANALYSIS_RECORDS[name].not_run(path, "not run in this fixture")
        _figure(a / "curves.png", f"{b} curves {ev}")
        _csv(a / "curves.csv", [{"epoch": 1, "loss": 0.9}])
        _figure(a / "gradcam" / "gradcam.png", "gradcam")
        _csv(a / "per_class.csv", [{"class": f"{c}{ev}", "precision": 0.9, "recall": 0.8} for c in classes])
        (a / "pointing.json").write_text(json.dumps({"gradcam": 0.8, "note": ev}))
        _figure(a / "deletion.png", "deletion")
        index = {
            "title": f"{b} {run}",
            "sections": [
                {
                    "id": "curves",
                    "title": f"Learning curves {ev}",
                    "group": "results",
                    "items": [
                        {
                            "kind": "image",
                            "file": "curves.png",
                            "caption": f"Loss and accuracy per epoch {ev}",
                            "data": "curves.csv",
                        }
                    ],
                },
                {
                    "id": "report",
                    "title": "Per-class report",
                    "group": "results",
                    "items": [
                        {
                            "kind": "table",
                            "file": "per_class.csv",
                            "caption": "precision and recall per class",
                            "data": None,
                        }
                    ],
                },
                {
                    "id": "gradcam",
                    "title": "Grad-CAM",
                    "group": "results",
                    "items": [
                        {
                            "kind": "image",
                            "file": "gradcam/gradcam.png",
                            "caption": "where the network looks",
                            "data": None,
                            "badges": [
                                {"method": "gradcam", "title": "Grad-CAM", "passed": True, "note": "fell to 0.1"},
                                {
                                    "method": "saliency",
                                    "title": "Saliency",
                                    "passed": False,
                                    "note": f"the maps barely change {ev}",
                                },
                            ],
                        }
                    ],
                },
                {
                    "id": "pointing_game",
                    "title": "Pointing game",
                    "group": "checks",
                    "items": [
                        {"kind": "json", "file": "pointing.json", "caption": "hits inside the box", "data": None},
                        {"kind": "image", "file": "deletion.png", "caption": "deletion curve", "data": None},
                    ],
                },
            ],
        }
        (a / layout.INDEX).write_text(json.dumps(index))
    g = res.grid_dir
    _csv(res.runs_csv, runs)
    write_best(res.best_json, best)
    _figure(g / "heatmap.png", f"heatmap {ev}")
    _figure(g / "strategies.png", "strategies")
    (g / layout.INDEX).write_text(
        json.dumps(
            {
                "title": "Grid",
                "sections": [
                    {
                        "id": "runs",
                        "title": "All runs",
                        "group": "own_table",
                        "items": [{"kind": "table", "file": "runs.csv", "caption": "every run", "data": None}],
                    },
                    {
                        "id": "heatmaps",
                        "title": "Heatmaps",
                        "group": "results",
                        "items": [
                            {
                                "kind": "image",
                                "file": "heatmap.png",
                                "caption": f"val accuracy over lr x depth {ev}",
                                "data": None,
                            }
                        ],
                    },
                    {
                        "id": "strategies",
                        "title": "Strategy comparison",
                        "group": "results",
                        "items": [
                            {"kind": "image", "file": "strategies.png", "caption": "scratch vs finetune", "data": None}
                        ],
                    },
                ],
            }
        )
    )
    return R


class Page(html.parser.HTMLParser):
    """What the browser would see: elements with attributes, scripts, ids."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts = 0
        self.ids: set[str] = set()
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        self.scripts += tag == "script"
        if "id" in a:
            self.ids.add(a["id"])
        # An injected event handler would show up as an on* attribute.
        bad = [k for k in a if k.startswith("on")]
        assert not bad, f"<{tag}> has event handler attributes {bad}"

    def attrs(self, tag: str, name: str) -> list[str]:
        return [a[name] for t, a in self.tags if t == tag and a.get(name) is not None]


def _config(classes, **report):
    cfg = tiny_config(classes=tuple(classes))
    cfg["report"] = report
    return cfg


OPTIONS = {"title": "Shapes study", "description": "what convnets see", "thumbnails_per_class": 3}


def benchmark_files(R: Path) -> list[Path]:
    """Every benchmark file make_results wrote: what the report rule would declare for that tree."""
    return sorted(Results(R).benchmarks.rglob("*.tsv"))


def compute_jobs(html_text: str) -> list[tuple[str, str]]:
    """(rule, job) of each row of the compute section's every-job table."""
    compute = html_text[html_text.index('id="compute"') :]
    return re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td><td", compute[: compute.index("Training throughput")])


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    R = make_results(root / "results")
    cfg = _config(["circle", "square", "triangle"], **OPTIONS)
    out = render_report(R, Results(R).report_dir, OPTIONS, True, config=cfg, benchmarks=benchmark_files(R))
    return R, out


def test_sections_images_and_links(rendered):
    R, out = rendered
    text = out["html"].read_text()
    page = Page(text)
    for anchor in ("data", "grid", "bb-mobilenetv2", "bb-alexnet", "explanations", "compute"):
        assert anchor in page.ids, f"section #{anchor} missing"
    # Navigation links all land on an element of the page.
    for href in page.attrs("a", "href"):
        if href.startswith("#"):
            assert href[1:] in page.ids, f"dangling anchor {href}"
    # Every image is a file beside the page (copied into assets/), and decodes.
    srcs = page.attrs("img", "src")
    thumbs = [s for s in srcs if "/thumbs/" in s]
    assert len(thumbs) == 3 * 3
    figures = [s for s in srcs if "/thumbs/" not in s]
    # per backbone: curves, gradcam, deletion (explanations) = 3 x 2; grid: heatmap, strategies
    assert len(figures) == 3 * 2 + 2
    for src in srcs:
        assert not re.match(r"^[a-z]+:", src), f"image {src} is not a relative path"
        path = out["html"].parent / urllib.parse.unquote(src)
        assert path.is_file() and path.resolve().is_relative_to(out["html"].parent.resolve())
        with Image.open(path) as im:
            im.verify()
    # Every relative link resolves to a file (assets, run metrics, raw quarantined files).
    links = [h for h in page.attrs("a", "href") if not h.startswith(("#", "http://", "https://"))]
    assert any(h.startswith("../models/") for h in links) and any(h.startswith("../raw/") for h in links)
    for href in links:
        assert (out["html"].parent / urllib.parse.unquote(href)).is_file(), f"broken link {href}"
    # No external resources of any kind.
    assert not page.attrs("link", "href") or page.attrs("link", "href") == ["data:,"]
    assert page.scripts == 1 and not page.attrs("script", "src")
    # Captions from index.json, counts from the manifests.
    assert "where the network looks" in text and "scratch vs finetune" in text
    assert "hits inside the box" in text
    # Sanity badges next to the maps: one per method, a failure explained in one line.
    assert text.count('class="badge pass"') == 2 and text.count('class="badge fail"') == 2  # both backbones
    assert "Saliency: sanity FAILED" in text and "Saliency: the maps barely change" in text


def test_data_counts_match_manifests(rendered):
    R, _ = rendered
    data = collect.data_summary(R, ["circle", "square", "triangle"])
    for row in data["classes"]:
        assert row["raw"] == 8 and row["kept"] == 6 and row["quarantined"] == 2
        assert row["by_reason"] == {"duplicate": 1, "too_small": 1}
        assert row["raw"] == row["kept"] + row["quarantined"]
        assert sum(row["splits"].values()) == row["kept"]
        assert row["downloads"] == {"ok": 8, "failed": 1}
    assert len(data["quarantine"]) == 6


def test_compute_cost_from_benchmarks(rendered):
    R, out = rendered
    bench = collect.benchmarks(benchmark_files(R), Results(R).benchmarks)
    rules = {r["rule"]: r for r in bench["rules"]}
    assert rules["crawl"]["jobs"] == 3 and rules["crawl"]["total_s"] == pytest.approx(1.5 + 2.5 + 3.5)
    assert rules["crawl"]["max_rss"] is None  # '-' means not measured, not 0
    assert rules["clean"]["max_rss"] == pytest.approx(210.5)
    assert rules["train"]["jobs"] == 4 and rules["train"]["max_rss"] == pytest.approx(1501.0)
    text = out["html"].read_text()
    compute = text[text.index('id="compute"') :]
    assert 'data-sort="1501.0"' in compute and ">train<" in compute
    # images/s per run comes from metrics.json when runs.csv lacks it
    assert 'data-sort="110.0"' in compute


def test_compute_reads_only_the_benchmarks_it_is_handed(tmp_path):
    """The compute table shows the files the report rule declares, not whatever lies in benchmarks/."""
    R = make_results(tmp_path / "results", backbones=("mobilenetv2",))
    res = Results(R)
    stray = res.benchmark("predict", "mobilenetv2", "finetune-lr1e-4-d1")  # an on-demand job's, not declared
    stray.parent.mkdir(parents=True)
    stray.write_text(res.benchmark("clean").read_text().replace("4.25", "999.5"))
    handed = [res.benchmark("clean"), res.benchmark("crawl", "circle")]
    options = {**OPTIONS, "sections": ["data", "compute"]}
    cfg = _config(["circle", "square", "triangle"])
    text = render_report(R, Results(R).report_dir, options, False, config=cfg, benchmarks=handed)["html"].read_text()
    assert compute_jobs(text) == [("clean", ""), ("crawl", "circle")]
    assert "999.5" not in text and "predict" not in text
    # A handed file that is missing, or outside benchmarks/ (its folder names the rule), is named.
    res.benchmark("clean").unlink()
    with pytest.raises(collect.ReportInputError, match=r"clean\.tsv: missing.*benchmark: directive of the clean rule"):
        render_report(R, Results(R).report_dir, options, False, config=cfg, benchmarks=handed)
    with pytest.raises(collect.ReportInputError, match=r"test\.csv: not under .*benchmarks"):
        render_report(R, Results(R).report_dir, options, False, config=cfg, benchmarks=[res.split_list("test")])


def test_standalone_embeds_everything(rendered):
    R, out = rendered
    text = out["standalone"].read_text()
    page = Page(text)
    srcs = page.attrs("img", "src")
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    # Links into the results tree would be dead in a mailed file: none left.
    for href in page.attrs("a", "href"):
        assert href.startswith(("#", "data:", "https://")), href
    assert "assets/" not in " ".join(page.attrs("img", "src"))
    assert out["standalone"].stat().st_size > out["html"].stat().st_size


def test_csp_pins_the_inline_script(rendered):
    """The page's only script is allowed by hash; anything injected would be refused."""
    import base64

    _, out = rendered
    text = out["html"].read_text()
    csp = next(a["content"] for t, a in Page(text).tags if t == "meta" and a.get("http-equiv"))
    script = re.search(r"<script>(.*?)</script>", text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp


def test_user_strings_are_escaped(tmp_path):
    """<script> and quotes in class names, file names, URLs, captions, titles and run ids."""
    classes = ["circle", f"sq{EVIL}"]
    R = make_results(tmp_path / "results", classes=classes, backbones=("mobilenetv2",), evil=EVIL)
    options = {**OPTIONS, "title": f"Title {EVIL}", "description": f"Desc {EVIL}"}
    cfg = _config(classes, **options)
    cfg["classes"][f"sq{EVIL}"] = {"keywords": [f"kw {EVIL}"]}
    out = render_report(R, Results(R).report_dir, options, True, config=cfg)
    for path in (out["html"], out["standalone"]):
        text = path.read_text()
        page = Page(text)  # also fails on any injected on* attribute
        assert page.scripts == 1, f"{path.name}: an injected <script> element"
        assert "<script>alert" not in text
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#34;&#39;&amp;" in text
        # Each planted string is there, escaped: title, description, keyword (config),
        # class name, caption, run id, file name, cell of a CSV table.
        for context in ("Title ", "Desc ", "kw ", "sq", "Loss and accuracy per epoch ", "lr1e-4-d1", "class"):
            assert context in text
        # javascript: URLs from the crawl ledger are shown as text, never as links.
        assert not [h for h in page.attrs("a", "href") if h.lower().startswith("javascript")]
        # img src values are URL-quoted paths (no raw quotes or brackets) or data: URIs.
        for src in page.attrs("img", "src"):
            assert not set(src) & set("<>\"' "), src
    # The planted file names still resolve to the copied files.
    html_dir = out["html"].parent
    for src in Page(out["html"].read_text()).attrs("img", "src"):
        assert (html_dir / urllib.parse.unquote(src)).is_file(), src


def test_sections_option_and_thumbnail_count(tmp_path):
    R = make_results(tmp_path / "results", backbones=("mobilenetv2",))
    options = {**OPTIONS, "sections": ["data", "compute"], "thumbnails_per_class": 2}
    out = render_report(R, Results(R).report_dir, options, False, config=_config(["circle", "square", "triangle"]))
    page = Page(out["html"].read_text())
    assert {"data", "compute"} <= page.ids
    assert not {"grid", "bb-mobilenetv2", "explanations"} & page.ids
    assert len(page.attrs("img", "src")) == 3 * 2
    assert "standalone" not in out and not (Results(R).report_dir / STANDALONE).exists()
    # A data-only report does not need the analyses at all.
    import shutil

    shutil.rmtree(Results(R).analyses_dir)
    render_report(
        R,
        Results(R).report_dir,
        {**options, "sections": ["data"]},
        False,
        config=_config(["circle", "square", "triangle"]),
    )


def test_missing_inputs_are_named(tmp_path):
    R = make_results(tmp_path / "results", backbones=("mobilenetv2",))
    cfg = _config(["circle", "square", "triangle"])
    (Results(R).analysis_dir("mobilenetv2", "finetune-lr1e-4-d1") / "gradcam" / "gradcam.png").unlink()
    with pytest.raises(collect.ReportInputError, match=r"gradcam/gradcam\.png.*does not exist"):
        render_report(R, Results(R).report_dir, OPTIONS, False, config=cfg)
    Results(R).split_list("val").unlink()
    with pytest.raises(collect.ReportInputError, match=r"splits/val\.csv: missing.*split stage"):
        render_report(R, Results(R).report_dir, {**OPTIONS, "sections": ["data"]}, False, config=cfg)
    with pytest.raises(ValueError, match=r"report\.sections.*'tables'"):
        render_report(R, Results(R).report_dir, {**OPTIONS, "sections": ["tables"]}, False, config=cfg)


@pytest.mark.parametrize(
    "report, words",
    [
        ({"sections": ["data", "tables"]}, ["config key report.sections.1", "'tables'", "'compute'"]),
        ({"thumbnails_per_class": -1}, ["config key report.thumbnails_per_class"]),
        ({"colour": "red"}, ["config key report.colour", "'self_contained'"]),
    ],
)
def test_bad_report_config_names_the_key(report, words):
    from convscope import config as cfg

    config = _config(["circle", "square"], **report)
    with pytest.raises(cfg.ConfigError) as e:
        cfg.load_and_validate(config)
    for w in words:
        assert w in str(e.value)


def test_report_defaults_are_filled():
    from convscope import config as cfg
    from convscope.report.render import DEFAULTS

    config = _config(["circle", "square"])
    del config["report"]
    # Validation fills the whole section (the report rule's params are exactly this section).
    assert cfg.load_and_validate(config)["report"] == DEFAULTS
    assert DEFAULTS["sections"] == ["findings", "data", "audit", "grid", "backbones", "explanations", "compute"]


def test_rerender_drops_stale_assets(rendered, tmp_path):
    R = make_results(tmp_path / "results", backbones=("mobilenetv2",))
    cfg = _config(["circle", "square", "triangle"])
    render_report(R, Results(R).report_dir, OPTIONS, False, config=cfg)
    stale = Results(R).report_dir / "assets" / "old.png"
    stale.write_bytes(b"x")
    render_report(R, Results(R).report_dir, OPTIONS, False, config=cfg)
    assert not stale.exists()


# ---- the report rule in a real snakemake run --------------------------------------


def tiny_pipeline_config() -> dict:
    """Two classes, one small network, one run of one epoch: the whole pipeline in about a minute."""
    cfg = tiny_config(
        classes=("circle", "square"),
        images=24,
        backbones={"mobilenetv2": {"input_size": 32, "weights": "none"}},
        train={
            "strategies": ["finetune"],
            "grid": {"learning_rate": [0.001], "epochs": [1], "batch_size": [16], "tune_depth": [1]},
            "tensorboard": False,
            "bootstrap": 100,
            "threads": 1,
        },
        analysis={
            "gpu": False,
            "sample_images": 2,
            "examples": {"per_class": 1, "mistakes": 2},
            "embedding": {"thumbnails": 0, "perplexity": 5},
            "activations": {"layers": [0.5], "channels": 4},
            "filters": {"max_filters": 8},
        },
    )
    cfg["report"] = {"title": "before", "thumbnails_per_class": 2}
    return cfg


def plan(wf) -> tuple[dict, str]:
    """A dry run's jobs, without `all` (the default target's rule: it runs nothing), and
    snakemake's reasons for them (to show when the job list is not the expected one)."""
    proc = wf.run("-n")
    out = proc.stdout + proc.stderr
    jobs = {k: v for k, v in parse_job_stats(out).items() if k != "all"}
    return jobs, "\n".join(line.strip() for line in out.splitlines() if "reason:" in line)


@pytest.mark.slow
def test_report_settings_rerun_only_the_report(workflow, tmp_path):
    """A data report before training; then the whole pipeline; then, on the completed
    workflow, editing report settings plans exactly one job: report."""
    cfg = tiny_pipeline_config()
    cfg["report"]["sections"] = ["data"]
    wf = workflow(cfg)
    report_html = str(wf.layout.report_page)  # relative to workdir
    # A data-only report needs no training: only the data stages run.
    wf.run(report_html)
    assert not wf.tree.models_dir.exists(), "a data-only report trained models"
    page = Page((wf.workdir / report_html).read_text())
    assert "data" in page.ids and "grid" not in page.ids and len(page.attrs("img", "src")) == 2 * 2

    # Every section: the default target builds the rest of the pipeline and the report.
    del cfg["report"]["sections"]
    wf.write_config(cfg)
    wf.run()
    html_dir = wf.tree.report_dir
    page = Page(wf.tree.report_page.read_text())
    assert {"data", "grid", "bb-mobilenetv2", "explanations", "compute"} <= page.ids
    # The compute table: the benchmark of every job the report was built from (its declared
    # inputs), which here is every job but the report itself.
    bench = Results(wf.results).benchmarks
    on_disk = {p.relative_to(bench).with_suffix("").parts for p in bench.rglob("*.tsv")} - {("report",)}
    shown = {(rule, *job.split("/")) if job else (rule,) for rule, job in compute_jobs(wf.tree.report_page.read_text())}
    assert shown == on_disk and {"crawl", "clean", "split", "prepare", "train", "summarise", "analyse"} <= {
        parts[0] for parts in shown
    }
    srcs = page.attrs("img", "src")
    best = json.loads(wf.tree.best_json.read_text())["mobilenetv2"]["run"]
    index = json.loads(wf.tree.analysis_index("mobilenetv2", best).read_text())
    figures = [it for sec in index["sections"] for it in sec["items"] if it["kind"] == "image"]
    assert len([s for s in srcs if s.startswith("assets/mobilenetv2/")]) == len(figures) > 0
    # And its strategies side by side (the strategy_change job): the CKA and the corruption figure.
    assert len([s for s in srcs if s.startswith("assets/by_strategy/mobilenetv2/")]) == 2
    for src in srcs:
        assert (html_dir / urllib.parse.unquote(src)).is_file(), src
    for href in page.attrs("a", "href"):
        if not href.startswith(("#", "http")):
            assert (html_dir / urllib.parse.unquote(href)).is_file(), href
    jobs, why = plan(wf)
    assert jobs == {}, why
    _browser_check(wf.results, tmp_path)
    # Snakemake's own report carries the page's figures and the self-contained page.
    wf.run("--report", str(wf.workdir / "snakemake-report.html"))
    sm = (wf.workdir / "snakemake-report.html").read_text()
    for expected in ("Figures", "c0-0.jpg", STANDALONE, "self-contained page", "mobilenetv2"):
        assert expected in sm

    # Text only; then which parts and files (the input and output sets change).
    for edit in [
        {"title": f"after {EVIL}", "description": "a new description"},
        {"sections": ["data", "grid", "backbones"], "thumbnails_per_class": 3, "self_contained": False},
    ]:
        cfg["report"].update(edit)
        wf.write_config(cfg)
        jobs, why = plan(wf)
        assert jobs == {"report": 1}, f"editing report {sorted(edit)}:\n{why}"
    wf.run()
    text = wf.tree.report_page.read_text()
    assert "after &lt;script&gt;" in text and "a new description" in text
    assert "compute" not in Page(text).ids and not (html_dir / STANDALONE).exists()
    # The check can fail: a setting upstream of the report re-runs more than the report.
    cfg["clean"]["min_side"] = 20
    wf.write_config(cfg)
    jobs, why = plan(wf)
    assert {"clean", "split", "train", "report"} <= set(jobs), why


def _browser_check(results: Path, tmp_path: Path):
    """The pipeline's real report in headless Chromium (when installed): every image loads, no errors."""
    try:
        from test_report_browser import ARTIFACTS, CHROMIUM, REPORT_PAGE, Browser, assert_page_ok, serve
    except pytest.skip.Exception:  # websocket-client missing: test_report_browser says why
        return
    if CHROMIUM is None:
        return
    browser = Browser()
    try:
        with serve(results) as base:
            browser.load(f"{base}/{REPORT_PAGE}")
            assert_page_ok(browser)
            browser.screenshot(ARTIFACTS / "pipeline.png")
        browser.load((Results(results).report_dir / STANDALONE).as_uri())
        assert_page_ok(browser)
    finally:
        browser.close()


def test_findings_open_the_page(tmp_path):
    """Best model with CI and calibration, the strategy verdicts, explanation checks and data health come
    first; versions and machine come last."""
    from convscope.analysis.grid import paired

    R = make_results(tmp_path / "results", backbones=("alexnet",))
    run = "finetune-lr1e-4-d1"
    res = Results(R)
    res.best_json.write_text(
        json.dumps(
            {
                "alexnet": {
                    "run": run,
                    "strategy": "finetune",
                    "val_accuracy": 0.93,
                    "test_accuracy": 0.912,
                    "test_ci95_low": 0.85,
                    "test_ci95_high": 0.96,
                    "seeds": 3,
                    "val_accuracy_seed_mean": 0.9,
                    "chosen_as": "best trained run, by x",
                    "runs": 2,
                    "best_any": {"run": run},
                }
            }
        )
    )
    ft = [True] * 90 + [False] * 10
    sc = [True] * 60 + [False] * 40
    comparison = paired.compare(
        paired.Arm("finetune", 0.9, (0.85, 0.95), ft), paired.Arm("scratch", 0.6, (0.5, 0.7), sc)
    )
    _csv(
        res.comparisons_csv,
        [
            {
                "backbone": "alexnet",
                "strategy_a": "finetune",
                "run_a": run,
                "strategy_b": "scratch",
                "run_b": "scratch-x",
                **comparison,
            }
        ],
    )
    files = res.analysis("alexnet", run)
    records.CALIBRATION.write(files.calibration, {"temperature": 1.8, "ece_before": 0.12, "ece_after": 0.03})
    records.FROZEN.write(
        files.frozen,
        {
            "strategy": "finetune",
            "frozen_blocks": ["conv1"],
            "trained_blocks": ["conv2"],
            "statement": "Blocks conv1 stayed frozen",
            "blocks": [],
        },
    )
    records.POINTING.write(
        files.explain.pointing,
        {"images": 40, "chance": 0.2, "centre_baseline": 0.5, "methods": {"gradcam": {"accuracy": 0.8}}},
    )
    records.DELETION.write(files.explain.deletion, {"images": 40, "steps": 10, "auc": {"gradcam": 0.45, "random": 0.4}})
    sanity = {"gradcam": {"passed": True}, "saliency": {"passed": True}, "eigencam": {"passed": False}}
    records.SANITY.write(files.explain.sanity, {"threshold": 0.5, "images": 8, "stages": [], "methods": sanity})
    out = render_report(R, Results(R).report_dir, OPTIONS, False, config=_config(["circle", "square", "triangle"]))
    text = out["html"].read_text()
    order = [a.get("id") for t, a in Page(text).tags if t == "section" and a.get("class") == "block"]
    assert order[:2] == ["findings", "data"] and order[-1] == "environment"
    findings = text[text.index('id="findings"') : text.index('id="data"')]
    assert "Test accuracy 0.912 (95% CI 0.85–0.96)" in findings and f"{run} (finetune)" in findings
    assert "ECE 0.120 → 0.030 after temperature scaling (T = 1.80" in findings and "3 seeds" in findings
    assert "Blocks conv1 stayed frozen" in findings
    assert (
        "finetune scores higher than scratch on test accuracy (0.900 vs 0.600); their 95% CIs do not overlap"
        in findings
    )
    assert f"McNemar exact p = {comparison['p_value']:.3g}, significant" in findings
    # Grad-CAM beats chance and the centre in the pointing game, but deletes no faster than random.
    assert "pointing game: Grad-CAM points inside the object box on 80% of 40" in findings
    # Eigencam fails the sanity check: the sanity badge counts methods, the heading counts checks.
    assert findings.count('class="badge pass"') == 1 and findings.count('class="badge fail"') == 3
    assert '<span class="badge fail">1 of 3 checks passed</span>' in findings
    assert '<span class="badge fail">2 of 3 passed</span> randomisation sanity' in findings
    assert "randomisation sanity" in findings and "shuffled (trustworthy): gradcam, saliency" in findings
    assert "barely change (they show the image, not the model): eigencam" in findings
    assert "18 of 24 images kept, 6 quarantined (duplicate 3, too_small 3)." in findings
    # The data-health card: each check's count and criterion, a number on every line.
    assert "<b>exact copies:</b> 3 images quarantined; criterion: the same bytes (sha256)" in findings
    assert "<b>near copies:</b> 0 images quarantined; criterion: aligned pixel residual" in findings
    assert text.index('id="environment"') > text.index('id="compute"')


def test_findings_say_when_a_margin_is_too_small_to_hold_across_seeds(tmp_path):
    from convscope.report.findings import deletion_check, pointing_check

    folder = layout.AnalysisFolder(tmp_path)
    folder.explain.path.mkdir()
    game = {"images": 40, "chance": 0.2, "centre_baseline": 0.5, "methods": {"gradcam": {"accuracy": 0.55}}}
    records.POINTING.write(folder.explain.pointing, game)
    records.DELETION.write(
        folder.explain.deletion, {"images": 40, "steps": 10, "auc": {"gradcam": 0.39, "random": 0.40}}
    )
    close = "small enough to change with the seed"
    p, d = pointing_check(folder), deletion_check(folder)
    assert p.passed and close in p.text and d.passed and close in d.text
    game["methods"]["gradcam"]["accuracy"] = 0.8
    records.POINTING.write(folder.explain.pointing, game)
    records.DELETION.write(
        folder.explain.deletion, {"images": 40, "steps": 10, "auc": {"gradcam": 0.3, "random": 0.40}}
    )
    assert close not in pointing_check(folder).text and close not in deletion_check(folder).text
