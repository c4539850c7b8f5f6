"""Pins as data: pins.json holds the llama.cpp commit, the sdist and its SHA-256, the model presets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


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


def commit() -> str:
    """commit() is the pinned llama.cpp commit."""
    return str(_data()["llama_cpp"]["commit"])


def git_url() -> str:
    """git_url() is the upstream llama.cpp repository."""
    return str(_data()["llama_cpp"]["git_url"])


def sdist() -> Sdist:
    """sdist() describes the pinned llama-cpp-python sdist."""
    return Sdist(**_data()["llama_cpp"]["sdist"])


def models() -> dict[str, ModelPin]:
    """models() maps preset names to their pins."""
    return {k: ModelPin(name=k, **v) for k, v in _data()["models"].items()}


def default_model() -> str:
    """default_model() is the preset served when no model is given."""
    return str(_data()["default_model"])
