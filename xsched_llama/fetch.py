"""`xsched-llama fetch`: get llama.cpp at the pinned commit into the cache, pruned, with a manifest.

Cache layout: <cache>/src/<commit>/llama.cpp (the pristine pruned tree) and <cache>/src/<commit>/manifest.json.
Both appear together by one rename of a temporary directory, so a tree without a manifest never exists.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import socket
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from . import __version__, pins, ui
from .errors import NetworkError, UsageError, VerificationError, XschedLlamaError
from .paths import cache_dir, check_free_space, locked, tmp_dir
from .proc import CommandError, run
from .prune import copy_tree, keep, tree_digest

SOURCES = ("auto", "git", "pypi")
CONNECT_TIMEOUT_S = 5.0


@dataclass
class FetchResult:
    """FetchResult is what `fetch` produced or found."""

    tree: Path
    """The pristine pruned llama.cpp tree (never modified afterwards)."""
    manifest: dict[str, Any]
    """The manifest written next to it."""
    reused: bool = False
    """True when the cache already held the tree."""
    attempts: list[str] = field(default_factory=list)
    """For --source auto: one line per source tried."""


def source_dir(cache: Path, commit: str) -> Path:
    """source_dir() is <cache>/src/<commit>: holds llama.cpp/ and manifest.json."""
    return cache / "src" / commit


def load_manifest(cache: Path, commit: str) -> dict[str, Any] | None:
    """load_manifest() returns the cached manifest for `commit`, or None when not fetched."""
    m = source_dir(cache, commit) / "manifest.json"
    if not m.is_file() or not (source_dir(cache, commit) / "llama.cpp").is_dir():
        return None
    return dict(json.loads(m.read_text()))


SOURCE_ENV = "XSCHED_LLAMA_SOURCE"


def fetch(source: str | None = None, *, cache: Path | None = None, commit: str | None = None,
          assume_commit: str | None = None, git_url: str | None = None, force: bool = False) -> FetchResult:
    """fetch() puts the pruned llama.cpp tree at `commit` (default: the newest pinned commit) into the cache.

    `source` is auto, git, pypi, or a local path (directory or tarball); None means $XSCHED_LLAMA_SOURCE,
    else auto. Reuses the cache unless `force`.
    """
    source = source or os.environ.get(SOURCE_ENV) or "auto"
    if source not in SOURCES and not Path(source).exists():
        raise UsageError(f"unknown source {source!r}: use auto, git, pypi or an existing directory/tarball")
    cache = cache_dir(cache)
    commit = commit or pins.commit()
    with locked(cache / "locks" / f"src-{commit}.lock", "fetching llama.cpp"):
        return _fetch(source, cache, commit, assume_commit, git_url, force)


def _fetch(source: str, cache: Path, commit: str, assume_commit: str | None, git_url: str | None,
           force: bool) -> FetchResult:
    final = source_dir(cache, commit)
    existing = load_manifest(cache, commit)
    if existing is not None and not force:
        return FetchResult(final / "llama.cpp", existing, reused=True)
    check_free_space(cache, 1.0, "fetching llama.cpp")
    kinds = ["git", "pypi"] if source == "auto" else [source]
    attempts: list[str] = []
    for kind in kinds:
        work = Path(tempfile.mkdtemp(prefix="fetch-", dir=tmp_dir(cache)))
        try:
            with ui.step(f"Fetching llama.cpp {commit[:12]} from {kind}"):
                tree = work / "out" / "llama.cpp"
                tree.parent.mkdir(parents=True)
                info = _fetch_one(kind, tree, work, commit, assume_commit, git_url)
            manifest = _finish(tree, info, commit)
            if final.exists():
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(work / "out", final)
            attempts.append(f"{kind}: ok")
            if source == "auto":
                ui.info(f"fetched from {kind} ({'; '.join(attempts)})")
            return FetchResult(final / "llama.cpp", manifest, attempts=attempts)
        except XschedLlamaError as e:
            attempts.append(f"{kind}: {e}")
            if source != "auto":
                raise
            ui.warn(f"source {kind} failed: {e}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    raise NetworkError("could not fetch llama.cpp from any source (" + "; ".join(attempts) +
                       "); pass --source PATH with a llama.cpp checkout or the llama-cpp-python sdist")


def _fetch_one(kind: str, tree: Path, work: Path, commit: str, assume: str | None,
               git_url: str | None) -> dict[str, Any]:
    if kind == "git":
        return _from_git(git_url or pins.git_url(), tree, work, commit)
    if kind == "pypi":
        return _from_pypi(tree, work, commit)
    return _from_path(Path(kind).expanduser().resolve(), tree, work, commit, assume)


def _finish(tree: Path, info: dict[str, Any], commit: str) -> dict[str, Any]:
    files = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file() or p.is_symlink())
    if "models/ggml-vocab-qwen2.gguf" not in files or "CMakeLists.txt" not in files:
        raise VerificationError(f"the fetched tree lacks CMakeLists.txt or models/ggml-vocab-qwen2.gguf "
                                f"({info.get('origin')}); is it really llama.cpp?")
    list_hash, tree_hash = tree_digest(tree, files)
    manifest = {"commit": commit, **info, "files": len(files), "file_list_sha256": list_hash,
                "tree_sha256": tree_hash, "fetched_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                "xsched_llama": __version__}
    (tree.parent / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _check_commit(found: str, commit: str, where: str) -> None:
    if found.strip() != commit:
        raise VerificationError(f"{where} is llama.cpp commit {found.strip()[:40] or '?'}, xsched-llama needs "
                                f"{commit}; check out that commit or use --source pypi")


def _reachable(url: str) -> None:
    u = urlparse(url)
    if u.scheme in ("", "file"):
        return
    host, port = u.hostname or "", u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise NetworkError(f"cannot reach {host}:{port} ({e})") from None


def _from_git(url: str, tree: Path, work: Path, commit: str) -> dict[str, Any]:
    _reachable(url)
    try:
        import git  # gitpython, imported only here (not installed on every machine)
    except ImportError:
        raise UsageError("--source git needs gitpython (pip install gitpython)") from None
    clone = work / "clone"
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_HTTP_LOW_SPEED_LIMIT": "1000", "GIT_HTTP_LOW_SPEED_TIME": "30"}
    try:
        repo = git.Repo.init(clone)
        with repo.git.custom_environment(**env):
            origin = repo.create_remote("origin", url)
            try:
                repo.git.fetch("--depth", "1", "origin", commit)
            except git.GitCommandError:
                origin.fetch()  # servers that refuse fetching a bare SHA
            repo.git.checkout("--detach", commit)
        found = repo.head.commit.hexsha
    except git.GitCommandError as e:
        raise NetworkError(f"git fetch of {commit[:12]} from {url} failed: "
                           f"{(e.stderr or str(e)).strip().splitlines()[-1]}") from None
    _check_commit(found, commit, url)
    copy_tree(clone, tree)
    return {"source": "git", "origin": url}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _layout(commit: str) -> pins.Sdist:
    """_layout() is the sdist pinned for `commit`, or the default one's layout for a commit without a pin."""
    return pins.sdist(commit) if commit in pins.commits() else pins.sdist()


