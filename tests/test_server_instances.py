"""llama-server with prioritised instances (patches 0005, 0006-0013): routing, 400s, aggregation, /xsched.

One server for the module: three levels, `--instances 10:1:2,5:2:1,0:1:2`, on the default model.
Routing rules under test (docs/server.md): no priority -> priority 0; a priority without an instance of
its own -> the nearest lower level; below every level -> the lowest level; the body's `priority` wins
over the `X-Priority` header; a non-integer or out-of-range value -> HTTP 400.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from xsched_llama.server import ServerProcess

pytestmark = pytest.mark.slow

INSTANCES = "10:1:2,5:2:1,0:1:2"
ADMIN_KEY = "s3cret-admin"


@pytest.fixture(scope="session")
def server_binary(request: pytest.FixtureRequest) -> Path:
    """The patched CPU llama-server (XSCHED_LLAMA_TEST_SERVER overrides it for local work)."""
    override = os.environ.get("XSCHED_LLAMA_TEST_SERVER")
    if override:
        return Path(override)
    return Path(request.getfixturevalue("patched_cpu_server"))


def common_args(model: Path) -> list[str]:
    return ["-m", str(model), "-c", "1024", "-t", "1", "-tb", "1", "--no-warmup", "--metrics"]


@pytest.fixture(scope="module")
def srv(server_binary: Path, default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("srv-instances")
    slots_dir = tmp / "slots"
    slots_dir.mkdir()
    args = [*common_args(default_model), "--instances", INSTANCES, "--slot-save-path", str(slots_dir)]
    with ServerProcess(server_binary, args, log_path=tmp / "server.log") as s:
        yield s


def complete(srv: ServerProcess, path: str = "/completion", headers: dict[str, str] | None = None,
             **body: Any) -> requests.Response:
    payload: dict[str, Any] = {"n_predict": 2, "temperature": 0}
    if path in ("/completion", "/completions", "/v1/completions", "/infill"):
        payload["prompt"] = "Hello"
    else:
        payload["messages"] = [{"role": "user", "content": "Hello"}]
        payload["max_tokens"] = 2
    if path == "/v1/messages":
        payload["model"] = "x"
    payload.update(body)
    return srv.post(path, payload, headers=headers or {})


def instance_of(r: requests.Response) -> int:
    assert r.status_code == 200, r.text
    return int(r.headers["X-Instance"])


@pytest.mark.parametrize("priority,expected", [
    (10, 0), (255, 0), (11, 0),   # exact, and above the top level -> top level
    (5, 1), (9, 1), (6, 1),       # nearest lower level
    (0, 2), (4, 2), (1, 2),
    (-1, 2), (-255, 2),           # below every level -> the lowest level
])
def test_priority_routes_to_instance(srv: ServerProcess, priority: int, expected: int) -> None:
    r = complete(srv, priority=priority)
    assert instance_of(r) == expected
    assert int(r.headers["X-Instance-Priority"]) == [10, 5, 0][expected]


def test_no_priority_uses_priority_zero(srv: ServerProcess) -> None:
    assert instance_of(complete(srv)) == 2


def test_header_and_body(srv: ServerProcess) -> None:
    assert instance_of(complete(srv, headers={"X-Priority": "10"})) == 0
    assert instance_of(complete(srv, headers={"x-priority": "5"})) == 1
    # the body wins over the header
    assert instance_of(complete(srv, headers={"X-Priority": "10"}, priority=0)) == 2


@pytest.mark.parametrize("path", [
    "/completion", "/completions", "/v1/completions", "/v1/chat/completions", "/chat/completions",
    "/v1/responses", "/v1/messages",
])
def test_every_completion_endpoint_routes(srv: ServerProcess, path: str) -> None:
    body: dict[str, Any] = {"priority": 10}
    if path == "/v1/responses":
        body = {"priority": 10, "input": "Hello", "max_output_tokens": 2}
    r = complete(srv, path, **body)
    assert instance_of(r) == 0, path
    r = complete(srv, path, **{**body, "priority": 5})
    assert instance_of(r) == 1, path


@pytest.mark.parametrize("path", ["/completion", "/v1/chat/completions", "/v1/messages", "/embedding",
                                  "/v1/embeddings"])
@pytest.mark.parametrize("bad", ["10", 1.5, True, 256, -256, 10**20, [1], {"p": 1}])
def test_bad_priority_is_400(srv: ServerProcess, path: str, bad: Any) -> None:
    body: dict[str, Any] = {"priority": bad}
    if "embedding" in path:
        body["input"] = "Hello"
    r = complete(srv, path, **body) if "embedding" not in path else srv.post(path, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert "[-255, 255]" in err["message"]


@pytest.mark.parametrize("bad", ["high", "1.5", "", "3 4", "999", "0x10", "-"])
def test_bad_priority_header_is_400(srv: ServerProcess, bad: str) -> None:
    r = complete(srv, headers={"X-Priority": bad})
    if bad == "":
        assert r.status_code == 200  # an empty header is no header
        return
    assert r.status_code == 400, r.text
    assert "X-Priority" in r.json()["error"]["message"]


def test_stream_routes_and_tags(srv: ServerProcess) -> None:
    r = srv.post("/completion", {"prompt": "Hi", "n_predict": 3, "stream": True, "priority": 5}, stream=True)
    assert r.status_code == 200
    assert r.headers["X-Instance"] == "1"
    chunks = [line for line in r.iter_lines() if line.startswith(b"data: ")]
    assert chunks


def test_props_lists_instances(srv: ServerProcess) -> None:
    props = srv.get("/props").json()
    assert props["total_slots"] == 5
    got = [(i["id"], i["priority"], i["weight"], i["n_slots"]) for i in props["instances"]]
    assert got == [(0, 10, 1, 2), (1, 5, 2, 1), (2, 0, 1, 2)]


def test_health_ok(srv: ServerProcess) -> None:
    assert srv.get("/health").json() == {"status": "ok"}


def test_slots_tagged_with_instance(srv: ServerProcess) -> None:
    complete(srv, priority=5, prompt="slot marker for instance one", n_predict=1)
    slots = srv.get("/slots").json()
    assert [(s["instance"], s["priority"], s["id"]) for s in slots] == [
        (0, 10, 0), (0, 10, 1), (1, 5, 0), (2, 0, 0), (2, 0, 1)]
    only = srv.get("/slots", params={"instance": 1}).json()
    assert [(s["instance"], s["id"]) for s in only] == [(1, 0)]
    assert [s["instance"] for s in srv.get("/slots", params={"priority": 7}).json()] == [1]
    assert srv.get("/slots", params={"instance": 3}).status_code == 400


def test_slot_actions_take_instance(srv: ServerProcess) -> None:
    r = srv.post("/slots/0?action=erase&instance=1", {})
    assert r.status_code == 200, r.text
    assert r.json()["id_slot"] == 0
    r = srv.post("/slots/0?action=save&priority=10", {"filename": "inst0.bin"})
    assert r.status_code == 200, r.text
    assert srv.post("/slots/0?action=erase&instance=x", {}).status_code == 400
    assert srv.post("/slots/0?action=erase&priority=300", {}).status_code == 400


def test_metrics_per_instance(srv: ServerProcess) -> None:
    for p in (10, 5, 0):
        complete(srv, priority=p)
    text = srv.get("/metrics").text
    for inst, prio in ((0, 10), (1, 5), (2, 0)):
        m = re.search(rf'^llamacpp:tokens_predicted_total{{instance="{inst}",priority="{prio}",name="inst{inst}"}} (\S+)$',
                      text, re.M)
        assert m, text
        assert float(m.group(1)) >= 1
    # one HELP/TYPE per family (a valid Prometheus exposition)
    assert text.count("# TYPE llamacpp:tokens_predicted_total ") == 1
    if srv.get("/xsched").json()["available"]:
        assert "xsched:queue_units_total{" in text
        assert "# TYPE xsched:preemption_latency_seconds histogram" in text
        for q in srv.get("/xsched").json()["queues"]:
            labels = f'queue="{q["name"]}",priority="{q["priority"]}"'
            # cumulative buckets ending at +Inf = _count = the measured preemptions
            m = re.search(rf'^xsched:preemption_latency_seconds_bucket{{{re.escape(labels)},le="\+Inf"}} (\d+)$',
                          text, re.M)
            assert m, text
            c = re.search(rf'^xsched:preemption_latency_seconds_count{{{re.escape(labels)}}} (\d+)$', text, re.M)
            assert c and c.group(1) == m.group(1)


def test_xsched_get(srv: ServerProcess) -> None:
    snap = srv.get("/xsched").json()
    assert [(i["id"], i["priority"], i["weight"]) for i in snap["instances"]] == [(0, 10, 1), (1, 5, 2), (2, 0, 1)]
    assert snap["policy"] in ("HPF", "WRR", "NONE")
    assert isinstance(snap["queues"], list)
    if snap["available"]:
        names = [q["name"] for q in snap["queues"]]
        for i in range(3):
            assert any(n.startswith(f"inst{i}") for n in names), names
        for q in snap["queues"]:
            assert set(q) >= {"name", "priority", "weight", "state", "suspended", "in_flight", "units", "suspended_us",
                              "group", "preemption"}
            p = q["preemption"]
            assert set(p) == {"count", "measured", "sum_us", "max_us", "buckets_le_us", "buckets", "open_units",
                              "launch_sum_us", "launch_max_us"}
            assert len(p["buckets"]) == len(p["buckets_le_us"]) + 1 and sum(p["buckets"]) == p["measured"]
            assert p["measured"] <= p["count"]
            # the host part of the preemptions that found a unit being launched is within their latency
            assert p["open_units"] <= p["measured"] and p["launch_max_us"] <= p["max_us"]
            assert p["launch_sum_us"] <= p["sum_us"]
        # every queue of one instance is in that instance's scheduling group, and the groups differ
        groups = {q["name"].split("/")[0]: set() for q in snap["queues"]}
        for q in snap["queues"]:
            groups[q["name"].split("/")[0]].add(q["group"])
        assert all(len(g) == 1 and 0 not in g for g in groups.values()), groups
        assert len({next(iter(g)) for g in groups.values()}) == len(groups), groups


def test_xsched_post_priority_changes_routing(srv: ServerProcess) -> None:
    r = srv.post("/xsched", {"instance": 1, "priority": 7, "weight": 3})
    assert r.status_code == 200, r.text
    assert r.json()["instances"][1]["priority"] == 7
    try:
        assert instance_of(complete(srv, priority=7)) == 1
        assert instance_of(complete(srv, priority=6)) == 2  # 6 is now below instance 1's level
        if r.json()["available"]:
            rows = [q for q in r.json()["queues"] if q["name"].startswith("inst1")]
            assert rows and all(q["priority"] == 7 and q["weight"] == 3 for q in rows)
    finally:
        srv.post("/xsched", {"instance": 1, "priority": 5, "weight": 2})


@pytest.mark.parametrize("body", [
    {"instance": 9, "priority": 1}, {"instance": 0, "priority": 300}, {"instance": 0, "weight": 0},
    {"instance": 0}, {"priority": 3}, {"policy": "FIFO"}, {"timeslice_us": 5}, {"nope": 1}, [1],
])
def test_xsched_post_bad_input_is_400(srv: ServerProcess, body: Any) -> None:
    r = srv.post("/xsched", body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert [i["priority"] for i in srv.get("/xsched").json()["instances"]] == [10, 5, 0]


def test_xsched_post_policy(srv: ServerProcess) -> None:
    before = srv.get("/xsched").json()
    r = srv.post("/xsched", {"policy": "wrr"})
    if not before["available"]:
        assert r.status_code == 501
        return
    assert r.status_code == 200, r.text
    assert r.json()["policy"] == "WRR"
    assert srv.post("/xsched", {"policy": before["policy"]}).json()["policy"] == before["policy"]
    # not joined to a global scheduler: the local one, and no global view (tests/test_scheduler_servers.py: joined)
    assert before["scheduler"] == "local" and "global" not in before


def test_admin_key_required(server_binary: Path, default_model: Path, tmp_path: Path) -> None:
    args = [*common_args(default_model), "--instances", "1,0", "--xsched-admin-key", ADMIN_KEY]
    with ServerProcess(server_binary, args, log_path=tmp_path / "server.log") as s:
        r = s.post("/xsched", {"instance": 1, "weight": 2})
        assert r.status_code == 401, r.text
        assert "X-Admin-Key" in r.json()["error"]["message"]
        r = s.post("/xsched", {"instance": 1, "weight": 2}, headers={"X-Admin-Key": "wrong"})
        assert r.status_code == 401
        r = s.post("/xsched", {"instance": 1, "weight": 2}, headers={"X-Admin-Key": ADMIN_KEY})
        assert r.status_code == 200, r.text
        assert r.json()["instances"][1]["weight"] == 2
        assert s.get("/xsched").status_code == 200  # reading needs no key


def test_without_instances_one_instance(server_binary: Path, default_model: Path, tmp_path: Path) -> None:
    with ServerProcess(server_binary, [*common_args(default_model), "-np", "2"],
                       log_path=tmp_path / "server.log") as s:
        r = complete(s, priority=200)
        assert instance_of(r) == 0
        assert r.json()["content"] is not None
        props = s.get("/props").json()
        assert props["total_slots"] == 2
        assert [(i["priority"], i["n_slots"]) for i in props["instances"]] == [(0, 2)]
        assert s.get("/xsched").json()["instances"][0]["id"] == 0
        assert "llamacpp:tokens_predicted_total " in s.get("/metrics").text  # upstream names, no labels
        assert complete(s, priority="x").status_code == 400


@pytest.mark.parametrize("value", ["", "10:0", "300", "a:1", "1:1:0", "1:2:3:4:5", "1:2:3:0", "1,,2",
                                   "=1", "12=1", "bad name=1", "x" * 33 + "=1", "a/b=1", "a=1,a=0", "inst1=1,0", "hi=", "a=b=1"])
def test_bad_instances_option_exits(server_binary: Path, default_model: Path, tmp_path: Path, value: str) -> None:
    s = ServerProcess(server_binary, [*common_args(default_model), "--instances", value],
                      log_path=tmp_path / "server.log", startup_timeout=60)
    with pytest.raises(Exception):
        s.start()
    assert s.wait() != 0
    errors = [line for line in s.log_text().splitlines() if "--instances" in line and "error" in line.lower()]
    assert len(errors) == 1, s.log_text()  # one line that says what is wrong


def test_bad_policy_option_exits(server_binary: Path, default_model: Path, tmp_path: Path) -> None:
    s = ServerProcess(server_binary, [*common_args(default_model), "--xsched-policy", "FIFO"],
                      log_path=tmp_path / "server.log", startup_timeout=60)
    with pytest.raises(Exception):
        s.start()
    assert s.wait() != 0
    assert "HPF, WRR, NONE" in s.log_text()


def test_multimodal_projector_refused(server_binary: Path, default_model: Path, tmp_path: Path) -> None:
    fake = tmp_path / "mmproj.gguf"
    fake.write_bytes(b"GGUF")
    s = ServerProcess(server_binary, [*common_args(default_model), "--instances", "1,0", "--mmproj", str(fake)],
                      log_path=tmp_path / "server.log", startup_timeout=60)
    with pytest.raises(Exception):
        s.start()
    assert s.wait() != 0
    assert "--mmproj" in s.log_text() and "cannot be shared" in s.log_text()


def test_embeddings_routed(server_binary: Path, default_model: Path, tmp_path: Path) -> None:
    args = [*common_args(default_model), "--instances", "3:1:1,0:1:1", "--embeddings", "--pooling", "mean", "-ub", "512", "-b", "512"]
    with ServerProcess(server_binary, args, log_path=tmp_path / "server.log") as s:
        r = s.post("/v1/embeddings", {"input": "hello", "priority": 3})
        assert instance_of(r) == 0
        assert len(r.json()["data"][0]["embedding"]) > 0
        r = s.post("/embedding", {"content": "hello"}, headers={"X-Priority": "1"})
        assert instance_of(r) == 1


def test_policy_option_sets_policy(server_binary: Path, default_model: Path, tmp_path: Path) -> None:
    args = [*common_args(default_model), "--instances", "1,0", "--xsched-policy", "wrr"]
    with ServerProcess(server_binary, args, log_path=tmp_path / "server.log") as s:
        snap = s.get("/xsched").json()
        if snap["available"]:
            assert snap["policy"] == "WRR"
        else:
            assert "--xsched-policy WRR ignored" in s.log_text()


def test_bad_xsched_env_exits(server_binary: Path, default_model: Path, tmp_path: Path) -> None:
    s = ServerProcess(server_binary, [*common_args(default_model), "--instances", "1,0"],
                      log_path=tmp_path / "server.log", env={"XSCHED_POLICY": "FIFO"}, startup_timeout=60)
    try:
        s.start()
    except Exception:
        assert s.wait() != 0
        assert "XSCHED_POLICY" in s.log_text()
        return
    try:
        assert not s.get("/xsched").json()["available"], "a core build must refuse XSCHED_POLICY=FIFO"
    finally:
        s.stop()


def _threadpool_sizes(s: ServerProcess) -> list[int]:
    """n_threads of every llama context the server created (common_init logs one line per context)."""
    return [int(n) for n in re.findall(r"llama threadpool init, n_threads = (\d+)", s.log_text())]


def test_instances_share_the_cores_by_default(server_binary: Path, default_model: Path, tmp_path: Path) -> None:
    """Without -t, N instances get cores/N threads each (at least 1); an explicit -t is kept for every instance."""
    base = ["-m", str(default_model), "-c", "512", "--no-warmup"]
    with ServerProcess(server_binary, base, log_path=tmp_path / "one.log") as s:
        (default,) = _threadpool_sizes(s)
    if default < 2:
        pytest.skip(f"llama.cpp's default thread count here is {default}: nothing to divide")
    with ServerProcess(server_binary, [*base, "--instances", "1,0"], log_path=tmp_path / "two.log") as s:
        assert _threadpool_sizes(s) == [default // 2] * 2
    with ServerProcess(server_binary, [*base, "--instances", "2,1,0", "-t", str(default)],
                       log_path=tmp_path / "explicit.log") as s:
        assert _threadpool_sizes(s) == [default] * 3


TIMING_KEYS = ["routed_ms", "slot_ms", "prompt_start_ms", "first_token_ms"]


def final_results(r: requests.Response, stream: bool) -> list[dict[str, Any]]:
    """final_results() returns the JSON objects of a completion response that carry its final result."""
    if not stream:
        return [r.json()]
    import json
    events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith(b"data: {")]
    return [e for e in events if e.get("stop") is True or any(c.get("finish_reason") for c in e.get("choices", []))
            or "xsched_timings" in e]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ["/completion", "/v1/completions", "/v1/chat/completions"])
def test_xsched_timings_in_final_result(srv: ServerProcess, path: str, stream: bool) -> None:
    """Issue 12: the final result (the last event with stop: true when streaming) carries "xsched_timings": ms
    since the HTTP handler received the request at which it was routed, got a slot, started its prompt and
    sampled its first token; present, non-negative and in that order. Partial events do not carry it."""
    r = complete(srv, path, priority=5, stream=stream, n_predict=3, max_tokens=3)
    assert r.status_code == 200, r.text
    finals = final_results(r, stream)
    with_timings = [e for e in finals if "xsched_timings" in e]
    assert len(with_timings) == 1, finals
    t = with_timings[0]["xsched_timings"]
    assert list(t) == TIMING_KEYS, t
    values = [t[k] for k in TIMING_KEYS]
    assert all(isinstance(v, (int, float)) and v >= 0 for v in values), t
    assert values == sorted(values), t


def test_prompt_cache_off_above_the_lowest_instance(server_binary: Path, default_model: Path, tmp_path: Path) -> None:
    """With --instances, every instance above the lowest priority runs without the RAM prompt cache (its copies of
    idle slots delay the next request between slot assignment and prompt, docs/server.md); an explicit --cache-ram
    keeps it on everywhere."""
    with ServerProcess(server_binary, [*common_args(default_model), "--instances", "10,5,0"],
                       log_path=tmp_path / "a.log") as s:
        log = s.log_text()
        assert "instance 0 (priority 10): RAM prompt cache off" in log
        assert "instance 1 (priority 5): RAM prompt cache off" in log
        assert "instance 2 (priority 0): RAM prompt cache off" not in log
        assert complete(s, priority=10).status_code == 200
    with ServerProcess(server_binary, [*common_args(default_model), "--instances", "10,0", "--cache-ram", "256"],
                       log_path=tmp_path / "b.log") as s:
        assert "RAM prompt cache off" not in s.log_text()


def kv_layout(s: ServerProcess) -> list[tuple[int, bool, int]]:
    # (instance, kv_unified, n_ctx of its first slot)
    rows = {i["id"]: i["kv_unified"] for i in s.get("/xsched").json()["instances"]}
    n_ctx = {}
    for slot in s.get("/slots").json():
        n_ctx.setdefault(slot["instance"], slot["n_ctx"])
    return [(i, rows[i], n_ctx[i]) for i in sorted(rows)]


def test_kv_layout_per_instance(server_binary: Path, default_model: Path, tmp_path: Path) -> None:
    """GET /xsched shows each instance's KV cache layout (kv_unified) and /slots its per-slot context: with -np
    given, llama.cpp gives every instance a cache per slot (-c / slots each); -kvu one cache for all slots (each slot
    may use all of -c); without -np, upstream's automatic slot count makes every cache unified. (Run 8 found that a
    cache per slot decodes several interactive requests one compute each unless their slots are consecutive;
    docs/server.md, "KV cache per instance".)"""
    base = [*common_args(default_model), "--instances", "10:1:2,5:1:1,0:1:2"]
    with ServerProcess(server_binary, [*base, "-np", "2"], log_path=tmp_path / "a.log") as s:
        assert kv_layout(s) == [(0, False, 512), (1, False, 1024), (2, False, 512)]
    with ServerProcess(server_binary, [*base, "-np", "2", "-kvu"], log_path=tmp_path / "b.log") as s:
        assert kv_layout(s) == [(0, True, 1024), (1, True, 1024), (2, True, 1024)]
        # two requests decoding at once on the shared cache: both complete with every token
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futs = [pool.submit(complete, s, priority=10, n_predict=24, ignore_eos=True,
                                prompt=f"Tell me about {w}.") for w in ("rivers", "mountains")]
            for f in futs:
                r = f.result()
                assert r.status_code == 200, r.text
                assert r.json()["tokens_predicted"] == 24
    with ServerProcess(server_binary, base, log_path=tmp_path / "c.log") as s:
        assert [row[1] for row in kv_layout(s)] == [True] * 3


def test_named_instances(server_binary: Path, default_model: Path, tmp_path: Path) -> None:
    # NAME= of --instances is kept end to end: GET /xsched, /props, /slots, the X-Instance-Name header, the `name`
    # label of the metrics (`instance` stays the index), ?instance=NAME and POST /xsched {"instance": NAME}
    args = [*common_args(default_model), "--instances", "high=10:1:1,batch.low-1=0:1:1"]
    with ServerProcess(server_binary, args, log_path=tmp_path / "server.log") as s:
        r = complete(s, priority=10)
        assert (instance_of(r), r.headers["X-Instance-Name"]) == (0, "high")
        r = complete(s, priority=0)
        assert (instance_of(r), r.headers["X-Instance-Name"]) == (1, "batch.low-1")
        names = [(i["id"], i["name"]) for i in s.get("/xsched").json()["instances"]]
        assert names == [(0, "high"), (1, "batch.low-1")]
        assert [i["name"] for i in s.get("/props").json()["instances"]] == ["high", "batch.low-1"]
        slots = s.get("/slots").json()
        assert [(x["instance"], x["instance_name"]) for x in slots] == [(0, "high"), (1, "batch.low-1")]
        only = s.get("/slots", params={"instance": "batch.low-1"}).json()
        assert [x["instance"] for x in only] == [1]
        assert s.get("/slots", params={"instance": "nope"}).status_code == 400
        text = s.get("/metrics").text
        assert re.search(r'^llamacpp:tokens_predicted_total\{instance="1",priority="0",name="batch.low-1"\} ', text,
                         re.M), text
        assert re.search(r'^xsched:requests_waiting\{instance="0",priority="10",name="high"\} 0$', text, re.M), text
        r = s.post("/xsched", {"instance": "batch.low-1", "weight": 3})
        assert r.status_code == 200, r.text
        assert r.json()["instances"][1]["weight"] == 3
        r = s.post("/xsched", {"instance": "nope", "weight": 3})
        assert r.status_code == 400 and "high" in r.json()["error"]["message"], r.text
