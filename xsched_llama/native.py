"""Where the XSched core installed by `pip install .` lives (library, headers, CMake package config)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .errors import ToolMissingError


def _candidates() -> list[Path]:
    here = Path(__file__).resolve().parent / "_native"
    out = [here]
    # Running from a source checkout (e.g. `python -m pytest` in the repo) imports this file from the
    # checkout, which has no _native: use the installed distribution's copy.
    try:
        from importlib.metadata import PackageNotFoundError, distribution
        try:
            out.append(Path(str(distribution("xsched-llama").locate_file("xsched_llama/_native"))).resolve())
        except PackageNotFoundError:
            pass
    except ImportError:
        pass
    return out


def root() -> Path:
    """root() is the install prefix of the core (…/xsched_llama/_native)."""
    for c in _candidates():
        if (c / "lib" / "cmake" / "XSched").is_dir():
            return c
    raise ToolMissingError("the XSched core is not installed (no xsched_llama/_native/lib/cmake/XSched); "
                           "run `pip install .` in the xsched-llama checkout")


def cmake_dir() -> Path:
    """cmake_dir() is the XSched_DIR to pass to CMake (holds XSchedConfig.cmake)."""
    return root() / "lib" / "cmake" / "XSched"


def lib_dir() -> Path:
    """lib_dir() holds libxsched.so."""
    return root() / "lib"


def include_dir() -> Path:
    """include_dir() holds the public headers xsched/*.h."""
    return root() / "include"


def digest() -> str:
    """digest() is a SHA-256 over the installed core (library, headers, CMake files): part of a build's cache key."""
    r = root()
    h = hashlib.sha256()
    for p in sorted(q for q in r.rglob("*") if q.is_file() and "patches" not in q.relative_to(r).parts):
        h.update(p.relative_to(r).as_posix().encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()
