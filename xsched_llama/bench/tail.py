"""Placing the interactive TPOT/ITL tail: every inter-token gap of the interactive class, classified.

Each gap (a, b) between two consecutive stream events of an interactive request (client clock) gets two labels:

- **batch**: what the batch instance was doing, from the `GET /xsched` timeline (sampler.py) around the gap: the
  samples from the last one at or before a to the first one at or after b. `running`, `suspended` or `idle`
  when every one of them says so (and, for `suspended` and `idle`, the batch instance launched no unit between
  the first and the last of them); `mixed` when they differ (the state changed around the gap, or the batch
  launched while it looked suspended); `unknown` when the gap lies outside the timeline; `not_sampled` without a
  timeline (vanilla, or sampling off).
- **prompt**: `other_prompt` when another interactive request's prompt was processed during the gap (the
  interactive instance batches a new prompt with the other slots' decode steps, so that step is longer, alone as
  well as with batch), else `no_prompt`. A prompt's window on the client clock is (first token - `prompt_ms`,
  first token), from the server's `timings` of that request (requests without timings have no window).

Pure functions (no I/O); the timeline is passed as columns.
"""
from __future__ import annotations

import bisect
from typing import Any
from collections.abc import Sequence

from . import stats
from .client import Completion
from .sampler import IDLE, RUNNING, SUSPENDED
from .servemetrics import completed, server_tpot_ms, tpot_ms

MIXED, UNKNOWN, NOT_SAMPLED = "mixed", "unknown", "not_sampled"
BATCH_CLASSES = (RUNNING, SUSPENDED, IDLE, MIXED, UNKNOWN, NOT_SAMPLED)
OTHER_PROMPT, NO_PROMPT = "other_prompt", "no_prompt"


class Timeline:
    """Timeline is the batch instance's state over time: sample times (ascending), states, units launched."""

    def __init__(self, t: Sequence[float], states: Sequence[str], units: Sequence[int]) -> None:
        if not len(t) == len(states) == len(units):
            raise ValueError("timeline columns of different lengths")
        self.t, self.states, self.units = list(t), list(states), list(units)

    def state(self, a: float, b: float) -> str:
        """state() is the batch label of the interval (a, b) (module docstring)."""
        i0 = bisect.bisect_right(self.t, a) - 1
        i1 = bisect.bisect_left(self.t, b)
        if i0 < 0 or i1 >= len(self.t):
            return UNKNOWN
        seen = set(self.states[i0:i1 + 1])
        if len(seen) != 1:
            return MIXED
        s = seen.pop()
        if s in (SUSPENDED, IDLE) and self.units[i1] > self.units[i0]:
            return MIXED
        return s


def gaps(c: Completion) -> list[tuple[float, float]]:
    """gaps() are a request's inter-token gaps as (start, end) times (consecutive distinct event times)."""
    return [(a, b) for a, b in zip(c.token_times, c.token_times[1:]) if b > a]


def prompt_window(c: Completion) -> tuple[float, float] | None:
    """prompt_window() is (start, end) of a request's prompt processing on the client clock, from its first
    token and the server's `timings.prompt_ms`; None without them."""
    pm = c.timings.get("prompt_ms") if c.timings else None
    if c.t_first is None or not isinstance(pm, (int, float)):
        return None
    return c.t_first - float(pm) / 1e3, c.t_first


def classify(reqs: Sequence[Completion], timeline: Timeline | None) -> list[tuple[int, float, float, str, str]]:
    """classify() labels every gap of the completed requests: (request index, start, end, batch, prompt)."""
    windows = [(i, w) for i, c in enumerate(reqs) if (w := prompt_window(c)) is not None]
    starts = sorted((w[0], w[1], i) for i, w in windows)
    longest = max((w[1] - w[0] for _, w in windows), default=0.0)
    out = []
    for i, c in enumerate(reqs):
        if not completed(c):
            continue
        for a, b in gaps(c):
            # prompts that started before b and ended after a (only those starting after a - longest can)
            k = bisect.bisect_left(starts, (a - longest,))
            other = False
            while k < len(starts) and starts[k][0] < b:
                s, e, j = starts[k]
                if j != i and e > a:
                    other = True
                    break
                k += 1
            batch = timeline.state(a, b) if timeline is not None else NOT_SAMPLED
            out.append((i, a, b, batch, OTHER_PROMPT if other else NO_PROMPT))
    return out


def _stats(vals_ms: list[float], total: int) -> dict[str, Any]:
    return {"n": len(vals_ms), "share": len(vals_ms) / total if total else None,
            "median_ms": stats.percentile(vals_ms, 50), "p90_ms": stats.percentile(vals_ms, 90),
            "p99_ms": stats.percentile(vals_ms, 99), "max_ms": max(vals_ms, default=None)}


def itl_classes(reqs: Sequence[Completion], timeline: Timeline | None, t0: float = 0.0,
                slowest: int = 10) -> dict[str, Any]:
    """itl_classes() are the ITL statistics per class (batch x prompt, and each label alone), the slowest gaps
    with their labels, and for the requests of the slowest TPOT how their gaps divide among the labels."""
    lab = classify(reqs, timeline)
    total = len(lab)
    groups: dict[str, list[float]] = {}
    by_batch: dict[str, list[float]] = {}
    by_prompt: dict[str, list[float]] = {}
    for _, a, b, bc, pc in lab:
        v = (b - a) * 1e3
        groups.setdefault(f"{bc}/{pc}", []).append(v)
        by_batch.setdefault(bc, []).append(v)
        by_prompt.setdefault(pc, []).append(v)
    top = sorted(lab, key=lambda x: x[2] - x[1], reverse=True)[:slowest]
    per_req: dict[int, dict[str, int]] = {}
    for i, _, _, bc, pc in lab:
        d = per_req.setdefault(i, {})
        d[bc] = d.get(bc, 0) + 1
        d[pc] = d.get(pc, 0) + 1
    ranked = sorted((i for i in per_req if tpot_ms(reqs[i]) is not None), key=lambda i: tpot_ms(reqs[i]) or 0.0,
                    reverse=True)[:5]
    return {
        "n": total, "sampled": timeline is not None,
        "classes": {k: _stats(v, total) for k, v in sorted(groups.items())},
        "by_batch": {k: _stats(v, total) for k, v in sorted(by_batch.items())},
        "by_prompt": {k: _stats(v, total) for k, v in sorted(by_prompt.items())},
        "slowest_itl": [{"request": i, "t": round(a - t0, 6), "itl_ms": (b - a) * 1e3, "batch": bc, "prompt": pc}
                        for i, a, b, bc, pc in top],
        "slowest_tpot": [{"request": i, "t_send": round(reqs[i].t_send - t0, 6), "tpot_ms": tpot_ms(reqs[i]),
                          "server_tpot_ms": server_tpot_ms(reqs[i]), "gaps": per_req[i]} for i in ranked],
    }


def p99(classes: dict[str, Any], group: str, key: str) -> float | None:
    """p99() is the P99 ITL (ms) of one class of itl_classes() (group "classes", "by_batch" or "by_prompt")."""
    v = (classes.get(group) or {}).get(key) or {}
    return v.get("p99_ms")
