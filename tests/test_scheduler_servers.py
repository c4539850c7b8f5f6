"""Two patched CPU llama-servers (the embedded model) joined to one xschedd: HPF across processes and the kill
tests of issue 15 (SIGKILL of either server and of the daemon during load).

Behaviour, not speed: the low server emits (almost) no token while the high server's request streams, the daemon
shows it suspended, and after every kill the survivors finish their requests with nothing left suspended.
Repetitions: XSCHED_LLAMA_KILL_REPEAT (default 2 in CI; the issue's 20 on the CPU and the GPU, see docs/scheduler.md).
XSCHED_LLAMA_KILL_SCALE multiplies the tokens of the requests that must outlast a suspension's detection (default 1;
4 on the GPU, where a 60-token request ends in ~0.2 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from xsched_llama import scheduler
from xsched_llama.server import ServerProcess

pytestmark = pytest.mark.slow

REPEAT = int(os.environ.get("XSCHED_LLAMA_KILL_REPEAT", "2"))
SCALE = int(os.environ.get("XSCHED_LLAMA_KILL_SCALE", "1"))
FALLBACK_LINE = "scheduling locally until it is back"


@pytest.fixture(scope="module")
def server_binary(request: pytest.FixtureRequest) -> Path:
    override = os.environ.get("XSCHED_LLAMA_TEST_SERVER")
    return Path(override) if override else Path(request.getfixturevalue("patched_cpu_server"))


class Daemon:
    """Daemon is one xschedd process (started the way `xsched-llama scheduler` starts it)."""

    def __init__(self, sock: Path, log: Path, poll: bool = False) -> None:
        self.sock, self.log, self.poll = sock, log, poll
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        sock = self.sock
        sock.parent.mkdir(mode=0o700, exist_ok=True)
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(scheduler.daemon_command(sock, poll=self.poll), stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                scheduler.status(sock)
                return self
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def status(self) -> dict[str, Any]:
        return scheduler.status(self.sock)


@pytest.fixture
def daemon(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Daemon]:
    # indirect parameter: True = the daemon polls for edges while a queue is Ready (--poll)
    d = Daemon(tmp_path / "run" / "xschedd.sock", tmp_path / "xschedd.log", poll=getattr(request, "param", False)).start()
    yield d
    d.kill()


@pytest.fixture
def start(server_binary: Path, default_model: Path, tmp_path: Path, daemon: Daemon) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start_server(priority: int, join: str = "env") -> ServerProcess:
        # join: through XSCHED_SCHEDULER ("env") or llama-server's own --xsched-scheduler PATH ("option")
        args = ["-m", str(default_model), "-c", "1024", "-t", "1", "-tb", "1", "--no-warmup",
                "--instances", f"{priority}:1:1"]
        env = {scheduler.SOCKET_ENV: str(daemon.sock)}
        if join == "option":
            args, env = [*args, "--xsched-scheduler", str(daemon.sock)], {}
        srv = ServerProcess(server_binary, args, log_path=tmp_path / f"server-p{priority}-{len(started)}.log",
                            env=env)
        started.append(srv)
        return srv.start()

    yield start_server
    for s in started:
        s.stop()


class Stream:
    """Stream is one streaming /completion in a thread, recording when each token arrived."""

    def __init__(self, srv: ServerProcess, n_predict: int) -> None:
        self.times: list[float] = []
        self.predicted = 0  # the final event's tokens_predicted (a token of a random-weight model may add no text)
        self.error: str | None = None
        self.done = threading.Event()
        body = {"prompt": "Count: 1 2 3", "n_predict": n_predict, "ignore_eos": True, "stream": True,
                "temperature": 0}
        self.thread = threading.Thread(target=self._run, args=(srv.url, body), daemon=True)
        self.thread.start()

    def _run(self, url: str, body: dict[str, Any]) -> None:
        try:
            with requests.post(url + "/completion", json=body, stream=True, timeout=600) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    if line.startswith(b"data: "):
                        ev = json.loads(line[6:])
                        if ev.get("content"):
                            self.times.append(time.monotonic())
                        if ev.get("stop"):
                            self.predicted = int(ev.get("tokens_predicted", 0))
        except Exception as e:  # a killed server ends its stream: the test decides whether that is expected
            self.error = str(e)
        finally:
            self.done.set()

    def wait_tokens(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.times) < n:
            assert not self.done.is_set() or len(self.times) >= n, f"stream ended early: {self.error}"
            assert time.monotonic() < deadline, f"only {len(self.times)} tokens in {timeout} s"
            time.sleep(0.01)

    def finish(self, timeout: float = 300) -> None:
        assert self.done.wait(timeout), "stream did not finish"


def queues_of(status: dict[str, Any], srv: ServerProcess) -> list[dict[str, Any]]:
    for p in status["processes"]:
        if p["pid"] == srv.pid:
            return list(p["queues"])
    return []


def suspended(d: Daemon, srv: ServerProcess) -> bool:
    qs = queues_of(d.status(), srv)
    return bool(qs) and all(q["suspended"] for q in qs)


def wait_until(pred: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def nothing_suspended(srv: ServerProcess) -> bool:
    x = srv.get("/xsched").json()
    return not any(q["suspended"] for q in x["queues"])


@pytest.mark.parametrize("daemon", [False, True], indirect=True, ids=["sleeping", "polling"])
def test_hpf_across_processes(daemon: Daemon, start: Callable[..., ServerProcess]) -> None:
    low, high = start(0), start(10, join="option")
    st = daemon.status()
    assert {p["pid"] for p in st["processes"]} == {low.pid, high.pid}
    assert all(q["priority"] == 0 for q in queues_of(st, low)) and queues_of(st, low)
    assert all(q["priority"] == 10 for q in queues_of(st, high)) and queues_of(st, high)
    xs = high.get("/xsched").json()
    assert xs["policy"] == "HPF" and xs["n_queues"] >= 1
    # joined: the admin API says so and carries the daemon's view of every process, the other one included
    assert xs["scheduler"] == "global", xs["scheduler"]
    assert {p["pid"] for p in xs["global"]["processes"]} == {low.pid, high.pid}, xs["global"]
    b = Stream(low, 400)
    b.wait_tokens(10)
    a = Stream(high, 48)
    seen_suspended = False
    while not a.done.is_set():
        seen_suspended = seen_suspended or suspended(daemon, low)
        time.sleep(0.02)
    a.finish()
    assert a.error is None and a.predicted == 48
    lo, hi = a.times[0], a.times[-1]
    b_during = sum(1 for t in b.times if lo < t < hi)
    b_before = [t for t in b.times if t <= lo]
    rate = (len(b_before) - 1) / (b_before[-1] - b_before[0]) if len(b_before) > 1 else 0.0
    print(f"high: 48 tokens in {hi - lo:.2f} s; low: {b_during} tokens meanwhile (alone it ran at {rate:.0f} tok/s)")
    assert seen_suspended, "the daemon never showed the low server suspended while the high one streamed"
    assert b_during <= 4, f"the low server emitted {b_during} tokens while the high one streamed"
    b.finish()
    assert b.error is None and b.predicted == 400  # resumed after the high request, finished
    assert nothing_suspended(low) and nothing_suspended(high)
    assert not any(q["suspended"] for p in daemon.status()["processes"] for q in p["queues"])
    mode = "polls for edges while a queue is Ready" if daemon.poll else "sleeps until a doorbell rings"
    assert mode in daemon.log.read_text()


@pytest.mark.parametrize("victim", ["high", "low"])
def test_sigkill_a_server_during_load(daemon: Daemon, start: Callable[..., ServerProcess], victim: str) -> None:
    survivor = start(0 if victim == "high" else 10)
    for i in range(REPEAT):
        other = start(10 if victim == "high" else 0)
        low, high = (survivor, other) if victim == "high" else (other, survivor)
        b = Stream(low, 3000 if victim == "low" else 200)
        b.wait_tokens(5)
        a = Stream(high, 3000 if victim == "high" else 60 * SCALE)
        a.wait_tokens(3)
        wait_until(lambda: suspended(daemon, low), what="the low server suspended")
        t0 = time.monotonic()
        other.proc.kill()  # type: ignore[union-attr]
        other.proc.wait()  # type: ignore[union-attr]
        wait_until(lambda: len(daemon.status()["processes"]) == 1, what="the killed server dropped")
        dropped_ms = (time.monotonic() - t0) * 1000
        if victim == "high":
            n = len(b.times)
            wait_until(lambda: len(b.times) > n + 3, what="the low server resumed")
            b.finish()
            assert b.error is None and b.predicted == 200
        else:
            a.finish()
            assert a.error is None and a.predicted == 60 * SCALE
        print(f"kill {i + 1}/{REPEAT} of the {victim} server: dropped by the daemon after {dropped_ms:.0f} ms")
        wait_until(lambda: nothing_suspended(survivor), what="nothing suspended in the survivor")
        assert not any(q["suspended"] for q in queues_of(daemon.status(), survivor))
        r = survivor.post("/completion", {"prompt": "Hi", "n_predict": 4, "temperature": 0}, timeout=120)
        assert r.status_code == 200


def test_sigkill_the_daemon_during_load(daemon: Daemon, start: Callable[..., ServerProcess]) -> None:
    low, high = start(0), start(10)
    n = 150 * SCALE
    for i in range(REPEAT):
        b = Stream(low, n)
        b.wait_tokens(5)
        a = Stream(high, n)
        a.wait_tokens(3)
        wait_until(lambda: suspended(daemon, low), what="the low server suspended")
        daemon.kill()
        # both keep serving: the low server runs again (local scheduling), both requests finish
        a.finish()
        b.finish()
        assert a.error is None and a.predicted == n and b.error is None and b.predicted == n
        for s in (low, high):
            assert s.log_text().count(FALLBACK_LINE) == i + 1, s.log_tail(5)
            assert nothing_suspended(s)
        daemon.start()
        wait_until(lambda: {p["pid"] for p in daemon.status()["processes"]} == {low.pid, high.pid}, timeout=10,
                   what="both servers re-adopted")
        for s in (low, high):  # the daemon lists a process at registration, just before it logs the join
            wait_until(lambda: s.log_text().count("joined the global scheduler") == i + 2, timeout=10,
                       what="the join logged")
    # and the re-adopted servers are scheduled across processes again
    b = Stream(low, 200)
    b.wait_tokens(5)
    a = Stream(high, 40)
    seen = False
    while not a.done.is_set():
        seen = seen or suspended(daemon, low)
        time.sleep(0.02)
    assert seen
    a.finish()
    b.finish()


@pytest.mark.parametrize("path,why", [("relative.sock", "absolute path"), ("/" + "x" * 120, "longer than 107 bytes")])
def test_bad_scheduler_option_is_one_line(server_binary: Path, default_model: Path, tmp_path: Path,
                                          path: str, why: str) -> None:
    srv = ServerProcess(server_binary, ["-m", str(default_model), "-c", "256", "--xsched-scheduler", path],
                        log_path=tmp_path / "server.log", startup_timeout=60)
    with pytest.raises(Exception):
        srv.start()
    assert srv.wait() != 0
    lines = [ln for ln in srv.log_text().splitlines() if "xsched-scheduler" in ln and not ln.startswith("+ ")]
    assert len(lines) == 1 and why in lines[0] and "XSCHED_SCHEDULER=" in lines[0], srv.log_text()[-2000:]
