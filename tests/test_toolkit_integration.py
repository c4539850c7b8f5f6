"""End to end: the patched CPU llama-server built from the pinned source answers over HTTP."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from xsched_llama import build, server

pytestmark = pytest.mark.slow


def test_patched_server_completes(patched_cpu_server: Path, default_model: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(patched_cpu_server, ["-m", default_model, "-c", "512", "-t", "2"])
    r = srv.post("/completion", {"prompt": "The capital of France is", "n_predict": 8})
    assert r.status_code == 200
    body = r.json()
    assert body["tokens_predicted"] == 8 and body["content"].strip()


def test_vanilla_server_completes(vanilla_cpu_server: Path, default_model: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(vanilla_cpu_server, ["-m", default_model, "-c", "512", "-t", "2"])
    r = srv.post("/completion", {"prompt": "Hello", "n_predict": 4})
    assert r.status_code == 200 and r.json()["tokens_predicted"] == 4


def test_second_build_is_cached_and_cli_json(patched_cpu_server: Path, toolkit_cache: Path,
                                             llama_commit: str) -> None:
    opts = build.BuildOptions(llama_commit=llama_commit)
    build.build(opts, cache=toolkit_cache)  # up to date with the patches as they are now
    summary = build.build(opts, cache=toolkit_cache)
    assert summary["cached"] and summary["binaries"]["llama-server"] == str(patched_cpu_server)
    cp = subprocess.run([sys.executable, "-m", "xsched_llama", "--cache-dir", str(toolkit_cache), "build", "--json",
                         "--llama-commit", llama_commit[:9]],
                        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    assert cp.returncode == 0, cp.stderr
    data = json.loads(cp.stdout)
    assert data["cached"] and data["commit"] == llama_commit
    assert Path(data["binaries"]["llama-server"]).is_file() and Path(data["log"]).is_file()


def test_a_define_left_out_leaves_the_cmake_cache(vanilla_cpu_server: Path, toolkit_cache: Path,
                                                  llama_commit: str) -> None:
    """A -D of one build, left out of the next, is gone from CMakeCache.txt; nothing recompiles for it."""
    cmake_cache = vanilla_cpu_server.parents[1] / "CMakeCache.txt"
    mtime = vanilla_cpu_server.stat().st_mtime_ns
    build.build(build.BuildOptions(vanilla=True, cmake_args=["-DXSCHED_LLAMA_TEST_MARK=1"], llama_commit=llama_commit),
                cache=toolkit_cache)
    assert "XSCHED_LLAMA_TEST_MARK" in cmake_cache.read_text()
    summary = build.build(build.BuildOptions(vanilla=True, llama_commit=llama_commit), cache=toolkit_cache)
    assert not summary["cached"] and "XSCHED_LLAMA_TEST_MARK" not in cmake_cache.read_text()
    assert vanilla_cpu_server.stat().st_mtime_ns == mtime  # same flags: the binary was not relinked
    assert build.build(build.BuildOptions(vanilla=True, llama_commit=llama_commit), cache=toolkit_cache)["cached"]


def test_serve_stops_cleanly_on_ctrl_c(patched_cpu_server: Path, default_model: Path, toolkit_cache: Path,
                                       tmp_path: Path, llama_commit: str) -> None:
    port = server.free_port()
    out = open(tmp_path / "serve.out", "w")
    p = subprocess.Popen([sys.executable, "-m", "xsched_llama", "--cache-dir", str(toolkit_cache), "serve",
                          "--llama-commit", llama_commit[:12], "--port", str(port), "--", "-c", "512", "-t", "1"],
                         stdout=out, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert p.poll() is None, (tmp_path / "serve.out").read_text()
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        r = requests.post(f"http://127.0.0.1:{port}/completion", json={"prompt": "Hi", "n_predict": 2}, timeout=120)
        assert r.status_code == 200
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=60) == 0
        with pytest.raises(requests.RequestException):
            requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        out.close()


@pytest.mark.gpu
def test_cuda_build_serves_on_the_gpu(default_model: Path, toolkit_cache: Path, start_server,  # type: ignore[no-untyped-def]
                                      llama_commit: str) -> None:
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no nvidia-smi: not a GPU machine")
    summary = build.build(build.BuildOptions(cuda=True, llama_commit=llama_commit), cache=toolkit_cache)
    srv = start_server(Path(summary["binaries"]["llama-server"]), ["-m", default_model, "-ngl", "99"])
    r = srv.post("/completion", {"prompt": "Hello", "n_predict": 8})
    assert r.status_code == 200 and r.json()["tokens_predicted"] == 8
    assert "CUDA" in srv.log_text()


