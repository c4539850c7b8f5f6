"""scripts/gpu/serve-gaps.py on a small serve report written here: the inter-token gap figures per phase (the run-8
TPOT table, docs/results/h200-2026-12-03-run8/), the nvidia-smi range, and a one-line error on a bad file."""
from __future__ import annotations

import json
import lzma
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu" / "serve-gaps.py"


def request(t0: float, gap: float, n: int, task: str = "interactive") -> dict[str, object]:
    times = [t0 + 0.05 + i * gap for i in range(n)]
    return {"task": task, "t_send": t0, "t_first": times[0], "t_end": times[-1], "token_times": times}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_gaps_per_phase_and_smi(tmp_path: Path) -> None:
    alone = [request(0.0, 0.005, 11), request(10.0, 0.005, 11)]            # 5 ms gaps, never overlapping
    mixed = [request(0.0, 0.010, 11), request(0.02, 0.010, 11),            # 10 ms gaps, the two overlap
             request(0.0, 0.050, 5, task="batch")]                         # not counted
    doc = {"runs": [{"name": "serve-hpf", "scenarios": {"serve": {"phases": [
        {"name": "alone", "requests": alone}, {"name": "mixed", "requests": mixed}]}}}]}
    report = tmp_path / "report.json.xz"
    with lzma.open(report, "wt") as f:
        json.dump(doc, f)
    smi = tmp_path / "smi.csv"
    lines = ["timestamp, clocks.current.sm [MHz], clocks.current.memory [MHz], power.draw [W]"]
    lines += ["t, 345 MHz, 3201 MHz, 80 W"] * 5 + ["t, 1980 MHz, 3201 MHz, 400 W", "t, 1755 MHz, 3201 MHz, 650.5 W"]
    smi.write_text("\n".join(lines) + "\n")
    cp = run(str(report), "--smi", str(smi))
    assert cp.returncode == 0, cp.stderr
    out = cp.stdout.splitlines()
    assert out[0].startswith("serve-hpf | alone | gap P50/P90/P99 5.00 / 5.0 / 5.0 ms | over 15 ms 0.0% | others in flight 0.00")
    assert out[1].startswith("serve-hpf | mixed | gap P50/P90/P99 10.00 / 10.0 / 10.0 ms") and "others in flight 1.00" in out[1]
    assert out[2] == "smi: sm_mhz_min 1755, sm_mhz_max 1980, power_w_max 650.5, samples 2"  # the first second left out


def test_whole_decode_steps_before_and_after_the_batch(tmp_path: Path) -> None:
    doc = {"runs": [{"name": "r", "scenarios": {}}]}
    report = tmp_path / "report.json"
    report.write_text(json.dumps(doc))
    log = tmp_path / "server.log"
    lines = [f"0.{s:02d}.000.000 W xqueue-trace: CUDA0 whole tokens=1 nodes=9 gpu_us={g} period_us={g + 500}"
             for s, g in ((10, 4000), (20, 4000), (30, 4000), (70, 6000), (80, 6000))]
    lines += ["1.05.000.000 W xqueue-trace: CUDA0 whole tokens=2 nodes=9 gpu_us=90000 period_us=1",  # a prompt: left out
              "1.10.000.000 W xqueue-trace: CUDA0 tokens=512 segments=9 gpu_us=1"]                 # segmented: left out
    log.write_text("\n".join(lines) + "\n")
    cp = run(str(report), "--trace", str(log), "--batch-from", "65")
    assert cp.returncode == 0, cp.stderr
    assert "whole decode, before gpu_us: 4000 / 4000 / 4000" in cp.stdout
    assert "whole decode, after period_us: 6500 / 6500 / 6500" in cp.stdout
    assert "whole decode, after steps: 2" in cp.stdout
    cp = run(str(report), "--trace", str(log), "--batch-from", "5")  # nothing before 5 s: one line, exit 1
    assert cp.returncode == 1 and "no whole decode steps before 5 s" in cp.stderr


def test_bad_report_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "report.json"
    bad.write_text("{not json")
    cp = run(str(bad))
    assert cp.returncode == 1 and cp.stdout == ""
    assert len(cp.stderr.strip().splitlines()) == 1 and cp.stderr.startswith("error: ")


def test_gaps_by_other_requests_decoding(tmp_path: Path) -> None:
    # run 8's per-overlap table: a request alone decodes a token per 5 ms, two overlapping ones per 10 ms each; a
    # gap while another request's prompt runs (t_send .. t_first) is left out
    alone = request(0.0, 0.005, 11)
    pair = [request(10.0, 0.010, 21), request(10.0, 0.010, 21)]
    late = request(10.1, 0.010, 3)  # its prompt 10.1-10.15 overlaps the pair's gaps there
    doc = {"runs": [{"name": "x", "scenarios": {"serve": {"phases": [
        {"name": "p", "requests": [alone, *pair, late]}]}}}]}
    report = tmp_path / "r.json"
    report.write_text(json.dumps(doc))
    cp = run(str(report), "--by-overlap")
    assert cp.returncode == 0, cp.stderr
    rows = [line for line in cp.stdout.splitlines() if "others decoding" in line]
    assert rows[0] == "x | p | 0 others decoding | 10 gaps | P50/P90/P99 5.00 / 5.00 / 5.00 ms"
    assert rows[1].startswith("x | p | 1 others decoding | ") and "P50/P90/P99 10.00 / 10.00 / 10.00 ms" in rows[1]
    assert all(" 2 others" not in r for r in rows[:2])
    without = run(str(report))
    assert "others decoding" not in without.stdout
