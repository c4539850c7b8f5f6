"""CLI bad input: one line on stderr, a documented non-zero exit code, nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xsched_llama import server
from xsched_llama.errors import UsageError


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "XSCHED_LLAMA_CACHE": str(tmp_path / "cache"), **(env or {})}
    full.pop("XSCHED_LLAMA_SOURCE", None)
    return subprocess.run([sys.executable, "-m", "xsched_llama", *args], capture_output=True, text=True,
                          env=full, stdin=subprocess.DEVNULL, timeout=120)


def error_line(cp: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in cp.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, cp.stderr
    assert "Traceback" not in cp.stderr
    return lines[0]


def leftovers(tmp_path: Path) -> list[str]:
    cache = tmp_path / "cache"
    out = []
    for p in cache.rglob("*") if cache.exists() else []:
        if p.is_file() and p.name != "CACHEDIR.TAG" and p.parent.name != "locks":
            out.append(p.relative_to(cache).as_posix())
    return out


@pytest.mark.parametrize("args,code,needle", [
    (["model", "pull", "no-such-preset"], 2, "unknown model"),
    (["fetch", "--source", "svn"], 2, "unknown source"),
    (["build", "--bogus"], 2, "No such option"),
    (["model", "synth", "--shape", "qwen9-1t"], 2, "unknown shape"),
    (["serve", "--instance", "high:ten:1:2"], 2, "bad --instance"),
    (["fetch", "--llama-commit", "deadbeef"], 2, "llama.cpp commit 'deadbeef' is not supported; supported: 0c1e57098bba"),
    (["build", "--llama-commit", "0c1"], 2, "is not supported"),
    (["patches", "checkout", "ws", "--llama-commit", "zz"], 2, "is not supported"),
])
def test_bad_input(tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    cp = cli(tmp_path, *args)
    assert cp.returncode == code and needle in error_line(cp)
    assert leftovers(tmp_path) == []


def test_unreachable_network(tmp_path: Path) -> None:
    cp = cli(tmp_path, "model", "pull", f"http://127.0.0.1:{server.free_port()}/m.gguf")
    assert cp.returncode == 3 and "cannot download" in error_line(cp)
    assert leftovers(tmp_path) == []


def test_wrong_commit_in_local_path(tmp_path: Path) -> None:
    tree = tmp_path / "llama.cpp"
    (tree / "models").mkdir(parents=True)
    (tree / "CMakeLists.txt").write_text("")
    subprocess.run(["git", "init", "-q"], cwd=tree, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty",
                    "-m", "x"], cwd=tree, check=True)
    cp = cli(tmp_path, "fetch", "--source", str(tree))
    assert cp.returncode == 4 and "xsched-llama needs 0c1e57098bba" in error_line(cp)
    assert leftovers(tmp_path) == []


def test_plain_tree_without_commit(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    cp = cli(tmp_path, "fetch", "--source", str(tmp_path / "plain"))
    assert cp.returncode == 4 and "--assume-commit" in error_line(cp)


def test_missing_compiler(tmp_path: Path) -> None:
    cp = cli(tmp_path, "build", env={"CXX": "/nonexistent/c++"})
    assert cp.returncode == 7 and "no C++ compiler" in error_line(cp)
    assert leftovers(tmp_path) == []


def test_missing_gpu_for_cuda_arch_detection(tmp_path: Path) -> None:
    cp = cli(tmp_path, "build", "--cuda", env={"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin"})
    if cp.returncode == 0:
        pytest.skip("this machine has a GPU")
    assert cp.returncode == 7 and "--cuda-arch" in error_line(cp)


def test_no_disk_space(tmp_path: Path) -> None:
    cp = cli(tmp_path, "build", env={"XSCHED_LLAMA_MIN_FREE_GB": "1e9"})
    assert cp.returncode == 8 and "GB free" in error_line(cp)
    assert leftovers(tmp_path) == []


def test_cache_dir_flag_and_cachedir_tag(tmp_path: Path) -> None:
    cp = cli(tmp_path, "--cache-dir", str(tmp_path / "other"), "model", "list", "--json")
    assert cp.returncode == 0 and '"smollm2-135m"' in cp.stdout
    assert (tmp_path / "other" / "CACHEDIR.TAG").read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")


def test_scheduling_args() -> None:
    assert server.scheduling_args(["high:10:1:2", "0:1:4"], None, "hpf") == \
        ["--instances", "high=10:1:2,0:1:4", "--xsched-policy", "HPF"]
    assert server.scheduling_args([], "5:2:1,1:1:1", "WRR") == ["--instances", "5:2:1,1:1:1", "--xsched-policy", "WRR"]
    assert server.scheduling_args() == []
    with pytest.raises(UsageError):
        server.scheduling_args([], "1:2", None)
    with pytest.raises(UsageError):
        server.scheduling_args([], None, "fifo")


def test_scheduling_args_queue_bounds() -> None:
    assert server.scheduling_args(["high:10:1:2", "batch:0:1:4:16"], None, None, 32) == \
        ["--instances", "high=10:1:2,batch=0:1:4:16", "--xsched-max-waiting", "32"]
    assert server.scheduling_args(["10:1:2:3"], "0:1:4:1") == ["--instances", "10:1:2:3,0:1:4:1"]
    for bad in (["batch:0:1:4:0"], ["0:1:4:-2"], ["0:1:4:x"], ["n:0:1:4:5:6"]):
        with pytest.raises(UsageError, match="QUEUE >= 1"):
            server.scheduling_args(bad)
    with pytest.raises(UsageError, match="QUEUE >= 1"):
        server.scheduling_args([], "0:1:4:0")
    with pytest.raises(UsageError, match="--max-waiting"):
        server.scheduling_args([], None, None, 0)


def test_scheduling_args_names() -> None:
    # NAME of --instance is passed on as llama-server's NAME=; the server's own form takes NAME= as well
    assert server.scheduling_args(["a.b-c_1:1:1:1"], "low=0:1:2") == ["--instances", "a.b-c_1=1:1:1,low=0:1:2"]
    for bad in (["bad name:1:1:1"], ["x" * 33 + ":1:1:1"], ["a/b:1:1:1"]):
        with pytest.raises(UsageError, match="NAME of 1-32"):
            server.scheduling_args(bad)
    with pytest.raises(UsageError, match="given twice"):
        server.scheduling_args(["hi:1:1:1"], "hi=0:1:1")
    with pytest.raises(UsageError, match="NAME="):
        server.scheduling_args([], "=0:1:1")
    with pytest.raises(UsageError, match="NAME="):
        server.scheduling_args([], "12=0:1:1")  # a number is an index, not a name


def test_serve_bad_max_waiting_exits_2(tmp_path: Path) -> None:
    cp = cli(tmp_path, "serve", "--max-waiting", "0")
    assert cp.returncode == 2
    assert "--max-waiting" in error_line(cp)


def test_failing_configure_names_the_log(default_commit_only: None, tmp_path: Path, llama_source: Path) -> None:
    cp = cli(tmp_path, "build", "--vanilla", "--source", str(llama_source), "-D", "CMAKE_CXX_COMPILER=/bin/false",
             env={"XSCHED_LLAMA_MIN_FREE_GB": "0.1"})
    line = error_line(cp)
    assert cp.returncode == 6 and "configure of vanilla-cpu failed; full log:" in line
    log = Path(line.split("full log: ")[1].split(";")[0])
    assert log.is_file() and "CMAKE_CXX_COMPILER" in log.read_text()
    assert not (log.parent / "stamp.json").exists()


@pytest.mark.parametrize("log,state", [
    ("-- UI: downloading from latest: https://huggingface.co/...\n"
     "CMake Warning: UI: no assets available - building without an embedded UI.\n", "missing"),
    ("-- UI: HF download succeeded, stamp updated (ggml-org/llama-ui|b1, resolved: b1)\n", "embedded"),
    ("-- UI: using pre-built assets from /src/tools/ui/dist\n", "embedded"),
    ("[12/12] Linking CXX executable bin/llama-server\n", "unknown"),
])
def test_web_ui_state_from_the_build_log(tmp_path: Path, log: str, state: str) -> None:
    from xsched_llama import build
    p = tmp_path / "build.log"
    p.write_text(log)
    assert build.web_ui_state(p) == state
    assert build.web_ui_state(tmp_path / "absent.log") == "unknown"