def _from_pypi(tree: Path, work: Path, commit: str) -> dict[str, Any]:
    if commit not in pins.commits():
        raise NetworkError(f"no llama-cpp-python sdist is pinned for llama.cpp {commit[:12]}")
    sd = pins.sdist(commit)
    dl = work / "dl"
    try:
        run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", sd.project, "--timeout", "15",
             "--retries", "1", f"{sd.project}=={sd.version}", "-d", dl], timeout=900)
    except CommandError as e:
        raise NetworkError(f"pip could not download {sd.project}=={sd.version}: {e.tail.strip().splitlines()[-1:]}"
                           ) from None
    files = list(dl.glob("*.tar.gz"))
    if not files:
        raise NetworkError(f"pip downloaded no sdist of {sd.project}=={sd.version}")
    got = _sha256(files[0])
    if got != sd.sha256:
        raise VerificationError(f"{files[0].name} has sha256 {got}, pinned {sd.sha256}; the index served "
                                f"another file: do not use it")
    info = _from_sdist_tarball(files[0], tree, commit)
    return {**info, "source": "pypi", "origin": f"{sd.project}=={sd.version}"}


def _from_sdist_tarball(path: Path, tree: Path, commit: str) -> dict[str, Any]:
    sd = _layout(commit)
    try:
        tf = tarfile.open(path)
    except (tarfile.TarError, OSError) as e:
        raise UsageError(f"{path} is not a readable tarball ({e})") from None
    with tf:
        members = tf.getmembers()
        tops = {m.name.split("/", 1)[0] for m in members}
        head = next((m for m in members if m.name.split("/", 1)[-1] == sd.commit_file and len(tops) == 1), None)
        if head is None:
            raise _NotSdist()
        root = head.name.split("/", 1)[0] + "/" + sd.vendor_dir + "/"
        f = tf.extractfile(head)
        _check_commit(f.read().decode() if f else "", commit, f"{path} ({sd.commit_file})")
        for m in members:
            if not m.name.startswith(root):
                continue
            rel = m.name[len(root):]
            if not rel or ".." in rel.split("/") or not keep(rel):
                continue
            out = tree / rel
            if m.isfile():
                out.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(m)
                assert src is not None
                with open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.chmod(out, m.mode & 0o755 | 0o644)
                os.utime(out, (m.mtime, m.mtime))
            elif m.issym() and not os.path.isabs(m.linkname):
                out.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(m.linkname, out)
    return {"source": "path", "origin": str(path), "sha256": _sha256(path)}


