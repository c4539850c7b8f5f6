"""scripts/gpu/gpu-carried.sh's job control on the CPU: a stopped job ends with its whole process group, and `wait`
counts it as ended instead of waiting for an exit status that a killed job never writes (run 5 lost ~5 minutes of
device time that way)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu" / "gpu-carried.sh"


def carried(gc: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "GC_DIR": str(gc)})


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_ends_the_job_and_wait_counts_it(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    cp = carried(tmp_path, "start", "long", "--", "bash", "-c", f"sleep 300 & echo $! > {marker}; wait")
    assert cp.returncode == 0, cp.stderr
    deadline = time.monotonic() + 10
    while not marker.exists() or not marker.read_text().strip():
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.05)
    child = int(marker.read_text())
    assert alive(child)
    cp = carried(tmp_path, "stop", "long")
    assert cp.returncode == 0 and "stopped long" in cp.stdout, cp.stderr
    deadline = time.monotonic() + 10
    while alive(child):  # the grandchild went with the job's process group
        assert time.monotonic() < deadline, "the job's child survived the stop"
        time.sleep(0.05)
    t0 = time.monotonic()
    cp = carried(tmp_path, "wait", "120")
    assert time.monotonic() - t0 < 30  # ended, not waited for until the deadline
    assert "== long: exit 143" in cp.stdout
    assert cp.returncode == 1  # a stopped job is not a success


def test_stop_of_an_unknown_job(tmp_path: Path) -> None:
    cp = carried(tmp_path, "stop", "nothing")
    assert cp.returncode == 1
    assert cp.stderr.strip() == "error: no job nothing"


def runner(gc: Path, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT.parent / script), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "GC_DIR": str(gc), **env})


def test_runners_refuse_unknown_steps_and_commands(tmp_path: Path) -> None:
    # the runners' run/chain commands are one shared function (scripts/lib/steps.sh): each names its own steps
    cp = runner(tmp_path, "gpu-run5.sh", "run", "nosuch")
    assert cp.returncode == 1 and cp.stderr.strip() == "error: run STEP (one of: b06 b17 b8 s8 smoke sp8 w8)"
    cp = runner(tmp_path, "gpu-run4.sh", "chain", "b8", "nosuch")
    assert cp.returncode == 1 and cp.stderr.strip() == \
        "error: unknown step nosuch (steps: alt b06 b17 b8 diag s06 s8 smoke)"
    assert not (tmp_path / "jobs" / "chain.cmd").exists()  # nothing started
    cp = runner(tmp_path, "gpu-run9.sh", "run", "nosuch")
    assert cp.returncode == 1 and cp.stderr.strip() == \
        "error: run STEP (one of: h06 h17 h8 hh8 hw8 kill l06 l17 lh06 lo06 o06 o17 o8 oh8 s17 s8 smoke sn8 x2)"
    cp = runner(tmp_path, "gpu-run9.sh", "build", "x")  # builds are gpu-run5.sh's
    assert cp.returncode == 1 and cp.stderr.strip() == "error: unknown command build (run, chain)"
    cp = runner(tmp_path, "gpu-run5.sh", "frob")
    assert cp.returncode == 1 and cp.stderr.strip() == "error: unknown command frob"
    # a step that fails is not an unknown command: its status comes back as it is (run 9 printed one)
    cp = runner(tmp_path, "gpu-run9.sh", "run", "smoke")  # fails at once here (no GPU, no server)
    assert cp.returncode != 0 and "unknown command" not in cp.stderr, cp.stderr
    cp = runner(tmp_path, "gpu-run5.sh", "build", str(tmp_path / "nothing"))
    assert cp.returncode == 1 and "no pruned tree" in cp.stderr


def test_chain_needs_steps(tmp_path: Path) -> None:
    cp = runner(tmp_path, "gpu-run5.sh", "chain")
    assert cp.returncode == 1 and cp.stderr.startswith("error: chain STEP...")


def test_wait_prints_the_bench_result_lines(tmp_path: Path) -> None:
    # the figures come back in a call's output even when its files do not (run 6 lost its files)
    table = "  patched         overhead     decode (normal)                A 1.295 s"
    cp = carried(tmp_path, "start", "b", "--", "bash", "-c", f"echo '{table}'; for i in 1 2 3 4 5 6 7; do echo x; done")
    assert cp.returncode == 0, cp.stderr
    cp = carried(tmp_path, "wait", "30")
    assert cp.returncode == 0 and "== b: exit 0" in cp.stdout
    assert f"   | {table}" in cp.stdout  # not in the 6-line tail any more, still printed


def test_a_second_chain_waits_for_the_first(tmp_path: Path) -> None:
    # run 7 carries its two servers in two calls: the steps that need the second queue behind the first chain, so
    # that two chains never share the GPU. A job stands in for the first chain; the second runs `smoke`, which
    # fails at once here (no GPU, no server) but only after the first has ended.
    cp = carried(tmp_path, "start", "first", "--", "bash", "-c", "sleep 3")
    assert cp.returncode == 0, cp.stderr
    cp = runner(tmp_path, "gpu-run9.sh", "chain", "smoke", CHAIN_NAME="second", CHAIN_AFTER="first")
    assert cp.returncode == 0, cp.stderr
    log = tmp_path / "jobs" / "second.log"
    time.sleep(1)
    assert "=== after first" in log.read_text() and "=== smoke" not in log.read_text()  # still waiting
    cp = carried(tmp_path, "wait", "60")
    assert "== first: exit 0" in cp.stdout and "== second: exit" in cp.stdout
    text = log.read_text()
    assert text.index("=== after first") < text.index("=== smoke") < text.index("=== done")


def test_chain_name_and_after_are_checked(tmp_path: Path) -> None:
    cp = runner(tmp_path, "gpu-run9.sh", "chain", "smoke", CHAIN_NAME="a b")
    assert cp.returncode == 1 and cp.stderr.strip() == "error: CHAIN_NAME=a b: letters, digits, . _ - only"
    cp = runner(tmp_path, "gpu-run9.sh", "chain", "smoke", CHAIN_AFTER="nosuch")
    assert cp.returncode == 1 and cp.stderr.strip() == "error: CHAIN_AFTER=nosuch: no such job"
    cp = runner(tmp_path, "gpu-run9.sh", "chain", "smoke", CHAIN_AFTER="chain")
    assert cp.returncode == 1 and cp.stderr.startswith("error: CHAIN_AFTER=chain: the name of another job")
    assert not (tmp_path / "jobs" / "chain.cmd").exists()  # nothing started


def test_wait_prints_the_target_table(tmp_path: Path) -> None:
    rows = ["A with B decoding / A alone                                       1.208    -             0.981    "
            "≤ 1.05     pass",
            "decode tok/s, normal instance / vanilla                          1.000    -             0.967    "
            "≥ 0.97     FAIL"]
    script = "; ".join([f"echo '{r}'" for r in rows] + ["for i in 1 2 3 4 5 6 7; do echo x; done"])
    cp = carried(tmp_path, "start", "t", "--", "bash", "-c", script)
    assert cp.returncode == 0, cp.stderr
    cp = carried(tmp_path, "wait", "30")
    for r in rows:
        assert f"   | {r}" in cp.stdout


def test_wait_packs_the_reports_apart_from_the_logs(tmp_path: Path) -> None:
    # a call brings back no file over 16 MiB: the reports travel in an archive of their own, without the logs
    gc = tmp_path / "gc"
    cp = carried(gc, "start", "r", "--", "bash", "-c",
                 'mkdir -p "$RESULTS/b8/logs" && echo {} > "$RESULTS/b8/report.json" && echo x > "$RESULTS/b8/logs/s.log"'
                 ' && echo t,c > "$RESULTS/b8/smi.csv"')
    assert cp.returncode == 0, cp.stderr
    cp = carried(gc, "wait", "30", str(tmp_path / "out"))
    assert cp.returncode == 0, cp.stdout + cp.stderr

    def names(archive: str) -> set[str]:
        return set(subprocess.run(["tar", "-tJf", str(tmp_path / "out" / archive)], capture_output=True, text=True,
                                  check=True).stdout.split())
    assert {"results/b8/report.json", "results/b8/logs/s.log", "jobs/r.log"} <= names("results.tar.xz")
    small = names("reports.tar.xz")
    assert "results/b8/report.json" in small and "jobs/r.log" in small and "results/b8/smi.csv" in small
    assert not any("logs" in n for n in small)


def test_setup_unpacks_the_installed_core(tmp_path: Path) -> None:
    # the checkout on the GPU machine has no pip-installed toolkit: setup puts the carried core (native.tar, as
    # cross-build-cuda.sh writes it) where xsched_llama.native looks, so that `xsched-llama scheduler` finds xschedd
    repo = tmp_path / "repo"
    for rel in ("scripts/gpu/gpu-carried.sh", "scripts/lib/common.sh"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes((SCRIPT.parents[2] / rel).read_bytes())
    (repo / "xsched_llama" / "_native" / "stale").mkdir(parents=True)  # an older core is replaced, not merged
    core = tmp_path / "core" / "_native" / "bin"
    core.mkdir(parents=True)
    (core / "xschedd").write_text("daemon")
    carry = tmp_path / "carry"
    carry.mkdir()
    subprocess.run(["tar", "-C", str(tmp_path / "core"), "-cf", str(carry / "native.tar"), "_native"], check=True)
    cp = subprocess.run(["bash", str(repo / "scripts/gpu/gpu-carried.sh"), "setup", str(carry)], capture_output=True,
                        text=True, timeout=60, env={**os.environ, "GC_DIR": str(tmp_path / "gc")})
    assert cp.returncode == 0, cp.stderr
    native = repo / "xsched_llama" / "_native"
    assert (native / "bin" / "xschedd").read_text() == "daemon"
    assert not (native / "stale").exists()
    (carry / "native.tar").write_text("not a tar")
    cp = subprocess.run(["bash", str(repo / "scripts/gpu/gpu-carried.sh"), "setup", str(carry)], capture_output=True,
                        text=True, timeout=60, env={**os.environ, "GC_DIR": str(tmp_path / "gc")})
    assert cp.returncode == 1 and f"cannot unpack {carry}/native.tar" in cp.stderr


def test_chain_kills_a_server_a_step_left(tmp_path: Path) -> None:
    # run 9: a hung server of one step shared the GPU with the next steps; the chain kills what a step leaves
    if subprocess.run(["pgrep", "-x", "patched-server"], capture_output=True).returncode == 0:
        pytest.skip("a process named patched-server runs on this machine: the chain would kill it")
    fake = tmp_path / "patched-server"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", fake)
    left = subprocess.Popen([str(fake), "60"])
    try:
        cp = runner(tmp_path, "gpu-run9.sh", "chain", "smoke")
        assert cp.returncode == 0, cp.stderr
        carried(tmp_path, "wait", "60")
        assert left.wait(timeout=10) == -9
        assert "=== smoke left patched-server running: killed" in (tmp_path / "jobs" / "chain.log").read_text()
    finally:
        if left.poll() is None:
            left.kill()
