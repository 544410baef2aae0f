"""Prometheus exporter: the series store and its text / OpenMetrics exposition."""
