"""The predict page's Content-Security-Policy allows everything the page itself loads.

A browser refuses (and logs a console error for) any image, style or icon its
page's CSP does not allow; the page's icon is a data: URI, its overlays are files
beside it. Checked by parsing the rendered page (tests/test_report_browser.py
checks the report the same way in Chromium).
"""

from __future__ import annotations

from html.parser import HTMLParser

from convscope import layout
from convscope.predict.page import render


class Sources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.csp, self.images = "", []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy":
            self.csp = a["content"]
        if (tag == "link" and "icon" in a.get("rel", "")) or tag == "img":
            self.images.append(a.get("href") or a.get("src"))


def allowed(source: str, url: str) -> bool:
    if ":" in url.split("/")[0]:
        return f"{url.split(':')[0]}:" in source.split()
    return "'self'" in source.split()


def test_every_image_and_the_icon_are_allowed_by_the_page_csp():
    ordered = [("a.png", {"status": "ok", "overlay": "overlays/a.png", "top": [("circle", 0.9)]})]
    page = Sources()
    page.feed(render("alexnet", "run1", "/data/in", ordered, table=layout.PredictFolder(".").predictions.name))
    directives = dict(d.strip().split(" ", 1) for d in page.csp.split(";") if d.strip())
    assert directives["default-src"] == "'none'"
    assert sorted(page.images) == ["data:,", "overlays/a.png"]
    blocked = [url for url in page.images if not allowed(directives["img-src"], url)]
    assert not blocked, f"img-src {directives['img-src']!r} blocks {blocked}"
