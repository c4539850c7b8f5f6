"""`xsched-llama build`: pristine tree + patch series → CMake configure → build llama-server (and friends).

Cache layout: <cache>/builds/<variant>/{src,build,build.log,stamp.json}, variant = patched|vanilla + cpu|cudaNN.
A build is reused when (commit, patch-set digest, options) match its stamp and the binaries exist; otherwise
the source is re-prepared (changed files only get new mtimes) and CMake rebuilds incrementally.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import fetch as fetch_mod
from . import native, patches, pins, ui
from .errors import BuildError, ToolMissingError, UsageError
from .paths import cache_dir, check_free_space, locked
from .proc import CommandError, run, which

NEED_FREE_GB = 2.0
JOBS_ENV = "XSCHED_LLAMA_JOBS"
_PROGRESS = re.compile(r"^\[\s*(\d+)/(\d+)\]|^\[\s*(\d+)%\]")


@dataclass
class BuildOptions:
    """BuildOptions are the user's choices; everything that changes the binaries is part of the cache key."""

    cuda: bool = False
    """Build the CUDA backend."""
    cuda_arch: str | None = None
    """CMAKE_CUDA_ARCHITECTURES (default: detected with nvidia-smi)."""
    vanilla: bool = False
    """Build the pinned commit unpatched (no overlay, no series, no GGML_XQUEUE)."""
    targets: list[str] = field(default_factory=lambda: ["llama-server"])
    """CMake targets to build."""
    jobs: int | None = None
    """Parallel jobs (default: the core count)."""
    build_type: str = "Release"
    """CMAKE_BUILD_TYPE."""
    cmake_args: list[str] = field(default_factory=list)
    """Extra -D options appended to the configure line."""
    patches_dir: Path | None = None
    """Patch directory (default: patches.default_dir())."""
    source: str | None = None
    """Fetch source used when the tree is not cached yet (None: $XSCHED_LLAMA_SOURCE, else auto)."""
    llama_commit: str | None = None
    """The supported llama.cpp commit to build (full SHA; None: the newest, pins.commit())."""


def variant(opts: BuildOptions) -> str:
    """variant() names the build directory: e.g. patched-cpu, vanilla-cuda90; a commit other than the default
    one adds its first 12 digits (patched-cpu-78d2f524682d)."""
    dev = f"cuda{(opts.cuda_arch or '').replace(';', '-')}" if opts.cuda else "cpu"
    at = "" if opts.llama_commit is None or pins.is_default(opts.llama_commit) else "-" + opts.llama_commit[:12]
    return (f"{'vanilla' if opts.vanilla else 'patched'}-{dev}"
            f"{'' if opts.build_type == 'Release' else '-' + opts.build_type.lower()}{at}")


def detect_cuda_arch() -> str:
    """detect_cuda_arch() reads compute_cap of the first GPU with nvidia-smi (e.g. "9.0" → "90")."""
    try:
        cp = run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], quiet=True, timeout=30)
    except (ToolMissingError, CommandError):
        raise ToolMissingError("cannot detect the GPU architecture (nvidia-smi missing or failing); "
                               "pass --cuda-arch, e.g. --cuda-arch 90 for H100") from None
    caps = [c.strip() for c in cp.stdout.splitlines() if c.strip()]
    if not caps or not re.fullmatch(r"\d+\.\d+", caps[0]):
        raise ToolMissingError(f"nvidia-smi reported no compute capability ({cp.stdout.strip()!r}); "
                               "pass --cuda-arch")
    return caps[0].replace(".", "")


def _check_tools(opts: BuildOptions) -> dict[str, str]:
    tools = {"cmake": which("cmake", "pip install cmake, or install it with your package manager")}
    cxx = os.environ.get("CXX") or next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)
    if not cxx or not shutil.which(cxx.split()[0]):
        raise ToolMissingError("no C++ compiler found (c++, g++ or clang++, or $CXX); "
                               "install one, e.g. apt-get install -y build-essential")
    tools["cxx"] = cxx
    tools["git"] = which("git", "install git (used by `git apply` for the patch series)")
    if shutil.which("ninja"):
        tools["ninja"] = str(shutil.which("ninja"))
    if shutil.which("ccache"):
        tools["ccache"] = str(shutil.which("ccache"))
    if opts.cuda:
        nvcc = shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc",) if os.path.exists(p)), None)
        if not nvcc:
            raise ToolMissingError("--cuda needs the CUDA toolkit (nvcc not on PATH nor in /usr/local/cuda/bin)")
        tools["nvcc"] = nvcc
    return tools


