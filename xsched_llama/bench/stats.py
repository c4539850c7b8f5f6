"""The figures of the report, computed from request timestamps (pure functions, no I/O).

Times are seconds on one clock. A token's time is when its stream event arrived.
"""
from __future__ import annotations

import math
import statistics
from typing import Iterable, Optional, Sequence

Interval = tuple[float, float]


def median(values: Iterable[float]) -> float:
    """median() of a non-empty collection; ValueError when it is empty."""
    vals = list(values)
    if not vals:
        raise ValueError("median of no values")
    return float(statistics.median(vals))


def ratio(num: float, den: float) -> Optional[float]:
    """ratio() is num/den, or None when den is not positive."""
    return num / den if den > 0 else None


def finish_gap(start: float, ends: Sequence[float]) -> float:
    """finish_gap() is (latest - earliest finish) / mean finish, finish times counted from start.

    0 means every task finished at the same moment; it is the WRR 1:1 fairness figure.
    """
    if len(ends) < 2:
        raise ValueError("finish_gap needs at least two finish times")
    spans = [e - start for e in ends]
    mean = sum(spans) / len(spans)
    if mean <= 0:
        raise ValueError("finish times must be after the start")
    return (max(spans) - min(spans)) / mean


def tokens_in(times: Sequence[float], t0: float, t1: float) -> int:
    """tokens_in() counts the token times in the half-open window (t0, t1]."""
    return sum(1 for t in times if t0 < t <= t1)


def rate(times: Sequence[float], t0: float, t1: float) -> float:
    """rate() is tokens per second in the window (t0, t1]; 0 for an empty window."""
    return tokens_in(times, t0, t1) / (t1 - t0) if t1 > t0 else 0.0


def steady_rate(times: Sequence[float]) -> Optional[float]:
    """steady_rate() is the decode rate between the first and last token: (n-1)/(last-first)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])


def rate_in(times: Sequence[float], windows: Sequence[Interval]) -> Optional[float]:
    """rate_in() is tokens per second over a set of disjoint windows; None if they are empty."""
    total = sum(max(0.0, b - a) for a, b in windows)
    if total <= 0:
        return None
    return sum(tokens_in(times, a, b) for a, b in windows) / total


def gaps(busy: Sequence[Interval], t0: float, t1: float, margin: float = 0.0) -> list[Interval]:
    """gaps() returns the parts of (t0, t1) outside every busy interval.

    Each gap starts `margin` seconds after a busy interval ends (the time the other task needs
    to be resumed is part of what is measured only when margin is 0).
    """
    merged: list[list[float]] = []
    for a, b in sorted(busy):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    out: list[Interval] = []
    cur = t0
    for a, b in merged:
        if a > cur:
            out.append((cur, min(a, t1)))
        cur = max(cur, b + margin)
        if cur >= t1:
            break
    if cur < t1:
        out.append((cur, t1))
    return [(a, b) for a, b in out if b > a]


def overlap_ratio(times_a: Sequence[float], times_b: Sequence[float], start: float) -> Optional[float]:
    """overlap_ratio() is A's tokens/s over B's while both ran: from start until the first finished."""
    if not times_a or not times_b:
        return None
    end = min(times_a[-1], times_b[-1])
    na, nb = tokens_in(times_a, start, end), tokens_in(times_b, start, end)
    return na / nb if nb > 0 else None


def series(times: Sequence[float], t0: float, t1: float, bins: int = 60) -> list[tuple[float, float]]:
    """series() returns (bin centre, tokens/s) for `bins` equal half-open bins (a, b] over (t0, t1] (for the plot)."""
    if t1 <= t0 or bins < 1:
        return []
    width = (t1 - t0) / bins
    counts = [0] * bins
    for t in times:
        if t0 < t <= t1:
            counts[min(bins - 1, max(0, math.ceil((t - t0) / width) - 1))] += 1
    return [(t0 + (i + 0.5) * width, c / width) for i, c in enumerate(counts)]
