"""The per-cycle fast path (copy a template, write values) must give exactly what building the
batch with `BatchBuilder` gives, across shape changes."""

from __future__ import annotations

import pytest

from gateway import __version__
from gateway.observers import template as template_module
from gateway.observers.system import SCOPE, SystemObserver
from gateway.observers.template import BatchTemplate
from tests.support.observers import Collect, FakeClock, FakeSampler, Net, Part, Usage, cpu_after


@pytest.mark.parametrize("fast", [True, False])
def test_render_equals_build_and_rebuilds_only_on_shape_change(
    fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fast:
        # a sentinel that cannot be found exactly once (zero bytes are everywhere) forces the
        # message-copy fallback
        monkeypatch.setattr(template_module, "_TIME_MARK", 0)
    sampler, clock = FakeSampler(), FakeClock()
    observer = SystemObserver(
        Collect(),
        sampler=sampler,
        clock=clock,
        resource={"service.name": "x"},
    )
    template = BatchTemplate(
        {"service.name": "x"},
        scope=SCOPE,
        scope_version=__version__,
        otel_name=lambda m: m.otel_name(),
    )
    rebuilds = []
    for cycle in range(12):
        sampler.cpu = [cpu_after(c, user=cycle, idle=7) for c in sampler.cpu]
        sampler.load = (cycle / 10, 0.2, 0.1)
        if cycle == 4:
            sampler.net["veth9"] = Net(1, 2, 3, 4, 5, 6, 7, 8)
        if cycle == 6:
            # same number of interfaces, another one: same lengths, other attributes
            del sampler.net["veth9"]
            sampler.net["veth10"] = Net(1, 2, 3, 4, 5, 6, 7, 8)
        if cycle == 8:
            sampler.partitions.append(Part("/dev/sdc1", "/srv", "ext4"))
            sampler.usage["/srv"] = Usage(10, 5)
        reading = observer.read()
        rendered = template.render(reading)
        built = template.build(reading)
        assert rendered.request == built.request, cycle
        assert template.fast is fast
        assert rendered.request is not built.request
        rebuilds.append(template.rebuilds)
        clock.advance(10)
    # cycle 0: the first; 1: CPU usage appears (it needs two readings); 4 and 6: interfaces;
    # 8: nothing yet (mounts are re-read every 30 cycles); values only otherwise
    assert rebuilds == [1, 2, 2, 2, 3, 3, 4, 4, 4, 4, 4, 4]


def test_rendered_batches_are_independent() -> None:
    """A downstream processor may change a batch in place; the next cycle must not see it."""
    sampler, clock = FakeSampler(), FakeClock()
    out = Collect()
    observer = SystemObserver(out, sampler=sampler, clock=clock)
    observer.collect()
    clock.advance(10)
    observer.collect()
    out.batches[-1].request.resource_metrics[0].scope_metrics[0].metrics[0].name = "changed"
    clock.advance(10)
    observer.collect()
    assert out.batches[-1].request.resource_metrics[0].scope_metrics[0].metrics[0].name != "changed"
