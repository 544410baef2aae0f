"""Delta-to-cumulative accumulation, per the OpenTelemetry metrics data model ("Sums: Delta to
Cumulative").

The rules, for one stream (metric + resource + scope + attributes):

1. The first point starts the stream: its value is the cumulative value, its start time the
   stream's start time.
2. A point whose end time is not after the last end time is out of order (or a duplicate):
   dropped and counted.
3. A point whose start time is before the stream's start time is older than the stream:
   dropped and counted.
4. A point that starts where the last one ended (or carries no start time) continues the
   stream: its value is added.
5. A point that starts after the last end time leaves a gap, meaning the producer lost state (a
   restart): the stream resets, starting again from this point.

Worked example (times in seconds; the SDK's delta points are contiguous):

    point (start, end, value)   cumulative (start, end, value)   why
    (0, 10, 5)                  (0, 10, 5)                       rule 1, first point
    (10, 20, 3)                 (0, 20, 8)                       rule 4, contiguous: 5 + 3
    (15, 18, 1)                 (0, 20, 8)                       rule 2, ends before 20: dropped
    (30, 40, 2)                 (30, 40, 2)                      rule 5, gap 20..30: reset

The store calls `accumulate()` for delta streams inside its single walk over the request, so
that delta data costs no second pass; the function is pure and tested on its own.
"""

from __future__ import annotations

import enum

__all__ = ["Outcome", "accumulate"]


class Outcome(enum.Enum):
    STARTED = "started"
    ADDED = "added"
    RESET = "reset"
    OUT_OF_ORDER = "out_of_order"
    TOO_OLD = "too_old"


def accumulate(stream_start: int, last_end: int, start: int, end: int) -> tuple[Outcome, int]:
    """Decide what a delta point (`start`, `end`) does to a stream that started at
    `stream_start` and last ended at `last_end` (`last_end == 0`: no stream yet).

    Returns the outcome and the stream's start time after the point.
    """
    if last_end == 0:
        return Outcome.STARTED, start
    if end <= last_end:
        return Outcome.OUT_OF_ORDER, stream_start
    if start and start < stream_start:
        return Outcome.TOO_OLD, stream_start
    if not start or start <= last_end:
        # Contiguous (start == last_end) or overlapping by the SDK's clock rounding: continue.
        return Outcome.ADDED, stream_start
    return Outcome.RESET, start
