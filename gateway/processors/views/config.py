"""The settings of a view, checked once at config load (the `views:` list of the gateway config).

Frozen pydantic models, so a view is plain data that `ViewProcessor` compiles; the processor
owns everything that changes while it runs. Each check here raises at load time with the YAML
path of the key, rather than letting a view that can never apply reach the pipeline.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.catalogue import Kind, by_name

__all__ = [
    "COMPATIBLE",
    "AttributesConfig",
    "DataKind",
    "DeriveConfig",
    "RateTable",
    "RenameConfig",
    "Selector",
    "ValueMapping",
    "ViewConfig",
]

#: an OTLP metric's data kind, as `Metric.WhichOneof("data")` names it
DataKind = Literal["sum", "gauge", "histogram", "exponential_histogram", "summary"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ValueMapping(_Frozen):
    """How one attribute's values change. Order: `function`, then `map`, then `other`."""

    #: a built-in function of the value: `status_class` turns 200..599 into "2xx".."5xx"
    #: (anything else is left alone), `lower` and `upper` change case
    function: Literal["status_class", "lower", "upper"] | None = None
    #: exact replacements: {"GET": "get"}
    map: dict[str, str] = Field(default_factory=dict)
    #: the value for anything `map` does not list (None: keep it)
    other: str | None = None
    #: the value when the attribute is missing or empty (None: leave it out)
    default: str | None = None


class AttributesConfig(_Frozen):
    """Which attributes the output keeps, under which names, with which values."""

    #: incoming keys to keep, in this order; None keeps every key not in `drop`. Points that
    #: differ only in the other keys are summed (the keys are aggregated away)
    keep: tuple[str, ...] | None = None
    #: incoming keys to leave out (aggregated away) when `keep` is None
    drop: tuple[str, ...] = ()
    #: incoming key -> output key
    rename: dict[str, str] = Field(default_factory=dict)
    #: incoming key -> how its values change
    values: dict[str, ValueMapping] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> AttributesConfig:
        if self.keep is not None and self.drop:
            raise ValueError("give keep or drop, not both")
        outputs = [self.rename.get(k, k) for k in (self.keep or ())]
        if len(set(outputs)) != len(outputs):
            raise ValueError("two kept attributes are renamed to the same key")
        return self

    @property
    def is_identity(self) -> bool:
        return self.keep is None and not self.drop and not self.rename and not self.values


class Selector(_Frozen):
    """Which metrics a view applies to; every given condition must hold."""

    #: instrument name, a glob ("http.server.*"); "{namespace}" stands for the catalogue's
    #: namespace (prometheus.namespace)
    instrument: str
    #: only metrics of this OTLP data kind
    kind: DataKind | None = None
    #: instrumentation scope name, a glob
    scope: str | None = None
    #: resource attributes that must be present with a matching value (globs)
    resource: dict[str, str] = Field(default_factory=dict)
    #: point attributes that must match (globs); the metric's other points stay as they were
    attributes: dict[str, str] = Field(default_factory=dict)


class RenameConfig(_Frozen):
    """An explicit output name, for metrics outside the catalogue."""

    #: the OpenTelemetry name; the Prometheus name follows from it and the unit
    name: str = Field(min_length=1)
    #: None keeps the incoming unit
    unit: str | None = None
    #: None keeps the incoming description
    description: str | None = None


class RateTable(_Frozen):
    """A multiplier chosen by an attribute's value: plan -> US dollars per second."""

    #: the incoming attribute whose value picks the rate
    attribute: str
    #: value -> rate (>= 0)
    rates: dict[str, float]
    #: the rate for values the table does not list; None leaves such points out
    default: float | None = Field(None, ge=0)

    @field_validator("rates")
    @classmethod
    def _non_negative(cls, rates: dict[str, float]) -> dict[str, float]:
        for key, rate in rates.items():
            if not rate >= 0:
                raise ValueError(f"rate for {key!r} must be >= 0, got {rate}")
        return rates


class DeriveConfig(_Frozen):
    """Make a counter out of another metric's points."""

    #: the value taken: a histogram's `count` or `sum`, or a Sum's `value`
    value: Literal["count", "sum", "value"]
    #: multiply by a rate chosen by an attribute (a cost from a duration)
    rate: RateTable | None = None

    @property
    def source_kind(self) -> DataKind:
        """The data kind a metric must have for `value` to exist in it."""
        return "sum" if self.value == "value" else "histogram"


class ViewConfig(_Frozen):
    """One view. Settings only; `ViewProcessor` owns the running state."""

    #: a name for logs and errors
    name: str = ""
    #: which metrics the view applies to
    select: Selector
    #: the catalogue entry the output becomes (name under the namespace, unit, help, kind)
    to: str | None = None
    #: or an explicit output name; with neither, the name stays
    rename: RenameConfig | None = None
    #: derive a counter from the selected metric instead of transforming it
    derive: DeriveConfig | None = None
    #: attributes of the output
    attributes: AttributesConfig = AttributesConfig()
    #: drop the instrumentation scope, so the series carry no otel_scope_* labels
    drop_scope: bool = True
    #: move catalogue metrics a service names under this namespace into the gateway's
    #: (`coderunner.deployments` -> `acme.deployments`); only catalogue names are selected,
    #: and nothing when it is the gateway's own namespace
    from_namespace: str | None = None

    @field_validator("to")
    @classmethod
    def _in_catalogue(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                by_name(value)
            except KeyError:
                raise ValueError(f"{value!r} is not in the metric catalogue") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ViewConfig:
        if self.from_namespace is not None and (
            self.to is not None
            or self.rename is not None
            or self.derive is not None
            or not self.attributes.is_identity
        ):
            raise ValueError("from_namespace only moves names: no to, rename, derive, attributes")
        if self.to is not None and self.rename is not None:
            raise ValueError("give `to` (a catalogue entry) or `rename`, not both")
        if self.to is not None:
            kind = by_name(self.to).kind
            if self.derive is not None and kind is not Kind.COUNTER:
                raise ValueError(
                    f"derive makes a counter, but catalogue {self.to} is a {kind.value}"
                )
            selected = self.select.kind
            if self.derive is None and selected is not None and kind not in COMPATIBLE[selected]:
                raise ValueError(f"a {selected} cannot become catalogue {self.to} ({kind.value})")
        if self.derive is not None:
            need = self.derive.source_kind
            if self.select.kind not in (None, need):
                raise ValueError(f"derive.value {self.derive.value} needs a {need}")
        return self


#: the catalogue kinds a metric of each OTLP data kind can become without a `derive`
COMPATIBLE: dict[str, tuple[Kind, ...]] = {
    "sum": (Kind.COUNTER, Kind.UPDOWN),
    "gauge": (Kind.GAUGE,),
    "histogram": (Kind.HISTOGRAM,),
    "exponential_histogram": (Kind.HISTOGRAM,),
    "summary": (),
}
