"""Telling "the network is down" from "the source had nothing": failed requests by cause.

A crawl on a machine without internet used to end with "source 'bing' gave no usable
image ... the source had nothing more", pointing at an empty ledger, while the log held
dozens of name-resolution errors. convscope.data.engines now records every failed
request in the class ledger (search and site pages too, their detail starting with
PAGE), and `diagnose` reads this run's failed rows back: when every request failed
for a network reason, the crawl's error says so, with the hosts and counts.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

PAGE = "page request failed"  # detail prefix of a failed search/site page fetch in the ledger

# (cause, patterns found in requests/urllib3/socket error texts), first match wins.
_CAUSES = (
    (
        "name not resolved",
        (
            "NameResolutionError",
            "Name or service not known",
            "Temporary failure in name resolution",
            "nodename nor servname",
            "No address associated with hostname",
            "getaddrinfo failed",
        ),
    ),
    ("connection refused", ("Connection refused", "ConnectionRefusedError")),
    ("host unreachable", ("Network is unreachable", "No route to host", "Host is unreachable")),
    ("no response (timed out)", ("no response within", "timed out", "ConnectTimeout")),
    ("connection failed", ("ConnectionError", "NewConnectionError", "RemoteDisconnected", "SSLError", "ProxyError")),
)


def cause(detail: str) -> str | None:
    """The network cause a failed request's detail text names, or None (an HTTP error, a bad file...)."""
    for name, patterns in _CAUSES:
        if any(p in detail for p in patterns):
            return name
    return None


@dataclass
class Diagnosis:
    """Failed requests of one crawl: how many, of which kind, to which hosts, and why."""

    pages: int = 0
    images: int = 0
    network: int = 0  # of those, failed for a network reason
    causes: Counter = field(default_factory=Counter)
    hosts: Counter = field(default_factory=Counter)

    @property
    def network_down(self) -> bool:
        """Every request failed and every failure was the network's."""
        return self.network > 0 and self.network == self.pages + self.images

    def words(self) -> str:
        causes = ", ".join(f"{c} {n}×" for c, n in self.causes.most_common())
        hosts = ", ".join(h for h, _ in self.hosts.most_common(3))
        return (
            f"{self.pages} page request(s) and {self.images} image download(s) failed, {self.network} of them "
            f"for a network reason ({causes}; host(s) {hosts})"
        )


def diagnose(rows: list[dict]) -> Diagnosis:
    """Read the ledger's failed rows (status 'failed': the latest try of each URL)."""
    d = Diagnosis()
    for row in rows:
        if row["status"] != "failed":
            continue
        is_page = row["detail"].startswith(PAGE)
        d.pages += is_page
        d.images += not is_page
        why = cause(row["detail"])
        if why:
            d.network += 1
            d.causes[why] += 1
            d.hosts[urlsplit(row["url_or_path"]).netloc or row["url_or_path"]] += 1
    return d


def page_failure_detail(exc: BaseException) -> str:
    text = re.sub(r"\s+", " ", str(exc))
    return f"{PAGE}: {type(exc).__name__}: {text}"