def configure_args(opts: BuildOptions, src: Path, bdir: Path, tools: dict[str, str],
                   xsched_dir: Path | None) -> list[str]:
    """configure_args() is the full `cmake` configure command line."""
    args = [tools["cmake"], "-S", str(src), "-B", str(bdir), f"-DCMAKE_BUILD_TYPE={opts.build_type}",
            "-DGGML_NATIVE=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_APP=OFF",
            "-DLLAMA_OPENSSL=OFF", "-DBUILD_SHARED_LIBS=OFF"]
    if "ninja" in tools:
        args[1:1] = ["-G", "Ninja"]
    if "ccache" in tools:
        args += ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    if opts.cuda:
        args += ["-DGGML_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={opts.cuda_arch}", "-DGGML_CUDA_NCCL=OFF",
                 f"-DCMAKE_CUDA_COMPILER={tools['nvcc']}"]
        if "ccache" in tools:
            args.append("-DCMAKE_CUDA_COMPILER_LAUNCHER=ccache")
    if not opts.vanilla:
        args.append("-DGGML_XQUEUE=ON")
        if xsched_dir is not None:
            args.append(f"-DXSched_DIR={xsched_dir}")
    return args + list(opts.cmake_args)


def _binary(bdir: Path, target: str) -> Path:
    return bdir / "bin" / target


def build(opts: BuildOptions, *, cache: Path | None = None) -> dict[str, Any]:
    """build() fetches, patches, configures and builds; returns the --json summary.

    One build per variant at a time: a second process waits for the first (file lock in the build root).
    """
    cache = cache_dir(cache)
    if opts.cuda and not opts.cuda_arch:
        opts.cuda_arch = detect_cuda_arch()
        ui.info(f"CUDA architecture {opts.cuda_arch} (detected with nvidia-smi; --cuda-arch overrides)")
    with locked(cache / "locks" / f"build-{variant(opts)}.lock", f"building {variant(opts)}"):
        return _build(opts, cache)


