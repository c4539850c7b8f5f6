#!/usr/bin/env python3
"""serve-gaps.py: the interactive class's inter-token gaps per phase of a serve report (docs/results/*-run8).

For each phase of each configuration in REPORT (`xsched-llama bench --scenario serve` report.json, or
report.json.xz), over the
interactive requests' own token times: the gap P50 / P90 / P99, the share of gaps over 15 ms, the mean number of
other interactive requests in flight at a request's midpoint, and the median E2E. With --smi CSV (nvidia-smi
--query-gpu=timestamp,clocks.sm,...,power.draw,... --format=csv, as scripts/gpu/gpu-run8.sh writes it), also the SM
clock and power range over the samples after the first second. With --trace LOG (a server log with
GGML_XQUEUE_TRACE=1, or its `whole` lines, .xz or not) and --batch-from S, the decode steps launched whole (the
high instance's): GPU time and host period P10 / P50 / P90 before and after S seconds of the log's clock.

    scripts/gpu/serve-gaps.py results/st8/report.json --smi results/st8/smi.csv --trace results/st8/logs/serve-hpf.log \
        --batch-from 65
"""
from __future__ import annotations

import argparse
import csv
import json
import lzma
import re
import statistics
import sys
from typing import IO, Any


def pct(xs: list[float], q: float) -> float:
    """pct() is the q-quantile of sorted xs (nearest rank below)."""
    return xs[min(len(xs) - 1, int(len(xs) * q))]


def phase_row(requests: list[dict[str, Any]]) -> dict[str, float] | None:
    """phase_row() is the figures of one phase's interactive requests (None without any gap)."""
    inter = [r for r in requests if r.get("task") == "interactive"]
    gaps = sorted(b - a for r in inter for a, b in zip(r["token_times"], r["token_times"][1:]))
    if not gaps:
        return None
    others = [sum(1 for o in inter if o is not r and o["t_send"] <= (r["t_first"] + r["t_end"]) / 2 <= o["t_end"])
              for r in inter]
    return {"requests": len(inter), "p50_ms": pct(gaps, 0.5) * 1e3, "p90_ms": pct(gaps, 0.9) * 1e3,
            "p99_ms": pct(gaps, 0.99) * 1e3, "over_15ms": sum(g > 0.015 for g in gaps) / len(gaps),
            "others_in_flight": statistics.mean(others),
            "e2e_median_ms": statistics.median(r["t_end"] - r["t_send"] for r in inter) * 1e3}


def overlap_rows(requests: list[dict[str, Any]]) -> dict[int, tuple[int, float, float, float]]:
    """overlap_rows() is the gap P50/P90/P99 (ms) of one phase's interactive requests by how many other interactive
    requests were in flight at the gap's midpoint (3 = three or more), counting only the gaps during which no other
    request's prompt was processed (so that a gap is decode steps only): {others: (gaps, p50, p90, p99)}."""
    inter = [r for r in requests if r.get("task") == "interactive"]
    by: dict[int, list[float]] = {}
    for r in inter:
        for a, b in zip(r["token_times"], r["token_times"][1:]):
            mid = (a + b) / 2
            rest = [o for o in inter if o is not r]
            if any(o["t_send"] <= b and o["t_first"] >= a for o in rest):
                continue
            k = min(3, sum(1 for o in rest if o["t_send"] <= mid <= o["t_end"]))
            by.setdefault(k, []).append(b - a)
    return {k: (len(v), pct(sorted(v), 0.5) * 1e3, pct(sorted(v), 0.9) * 1e3, pct(sorted(v), 0.99) * 1e3)
            for k, v in sorted(by.items())}


def smi_range(path: str) -> dict[str, float]:
    """smi_range() is the SM clock (MHz) and power (W) range of an nvidia-smi CSV, the first second left out."""
    with open(path) as f:
        rows = list(csv.reader(f))[1:]
    rows = rows[5:]  # one sample every 200 ms: the first second is the server starting
    num = [[float(c.strip().split()[0]) for c in (r[1], r[3])] for r in rows if len(r) > 3]
    if not num:
        raise ValueError(f"{path}: no samples")
    return {"sm_mhz_min": min(n[0] for n in num), "sm_mhz_max": max(n[0] for n in num),
            "power_w_max": max(n[1] for n in num), "samples": len(num)}


def opened(path: str) -> IO[str]:
    """opened() opens path as text, through xz when it ends in .xz."""
    return lzma.open(path, "rt") if path.endswith(".xz") else open(path)


WHOLE = re.compile(r"^(\d+)\.(\d+)\.\d+\.\d+ .*xqueue-trace: \S+ whole tokens=1 .*gpu_us=(\d+) period_us=(\d+)")


def whole_steps(path: str, batch_from_s: float) -> dict[str, list[float]]:
    """whole_steps() is the P10/P50/P90 of the decode steps launched whole (one token per sequence) before and after
    batch_from_s seconds of the log's clock (minutes.seconds.ms.us): GPU time and host period, us."""
    parts: dict[str, list[tuple[int, int]]] = {"before": [], "after": []}
    with opened(path) as f:
        for line in f:
            m = WHOLE.match(line)
            if m:
                t = int(m[1]) * 60 + int(m[2])
                parts["before" if t < batch_from_s else "after"].append((int(m[3]), int(m[4])))
    out: dict[str, list[float]] = {}
    for name, rows in parts.items():
        if not rows:
            raise ValueError(f"{path}: no whole decode steps {name} {batch_from_s:g} s")
        for i, what in ((0, "gpu_us"), (1, "period_us")):
            v = sorted(float(r[i]) for r in rows)
            out[f"{name} {what}"] = [pct(v, 0.1), pct(v, 0.5), pct(v, 0.9)]
        out[f"{name} steps"] = [float(len(rows))]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report")
    ap.add_argument("--smi", help="the nvidia-smi CSV beside the run")
    ap.add_argument("--trace", help="a server log with GGML_XQUEUE_TRACE=1 lines (or .xz)")
    ap.add_argument("--batch-from", type=float, default=0.0, help="seconds of the log's clock where the batch starts")
    ap.add_argument("--by-overlap", action="store_true",
                    help="also the gaps by other interactive requests in flight (decode-only gaps)")
    a = ap.parse_args()
    try:
        with opened(a.report) as f:
            doc = json.load(f)
        for run in doc["runs"]:
            serve = (run.get("scenarios") or {}).get("serve")
            for ph in (serve or {}).get("phases", []):
                row = phase_row(ph["requests"])
                if row:
                    print(f"{run['name']} | {ph.get('name')} | gap P50/P90/P99 {row['p50_ms']:.2f} / {row['p90_ms']:.1f} / "
                          f"{row['p99_ms']:.1f} ms | over 15 ms {row['over_15ms']:.1%} | others in flight "
                          f"{row['others_in_flight']:.2f} | E2E median {row['e2e_median_ms']:.0f} ms")
                if row and a.by_overlap:
                    for k, (n, p50, p90, p99) in overlap_rows(ph["requests"]).items():
                        print(f"{run['name']} | {ph.get('name')} | {k}{'+' if k == 3 else ''} others decoding | "
                              f"{n} gaps | P50/P90/P99 {p50:.2f} / {p90:.2f} / {p99:.2f} ms")
        if a.smi:
            print("smi: " + ", ".join(f"{k} {v:g}" for k, v in smi_range(a.smi).items()))
        if a.trace:
            for k, v in whole_steps(a.trace, a.batch_from).items():
                print(f"whole decode, {k}: " + " / ".join(f"{x:g}" for x in v))
    except (OSError, ValueError, KeyError, TypeError, IndexError, lzma.LZMAError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
