"""Prioritised instances on the GPU (never in CI): the CUDA queues per instance, load, cancel and shutdown.

Run on the GPU machine from the repository root, after `pip install --no-build-isolation --no-deps .` and
`xsched-llama build --cuda --cuda-arch 90` (XSCHED_LLAMA_CUDA_ARCH picks another architecture):

    python -m pytest -m gpu tests/test_server_gpu.py
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from xsched_llama import build
from xsched_llama.server import ServerProcess

import test_server_concurrency as conc

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


@pytest.fixture(scope="module")
def cuda_server(request: pytest.FixtureRequest) -> Path:
    """The patched CUDA llama-server: $XSCHED_LLAMA_TEST_SERVER (a carried binary), else built in the cache."""
    override = os.environ.get("XSCHED_LLAMA_TEST_SERVER")
    if override:
        return Path(override)
    arch = os.environ.get("XSCHED_LLAMA_CUDA_ARCH", "90")
    cache = request.getfixturevalue("toolkit_cache")
    request.getfixturevalue("llama_source")
    summary = build.build(build.BuildOptions(cuda=True, cuda_arch=arch), cache=cache)
    return Path(summary["binaries"]["llama-server"])


def gpu_args(model: Path) -> list[str]:
    return ["-m", str(model), "-ngl", "99", "-c", "2048", "-fit", "off", "--metrics"]


@pytest.fixture(scope="module")
def srv(cuda_server: Path, default_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("srv-gpu")
    args = [*gpu_args(default_model), "--instances", "10:1:2,5:1:2,0:1:2", "--xsched-policy", "HPF"]
    with ServerProcess(cuda_server, args, log_path=tmp / "server.log") as s:
        yield s


def test_cuda_queues_per_instance(srv: ServerProcess) -> None:
    for p in (10, 5, 0):
        r = srv.post("/completion", {"prompt": "Hello", "n_predict": 4, "priority": p})
        assert r.status_code == 200, r.text
    snap = srv.get("/xsched").json()
    assert snap["available"] and snap["policy"] == "HPF"
    for inst, prio in ((0, 10), (1, 5), (2, 0)):
        rows = [q for q in snap["queues"] if q["name"].startswith(f"inst{inst}/cuda")]
        assert rows, snap["queues"]
        assert all(q["priority"] == prio for q in rows)
        assert sum(q["units"] for q in rows) > 0


def test_cuda_mixed_priority_load(srv: ServerProcess) -> None:
    conc.test_mixed_priority_load(srv)


def test_cuda_cancel_while_held_back(srv: ServerProcess) -> None:
    conc.test_cancel_while_held_back(srv)


def test_cuda_shutdown_while_running(cuda_server: Path, default_model: Path, tmp_path: Path) -> None:
    s = ServerProcess(cuda_server, [*gpu_args(default_model), "--instances", "10:1:1,0:1:2"],
                      log_path=tmp_path / "server.log")
    conc.shutdown_while_running(s)


def _greedy_tokens(srv: ServerProcess, priority: int, n: int = 48) -> list[int]:
    body = {"prompt": "The lighthouse keeper opened the logbook and wrote", "n_predict": n, "ignore_eos": True,
            "temperature": 0, "top_k": 1, "cache_prompt": False, "return_tokens": True, "priority": priority}
    r = srv.post("/completion", body, timeout=600)
    assert r.status_code == 200, r.text
    return list(r.json()["tokens"])


def test_segments_compute_what_whole_graphs_compute(cuda_server: Path, default_model: Path, tmp_path: Path) -> None:
    """The normal instance (preemptible: a more important one exists) runs its graphs in segments, each its own CUDA
    graph; the high one runs them whole. Greedy decoding of the same prompt gives the same tokens on both, and the
    normal instance passes several gates per decode step with a window of two segments."""
    args = [*gpu_args(default_model), "--instances", "10:1:1,0:1:1", "--xsched-policy", "HPF"]
    with ServerProcess(cuda_server, args, log_path=tmp_path / "server.log") as s:
        def rows(inst: int) -> list[dict[str, object]]:
            return [q for q in s.get("/xsched").json()["queues"] if q["name"].startswith(f"inst{inst}/cuda0.s0")]
        u0 = [sum(int(q["units"]) for q in rows(i)) for i in (0, 1)]  # type: ignore[call-overload]
        high = _greedy_tokens(s, 10)
        low = _greedy_tokens(s, 0)
        u1 = [sum(int(q["units"]) for q in rows(i)) for i in (0, 1)]  # type: ignore[call-overload]
        assert low == high
        assert u1[1] - u0[1] > 2 * (u1[0] - u0[0]), (u0, u1)  # segments: more than two gates per step