def _build(opts: BuildOptions, cache: Path) -> dict[str, Any]:
    t0 = time.monotonic()
    if opts.cuda_arch and not re.fullmatch(r"[0-9a-z;\-]+", opts.cuda_arch):
        raise UsageError(f"bad --cuda-arch {opts.cuda_arch!r}: use e.g. 90 or 80;90")
    tools = _check_tools(opts)
    check_free_space(cache, NEED_FREE_GB, "building llama.cpp")
    jobs = opts.jobs or int(os.environ.get(JOBS_ENV, "0")) or os.cpu_count() or 2
    ui.info(f"cache {cache}; {jobs} jobs" + ("" if opts.jobs else f" (from ${JOBS_ENV} or the core count)"))
    fetched = fetch_mod.fetch(opts.source, cache=cache, commit=opts.llama_commit)
    commit = str(fetched.manifest["commit"])
    ps = patches.EMPTY if opts.vanilla else patches.load(opts.patches_dir, commit)
    xsched_dir: Path | None = None
    if not opts.vanilla:
        try:
            xsched_dir = native.cmake_dir()
        except ToolMissingError:
            if ps.series:
                raise
            ui.warn("the XSched core is not installed and the patch series is empty: building without it")
    root = cache / "builds" / variant(opts)
    src, bdir, log = root / "src", root / "build", root / "build.log"
    root.mkdir(parents=True, exist_ok=True)
    cfg = configure_args(opts, src, bdir, tools, xsched_dir)
    key_data = {"commit": commit, "tree": fetched.manifest.get("tree_sha256"), "patches": ps.digest(),
                "configure": cfg, "targets": sorted(opts.targets),
                "core": native.digest() if xsched_dir is not None else None}
    key = hashlib.sha256(json.dumps(key_data, sort_keys=True).encode()).hexdigest()
    stamp_path = root / "stamp.json"
    stamp = json.loads(stamp_path.read_text()) if stamp_path.is_file() else {}
    binaries = {t: str(_binary(bdir, t)) for t in opts.targets}
    summary: dict[str, Any] = {
        "variant": variant(opts), "commit": commit, "fetched": {k: fetched.manifest.get(k) for k in
                                                                 ("source", "origin", "sha256", "tree_sha256")},
        "source_tree": str(src), "build_dir": str(bdir), "log": str(log), "binaries": binaries,
        "patch_set": ps.digest(), "patches": [], "options": {**asdict(opts), "jobs": jobs,
                                                              "patches_dir": str(ps.patch_dir) if ps.patch_dir else None},
        "xsched_dir": str(xsched_dir) if xsched_dir else None, "cached": False,
    }
    if stamp.get("key") == key and all(Path(b).is_file() for b in binaries.values()):
        summary.update(cached=True, patches=[[n, "cached"] for n in ps.series], seconds=0.0)
        ui.info(f"{variant(opts)} is up to date: {binaries[opts.targets[0]]}")
        return summary
    with ui.step(f"Preparing source ({patches.describe(ps) if not opts.vanilla else 'vanilla, no patches'})"):
        _, status = patches.prepare_source(fetched.tree, src, ps, commit, fetched.manifest.get("tree_sha256"))
    summary["patches"] = [list(s) for s in status]
    stamp_path.unlink(missing_ok=True)
    env = {"CCACHE_BASEDIR": str(cache / "builds"), "CCACHE_NOHASHDIR": "1"}
    log.write_text(f"# xsched-llama build {variant(opts)} {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    phase = "configure"
    try:
        if stamp.get("configure") != cfg or not (bdir / "CMakeCache.txt").is_file():
            # a new configure line starts from a fresh cache (as `cmake --fresh`): a -D given last time and not
            # now must not stick; object files stay, so only what the change touches recompiles
            (bdir / "CMakeCache.txt").unlink(missing_ok=True)
            with ui.step(f"Configuring {variant(opts)} (log {log})"):
                run(cfg, env=env, log=log)
        phase = "build"
        with ui.step(f"Building {', '.join(opts.targets)} with {jobs} jobs"):
            bar = ui.Progress("compiling", None, unit="steps")

            def on_line(line: str) -> None:
                m = _PROGRESS.match(line)
                if m and m.group(1):
                    bar.set(int(m.group(1)), int(m.group(2)))
                elif m:
                    bar.set(int(m.group(3)), 100)
            try:
                run([tools["cmake"], "--build", str(bdir), "--target", *opts.targets, "-j", str(jobs)],
                    env=env, log=log, on_line=on_line)
            finally:
                bar.close()
    except CommandError as e:
        lines = e.tail.strip().splitlines() or ["?"]
        first_error = next((ln for ln in lines if re.search(r"\berror\b", ln, re.I)), lines[-1])
        raise BuildError(f"{phase} of {variant(opts)} failed; full log: {log}; {first_error.strip()}") from None
    missing = [b for b in binaries.values() if not Path(b).is_file()]
    if missing:
        raise BuildError(f"the build finished but {missing[0]} is missing; full log: {log}")
    stamp_path.write_text(json.dumps({"key": key, **key_data}, indent=2) + "\n")
    summary["web_ui"] = web_ui_state(log)
    if summary["web_ui"] == "missing" and "llama-server" in opts.targets:
        ui.warn("the web UI is not embedded: llama.cpp downloads it from huggingface.co at build time and could "
                "not; GET / says how to add it (docs/server.md, \"Web UI\")")
    summary["seconds"] = round(time.monotonic() - t0, 1)
    ui.info(f"built {variant(opts)}: {binaries[opts.targets[0]]}")
    return summary


def web_ui_state(log: Path) -> str:
    """web_ui_state() reads llama.cpp's UI provisioning messages in a build log: "embedded" (assets were
    downloaded, built or supplied in tools/ui/dist), "missing" (none: the server has no web UI), or "unknown"
    (the UI step did not run in this build, e.g. nothing changed)."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    if "UI: no assets available" in text:
        return "missing"
    if re.search(r"UI: (HF download succeeded|HF stamp matches|using pre-built assets|npm build succeeded|"
                 r"provisioning failed; embedding stale)", text):
        return "embedded"
    return "unknown"


def find_binary(opts: BuildOptions, target: str = "llama-server", cache: Path | None = None) -> Path | None:
    """find_binary() returns an already built binary for `opts`, or None."""
    p = _binary(cache_dir(cache) / "builds" / variant(opts) / "build", target)
    return p if p.is_file() else None


