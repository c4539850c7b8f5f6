"""The serve scenario's pure parts: percentiles, vLLM-style class figures, arrivals, the preemption histogram."""
from __future__ import annotations

import math
import random

import numpy
import pytest

from xsched_llama.bench import preempt, stats
from xsched_llama.bench.client import Completion
from xsched_llama.bench.openloop import draw_lengths, poisson_offsets
from xsched_llama.bench.servemetrics import breakdown, class_metrics, max_concurrency, ttft_split

LE = [50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 5000, 20000]


def req(t_send: float, ttft: float, gaps: list[float], task: str = "interactive", prompt: int = 100,
        **kw: object) -> Completion:
    """req() is a completed request: first token ttft s after t_send, then one token after each gap."""
    times = [t_send + ttft]
    for g in gaps:
        times.append(times[-1] + g)
    c = Completion(task=task, priority=10, n_predict=len(times), prompt_tokens=prompt, t_send=t_send,
                   t_first=times[0], t_end=times[-1], tokens=len(times), token_times=times)
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def test_percentile_matches_numpy() -> None:
    rng = random.Random(3)
    vals = [rng.expovariate(1.0) for _ in range(501)]
    for p in (0, 1, 50, 90, 99, 100):
        assert stats.percentile(vals, p) == pytest.approx(float(numpy.percentile(vals, p)))
    assert stats.percentile([], 50) is None
    assert stats.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


def test_intervals_skip_tokens_of_one_event() -> None:
    # tokens 2 and 3 came in one event (same arrival time): one ITL sample for that event, not a zero
    assert stats.intervals([1.0, 1.5, 1.5, 2.5]) == [0.5, 1.0]
    assert stats.intervals([1.0]) == []


def test_quantile_ci_from_order_statistics() -> None:
    vals = list(range(1, 201))
    assert stats.quantile_ci(vals, 0.5) == (86, 115)
    lo, hi = stats.quantile_ci(vals, 0.99)
    assert lo == 195 and hi is None            # 200 samples cannot bound a P99 from above
    lo, hi = stats.quantile_ci(list(range(1, 1001)), 0.99)
    assert lo is not None and hi is not None and lo < 990 < hi <= 1000
    assert stats.quantile_ci([], 0.5) == (None, None)


def test_class_metrics_vllm_definitions() -> None:
    a = req(0.0, 0.100, [0.010] * 9)                 # TTFT 100 ms, TPOT 10 ms, E2E 190 ms
    b = req(1.0, 0.300, [0.020] * 4)                 # TTFT 300 ms, TPOT 20 ms, E2E 380 ms
    failed = Completion(task="interactive", priority=10, n_predict=8, prompt_tokens=0, t_send=1.2, t_end=1.25,
                        error="HTTP 500")
    m = class_metrics([a, b, failed], 0.0, 2.0, goodput={"request_goodput": {"ttft": 200.0, "tpot": 30.0}})
    assert m["completed"] == 2 and m["failed"] == 1
    assert m["mean_ttft_ms"] == pytest.approx(200.0) and m["median_ttft_ms"] == pytest.approx(200.0)
    assert m["max_ttft_ms"] == pytest.approx(300.0)
    assert m["p99_ttft_ms"] == pytest.approx(100 + 0.99 * 200)
    assert m["mean_tpot_ms"] == pytest.approx(15.0)
    assert m["max_itl_ms"] == pytest.approx(20.0) and m["median_itl_ms"] == pytest.approx(10.0)  # 9 x 10, 4 x 20
    assert m["mean_e2el_ms"] == pytest.approx((190 + 380) / 2)
    assert m["total_output_tokens"] == 15 and m["total_input_tokens"] == 200
    assert m["output_throughput"] == pytest.approx(7.5) and m["request_throughput"] == pytest.approx(1.0)
    assert m["total_token_throughput"] == pytest.approx(107.5)
    assert m["request_goodput"] == pytest.approx(0.5) and m["request_goodput_fraction"] == pytest.approx(0.5)
    assert m["max_concurrent_requests"] == 2
    assert m["slowest_ttft"][0]["ttft_ms"] == pytest.approx(300.0)
    assert m["ttft_split_n"] == 0 and m["xsched_timings_n"] == 0 and "ttft_breakdown" not in m


