"""`IntervalController`: how long the system observer waits before its next cycle.

Two forces, the longer wins, and the bounds always hold:

1. The load curve: a piecewise-linear map from a load signal (load per core, or CPU percent)
   to an interval.
2. The self-overhead budget: the interval must be long enough that the observer's own CPU time
   per cycle, divided by the interval, stays under the budget (a ratio of one core).

Worked example with the defaults (curve (0.05, 30) (0.25, 10) (0.7, 10) (1.0, 5), bounds
5..30 s, budget 0.005): at load 0.85 per core the curve gives 7.5 s (halfway from 10 to 5).
Cycles costing 0.4 ms need only 0.0004 / 0.005 = 0.08 s to stay under budget, so 7.5 s it is.
If cycles cost 60 ms (a host with thousands of mounts, say), the budget needs 12 s, and 12 s
wins. At 200 ms a cycle the budget would need 40 s; the bound caps it at 30 s, and the exported
overhead ratio (0.2 / 30 = 0.67 %) shows the budget is exceeded.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Sequence

__all__ = ["IntervalController", "interpolate"]


def interpolate(curve: Sequence[tuple[float, float]], x: float) -> float:
    """The curve's value at `x`: linear between points, flat beyond the ends.

    >>> interpolate(((0.25, 10.0), (1.0, 5.0)), 0.625)
    7.5
    """
    xs = [p[0] for p in curve]
    i = bisect_right(xs, x)
    if i == 0:
        return curve[0][1]
    if i == len(curve):
        return curve[-1][1]
    (x0, y0), (x1, y1) = curve[i - 1], curve[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class IntervalController:
    """Holds the recent cycle costs and decides the next interval.

    `observe()` is called once per cycle with what that cycle cost and how much wall time passed
    since the previous cycle began; `interval` and `overhead` are then current.
    """

    def __init__(
        self,
        *,
        curve: Sequence[tuple[float, float]],
        min_seconds: float,
        max_seconds: float,
        budget: float,
        initial_seconds: float,
        window: int = 6,
        adaptive: bool = True,
    ) -> None:
        if not 0 < min_seconds <= initial_seconds <= max_seconds:
            raise ValueError("need 0 < min_seconds <= initial_seconds <= max_seconds")
        if budget <= 0:
            raise ValueError("budget must be > 0")
        if window < 1:
            raise ValueError("window must be >= 1")
        self._curve = tuple(curve)
        self._min = min_seconds
        self._max = max_seconds
        self._budget = budget
        self._adaptive = adaptive
        self._interval = initial_seconds
        # (cpu seconds, wall seconds) of the last `window` cycles
        self._costs: deque[tuple[float, float]] = deque(maxlen=window)
        self._cpu_sum = 0.0
        self._wall_sum = 0.0

    @property
    def interval(self) -> float:
        """Seconds until the next cycle."""
        return self._interval

    @property
    def cycle_cpu(self) -> float:
        """Mean CPU seconds per cycle over the window (0 before the first cycle)."""
        return self._cpu_sum / len(self._costs) if self._costs else 0.0

    @property
    def overhead(self) -> float:
        """Observer CPU time as a ratio of one core over the window (0 before the first cycle)."""
        return self._cpu_sum / self._wall_sum if self._wall_sum > 0 else 0.0

    def observe(
        self, *, signal: float | None, cycle_cpu_seconds: float, wall_seconds: float
    ) -> float:
        """Record one cycle and return the next interval.

        `signal` is None when the host could not be read: the load part then keeps the current
        interval. `wall_seconds` is the time since the previous cycle began; for the first
        cycle pass the interval that was planned, so the overhead is meaningful from the start.
        """
        self._costs.append((max(cycle_cpu_seconds, 0.0), max(wall_seconds, 0.0)))
        # Re-summed, not updated incrementally: a few additions, and no float drift over years.
        self._cpu_sum = sum(c for c, _ in self._costs)
        self._wall_sum = sum(w for _, w in self._costs)
        if not self._adaptive:
            return self._interval
        by_load = self._interval if signal is None else interpolate(self._curve, signal)
        wanted = max(by_load, self.cycle_cpu / self._budget)
        self._interval = min(max(wanted, self._min), self._max)
        return self._interval
