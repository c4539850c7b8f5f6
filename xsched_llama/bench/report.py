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
from typing import Any

from . import stats
from .client import Completion
from .scenarios import ScenarioResult
from .servemetrics import breakdown, server_tpot_ms

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
    h100_vanilla: float | None = None
    run: str = "patched"         # the run whose figure is judged
    vanilla_run: str | None = "vanilla"          # the run shown in the vanilla column (None: none)
    hw_run: str | None = "patched-hwprio"        # the run shown in the hw-priority-only column
    scope: str = "scenario"      # "run": metric is a run-level figure (preemption over the whole run)

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

    def check(self, value: float | None) -> bool | None:
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
    Target("hpf-prefill-itl", "hpf-prefill", "A's ITL P99 while B starts long prompts / A alone", "a_itl_p99_ratio",
           "<=", (1.10,)),
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
    Target("preemption-p99", "*", "preemption latency P99 (ms), low instance, closed-loop scenarios",
           "preemption_p99_ms", "<=", (1.0,), vanilla_run=None, hw_run=None, scope="run"),
    Target("serve-ttft-p99", "serve", "serve: interactive P99 TTFT with batch / solo P99", "p99_ttft_ratio", "<=",
           (1.10,), run="serve-hpf", vanilla_run="serve-vanilla", hw_run="serve-hwprio"),
    Target("serve-tpot-p99", "serve", "serve: interactive P99 TPOT with batch / solo P99", "p99_tpot_ratio", "<=",
           (1.05,), run="serve-hpf", vanilla_run="serve-vanilla", hw_run="serve-hwprio"),
    Target("serve-batch-outside", "serve", "serve: batch tok/s outside interactive activity / batch alone",
           "batch_kept_outside", ">=", (0.90,), run="serve-hpf", vanilla_run="serve-vanilla", hw_run="serve-hwprio"),
    Target("serve-mlperf-ttft", "serve", "serve: interactive P99 TTFT with batch (ms), MLPerf limit",
           "mixed_p99_ttft_ms", "<=", (500.0,), run="serve-hpf", vanilla_run="serve-vanilla", hw_run="serve-hwprio"),
    Target("serve-mlperf-tpot", "serve", "serve: interactive P99 TPOT with batch (ms), MLPerf limit",
           "mixed_p99_tpot_ms", "<=", (30.0,), run="serve-hpf", vanilla_run="serve-vanilla", hw_run="serve-hwprio"),
    Target("serve-preemption-p99", "*", "serve: preemption latency P99 (ms), batch instance", "preemption_p99_ms",
           "<=", (1.0,), run="serve-hpf", vanilla_run=None, hw_run="serve-hwprio", scope="run"),
)


def metric(results: dict[str, dict[str, ScenarioResult]], run: str | None, scenario: str,
           key: str) -> float | None:
    """metric() looks up results[run][scenario].metrics[key] (None when absent)."""
    res = results.get(run or "", {}).get(scenario)
    val = res.metrics.get(key) if res else None
    return float(val) if isinstance(val, (int, float)) and not isinstance(val, bool) else None


