"""`GET /ui/runbooks`: docs/runbooks.md as a page, in the gateway's namespace, so that the
`runbook_url` of an alert (`<gateway>/ui/runbooks#<alert name in lower case>`) opens on a
machine that has nothing but the gateway (the local stack's default link base).

Headings get GitHub's anchors (lower case, punctuation dropped, spaces to hyphens), the same
ones the committed rules' links use on a repository host. The Markdown is converted by
Python-Markdown; the runbooks are read from the checkout (`docs/runbooks.md`), so a gateway
installed without it answers 404 and says which link base to configure instead.
"""

from __future__ import annotations

import functools
import html
import re
from pathlib import Path

import markdown

from gateway.render import REPO, runbooks_markdown

__all__ = ["RUNBOOKS", "github_anchor", "runbooks_page"]

RUNBOOKS = REPO / "docs" / "runbooks.md"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Runbooks ({namespace})</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
        padding: 0 1rem; color: #1d2330; }}
code, pre {{ font-family: ui-monospace, monospace; font-size: 13px; background: #f3f4f7; }}
pre {{ padding: .75rem; overflow-x: auto; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #d0d4dc; padding: .2rem .5rem; }}
h2, h3 {{ border-top: 1px solid #e3e6ec; padding-top: .75rem; }}
:target {{ background: #fff6d5; }}
</style></head>
<body><p><a href="/ui/">status page</a></p>
{body}
</body></html>
"""


def github_anchor(heading: str, _separator: str = "-") -> str:
    """GitHub's heading slug: `CpuUsageCritical` -> `cpuusagecritical`, `Before you start`
    -> `before-you-start` (Python-Markdown's `toc` calls it as `slugify(value, separator)`)."""
    slug = re.sub(r"[^\w\- ]", "", html.unescape(heading).strip().lower())
    return slug.replace(" ", "-")


@functools.cache
def runbooks_page(namespace: str, path: Path = RUNBOOKS) -> str | None:
    """The page for `namespace`; None without the runbooks file. Cached: the file is read once
    per process (it changes with a deployment, not while the gateway runs)."""
    text = runbooks_markdown(namespace, path)
    if text is None:
        return None
    body = markdown.markdown(
        text,
        extensions=["toc", "tables", "fenced_code"],
        extension_configs={"toc": {"slugify": github_anchor}},
    )
    return _PAGE.format(namespace=html.escape(namespace), body=body)
