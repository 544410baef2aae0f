"""Receivers: OTLP in over HTTP and gRPC. They decode and hand batches to the pipeline; they
know nothing of Prometheus."""
