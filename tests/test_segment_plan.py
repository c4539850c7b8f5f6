"""The segment planning of the patched ggml-cuda (patches/overlay/ggml/src/ggml-xqueue-plan.h) and the
GGML_XQUEUE_* knobs (ggml-xqueue.h), on the CPU.

tests/native/segment_plan_test.cpp is compiled against the patched CPU build's source tree and its ggml
library (the real headers and ggml's real graph code: it builds llama-shaped graphs and plans them), then run.
The knob checks run the same binary with bad and good environments, and start the patched server with a bad
value: a one-line error naming the knob and its range, exit status 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from xsched_llama import native
from xsched_llama.server import ServerProcess

from test_server_instances import common_args, server_binary  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

TEST_SRC = Path(__file__).resolve().parent / "native" / "segment_plan_test.cpp"


@pytest.fixture(scope="module")
def plan_test(patched_cpu_server: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = patched_cpu_server.parents[1]          # <variant>/build/bin/llama-server -> <variant>/build
    src = build.parent / "src"
    base = build / "ggml" / "src" / "libggml-base.a"
    assert (src / "ggml" / "src" / "ggml-xqueue-plan.h").is_file(), "the patched source has no planner"
    assert base.is_file(), base
    out = tmp_path_factory.mktemp("plan") / "segment_plan_test"
    cxx = os.environ.get("CXX") or shutil.which("c++") or "g++"
    cmd = [cxx, "-std=c++17", "-O1", "-g", "-DGGML_USE_XQUEUE", f"-I{src / 'ggml' / 'include'}",
           f"-I{src / 'ggml' / 'src'}", f"-I{native.include_dir()}", str(TEST_SRC), "-o", str(out), str(base),
           f"-L{native.lib_dir()}", "-lxsched", f"-Wl,-rpath,{native.lib_dir()}", "-fopenmp", "-lpthread", "-lm"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-4000:]}"
    return out


def _run(binary: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GGML_XQUEUE")}
    return subprocess.run([str(binary), *args], env={**clean, **(env or {})}, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)


def test_planner(plan_test: Path) -> None:
    proc = _run(plan_test)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok: 0 failures" in proc.stdout


def test_knob_defaults_and_values(plan_test: Path) -> None:
    assert _run(plan_test, "knobs").stdout.strip() == \
        "preempt=segment segment_us=400 stream_priority=auto window=2 tail_us=0 trace=0 hold=host ahead=64"
    got = _run(plan_test, "knobs", env={"GGML_XQUEUE_PREEMPT": "node", "GGML_XQUEUE_SEGMENT_US": "20",
                                        "GGML_XQUEUE_STREAM_PRIORITY": "off", "GGML_XQUEUE_WINDOW": "16",
                                        "GGML_XQUEUE_TAIL_US": "4000", "GGML_XQUEUE_TRACE": "on",
                                        "GGML_XQUEUE_HOLD": "device", "GGML_XQUEUE_AHEAD": "1024"}).stdout.strip()
    assert got == ("preempt=node segment_us=20 stream_priority=off window=16 tail_us=4000 trace=1 hold=device "
                   "ahead=1024")
    assert "tail_us=20000 " in _run(plan_test, "knobs", env={"GGML_XQUEUE_TAIL_US": "20000"}).stdout
    for v, want in (("on", "on"), ("1", "on"), ("0", "off"), ("auto", "auto")):
        assert f"stream_priority={want} " in _run(plan_test, "knobs", env={"GGML_XQUEUE_STREAM_PRIORITY": v}).stdout
    assert "segment_us=100000" in _run(plan_test, "knobs", env={"GGML_XQUEUE_SEGMENT_US": "100000"}).stdout


@pytest.mark.parametrize("name,value,allowed", [
    ("GGML_XQUEUE_SEGMENT_US", "19", "[20, 100000]"),
    ("GGML_XQUEUE_SEGMENT_US", "100001", "[20, 100000]"),
    ("GGML_XQUEUE_SEGMENT_US", "400us", "[20, 100000]"),
    ("GGML_XQUEUE_SEGMENT_US", "-5", "[20, 100000]"),
    ("GGML_XQUEUE_PREEMPT", "segments", "segment, node or graph"),
    ("GGML_XQUEUE_STREAM_PRIORITY", "yes", "auto, on or off"),
    ("GGML_XQUEUE_WINDOW", "0", "[1, 16]"),
    ("GGML_XQUEUE_WINDOW", "17", "[1, 16]"),
    ("GGML_XQUEUE_TAIL_US", "-1", "[0, 20000]"),
    ("GGML_XQUEUE_TAIL_US", "20001", "[0, 20000]"),
    ("GGML_XQUEUE_TAIL_US", "4ms", "[0, 20000]"),
    ("GGML_XQUEUE_TRACE", "verbose", "on or off"),
    ("GGML_XQUEUE_HOLD", "gpu", "device or host"),
    ("GGML_XQUEUE_AHEAD", "0", "[1, 1024]"),
    ("GGML_XQUEUE_AHEAD", "1025", "[1, 1024]"),
    ("GGML_XQUEUE_GRAPHS", "auto", "GGML_XQUEUE_PREEMPT"),  # replaced settings are refused, not ignored
    ("GGML_XQUEUE_GATE", "node", "GGML_XQUEUE_PREEMPT"),
])
def test_bad_knob_is_one_line_error(plan_test: Path, name: str, value: str, allowed: str) -> None:
    proc = _run(plan_test, "knobs", env={name: value})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {name}={value}: ") and allowed in lines[0], proc.stderr


def test_server_refuses_bad_knob_at_start(server_binary: Path, default_model: Path,  # noqa: F811
                                          tmp_path: Path) -> None:
    s = ServerProcess(server_binary, [*common_args(default_model), "--instances", "10,0"],
                      log_path=tmp_path / "server.log", env={"GGML_XQUEUE_SEGMENT_US": "5"}, startup_timeout=60)
    with pytest.raises(Exception):
        s.start()
    assert s.wait() == 1
    assert "error: GGML_XQUEUE_SEGMENT_US=5: expected an integer number of microseconds in [20, 100000]" \
        in s.log_text()
