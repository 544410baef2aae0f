"""`ViewProcessor`: applies the views to each batch, in place, before the exporters' fan-out.

It walks a batch's resources and scopes, decides once per metric identity (resource, scope,
name, kind) which views apply (the plan, cached), and replaces each selected metric by the
views' outputs, reading its points once for all of them (`wire`) and adding up the points that
become one series (`merge`). Outputs that drop the instrumentation scope are moved to a
scope-less ScopeMetrics of their resource.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.metrics.v1 import metrics_pb2

from gateway.catalogue import DEFAULT_NAMESPACE
from gateway.pipeline.attributes import attribute_string
from gateway.pipeline.batch import MetricsBatch
from gateway.processors.views.config import COMPATIBLE, ViewConfig
from gateway.processors.views.counters import ViewCounters
from gateway.processors.views.merge import derived_from_histograms, histograms, numbers
from gateway.processors.views.state import CACHE_LIMIT, ViewState
from gateway.processors.views.wire import Decoded, decode_histograms, decode_numbers

__all__ = ["ViewProcessor"]

log = logging.getLogger("gateway.views")

_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


class ViewProcessor:
    """Applies the views to each batch, in place; a pipeline `Processor`."""

    def __init__(self, views: Sequence[ViewConfig], *, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._views = [ViewState(v, namespace) for v in views]
        self._uses_resource = any(v.resource for v in self._views)
        #: (resource bytes or b"", scope name, metric name, kind) -> views that apply
        self._plans: dict[tuple[bytes, str, str, str], tuple[ViewState, ...]] = {}
        self._resources: dict[bytes, dict[str, str]] = {}
        self.counters = ViewCounters()

    def process(self, batch: MetricsBatch) -> None:
        if not self._views:
            return
        plans = self._plans
        for rm in batch.request.resource_metrics:
            rkey = rm.resource.SerializeToString() if self._uses_resource else b""
            moved: list[metrics_pb2.Metric] = []
            for sm in rm.scope_metrics:
                scope = sm.scope.name
                metrics = sm.metrics
                todo: list[tuple[int, metrics_pb2.Metric, str, tuple[ViewState, ...]]] = []
                i = -1
                for m in metrics:
                    i += 1
                    kind = m.WhichOneof("data")
                    if kind is None:
                        continue
                    pkey = (rkey, scope, m.name, kind)
                    plan = plans.get(pkey)
                    if plan is None:
                        if len(plans) >= CACHE_LIMIT:
                            plans.clear()  # bounded: resources come and go (instance ids)
                        plan = plans[pkey] = self._plan(rm, rkey, scope, m.name, kind)
                    if plan:
                        todo.append((i, m, kind, plan))
                if todo:
                    self._apply(sm, todo, moved)
            if moved:
                out = rm.scope_metrics.add()
                out.metrics.extend(moved)

    def _plan(
        self, rm: Any, rkey: bytes, scope: str, name: str, kind: str
    ) -> tuple[ViewState, ...]:
        resource: dict[str, str] = {}
        if self._uses_resource:
            resource = self._resources.get(rkey) or {
                kv.key: attribute_string(kv.value) for kv in rm.resource.attributes
            }
            if len(self._resources) < CACHE_LIMIT:
                self._resources[rkey] = resource
        out = []
        for view in self._views:
            if not view.matches(name, kind, scope, resource):
                continue
            if not self._supported(view, name, kind):
                continue
            out.append(view)
        return tuple(out)

    @staticmethod
    def _supported(view: ViewState, name: str, kind: str) -> bool:
        """A view that cannot apply to this metric is skipped (logged once), so the metric
        passes unchanged rather than being lost."""
        problem = None
        if view.derive is not None:
            need = view.derive.source_kind
            if kind != need:
                problem = f"derive.value {view.derive.value} needs a {need}, {name} is a {kind}"
        elif view.catalogue_kind is not None and view.catalogue_kind not in COMPATIBLE[kind]:
            problem = f"{name} is a {kind}, catalogue {view.config.to} is not"
        elif not view.in_place and kind in ("exponential_histogram", "summary"):
            problem = f"{name}: attributes of a {kind} cannot be changed by a view"
        if problem is not None:
            if name not in view.warned:
                view.warned.add(name)
                log.warning("view %s skipped: %s", view.label, problem)
            return False
        return True

    def _apply(
        self,
        sm: Any,
        todo: list[tuple[int, metrics_pb2.Metric, str, tuple[ViewState, ...]]],
        moved: list[metrics_pb2.Metric],
    ) -> None:
        """Replace the selected metrics of one scope by the views' outputs. Outputs that drop
        the scope stay here (with the scope cleared) when nothing in the scope keeps it, and
        otherwise move to a scope-less ScopeMetrics of the resource (`moved`)."""
        metrics = sm.metrics
        total = len(metrics)
        remove: list[int] = []
        in_place_scopeless: list[int] = []
        built_scopeless: list[metrics_pb2.Metric] = []
        built_keep: list[metrics_pb2.Metric] = []
        for index, m, kind, plan in todo:
            if len(plan) == 1 and plan[0].in_place:
                self._rename_in_place(plan[0], m)
                if plan[0].config.drop_scope:
                    in_place_scopeless.append(index)
                continue
            dps = getattr(m, kind).data_points
            decoded = decode_histograms(dps) if kind == "histogram" else decode_numbers(dps)
            for view in plan:
                out = self._build(view, m, kind, decoded)
                if out is not None:
                    (built_scopeless if view.config.drop_scope else built_keep).append(out)
            if not _keep_unselected(plan, kind, dps, decoded):
                remove.append(index)
        keeps_scope = total - len(remove) - len(in_place_scopeless) > 0 or built_keep
        if not keeps_scope:
            for index in reversed(remove):
                del metrics[index]
            metrics.extend(built_scopeless)
            sm.ClearField("scope")
            return
        moved.extend(self._copy(metrics[i]) for i in in_place_scopeless)
        moved.extend(built_scopeless)
        for index in sorted(remove + in_place_scopeless, reverse=True):
            del metrics[index]
        metrics.extend(built_keep)

    @staticmethod
    def _copy(m: metrics_pb2.Metric) -> metrics_pb2.Metric:
        c = metrics_pb2.Metric()
        c.CopyFrom(m)
        return c

    @staticmethod
    def _rename_in_place(view: ViewState, m: metrics_pb2.Metric) -> None:
        if view.moves is not None:
            m.name = view.moves[m.name]
        if view.name is not None:
            m.name = view.name
        if view.unit is not None:
            m.unit = view.unit
        if view.description is not None:
            m.description = view.description

    def _build(
        self, view: ViewState, m: metrics_pb2.Metric, kind: str, decoded: list[Decoded]
    ) -> metrics_pb2.Metric | None:
        data = getattr(m, kind)
        temporality = getattr(data, "aggregation_temporality", _CUMULATIVE)
        groups = view.group(kind == "histogram", decoded, self.counters)
        if not groups:
            return None
        out = metrics_pb2.Metric(
            name=view.moves[m.name]
            if view.moves is not None
            else view.name
            if view.name is not None
            else m.name,
            unit=view.unit if view.unit is not None else m.unit,
            description=view.description if view.description is not None else m.description,
        )
        derive = view.derive
        if derive is not None:
            out.sum.is_monotonic = True
            out.sum.aggregation_temporality = temporality
            if kind == "histogram":
                payload = derived_from_histograms(groups, derive.value == "count")
            else:
                payload = numbers(groups, scale=derive.rate is not None)
            out.sum.MergeFromString(payload)
        elif kind == "sum" or kind == "gauge":
            target = getattr(out, kind)
            if kind == "sum":
                target.is_monotonic = data.is_monotonic
                target.aggregation_temporality = temporality
            target.MergeFromString(numbers(groups, scale=False))
        else:
            out.histogram.aggregation_temporality = temporality
            out.histogram.MergeFromString(histograms(groups, self.counters))
        return out


def _keep_unselected(
    plan: tuple[ViewState, ...], kind: str, dps: Any, decoded: list[Decoded]
) -> bool:
    """Views that select points by attribute take only those: the others stay in the source
    metric, unchanged. True when some remain (the source then stays, with just them)."""
    if not any(view.point_filter for view in plan):
        return False
    histogram = kind == "histogram"
    selected = [
        i
        for i, d in enumerate(decoded)
        if any(view.caches[histogram].get(d[1]) is not None for view in plan)
    ]
    if len(selected) == len(decoded):
        return False
    for i in reversed(selected):
        del dps[i]
    return True
