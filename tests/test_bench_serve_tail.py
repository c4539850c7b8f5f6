"""Placing the interactive TPOT/ITL tail: the server's decode time per token, the GET /xsched sampler (against a
small fake server) and the classification of every inter-token gap by batch state and other prompts."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from xsched_llama.bench import tail
from xsched_llama.bench.client import Completion, now
from xsched_llama.bench.sampler import IDLE, RUNNING, SUSPENDED, XschedSampler, batch_state
from xsched_llama.bench.servemetrics import class_metrics, server_tpot_ms, tpot_outside_ms


def req(t_send: float, ttft: float, gaps: list[float], prompt_ms: float = 20.0, predicted_ms: float | None = None
        ) -> Completion:
    times = [t_send + ttft]
    for g in gaps:
        times.append(times[-1] + g)
    n = len(times)
    pm = predicted_ms if predicted_ms is not None else (times[-1] - times[0]) * 1e3
    return Completion(task="interactive", priority=10, n_predict=n, prompt_tokens=50, t_send=t_send,
                      t_first=times[0], t_end=times[-1], tokens=n, token_times=times,
                      timings={"prompt_ms": prompt_ms, "predicted_n": n, "predicted_ms": pm})


def test_server_tpot_and_the_rest() -> None:
    c = req(0.0, 0.05, [0.010] * 10, predicted_ms=90.0)        # client 10 ms/token, server 9 ms/token
    assert tpot_outside_ms(c) == pytest.approx(1.0)
    assert server_tpot_ms(c) == pytest.approx(9.0)
    one = req(0.0, 0.05, [])
    assert server_tpot_ms(one) is None and tpot_outside_ms(one) is None
    bare = req(0.0, 0.05, [0.01] * 3)
    bare.timings = {}
    assert server_tpot_ms(bare) is None
    m = class_metrics([c, req(1.0, 0.05, [0.02] * 4, predicted_ms=60.0), bare], 0.0, 2.0)
    assert m["server_tpot_n"] == 2 and m["itl_n"] == 10 + 4 + 3
    assert m["p99_server_tpot_ms"] == pytest.approx(15.0, rel=0.05)
    assert m["median_tpot_outside_ms"] == pytest.approx(3.0)     # (1 + 5) / 2
    assert m["slowest_tpot"][0]["server_tpot_ms"] == pytest.approx(15.0)


def row(state: str = "ready", suspended: bool = False, in_flight: int = 0, scopes: int = 0, units: int = 0,
        name: str = "inst1/cpu", priority: int = 0) -> dict[str, Any]:
    return {"name": name, "priority": priority, "state": state, "suspended": suspended, "in_flight": in_flight,
            "active_scopes": scopes, "units": units, "suspended_us": 0,
            "preemption": {"count": 0, "measured": 0, "sum_us": 0, "max_us": 0, "buckets_le_us": [], "buckets": [0]}}


def test_batch_state_of_one_sample() -> None:
    assert batch_state([row("ready")]) == RUNNING
    assert batch_state([row("idle", in_flight=1)]) == RUNNING
    assert batch_state([row("ready", suspended=True)]) == SUSPENDED
    assert batch_state([row("idle", suspended=True, scopes=1)]) == SUSPENDED
    assert batch_state([row("idle", suspended=True)]) == IDLE          # held back, but nothing to run
    assert batch_state([row("idle")]) == IDLE
    assert batch_state([row("ready", suspended=True), row("ready", name="inst1/cuda0")]) == RUNNING


def test_timeline_state_of_a_gap() -> None:
    tl = tail.Timeline([0.0, 0.1, 0.2, 0.3, 0.4], [IDLE, SUSPENDED, SUSPENDED, RUNNING, RUNNING], [5, 5, 5, 6, 9])
    assert tl.state(0.12, 0.18) == SUSPENDED
    assert tl.state(0.05, 0.15) == tail.MIXED                          # idle -> suspended around the gap
    assert tl.state(0.31, 0.39) == RUNNING
    assert tl.state(0.25, 0.35) == tail.MIXED
    assert tl.state(-0.1, 0.05) == tail.UNKNOWN and tl.state(0.35, 0.5) == tail.UNKNOWN
    grew = tail.Timeline([0.0, 0.1], [SUSPENDED, SUSPENDED], [5, 7])   # launched while it looked suspended
    assert grew.state(0.02, 0.08) == tail.MIXED
    with pytest.raises(ValueError):
        tail.Timeline([0.0], [IDLE, IDLE], [0])


def test_itl_classes_place_gaps_and_add_up() -> None:
    a = req(0.0, 0.05, [0.010] * 20)                     # tokens 0.05 ... 0.25
    b = req(0.1, 0.055, [0.010] * 5, prompt_ms=30.0)     # prompt processed 0.125 -> 0.155: overlaps 4 of a's gaps
    cut = req(0.2, 0.05, [0.01] * 3)
    cut.cancelled, cut.timings = True, {}                # cut: its gaps do not count, no timings, no window
    tl = tail.Timeline([0.0, 0.14, 0.16, 0.5], [SUSPENDED, SUSPENDED, RUNNING, RUNNING], [0, 0, 3, 9])
    got = tail.itl_classes([a, b, cut], tl)
    assert got["n"] == 25 and got["sampled"] is True
    assert sum(v["n"] for v in got["classes"].values()) == got["n"]
    assert sum(v["n"] for v in got["by_batch"].values()) == got["n"] == sum(v["n"] for v in got["by_prompt"].values())
    assert got["by_prompt"]["other_prompt"]["n"] == 4    # a's gaps ending at 0.13 ... 0.16
    assert set(got["by_batch"]) <= {RUNNING, SUSPENDED, tail.MIXED}
    assert abs(sum(v["share"] for v in got["by_batch"].values()) - 1.0) < 1e-9
    assert got["slowest_tpot"] and got["slowest_itl"][0]["itl_ms"] == pytest.approx(10.0)
    plain = tail.itl_classes([a, b], None)
    assert set(plain["by_batch"]) == {tail.NOT_SAMPLED} and plain["sampled"] is False
    assert tail.p99(plain, "by_batch", tail.NOT_SAMPLED) == pytest.approx(10.0)
    assert tail.p99(plain, "by_batch", RUNNING) is None


def test_a_long_gap_during_another_prompt_is_placed() -> None:
    a = req(0.0, 0.05, [0.010, 0.010, 0.080, 0.010])     # the 80 ms gap 0.07 -> 0.15
    b = req(0.05, 0.09, [0.01], prompt_ms=60.0)          # its prompt 0.08 -> 0.14
    got = tail.itl_classes([a, b], None)
    top = got["slowest_itl"][0]
    assert top["itl_ms"] == pytest.approx(80.0) and top["prompt"] == tail.OTHER_PROMPT and top["request"] == 0


class FakeXsched(BaseHTTPRequestHandler):
    """FakeXsched answers GET /xsched like the patched server (keep-alive), alternating the batch queue's state."""

    protocol_version = "HTTP/1.1"
    calls = 0
    chunked = False
    mode = "ok"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != "/xsched" or FakeXsched.mode == "404":
            self.send_error(404)
            return
        FakeXsched.calls += 1
        susp = FakeXsched.calls % 2 == 0
        doc: dict[str, Any] = {"available": False, "policy": "NONE", "queues": []}
        if FakeXsched.mode == "ok":
            doc = {"available": True, "policy": "HPF",
                   "queues": [row(name="inst0/cpu", priority=10, units=FakeXsched.calls),
                              row(suspended=susp, units=7, in_flight=1)],
                   "instances": [{"id": 0, "name": "inst0", "priority": 10},
                                 {"id": 1, "name": "inst1", "priority": 0}]}
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if FakeXsched.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            half = len(body) // 2
            for part in (body[:half], body[half:]):
                self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeXsched)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("chunked", [False, True])
