"""Render a deployment's Prometheus rules, their tests, the dashboards and the metric docs for
one namespace and one pair of link bases: `telemetry-gateway render`.

The committed files (`prometheus/`, `dashboards/`) are the default rendering: namespace
`coderunner`, readable, and what people edit. Rendering for another namespace maps every name
in them through what defines it, never through a blind search and replace:

- a catalogue metric's Prometheus name (`coderunner_api_requests_total`, with `_bucket`,
  `_sum`, `_count` for histograms, and a counter's family name without `_total`) becomes the
  same entry's name under the new namespace (`acme_api_requests_total`);
- a recording rule's name (`job:coderunner_api_requests:rate5m`, read from every `record:` of
  every rule file the glob finds) and a rule group's name (`coderunner-api`) get the new
  namespace in place of the old one;
- the `job` of a service (`coderunner/api`, `service.namespace/service.name`), the dashboard's
  uid, title, tag and provisioning folder, and a bare namespace regex (`coderunner_.+`);
- the link bases of the alerts' `runbook_url` and `dashboard_url` (read from
  `prometheus/slo.yaml`, `links`) become the configured ones.

The SLO rules are generated again from `prometheus/slo.yaml` with the namespace and links
(`gateway.slo`), and `docs/metrics.md` from the catalogue (`gateway.catalogue_docs`).

Anything else that spells the old namespace stays as it is, and `render` then refuses the
output (`UnmappedName`): a hand-written literal that does not follow the catalogue fails here,
and in `tests/test_render.py`, instead of silently keeping `coderunner_` in an `acme` world.

Worked example: `render(Path("out"), RenderOptions("acme", runbook_base=..., ...))` writes
`out/prometheus/rules/alerts.yml` where
`coderunner_system_memory_utilization_ratio > 0.95` reads
`acme_system_memory_utilization_ratio > 0.95`, and `promtool test rules
out/prometheus/tests/*.yml` passes against it because the tests' input series were mapped the
same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gateway import catalogue_docs, slo
from gateway.catalogue import CATALOGUE, DEFAULT_NAMESPACE, Kind

__all__ = [
    "REPO",
    "RenderOptions",
    "Rendered",
    "UnmappedName",
    "default_links",
    "local_links",
    "render",
    "runbooks_markdown",
]

REPO = Path(__file__).resolve().parents[1]

#: what is rendered, relative to the checkout: every file these globs find, so rule files
#: added later are rendered without a change here
_GLOBS = (
    "prometheus/*.yml",
    "prometheus/rules/*.yml",
    "prometheus/tests/*.yml",
    "dashboards/json/*.json",
    "dashboards/panels.json",
    "dashboards/provisioning/*/*.yaml",
)
_SLO_RULES = "prometheus/rules/slo.yml"
_SLO_DECLARATION = "prometheus/slo.yaml"
_METRICS_DOC = "docs/metrics.md"
_RUNBOOKS_DOC = "docs/runbooks.md"

_NAME_TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


class UnmappedName(ValueError):
    """The output still spells the source namespace: a literal the renderer cannot derive."""

    def __init__(self, namespace: str, hits: list[str]) -> None:
        self.hits = hits
        shown = "\n  ".join(hits[:20])
        more = f"\n  ... and {len(hits) - 20} more" if len(hits) > 20 else ""
        super().__init__(
            f"{len(hits)} place(s) still name {namespace!r} after rendering; write them from "
            f"the catalogue (gateway/catalogue.py) or as a recording rule:\n  {shown}{more}"
        )


@dataclass(frozen=True, slots=True)
class RenderOptions:
    #: the metric namespace (`prometheus.namespace` of the gateway), letters, digits, `_`
    namespace: str
    #: URL of docs/runbooks.md as the deployment serves it; alerts link to `<base>#<alert>`
    runbook_base: str
    #: URL of the overview dashboard (Grafana) or the gateway's status page;
    #: alerts link to `<base>?viewPanel=<id>`
    dashboard_base: str

    def __post_init__(self) -> None:
        if not self.namespace or not self.namespace.replace("_", "a").isalnum():
            raise ValueError(
                f"namespace {self.namespace!r}: must be letters, digits and underscores"
            )
        if self.namespace[0].isdigit():
            raise ValueError(f"namespace {self.namespace!r}: must not start with a digit")
        for name, url in (
            ("runbook_base", self.runbook_base),
            ("dashboard_base", self.dashboard_base),
        ):
            if not re.match(r"^(https?|file)://\S+$", url) or "#" in url or "?" in url:
                raise ValueError(
                    f"{name} {url!r}: must be an http(s):// or file:// URL "
                    "without ?query or #anchor"
                )


@dataclass(frozen=True, slots=True)
class Rendered:
    """What `render` wrote: paths relative to the output directory."""

    out: Path
    files: tuple[str, ...] = field(default=())


def default_links(source: Path = REPO) -> slo.Links:
    """The link bases the committed files use (prometheus/slo.yaml, `links`)."""
    return slo.load_declaration(source / _SLO_DECLARATION).links


def local_links(gateway_url: str) -> slo.Links:
    """Links that work on a machine running the gateway: the runbooks and the status page it
    serves (`/ui/runbooks`, `/ui/`)."""
    base = gateway_url.rstrip("/")
    return slo.Links(runbooks=f"{base}/ui/runbooks", dashboard=f"{base}/ui/")


class _Mapper:
    """Maps the names of the source rendering (namespace `old`) to those of `options`."""

    def __init__(self, old: str, options: RenderOptions, links: slo.Links, texts: Iterable[str]):
        new = options.namespace
        self.old, self.new = old, new
        self.tokens: dict[str, str] = {}
        for m in CATALOGUE:
            a, b = m.prometheus_name(old), m.prometheus_name(new)
            pairs = [(a, b)]
            if m.kind is Kind.HISTOGRAM:
                pairs += [(a + s, b + s) for s in ("_bucket", "_sum", "_count")]
            if m.kind is Kind.COUNTER and a.endswith("_total"):
                pairs.append((a.removesuffix("_total"), b.removesuffix("_total")))
            self.tokens.update(pairs)
        self.groups: dict[str, str] = {}
        self.uids: dict[str, str] = {}
        self.titles: dict[str, str] = {}
        for text in texts:
            self._learn(text)
        # Longest first, so a base that contains another is replaced whole.
        self.literals = sorted(
            [
                (links.runbooks, options.runbook_base.rstrip("/")),
                (links.dashboard, options.dashboard_base),
                *self.uids.items(),
                *self.titles.items(),
            ],
            key=lambda pair: -len(pair[0]),
        )

    def _learn(self, text: str) -> None:
        old = self.old
        for record in re.findall(r"^\s*-?\s*record:\s*['\"]?([A-Za-z_:][\w:]*)", text, re.M):
            parts = record.split(":")
            # level:metric:operations (the Prometheus naming convention for recording rules)
            if len(parts) == 3 and parts[1].startswith(old + "_"):
                parts[1] = self.new + parts[1][len(old) :]
                self.tokens[record] = ":".join(parts)
        for group in re.findall(r"^\s*-\s*name:\s*['\"]?([\w.-]+)", text, re.M):
            if group.startswith(old + "-"):
                self.groups[group] = self.new + group[len(old) :]
        for uid in re.findall(r'^  "uid": "([^"]+)"', text, re.M):
            if uid.startswith(old + "-"):
                self.uids[uid] = self.new + uid[len(old) :]
        if self.new == old:
            return  # titles keep their capitals in the default rendering
        for title in re.findall(r'^  "title": "([^"]+)"', text, re.M):
            if title.lower().startswith(old):
                self.titles[f'"title": "{title}"'] = f'"title": "{self.new}{title[len(old) :]}"'
        # Grafana's provisioning folder, titled like the dashboard
        for folder in re.findall(r"^\s*folder:\s*(\S+)\s*$", text, re.M):
            if folder.lower() == old:
                self.titles[f"folder: {folder}"] = f"folder: {self.new}"

    def __call__(self, text: str) -> str:
        for a, b in self.literals:
            text = text.replace(a, b)
        for a, b in self.groups.items():
            text = re.sub(rf"(name:\s*['\"]?){re.escape(a)}\b", rf"\g<1>{b}", text)
        old, new = re.escape(self.old), self.new
        # job = service.namespace/service.name
        text = re.sub(rf"(?<![\w./-]){old}/", f"{new}/", text)
        # a regex for every metric of the namespace (remote-write keep lists)
        text = re.sub(rf"(?<![\w:]){old}_\.([+*])", rf"{new}_.\g<1>", text)
        # the namespace as a whole value: a dashboard tag, a provisioning folder
        text = re.sub(rf'(?<=["\s]){old}(?=["\s]|$)', new, text, flags=re.M)
        tokens = self.tokens
        return _NAME_TOKEN.sub(lambda m: tokens.get(m.group(0), m.group(0)), text)

    def path(self, relative: str) -> str:
        name = Path(relative).name
        for a, b in self.uids.items():
            name = name.replace(a, b)
        if Path(relative).stem == self.old:
            name = self.new + Path(relative).suffix
        return str(Path(relative).with_name(name))


def runbooks_markdown(namespace: str, path: Path, *, source: Path = REPO) -> str | None:
    """docs/runbooks.md with its names in `namespace` (for the gateway's `/ui/runbooks`);
    None when the file is missing. Names the renderer cannot map are left as they are."""
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    decl = slo.load_declaration(source / _SLO_DECLARATION)
    old = decl.namespace or DEFAULT_NAMESPACE
    if namespace == old:
        return text
    links = decl.links
    try:
        options = RenderOptions(
            namespace, runbook_base=links.runbooks, dashboard_base=links.dashboard
        )
    except ValueError:  # a namespace the gateway allows but rules cannot carry (empty)
        return text
    return _Mapper(old, options, links, _sources(source).values())(text)


def _sources(source: Path) -> dict[str, str]:
    """The files `_GLOBS` find under `source`: relative path -> text."""
    inputs = sorted({p for g in _GLOBS for p in source.glob(g) if p.is_file()})
    return {str(p.relative_to(source)): p.read_text(encoding="utf-8") for p in inputs}


def _leftovers(old: str, new: str, out: Path, files: Iterable[str]) -> list[str]:
    """Places in the output that still spell `old` (in any case). When the new namespace
    contains the old one (`coderunner_eu`), its own occurrences are not leftovers."""
    hits: list[str] = []
    pattern = re.compile(re.escape(old), re.I)
    own = re.compile(re.escape(new), re.I) if old.lower() in new.lower() else None

    def spells_old(text: str) -> bool:
        return bool(pattern.search(own.sub("", text) if own is not None else text))

    for relative in files:
        if spells_old(relative):
            hits.append(f"{relative}: file name")
        text = (out / relative).read_text(encoding="utf-8")
        for number, line in enumerate(text.splitlines(), 1):
            if spells_old(line):
                hits.append(f"{relative}:{number}: {line.strip()[:160]}")
    return hits


def render(
    out: Path,
    options: RenderOptions,
    *,
    source: Path = REPO,
) -> Rendered:
    """Write the rendering for `options` under `out` (same layout as the checkout).

    Raises `UnmappedName` (after writing, so the files can be inspected) when the output still
    names the source namespace, unless the namespace is the source's own."""
    decl = slo.load_declaration(source / _SLO_DECLARATION)
    old = decl.namespace or DEFAULT_NAMESPACE
    texts = _sources(source)
    mapper = _Mapper(old, options, decl.links, texts.values())
    written: list[str] = []

    def emit(relative: str, text: str) -> None:
        path = out / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(relative)

    for relative, text in texts.items():
        if relative == _SLO_RULES:
            continue
        emit(mapper.path(relative), mapper(text))
    links = slo.Links(runbooks=options.runbook_base.rstrip("/"), dashboard=options.dashboard_base)
    rendered_decl = decl.model_copy(update={"namespace": options.namespace, "links": links})
    emit(_SLO_RULES, slo.render(rendered_decl))
    emit(_METRICS_DOC, catalogue_docs.render(options.namespace))
    runbooks = source / _RUNBOOKS_DOC
    if runbooks.is_file():
        emit(_RUNBOOKS_DOC, mapper(runbooks.read_text(encoding="utf-8")))
    if options.namespace != old:
        hits = _leftovers(old, options.namespace, out, written)
        if hits:
            raise UnmappedName(old, hits)
    return Rendered(out, tuple(written))
