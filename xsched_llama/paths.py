"""Where things live: the cache directory and its layout (documented in docs/toolkit.md)."""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DiskSpaceError

CACHE_ENV = "XSCHED_LLAMA_CACHE"
MIN_FREE_ENV = "XSCHED_LLAMA_MIN_FREE_GB"

_TAG = ("Signature: 8a477f597d28d172789f06886806bc55\n"
        "# This file is a cache directory tag created by xsched-llama.\n"
        "# For information about cache directory tags see https://bford.info/cachedir/\n")


def default_cache_dir() -> Path:
    """default_cache_dir() is $XDG_CACHE_HOME/xsched-llama (platformdirs' user cache dir)."""
    try:
        import platformdirs
        return Path(platformdirs.user_cache_dir("xsched-llama", appauthor=False))
    except ImportError:  # the GPU machine installs with --no-deps
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "xsched-llama"


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """cache_dir() resolves the cache: the flag, then $XSCHED_LLAMA_CACHE, then the XDG default.

    The directory is created and marked with CACHEDIR.TAG.
    """
    if override:
        path = Path(override)
    elif os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV])
    else:
        path = default_cache_dir()
    path = path.expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    tag = path / "CACHEDIR.TAG"
    if not tag.exists():
        tag.write_text(_TAG)
    return path


def tmp_dir(cache: Path) -> Path:
    """tmp_dir() is <cache>/tmp: temporary work lives on the same file system so renames are atomic."""
    path = cache / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_free_space(where: Path, need_gb: float, what: str) -> None:
    """check_free_space() raises DiskSpaceError when `where` has less than `need_gb` GB free.

    $XSCHED_LLAMA_MIN_FREE_GB overrides `need_gb` (CI runners with small disks, tests).
    """
    env = os.environ.get(MIN_FREE_ENV)
    if env:
        need_gb = float(env)
    free = shutil.disk_usage(where).free
    if free < need_gb * 1e9:
        raise DiskSpaceError(f"{what} needs {need_gb:g} GB free in {where}, only {free / 1e9:.1f} GB left; "
                             f"free some space or point --cache-dir/${CACHE_ENV} elsewhere")


@contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """locked() holds an exclusive lock on `path` (created) while the block runs; says so when it must wait.

    Two processes sharing a cache (parallel CI jobs, several test runs) never build or fetch the same thing at once.
    """
    from . import ui
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            ui.info(f"waiting for another xsched-llama process ({fh.read().strip() or '?'}) to finish {what}…")
            t0 = time.monotonic()
            fcntl.flock(fh, fcntl.LOCK_EX)
            ui.info(f"  waited {time.monotonic() - t0:.0f} s")
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
