"""Admission control by priority (docs/server.md, "Admission control"): bounds on waiting requests, 429s.

Real patched CPU servers on 127.0.0.1 with the default model. An instance's waiting requests are its live
completion requests beyond its slots; `--instances P:W:NP:Q` bounds them per instance, `--xsched-max-waiting N`
over all instances, where a more important arrival evicts the newest waiting request of the lowest priority below it.
Every request below carries its own id; each one must get exactly one answer: 200 with its id in the prompt, or 429
with Retry-After and the OpenAI-style body, and the 429s must match the counters of /metrics and GET /xsched.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from xsched_llama.server import ServerProcess

from test_server_instances import common_args, server_binary  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def send(url: str, rid: str, priority: int, n_predict: int, stream: bool,
         barrier: threading.Barrier | None = None) -> dict[str, Any]:
    """send() posts one /completion with the id `rid` in its prompt and returns what came back, checked for shape."""
    body = {"prompt": f"Repeat {rid} {rid}", "n_predict": n_predict, "ignore_eos": True, "temperature": 0,
            "priority": priority, "stream": stream}
    if barrier is not None:
        barrier.wait()
    r = requests.post(url + "/completion", json=body, stream=stream, timeout=600)
    out: dict[str, Any] = {"rid": rid, "priority": priority, "status": r.status_code, "headers": dict(r.headers)}
    if r.status_code == 200:
        if stream:
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith(b"data: ")]
            finals = [e for e in events if e.get("stop")]
            assert len(finals) == 1, events[-3:]
            final = finals[0]
        else:
            final = r.json()
        out["prompt"] = final["prompt"]
        out["tokens_predicted"] = final["tokens_predicted"]
    else:
        out["body"] = r.json()
    return out


def check_429(a: dict[str, Any]) -> None:
    assert a["status"] == 429, a
    assert int(a["headers"]["Retry-After"]) >= 1
    err = a["body"]["error"]
    assert err["code"] == 429 and err["type"] == "rate_limit_error" and isinstance(err["message"], str)
    assert "\n" not in err["message"] and "retry later" in err["message"]


def check_served(a: dict[str, Any], n_predict: int) -> None:
    assert a["status"] == 200, a
    assert a["rid"] in a["prompt"]
    assert a["tokens_predicted"] == n_predict


def metric(text: str, name: str, instance: int) -> float:
    m = re.search(rf'^xsched:{name}\{{instance="{instance}",priority="-?\d+",name="[^"]*"\}} (\S+)$', text, re.M)
    assert m, f"xsched:{name} of instance {instance} missing"
    return float(m.group(1))


def instances(url: str) -> list[dict[str, Any]]:
    return requests.get(url + "/xsched", timeout=30).json()["instances"]


def wait_idle(url: str, deadline_s: float = 120.0) -> list[dict[str, Any]]:
    end = time.monotonic() + deadline_s
    rows = instances(url)
    while time.monotonic() < end and any(r["live"] or r["pending"] for r in rows):
        time.sleep(0.2)
        rows = instances(url)
    return rows


@pytest.fixture(scope="module")
def bounded(server_binary: Path, default_model: Path,  # noqa: F811
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A high instance (priority 10, 1 slot, no bound) and a low one (priority 0, 1 slot, at most 2 waiting)."""
    tmp = tmp_path_factory.mktemp("srv-admission")
    args = [*common_args(default_model), "--instances", "10:1:1,0:1:1:2"]
    with ServerProcess(server_binary, args, log_path=tmp / "server.log") as s:
        yield s


def test_xsched_lists_bounds(bounded: ServerProcess) -> None:
    snap = requests.get(bounded.url + "/xsched", timeout=30).json()
    assert snap["admission"] == {"max_waiting": None, "waiting": 0}
    high, low = snap["instances"]
    assert high["max_waiting"] is None and low["max_waiting"] == 2
    assert all(r["waiting"] == 0 and r["live"] == 0 for r in (high, low))


