"""Property tests of the Prometheus exporter: random OTLP requests -> SeriesStore -> render().

Whatever a producer sends (names, units and attribute keys/values in any unicode, quotes,
backslashes, newlines, colliding keys, every metric type and temporality, repeated pushes), the
exposition must parse in both formats, hold each (name, labels) sample once, one TYPE per
family, valid names, cumulative histogram buckets ending at `+Inf == _count`; and the values
must be what the data model says (latest cumulative point, sum of contiguous deltas).

`promtool check metrics` runs on a few generated expositions only (it is a subprocess). Its
lint warnings that follow from the producer's own choices are accepted (see
`_ACCEPTED_LINT`); a parse error, a missing `_total` on a counter or missing help text fails.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from gateway.exporters.prometheus.exposition import render
from gateway.exporters.prometheus.store import SeriesStore, StoreSettings
from gateway.pipeline.batch import MetricsBatch
from tests.support.common import FakeClock

CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
S = 1_000_000_000
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

# ---------------------------------------------------------------------------- strategies

_TRICKY_NAMES = [
    "http.server.request.duration",
    "a.b",
    "a_b",
    "a-b",
    "2xx.rate",
    "requests_total",
    "requests.total",
    "total",
    "total_requests",
    "lat_seconds",
    "lat_seconds_total",
    "xseconds",
    "_x_",
    "__x__",
    "x_",
    "...",
    "温度",
    "target_info",
    "target",
    "lat",
    "lat_count",
    "lat_sum",
    "lat_bucket",
    "lat_total",
    'q"uote',
    "back\\slash",
    "colon:name",
    "x",
]
_TRICKY_UNITS = [
    "",
    "1",
    "s",
    "ms",
    "By",
    "By/s",
    "{packet}/s",
    "{packet}",
    "/s",
    "s/",
    "/",
    "1/s",
    "{a}/{b}",
    "%",
    "Cel",
    "KiBy",
    "m/s",
    "µs",
]
_TRICKY_KEYS = [
    "a.b",
    "a_b",
    "a-b",
    "a..b",
    "le",
    "quantile",
    "job",
    "instance",
    "otel_scope_name",
    "name",
    "version",
    "",
    "9x",
    "__x",
    "_",
    "exported_job",
    "service.name",
    "k8s.pod.name",
]

texts = st.text(max_size=8)
metric_names = st.one_of(st.sampled_from(_TRICKY_NAMES), st.text(min_size=1, max_size=10))
units = st.one_of(st.sampled_from(_TRICKY_UNITS), st.text(max_size=5))
keys = st.one_of(st.sampled_from(_TRICKY_KEYS), st.text(max_size=6))
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-0.0, 0.0, 1e308, -1e308, 5e-324, 1e-300, 0.1, 2.0**63]),
)
ints = st.one_of(
    st.integers(INT64_MIN, INT64_MAX), st.sampled_from([INT64_MIN, INT64_MAX, 0, -1, 1])
)
scalars = st.one_of(texts, ints, floats, st.booleans(), st.binary(max_size=4))
attr_values = st.one_of(scalars, st.lists(scalars, max_size=3))
attributes = st.lists(st.tuples(keys, attr_values), max_size=4)


def _set_value(target: AnyValue, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, list):
        target.array_value.SetInParent()
        for v in value:
            _set_value(target.array_value.values.add(), v)
    else:
        target.string_value = value


def _add_attrs(target: Any, attrs: Iterable[tuple[str, Any]]) -> None:
    for k, v in attrs:
        kv = target.add()
        kv.key = k
        _set_value(kv.value, v)


@st.composite
def number_points(draw: st.DrawFn, monotonic: bool) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        value = draw(st.one_of(ints, floats))
        if monotonic and draw(st.booleans()):
            value = min(abs(value), INT64_MAX) if isinstance(value, int) else abs(value)
        out.append(
            {
                "attrs": draw(attributes),
                "value": value,
                "start": draw(st.integers(0, 20)),
                "end": draw(st.integers(1, 40)),
                "flags": draw(st.sampled_from([0, 0, 0, 1])),
                "exemplar": draw(st.booleans()),
            }
        )
    return out


@st.composite
def histogram_points(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(1, 2))):
        bounds = sorted(
            set(draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False), max_size=4))) - {-0.0}
        )
        counts = draw(st.lists(st.integers(0, 1000), min_size=len(bounds) + 1))
        counts = counts[: len(bounds) + 1]
        count = sum(counts) if draw(st.integers(0, 9)) else draw(st.integers(0, 5000))
        out.append(
            {
                "attrs": draw(attributes),
                "bounds": bounds,
                "counts": counts,
                "count": count,
                "sum": draw(floats),
                "start": draw(st.integers(0, 20)),
                "end": draw(st.integers(1, 40)),
            }
        )
    return out


@st.composite
def exponential_points(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(1, 2))):
        pos = draw(st.lists(st.integers(0, 50), max_size=5))
        neg = draw(st.lists(st.integers(0, 50), max_size=5))
        zero = draw(st.integers(0, 50))
        total = zero + sum(pos) + sum(neg)
        out.append(
            {
                "attrs": draw(attributes),
                "scale": draw(st.one_of(st.integers(-10, 20), st.sampled_from([-11, 21]))),
                "zero_count": zero,
                "zero_threshold": draw(
                    st.one_of(st.just(0.0), st.floats(0, 1e10), st.sampled_from([5e-324]))
                ),
                "pos_offset": draw(st.integers(-3000, 3000)),
                "pos": pos,
                "neg_offset": draw(st.integers(-3000, 3000)),
                "neg": neg,
                "count": total if draw(st.integers(0, 9)) else draw(st.integers(0, 500)),
                "sum": draw(floats),
                "start": draw(st.integers(0, 20)),
                "end": draw(st.integers(1, 40)),
            }
        )
    return out


@st.composite
def summary_points(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(1, 2))):
        qs = draw(
            st.lists(
                st.tuples(
                    st.one_of(st.floats(0, 1), st.sampled_from([0.5, 0.99, 1.5])),
                    floats,
                ),
                max_size=3,
            )
        )
        out.append(
            {
                "attrs": draw(attributes),
                "quantiles": qs,
                "count": draw(st.integers(0, 2**64 - 1)),
                "sum": draw(floats),
                "start": draw(st.integers(0, 20)),
                "end": draw(st.integers(1, 40)),
            }
        )
    return out


_KINDS = ["sum", "gauge", "histogram", "exponential_histogram", "summary"]


@st.composite
def metric_specs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(_KINDS))
    spec: dict[str, Any] = {
        "name": draw(metric_names),
        "unit": draw(units),
        "description": draw(st.one_of(st.just(""), st.text(max_size=8))),
        "kind": kind,
        "temporality": draw(st.sampled_from([CUMULATIVE, DELTA])),
        "monotonic": draw(st.booleans()),
    }
    if kind in ("sum", "gauge"):
        spec["points"] = draw(number_points(kind == "sum" and spec["monotonic"]))
    elif kind == "histogram":
        spec["points"] = draw(histogram_points())
    elif kind == "exponential_histogram":
        spec["points"] = draw(exponential_points())
    else:
        spec["points"] = draw(summary_points())
    return spec


@st.composite
def resource_specs(draw: st.DrawFn) -> dict[str, Any]:
    attrs = draw(attributes)
    if draw(st.booleans()):
        attrs.append(("service.name", draw(st.sampled_from(["svc", "other", 'q"x\n']))))
    if draw(st.booleans()):
        attrs.append(("service.instance.id", draw(st.sampled_from(["i-1", "i-2"]))))
    scopes = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.one_of(st.just("lib"), texts),
                    "version": st.one_of(st.just(""), texts),
                    "attrs": attributes,
                    "metrics": st.lists(metric_specs(), min_size=1, max_size=3),
                }
            ),
            min_size=1,
            max_size=2,
        )
    )
    return {"attrs": attrs, "scopes": scopes}


requests = st.lists(resource_specs(), min_size=1, max_size=3)


def build(resources: list[dict[str, Any]], shift: int = 0) -> ExportMetricsServiceRequest:
    """The request a plan describes; `shift` seconds later (a later push of the same data)."""
    req = ExportMetricsServiceRequest()
    for r in resources:
        rm = req.resource_metrics.add()
        _add_attrs(rm.resource.attributes, r["attrs"])
        for sc in r["scopes"]:
            sm = rm.scope_metrics.add()
            sm.scope.name, sm.scope.version = sc["name"], sc["version"]
            _add_attrs(sm.scope.attributes, sc["attrs"])
            for spec in sc["metrics"]:
                _add_metric(sm.metrics.add(), spec, shift)
    return req


def _add_metric(m: metrics_pb2.Metric, spec: dict[str, Any], shift: int) -> None:
    m.name, m.unit, m.description = spec["name"], spec["unit"], spec["description"]
    kind = spec["kind"]
    data = getattr(m, kind)
    if kind in ("sum", "histogram", "exponential_histogram"):
        data.aggregation_temporality = spec["temporality"]
    if kind == "sum":
        data.is_monotonic = spec["monotonic"]
    for pt in spec["points"]:
        p = data.data_points.add()
        _add_attrs(p.attributes, pt["attrs"])
        p.start_time_unix_nano = (pt["start"] + shift) * S if pt["start"] else 0
        p.time_unix_nano = (pt["end"] + shift) * S
        if kind in ("sum", "gauge"):
            if isinstance(pt["value"], int):
                p.as_int = pt["value"]
            else:
                p.as_double = pt["value"]
            p.flags = pt["flags"]
            if pt["exemplar"]:
                e = p.exemplars.add()
                e.as_double, e.time_unix_nano = 1.0, p.time_unix_nano
        elif kind == "histogram":
            p.explicit_bounds.extend(pt["bounds"])
            p.bucket_counts.extend(pt["counts"])
            p.count, p.sum = pt["count"], pt["sum"]
        elif kind == "exponential_histogram":
            p.scale, p.zero_count = pt["scale"], pt["zero_count"]
            p.zero_threshold = pt["zero_threshold"]
            p.positive.offset = pt["pos_offset"]
            p.positive.bucket_counts.extend(pt["pos"])
            p.negative.offset = pt["neg_offset"]
            p.negative.bucket_counts.extend(pt["neg"])
            p.count, p.sum = pt["count"], pt["sum"]
        else:
            for q, v in pt["quantiles"]:
                qv = p.quantile_values.add()
                qv.quantile, qv.value = q, v
            p.count, p.sum = pt["count"], pt["sum"]


def _reordered(req: ExportMetricsServiceRequest) -> ExportMetricsServiceRequest:
    """The same request with every resource's and scope's attributes in reverse order."""
    out = ExportMetricsServiceRequest()
    out.CopyFrom(req)
    for rm in out.resource_metrics:
        attrs = list(rm.resource.attributes)
        del rm.resource.attributes[:]
        rm.resource.attributes.extend(reversed(attrs))
        for sm in rm.scope_metrics:
            sattrs = list(sm.scope.attributes)
            del sm.scope.attributes[:]
            sm.scope.attributes.extend(reversed(sattrs))
    return out


def ingest(plans: list[list[dict[str, Any]]], reorder: bool) -> SeriesStore:
    clock = FakeClock()
    store = SeriesStore(StoreSettings(max_series_per_stream=50), clock=clock)
    for i, plan in enumerate(plans):
        batch = MetricsBatch(build(plan, shift=10 * i))
        store.consume(batch)
        if reorder:
            # The same data with resource and scope attributes in another order is the same
            # resource and scope: refused exactly as much as the first encoding.
            again = MetricsBatch(_reordered(build(plan, shift=10 * i + 5)))
            store.consume(again)
            assert again.rejected_points == batch.rejected_points, again.error_message
        clock.now += 2
    return store


# ---------------------------------------------------------------------------- checks


def check_text(text: str) -> None:
    """0.0.4: parses; one TYPE per family; valid names; no sample twice; histograms sane."""
    types = re.findall(r"^# TYPE (\S+) ", text, flags=re.M)
    assert len(types) == len(set(types)), f"TYPE repeated: {types}"
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert _METRIC_NAME.match(s.name), s.name
            for label in s.labels:
                assert _LABEL_NAME.match(label) and not label.startswith("__"), label
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in seen, f"sample twice: {key}"
            seen.add(key)
        if family.type == "histogram":
            check_buckets(family.name, family.samples)


def check_buckets(name: str, samples: list[Any]) -> None:
    groups: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    counts: dict[tuple[tuple[str, str], ...], float] = {}
    for s in samples:
        rest = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        if s.name == name + "_bucket":
            groups.setdefault(rest, []).append((float(s.labels["le"]), s.value))
        elif s.name == name + "_count":
            counts[rest] = s.value
    for rest, buckets in groups.items():
        les = [le for le, _ in buckets]
        assert les == sorted(les) and len(set(les)) == len(les), f"le order {name}: {les}"
        values = [v for _, v in buckets]
        assert values == sorted(values), f"buckets not cumulative {name}: {buckets}"
        assert les[-1] == math.inf, f"no +Inf bucket {name}"
        if rest in counts:
            assert values[-1] == counts[rest], f"+Inf != _count {name}: {buckets}"


def check_openmetrics(text: str) -> None:
    assert text.endswith("# EOF\n")
    families = list(openmetrics_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), names


def check_store(store: SeriesStore) -> None:
    check_text(render(store).decode())
    check_openmetrics(render(store, openmetrics=True).decode())


# ---------------------------------------------------------------------------- properties

_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@_SETTINGS
@given(plans=st.lists(requests, min_size=1, max_size=3), reorder=st.booleans())
def test_any_request_renders_a_valid_exposition(
    plans: list[list[dict[str, Any]]], reorder: bool
) -> None:
    check_store(ingest(plans, reorder))


def _number_request(
    points: list[tuple[int, int, float]], temporality: int, monotonic: bool
) -> ExportMetricsServiceRequest:
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add()
    m.name = "v"
    m.sum.aggregation_temporality = temporality
    m.sum.is_monotonic = monotonic
    for start, end, value in points:
        p = m.sum.data_points.add()
        p.start_time_unix_nano, p.time_unix_nano = start, end
        if isinstance(value, int):
            p.as_int = value
        else:
            p.as_double = value
        kv = p.attributes.add()
        kv.key, kv.value.string_value = "k", "x"
    return req


def _exposed(store: SeriesStore, name: str) -> float:
    values = [
        s.value
        for f in text_string_to_metric_families(render(store).decode())
        for s in f.samples
        if s.name == name
    ]
    assert len(values) == 1, values
    return values[0]


finite = st.floats(-1e12, 1e12, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.integers(1, 10**12), st.one_of(st.integers(0, 10**15), finite)),
        min_size=1,
        max_size=8,
        unique_by=lambda t: t[0],
    ),
    monotonic=st.booleans(),
    split=st.integers(1, 8),
)
def test_cumulative_value_is_the_latest_in_time_order(
    data: list[tuple[int, float]], monotonic: bool, split: int
) -> None:
    if monotonic:
        data = [(t, abs(v)) for t, v in data]
    store = SeriesStore(clock=FakeClock())
    points = [(0, t, v) for t, v in data]
    # Arrival order is the generated order; a push holds `split` points.
    for i in range(0, len(points), split):
        store.consume(MetricsBatch(_number_request(points[i : i + split], CUMULATIVE, monotonic)))
    latest = max(data)[1]
    # The parser reads integers as int: compare exactly, not through a float.
    assert _exposed(store, "v_total" if monotonic else "v") == latest


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.one_of(st.integers(0, INT64_MAX), finite), min_size=1, max_size=10),
    monotonic=st.booleans(),
    first_start=st.integers(0, 1000),
    steps=st.lists(st.integers(1, 10**6), min_size=10, max_size=10),
)
@example(values=[2**53 + 1, 0.0], monotonic=True, first_start=0, steps=[1] * 10)
def test_contiguous_deltas_add_up(
    values: list[float], monotonic: bool, first_start: int, steps: list[int]
) -> None:
    if monotonic:
        values = [abs(v) for v in values]
    store = SeriesStore(clock=FakeClock())
    t = first_start
    expected: float = 0
    for value, step in zip(values, steps, strict=False):
        store.consume(MetricsBatch(_number_request([(t, t + step, value)], DELTA, monotonic)))
        t += step
        # A zero adds nothing, whatever its type: an integer sum stays exact (the store reads
        # as_double 0.0 as 0; adding 0.0 in float would round 2**53 + 1 to 2**53).
        if value:
            expected += value
    assert _exposed(store, "v_total" if monotonic else "v") == expected


@settings(max_examples=60, deadline=None)
@given(
    value=st.one_of(
        st.sampled_from(
            [
                -0.0,
                math.inf,
                -math.inf,
                math.nan,
                1e308,
                -1e308,
                5e-324,
                -5e-324,
                2.2250738585072014e-308,
                INT64_MAX,
                INT64_MIN,
            ]
        ),
        st.floats(),
        st.integers(INT64_MIN, INT64_MAX),
    ),
    kind=st.sampled_from(["gauge", "updown", "counter", "histogram_sum", "summary"]),
)
def test_special_floats_render_parseably(value: float, kind: str) -> None:
    req = ExportMetricsServiceRequest()
    m = req.resource_metrics.add().scope_metrics.add().metrics.add()
    m.name = "f"
    if kind in ("gauge", "updown", "counter"):
        data = m.gauge if kind == "gauge" else m.sum
        if kind != "gauge":
            m.sum.aggregation_temporality = CUMULATIVE
            m.sum.is_monotonic = kind == "counter"
        p = data.data_points.add()
        if isinstance(value, int):
            p.as_int = value
        else:
            p.as_double = value
    elif kind == "histogram_sum":
        m.histogram.aggregation_temporality = CUMULATIVE
        p = m.histogram.data_points.add()
        p.explicit_bounds.append(1.0)
        p.bucket_counts.extend([1, 2])
        p.count, p.sum = 3, float(value)
    else:
        p = m.summary.data_points.add()
        qv = p.quantile_values.add()
        qv.quantile, qv.value = 0.5, float(value)
        p.count, p.sum = 1, float(value)
    p.time_unix_nano = S
    store = SeriesStore(clock=FakeClock())
    store.consume(MetricsBatch(req))
    text = render(store).decode()
    check_text(text)
    check_openmetrics(render(store, openmetrics=True).decode())
    # What was accepted is shown exactly (NaN as NaN, -0.0 as zero, ints to the last digit).
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    if kind in ("gauge", "updown") or (kind == "counter" and value >= 0):
        (sample,) = samples
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(sample.value)
        else:
            assert sample.value == value
            line = next(x for x in text.splitlines() if x.startswith("f"))
            if isinstance(value, int):
                assert line.endswith(f" {value}"), line


# ---------------------------------------------------------------------------- promtool

# Lint warnings about the producer's own choices, which the exporter must pass through: the
# names and units a service picks (camelCase, milliseconds, `foo_count` gauges, colons, a type
# word in the name) and attribute keys such as `le` on a gauge. Everything else (a parse error,
# "no help text" (the store writes a default), a counter without `_total`) fails the test.
_ACCEPTED_LINT = (
    "should be written in 'snake_case' not 'camelCase'",
    "use base unit",
    "should not contain abbreviated units",
    "metric names should not contain ':'",
    "metric name should not include type",
    'non-counter metrics should not have "_total" suffix',
    "non-histogram and non-summary metrics should not have",
    'non-histogram metrics should not have "_bucket" suffix',
    'non-histogram metrics should not have "le" label',
    'non-summary metrics should not have "quantile" label',
)


def _promtool_problems(text: str) -> list[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    out = (proc.stdout + proc.stderr).decode()
    assert proc.returncode in (0, 3), f"promtool failed ({proc.returncode}): {out}\n{text}"
    assert "error while linting" not in out, out
    return [
        line
        for line in out.splitlines()
        if line.strip() and not any(ok in line for ok in _ACCEPTED_LINT)
    ]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@pytest.mark.integration
@given(plans=st.lists(requests, min_size=1, max_size=2))
def test_promtool_accepts_generated_expositions(plans: list[list[dict[str, Any]]]) -> None:
    text = render(ingest(plans, reorder=False)).decode()
    assert _promtool_problems(text) == []


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_check_can_fail() -> None:
    """The promtool check above is not vacuous: a counter without `_total` is reported."""
    assert _promtool_problems("# HELP c c\n# TYPE c counter\nc 1\n") != []
