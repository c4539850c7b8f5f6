"""Preemption latency from the patched server's own histogram (pure functions over `GET /xsched` snapshots).

A queue row of `GET /xsched` may carry
    "preemption": {"count": N, "measured": M, "sum_us": S, "max_us": X,
                   "buckets_le_us": [50, 100, ..., 20000], "buckets": [c0, ..., c11],
                   "open_units": U, "launch_sum_us": LS, "launch_max_us": LX}
with non-cumulative bucket counts, the last bucket being +Inf: `count` suspensions while the queue had work
in flight, `measured` of them with an observed drain, the histogram over the measured ones. Servers built
before the histogram have no such object: their figures say "not measured".

A scenario's figures are the difference of the snapshots taken before and after it, summed over the queues
of the least important instance (the one that gets preempted).
"""
from __future__ import annotations

import math
import re
from typing import Any
from collections.abc import Sequence

NOT_MEASURED = "not measured"


def bucket_quantile(bounds: Sequence[float], counts: Sequence[int], q: float,
                    max_value: float | None = None) -> float | None:
    """bucket_quantile() is an upper bound of the q-quantile (0 < q <= 1) of a histogram: the upper bound of
    the bucket that holds the ceil(q * total)-th smallest sample.

    bounds are the buckets' inclusive upper bounds, ascending; counts has one more entry, the +Inf bucket.
    max_value (the largest sample, when known) caps the result, and is the answer when the quantile falls in
    the +Inf bucket (math.inf without it). None when the histogram is empty.
    """
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"{len(counts)} bucket counts for {len(bounds)} bounds (expected {len(bounds) + 1})")
    if not 0 < q <= 1:
        raise ValueError(f"quantile {q} is outside (0, 1]")
    if any(c < 0 for c in counts):
        raise ValueError("negative bucket count")
    total = sum(counts)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total - 1e-9))
    seen = 0
    for i, c in enumerate(counts):
        seen += c
        if seen >= rank:
            upper = float(bounds[i]) if i < len(bounds) else math.inf
            return min(upper, max_value) if max_value is not None else upper
    raise AssertionError("unreachable: rank <= total")


def low_queue_rows(snapshot: Any) -> list[dict[str, Any]]:
    """low_queue_rows() are the queue rows of the least important instance (by `instances`, else by priority)."""
    if not isinstance(snapshot, dict):
        return []
    queues = [q for q in snapshot.get("queues") or [] if isinstance(q, dict)]
    insts = [i for i in snapshot.get("instances") or [] if isinstance(i, dict) and "priority" in i]
    if insts:
        low = min(insts, key=lambda i: (int(i["priority"]), -int(i.get("id", 0))))
        name = str(low.get("name") or "inst" + str(low.get("id")))
        pat = re.compile("^" + re.escape(name) + r"(?!\d)")
        named = [q for q in queues if pat.match(str(q.get("name", "")))]
        if named:
            return named
        return [q for q in queues if q.get("priority") == low["priority"]]
    prios = [int(q["priority"]) for q in queues if isinstance(q.get("priority"), int)]
    return [q for q in queues if prios and q.get("priority") == min(prios)]


def _hist(row: dict[str, Any]) -> dict[str, Any] | None:
    p = row.get("preemption")
    if not isinstance(p, dict) or not isinstance(p.get("buckets"), list) or not isinstance(p.get("buckets_le_us"), list):
        return None
    return p