def test_overload_sheds_low_priority(bounded: ServerProcess) -> None:
    """12 low-priority clients at once against 1 slot + 2 waiting places, 6 high-priority requests among them."""
    url = bounded.url
    before = requests.get(url + "/metrics", timeout=30).text
    rejected0 = [metric(before, "requests_rejected_total", i) for i in (0, 1)]
    n_low, n_high, n_predict = 12, 6, 24
    barrier = threading.Barrier(n_low + 1)
    with ThreadPoolExecutor(max_workers=n_low + 2) as pool:
        lows = [pool.submit(send, url, f"low{i:02d}", 0, n_predict, i % 2 == 1, barrier) for i in range(n_low)]
        barrier.wait()  # every low client sends now
        highs = [pool.submit(send, url, f"high{i:02d}", 10, n_predict, i % 2 == 0) for i in range(n_high)]
        answers = [f.result() for f in lows + highs]

    # one answer per request id, none lost
    assert sorted(a["rid"] for a in answers) == sorted([f"low{i:02d}" for i in range(n_low)] +
                                                       [f"high{i:02d}" for i in range(n_high)])
    for a in answers:
        if a["priority"] == 10:
            check_served(a, n_predict)
            assert a["headers"]["X-Instance"] == "0"
        elif a["status"] == 200:
            check_served(a, n_predict)
        else:
            check_429(a)
    refused = [a for a in answers if a["status"] == 429]
    served_low = [a for a in answers if a["priority"] == 0 and a["status"] == 200]
    # 12 at once cannot all fit into 1 slot + 2 waiting places
    assert refused and len(served_low) >= 3
    print(f"\noverload: {len(refused)} low-priority 429s, {len(served_low)} low served, "
          f"{sum(a['priority'] == 10 for a in answers)} high served")

    after = requests.get(url + "/metrics", timeout=30).text
    assert metric(after, "requests_rejected_total", 1) - rejected0[1] == len(refused)
    assert metric(after, "requests_rejected_total", 0) - rejected0[0] == 0
    assert metric(after, "requests_evicted_total", 1) == 0  # no global bound: refusals only
    rows = wait_idle(url)
    assert rows[1]["rejected"] == metric(after, "requests_rejected_total", 1)
    assert all(r["waiting"] == 0 and r["live"] == 0 for r in rows)
    check_served(send(url, "low-after", 0, 2, False), 2)  # the low level still serves


def test_global_bound_evicts_lower_priority(server_binary: Path, default_model: Path,  # noqa: F811
                                            tmp_path: Path) -> None:
    """--xsched-max-waiting 2: once two low-priority requests wait, high-priority arrivals evict them (429)."""
    args = [*common_args(default_model), "--instances", "10:1:1,0:1:1", "--xsched-max-waiting", "2"]
    with ServerProcess(server_binary, args, log_path=tmp_path / "server.log") as s:
        url = s.url
        assert requests.get(url + "/xsched", timeout=30).json()["admission"]["max_waiting"] == 2
        with ThreadPoolExecutor(max_workers=12) as pool:
            # a long low request holds the low slot; then two more wait (the global bound), a fourth is refused
            lows = [pool.submit(send, url, "low-run", 0, 400, True)]
            deadline = time.monotonic() + 60
            while instances(url)[1]["live"] < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            lows += [pool.submit(send, url, f"low-wait{i}", 0, 8, i == 0) for i in range(2)]
            while instances(url)[1]["waiting"] < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert instances(url)[1]["waiting"] == 2
            refused_low = send(url, "low-over", 0, 8, False)
            check_429(refused_low)  # no request below priority 0 waits: the arrival itself is refused
            # three high requests: one takes the high slot, the next two each evict a waiting low request
            highs = [pool.submit(send, url, f"high{i}", 10, 8, i == 1) for i in range(3)]
            answers = [f.result() for f in highs + lows]
        for a in answers[:3]:
            check_served(a, 8)
        check_served(answers[3], 400)  # the low request that had its slot is never evicted
        evicted = [a for a in answers[4:] if a["status"] == 429]
        for a in evicted:
            check_429(a)
            assert "evicted" in a["body"]["error"]["message"]
        for a in answers[4:]:
            if a["status"] != 429:
                check_served(a, 8)
        # the second and the third high request each found the bound full (only one of them when the first high
        # request had already ended)
        assert 1 <= len(evicted) <= 2
        text = requests.get(url + "/metrics", timeout=30).text
        assert metric(text, "requests_evicted_total", 1) == len(evicted)
        assert metric(text, "requests_rejected_total", 1) == len(evicted) + 1  # + low-over
        assert metric(text, "requests_rejected_total", 0) == 0
        print(f"\nglobal bound: {len(evicted)} low-priority requests evicted, 1 refused, 3 high served")
        rows = wait_idle(url)
        assert rows[1]["evicted"] == len(evicted) and rows[1]["rejected"] == len(evicted) + 1
        assert all(r["waiting"] == 0 and r["live"] == 0 for r in rows)


@pytest.mark.parametrize("args,option", [
    (["--instances", "10:1:1:0"], "--instances"),
    (["--instances", "10:1:1:-3"], "--instances"),
    (["--instances", "10:1:1:x"], "--instances"),
    (["--instances", "10:1:1:2:5"], "--instances"),
    (["--instances", "10:1:1:"], "--instances"),
    (["--xsched-max-waiting", "0"], "--xsched-max-waiting"),
    (["--xsched-max-waiting", "-1"], "--xsched-max-waiting"),
    (["--xsched-max-waiting", "many"], "--xsched-max-waiting"),
    (["--xsched-max-waiting", "2.5"], "--xsched-max-waiting"),
])
def test_bad_bound_exits(server_binary: Path, default_model: Path, tmp_path: Path,  # noqa: F811
                         args: list[str], option: str) -> None:
    s = ServerProcess(server_binary, [*common_args(default_model), *args], log_path=tmp_path / "server.log",
                      startup_timeout=60)
    with pytest.raises(Exception):
        s.start()
    assert s.wait() != 0
    lines = [line for line in s.log_text().splitlines() if f"invalid {option}" in line]
    assert len(lines) == 1, s.log_text()[-2000:]
    assert ">= 1" in lines[0]
