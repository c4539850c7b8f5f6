"""The serve scenario's comparison table: every headline figure next to the same figure of every configuration.

Built from the report's runs (plain JSON), so it can be recomputed from a saved report.json. Headline figures
are those of the first interactive rate (the median over repeats where a spread exists).
"""
from __future__ import annotations

from typing import Any
from collections.abc import Callable

Value = float | int | bool | str | None


def _first_obj(m: dict[str, Any], *path: str | int) -> Any:
    """_first_obj() follows a path into points[0].repeats[0] (None where it is missing)."""
    cur: Any = m
    for key in ("points", 0, "repeats", 0, *path):
        try:
            cur = cur[key]
        except (KeyError, IndexError, TypeError):
            return None
    return cur


def _first(m: dict[str, Any], *path: str | int) -> Value:
    """_first() is the scalar at a path into points[0].repeats[0] (None where it is missing)."""
    cur = _first_obj(m, *path)
    return cur if isinstance(cur, (int, float, bool, str)) else None


def _batch_alone(m: dict[str, Any]) -> Value:
    try:
        return float(m["batch_alone"][0]["batch"]["output_throughput"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _pcts(m: dict[str, Any], phase: str, name: str) -> Value:
    """_pcts() is "P50 / P90 / P99" (ms) of one latency of the first point's phase, as text."""
    vals = [_first(m, phase, f"{p}_{name}_ms") for p in ("median", "p90", "p99")]
    if all(v is None for v in vals):
        return None
    return " / ".join("-" if not isinstance(v, (int, float)) else f"{v:.1f}" for v in vals)


def _itl_share(m: dict[str, Any]) -> Value:
    """_itl_share() is how the interactive gaps with batch divide among the batch states, as text."""
    cur: Any = _first_obj(m, "interactive_mixed", "itl_classes")
    if not isinstance(cur, dict) or not cur.get("sampled"):
        return "not sampled" if isinstance(cur, dict) else None
    parts = [f"{k} {v.get('share') or 0:.0%}" for k, v in (cur.get("by_batch") or {}).items()]
    return ", ".join(parts) or None


def _preemption(m: dict[str, Any], key: str) -> Value:
    p = m.get("preemption")
    if not isinstance(p, dict):
        return None
    if not p.get("measured"):
        return "not measured"
    v = p.get(key)
    return v / 1000.0 if key.endswith("_us") and isinstance(v, (int, float)) else v


ROWS: list[tuple[str, str, Callable[[dict[str, Any]], Value]]] = [
    ("rate", "interactive arrival rate (req/s)", lambda m: (m.get("rates") or [None])[0]),
    ("load", "interactive load (x one instance's capacity)", lambda m: m.get("load")),
    ("solo_p99_ttft_ms", "interactive P99 TTFT alone (ms)", lambda m: m.get("solo_p99_ttft_ms")),
    ("mixed_p99_ttft_ms", "interactive P99 TTFT with batch (ms)", lambda m: m.get("mixed_p99_ttft_ms")),
    ("p99_ttft_ratio", "interactive P99 TTFT with batch / alone", lambda m: m.get("p99_ttft_ratio")),
    ("median_ttft_ratio", "interactive median TTFT with batch / alone", lambda m: m.get("median_ttft_ratio")),
    ("solo_p99_tpot_ms", "interactive P99 TPOT alone (ms)", lambda m: m.get("solo_p99_tpot_ms")),
    ("mixed_p99_tpot_ms", "interactive P99 TPOT with batch (ms)", lambda m: m.get("mixed_p99_tpot_ms")),
    ("p99_tpot_ratio", "interactive P99 TPOT with batch / alone", lambda m: m.get("p99_tpot_ratio")),
    ("p99_itl_ratio", "interactive P99 ITL with batch / alone", lambda m: m.get("p99_itl_ratio")),
    ("tpot_pcts_alone", "interactive TPOT P50 / P90 / P99 alone (ms)", lambda m: _pcts(m, "interactive_alone", "tpot")),
    ("tpot_pcts_mixed", "interactive TPOT P50 / P90 / P99 with batch (ms)",
     lambda m: _pcts(m, "interactive_mixed", "tpot")),
    ("server_tpot_pcts_alone", "interactive server decode ms/token (timings) P50 / P90 / P99 alone",
     lambda m: _pcts(m, "interactive_alone", "server_tpot")),
    ("server_tpot_pcts_mixed", "interactive server decode ms/token (timings) P50 / P90 / P99 with batch",
     lambda m: _pcts(m, "interactive_mixed", "server_tpot")),
    ("p99_server_tpot_ratio", "interactive P99 server decode ms/token with batch / alone",
     lambda m: m.get("p99_server_tpot_ratio")),
    ("tpot_outside_pcts_alone", "interactive TPOT outside the server (client - server) P50 / P90 / P99 alone (ms)",
     lambda m: _pcts(m, "interactive_alone", "tpot_outside")),
    ("tpot_outside_pcts_mixed", "interactive TPOT outside the server P50 / P90 / P99 with batch (ms)",
     lambda m: _pcts(m, "interactive_mixed", "tpot_outside")),
    ("solo_p99_itl_ms", "interactive P99 ITL alone (ms)", lambda m: m.get("solo_p99_itl_ms")),
    ("mixed_p99_itl_ms", "interactive P99 ITL with batch (ms)", lambda m: m.get("mixed_p99_itl_ms")),
    ("solo_p99_itl_no_prompt_ms", "  alone, no other prompt in the instance (ms)",
     lambda m: m.get("solo_p99_itl_no_prompt_ms")),
    ("solo_p99_itl_other_prompt_ms", "  alone, another interactive prompt processed (ms)",
     lambda m: m.get("solo_p99_itl_other_prompt_ms")),
    ("mixed_p99_itl_no_prompt_ms", "  with batch, no other prompt (ms)", lambda m: m.get("mixed_p99_itl_no_prompt_ms")),
    ("mixed_p99_itl_other_prompt_ms", "  with batch, another interactive prompt processed (ms)",
     lambda m: m.get("mixed_p99_itl_other_prompt_ms")),
    ("mixed_p99_itl_suspended_no_prompt_ms", "  with batch, batch suspended, no other prompt (ms)",
     lambda m: m.get("mixed_p99_itl_suspended_no_prompt_ms")),
    ("mixed_p99_itl_batch_suspended_ms", "  with batch, batch suspended (ms)",
     lambda m: m.get("mixed_p99_itl_batch_suspended_ms")),
    ("mixed_p99_itl_batch_running_ms", "  with batch, batch running (ms)", lambda m: m.get("mixed_p99_itl_batch_running_ms")),
    ("itl_batch_share", "interactive gaps with batch by batch state (/xsched timeline)", _itl_share),
    ("ttft_wait_p99_ms", "interactive P99 TTFT outside prompt processing, with batch (ms)",
     lambda m: _first(m, "interactive_mixed", "p99_ttft_wait_ms")),
    ("prompt_p99_ms", "interactive P99 prompt processing (server prompt_ms), with batch (ms)",
     lambda m: _first(m, "interactive_mixed", "p99_prompt_ms")),
    ("mixed_request_goodput", "interactive goodput with batch (req/s within the absolute SLO)",
     lambda m: m.get("mixed_request_goodput")),
    ("goodput_vs_solo_fraction", "interactive requests within the SLO relative to solo P99, with batch",
     lambda m: m.get("mixed_goodput_vs_solo_fraction")),
    ("slo_p99_met", "absolute SLO met at P99 with batch (MLPerf style)", lambda m: m.get("slo_p99_met")),
    ("failed", "interactive requests failed with batch", lambda m: _first(m, "interactive_mixed", "failed")),
    ("batch_alone_tps", "batch output tok/s alone", _batch_alone),
    ("batch_mixed_tps", "batch output tok/s with interactive", lambda m: _first(m, "batch_mixed", "output_throughput")),
    ("batch_kept", "batch tok/s with interactive / alone", lambda m: m.get("batch_kept")),
    ("batch_kept_outside", "batch tok/s outside interactive activity / alone", lambda m: m.get("batch_kept_outside")),
    ("outside_s", "time with no interactive request in flight (s)", lambda m: _first(m, "figures", "outside_s")),
    ("preemption_count", "preemptions of the batch instance", lambda m: _preemption(m, "count")),
    ("preemption_p99_ms", "preemption latency P99 (ms, bucket upper bound)", lambda m: _preemption(m, "p99_us")),
    ("preemption_max_ms", "preemption latency max (ms)", lambda m: _preemption(m, "max_us")),
    ("preemption_launch_max_ms", "of it, host time until a unit being launched was launched, max (ms)",
     lambda m: _preemption(m, "launch_max_us")),
]


def serve_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """serve_summary() is the configurations (name, command line, note) and the comparison table."""
    cfgs = [r for r in runs if "serve" in r.get("scenarios", {})]
    table = []
    for key, label, get in ROWS:
        vals: dict[str, Value] = {}
        for r in cfgs:
            m = r["scenarios"]["serve"].get("metrics") or {}
            try:
                vals[r["name"]] = get(m)
            except (KeyError, IndexError, TypeError):
                vals[r["name"]] = None
        table.append({"id": key, "figure": label, "values": vals})
    return {"configs": [{"name": r["name"], "command": r.get("command"), "note": r.get("note"),
                         "error": r["scenarios"]["serve"].get("error")} for r in cfgs],
            "table": table}


def _fmt(v: Value) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"


def serve_table(summary: dict[str, Any], short: Callable[[str], str] | None = None) -> str:
    """serve_table() renders serve_summary() as a fixed-width text table, one column per configuration."""
    names = [c["name"] for c in summary["configs"]]
    short = short or (lambda n: n.removeprefix("serve-"))
    lines = [["figure", *[short(n) for n in names]]]
    for row in summary["table"]:
        lines.append([row["figure"], *[_fmt(row["values"].get(n)) for n in names]])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))).rstrip()
           for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
