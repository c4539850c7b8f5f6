"""Soak (issue 11): a bounded run of mixed traffic against three levels on the CPU.

Eight clients send requests in a loop: three levels (and no priority), three endpoints, streaming or not,
1-16 tokens, each with its own marker; about one in six clients gives up early (a streaming client after
its first event, a waiting one after a short read timeout). Meanwhile an admin client changes weights,
instance 1's priority and the policy (HPF / WRR) every few seconds. Checked: every request is answered
exactly once with its own marker and length, or was given up by its client; no 5xx; every slot idle and
nothing pending at the end; the server's threads, file descriptors and RSS in the last minute stay within
bounds of the first minute (no leak).

XSCHED_LLAMA_SOAK_S sets the duration (default 150 s; the figures in docs/server.md are from a longer run).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from xsched_llama.server import ServerProcess

from test_server_instances import common_args, server_binary  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

SOAK_ENV = "XSCHED_LLAMA_SOAK_S"
N_CLIENTS = 8


def proc_sample(pid: int) -> dict[str, float]:
    """proc_sample() reads the server's thread count, open file descriptors and resident memory (MiB)."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"threads": float(fields["Threads"].strip()), "fds": float(len(os.listdir(f"/proc/{pid}/fd"))),
            "rss_mib": float(fields["VmRSS"].split()[0]) / 1024}


