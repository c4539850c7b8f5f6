"""fetch: local git repository (path and gitpython), sdist-shaped tarball, plain tree, wrong commit."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from xsched_llama import fetch
from xsched_llama.errors import UsageError, VerificationError
from xsched_llama.prune import keep

FILES = {
    "CMakeLists.txt": "cmake_minimum_required(VERSION 3.14)\n",
    "LICENSE": "MIT\n",
    "src/llama.cpp": "int x;\n",
    "ggml/src/ggml.c": "int y;\n",
    "ggml/src/ggml-metal/ggml-metal.m": "dropped\n",
    "tools/server/server.cpp": "int main(){}\n",
    "tools/server/tests/unit/test_x.py": "dropped\n",
    "tools/ui/package.json": "{}\n",
    "tools/ui/CMakeLists.txt": "# kept\n",
    "docs/build.md": "dropped\n",
    "models/ggml-vocab-qwen2.gguf": "GGUF-vocab\n",
    "models/ggml-vocab-llama.gguf": "dropped\n",
}


def make_tree(root: Path) -> Path:
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(cwd), "PATH": "/usr/bin:/bin"}
                          ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    root = make_tree(tmp_path / "llama.cpp")
    git("init", "-q", cwd=root)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "upstream", cwd=root)
    return root, git("rev-parse", "HEAD", cwd=root)


def expected() -> list[str]:
    return sorted(r for r in FILES if keep(r))


def listing(tree: Path) -> list[str]:
    return sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())


def test_prune_rules_keep_what_the_server_build_needs() -> None:
    assert expected() == ["CMakeLists.txt", "LICENSE", "ggml/src/ggml.c", "models/ggml-vocab-qwen2.gguf",
                          "src/llama.cpp", "tools/server/server.cpp", "tools/ui/CMakeLists.txt"]


def test_fetch_from_local_git_checkout(tmp_path: Path, repo: tuple[Path, str]) -> None:
    root, commit = repo
    cache = tmp_path / "cache"
    r = fetch.fetch(str(root), cache=cache, commit=commit)
    assert listing(r.tree) == expected()
    m = json.loads((r.tree.parent / "manifest.json").read_text())
    assert m["commit"] == commit and m["source"] == "path" and m["verified_by"] == "git HEAD"
    assert m["files"] == len(expected()) and len(m["tree_sha256"]) == 64
    again = fetch.fetch(str(root), cache=cache, commit=commit)
    assert again.reused and again.tree == r.tree
    assert list((cache / "tmp").iterdir()) == []


def test_fetch_with_gitpython_from_a_file_url(tmp_path: Path, repo: tuple[Path, str]) -> None:
    pytest.importorskip("git")
    root, commit = repo
    r = fetch.fetch("git", cache=tmp_path / "cache", commit=commit, git_url=root.as_uri())
    assert listing(r.tree) == expected()
    assert r.manifest["source"] == "git"


def test_fetch_refuses_a_wrong_commit_and_leaves_nothing(tmp_path: Path, repo: tuple[Path, str]) -> None:
    root, _ = repo
    cache = tmp_path / "cache"
    with pytest.raises(VerificationError, match="0c1e57098bba43ac29e6e3b677cdceebdd22334f"):
        fetch.fetch(str(root), cache=cache)
    assert not (cache / "src").exists()
    assert list((cache / "tmp").iterdir()) == []


def test_fetch_refuses_a_modified_checkout(tmp_path: Path, repo: tuple[Path, str]) -> None:
    root, commit = repo
    (root / "src" / "llama.cpp").write_text("changed\n")
    with pytest.raises(VerificationError, match="local modifications"):
        fetch.fetch(str(root), cache=tmp_path / "cache", commit=commit)


def make_sdist(tmp_path: Path, commit: str) -> Path:
    top = tmp_path / "sdist" / "llama_cpp_python-0.3.36"
    make_tree(top / "vendor" / "llama.cpp")
    (top / "vendor" / "llama.cpp" / ".git").write_text("gitdir: ../../.git/modules/vendor/llama.cpp\n")
    (top / ".git" / "modules" / "vendor" / "llama.cpp").mkdir(parents=True)
    (top / ".git" / "modules" / "vendor" / "llama.cpp" / "HEAD").write_text(commit + "\n")
    (top / "llama_cpp" / "__init__.py").parent.mkdir(parents=True)
    (top / "llama_cpp" / "__init__.py").write_text("")
    tgz = tmp_path / "llama_cpp_python-0.3.36.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(top, arcname=top.name)
    return tgz


def test_fetch_from_sdist_shaped_tarball(tmp_path: Path) -> None:
    commit = "1234567890abcdef1234567890abcdef12345678"
    tgz = make_sdist(tmp_path, commit)
    r = fetch.fetch(str(tgz), cache=tmp_path / "cache", commit=commit)
    assert listing(r.tree) == expected()
    assert r.manifest["origin"] == str(tgz) and len(r.manifest["sha256"]) == 64


def test_sdist_tarball_with_another_commit_is_refused(tmp_path: Path) -> None:
    tgz = make_sdist(tmp_path, "1234567890abcdef1234567890abcdef12345678")
    with pytest.raises(VerificationError, match="1234567890ab"):
        fetch.fetch(str(tgz), cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "src").exists()


def test_plain_tree_needs_assume_commit(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "plain")
    with pytest.raises(VerificationError, match="--assume-commit"):
        fetch.fetch(str(root), cache=tmp_path / "cache")
    pinned = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
    r = fetch.fetch(str(root), cache=tmp_path / "cache", assume_commit=pinned)
    assert r.manifest["verified_by"] == "--assume-commit" and listing(r.tree) == expected()


def test_unknown_source_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown source"):
        fetch.fetch("svn", cache=tmp_path / "cache")


def test_pinned_tree_is_pruned_as_documented(default_commit_only: None, llama_source: Path) -> None:
    m = json.loads((llama_source.parent / "manifest.json").read_text())
    assert m["commit"] == "0c1e57098bba43ac29e6e3b677cdceebdd22334f"
    # the 960 files of integration doc §5.3 (+ models/ggml-vocab-qwen2.gguf), same list as the lead's manual prune
    assert m["files"] == 960
    assert m["file_list_sha256"] == "2a8f6f176be7d2d85d8cd7853d59d0a24ef1b86a82c229430c32251ba06faa06"
    assert (llama_source / "tools" / "server" / "server.cpp").is_file()
    assert not (llama_source / "tools" / "server" / "tests").exists()
    size = sum(p.stat().st_size for p in llama_source.rglob("*") if p.is_file())
    assert 25e6 < size < 40e6
