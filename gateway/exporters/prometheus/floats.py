"""`le` and `quantile` label values written the way the Prometheus Go libraries write them.

To Prometheus a label value is a string: `le="5.0"` and `le="5"` are two different series.
The OpenTelemetry Collector's prometheus exporter renders through client_golang's `expfmt`,
which writes these labels with Go's `strconv.FormatFloat(v, 'g', -1, 64)` in the 0.0.4 text
format and, in OpenMetrics, the same with ".0" appended when the result has neither "." nor
"e". Python's `repr` differs (`5.0`, `1000000.0` where Go writes `5`, `1e+06`), so a gateway
and a Collector fed the same histogram would give Prometheus different series. Hand-written
because no Python library reproduces Go's shortest-`g` rule; `repr` supplies the shortest
round-trip digits, which both languages agree on.

    >>> label_float(5.0), label_float(5.0, openmetrics=True)
    ('5', '5.0')
    >>> label_float(1e6), label_float(0.005), label_float(1e-05), label_float(123456.0)
    ('1e+06', '0.005', '1e-05', '123456')
"""

from __future__ import annotations

import functools
import math
from decimal import Decimal

__all__ = ["label_float"]


def label_float(v: float, *, openmetrics: bool = False) -> str:
    return _cached(v, openmetrics)


# Bucket bounds repeat across every series and scrape: the cache makes a bound cost a dict
# look-up after its first rendering. Bounded, so odd exponential-histogram bounds cannot grow it.
@functools.lru_cache(maxsize=16384)
def _cached(v: float, openmetrics: bool) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        # expfmt special-cases 0 (and so -0.0, which equals it)
        return "0.0" if openmetrics else "0"
    text = _go_g(v)
    if openmetrics and "." not in text and "e" not in text:
        text += ".0"
    return text


def _go_g(v: float) -> str:
    """Go's FormatFloat(v, 'g', -1, 64): %e when the decimal exponent is < -4 or >= 6 (Go uses
    precision 6 for that choice when asked for the shortest form), else %f; shortest digits."""
    sign = "-" if v < 0 else ""
    _, digit_tuple, exponent = Decimal(repr(abs(v))).normalize().as_tuple()
    assert isinstance(exponent, int)  # finite: NaN and infinities were handled above
    digits = "".join(map(str, digit_tuple))
    n = len(digits)
    point = n + exponent  # value = 0.<digits> * 10**point
    x = point - 1
    if x < -4 or x >= 6:
        mantissa = digits[0] + ("." + digits[1:] if n > 1 else "")
        return f"{sign}{mantissa}e{'-' if x < 0 else '+'}{abs(x):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= n:
        return f"{sign}{digits}{'0' * (point - n)}"
    return f"{sign}{digits[:point]}.{digits[point:]}"
