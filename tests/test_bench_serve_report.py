"""The serve scenario's report: run plan, per-point figures, targets, the comparison table and the plot,
computed on constructed token timelines (no server); plus the new rows of the closed-loop target table."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from xsched_llama.bench import report, servers
from xsched_llama.bench.client import Completion
from xsched_llama.bench.plot import plot
from xsched_llama.bench.scenarios import Phase, ScenarioResult
from xsched_llama.bench.serve import aggregate, point
from xsched_llama.bench.servemetrics import class_metrics
from xsched_llama.bench.servereport import serve_summary, serve_table
from xsched_llama.bench.serveparams import ServeParams


def stream(task: str, t_send: float, ttft: float, tpot: float, n: int, cancelled: bool = False) -> Completion:
    times = [t_send + ttft + i * tpot for i in range(n)]
    return Completion(task=task, priority=10 if task == "interactive" else 0, n_predict=n, prompt_tokens=64,
                      t_send=t_send, t_first=times[0], t_end=times[-1], tokens=n, token_times=times,
                      cancelled=cancelled, timings={"prompt_ms": ttft * 500})


def serve_result(ttft_mixed: float, tpot_mixed: float, batch_tpot_mixed: float) -> ScenarioResult:
    """serve_result(): 40 interactive requests 0.5 s apart (TTFT 50 ms, TPOT 10 ms alone), a batch client."""
    sp = ServeParams.for_cpu()
    solo = Phase("r1 2/s: interactive alone", [stream("interactive", 0.5 * i, 0.05, 0.01, 16) for i in range(40)],
                 0.0, 20.3)
    inter = [stream("interactive", 30 + 0.5 * i, ttft_mixed, tpot_mixed, 16) for i in range(40)]
    batch = [stream("batch", 29.0 + 2.0 * k, 0.3, batch_tpot_mixed, 8) for k in range(11)]
    mixed = Phase("r1 2/s: interactive + batch", inter + batch, 30.0, 51.0)
    alone = Phase("r1: batch alone", [stream("batch", 60.0 + 0.5 * k, 0.1, 0.05, 8, cancelled=(k == 9))
                                      for k in range(10)], 60.0, 65.0)
    b_alone = class_metrics(alone.requests, alone.t0, alone.t1, closed_loop=True)
    m: dict[str, Any] = {"rates": [2.0], "points": [{"rate": 2.0, "load": 0.3, "repeats": [point(sp, solo, mixed, b_alone)]}],
                         "batch_alone": [{"phase": alone.name, "batch": b_alone}]}
    aggregate(m)
    return ScenarioResult("serve", [solo, mixed, alone], m)


def test_serve_plan_has_the_four_configurations(tmp_path: Path) -> None:
    sp = ServeParams()     # GPU: 16 interactive slots, 4 batch clients, prompts up to 6000 + 512 tokens
    binaries = {"vanilla": tmp_path / "v", "patched": tmp_path / "p"}
    opts = servers.ServerOptions(model=tmp_path / "m.gguf", ngl=99)
    runs = servers.plan(["vanilla", "patched"], ["hpf-decode", "serve"], binaries, opts, serve=sp)
    by = {r.name: r for r in runs}
    assert [r.name for r in runs] == ["vanilla", "patched", "patched-hwprio", *servers.SERVE_RUNS]
    assert sp.ctx_per_slot() == 6656                            # 6000 + 512 + 64, rounded up to 256
    assert by["vanilla"].args[4:8] == ["-c", "16384", "-np", "2"]
    v = by["serve-vanilla"].args
    assert v[v.index("-c") + 1] == str(6656 * 20) and v[v.index("-np") + 1] == "20"
    assert by["serve-vanilla-chunked"].args[-4:] == ["-b", "256", "-ub", "256"]
    h = by["serve-hpf"].args
    assert h[h.index("-c") + 1] == str(6656 * 16)               # -c is per instance in the patched server
    assert h[-4:] == ["--instances", "10:1:16,0:1:4", "--xsched-policy", "HPF"]
    assert by["serve-hwprio"].env == {"XSCHED_POLICY": "NONE"} and by["serve-hwprio"].args[-1] == "NONE"
    assert by["serve-hpf"].command().startswith("XSCHED_POLICY=HPF " + str(tmp_path / "p") + " -m ")
    assert all(r.scenarios == ["serve"] for r in runs if r.name.startswith("serve-"))
    sp.chunk = 0
    names = [r.name for r in servers.plan(["vanilla"], ["serve"], binaries, opts, serve=sp)]
    assert names == ["serve-vanilla"]
    opts.ctx = 9000                                              # an explicit --ctx wins
    assert servers.plan(["patched"], ["serve"], binaries, opts, hw_only=False, serve=sp)[0].args[5] == "9000"


def test_point_figures() -> None:
    res = serve_result(ttft_mixed=0.5, tpot_mixed=0.04, batch_tpot_mixed=0.1)
    m = res.metrics
    assert m["solo_p99_ttft_ms"] == pytest.approx(50.0) and m["mixed_p99_ttft_ms"] == pytest.approx(500.0)
    assert m["p99_ttft_ratio"] == pytest.approx(10.0) and m["p99_tpot_ratio"] == pytest.approx(4.0)
    fig = m["points"][0]["repeats"][0]["figures"]
    assert fig["slo_p99_met"] is False                          # P99 TTFT 500 ms is within 500, TPOT 40 ms is not
    assert m["points"][0]["spread"]["p99_ttft_ratio"] == {"min": pytest.approx(10.0), "median": pytest.approx(10.0),
                                                           "max": pytest.approx(10.0), "n": 1}
    mixed = m["points"][0]["repeats"][0]["interactive_mixed"]
    assert mixed["request_goodput_vs_solo_fraction"] == 0.0     # every TTFT is 10x its solo P99
    assert mixed["p99_ttft_wait_ms"] == pytest.approx(250.0)    # prompt_ms = half the TTFT
    alone = m["batch_alone"][0]["batch"]
    assert alone["in_flight_at_end"] == 1 and alone["failed"] == 0
    # batch alone: 20 tok/s (tokens every 50 ms, clients overlapping); with interactive: sparser tokens
    assert 0 < m["batch_kept"] < 1
    assert fig["outside_s"] > 0 and fig["batch_kept_outside"] is not None


def test_serve_targets_table_and_plot(tmp_path: Path) -> None:
    results = {"serve-vanilla": {"serve": serve_result(0.5, 0.04, 0.1)},
               "serve-hwprio": {"serve": serve_result(0.08, 0.012, 0.06)},
               "serve-hpf": {"serve": serve_result(0.052, 0.0101, 0.05)}}
    rows = {r["id"]: r for r in report.evaluate(results, {"serve-hpf": {"preemption_p99_ms": None,
                                                                         "preemption_measured": False}})}
    assert {"serve-ttft-p99", "serve-tpot-p99", "serve-batch-outside", "serve-mlperf-ttft", "serve-mlperf-tpot",
            "serve-preemption-p99"} <= set(rows)
    t = rows["serve-ttft-p99"]
    assert t["vanilla"] == pytest.approx(10.0) and t["hw_priority_only"] == pytest.approx(1.6)
    assert t["patched"] == pytest.approx(1.04) and t["pass"] is True and t["hw_priority_only_pass"] is False
    assert rows["serve-tpot-p99"]["pass"] is True                # 10.1 / 10 ms
    assert rows["serve-mlperf-tpot"]["vanilla"] == pytest.approx(40.0)
    assert rows["serve-preemption-p99"]["note"] == "not measured" and rows["serve-preemption-p99"]["pass"] is None
    text = report.table(list(rows.values()))
    assert any("preemption" in line and line.endswith("not measured") for line in text.splitlines())

    runs = [{"name": n, "command": f"llama-server {n}", "note": "",
             "scenarios": {"serve": report.scenario_json(r["serve"], 0.0)}} for n, r in results.items()]
    summary = serve_summary(runs)
    vals = {row["id"]: row["values"] for row in summary["table"]}
    assert vals["p99_ttft_ratio"]["serve-vanilla"] == pytest.approx(10.0)
    assert vals["preemption_p99_ms"]["serve-hpf"] is None      # no preemption object in these metrics
    assert [c["command"] for c in summary["configs"]][0] == "llama-server serve-vanilla"
    lines = serve_table(summary).splitlines()
    assert lines[0].split()[-3:] == ["vanilla", "hwprio", "hpf"]
    assert any(line.startswith("interactive P99 TTFT with batch / alone") and line.split()[-3:] ==
               ["10.000", "1.600", "1.040"] for line in lines)

    doc = {"schema": report.SCHEMA, "model": "/m/model.gguf", "device": "test", "runs": runs, "targets": []}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot(doc, tmp_path / "report.png")
    import matplotlib.image
    img = matplotlib.image.imread(tmp_path / "report.png")
    assert img.shape[0] > 600                                    # CDF row + timelines


def test_closed_loop_itl_and_preemption_rows() -> None:
    res = {"patched": {"hpf-prefill": ScenarioResult("hpf-prefill", [], {"slowdown": 1.01, "a_itl_p99_ratio": 1.3})},
           "vanilla": {"hpf-prefill": ScenarioResult("hpf-prefill", [], {"slowdown": 50.0, "a_itl_p99_ratio": 40.0})}}
    rows = {r["id"]: r for r in report.evaluate(res, {"patched": {"preemption_p99_ms": 0.75,
                                                                   "preemption_measured": True}})}
    itl = rows["hpf-prefill-itl"]
    assert itl["patched"] == 1.3 and itl["pass"] is False and itl["vanilla"] == 40.0 and itl["target"] == "≤ 1.1"
    pre = rows["preemption-p99"]
    assert pre["patched"] == 0.75 and pre["pass"] is True and "note" not in pre and pre["vanilla"] is None
    assert "serve-ttft-p99" not in rows                          # no serve run, no serve rows