def test_closed_loop_class_counts_only_the_window() -> None:
    # a batch request cut at the window's end: its tokens inside (0, 1] count, it is no failure
    cut = req(-0.5, 0.6, [0.1] * 9, task="batch")   # tokens at 0.1 .. 1.0 .. 1.0 (last at 1.0)
    cut.cancelled = True
    before = req(-3.0, 0.5, [0.1] * 4, task="batch")  # finished before the window
    m = class_metrics([cut, before], 0.0, 0.55, closed_loop=True)
    assert m["failed"] == 0 and m["in_flight_at_end"] == 1 and m["completed"] == 1
    assert m["total_output_tokens"] == 5              # 0.1, 0.2, 0.3, 0.4, 0.5
    assert m["output_throughput"] == pytest.approx(5 / 0.55)
    assert m["request_throughput"] == 0.0


def test_ttft_split_and_server_breakdown() -> None:
    c = req(0.0, 0.250, [0.01], timings={"prompt_ms": 40.0},
            xsched_timings={"routed_ms": 0.5, "slot_ms": 180.0, "prompt_start_ms": 200.0, "first_token_ms": 245.0})
    assert ttft_split(c) == pytest.approx((210.0, 40.0))
    b = breakdown(c)
    assert b is not None
    assert b == pytest.approx({"routed": 0.5, "slot_wait": 179.5, "prompt_queue": 20.0, "prompt": 45.0,
                               "outside": 5.0})
    old = req(0.0, 0.250, [0.01], timings={"prompt_ms": 40.0})     # vanilla or an older patched server
    assert breakdown(old) is None
    m = class_metrics([c, old], 0.0, 1.0)
    assert m["ttft_split_n"] == 2 and m["xsched_timings_n"] == 1
    assert m["ttft_breakdown"]["slot_wait"]["max_slot_wait_ms"] == pytest.approx(179.5)
    assert m["p99_ttft_wait_ms"] == pytest.approx(210.0)


def test_max_concurrency() -> None:
    reqs = [req(0.0, 0.1, [0.9]), req(0.5, 0.1, [0.1]), req(2.0, 0.1, [0.1])]
    assert max_concurrency(reqs) == 2
    assert max_concurrency([]) == 0


def test_poisson_arrivals_and_lengths_are_seeded() -> None:
    a = poisson_offsets(5.0, 20000, seed=1)
    assert a == poisson_offsets(5.0, 20000, seed=1) and a != poisson_offsets(5.0, 20000, seed=2)
    assert all(x < y for x, y in zip(a, a[1:]))
    assert a[-1] / len(a) == pytest.approx(0.2, rel=0.03)        # mean gap 1/rate
    gaps = [y - x for x, y in zip(a, a[1:])]
    assert sum(g > 0.2 for g in gaps) / len(gaps) == pytest.approx(math.exp(-1), abs=0.02)  # exponential gaps
    lens = draw_lengths((64, 512), 1000, seed=0)
    assert min(lens) >= 64 and max(lens) <= 512 and len(set(lens)) > 300
    with pytest.raises(ValueError):
        draw_lengths((10, 5), 3, seed=0)
    with pytest.raises(ValueError):
        poisson_offsets(0.0, 3, seed=0)


def test_bucket_quantile() -> None:
    counts = [0] * 12
    assert preempt.bucket_quantile(LE, counts, 0.99) is None
    counts[0] = 98                                # 98 preemptions <= 50 us
    counts[6] = 2                                 # 2 in (750, 1000]
    assert preempt.bucket_quantile(LE, counts, 0.50) == 50
    assert preempt.bucket_quantile(LE, counts, 0.98) == 50      # the 98th smallest is still <= 50
    assert preempt.bucket_quantile(LE, counts, 0.99) == 1000    # the 99th is in (750, 1000]
    assert preempt.bucket_quantile(LE, counts, 0.99, max_value=820.0) == 820.0  # the max bounds it tighter
    over = [0] * 11 + [5]                          # all beyond the last bound
    assert preempt.bucket_quantile(LE, over, 0.5) == math.inf
    assert preempt.bucket_quantile(LE, over, 0.5, max_value=31000.0) == 31000.0
    with pytest.raises(ValueError):
        preempt.bucket_quantile(LE, [1] * 11, 0.5)
    with pytest.raises(ValueError):
        preempt.bucket_quantile(LE, counts, 0.0)


