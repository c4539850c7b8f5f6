"""Figures of one request class in one phase of the serve scenario, named as vLLM's `bench serve` names them.

Definitions (vLLM's): TTFT = send -> first token; TPOT = (E2E - TTFT) / (output tokens - 1), per request with
more than one output token; ITL = every gap between two consecutive stream events that carried tokens, pooled
over the requests; E2E (`e2el`) = send -> last token. Latency statistics cover the completed requests only.
Throughputs count what happened inside the phase window (t0, t1]: tokens that arrived in it, prompts whose first
token arrived in it, requests that completed in it, so a closed-loop class cut at the window's end is counted
fairly. Goodput (vLLM's `request_goodput`) counts the completed requests that meet every per-request limit of
an SLO (ms, keys ttft/tpot/e2el) per second of the window. `server_tpot` is the server's own decode time per
token (`timings.predicted_ms` / (`predicted_n` - 1)) and `tpot_outside` the client's TPOT minus it, per request.

Pure functions over Completion records (no I/O).
"""
from __future__ import annotations

import math
from typing import Any
from collections.abc import Iterable, Sequence

from . import stats
from .client import Completion

SLO_KEYS = ("ttft", "tpot", "e2el")
BREAKDOWN = ("routed", "slot_wait", "prompt_queue", "prompt", "outside")


def completed(c: Completion) -> bool:
    """completed() says whether a request ran to its end: no error, not cut, at least one token."""
    return c.error is None and not c.cancelled and c.t_first is not None and c.t_end is not None and c.tokens > 0


def ttft_ms(c: Completion) -> float | None:
    """ttft_ms() is send -> first token in ms (None without a token)."""
    return None if c.t_first is None else (c.t_first - c.t_send) * 1e3


def tpot_ms(c: Completion) -> float | None:
    """tpot_ms() is the time per output token after the first, ms (None for one token or none)."""
    if c.t_first is None or c.t_end is None or c.tokens < 2:
        return None
    return (c.t_end - c.t_first) * 1e3 / (c.tokens - 1)


def server_tpot_ms(c: Completion) -> float | None:
    """server_tpot_ms() is the server's own decode time per output token after the first, ms: its
    `timings.predicted_ms` (first token sampled -> last token sampled, on the instance's loop) over
    `predicted_n` - 1, as its `predicted_per_token_ms`. None without the timings or with fewer than two tokens."""
    t = c.timings or {}
    n, ms = t.get("predicted_n"), t.get("predicted_ms")
    if not isinstance(n, (int, float)) or not isinstance(ms, (int, float)) or n < 2:
        return None
    return float(ms) / (float(n) - 1)


def tpot_outside_ms(c: Completion) -> float | None:
    """tpot_outside_ms() is the client's TPOT minus the server's: per token, the time the stream spent outside
    the instance's loop (the response queue, HTTP, the network, the client stamping the events)."""
    a, b = tpot_ms(c), server_tpot_ms(c)
    return None if a is None or b is None else a - b


def e2el_ms(c: Completion) -> float | None:
    """e2el_ms() is send -> last event in ms."""
    return None if c.t_end is None else (c.t_end - c.t_send) * 1e3


def latency_stats(name: str, values_ms: Iterable[float]) -> dict[str, float | None]:
    """latency_stats() are mean/median/std/p90/p99/max of values (ms) as `mean_{name}_ms`, ... (None when empty)."""
    vals = [float(v) for v in values_ms]
    mean = sum(vals) / len(vals) if vals else None
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)) if vals and mean is not None else None
    return {f"mean_{name}_ms": mean, f"median_{name}_ms": stats.percentile(vals, 50), f"std_{name}_ms": std,
            f"p90_{name}_ms": stats.percentile(vals, 90), f"p99_{name}_ms": stats.percentile(vals, 99),
            f"max_{name}_ms": max(vals) if vals else None}


def meets(c: Completion, slo: dict[str, float]) -> bool:
    """meets() says whether a completed request is within every per-request limit (ms) of slo."""
    if not completed(c):
        return False
    got = {"ttft": ttft_ms(c), "tpot": tpot_ms(c), "e2el": e2el_ms(c)}
    return all(got[k] is None or got[k] <= lim for k, lim in slo.items())  # type: ignore[operator]


def max_concurrency(reqs: Sequence[Completion]) -> int:
    """max_concurrency() is the largest number of the requests in flight at once (send -> end)."""
    ev = sorted([(c.t_send, 1) for c in reqs if c.t_end is not None] +
                [(c.t_end, -1) for c in reqs if c.t_end is not None], key=lambda e: (e[0], e[1]))
    cur = best = 0
    for _, d in ev:
        cur += d
        best = max(best, cur)
    return best


def breakdown(c: Completion) -> dict[str, float] | None:
    """breakdown() places a request's TTFT from the server's `xsched_timings` (ms since its HTTP handler got the
    request): routed (handler -> instance chosen), slot_wait (-> slot assigned), prompt_queue (-> prompt
    started), prompt (-> first token), outside (client TTFT minus the server's first-token time: the network,
    HTTP parsing before the handler and the event's way back). None when the server does not send them."""
    x = c.xsched_timings
    keys = ("routed_ms", "slot_ms", "prompt_start_ms", "first_token_ms")
    t = ttft_ms(c)
    if t is None or not x or not all(isinstance(x.get(k), (int, float)) for k in keys):
        return None
    r, s, p, f = (float(x[k]) for k in keys)
    return {"routed": r, "slot_wait": s - r, "prompt_queue": p - s, "prompt": f - p, "outside": t - f}


