"""The benchmark's statistics (xsched_llama.bench.stats): real computations on token timelines."""
from __future__ import annotations

import math

import pytest

from xsched_llama.bench import stats


def stream(rate: float, n: int, start: float = 0.0) -> list[float]:
    """stream() is the arrival times of n tokens generated at `rate` tokens/s from `start`."""
    return [start + (i + 1) / rate for i in range(n)]


def test_median_and_ratio() -> None:
    assert stats.median([3.0, 1.0, 2.0]) == 2.0
    assert stats.median([1.0, 2.0, 3.0, 10.0]) == 2.5
    with pytest.raises(ValueError):
        stats.median([])
    assert stats.ratio(1.5, 1.0) == 1.5
    assert stats.ratio(1.0, 0.0) is None


def test_finish_gap() -> None:
    # both finish at 10 s: no gap; 9 s and 11 s: 2 s apart around a mean of 10 s = 20 %
    assert stats.finish_gap(100.0, [110.0, 110.0]) == 0.0
    assert stats.finish_gap(100.0, [109.0, 111.0]) == pytest.approx(0.2)
    assert stats.finish_gap(0.0, [11.0, 9.0]) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        stats.finish_gap(0.0, [1.0])
    with pytest.raises(ValueError):
        stats.finish_gap(5.0, [5.0, 5.0])


def test_rates_of_a_steady_stream() -> None:
    times = stream(50.0, 100)              # 100 tokens at 50 tok/s: 0.02 .. 2.0 s
    assert stats.tokens_in(times, 0.0, 1.0) == 50
    assert stats.rate(times, 0.0, 1.0) == pytest.approx(50.0)
    assert stats.rate(times, 1.0, 1.0) == 0.0
    assert stats.steady_rate(times) == pytest.approx(50.0)
    assert stats.steady_rate(times[:1]) is None
    assert stats.rate_in(times, [(0.0, 0.5), (1.0, 1.5)]) == pytest.approx(50.0)
    assert stats.rate_in(times, []) is None


def test_gaps_between_busy_intervals() -> None:
    busy = [(1.0, 2.0), (1.5, 3.0), (5.0, 6.0)]
    assert stats.gaps(busy, 0.0, 8.0) == [(0.0, 1.0), (3.0, 5.0), (6.0, 8.0)]
    assert stats.gaps(busy, 2.0, 8.0, margin=0.5) == [(3.5, 5.0), (6.5, 8.0)]
    assert stats.gaps([(0.0, 10.0)], 1.0, 5.0) == []
    assert stats.gaps([], 1.0, 5.0) == [(1.0, 5.0)]


def test_rate_while_the_other_task_is_idle() -> None:
    # B decodes at 100 tok/s but is stopped while A runs in (1, 2) and (3, 4): B's rate in A's gaps is 100
    b = [t for t in stream(100.0, 500) if not (1.0 < t <= 2.0 or 3.0 < t <= 4.0)]
    a_busy = [(1.0, 2.0), (3.0, 4.0)]
    idle = stats.gaps(a_busy, a_busy[0][1], 5.0)
    assert idle == [(2.0, 3.0), (4.0, 5.0)]
    assert stats.rate_in(b, idle) == pytest.approx(100.0)
    assert stats.rate_in(b, a_busy) == 0.0


def test_overlap_ratio_3_to_1() -> None:
    a = stream(30.0, 90)    # finishes at 3 s
    b = stream(10.0, 90)    # still running when A finishes
    assert stats.overlap_ratio(a, b, 0.0) == pytest.approx(3.0)
    assert stats.overlap_ratio(a, [], 0.0) is None


def test_series_conserves_tokens() -> None:
    times = stream(40.0, 200)    # 5 s
    pts = stats.series(times, 0.0, 5.0, bins=10)
    assert len(pts) == 10
    assert pts[0][0] == pytest.approx(0.25)
    assert sum(rate * 0.5 for _, rate in pts) == pytest.approx(200)
    assert all(rate == pytest.approx(40.0) for _, rate in pts)
    assert stats.series(times, 5.0, 5.0) == []


def test_series_active_rate_skips_pauses() -> None:
    # two requests at 40 tok/s, 0-2 s and 2.05-4 s: without `active` the bin with the 50 ms pause reads as a drop
    times = [t for t in stream(40.0, 80)] + [2.05 + t for t in stream(40.0, 78)]
    plain = stats.series(times, 0.0, 4.0, bins=40)
    assert min(rate for _, rate in plain) < 25.0
    active = [(0.0, 2.0), (2.05, 4.0)]
    pts = stats.series(times, 0.0, 4.0, bins=40, active=active)
    assert all(rate == pytest.approx(40.0, rel=0.15) for _, rate in pts)
    # a bin with no request in flight is a gap (NaN), not zero
    idle = stats.series([0.5], 0.0, 4.0, bins=4, active=[(0.0, 1.0)])
    assert idle[0][1] == pytest.approx(1.0) and all(math.isnan(r) for _, r in idle[1:])
