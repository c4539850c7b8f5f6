"""Prune llama.cpp to what building llama-server needs (integration doc §5.3), ~27 MB instead of 176 MB."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

_KEEP_FILES = frozenset({
    "CMakeLists.txt", "LICENSE", "scripts/ui-assets.cmake", "ggml/CMakeLists.txt", "tools/CMakeLists.txt",
    "tools/ui/CMakeLists.txt", "tools/ui/sources.cmake", "tools/ui/ui.cpp.in", "tools/ui/ui.h.in",
    "tools/ui/embed.cpp",  # the UI embedder at 4df29be4f4c3 (later commits generate from ui.cpp.in)
    "models/ggml-vocab-qwen2.gguf",
})
_KEEP_DIRS = ("cmake/", "include/", "src/", "common/", "vendor/", "licenses/", "ggml/cmake/", "ggml/include/",
              "ggml/src/ggml-cpu/", "ggml/src/ggml-cuda/")
_DROP_DIRS = ("tools/ui/", "tools/server/tests/", "tools/mtmd/tests/")


def keep(rel: str) -> bool:
    """keep() says whether the file at `rel` (POSIX path relative to the llama.cpp root) is kept."""
    if rel in _KEEP_FILES:
        return True
    if rel.startswith(_KEEP_DIRS):
        return True
    if rel.startswith("ggml/src/") and "/" not in rel[len("ggml/src/"):]:
        return True
    if rel.startswith("tools/") and rel.count("/") >= 2:
        if rel.startswith(_DROP_DIRS):
            return False
        if rel.startswith("tools/mtmd/test-"):
            return False
        return True
    return False


def copy_tree(src: Path, dst: Path) -> list[str]:
    """copy_tree() copies the kept files of the llama.cpp tree `src` into `dst`; returns their sorted paths."""
    kept: list[str] = []
    for dirpath, dirnames, filenames in os.walk(src):
        reldir = os.path.relpath(dirpath, src)
        reldir = "" if reldir == "." else reldir.replace(os.sep, "/") + "/"
        # never descend into VCS metadata or a stray CMake build directory at the top
        dirnames[:] = sorted(d for d in dirnames if d != ".git" and not (reldir == "" and d == "build"))
        for name in filenames:
            rel = reldir + name
            if name == ".git" or not keep(rel):
                continue
            out = dst / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.join(dirpath, name), out, follow_symlinks=False)
            kept.append(rel)
    return sorted(kept)


def tree_digest(root: Path, files: Iterable[str]) -> tuple[str, str]:
    """tree_digest() returns (sha256 of the file list, sha256 of list+contents) for the manifest."""
    files = sorted(files)
    list_hash = hashlib.sha256("".join(f + "\n" for f in files).encode()).hexdigest()
    h = hashlib.sha256()
    for f in files:
        p = root / f
        h.update(f.encode() + b"\0")
        if p.is_symlink():
            h.update(b"L" + os.readlink(p).encode())
        else:
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return list_hash, h.hexdigest()
