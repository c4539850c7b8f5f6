"""Cancelling requests of prioritised instances (issue 11, D1 and D3).

D3: a client of a parked (lower-priority) instance that gives up must not let that instance's held decode run
next to the higher level. The server no longer releases the scheduler's gate for a cancel: the cancel stays
deferred until the decode runs, and once every request of the decode is cancelled, the decode stops at its
first graph node (llama's abort callback) instead of computing the rest of its batch.
D1: however a request ends (here: its client goes away in the middle of its prompt), its instance closes
its activity scope, so that the scheduler sees it Idle and lower levels run again.

`parked_cancel_gaps()` is shared with the GPU tests (tests/test_server_gpu.py).
"""

from __future__ import annotations

import json
import re
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from xsched_llama.server import ServerProcess

from test_server_instances import server_binary  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

TASKSET = Path("/usr/bin/taskset")


def prompt_of(srv: ServerProcess, n_tokens: int) -> str:
    """prompt_of() returns a prompt of about `n_tokens` tokens for the server's model."""
    unit = "The keeper of the lighthouse counted the ships that passed in the night. "
    n_unit = len(srv.post("/tokenize", {"content": unit}).json()["tokens"])
    return unit * max(1, n_tokens // n_unit)


def counter(srv: ServerProcess, name: str, instance: int) -> float:
    """counter() reads the instance's sample of a llamacpp:* family from /metrics."""
    m = re.search(rf'^llamacpp:{name}{{instance="{instance}",[^}}]*}} (\S+)$', srv.get("/metrics").text, re.M)
    assert m, name
    return float(m.group(1))


def busy(srv: ServerProcess, instance: int) -> bool:
    return any(s["is_processing"] for s in srv.get("/slots", params={"instance": instance}).json())


def wait_until(cond: Any, timeout_s: float, step_s: float = 0.05) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step_s)
    return bool(cond())


class Stream:
    """Stream is a streaming /completion on its own thread; `times` holds the arrival time of every event."""

    def __init__(self, srv: ServerProcess, body: dict[str, Any]) -> None:
        self.times: list[float] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(srv, body), daemon=True)
        self.thread.start()

    def _run(self, srv: ServerProcess, body: dict[str, Any]) -> None:
        try:
            with requests.post(srv.url + "/completion", json={**body, "stream": True}, stream=True,
                               timeout=600) as r:
                assert r.status_code == 200, r.text
                for line in r.iter_lines():
                    if line.startswith(b"data: "):
                        self.times.append(time.monotonic())
                    if self.stop.is_set():
                        return  # closes the connection: the server cancels the stream
        except BaseException as e:  # noqa: BLE001  (reported by the test)
            self.error = e

    def stop_and_join(self, timeout_s: float = 60) -> None:
        """stop_and_join() closes the stream (the client goes away) and waits for its thread."""
        self.stop.set()
        self.thread.join(timeout_s)

    def gaps(self, t0: float, t1: float) -> list[float]:
        """gaps() are the inter-event gaps (s) of events that arrived within [t0, t1]."""
        ts = list(self.times)
        return [b - a for a, b in zip(ts, ts[1:]) if t0 <= a and b <= t1]


