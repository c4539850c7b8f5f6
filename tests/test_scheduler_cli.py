"""`xsched-llama scheduler` and `scheduler status`: the real xschedd (installed with the core), real sockets.

No llama.cpp build needed: the daemon is started through the CLI, asked for its status, stopped with SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from xsched_llama import scheduler

CLI = [sys.executable, "-m", "xsched_llama"]


def _start(sock: Path, *args: str) -> subprocess.Popen[str]:
    p = subprocess.Popen([*CLI, "scheduler", "--socket", str(sock), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while not sock.exists():
        if p.poll() is not None or time.monotonic() > deadline:
            out = p.communicate()[0] if p.poll() is not None else ""
            pytest.fail(f"xschedd did not start: {out}")
        time.sleep(0.05)
    return p


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    sock = tmp_path / "run" / "xschedd.sock"
    p = _start(sock, "--policy", "wrr", "--timeslice-us", "2000")
    yield sock, p
    if p.poll() is None:
        p.kill()
        p.wait()


def test_status_and_clean_stop(daemon: tuple[Path, subprocess.Popen[str]]) -> None:
    sock, p = daemon
    assert (sock.stat().st_mode & 0o777) == 0o600
    assert (sock.parent.stat().st_mode & 0o777) == 0o700
    out = subprocess.run([*CLI, "scheduler", "status", "--socket", str(sock), "--json"], capture_output=True,
                         text=True, check=True).stdout
    data = json.loads(out)
    assert data["daemon"]["policy"] == "WRR" and data["daemon"]["timeslice_us"] == 2000
    assert data["daemon"]["pid"] == p.pid  # the CLI exec'ed the daemon: one process, in the foreground
    assert data["processes"] == []
    text = subprocess.run([*CLI, "scheduler", "--socket", str(sock), "status"], capture_output=True, text=True,
                          check=True).stdout
    assert text.startswith(f"xschedd pid {p.pid} at {sock}: policy WRR, timeslice 2000 us, 0/64 processes")
    p.send_signal(signal.SIGTERM)
    log = p.communicate(timeout=10)[0]
    assert p.returncode == 0
    assert not sock.exists()
    assert "stopping (SIGTERM): released 0 queues of 0 processes" in log


def test_status_without_daemon_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run([*CLI, "scheduler", "status", "--socket", str(tmp_path / "none.sock")], capture_output=True,
                       text=True)
    assert r.returncode == 12
    assert r.stderr.strip().splitlines() == [f"error: no global scheduler at {tmp_path / 'none.sock'} "
                                             "(No such file or directory)"]


def test_status_of_a_socket_that_is_not_ours(tmp_path: Path) -> None:
    path = tmp_path / "other.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    r = subprocess.Popen([*CLI, "scheduler", "status", "--socket", str(path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    conn, _ = srv.accept()
    conn.recv(64)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    conn.close()
    _, err = r.communicate(timeout=20)
    srv.close()
    assert r.returncode == 12
    assert err.strip() == f"error: {path} is not an xsched scheduler (it answered 'HTTP/1.1 400 Bad Request')"


def test_second_daemon_and_bad_options_refused(daemon: tuple[Path, subprocess.Popen[str]], tmp_path: Path) -> None:
    sock, _ = daemon
    r = subprocess.run([*CLI, "scheduler", "--socket", str(sock)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.count("another scheduler is listening at") == 1
    (tmp_path / "file").write_text("x")
    r = subprocess.run([*CLI, "scheduler", "--socket", str(tmp_path / "file")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "exists and is not a socket: refusing to replace it" in r.stderr
    assert (tmp_path / "file").read_text() == "x"  # nothing replaced
    r = subprocess.run([*CLI, "scheduler", "--socket", str(tmp_path / "x.sock"), "--policy", "fifo"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    long = tmp_path / ("d" * 120) / "x.sock"
    r = subprocess.run([*CLI, "scheduler", "--socket", str(long)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == (f"error: socket path {long} is longer than 107 bytes "
                                                      "(a Unix socket's limit)")
    assert not long.parent.exists()


def test_serve_option_needs_the_patched_server(tmp_path: Path) -> None:
    r = subprocess.run([*CLI, "serve", "--vanilla", "--xsched-scheduler", str(tmp_path / "s.sock")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: --instance/--instances/--max-waiting/--policy/--xsched-scheduler need the patched server "
                                "(drop --vanilla)")


def test_default_socket_is_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert scheduler.default_socket() == tmp_path / "xsched-llama" / "xschedd.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert scheduler.default_socket() == Path(f"/tmp/xsched-llama-{os.getuid()}/xschedd.sock")
    assert scheduler.socket_path("rel.sock") == Path.cwd() / "rel.sock"
