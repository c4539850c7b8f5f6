"""Shared fixtures: the real fetch/build/pull code paths, cached in the user cache so reruns are instant.

The cache is $XSCHED_LLAMA_CACHE or the XDG default (~/.cache/xsched-llama): a CI job that persists it
skips both llama.cpp builds (~10 min each on 2 cores) on the next run.

Fixtures (session-scoped unless noted):
  toolkit_cache       Path of the cache directory.
  llama_commit        The llama.cpp commit the tests build: $XSCHED_LLAMA_COMMIT (a SHA prefix of a supported
                      commit, pins.json), else the newest; an unknown one stops the run (exit 4).
  llama_source        Path of the pristine pruned llama.cpp tree at llama_commit (fetch.fetch, source auto).
  default_model       Path of the default GGUF (smollm2-135m, via xsched_llama.models.pull), or
                      $XSCHED_LLAMA_TEST_MODEL when set (the GPU machine has no network for the pull).
  patched_cpu_server  Path of the patched CPU llama-server at llama_commit (build.build; slow on a cold cache).
  vanilla_cpu_server  Path of the unpatched CPU llama-server at llama_commit (same, --vanilla).
  start_server        (function) factory: start_server(binary, args) -> a started ServerProcess, stopped
                      at teardown, log in tmp_path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from xsched_llama import build, fetch, models, paths, pins
from xsched_llama.errors import UsageError
from xsched_llama.server import ServerProcess


@pytest.fixture(scope="session")
def toolkit_cache() -> Path:
    return paths.cache_dir()


COMMIT_ENV = "XSCHED_LLAMA_COMMIT"


@pytest.fixture(scope="session")
def llama_commit() -> str:
    try:
        return pins.resolve_commit(os.environ.get(COMMIT_ENV) or None)
    except UsageError as e:
        pytest.exit(f"{COMMIT_ENV}: {e}", returncode=4)


@pytest.fixture(scope="session")
def default_commit_only(llama_commit: str) -> None:
    """Skips a test whose expectations are recorded for the default llama.cpp commit only (list it first, so that
    no build starts for it at another commit)."""
    if not pins.is_default(llama_commit):
        pytest.skip(f"expectations recorded for the default llama.cpp commit, not {llama_commit[:12]}")


@pytest.fixture(scope="session")
def llama_source(toolkit_cache: Path, llama_commit: str) -> Path:
    return fetch.fetch(cache=toolkit_cache, commit=llama_commit).tree


@pytest.fixture(scope="session")
def default_model(toolkit_cache: Path) -> Path:
    """The embedded SmolLM2, or $XSCHED_LLAMA_TEST_MODEL (e.g. the synthetic 8B model on the GPU machine)."""
    override = os.environ.get("XSCHED_LLAMA_TEST_MODEL")
    if override:
        if not Path(override).is_file():
            pytest.exit(f"XSCHED_LLAMA_TEST_MODEL={override}: no such file", returncode=4)
        return Path(override)
    return models.resolve(None, cache=toolkit_cache)


def _server(cache: Path, vanilla: bool, commit: str) -> Path:
    summary = build.build(build.BuildOptions(vanilla=vanilla, llama_commit=commit), cache=cache)
    return Path(summary["binaries"]["llama-server"])


@pytest.fixture(scope="session")
def patched_cpu_server(toolkit_cache: Path, llama_source: Path, llama_commit: str) -> Path:
    return _server(toolkit_cache, vanilla=False, commit=llama_commit)


@pytest.fixture(scope="session")
def vanilla_cpu_server(toolkit_cache: Path, llama_source: Path, llama_commit: str) -> Path:
    return _server(toolkit_cache, vanilla=True, commit=llama_commit)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(binary: Path, args: Sequence[str | Path], **kw: object) -> ServerProcess:
        log = tmp_path / f"server-{len(started)}.log"
        srv = ServerProcess(binary, args, log_path=log, **kw)  # type: ignore[arg-type]
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.stop()
