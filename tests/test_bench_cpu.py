"""`xsched-llama bench` end to end on the CPU builds and the embedded model, small request sizes.

The effect must be there, not a number: on a shared 2-core machine only the direction of each figure is
stable. HPF: task A's slowdown next to a decoding neighbour is smaller on the patched server than on vanilla.
WRR 3:1: A gets more tokens/s than B while both run. The report, the plot and the table must be complete.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(patched_cpu_server: Path, vanilla_cpu_server: Path, default_model: Path,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("bench-cpu") / "out"
    cp = subprocess.run(
        [sys.executable, "-m", "xsched_llama", "bench", "--model", str(default_model),
         "--vanilla-server", str(vanilla_cpu_server), "--patched-server", str(patched_cpu_server),
         "--scenario", "hpf-decode", "--scenario", "wrr", "--ctx", "2048",
         "--a-tokens", "24", "--b-tokens", "192", "--wrr-tokens", "64", "--reps", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=1200)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return json.loads((out / "report.json").read_text()), out, cp


def target(doc: dict[str, Any], tid: str) -> dict[str, Any]:
    return next(t for t in doc["targets"] if t["id"] == tid)


def test_report_is_complete(report: tuple[dict[str, Any], Path, subprocess.CompletedProcess[str]]) -> None:
    doc, out, cp = report
    assert not doc["errors"]
    assert [r["name"] for r in doc["runs"]] == ["vanilla", "patched", "patched-hwprio", "patched-wrr"]
    for run in doc["runs"]:
        assert (out / "logs" / f"{run['name']}.log").stat().st_size > 0
        for scen in run["scenarios"].values():
            for ph in scen["phases"]:
                for req in ph["requests"]:
                    if req["task"] == "A":  # task A always runs to the end; B's open request is cut at phase end
                        assert not req["cancelled"] and req["tokens"] == req["n_predict"], req
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "A with B decoding / A alone" in cp.stdout and "targets met" in cp.stdout
    patched = next(r for r in doc["runs"] if r["name"] == "patched")
    assert patched["xsched"]["policy"] == "HPF" and patched["xsched"]["queues"]
    for run in doc["runs"]:
        if "hpf-decode" in run["scenarios"]:           # task A's inter-token latency, alone and with B
            m = run["scenarios"]["hpf-decode"]["metrics"]
            assert 0 < m["a_itl_p99_alone_ms"] <= m["a_itl_max_alone_ms"], m
            assert 0 < m["a_itl_p99_with_b_ms"] <= m["a_itl_max_with_b_ms"], m
            assert m["a_itl_p99_ratio"] == m["a_itl_p99_with_b_ms"] / m["a_itl_p99_alone_ms"]
    assert "measured" in patched["preemption"]          # False ("not measured") on a server without the histogram


def test_hpf_protects_task_a(report: tuple[dict[str, Any], Path, subprocess.CompletedProcess[str]]) -> None:
    t = target(report[0], "hpf-decode")
    assert t["vanilla"] is not None and t["patched"] is not None
    assert t["patched"] < t["vanilla"], t


def test_wrr_weights_shift_the_share(report: tuple[dict[str, Any], Path, subprocess.CompletedProcess[str]]) -> None:
    t = target(report[0], "wrr-3:1")
    assert t["patched"] is not None and t["patched"] > 1.2, t