def snapshot(low_buckets: list[int], count: int, max_us: float, with_hist: bool = True) -> dict[str, object]:
    def row(name: str, prio: int, buckets: list[int], cnt: int, mx: float) -> dict[str, object]:
        r: dict[str, object] = {"name": name, "priority": prio, "state": "ready"}
        if with_hist:
            r["preemption"] = {"count": cnt, "measured": sum(buckets), "sum_us": 100.0 * sum(buckets), "max_us": mx,
                               "buckets_le_us": LE, "buckets": buckets}
        return r
    return {"policy": "HPF",
            "queues": [row("inst0/cpu", 10, [0] * 12, 0, 0.0), row("inst1/cpu", 0, low_buckets, count, max_us),
                       row("inst10/cuda0", 0, [0] * 12, 0, 0.0)],
            "instances": [{"id": 0, "name": "inst0", "priority": 10}, {"id": 1, "name": "inst1", "priority": 0}]}


def test_preemption_figures_between_snapshots() -> None:
    before = snapshot([5] + [0] * 11, 6, 40.0)
    after = snapshot([105, 0, 0, 0, 0, 0, 3] + [0] * 5, 110, 900.0)
    f = preempt.figures(before, after)
    assert f["measured"] and f["queues"] == ["inst1/cpu"]      # inst10 is another instance, not inst1
    assert f["count"] == 104 and f["measured_count"] == 103
    assert f["p50_us"] == 50 and f["p99_us"] == 900.0            # (750, 1000], capped by the new max
    assert f["max_us"] == 900.0 and f["max_exact"]
    assert preempt.p99_ms(f) == pytest.approx(0.9)
    assert f["per_queue"] == {"inst1/cpu": {"count": 104, "measured_count": 103,
                                            "buckets": [100, 0, 0, 0, 0, 0, 3] + [0] * 5}}
    # the running maximum did not grow: the interval's max is bounded by its highest bucket
    later = snapshot([106, 0, 0, 1, 0, 0, 3] + [0] * 5, 112, 900.0)
    g = preempt.figures(after, later)
    assert g["count"] == 2 and g["max_us"] == 300 and not g["max_exact"]
    none = preempt.figures(after, after)
    assert none["count"] == 0 and none["p99_us"] is None and preempt.p99_ms(none) is None


def test_preemption_figures_split_host_launch_time() -> None:
    """Preemptions that began while a unit was being launched: how many, and the host time until its launch was
    complete (mean over the interval, and the running maximum when it grew in the interval)."""
    def with_launch(snap: dict[str, object], units: int, lsum: float, lmax: float) -> dict[str, object]:
        for q in snap["queues"]:  # type: ignore[union-attr]
            if q["name"] == "inst1/cpu":
                q["preemption"].update(open_units=units, launch_sum_us=lsum, launch_max_us=lmax)
        return snap
    before = with_launch(snapshot([5] + [0] * 11, 6, 40.0), 1, 30.0, 30.0)
    after = with_launch(snapshot([105, 0, 0, 0, 0, 0, 3] + [0] * 5, 110, 900.0), 4, 2130.0, 1500.0)
    f = preempt.figures(before, after)
    assert f["open_units"] == 3 and f["launch_mean_us"] == pytest.approx(700.0) and f["launch_max_us"] == 1500.0
    same_max = with_launch(snapshot([106, 0, 0, 0, 0, 0, 3] + [0] * 5, 111, 900.0), 5, 2140.0, 1500.0)
    g = preempt.figures(after, same_max)
    assert g["open_units"] == 1 and g["launch_mean_us"] == pytest.approx(10.0) and g["launch_max_us"] is None
    older = preempt.figures(snapshot([5] + [0] * 11, 6, 40.0), snapshot([6] + [0] * 11, 7, 40.0))
    assert older["open_units"] == 0 and older["launch_mean_us"] is None and older["launch_max_us"] is None


def test_preemption_not_measured_on_older_servers() -> None:
    old = snapshot([0] * 12, 0, 0.0, with_hist=False)
    f = preempt.figures(old, old)
    assert f == {"measured": False, "status": "not measured", "queues": ["inst1/cpu"]}
    assert preempt.p99_ms(f) is None
    assert preempt.figures(None, {"available": False, "queues": []})["measured"] is False


def test_preemption_histogram_that_shrinks_is_refused() -> None:
    with pytest.raises(ValueError, match="shrank"):
        preempt.figures(snapshot([9] + [0] * 11, 9, 40.0), snapshot([1] + [0] * 11, 1, 40.0))
