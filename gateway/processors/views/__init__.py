"""Views: turn what services emit (OpenTelemetry semantic-convention names) into the catalogue.

A view selects instruments (name glob, kind, scope, resource attributes), and makes one output
metric from each: renamed (to a catalogue entry, whose name, unit and help it takes, or to an
explicit name and unit), with attributes kept, dropped, renamed and their values mapped, points
that become equal summed ("aggregated away"), and optionally a derived value (a histogram's
count or sum, times a rate chosen by an attribute). As with the OpenTelemetry SDK's views, an
instrument that any view selects is replaced by the views' outputs; the others pass unchanged
(and so do the points a view's attribute selector leaves out).
Views run before the exporters' fan-out, so the OTLP forwarder sends the catalogue's names too.

Worked example (the default `api.requests` view). The service sends the histogram
`http.server.request.duration` with these cumulative points:

    {method=GET, scheme=http, route=/users/{id}, status=200}  count 7
    {method=GET, scheme=http, route=/users/{id}, status=204}  count 2
    {method=GET, scheme=http, (no route),        status=404}  count 1

The view keeps method, route and status (url.scheme is aggregated away), renames them to
`method`, `endpoint`, `status`, maps the status code to its class and a missing route to
`unknown`, and derives a counter from the count:

    coderunner.api.requests {method=GET, endpoint=/users/{id}, status=2xx}  9
    coderunner.api.requests {method=GET, endpoint=unknown,     status=4xx}  1

Summing points of one request is exact for cumulative input (a sum of cumulative counts is the
cumulative count of the sum) as long as a producer sends all its series in each export, which
the OpenTelemetry SDKs do; for delta input it is exact always.

Why aggregation stops at one request (no summing across `service.instance.id`): doing that for
cumulative input needs every instance's last value per series, kept in the gateway, and it is
wrong as soon as two gateway replicas each see some of the instances. `sum without (instance)`
in PromQL (or a recording rule) does it exactly; the views keep `job`/`instance` from the
resource.

Speed: decisions per metric identity (resource, scope, name, kind) are cached; per point, the
attribute rewriting is cached by the point's serialized attribute bytes (the store's trick), and
output points are written as protobuf bytes in one parse per metric.

The modules, one idea each: `config` (the frozen settings, checked at load), `attributes` (the
attribute rules, compiled), `wire` (points as protobuf bytes), `merge` (adding up points into
the output's), `state` (what the processor keeps per view), `counters` (what views left out),
`processor` (`ViewProcessor`). This package exports the public names below; the modules' own
names are internals.
"""

from gateway.processors.views.config import (
    AttributesConfig,
    DeriveConfig,
    RateTable,
    RenameConfig,
    Selector,
    ValueMapping,
    ViewConfig,
)
from gateway.processors.views.counters import ViewCounters
from gateway.processors.views.processor import ViewProcessor

__all__ = [
    "AttributesConfig",
    "DeriveConfig",
    "RateTable",
    "RenameConfig",
    "Selector",
    "ValueMapping",
    "ViewConfig",
    "ViewCounters",
    "ViewProcessor",
]