def evaluate(results: dict[str, dict[str, ScenarioResult]],
             figures: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """evaluate() returns one row per target with a figure: vanilla, hw-priority-only, patched, pass.

    figures holds run-level figures (run -> key -> value, e.g. the preemption P99 over the whole run); a
    run-level target whose run reports no preemption histogram gets the note "not measured".
    """
    figures = figures or {}
    rows = []
    for t in TARGETS:
        note = None
        if t.scope == "run":
            if t.run not in figures:
                continue
            value = _fig(figures, t.run, t.metric)
            vanilla_val = _fig(figures, t.vanilla_run, t.metric)
            hw_val = _fig(figures, t.hw_run, t.metric)
            if not figures[t.run].get("preemption_measured", True):
                note = "not measured"
        elif t.metric.startswith("cross:"):
            if not any(t.scenario in r for r in results.values()):
                continue
            key = t.metric[len("cross:"):]
            van = metric(results, "vanilla", t.scenario, key)
            pat = metric(results, t.run, t.scenario, key)
            value = stats.ratio(pat, van) if pat is not None and van is not None else None
            vanilla_val, hw_val = (1.0 if van is not None else None), None
        else:
            if not any(t.scenario in results.get(r or "", {}) for r in (t.run, t.vanilla_run, t.hw_run)):
                continue
            value = metric(results, t.run, t.scenario, t.metric)
            vanilla_val = metric(results, t.vanilla_run, t.scenario, t.metric) if t.vanilla_run else None
            hw_val = metric(results, t.hw_run, t.scenario, t.metric) if t.hw_run else None
        rows.append({"id": t.id, "scenario": t.scenario, "measure": t.measure, "percent": t.percent,
                     "vanilla": vanilla_val,
                     "hw_priority_only": hw_val, "patched": value, "target": t.text(),
                     "hw_priority_only_pass": t.check(hw_val), "pass": t.check(value),
                     "h100_vanilla_reference": t.h100_vanilla, "runs": [t.vanilla_run, t.hw_run, t.run],
                     **({"note": note} if note else {})})
    return rows


def _fig(figures: dict[str, dict[str, Any]], run: str | None, key: str) -> float | None:
    val = figures.get(run or "", {}).get(key)
    return float(val) if isinstance(val, (int, float)) and not isinstance(val, bool) else None


def phase_json(ph: Any, origin: float) -> dict[str, Any]:
    """phase_json() is one phase as plain data (requests with their token times)."""
    reqs: list[Completion] = ph.requests
    a = [c for c in reqs if c.task == "A" and c.t_end is not None]
    out = {"name": ph.name, "t0": round(ph.t0 - origin, 6), "t1": round(ph.t1 - origin, 6),
           "a_latency_median_s": stats.median(c.latency for c in a) if a else None,
           "requests": [_request_json(c, origin) for c in reqs]}
    timeline = getattr(ph, "timeline", None)
    if timeline is not None:
        out["xsched_timeline"] = timeline.to_json(origin)
    return out


def _request_json(c: Completion, origin: float) -> dict[str, Any]:
    """_request_json() is one request as plain data, with its TTFT breakdown when the server sent xsched_timings."""
    d = c.to_json(origin)
    st = server_tpot_ms(c)
    if st is not None:
        d["server_tpot_ms"] = round(st, 4)
    b = breakdown(c)
    if b is not None:
        d["ttft_breakdown_ms"] = {k: round(v, 3) for k, v in b.items()}
    return d


def scenario_json(res: ScenarioResult, origin: float) -> dict[str, Any]:
    """scenario_json() is one scenario's phases and metrics as plain data."""
    return {"name": res.name, "metrics": res.metrics, "phases": [phase_json(p, origin) for p in res.phases]}


def write_json(path: Path, doc: dict[str, Any], indent: int | None = 1) -> None:
    """write_json() writes doc atomically (a temporary file renamed into place)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=indent) + "\n")
    os.replace(tmp, path)


TIMELINE_FILE = "xsched-timeline-{run}.json"


def write_report(out: Path, doc: dict[str, Any]) -> None:
    """write_report() writes out/report.json; the GET /xsched timelines of the phases (thousands of samples each)
    go to one compact side file per run, `xsched-timeline-RUN.json` ({"run", "timelines": [{"scenario", "phase",
    "t", "batch", "queues", ...}]}), and the phase keeps a pointer: {"file", "index", "samples", "batch_queues",
    "cost"}. doc itself is left as it is (the plot reads the timelines from it)."""
    runs = []
    for run in doc.get("runs", []):
        fname = TIMELINE_FILE.format(run=run.get("name", "run"))
        timelines: list[dict[str, Any]] = []
        scens: dict[str, Any] = {}
        for sname, scen in (run.get("scenarios") or {}).items():
            phases = []
            for ph in scen.get("phases") or []:
                tl = ph.get("xsched_timeline")
                if isinstance(tl, dict) and "t" in tl:
                    ph = {**ph, "xsched_timeline": {"file": fname, "index": len(timelines), "samples": len(tl["t"]),
                                                    "batch_queues": tl.get("batch_queues"), "cost": tl.get("cost")}}
                    timelines.append({"scenario": sname, "phase": ph["name"], **tl})
                phases.append(ph)
            scens[sname] = {**scen, "phases": phases}
        if timelines:
            write_json(out / fname, {"run": run.get("name"), "timelines": timelines}, indent=None)
        runs.append({**run, "scenarios": scens})
    write_json(out / "report.json", {**doc, "runs": runs})


def load_timeline(report_dir: Path, pointer: dict[str, Any]) -> dict[str, Any]:
    """load_timeline() is the timeline a phase's `xsched_timeline` pointer names (write_report())."""
    doc = json.loads((report_dir / str(pointer["file"])).read_text())
    return dict(doc["timelines"][int(pointer["index"])])


def _fmt(v: float | None, pct: bool) -> str:
    if v is None:
        return "-"
    return f"{v:.1%}" if pct else f"{v:.3f}"


def table(rows: list[dict[str, Any]]) -> str:
    """table() renders the target rows as a fixed-width text table."""
    head = ("measure", "vanilla", "hw-prio only", "patched", "target", "result")
    lines = [head]
    for r in rows:
        pct = bool(r.get("percent"))
        res = r.get("note") or {True: "pass", False: "FAIL", None: "-"}[r["pass"]]
        lines.append((r["measure"], _fmt(r["vanilla"], pct), _fmt(r["hw_priority_only"], pct),
                      _fmt(r["patched"], pct), r["target"], res))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
