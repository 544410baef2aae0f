"""What `ViewProcessor` keeps for each view: the view compiled for one namespace (globs as
regular expressions, the output name, unit and description), and its running state (the
outcome per attribute set, the metrics it has already warned about).

A `ViewConfig` stays frozen settings; this is the state it is applied with, so two processors
built from the same views share nothing.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

from gateway.catalogue import CATALOGUE, Kind, by_name
from gateway.pipeline.attributes import attribute_string
from gateway.processors.views.attributes import NO_RATE, AttributePlan, Outcome
from gateway.processors.views.config import ViewConfig
from gateway.processors.views.counters import ViewCounters
from gateway.processors.views.wire import Decoded

__all__ = ["CACHE_LIMIT", "ViewState"]

CACHE_LIMIT = 50_000  # attribute sets remembered per view; beyond it the cache starts over


class ViewState:
    """A view compiled for one namespace, with its attribute cache."""

    def __init__(self, config: ViewConfig, namespace: str) -> None:
        self.config = config
        self.label = config.name or config.to or config.select.instrument
        sel = config.select
        self.instrument = re.compile(
            fnmatch.translate(sel.instrument.replace("{namespace}", namespace))
        )
        self.scope = re.compile(fnmatch.translate(sel.scope)) if sel.scope is not None else None
        self.resource = [(k, re.compile(fnmatch.translate(v))) for k, v in sel.resource.items()]
        self.attributes = AttributePlan(config)
        #: the view takes only the points whose attributes match `select.attributes`
        self.point_filter = bool(self.attributes.point_filter)
        self.name: str | None = None
        self.unit: str | None = None
        self.description: str | None = None
        self.catalogue_kind: Kind | None = None
        if config.to is not None:
            entry = by_name(config.to)
            self.name, self.unit, self.description = (
                entry.otel_name(namespace),
                entry.unit,
                entry.help,
            )
            self.catalogue_kind = entry.kind
        elif config.rename is not None:
            self.name = config.rename.name
            self.unit = config.rename.unit
            self.description = config.rename.description
        #: from_namespace: the catalogue's names under it -> under the gateway's namespace
        self.moves: dict[str, str] | None = None
        if config.from_namespace is not None:
            source = config.from_namespace
            self.moves = (
                {m.otel_name(source): m.otel_name(namespace) for m in CATALOGUE}
                if source != namespace
                else {}
            )
        self.derive = config.derive
        #: the view only renames: the metric is changed in place, no point is touched
        self.in_place = (
            config.attributes.is_identity and not self.point_filter and self.derive is None
        )
        #: attribute key -> outcome, one cache per kind of point (number or histogram: their
        #: keys are different encodings)
        self.caches: dict[bool, dict[bytes, Outcome | None]] = {False: {}, True: {}}
        self.warned: set[str] = set()

    def matches(self, name: str, kind: str, scope: str, resource: Mapping[str, str]) -> bool:
        sel = self.config.select
        if sel.kind is not None and sel.kind != kind:
            return False
        if not self.instrument.match(name):
            return False
        if self.moves is not None and name not in self.moves:
            return False
        if self.scope is not None and not self.scope.match(scope):
            return False
        for key, pattern in self.resource:
            value = resource.get(key)
            if value is None or not pattern.match(value):
                return False
        return True

    def group(
        self, histogram: bool, decoded: list[Decoded], counters: ViewCounters
    ) -> list[list[Any]]:
        """Points by output attribute set: [outcome, (point, key, head, tail), ...] per group."""
        groups: dict[bytes, list[Any]] = {}
        cache = self.caches[histogram]
        entry_for = self._entry
        for d in decoded:
            key = d[1]
            e = cache[key] if key in cache else entry_for(cache, key, d[0])
            if e is None:
                continue
            if e.rate == NO_RATE:
                counters.drop("view_no_rate")
                continue
            g = groups.get(e.key)
            if g is None:
                groups[e.key] = [e, d]
            else:
                g.append(d)
        return list(groups.values())

    def _entry(self, cache: dict[bytes, Outcome | None], key: bytes, p: Any) -> Outcome | None:
        """The outcome for a point whose attribute bytes are `key` (not in the cache yet)."""
        incoming = {kv.key: attribute_string(kv.value) for kv in p.attributes}
        result = self.attributes.outcome(incoming)
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[key] = result
        return result
