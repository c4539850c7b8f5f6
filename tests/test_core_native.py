"""The native core (native/xsched): build it with CMake in a temp dir, run its CTest suite, install it and
build a consumer through find_package(XSched CONFIG REQUIRED) -> XSched::xsched.

Real builds, no mocks. About a minute on 2 cores with a warm ccache (compiler launcher when available).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "native" / "xsched"

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")


def _run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run cmd, echoing it; fail the test with the command and its output tail on a non-zero exit."""
    print("+", " ".join(cmd))
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-6000:]}")
    return proc.stdout


def _configure_args() -> list[str]:
    args = ["-DCMAKE_BUILD_TYPE=RelWithDebInfo"]
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    if shutil.which("ccache"):
        args += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    return args


@pytest.fixture(scope="module")
def core_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("xsched-build")
    _run(["cmake", "-S", str(CORE), "-B", str(build), "-DXSCHED_BUILD_TESTS=ON", *_configure_args()])
    _run(["cmake", "--build", str(build), "-j", "2"])
    return build


def test_core_ctest(core_build: Path) -> None:
    env = dict(os.environ)
    for var in ("XSCHED_POLICY", "XSCHED_TIMESLICE_US", "XSCHED_THRESHOLD", "XSCHED_BATCH", "XSCHED_CUDA_SYNC"):
        env.pop(var, None)
    out = _run(["ctest", "--test-dir", str(core_build), "--output-on-failure", "-j", "2", "--timeout", "300"],
               env=env)
    assert "100% tests passed" in out


def test_core_package_consumer(core_build: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    _run(["cmake", "--install", str(core_build), "--prefix", str(prefix)])
    assert (prefix / "lib" / "libxsched.so").is_file()
    assert (prefix / "include" / "xsched" / "xsched.h").is_file()
    assert (prefix / "lib" / "cmake" / "XSched" / "XSchedConfig.cmake").is_file()
    src = tmp_path / "consumer"
    src.mkdir()
    (src / "CMakeLists.txt").write_text(textwrap.dedent("""\
        cmake_minimum_required(VERSION 3.18)
        project(consumer LANGUAGES CXX)
        find_package(XSched CONFIG REQUIRED)
        add_executable(consumer main.cpp)
        target_link_libraries(consumer PRIVATE XSched::xsched)
        """))
    (src / "main.cpp").write_text(textwrap.dedent("""\
        #include <xsched/xsched.h>
        #include <cstdio>
        int main() {
            HwQueueHandle hwq = 0;
            XQueueHandle xq = 0;
            int bad = HostQueueCreate(&hwq) | XQueueCreate(&xq, hwq, kPreemptLevelBlock, kQueueCreateFlagBlockingSubmit)
                    | XQueueGate(xq) | XQueueSynchronized(xq) | XQueueDestroy(xq) | HwQueueDestroy(hwq);
            HwQueueHandle cuda = 0;
            XResult c = CudaQueueCreate(&cuda, nullptr);  // NotSupported either way: the NULL stream
            std::printf("ok=%d cuda=%d %s\\n", bad == 0, XSchedCudaAvailable(), XResultName(c));
            return bad;
        }
        """))
    build = tmp_path / "consumer-build"
    _run(["cmake", "-S", str(src), "-B", str(build), f"-DXSched_DIR={prefix / 'lib' / 'cmake' / 'XSched'}",
          *_configure_args()])
    _run(["cmake", "--build", str(build)])
    out = _run([str(build / "consumer")])
    assert "ok=1" in out
    assert "kXSchedErrorNotSupported" in out


def test_core_as_subdirectory(tmp_path: Path) -> None:
    """native/xsched configures inside a parent project without touching the parent's flags."""
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "CMakeLists.txt").write_text(textwrap.dedent(f"""\
        cmake_minimum_required(VERSION 3.18)
        project(parent LANGUAGES CXX)
        add_subdirectory({CORE.as_posix()} xsched)
        if(NOT TARGET XSched::xsched)
          message(FATAL_ERROR "XSched::xsched missing")
        endif()
        if(CMAKE_CXX_FLAGS MATCHES "sanitize")
          message(FATAL_ERROR "global flags changed")
        endif()
        """))
    _run(["cmake", "-S", str(parent), "-B", str(tmp_path / "b"), *_configure_args()])
