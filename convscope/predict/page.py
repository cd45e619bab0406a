"""The predict page: one model's predictions on the folder, in the report's style (its CSS)."""

from __future__ import annotations

import base64
import hashlib
from importlib import resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup


def _css() -> str:
    return resources.files("convscope.report").joinpath("static", "report.css").read_text(encoding="utf-8")


def render(backbone: str, run: str, folder, ordered: list[tuple[str, dict]], table: str) -> str:
    """table: the predictions CSV's name beside the page (layout.PredictFolder.predictions)."""
    css = _css()
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    # img-src data: for the page's empty icon (<link rel="icon" href="data:,">, which stops the
    # browser asking for /favicon.ico), as in the report; the overlays are 'self'.
    csp = f"default-src 'none'; img-src 'self' data:; style-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    env = Environment(loader=PackageLoader("convscope.predict", "templates"), autoescape=select_autoescape(["j2"]))
    ok = [(name, r) for name, r in ordered if r["status"] == "ok"]
    rejected = [(name, r) for name, r in ordered if r["status"] != "ok"]
    return env.get_template("predict.html.j2").render(
        title=f"Predictions of {backbone}/{run}",
        folder=str(Path(folder)),
        ok=ok,
        rejected=rejected,
        table=table,
        css=Markup(css),
        csp=csp,
    )