class Soak:
    """Soak runs the clients, the admin client and the sampler until `deadline`, recording every request."""

    def __init__(self, srv: ServerProcess, duration_s: float, seed: int = 11) -> None:
        self.srv = srv
        self.t0 = time.monotonic()
        self.deadline = self.t0 + duration_s
        self.seed = seed
        self.lock = threading.Lock()
        self.records: dict[int, str] = {}  # request id -> "answered" | "given up"
        self.problems: list[str] = []
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.admin_changes = 0
        self.next_id = 0

    def new_id(self) -> int:
        with self.lock:
            self.next_id += 1
            return self.next_id

    def record(self, rid: int, outcome: str) -> None:
        with self.lock:
            if rid in self.records:
                self.problems.append(f"request {rid} recorded twice ({self.records[rid]}, {outcome})")
            self.records[rid] = outcome

    def problem(self, what: str) -> None:
        with self.lock:
            self.problems.append(what)

    def one_request(self, rng: random.Random) -> None:
        rid = self.new_id()
        marker = f"soak{rid:06d}"
        n = rng.randint(1, 16)
        stream = rng.random() < 0.5
        give_up = rng.random() < 1 / 6
        endpoint = rng.choice(["/completion", "/v1/completions", "/v1/chat/completions"])
        prio: Any = rng.choice([10, 5, 0, None, "header"])
        headers = {"X-Priority": str(rng.choice([10, 5, 0]))} if prio == "header" else {}
        body: dict[str, Any] = {"ignore_eos": True, "temperature": 0, "stream": stream}
        if isinstance(prio, int):
            body["priority"] = prio
        if endpoint == "/v1/chat/completions":
            body.update(messages=[{"role": "user", "content": f"Say {marker}"}], max_tokens=n)
        elif endpoint == "/v1/completions":
            body.update(prompt=f"Echo {marker}", max_tokens=n)
        else:
            body.update(prompt=f"Repeat {marker}", n_predict=n)
        if stream and endpoint != "/completion":
            body["stream_options"] = {"include_usage": True}
        url = self.srv.url + endpoint
        try:
            if give_up and not stream:
                try:
                    requests.post(url, json=body, headers=headers, timeout=(5, rng.uniform(0.05, 0.5)))
                    self.record(rid, "answered")  # it was quick enough
                except requests.exceptions.ReadTimeout:
                    self.record(rid, "given up")
                return
            with requests.post(url, json=body, headers=headers, stream=stream, timeout=(5, 300)) as r:
                if r.status_code != 200:
                    self.problem(f"request {rid} {endpoint}: HTTP {r.status_code}: {r.text[:200]}")
                    return
                if not stream:
                    self.check(rid, endpoint, r.json(), marker, n)
                    self.record(rid, "answered")
                    return
                events = []
                for line in r.iter_lines():
                    if line.startswith(b"data: "):
                        events.append(line[6:])
                        if give_up:
                            self.record(rid, "given up")
                            return
                self.check_stream(rid, endpoint, events, marker, n)
                self.record(rid, "answered")
        except requests.RequestException as e:
            self.problem(f"request {rid} {endpoint}: {type(e).__name__}: {e}")

    def check(self, rid: int, endpoint: str, res: dict[str, Any], marker: str, n: int) -> None:
        if endpoint == "/completion":
            ok = marker in res["prompt"] and res["tokens_predicted"] == n
        else:
            ok = res["usage"]["completion_tokens"] == n
        if not ok:
            self.problem(f"request {rid} {endpoint}: wrong answer {json.dumps(res)[:300]}")

    def check_stream(self, rid: int, endpoint: str, events: list[bytes], marker: str, n: int) -> None:
        if endpoint == "/completion":
            final = json.loads(events[-1])
            ok = final.get("stop") is True and marker in final["prompt"] and final["tokens_predicted"] == n
        else:
            usage = [json.loads(e)["usage"] for e in events[:-1] if json.loads(e).get("usage")]
            ok = events[-1] == b"[DONE]" and bool(usage) and usage[-1]["completion_tokens"] == n
        if not ok:
            self.problem(f"request {rid} {endpoint}: wrong stream ending {events[-1][:300]!r}")

    def client(self, k: int) -> None:
        rng = random.Random(self.seed * 100 + k)
        while time.monotonic() < self.deadline:
            self.one_request(rng)
            time.sleep(rng.uniform(0, 0.3))

    def admin(self) -> None:
        rng = random.Random(self.seed)
        policies = ["HPF", "WRR"]
        while time.monotonic() < self.deadline:
            time.sleep(rng.uniform(1, 4))
            choice = rng.random()
            if choice < 0.4:
                body: dict[str, Any] = {"instance": rng.randrange(3), "weight": rng.randint(1, 5)}
            elif choice < 0.7:
                body = {"instance": 1, "priority": rng.choice([5, 6, 4])}
            else:
                body = {"policy": rng.choice(policies), "timeslice_us": rng.choice([2000, 5000, 20000])}
            r = requests.post(self.srv.url + "/xsched", json=body, timeout=60)
            if r.status_code not in (200, 501):
                self.problem(f"POST /xsched {body}: HTTP {r.status_code} {r.text[:200]}")
            self.admin_changes += 1

    def sampler(self) -> None:
        assert self.srv.pid is not None
        while time.monotonic() < self.deadline:
            self.samples.append((time.monotonic() - self.t0, proc_sample(self.srv.pid)))
            time.sleep(1)

    def run(self) -> None:
        threads = [threading.Thread(target=self.client, args=(k,)) for k in range(N_CLIENTS)]
        threads += [threading.Thread(target=self.admin), threading.Thread(target=self.sampler)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(self.deadline - time.monotonic() + 600)
            assert not t.is_alive(), "a soak thread hangs"

    def window(self, name: str, t0: float, t1: float) -> list[float]:
        return [s[name] for t, s in self.samples if t0 <= t <= t1]


@pytest.fixture
def soak_srv(server_binary: Path, default_model: Path, tmp_path: Path) -> Iterator[ServerProcess]:  # noqa: F811
    # no prompt cache (--cache-ram 0): its RAM grows by design with every new prompt, which is not a leak
    args = [*common_args(default_model), "--instances", "10:1:2,5:1:2,0:1:2", "--cache-ram", "0"]
    with ServerProcess(server_binary, args, log_path=tmp_path / "server.log") as s:
        yield s


def test_soak_mixed_traffic(soak_srv: ServerProcess) -> None:
    duration = float(os.environ.get(SOAK_ENV, "150"))
    assert duration >= 120, f"{SOAK_ENV} must be at least 120 s (a first and a last minute)"
    soak = Soak(soak_srv, duration)
    soak.run()
    srv = soak_srv
    answered = sum(1 for v in soak.records.values() if v == "answered")
    given_up = sum(1 for v in soak.records.values() if v == "given up")
    assert not soak.problems, soak.problems[:10]
    assert len(soak.records) == soak.next_id and answered > 50 and given_up > 5, (answered, given_up)
    # the end: every slot idle, nothing pending, and still serving every level
    end = time.monotonic() + 60
    while any(s["is_processing"] for s in srv.get("/slots").json()) and time.monotonic() < end:
        time.sleep(0.2)
    assert not any(s["is_processing"] for s in srv.get("/slots").json())
    assert all(i["pending"] == 0 for i in srv.get("/props").json()["instances"])
    for p in (10, 5, 0):
        assert srv.post("/completion", {"prompt": "ok", "n_predict": 1, "priority": p}).status_code == 200
    # resources: the last minute against the first (after 10 s of warm-up)
    first = {k: soak.window(k, 10, 60) for k in ("threads", "fds", "rss_mib")}
    last = {k: soak.window(k, duration - 50, duration) for k in ("threads", "fds", "rss_mib")}
    med = {k: (statistics.median(first[k]), statistics.median(last[k])) for k in first}
    figures = (f"soak {duration:.0f} s: {len(soak.records)} requests ({answered} answered, {given_up} given up), "
               f"{soak.admin_changes} POST /xsched; median first -> last minute: threads {med['threads'][0]:.0f} -> "
               f"{med['threads'][1]:.0f}, fds {med['fds'][0]:.0f} -> {med['fds'][1]:.0f}, "
               f"RSS {med['rss_mib'][0]:.1f} -> {med['rss_mib'][1]:.1f} MiB")
    print(figures)
    # httplib starts a thread (and a socket) per connection in flight, so both vary with the clients' timing
    assert med["threads"][1] <= max(first["threads"]) + N_CLIENTS, figures
    assert med["fds"][1] <= max(first["fds"]) + 2 * N_CLIENTS, figures
    assert med["rss_mib"][1] <= 1.10 * med["rss_mib"][0] + 16, figures
    assert "got exception" not in srv.log_text()
