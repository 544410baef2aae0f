"""telemetry-gateway: receives OTLP metrics, serves them to Prometheus, forwards them upstream."""

__all__ = ["__version__"]

__version__ = "0.1.0"
