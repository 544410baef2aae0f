"""The pipeline: receivers -> processors -> exporters over one data model.

The data model is OTLP's own (`ExportMetricsServiceRequest`), as the Collector's pdata is: every
producer (receivers, observers, health checks, self-telemetry) hands a `MetricsBatch` to a
`Consumer`; every exporter reads what it is given.
"""

from gateway.pipeline.batch import MetricsBatch
from gateway.pipeline.consumer import Component, Consumer, Fanout
from gateway.pipeline.pipeline import Pipeline, Processor

__all__ = ["Component", "Consumer", "Fanout", "MetricsBatch", "Pipeline", "Processor"]
