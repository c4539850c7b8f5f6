"""`xsched-llama bench` on bad input: one-line error, non-zero exit, nothing written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xsched_llama.bench", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def fake_model(tmp_path: Path) -> Path:
    p = tmp_path / "model.gguf"
    p.write_bytes(b"GGUF")
    return p


@pytest.fixture
def fake_server(tmp_path: Path) -> Path:
    """An executable that is not a llama-server: it exits at once."""
    p = tmp_path / "llama-server"
    p.write_text("#!/bin/sh\necho 'not a server' >&2\nexit 3\n")
    p.chmod(0o755)
    return p


def one_line_error(cp: subprocess.CompletedProcess[str], needle: str) -> str:
    assert cp.returncode != 0, cp
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), cp.stderr
    assert needle in lines[0]
    return lines[0]


def test_unknown_scenario(tmp_path: Path, fake_model: Path) -> None:
    cp = bench("--scenario", "hpf-decode", "--scenario", "fifo", "--model", str(fake_model), "--out", str(tmp_path / "o"))
    one_line_error(cp, "unknown scenario fifo (choose from hpf-decode, hpf-prefill, harvest, wrr, overhead, serve)")
    assert cp.returncode == 2
    assert not (tmp_path / "o").exists()


def test_unknown_build(fake_model: Path) -> None:
    one_line_error(bench("--builds", "vanilla,turbo", "--model", str(fake_model)), "unknown build turbo")


def test_missing_model(tmp_path: Path) -> None:
    one_line_error(bench("--model", str(tmp_path / "nope.gguf")), "model not found")


def test_missing_server_binary(tmp_path: Path, fake_model: Path) -> None:
    cp = bench("--builds", "vanilla", "--model", str(fake_model), "--vanilla-server", str(tmp_path / "llama-server"),
               "--out", str(tmp_path / "o"))
    one_line_error(cp, "vanilla llama-server not found")
    assert not (tmp_path / "o").exists()


def test_bad_token_count(fake_model: Path) -> None:
    one_line_error(bench("--model", str(fake_model), "--a-tokens", "0"), "--a-tokens must be at least 1")


def test_unknown_option() -> None:
    one_line_error(bench("--turbo"), "No such option")


def test_server_that_does_not_start(tmp_path: Path, fake_model: Path, fake_server: Path) -> None:
    """A server that exits during start-up: the run is reported as failed, the report says why."""
    out = tmp_path / "o"
    cp = bench("--builds", "vanilla", "--scenario", "overhead", "--model", str(fake_model),
               "--vanilla-server", str(fake_server), "--out", str(out))
    assert cp.returncode != 0
    last = cp.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 failure(s), report written; first: vanilla: llama-server exited with code 3"), cp.stderr
    import json
    doc = json.loads((out / "report.json").read_text())
    assert doc["errors"] and doc["runs"][0]["name"] == "vanilla"


@pytest.mark.slow
def test_shape_synthesizes_and_benchmarks_it(default_commit_only: None, tmp_path: Path, vanilla_cpu_server: Path,
                                              llama_source: Path) -> None:
    """--shape tiny: the synthetic model is written into the cache once and benchmarked."""
    import os
    cache = tmp_path / "cache"
    env = {**os.environ, "XSCHED_LLAMA_CACHE": str(cache), "XSCHED_LLAMA_SOURCE": str(llama_source)}
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "xsched_llama.bench", "--shape", "tiny", "--builds", "vanilla", "--scenario",
           "overhead", "--reps", "1", "--a-tokens", "4", "--b-prompt-tokens", "16", "--ctx", "256",
           "--vanilla-server", str(vanilla_cpu_server), "--out", str(out)]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    import json
    doc = json.loads((out / "report.json").read_text())
    model = cache / "models" / "synth-tiny-q8_0.gguf"
    assert doc["model"] == str(model) and model.is_file() and not doc["errors"]
    assert doc["runs"][0]["scenarios"]["overhead"]["metrics"]["decode_tps_high"] > 0
