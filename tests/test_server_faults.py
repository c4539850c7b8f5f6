"""Fault injection (issue 11): a serve killed with SIGKILL while its server loads, truncated and corrupt GGUF
files, and instances that cannot be created. Each ends in a one-line error and a non-zero exit, leaves nothing
half-written and nothing locked, and the next build and serve on the same cache work.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from xsched_llama.server import ServerProcess, free_port

from test_server_instances import common_args, server_binary  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "xsched_llama", *args]


def error_line(log: str) -> str:
    """error_line() is the server's last error line (its exit reason)."""
    lines = [ln for ln in log.splitlines() if " E " in ln]
    assert lines, log[-2000:]
    return lines[-1]


def leftovers(cache: Path) -> list[Path]:
    """leftovers() lists what an interrupted run may leave half-written in the cache: partial downloads and
    temporary files or directories."""
    found = [p for p in (cache / "models").glob("*") if p.suffix in (".part", ".tmp") or p.name.startswith(".")]
    tmp = cache / "tmp"
    if tmp.is_dir():
        found += list(tmp.iterdir())
    return found


def test_serve_killed_mid_load_restarts_cleanly(patched_cpu_server: Path, toolkit_cache: Path,
                                                default_model: Path, tmp_path: Path) -> None:
    """`xsched-llama serve` gets SIGKILL while its llama-server loads the model: the server goes with it (it
    would otherwise keep the port), no lock stays held, nothing is half-written, and build and serve work
    again on the same cache and port."""
    port = free_port()
    env = {**os.environ, "XSCHED_LLAMA_CACHE": str(toolkit_cache)}
    args = cli("serve", "-m", str(default_model), "--port", str(port), "--instance", "10:1:1",
               "--instance", "0:1:1", "--", "-c", "512", "-t", "1", "--no-warmup")
    out = tmp_path / "serve-1.log"
    with open(out, "wb") as fh:
        p = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=env)
    end = time.monotonic() + 120
    while b"loading model" not in out.read_bytes() and time.monotonic() < end and p.poll() is None:
        time.sleep(0.01)
    assert b"loading model" in out.read_bytes(), out.read_text()[-2000:]
    os.kill(p.pid, signal.SIGKILL)
    p.wait(10)
    # the server was told to go (SIGTERM on its parent's death) and freed the port
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
        except requests.ConnectionError:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"a llama-server still answers on port {port} after its serve was killed")
    assert leftovers(toolkit_cache) == []
    # no stale lock: the build is reported up to date at once (a held lock would make it wait: the timeout is a
    # liveness bound, not a speed figure)
    r = subprocess.run(cli("build", "--json"), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["cached"] is True and "waiting for another" not in r.stderr
    # serve again on the same port
    out2 = tmp_path / "serve-2.log"
    with open(out2, "wb") as fh:
        p2 = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=env)
    try:
        end = time.monotonic() + 120
        ok = False
        while time.monotonic() < end and p2.poll() is None and not ok:
            try:
                ok = requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            except requests.ConnectionError:
                time.sleep(0.2)
        assert ok, out2.read_text()[-2000:]
        r2 = requests.post(f"http://127.0.0.1:{port}/completion", json={"prompt": "Hi", "n_predict": 2,
                                                                        "priority": 10}, timeout=60)
        assert r2.status_code == 200 and r2.headers["X-Instance"] == "0"
    finally:
        p2.send_signal(signal.SIGINT)
        assert p2.wait(30) == 0, out2.read_text()[-2000:]
    assert leftovers(toolkit_cache) == []


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "header"])
@pytest.mark.parametrize("instances", [None, "10,0"])
def test_damaged_gguf_fails_cleanly(server_binary: Path, default_model: Path, tmp_path: Path,  # noqa: F811
                                    damage: str, instances: str | None) -> None:
    """A truncated GGUF, one with garbage after its header and one with a broken header: exit 1 with one line
    naming the instance and the loader's reason."""
    data = default_model.read_bytes()
    bad = tmp_path / f"{damage}.gguf"
    if damage == "truncated":
        bad.write_bytes(data[:len(data) // 2])
    elif damage == "corrupt":
        bad.write_bytes(data[:4096] + os.urandom(100_000))
    else:
        bad.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    args = ["-m", str(bad), "-c", "512", "--no-warmup", *(["--instances", instances] if instances else [])]
    s = ServerProcess(server_binary, args, log_path=tmp_path / "server.log", startup_timeout=60)
    with pytest.raises(Exception):
        s.start()
    assert s.wait() == 1
    line = error_line(s.log_text())
    prio = 10 if instances else 0
    assert f"instance 0 (priority {prio}) failed to start: the model '{bad}' could not be loaded (" in line, line
    assert re.search(r"within the file bounds|failed to read|error loading model", line), line


def test_instance_too_large_names_itself_and_its_memory(server_binary: Path, default_model: Path,  # noqa: F811
                                                        tmp_path: Path) -> None:
    """-c 2,000,000 (~44 GB of KV cache here): exit 1 with one line naming the instance and the memory its
    context wanted."""
    args = ["-m", str(default_model), "-c", "2000000", "-t", "1", "--no-warmup", "--instances", "10:1:1,0:1:1"]
    s = ServerProcess(server_binary, args, log_path=tmp_path / "server.log", startup_timeout=120)
    with pytest.raises(Exception):
        s.start()
    assert s.wait() == 1
    line = error_line(s.log_text())
    assert "instance 0 (priority 10) failed to start: its context (-c 2000000, 1 slot(s)) could not be created" in line
    m = re.search(r"it needs (\d+) MiB of host memory \(KV cache (\d+) MiB", line)
    assert m and int(m.group(2)) > 20000, line


def test_second_instance_that_cannot_be_created(server_binary: Path, default_model: Path,  # noqa: F811
                                                tmp_path: Path) -> None:
    """Instance 1 asks for 1,000 slots (more sequences than a context supports): exit 1 with one line naming
    instance 1 and llama's reason, after instance 0 was created."""
    args = [*common_args(default_model), "--instances", "10:1:1,0:1:1000"]
    s = ServerProcess(server_binary, args, log_path=tmp_path / "server.log", startup_timeout=60)
    with pytest.raises(Exception):
        s.start()
    assert s.wait() == 1
    line = error_line(s.log_text())
    assert "instance 1 (priority 0) failed to start: its context (-c 1024, 1000 slot(s)) could not be created" in line
    assert "n_seq_max" in line, line
