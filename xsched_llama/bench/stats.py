"""The figures of the report, computed from request timestamps (pure functions, no I/O).

Times are seconds on one clock. A token's time is when its stream event arrived.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

Interval = tuple[float, float]


def median(values: Iterable[float]) -> float:
    """median() of a non-empty collection; ValueError when it is empty."""
    vals = list(values)
    if not vals:
        raise ValueError("median of no values")
    return float(statistics.median(vals))


def ratio(num: float, den: float) -> float | None:
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


def steady_rate(times: Sequence[float]) -> float | None:
    """steady_rate() is the decode rate between the first and last token: (n-1)/(last-first)."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])


def rate_in(times: Sequence[float], windows: Sequence[Interval]) -> float | None:
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


def overlap_ratio(times_a: Sequence[float], times_b: Sequence[float], start: float) -> float | None:
    """overlap_ratio() is A's tokens/s over B's while both ran: from start until the first finished."""
    if not times_a or not times_b:
        return None
    end = min(times_a[-1], times_b[-1])
    na, nb = tokens_in(times_a, start, end), tokens_in(times_b, start, end)
    return na / nb if nb > 0 else None


def series(times: Sequence[float], t0: float, t1: float, bins: int = 60,
           active: Sequence[tuple[float, float]] | None = None) -> list[tuple[float, float]]:
    """series() returns (bin centre, tokens/s) for `bins` equal half-open bins (a, b] over (t0, t1] (for the plot).

    With `active` (the (start, end) intervals when the task had a request in flight), a bin's rate is its tokens
    over the time it was active, and a bin with no activity is NaN (a gap in the line): the pause between two
    requests is not drawn as a drop of the token rate."""
    if t1 <= t0 or bins < 1:
        return []
    width = (t1 - t0) / bins
    counts = [0] * bins
    for t in times:
        if t0 < t <= t1:
            counts[min(bins - 1, max(0, math.ceil((t - t0) / width) - 1))] += 1
    if active is None:
        return [(t0 + (i + 0.5) * width, c / width) for i, c in enumerate(counts)]
    out = []
    for i, c in enumerate(counts):
        a, b = t0 + i * width, t0 + (i + 1) * width
        busy = sum(max(0.0, min(b, e) - max(a, s)) for s, e in active)
        out.append((t0 + (i + 0.5) * width, c / busy if busy > 0.1 * width else math.nan))
    return out


def percentile(values: Iterable[float], p: float) -> float | None:
    """percentile() is the p-th percentile (0-100) with linear interpolation between the closest ranks,
    as numpy.percentile and vLLM's bench serve compute it; None for no values."""
    vals = sorted(values)
    if not vals:
        return None
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is outside [0, 100]")
    pos = (len(vals) - 1) * p / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def intervals(times: Sequence[float]) -> list[float]:
    """intervals() are the gaps between consecutive distinct arrival times (one per stream event that
    carried tokens after the first): the inter-token latencies of one request."""
    out: list[float] = []
    for a, b in zip(times, times[1:]):
        if b > a:
            out.append(b - a)
    return out


def quantile_ci(values: Iterable[float], q: float, conf: float = 0.95) -> tuple[float | None, float | None]:
    """quantile_ci() is a distribution-free confidence interval of the q-quantile (0 < q < 1) from order
    statistics: the number of samples below the true quantile is Binomial(n, q). An end is None where n is
    too small to bound it (e.g. the upper end of a P99 from fewer than ~300 samples)."""
    vals = sorted(values)
    n = len(vals)
    if n == 0:
        return None, None
    if not 0 < q < 1 or not 0 < conf < 1:
        raise ValueError("quantile_ci needs 0 < q < 1 and 0 < conf < 1")
    tail = (1 - conf) / 2
    cdf, acc = [], 0.0
    lq, lp = math.log(q), math.log(1 - q)
    for k in range(n + 1):          # binomial pmf in logs: no overflow for large n
        acc += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * lq + (n - k) * lp)
        cdf.append(acc)              # cdf[k] = P(B <= k)
    lo_rank = max((r for r in range(1, n + 1) if cdf[r - 1] <= tail), default=0)
    hi_rank = min((r for r in range(1, n + 1) if 1 - cdf[r - 1] <= tail), default=n + 1)
    return (vals[lo_rank - 1] if lo_rank >= 1 else None), (vals[hi_rank - 1] if hi_rank <= n else None)
