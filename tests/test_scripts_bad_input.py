"""The scripts (test_llamacpp.sh, test_wrr.sh, gpu-proof.sh, cross-build-cuda.sh) on bad input: one-line error, exit 2.

No llama build is needed: the "servers" here are a closed port and a plain HTTP server.
"""
from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from xsched_llama.server import free_port

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
ROLE = {"test_llamacpp.sh": "effect", "test_wrr.sh": "effect", "gpu-proof.sh": "gpu", "cross-build-cuda.sh": "gpu"}
NAMES = ["test_llamacpp.sh", "test_wrr.sh"]


def run(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPTS / ROLE[name] / name), *args], capture_output=True, text=True, timeout=60, env=env)


def one_line_error(cp: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert cp.returncode == 2, cp
    assert cp.stdout == ""
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), cp.stderr
    for n in needles:
        assert n in lines[0]


@pytest.fixture(scope="module")
def not_llama() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers 404 to everything (not a llama-server)."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.mark.parametrize("name", NAMES)
def test_help(name: str) -> None:
    cp = run(name, "--help")
    assert cp.returncode == 0 and cp.stdout.startswith("usage: ")


@pytest.mark.parametrize("name", NAMES)
def test_server_not_running(name: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    one_line_error(run(name, "--url", url), "no llama-server answering at " + url)


@pytest.mark.parametrize("name", NAMES)
def test_url_from_environment(name: str) -> None:
    import os
    url = f"http://127.0.0.1:{free_port()}"
    one_line_error(run(name, env={**os.environ, "XSCHED_LLAMA_URL": url}), url)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_url(name: str) -> None:
    one_line_error(run(name, "--url", "http://no-such-host.invalid:8080"), "no llama-server answering")


@pytest.mark.parametrize("name", NAMES)
def test_not_a_llama_server(name: str, not_llama: str) -> None:
    one_line_error(run(name, "--url", not_llama), "HTTP 404")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("args,needle", [
    (["--frobnicate"], "unknown option '--frobnicate'"),
    (["--tokens", "many"], "--tokens needs an integer"),
    (["--tokens", "0"], "--tokens must be at least 1"),
    (["--timeout", "-3"], "--timeout needs a number"),
    (["--url"], "--url needs a value"),
])
def test_bad_options(name: str, args: list[str], needle: str) -> None:
    one_line_error(run(name, *args), needle)


def test_gpu_proof_usage() -> None:
    cp = run("gpu-proof.sh")
    assert cp.returncode == 2 and "usage" in cp.stdout and "STEP" in cp.stdout


def test_gpu_proof_unknown_step(tmp_path: Path) -> None:
    out = tmp_path / "proof"
    cp = run("gpu-proof.sh", str(out), "build-patched", "wrr-fast")
    one_line_error(cp, "unknown step wrr-fast", "build-patched")
    assert not out.exists()  # nothing written before the steps are known to be valid


def test_gpu_proof_step_without_model(tmp_path: Path) -> None:
    """A measuring step with no model (no synth step ran) fails; the others still run; the exit status says so."""
    out = tmp_path / "proof"
    cp = run("gpu-proof.sh", str(out), "hpf", "wrr")
    assert cp.returncode == 1, cp.stderr
    assert "=== done" in (out / "summary.txt").read_text()
    assert cp.stderr.count("no model (synth failed?") == 2
    assert cp.stderr.strip().splitlines()[-1].startswith("error: failed steps: hpf wrr")


@pytest.mark.parametrize("args,needle", [
    ([], "OUTDIR is required"),
    (["OUT", "--cuda"], "unknown option --cuda"),
    (["OUT", "--arch", "sm90"], "--arch sm90: expected an SM number"),
    (["OUT", "--jobs", "0"], "--jobs 0: expected a positive integer"),
    (["OUT", "--jobs"], "--jobs needs a value"),
    (["OUT", "OTHER"], "one OUTDIR only"),
])
def test_cross_build_bad_arguments(tmp_path: Path, args: list[str], needle: str) -> None:
    """Bad arguments stop cross-build-cuda.sh before anything is downloaded, built or written."""
    args = [str(tmp_path / a) if a in ("OUT", "OTHER") else a for a in args]
    one_line_error(run("cross-build-cuda.sh", *args), needle)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,needle", [
    (["--reps", "0"], "must be at least 1"),
    (["--solo-reps", "0"], "must be at least 1"),
    (["--a-tokens", "-3"], "must be at least 1"),
])
def test_two_servers_bench_bad_counts(tmp_path: Path, args: list[str], needle: str) -> None:
    """two-servers-bench.py refuses counts below 1 before it sends anything (the servers need not exist)."""
    out = tmp_path / "ab.json"
    cp = subprocess.run(["python3", str(SCRIPTS / "effect" / "two-servers-bench.py"), "--a", "http://127.0.0.1:9",
                         "--b", "http://127.0.0.1:9", "--out", str(out), *args],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 2 and needle in cp.stderr and "Traceback" not in cp.stderr, cp.stderr
    assert not out.exists()
