"""Exporters: where data leaves the gateway (Prometheus exposition, OTLP forwarding)."""
