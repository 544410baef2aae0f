"""Moved to `gateway.naming` (the metric catalogue and every stage use the same translation, and
a processor may not import an exporter); kept so that imports of the old path still work."""

from gateway.naming import (
    is_valid_label_name,
    is_valid_metric_name,
    metric_name,
    sanitize_label_name,
    unit_suffix,
)

__all__ = [
    "is_valid_label_name",
    "is_valid_metric_name",
    "metric_name",
    "sanitize_label_name",
    "unit_suffix",
]
