"""Reliability of the prioritised instances (issue 11): LoRA on shared weights (D2), control and LoRA endpoints
next to a parked instance (D7), concurrent priority changes (D8), the draft context's scheduling group (D10).

One server for the module: `--instances 0:1:1,10:1:1` (instance 0 is the low level, so that a request that
asks every instance in turn meets the parked one first) with a small random LoRA adapter made with the `gguf`
package (tests/gguf_lora.py).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from xsched_llama.server import ServerProcess

from gguf_lora import make_lora
from test_server_cancel import busy, wait_until
from test_server_instances import common_args, server_binary  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def adapter(default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lora(default_model, tmp_path_factory.mktemp("lora") / "lora-attn-q.gguf")


@pytest.fixture(scope="module")
def srv(server_binary: Path, default_model: Path, adapter: Path,  # noqa: F811
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("srv-reliability")
    args = [*common_args(default_model), "--lora", str(adapter), "--instances", "0:1:1,10:1:1",
            "--xsched-policy", "HPF"]
    with ServerProcess(server_binary, args, log_path=tmp / "server.log") as s:
        yield s


def content(srv: ServerProcess, priority: int, **extra: Any) -> str:
    body = {"prompt": PROMPT, "n_predict": 8, "temperature": 0, "cache_prompt": False, "priority": priority, **extra}
    r = srv.post("/completion", body)
    assert r.status_code == 200, r.text
    assert int(r.headers["X-Instance"]) == (1 if priority >= 10 else 0)
    return str(r.json()["content"])


def test_lora_applies_on_every_instance(srv: ServerProcess, server_binary: Path,  # noqa: F811
                                        default_model: Path, adapter: Path, tmp_path: Path) -> None:
    """D2: instance 1 runs on instance 0's weights and reuses its adapters. The server hands instance 0's
    resolved parameters (with the adapter pointers) to the other instances, so every instance applies the
    adapter as a single-instance server does; POST /lora-adapters and a per-request `lora` act on all."""
    with ServerProcess(server_binary, [*common_args(default_model), "--lora", str(adapter)],
                       log_path=tmp_path / "single.log") as single:
        with_lora = content(single, 0)
        without = content(single, 0, lora=[{"id": 0, "scale": 0.0}])
    assert with_lora != without, "the test adapter does not change the output"
    for p in (0, 10):
        assert content(srv, p) == with_lora, p
        assert content(srv, p, lora=[{"id": 0, "scale": 0.0}]) == without, p
    r = srv.post("/lora-adapters", [{"id": 0, "scale": 0.0}])
    assert r.status_code == 200, r.text
    try:
        assert [content(srv, p) for p in (0, 10)] == [without, without]
    finally:
        assert srv.post("/lora-adapters", [{"id": 0, "scale": 1.0}]).status_code == 200
    assert [content(srv, p) for p in (0, 10)] == [with_lora, with_lora]


class ChatStream:
    """ChatStream is a streaming /v1/chat/completions on its own thread; `cmpl_id` is its completion id."""

    def __init__(self, srv: ServerProcess, priority: int) -> None:
        self.cmpl_id: str | None = None
        self.started = threading.Event()
        self.stop = threading.Event()
        body = {"messages": [{"role": "user", "content": "Count to a million."}], "max_tokens": 100000,
                "ignore_eos": True, "stream": True, "priority": priority}
        self.thread = threading.Thread(target=self._run, args=(srv, body), daemon=True)
        self.thread.start()

    def _run(self, srv: ServerProcess, body: dict[str, Any]) -> None:
        try:
            with requests.post(srv.url + "/v1/chat/completions", json=body, stream=True, timeout=120) as r:
                for line in r.iter_lines():
                    if line.startswith(b"data: {"):
                        self.cmpl_id = self.cmpl_id or json.loads(line[6:])["id"]
                        self.started.set()
                    if self.stop.is_set():
                        return  # closes the connection: the server cancels the completion
        finally:
            self.started.set()


def park_low(srv: ServerProcess) -> socket.socket:
    """park_low() sends a long priority-0 request (instance 0, held back by HPF) and keeps its connection open."""
    data = json.dumps({"prompt": "Tell me a long story", "n_predict": 100000, "ignore_eos": True, "priority": 0,
                       "stream": True}).encode()
    sock = socket.create_connection((srv.host, srv.port))
    sock.sendall(b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    assert wait_until(lambda: busy(srv, 0), 30)
    return sock


def test_control_and_lora_answer_next_to_a_parked_instance(srv: ServerProcess) -> None:
    """D7: while HPF parks instance 0 (its loop thread sits in a gate inside its decode), the chat control
    endpoint, which asks instance 0 first, and POST/GET /lora-adapters, which reach every instance, answer
    within 5 s: these tasks touch nothing the decode uses, so a parked instance answers them at once."""
    high = ChatStream(srv, priority=10)
    assert high.started.wait(30) and high.cmpl_id, "the high stream did not start"
    low = park_low(srv)
    try:
        time.sleep(0.5)
        assert busy(srv, 0) and busy(srv, 1)
        r = srv.post("/v1/chat/completions/control", {"id": high.cmpl_id, "action": "reasoning_end"}, timeout=5)
        assert r.status_code == 200, r.text
        # found on instance 1 (asked second): its completion has no reasoning budget to end
        assert r.json() == {"success": False, "message": "reasoning control not enabled for this completion"}
        r = srv.post("/v1/chat/completions/control", {"id": "chatcmpl-none", "action": "reasoning_end"}, timeout=5)
        assert r.json() == {"success": False, "message": "no active completion for this id"}
        r = srv.post("/lora-adapters", [{"id": 0, "scale": 1.0}], timeout=5)
        assert r.status_code == 200, r.text
        r = srv.get("/lora-adapters", timeout=5)
        assert r.status_code == 200 and r.json()[0]["scale"] == 1.0
        assert busy(srv, 0)  # still parked: nothing of this released it
    finally:
        low.close()
        high.stop.set()
        high.thread.join(60)
    assert wait_until(lambda: not busy(srv, 0) and not busy(srv, 1), 60)


def check_concurrent_priority_changes(srv: ServerProcess, instance: int, restore: int, n: int = 500) -> None:
    """check_concurrent_priority_changes() has two clients change `instance`'s priority and weight at the same time,
    `n` times each, then checks that the instance's routing priority and every one of its queues (CPU and, on a
    GPU build, CUDA) agree; then gives it priority `restore` and weight 1 again."""
    def flip(prio: int, weight: int) -> None:
        with requests.Session() as s:
            for _ in range(n):
                r = s.post(srv.url + "/xsched", json={"instance": instance, "priority": prio, "weight": weight},
                           timeout=30)
                assert r.status_code == 200, r.text

    try:
        threads = [threading.Thread(target=flip, args=a) for a in ((3, 2), (7, 5))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        snap = srv.get("/xsched").json()
        inst = snap["instances"][instance]
        assert (inst["priority"], inst["weight"]) in ((3, 2), (7, 5)), inst
        if snap["available"]:
            rows = [q for q in snap["queues"] if q["name"].split("/")[0] == f"inst{instance}"]
            assert rows and all((q["priority"], q["weight"]) == (inst["priority"], inst["weight"]) for q in rows), \
                (inst, rows)
    finally:
        srv.post("/xsched", {"instance": instance, "priority": restore, "weight": 1})


def test_concurrent_priority_changes_end_consistent(srv: ServerProcess) -> None:
    """D8: concurrent POST /xsched on one instance: its queues end at the priority it routes by (one change at a
    time per instance)."""
    check_concurrent_priority_changes(srv, instance=0, restore=0)
    assert int(srv.post("/completion", {"prompt": "Hi", "n_predict": 1, "priority": 0}).headers["X-Instance"]) == 0


def test_draft_context_shares_its_target_group(server_binary: Path, default_model: Path,  # noqa: F811
                                               tmp_path: Path) -> None:
    """D10: a draft context's queues are in its target's scheduling group, so WRR gives target and draft one turn
    (as two clients, each draft step waited for the target's turn to end); their rows and series stay distinct."""
    args = [*common_args(default_model), "-md", str(default_model), "--spec-type", "draft-simple",
            "--xsched-policy", "WRR"]
    with ServerProcess(server_binary, args, log_path=tmp_path / "server.log") as s:
        r = s.post("/completion", {"prompt": "Count: 1 2 3 4 5", "n_predict": 16, "temperature": 0})
        assert r.status_code == 200 and r.json()["timings"].get("draft_n", 0) > 0, r.text
        snap = s.get("/xsched").json()
        if not snap["available"]:
            pytest.skip("built without the xsched core")
        rows = snap["queues"]
        assert len(rows) == 2, rows  # the CPU queues of the target and of its draft
        assert len({q["group"] for q in rows}) == 1 and rows[0]["group"] != 0, rows
        assert all(q["units"] > 0 and q["name"].split("/")[0] == "inst0" for q in rows), rows
        assert len({q["name"] for q in rows}) == 2, rows
        series = re.findall(r"^xsched:queue_units_total(\{.*\}) ", s.get("/metrics").text, re.M)
        assert len(series) == 2 and len(set(series)) == 2, series
