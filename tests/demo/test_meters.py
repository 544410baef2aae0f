from __future__ import annotations

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from demo.meters import Meters
from gateway.catalogue import by_name
from instrumentation import Instrumentation
from tests.support.instrumentation import collect, value_of


@pytest.fixture
def meters(handle: Instrumentation) -> Meters:
    return Meters(handle.meter_provider.get_meter("demo"))


def test_deployments_counted_and_timed_by_catalogue_labels(
    meters: Meters, reader: InMemoryMetricReader
) -> None:
    m = meters
    for _ in range(3):
        m.deployment(status="success", type="python", duration_s=2.0)
    m.deployment(status="failed", type="node", duration_s=7.5)
    points, metrics = collect(reader)
    assert value_of(points, "coderunner.deployments", status="success", type="python").value == 3
    assert value_of(points, "coderunner.deployments", status="failed", type="node").value == 1
    hist = value_of(points, "coderunner.deployment.duration", type="node", status="failed")
    assert (hist.count, hist.sum) == (1, 7.5)
    assert metrics["coderunner.deployments"].unit == by_name("deployments").unit
    assert metrics["coderunner.deployment.duration"].unit == "s"
    assert metrics["coderunner.deployments"].data.is_monotonic


def test_websocket_events_and_active_connections(
    meters: Meters, reader: InMemoryMetricReader
) -> None:
    m = meters
    for _ in range(4):
        m.websocket_accepted()
    m.websocket_rejected()
    m.websocket_closed()
    points, metrics = collect(reader)
    name = by_name("websocket.connections").otel_name()
    assert value_of(points, name, status="authenticated").value == 4
    assert value_of(points, name, status="rejected").value == 1
    assert value_of(points, name, status="closed").value == 1
    active = by_name("websocket.active_connections").otel_name()
    assert value_of(points, active).value == 3
    assert not metrics[active].data.is_monotonic


def test_errors_activity_features_costs(meters: Meters, reader: InMemoryMetricReader) -> None:
    m = meters
    m.error(type="BuildError", service="builder", severity="error")
    m.error(type="BuildError", service="builder", severity="error")
    m.user_activity(action="login", plan_type="free")
    m.feature_used(feature="websocket", user_type="team")
    m.resource_cost(resource_type="compute", plan="premium", amount_usd=0.25)
    m.resource_cost(resource_type="compute", plan="premium", amount_usd=0.5)
    points, _ = collect(reader)
    assert (
        value_of(
            points, "coderunner.errors", type="BuildError", service="builder", severity="error"
        ).value
        == 2
    )
    assert value_of(points, "coderunner.user.activity", action="login", plan_type="free").value == 1
    assert (
        value_of(points, "coderunner.feature.usage", feature="websocket", user_type="team").value
        == 1
    )
    cost = value_of(points, "coderunner.resource.costs", resource_type="compute", plan="premium")
    assert cost.value == pytest.approx(0.75)


def test_plan_distribution_is_an_observable_gauge_fed_by_the_callback(
    meters: Meters, reader: InMemoryMetricReader
) -> None:
    counts = {"free": 5, "premium": 2}
    meters.observe_plan_distribution(lambda: counts)
    points, _ = collect(reader)
    assert value_of(points, "coderunner.plan.distribution", plan_type="free").value == 5
    counts["team"] = 1
    counts["free"] = 4
    points, _ = collect(reader)
    assert value_of(points, "coderunner.plan.distribution", plan_type="free").value == 4
    assert value_of(points, "coderunner.plan.distribution", plan_type="team").value == 1


def test_failing_plan_callback_skips_the_gauge_only(
    meters: Meters, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("db down")

    meters.observe_plan_distribution(broken)
    meters.user_activity(action="login", plan_type="free")
    points, _ = collect(reader)
    assert "coderunner.plan.distribution" not in points
    assert "coderunner.user.activity" in points
    assert "plan distribution callback failed" in caplog.text


def test_namespace_is_configurable() -> None:
    reader = InMemoryMetricReader()
    h = MeterProvider(metric_readers=[reader])
    try:
        Meters(h.get_meter("demo"), namespace="acme").deployment(
            status="success", type="go", duration_s=1.0
        )
        points, _ = collect(reader)
        assert value_of(points, "acme.deployments", status="success", type="go").value == 1
        assert "coderunner.deployments" not in points
    finally:
        h.shutdown()


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.resource_cost(resource_type="compute", plan="free", amount_usd=-1.0),
        lambda m: m.resource_cost(resource_type="compute", plan="free", amount_usd=float("nan")),
        lambda m: m.deployment(status="success", type="python", duration_s=-0.1),
        lambda m: m.deployment(status="", type="python", duration_s=1.0),
        lambda m: m.error(type="X", service=None, severity="error"),
    ],
)
def test_bad_input_raises_a_clear_error(meters: Meters, call: object) -> None:
    with pytest.raises(ValueError, match=r"(amount|label)"):
        call(meters)  # type: ignore[operator]