def figures(before: Any, after: Any) -> dict[str, Any]:
    """figures() are the preemptions of the low instance between two snapshots: count, measured, P50/P99 (upper
    bounds of the buckets, µs), max (µs). `max_us` is exact when the server's running maximum grew in between,
    otherwise the upper bound of the highest bucket that grew (`max_exact` says which); `per_queue` splits count,
    measured count and buckets by queue (which of the instance's CPU and CUDA queues the latencies come from);
    "not measured" when the server reports no histogram."""
    rows_after = {str(q.get("name")): q for q in low_queue_rows(after)}
    rows_before = {str(q.get("name")): q for q in low_queue_rows(before)} if before is not None else {}
    hists = {n: h for n, q in rows_after.items() if (h := _hist(q)) is not None}
    if not hists:
        return {"measured": False, "status": NOT_MEASURED, "queues": sorted(rows_after)}
    bounds: list[float] | None = None
    counts: list[int] = []
    count = measured = 0
    sum_us = 0.0
    max_us: float | None = None
    max_exact = True
    per_queue: dict[str, dict[str, Any]] = {}
    open_units = 0
    launch_sum_us = 0.0
    launch_max_us: float | None = None
    for name, h in hists.items():
        b = _hist(rows_before.get(name, {})) or {}
        hb = [float(x) for x in h["buckets_le_us"]]
        if bounds is None:
            bounds, counts = hb, [0] * (len(hb) + 1)
        elif hb != bounds:
            raise ValueError(f"queue {name} has other histogram bounds ({hb} vs {bounds})")
        before_counts = b.get("buckets") or [0] * len(h["buckets"])
        diff = [int(x) - int(y) for x, y in zip(h["buckets"], before_counts)]
        if len(diff) != len(counts) or any(d < 0 for d in diff):
            raise ValueError(f"queue {name}: the histogram shrank between the snapshots (server restarted?)")
        counts = [c + d for c, d in zip(counts, diff)]
        per_queue[name] = {"count": int(h.get("count", 0)) - int(b.get("count", 0)),
                           "measured_count": int(h.get("measured", 0)) - int(b.get("measured", 0)), "buckets": diff}
        count += int(h.get("count", 0)) - int(b.get("count", 0))
        measured += int(h.get("measured", 0)) - int(b.get("measured", 0))
        sum_us += float(h.get("sum_us", 0)) - float(b.get("sum_us", 0))
        open_units += int(h.get("open_units", 0)) - int(b.get("open_units", 0))
        launch_sum_us += float(h.get("launch_sum_us", 0)) - float(b.get("launch_sum_us", 0))
        lm_after, lm_before = float(h.get("launch_max_us", 0)), float(b.get("launch_max_us", 0))
        if lm_after > lm_before and (launch_max_us is None or lm_after > launch_max_us):
            launch_max_us = lm_after   # the running maximum grew in this interval: it is this interval's
        if any(diff):
            m_after, m_before = float(h.get("max_us", 0)), float(b.get("max_us", 0))
            if m_after > m_before or not b:
                cand, exact = m_after, True
            else:   # the maximum of this interval is not above the earlier one: bound it by its highest bucket
                top = max(i for i, d in enumerate(diff) if d)
                cand, exact = (min(bounds[top], m_after) if top < len(bounds) else m_after), False
            if max_us is None or cand > max_us:
                max_us, max_exact = cand, exact
    assert bounds is not None
    p50 = bucket_quantile(bounds, counts, 0.50, max_us)
    p99 = bucket_quantile(bounds, counts, 0.99, max_us)
    return {"measured": True, "queues": sorted(hists), "count": count, "measured_count": measured,
            "p50_us": p50, "p99_us": p99, "max_us": max_us, "max_exact": max_exact,
            "mean_us": sum_us / measured if measured > 0 else None,
            "buckets_le_us": bounds, "buckets": counts, "per_queue": per_queue,
            # of the measured ones, those that began while a unit was being launched, and the host time until
            # that unit's launch was complete (the rest of their latency is the device draining)
            "open_units": open_units, "launch_mean_us": launch_sum_us / open_units if open_units > 0 else None,
            "launch_max_us": launch_max_us}


def p99_ms(fig: dict[str, Any] | None) -> float | None:
    """p99_ms() is a figures() result's P99 in ms (None when not measured or no preemption happened)."""
    if not fig or not fig.get("measured") or fig.get("p99_us") is None:
        return None
    return float(fig["p99_us"]) / 1000.0
