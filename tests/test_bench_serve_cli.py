"""`xsched-llama bench --scenario serve` on bad input: one-line error, exit 2, nothing written; and a server
that dies in the middle of the run: one-line error, non-zero exit, a partial report."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xsched_llama.bench.report import load_timeline



def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xsched_llama.bench", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    p = tmp_path / "model.gguf"
    p.write_bytes(b"GGUF")
    return p


def one_line_error(cp: subprocess.CompletedProcess[str], needle: str) -> None:
    assert cp.returncode != 0, cp
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), cp.stderr
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("args, needle", [
    (["--serve-rate", "0"], "--serve-rate must be > 0, not 0"),
    (["--serve-rate", "-2"], "--serve-rate must be > 0, not -2"),
    (["--serve-rate", "fast"], "--serve-rate: not a number: 'fast'"),
    (["--serve-load", "0,0.3"], "--serve-load must be > 0, not 0"),
    (["--serve-rate", "2", "--serve-load", "0.3"], "--serve-rate and --serve-load exclude each other"),
    (["--serve-prompt", "512-64"], "--serve-prompt: empty length range '512-64'"),
    (["--serve-batch-output", "0-0"], "--serve-batch-output: empty length range '0-0'"),
    (["--serve-output", "a-b"], "--serve-output: expected MIN-MAX tokens"),
    (["--serve-slo", "ttft:500,ttfb:40"], "--serve-slo: unknown SLO key 'ttfb' (choose from ttft, tpot, e2el)"),
    (["--serve-slo-ratio", "tpot:0"], "--serve-slo-ratio: 'tpot:0' needs a value > 0"),
    (["--serve-requests", "0"], "--serve-requests must be at least 1, not 0"),
    (["--serve-batch-seconds", "0"], "--serve-batch-seconds must be > 0, not 0"),
    (["--serve-sample-ms", "-1"], "--serve-sample-ms must be >= 0 (0 turns the /xsched timeline off), not -1"),
    (["--serve-sample-ms", "2"], "--serve-sample-ms must be 0 or at least 5 ms"),
    (["--serve-sample-ms", "nan"], "--serve-sample-ms must be >= 0"),
    (["--shape", "qwen3-9b"], "unknown shape 'qwen3-9b'"),
])
def test_bad_serve_input(tmp_path: Path, fake_model: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "o"
    model = [] if "--shape" in args else ["--model", str(fake_model)]
    cp = bench("--scenario", "serve", *model, "--out", str(out), *args)
    one_line_error(cp, needle)
    assert cp.returncode == 2
    assert not out.exists()


def test_model_and_shape_exclude_each_other(fake_model: Path) -> None:
    one_line_error(bench("--model", str(fake_model), "--shape", "tiny"), "--model and --shape exclude each other")


DYING = """#!{python}
# A real llama-server, killed once it has finished {kill_after} requests (the bench is then mid-phase).
import subprocess, sys
p = subprocess.Popen([{server!r}, *sys.argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
done = 0
for line in p.stdout:
    sys.stdout.buffer.write(line)
    sys.stdout.flush()
    if b"stop processing" in line:     # llama-server logs this when a slot finishes a request
        done += 1
        if done == {kill_after}:
            break
p.kill()
p.wait()
sys.exit(137)
"""


@pytest.mark.slow
@pytest.mark.parametrize("build", ["vanilla", "patched"])
def test_server_that_dies_mid_run(tmp_path: Path, request: pytest.FixtureRequest, default_model: Path,
                                  build: str) -> None:
    """A server killed in the middle of the interactive-alone phase; on the patched build the GET /xsched sampler
    runs then too, and the bench must still end with one line and a partial report that keeps its samples."""
    wrapper = tmp_path / "dying-server"
    server: Path = request.getfixturevalue(f"{build}_cpu_server")     # only the build this case needs
    # 2 warm-up requests of the bench, 2 of the serve scenario, then 6 interactive ones
    wrapper.write_text(DYING.format(python=sys.executable, server=str(server), kill_after=10))
    wrapper.chmod(0o755)
    out = tmp_path / "o"
    which = ["--vanilla-server", str(wrapper), "--serve-chunk", "0"] if build == "vanilla" else \
        ["--patched-server", str(wrapper), "--no-hw-priority-only"]
    cp = subprocess.run([sys.executable, "-m", "xsched_llama.bench", "--scenario", "serve", "--builds", build,
                         "--model", str(default_model), *which,
                         "--serve-rate", "1", "--serve-requests", "40", "--out", str(out)],
                        capture_output=True, text=True, timeout=300)
    assert cp.returncode != 0
    assert "Traceback" not in cp.stderr
    last = cp.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "exited" in last, cp.stderr[-2000:]
    doc = json.loads((out / "report.json").read_text())
    assert doc["partial"] is True and doc["errors"]
    scen = doc["runs"][0]["scenarios"]["serve"]
    assert scen["partial"] is True and "exited" in scen["error"]
    first = scen["phases"][0]
    assert first["name"].endswith("interactive alone")
    done = [r for r in first["requests"] if not r.get("error") and not r["cancelled"]]
    assert 4 <= len(done) < 40               # it measured some requests before the server died
    assert ("xsched_timeline" in first) is (build == "patched")
    if build == "patched":                   # the samples up to the end are in the side file
        assert first["xsched_timeline"]["samples"] >= 2
        assert len(load_timeline(out, first["xsched_timeline"])["t"]) == first["xsched_timeline"]["samples"]
    assert not list(out.glob("*.tmp"))