def ttft_split(c: Completion) -> tuple[float, float] | None:
    """ttft_split() is (wait, prompt) in ms: the server's `timings.prompt_ms` and the rest of the TTFT (waiting
    for a slot, HTTP, queueing outside prompt processing). None without the server's timings."""
    t = ttft_ms(c)
    pm = c.timings.get("prompt_ms") if c.timings else None
    if t is None or not isinstance(pm, (int, float)):
        return None
    return t - float(pm), float(pm)


def class_metrics(reqs: Sequence[Completion], t0: float, t1: float,
                  goodput: dict[str, dict[str, float]] | None = None, closed_loop: bool = False,
                  slowest: int = 5) -> dict[str, Any]:
    """class_metrics() are one class's figures in the window (t0, t1].

    goodput maps an output field (e.g. "request_goodput") to an SLO (key -> ms). For a closed-loop class the
    requests cut at the window's end are `in_flight_at_end`, not failures.
    """
    dur = max(t1 - t0, 0.0)
    done = [c for c in reqs if completed(c)]
    cut = [c for c in reqs if c.cancelled and c.error is None]
    failed = [c for c in reqs if c.error is not None or (c.cancelled and not closed_loop)]
    out_tok = sum(stats.tokens_in(c.token_times, t0, t1) for c in reqs)
    in_tok = sum(c.prompt_tokens for c in reqs if c.t_first is not None and t0 < c.t_first <= t1)
    in_window = [c for c in done if c.t_end is not None and t0 < c.t_end <= t1]
    m: dict[str, Any] = {
        "duration": dur, "completed": len(done), "failed": len(failed),
        "in_flight_at_end": len(cut) if closed_loop else 0,
        "total_input_tokens": in_tok, "total_output_tokens": out_tok,
        "request_throughput": len(in_window) / dur if dur > 0 else None,
        "output_throughput": out_tok / dur if dur > 0 else None,
        "total_token_throughput": (in_tok + out_tok) / dur if dur > 0 else None,
        "max_concurrent_requests": max_concurrency(reqs),
    }
    for name, slo in (goodput or {}).items():
        good = [c for c in in_window if meets(c, slo)]
        m[name] = len(good) / dur if dur > 0 else None
        m[name + "_fraction"] = len(good) / len(done) if done else None
        m[name + "_slo_ms"] = dict(slo)
    m.update(latency_stats("ttft", (v for c in done if (v := ttft_ms(c)) is not None)))
    m.update(latency_stats("tpot", (v for c in done if (v := tpot_ms(c)) is not None)))
    m.update(latency_stats("itl", (g * 1e3 for c in done for g in stats.intervals(c.token_times))))
    m.update(latency_stats("e2el", (v for c in done if (v := e2el_ms(c)) is not None)))
    m["itl_n"] = sum(len(stats.intervals(c.token_times)) for c in done)
    tp = [(st, out) for c in done if (st := server_tpot_ms(c)) is not None and (out := tpot_outside_ms(c)) is not None]
    m["server_tpot_n"] = len(tp)
    m.update(latency_stats("server_tpot", (st for st, _ in tp)))
    m.update(latency_stats("tpot_outside", (out for _, out in tp)))
    splits = [s for c in done if (s := ttft_split(c)) is not None]
    m["ttft_split_n"] = len(splits)
    m.update(latency_stats("ttft_wait", (w for w, _ in splits)))
    m.update(latency_stats("prompt", (p for _, p in splits)))
    parts = [(c, b) for c in done if (b := breakdown(c)) is not None]
    m["xsched_timings_n"] = len(parts)
    if parts:
        m["ttft_breakdown"] = {k: latency_stats(k, (b[k] for _, b in parts)) for k in BREAKDOWN}
    ranked = sorted(done, key=lambda c: ttft_ms(c) or 0.0, reverse=True)[:slowest]
    m["slowest_ttft"] = [{"t_send": c.t_send - t0, "ttft_ms": ttft_ms(c), "prompt_tokens": c.prompt_tokens,
                          "split_ms": ttft_split(c), "breakdown_ms": breakdown(c)} for c in ranked]
    ranked = sorted((c for c in done if tpot_ms(c) is not None), key=lambda c: tpot_ms(c) or 0.0,
                    reverse=True)[:slowest]
    m["slowest_tpot"] = [{"t_send": c.t_send - t0, "tpot_ms": tpot_ms(c), "server_tpot_ms": server_tpot_ms(c),
                          "tokens": c.tokens, "prompt_tokens": c.prompt_tokens,
                          "max_itl_ms": max(stats.intervals(c.token_times), default=0.0) * 1e3} for c in ranked]
    return m


def ratio(num: float | None, den: float | None) -> float | None:
    """ratio() is num/den when both are known and den > 0."""
    return num / den if num is not None and den is not None and den > 0 else None
