"""`xsched-llama bench --scenario serve` end to end on the CPU builds and the embedded model, small counts.

Four real servers (vanilla, vanilla with -b/-ub 256, patched NONE, patched HPF), one after the other. On a
shared 2-core machine only the direction of the effect is stable, so the assertions are loose: the report is
complete and valid, and HPF's interactive P99 TTFT with the batch class / alone is smaller than vanilla's.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from xsched_llama.bench.report import load_timeline
from xsched_llama.bench.servers import SERVE_RUNS

pytestmark = pytest.mark.slow
N = 12      # interactive requests per phase

VLLM_FIELDS = ("completed", "failed", "duration", "request_throughput", "output_throughput", "total_token_throughput",
               "total_input_tokens", "total_output_tokens", "max_concurrent_requests",
               *(f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el") for s in ("mean", "median", "p90", "p99", "max")))


@pytest.fixture(scope="module")
def run(patched_cpu_server: Path, vanilla_cpu_server: Path, default_model: Path,
        tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("bench-serve") / "out"
    cp = subprocess.run(
        [sys.executable, "-m", "xsched_llama", "bench", "--scenario", "serve", "--model", str(default_model),
         "--vanilla-server", str(vanilla_cpu_server), "--patched-server", str(patched_cpu_server),
         "--serve-requests", str(N), "--serve-batch-seconds", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=1500)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    return json.loads((out / "report.json").read_text()), out, cp


def metrics(doc: dict[str, Any], name: str) -> dict[str, Any]:
    run = next(r for r in doc["runs"] if r["name"] == name)
    return dict(run["scenarios"]["serve"]["metrics"])


def test_report_is_complete(run: tuple[dict[str, Any], Path, subprocess.CompletedProcess[str]]) -> None:
    doc, out, cp = run
    assert doc["partial"] is False and not doc["errors"]
    assert [r["name"] for r in doc["runs"]] == list(SERVE_RUNS)
    rates = {tuple(metrics(doc, n)["rates"]) for n in SERVE_RUNS}
    assert len(rates) == 1                                   # the same arrivals for every configuration
    cal = metrics(doc, "serve-vanilla")["calibration"]
    assert cal["capacity_rps"] > 0 and metrics(doc, "serve-hpf")["capacity_measured_on"] == "serve-vanilla"
    for name in SERVE_RUNS:
        m = metrics(doc, name)
        rep = m["points"][0]["repeats"][0]
        for cls in ("interactive_alone", "interactive_mixed", "batch_mixed"):
            missing = [f for f in VLLM_FIELDS if f not in rep[cls]]
            assert not missing, (name, cls, missing)
        assert rep["interactive_alone"]["completed"] == N and rep["interactive_alone"]["failed"] == 0
        assert rep["interactive_mixed"]["completed"] == N and rep["interactive_mixed"]["failed"] == 0
        assert rep["interactive_mixed"]["request_goodput"] is not None
        assert rep["batch_mixed"]["total_output_tokens"] > 0
        assert m["batch_alone"][0]["batch"]["output_throughput"] > 0
        assert rep["interactive_mixed"]["ttft_split_n"] == N    # every request has the server's timings
        assert m["p99_ttft_ratio"] is not None and m["batch_kept"] is not None
    cfgs = {c["name"]: c["command"] for c in doc["serve"]["configs"]}
    assert "-b 256 -ub 256" in cfgs["serve-vanilla-chunked"]
    assert cfgs["serve-hpf"].startswith("XSCHED_POLICY=HPF ") and "--instances 10:1:2,0:1:1" in cfgs["serve-hpf"]
    hpf = next(r for r in doc["runs"] if r["name"] == "serve-hpf")
    assert hpf["xsched"]["policy"] == "HPF"
    assert "measured" in hpf["preemption"]                   # "not measured" on a server without the histogram
    ids = {t["id"] for t in doc["targets"]}
    assert {"serve-ttft-p99", "serve-tpot-p99", "serve-batch-outside", "serve-preemption-p99"} <= ids
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "interactive P99 TTFT with batch / alone" in cp.stdout and "estimated" in cp.stderr


def test_hpf_protects_the_interactive_tail(run: tuple[dict[str, Any], Path, subprocess.CompletedProcess[str]]) -> None:
    doc = run[0]
    hpf, vanilla = metrics(doc, "serve-hpf")["p99_ttft_ratio"], metrics(doc, "serve-vanilla")["p99_ttft_ratio"]
    assert hpf < vanilla, (hpf, vanilla)


TAIL_FIELDS = ("itl_n", "server_tpot_n",
               *(f"{s}_{m}_ms" for m in ("server_tpot", "tpot_outside") for s in ("mean", "median", "p90", "p99", "max")))


def test_tail_is_placed(run: tuple[dict[str, Any], Path, subprocess.CompletedProcess[str]]) -> None:
    """The server's decode time per token beside the client's TPOT, and every interactive gap classified: the
    classes add up, the patched runs carry a GET /xsched timeline, the vanilla runs none (and still complete)."""
    doc, out, cp = run
    for name in SERVE_RUNS:
        r = next(r for r in doc["runs"] if r["name"] == name)
        rep = r["scenarios"]["serve"]["metrics"]["points"][0]["repeats"][0]
        patched = r["build"] == "patched"
        for cls in ("interactive_alone", "interactive_mixed"):
            m = rep[cls]
            assert not [f for f in TAIL_FIELDS if f not in m], (name, cls)
            assert m["server_tpot_n"] == N and m["p99_server_tpot_ms"] > 0   # both builds send timings
            c = m["itl_classes"]
            assert c["n"] == m["itl_n"] > 0 and c["sampled"] is patched
            for group in ("classes", "by_batch", "by_prompt"):
                assert sum(v["n"] for v in c[group].values()) == c["n"], (name, cls, group)
            if not patched:
                assert set(c["by_batch"]) == {"not_sampled"}
        fig = rep["figures"]
        assert fig["p99_server_tpot_ratio"] is not None and fig["mixed_p99_itl_ms"] is not None
        timelines = [p for p in r["scenarios"]["serve"]["phases"] if "xsched_timeline" in p]
        if not patched:
            assert not timelines
            continue
        assert len(timelines) == 2                                   # interactive alone and interactive + batch
        for ph in timelines:                                         # in a side file, the report points to it
            ptr = ph["xsched_timeline"]
            assert ptr["file"] == f"xsched-timeline-{name}.json" and (out / ptr["file"]).is_file()
            tl = load_timeline(out, ptr)
            n = len(tl["t"])
            assert tl["phase"] == ph["name"] and ptr["samples"] == n and ptr["cost"] == tl["cost"]
            assert n >= 10 and tl["batch_queues"] and tl["cost"]["samples"] == n and tl["cost"]["errors"] == 0
            assert len(tl["batch"]) == len(tl["rtt_ms"]) == n and tl["t"] == sorted(tl["t"])
            assert all(len(col) == n for q in tl["queues"].values() for col in q.values())
            assert tl["cost"]["cpu_ms_per_sample"] is not None
        mixed = rep["interactive_mixed"]["itl_classes"]["by_batch"]
        if name == "serve-hwprio":                                   # policy NONE never suspends a queue
            assert "suspended" not in mixed
        alone = rep["interactive_alone"]["itl_classes"]["by_batch"]
        assert "running" not in alone                                # no batch client in that phase
    assert "server decode ms/token" in cp.stdout and "by batch state" in cp.stdout
    assert "tail: P99 server decode time per token" in cp.stderr