def give_up_after(srv: ServerProcess, body: dict[str, Any], seconds: float) -> float:
    """give_up_after() posts `body` and closes the connection after `seconds` without an answer (a client that
    times out); returns the moment it disconnected."""
    data = json.dumps(body).encode()
    sock = socket.create_connection((srv.host, srv.port))
    sock.sendall(b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    sock.settimeout(seconds)
    try:
        got = sock.recv(1)
        assert not got, "the parked request was answered before its client gave up"
    except socket.timeout:
        pass
    sock.close()
    return time.monotonic()


def parked_cancel_gaps(srv: ServerProcess, low_prompt_tokens: int, high_tokens: int, before_s: float,
                       after_s: float, give_up_s: float = 1.0,
                       high_prompt_tokens: int = 0) -> tuple[list[float], list[float], Stream]:
    """parked_cancel_gaps() streams `high_tokens` tokens at priority 10 (after a prompt of `high_prompt_tokens`
    tokens), parks a priority-0 request with a prompt of `low_prompt_tokens` tokens behind it after `before_s`
    seconds, lets its client give up after `give_up_s`, and returns the high stream's inter-token gaps before
    the disconnect and during `after_s` after it.

    A token's cost grows with its position (attention over the KV cache: on the CPU here from 12 ms at
    position 5 to 25 ms at 400), so a long high prompt keeps the two windows comparable."""
    low_body = {"prompt": prompt_of(srv, low_prompt_tokens), "n_predict": 8, "priority": 0}
    high_prompt = prompt_of(srv, high_prompt_tokens) if high_prompt_tokens else "Count: 1 2 3"
    high = Stream(srv, {"prompt": high_prompt, "n_predict": high_tokens, "ignore_eos": True, "priority": 10})
    assert wait_until(lambda: len(high.times) >= 5, 60), high.error
    t_start = high.times[-1]
    time.sleep(before_s)
    t_gone = give_up_after(srv, low_body, give_up_s)
    assert wait_until(lambda: high.times[-1] >= t_gone + after_s or not high.thread.is_alive(), after_s + 60)
    assert high.thread.is_alive() and high.times[-1] >= t_gone + after_s, "the high stream ended too early"
    return high.gaps(t_start, t_gone), high.gaps(t_gone, t_gone + after_s), high


@pytest.fixture(scope="module")
def one_core(server_binary: Path, default_model: Path,  # noqa: F811
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server of the issue's D3 reproduction: pinned to one core, one slot per level, one thread each."""
    if not TASKSET.is_file():
        pytest.skip("taskset is not installed")
    tmp = tmp_path_factory.mktemp("srv-cancel")
    args = ["-c", "0", str(server_binary), "-m", str(default_model), "--instances", "10:1:1,0:1:1",
            "-t", "1", "-tb", "1", "-c", "4096", "--no-warmup", "--metrics"]
    with ServerProcess(TASKSET, args, log_path=tmp / "server.log") as s:
        yield s


def test_cancel_of_parked_request_keeps_priority(one_core: ServerProcess) -> None:
    """D3: the high stream's median inter-token gap over the 3 s after the parked client gives up stays within
    1.2x of before (it was 21 ms -> 40 ms when the cancel released the gate), the parked instance computes
    nothing of the cancelled prompt, and its slot is released once it may run again.

    The high stream starts after a 1,000-token prompt, so that its tokens cost about the same in both windows.
    The machine is shared, so a burst of outside load on the pinned core can spoil one measurement: the best
    of up to three attempts counts (with the defect, every attempt gives about 2x)."""
    srv = one_core
    seen: list[str] = []
    for _attempt in range(3):
        decodes_before = counter(srv, "n_decode_total", 1)
        before, after, high = parked_cancel_gaps(srv, low_prompt_tokens=3000, high_tokens=600, before_s=1.5,
                                                 after_s=3.0, high_prompt_tokens=1000)
        try:
            assert len(before) >= 20 and len(after) >= 20, (len(before), len(after))
            m_before, m_after = statistics.median(before), statistics.median(after)
            seen.append(f"{m_before * 1e3:.1f} -> {m_after * 1e3:.1f} ms")
            print(f"D3 attempt {len(seen)}: median inter-token gap {seen[-1]} ({len(before)} / {len(after)} gaps)")
            # parked the whole time: the instance has not finished a decode for the request that is gone
            assert busy(srv, 1)
            assert counter(srv, "n_decode_total", 1) == decodes_before, "the cancelled decode ran"
        finally:
            high.thread.join(120)  # the next measurement (and test) needs the high level idle
        assert high.error is None, high.error
        # once the high level is idle, the decode runs, stops at its first node, and the slot is free
        assert wait_until(lambda: not busy(srv, 1), 10)
        assert counter(srv, "n_decode_total", 1) == decodes_before
        if m_after <= 1.2 * m_before:
            break
    else:
        pytest.fail(f"median inter-token gap before -> after the disconnect: {'; '.join(seen)} (bound 1.2x)")
    assert "decode aborted: all 1 requests of the batch were cancelled" in srv.log_text()
    # the instance serves again, with a consistent KV cache
    r = srv.post("/completion", {"prompt": "Hello", "n_predict": 4, "priority": 0})
    assert r.status_code == 200 and r.json()["tokens_predicted"] == 4


def scheduler_rows(srv: ServerProcess, instance: int) -> list[dict[str, Any]]:
    return [q for q in srv.get("/xsched").json()["queues"] if q["name"].startswith(f"inst{instance}/")]


def check_cancel_mid_prompt_goes_idle(srv: ServerProcess, prompt_tokens: int) -> None:
    """D1: a priority-10 client goes away in the middle of its prompt (the last decode has no output); once its
    slot is idle, its queues are idle with no scope open, and a priority-0 request completes within 10 s."""
    body = {"prompt": prompt_of(srv, prompt_tokens), "n_predict": 8, "priority": 10}
    done = threading.Event()

    def leave_mid_prompt() -> None:
        try:
            requests.post(srv.url + "/completion", json=body, timeout=(5, 0.4))
        except requests.RequestException:
            pass
        done.set()

    threading.Thread(target=leave_mid_prompt, daemon=True).start()
    assert wait_until(lambda: busy(srv, 0), 10)
    assert done.wait(10)
    assert wait_until(lambda: not busy(srv, 0), 60)
    if srv.get("/xsched").json()["available"]:
        assert wait_until(lambda: all(q["state"] == "idle" and q["active_scopes"] == 0
                                      for q in scheduler_rows(srv, 0)), 5), scheduler_rows(srv, 0)
    t0 = time.monotonic()
    r = srv.post("/completion", {"prompt": "Hello", "n_predict": 8, "priority": 0}, timeout=10)
    assert r.status_code == 200, r.text
    assert time.monotonic() - t0 < 10  # a liveness bound, not a speed figure


def test_cancel_mid_prompt_leaves_instance_idle(one_core: ServerProcess) -> None:
    check_cancel_mid_prompt_goes_idle(one_core, prompt_tokens=3000)