class _NotSdist(XschedLlamaError):
    pass


def _from_path(path: Path, tree: Path, work: Path, commit: str, assume: str | None) -> dict[str, Any]:
    if path.is_file():
        try:
            return _from_sdist_tarball(path, tree, commit)
        except _NotSdist:
            pass
        ext = work / "extract"
        ext.mkdir()
        try:
            with tarfile.open(path) as tf:
                for m in tf.getmembers():
                    if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir()):
                        continue
                    tf.extract(m, ext, set_attrs=False)
        except (tarfile.TarError, OSError) as e:
            raise UsageError(f"{path} is not a readable tarball ({e})") from None
        entries = list(ext.iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else ext
        info = _from_dir(root, tree, commit, assume, label=str(path))
        return {**info, "origin": str(path), "sha256": _sha256(path)}
    if not path.is_dir():
        raise UsageError(f"source {path} is neither a directory nor a tarball")
    return _from_dir(path, tree, commit, assume, label=str(path))


def _git_head(path: Path) -> str | None:
    if not (path / ".git").exists():
        return None
    try:
        cp = run(["git", "-C", path, "rev-parse", "HEAD"], quiet=True)
        dirty = run(["git", "-C", path, "status", "--porcelain", "--untracked-files=no"], quiet=True)
    except CommandError:
        return _gitdir_head(path)
    if dirty.stdout.strip():
        raise VerificationError(f"{path} has local modifications (git status); use a clean checkout of the "
                                "pinned commit")
    return cp.stdout.strip()


def _gitdir_head(path: Path) -> str | None:
    dotgit = path / ".git"
    if dotgit.is_file() and dotgit.read_text().startswith("gitdir:"):
        head = (path / dotgit.read_text().split(":", 1)[1].strip() / "HEAD")
        if head.is_file():
            return head.read_text().strip()
    return None


def _from_dir(path: Path, tree: Path, commit: str, assume: str | None, label: str) -> dict[str, Any]:
    sd = _layout(commit)
    how: str
    if (path / sd.commit_file).is_file() and (path / sd.vendor_dir).is_dir():
        found, how, path = (path / sd.commit_file).read_text(), "sdist submodule HEAD", path / sd.vendor_dir
    elif (found_git := _git_head(path)) is not None:
        found, how = found_git, "git HEAD"
    elif (path.parent / "manifest.json").is_file() and path.name == "llama.cpp":
        found, how = str(json.loads((path.parent / "manifest.json").read_text()).get("commit", "")), "manifest"
    elif assume:
        found, how = assume, "--assume-commit"
    else:
        raise VerificationError(f"cannot tell which llama.cpp commit {label} is (no .git, no manifest); "
                                f"pass --assume-commit {commit} if you know it is that commit")
    _check_commit(found, commit, f"{label} ({how})")
    if not (path / "CMakeLists.txt").is_file():
        raise UsageError(f"{label} has no CMakeLists.txt: not a llama.cpp tree")
    copy_tree(path, tree)
    return {"source": "path", "origin": label, "verified_by": how}


