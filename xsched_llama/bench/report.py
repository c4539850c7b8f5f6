"""Targets, pass/fail, the JSON report and the terminal table.

The targets are those of docs/benchmarks.md (H100, synthetic Qwen3-8B Q8_0); the vanilla
reference figures there were measured with the pinned commit. On CPU the same rows are
printed, but the targets are the GPU's: only the direction of an effect means anything there.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from . import stats
from .client import Completion
from .scenarios import ScenarioResult

SCHEMA = 1


@dataclass(frozen=True)
class Target:
    """Target is one row of the target table: where the figure comes from and the bound it must meet."""

    id: str
    scenario: str
    measure: str
    metric: str                  # key in the scenario's metrics ("cross:" prefix: patched / vanilla)
    op: str                      # "<=", ">=" or "within"
    bound: tuple[float, ...]
    h100_vanilla: Optional[float] = None
    run: str = "patched"         # the run whose figure is judged

    @property
    def percent(self) -> bool:
        """percent: the figure is a fraction shown as a percentage (the WRR finish gap)."""
        return self.metric.endswith("gap")

    def text(self) -> str:
        """text() writes the bound for people: "≤ 1.05", "≤ 5%", "3.0 ± 0.3"."""
        if self.op == "within":
            lo, hi = self.bound
            return f"{(lo + hi) / 2:.1f} ± {(hi - lo) / 2:.1f}"
        val = f"{self.bound[0]:.0%}" if self.percent else f"{self.bound[0]:g}"
        return f"{'≤' if self.op == '<=' else '≥'} {val}"

    def check(self, value: Optional[float]) -> Optional[bool]:
        """check() says whether value meets the bound (None when there is no value)."""
        if value is None:
            return None
        if self.op == "<=":
            return value <= self.bound[0]
        if self.op == ">=":
            return value >= self.bound[0]
        return self.bound[0] <= value <= self.bound[1]


TARGETS = (
    Target("hpf-decode", "hpf-decode", "A with B decoding / A alone", "slowdown", "<=", (1.05,), 1.16),
    Target("hpf-prefill", "hpf-prefill", "A with B prefilling / A alone", "slowdown", "<=", (1.10,), 1.75),
    Target("harvest", "harvest", "B tok/s while A is idle / B alone", "harvest", ">=", (0.95,)),
    Target("wrr-1:1", "wrr", "WRR 1:1 finish-time gap / mean", "even_gap", "<=", (0.05,), run="patched-wrr"),
    Target("wrr-1:1-seed", "wrr", "WRR 1:1 gap (seed test_wrr.sh)", "even_gap", "<=", (0.30,), run="patched-wrr"),
    Target("wrr-3:1", "wrr", "WRR 3:1 tokens/s ratio A/B", "uneven_ratio", "within", (2.7, 3.3), run="patched-wrr"),
    Target("overhead-decode-high", "overhead", "decode tok/s, high instance / vanilla", "cross:decode_tps_high", ">=",
           (0.97,), 1.0),
    Target("overhead-decode-normal", "overhead", "decode tok/s, normal instance / vanilla", "cross:decode_tps_normal",
           ">=", (0.97,), 1.0),
    Target("overhead-prefill-high", "overhead", "prefill tok/s, high instance / vanilla", "cross:prefill_tps_high",
           ">=", (0.97,), 1.0),
    Target("overhead-prefill-normal", "overhead", "prefill tok/s, normal instance / vanilla",
           "cross:prefill_tps_normal", ">=", (0.97,), 1.0),
)


def metric(results: dict[str, dict[str, ScenarioResult]], run: str, scenario: str, key: str) -> Optional[float]:
    """metric() looks up results[run][scenario].metrics[key] (None when absent)."""
    res = results.get(run, {}).get(scenario)
    val = res.metrics.get(key) if res else None
    return float(val) if isinstance(val, (int, float)) and not isinstance(val, bool) else None


def evaluate(results: dict[str, dict[str, ScenarioResult]]) -> list[dict[str, Any]]:
    """evaluate() returns one row per target with a figure: vanilla, hw-priority-only, patched, pass."""
    rows = []
    for t in TARGETS:
        if not any(t.scenario in r for r in results.values()):
            continue
        if t.metric.startswith("cross:"):
            key = t.metric[len("cross:"):]
            van = metric(results, "vanilla", t.scenario, key)
            pat = metric(results, t.run, t.scenario, key)
            value = stats.ratio(pat, van) if pat is not None and van is not None else None
            vanilla_val, hw_val = (1.0 if van is not None else None), None
        else:
            value = metric(results, t.run, t.scenario, t.metric)
            vanilla_val = metric(results, "vanilla", t.scenario, t.metric)
            hw_val = metric(results, "patched-hwprio", t.scenario, t.metric)
        rows.append({"id": t.id, "scenario": t.scenario, "measure": t.measure, "percent": t.percent,
                     "vanilla": vanilla_val,
                     "hw_priority_only": hw_val, "patched": value, "target": t.text(),
                     "hw_priority_only_pass": t.check(hw_val), "pass": t.check(value),
                     "h100_vanilla_reference": t.h100_vanilla})
    return rows


def phase_json(ph: Any, origin: float) -> dict[str, Any]:
    """phase_json() is one phase as plain data (requests with their token times)."""
    reqs: list[Completion] = ph.requests
    a = [c for c in reqs if c.task == "A" and c.t_end is not None]
    return {"name": ph.name, "t0": round(ph.t0 - origin, 6), "t1": round(ph.t1 - origin, 6),
            "a_latency_median_s": stats.median(c.latency for c in a) if a else None,
            "requests": [c.to_json(origin) for c in reqs]}


def scenario_json(res: ScenarioResult, origin: float) -> dict[str, Any]:
    """scenario_json() is one scenario's phases and metrics as plain data."""
    return {"name": res.name, "metrics": res.metrics, "phases": [phase_json(p, origin) for p in res.phases]}


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """write_json() writes doc atomically (a temporary file renamed into place)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def _fmt(v: Optional[float], pct: bool) -> str:
    if v is None:
        return "-"
    return f"{v:.1%}" if pct else f"{v:.3f}"


def table(rows: list[dict[str, Any]]) -> str:
    """table() renders the target rows as a fixed-width text table."""
    head = ("measure", "vanilla", "hw-prio only", "patched", "target", "result")
    lines = [head]
    for r in rows:
        pct = bool(r.get("percent"))
        res = {True: "pass", False: "FAIL", None: "-"}[r["pass"]]
        lines.append((r["measure"], _fmt(r["vanilla"], pct), _fmt(r["hw_priority_only"], pct),
                      _fmt(r["patched"], pct), r["target"], res))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def latency_table(results: dict[str, dict[str, ScenarioResult]]) -> str:
    """latency_table() lists the median A latency of every phase, per run."""
    lines = []
    for run, scen in results.items():
        for name, res in scen.items():
            for ph in res.phases:
                a = [c for c in ph.requests if c.task == "A" and c.t_end is not None]
                if a:
                    lat = stats.median(c.latency for c in a)
                    tps = stats.median(c.tokens_per_s for c in a)
                    lines.append(f"{run:<15} {name:<12} {ph.name:<32} A {lat:7.3f} s  {tps:8.1f} tok/s")
    return "\n".join(lines)
