"""The serve scenario's report: run plan, per-point figures, targets, the comparison table and the plot,
computed on constructed token timelines (no server); plus the new rows of the closed-loop target table."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

from xsched_llama.bench import report, servers
from xsched_llama.bench.client import Completion
from xsched_llama.bench.plot import plot
from xsched_llama.bench.sampler import FIELDS, XschedSampler
from xsched_llama.bench.scenarios import Phase, ScenarioResult
from xsched_llama.bench.serve import aggregate, point
from xsched_llama.bench.servemetrics import class_metrics
from xsched_llama.bench.servereport import serve_summary, serve_table
from xsched_llama.bench.serveparams import ServeParams


def stream(task: str, t_send: float, ttft: float, tpot: float, n: int, cancelled: bool = False) -> Completion:
    times = [t_send + ttft + i * tpot for i in range(n)]
    return Completion(task=task, priority=10 if task == "interactive" else 0, n_predict=n, prompt_tokens=64,
                      t_send=t_send, t_first=times[0], t_end=times[-1], tokens=n, token_times=times,
                      cancelled=cancelled, timings={"prompt_ms": ttft * 500, "predicted_n": n,
                                                    "predicted_ms": (n - 1) * tpot * 900})


def suspended_timeline(t0: float, t1: float) -> XschedSampler:
    """suspended_timeline() is a sampler (not started) whose samples every 50 ms show the batch suspended."""
    s = XschedSampler("http://127.0.0.1:1")
    s.t = [t0 + 0.05 * k for k in range(int((t1 - t0) / 0.05) + 1)]
    s.batch = ["suspended"] * len(s.t)
    s.batch_queues = ["inst1/cpu"]
    s.queues = {"inst1/cpu": {f: [1 if f == "suspended" else 0] * len(s.t) for f in FIELDS}}
    return s


def serve_result(ttft_mixed: float, tpot_mixed: float, batch_tpot_mixed: float, sampled: bool = False
                 ) -> ScenarioResult:
    """serve_result(): 40 interactive requests 0.5 s apart (TTFT 50 ms, TPOT 10 ms alone), a batch client; the
    server's decode time per token is 0.9 of the client's TPOT."""
    sp = ServeParams.for_cpu()
    solo = Phase("r1 2/s: interactive alone", [stream("interactive", 0.5 * i, 0.05, 0.01, 16) for i in range(40)],
                 0.0, 20.3)
    inter = [stream("interactive", 30 + 0.5 * i, ttft_mixed, tpot_mixed, 16) for i in range(40)]
    batch = [stream("batch", 29.0 + 2.0 * k, 0.3, batch_tpot_mixed, 8) for k in range(11)]
    mixed = Phase("r1 2/s: interactive + batch", inter + batch, 30.0, 51.0)
    if sampled:
        mixed.timeline = suspended_timeline(29.0, 53.0)
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
    assert fig["tpot_ci95_ms"]["mixed"][0] == pytest.approx(40.0) and fig["tpot_ci95_ms"]["mixed"][1] is None
    # the server's decode time per token (timings) and the rest of the TPOT
    assert fig["solo_p99_server_tpot_ms"] == pytest.approx(9.0) and fig["mixed_p99_server_tpot_ms"] == pytest.approx(36.0)
    assert fig["p99_server_tpot_ratio"] == pytest.approx(4.0)
    assert fig["solo_p99_tpot_outside_ms"] == pytest.approx(1.0) and fig["mixed_p99_tpot_outside_ms"] == pytest.approx(4.0)
    for key in ("median", "p90", "p99"):
        assert mixed[f"{key}_server_tpot_ms"] == pytest.approx(36.0) and mixed[f"{key}_tpot_outside_ms"] == pytest.approx(4.0)
    assert mixed["server_tpot_n"] == 40
    # no timeline here: every gap is "not sampled"; a request arrives every 0.5 s and lasts 1.1 s, so the next
    # one's prompt (250 ms before its first token) overlaps some of its gaps
    cls = mixed["itl_classes"]
    assert cls["sampled"] is False and cls["n"] == mixed["itl_n"] == 40 * 15
    assert list(cls["classes"]) == ["not_sampled/no_prompt", "not_sampled/other_prompt"]
    assert cls["by_prompt"]["other_prompt"]["n"] == 39 * 7    # 250 ms of a 40 ms cadence: 7 gaps per request
    assert fig["mixed_p99_itl_no_prompt_ms"] == pytest.approx(40.0) and fig["mixed_p99_itl_other_prompt_ms"] == \
        pytest.approx(40.0)
    assert rep_alone_classes(m) == ["not_sampled/no_prompt"]     # alone: 0.21 s per request, 0.5 s apart
    assert fig["mixed_p99_itl_batch_suspended_ms"] is None and fig["mixed_itl_batch_running_share"] is None


def rep_alone_classes(m: dict[str, Any]) -> list[str]:
    return list(m["points"][0]["repeats"][0]["interactive_alone"]["itl_classes"]["classes"])


def test_point_figures_with_a_timeline(tmp_path: Path) -> None:
    res = serve_result(ttft_mixed=0.06, tpot_mixed=0.012, batch_tpot_mixed=0.1, sampled=True)
    rep = res.metrics["points"][0]["repeats"][0]
    cls = rep["interactive_mixed"]["itl_classes"]
    assert cls["sampled"] is True and set(cls["by_batch"]) == {"suspended"}
    assert sum(v["n"] for v in cls["classes"].values()) == cls["n"] == rep["interactive_mixed"]["itl_n"]
    fig = rep["figures"]
    assert fig["mixed_p99_itl_batch_suspended_ms"] == pytest.approx(12.0)
    assert fig["mixed_p99_itl_suspended_no_prompt_ms"] == pytest.approx(12.0)
    assert fig["mixed_p99_itl_batch_running_ms"] is None and fig["mixed_itl_batch_running_share"] == 0.0
    assert rep["interactive_mixed"]["xsched_sampler"]["samples"] == 481
    assert "xsched_sampler" not in rep["interactive_alone"]
    doc = report.scenario_json(res, 29.0)
    tl = doc["phases"][1]["xsched_timeline"]
    assert tl["t"][0] == 0.0 and len(tl["batch"]) == 481 and tl["batch_queues"] == ["inst1/cpu"]
    assert "xsched_timeline" not in doc["phases"][0]
    req = doc["phases"][1]["requests"][0]
    assert req["server_tpot_ms"] == pytest.approx(10.8)
    summary = serve_summary([{"name": "serve-hpf", "command": "x", "note": "", "scenarios": {"serve": doc}}])
    vals = {row["id"]: row["values"]["serve-hpf"] for row in summary["table"]}
    assert vals["itl_batch_share"] == "suspended 100%"
    assert vals["server_tpot_pcts_mixed"] == "10.8 / 10.8 / 10.8" and vals["tpot_outside_pcts_mixed"] == "1.2 / 1.2 / 1.2"
    assert vals["mixed_p99_itl_batch_suspended_ms"] == pytest.approx(12.0)
    runs = [{"name": "serve-hpf", "command": "x", "note": "", "scenarios": {"serve": doc}}]
    plain = report.scenario_json(serve_result(0.06, 0.012, 0.1), 29.0)
    sizes = []
    for i, d in enumerate((plain, doc)):                           # the timeline adds a row: ITL over batch state
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            plot({"schema": report.SCHEMA, "model": "m", "device": "test", "targets": [],
                  "runs": [{**runs[0], "scenarios": {"serve": d}}]}, tmp_path / f"r{i}.png")
        import matplotlib.image
        sizes.append(matplotlib.image.imread(tmp_path / f"r{i}.png").shape[0])
    assert sizes[1] > sizes[0]
    # on disk the timeline goes to a side file, the report keeps a pointer
    report.write_report(tmp_path, {"runs": runs, "partial": False})
    saved = json.loads((tmp_path / "report.json").read_text())
    ptr = saved["runs"][0]["scenarios"]["serve"]["phases"][1]["xsched_timeline"]
    assert ptr["file"] == "xsched-timeline-serve-hpf.json" and ptr["samples"] == 481 and "t" not in ptr
    assert report.load_timeline(tmp_path, ptr)["t"] == tl["t"]
    assert "t" in runs[0]["scenarios"]["serve"]["phases"][1]["xsched_timeline"]    # the document in memory is kept


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
    assert vals["itl_batch_share"]["serve-vanilla"] == "not sampled"
    assert vals["tpot_pcts_alone"]["serve-hpf"] == "10.0 / 10.0 / 10.0"
    assert vals["server_tpot_pcts_alone"]["serve-hpf"] == "9.0 / 9.0 / 9.0"
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