def test_sampler_against_a_fake_server(fake_server: str, chunked: bool) -> None:
    FakeXsched.chunked, FakeXsched.calls = chunked, 0
    assert XschedSampler.probe(fake_server)
    s = XschedSampler(fake_server, interval_s=0.01).start()
    t_end = now() + 0.3
    while now() < t_end:
        threading.Event().wait(0.02)
    s.stop()
    assert s.errors == 0 and len(s.t) >= 5
    assert s.batch_queues == ["inst1/cpu"]
    assert set(s.batch) == {RUNNING, SUSPENDED}
    assert s.t == sorted(s.t) and s.t[-1] >= t_end               # one last sample after stop()
    assert all(len(col) == len(s.t) for q in s.queues.values() for col in q.values())
    assert s.batch_units() == [7] * len(s.t)
    doc = s.to_json(origin=s.t[0])
    assert doc["t"][0] == 0.0 and doc["fields"][0] == "ready" and set(doc["queues"]) == {"inst0/cpu", "inst1/cpu"}
    cost = doc["cost"]
    assert cost["samples"] == len(s.t) and cost["cpu_ms"] >= 0 and cost["p99_rtt_ms"] is not None
    json.dumps(doc)


def test_sampler_probe_refuses_servers_without_queues(fake_server: str) -> None:
    port = int(fake_server.rsplit(":", 1)[1])
    assert not XschedSampler.probe(fake_server.rsplit(":", 1)[0] + ":1")     # nothing listening
    try:
        FakeXsched.mode = "404"                                          # vanilla: no /xsched
        assert not XschedSampler.probe(fake_server)
        FakeXsched.mode = "no core"                                      # built without the core: no queues
        assert not XschedSampler.probe(f"http://127.0.0.1:{port}")
    finally:
        FakeXsched.mode = "ok"
    assert XschedSampler.probe(fake_server)
