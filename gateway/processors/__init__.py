"""Processors: per-stream logic between receiving and exporting (delta to cumulative,
views, cardinality limits)."""
