"""The patch series: find it, hash it, apply it (overlay first, then `series` in order) idempotently.

The pristine cached tree is never modified: `prepare_source` copies it into a temporary directory,
patches that, and renames the result into place, so a build source is never left half-patched.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import PatchError, UsageError
from .proc import CommandError, run

PATCHES_ENV = "XSCHED_LLAMA_PATCHES"
STAMP = ".xsched-source.json"


@dataclass(frozen=True)
class PatchSet:
    """PatchSet is a patches/ directory: `series` (patch names in order) and `overlay/` (our own files)."""

    root: Path | None
    """The patches directory (None: no patches at all)."""
    series: tuple[str, ...]
    """Patch file names in the order they apply."""
    overlay: tuple[str, ...]
    """Overlay files, relative to overlay/ (POSIX paths)."""
    series_dir: Path | None = None
    """Where `series` and the patch files are: root, or root/commits/<sha12> for an older supported commit
    (None: root)."""

    @property
    def patch_dir(self) -> Path | None:
        """patch_dir is the directory holding `series` and the patch files."""
        return self.series_dir or self.root

    def digest(self) -> str:
        """digest() is the SHA-256 over the series order, every patch and every overlay file."""
        h = hashlib.sha256(b"xsched-llama patch set v1\n")
        if self.root is None:
            return h.hexdigest()
        pdir = self.patch_dir
        assert pdir is not None
        for name in self.series:
            h.update(b"P" + name.encode() + b"\0" + hashlib.sha256((pdir / name).read_bytes()).digest())
        for rel in self.overlay:
            h.update(b"O" + rel.encode() + b"\0" +
                     hashlib.sha256((self.root / "overlay" / rel).read_bytes()).digest())
        return h.hexdigest()


EMPTY = PatchSet(None, (), ())


def default_dir() -> Path | None:
    """default_dir() finds patches/: $XSCHED_LLAMA_PATCHES, the source checkout, then the installed copy."""
    env = os.environ.get(PATCHES_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "patches", here / "_native" / "patches"):
        if cand.is_dir():
            return cand
    return None


COMMITS_DIR = "commits"


def commit_dir(root: Path, commit: str) -> Path:
    """commit_dir() is root/commits/<commit[:12]>: the series ported to an older supported commit."""
    return root / COMMITS_DIR / commit[:12]


def load(root: Path | None = None, commit: str | None = None) -> PatchSet:
    """load() reads `root` (default: default_dir()); a missing directory or `series` means no patches.

    For a `commit` other than the default one whose series was ported (root/commits/<sha12>/series), the series
    and patch files come from there; the overlay is always root/overlay (one overlay for every commit).
    """
    root = root if root is not None else default_dir()
    if root is None:
        return EMPTY
    if not root.is_dir():
        raise UsageError(f"patch directory {root} does not exist")
    pdir = root
    if commit is not None and (commit_dir(root, commit) / "series").is_file():
        pdir = commit_dir(root, commit)
    names: list[str] = []
    series = pdir / "series"
    if series.is_file():
        for line in series.read_text().splitlines():
            name = line.split("#", 1)[0].strip()
            if not name:
                continue
            if not (pdir / name).is_file():
                raise PatchError(f"{series} lists {name}, which is not in {pdir}")
            names.append(name)
    ov = root / "overlay"
    overlay = sorted(p.relative_to(ov).as_posix() for p in ov.rglob("*") if p.is_file()) if ov.is_dir() else []
    return PatchSet(root, tuple(names), tuple(overlay), None if pdir == root else pdir)


def _git_apply(tree: Path, patch: Path, *extra: str) -> None:
    env = {"GIT_CEILING_DIRECTORIES": str(tree.parent), "GIT_DIR": str(tree / ".no-git")}
    run(["git", "apply", "--whitespace=nowarn", *extra, patch.resolve()], cwd=tree, env=env, quiet=True)


def _failed_file(text: str) -> str:
    m = re.search(r"error: (?:patch failed: )?([^:\s]+)(?::\d+)?(?:: (?:No such file|does not exist|already))?", text)
    return m.group(1) if m else "?"


_DIFF_PATHS = re.compile(r"^diff --git a/(\S+) b/(\S+)$", re.M)


def _applied_prefix(tree: Path, paths: list[Path]) -> int:
    """_applied_prefix() is how many leading patches of the series `tree` already has: the largest k for which
    patch k reverses on `tree` and patches k, k-1, ..., 1, reversed one after the other, apply to a scratch copy of
    the files the series touches (0: none). A patch whose lines or context a later patch changes no longer
    reverses on its own once that later patch is applied, so the leading patches are undone in order."""
    for k in range(len(paths), 0, -1):
        try:
            _git_apply(tree, paths[k - 1], "--reverse", "--check")
        except CommandError:
            continue
        touched = {p for patch in paths[:k] for pair in _DIFF_PATHS.findall(patch.read_text(errors="replace"))
                   for p in pair}
        scratch = Path(tempfile.mkdtemp(prefix="xsched-applied-"))
        try:
            for rel in sorted(touched):
                if (tree / rel).is_file():
                    (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(tree / rel, scratch / rel)
            for patch in reversed(paths[:k]):
                _git_apply(scratch, patch, "--reverse")
            return k
        except CommandError:
            continue
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


def apply(ps: PatchSet, tree: Path, commit: str) -> list[tuple[str, str]]:
    """apply() applies `ps` to `tree` in place; returns (name, "applied"|"already applied") per item.

    A patch is already applied when it belongs to the leading patches that `tree` has (_applied_prefix) or, after
    them, when `git apply --reverse --check` succeeds. Raises PatchError naming the patch, the file and the commit,
    with numbered recovery steps. Use prepare_source() for the all-or-nothing version; apply() leaves a partial
    result on error.
    """
    done: list[tuple[str, str]] = []
    if ps.root is None:
        return done
    for rel in ps.overlay:
        src, dst = ps.root / "overlay" / rel, tree / rel
        if dst.exists():
            if filecmp.cmp(src, dst, shallow=False):
                done.append((f"overlay/{rel}", "already applied"))
                continue
            raise PatchError(f"overlay file overlay/{rel} would replace the upstream file {rel} of llama.cpp "
                             f"{commit[:12]}; overlay files must be new files (change it with a patch instead)")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        done.append((f"overlay/{rel}", "applied"))
    pdir = ps.patch_dir
    assert pdir is not None
    n_applied = _applied_prefix(tree, [pdir / name for name in ps.series])
    for i, name in enumerate(ps.series):
        patch = pdir / name
        if i < n_applied:
            done.append((name, "already applied"))
            continue
        try:
            _git_apply(tree, patch, "--reverse", "--check")
            done.append((name, "already applied"))
            continue
        except CommandError:
            pass
        try:
            _git_apply(tree, patch, "--check")
            _git_apply(tree, patch)
        except CommandError as e:
            raise PatchError(
                f"patch {name} does not apply to llama.cpp {commit} (file {_failed_file(e.tail)}): "
                f"{e.tail.strip().splitlines()[-1] if e.tail.strip() else 'git apply failed'}. Recovery: "
                f"1) clone the pinned tree (git clone <llama.cpp> && git checkout {commit[:12]}); "
                f"2) git am the series up to the patch before {name}; "
                f"3) git am {name}, fix the conflict, git am --continue; "
                f"4) regenerate with git format-patch and replace {patch}") from None
        done.append((name, "applied"))
    return done


def prepare_source(pristine: Path, dest: Path, ps: PatchSet, commit: str,
                   tree_sha256: str | None = None) -> tuple[bool, list[tuple[str, str]]]:
    """prepare_source() makes `dest` = `pristine` + `ps`, atomically; returns (changed, per-patch status).

    Reuses `dest` when its stamp records the same commit, pristine tree (`tree_sha256`, the fetch manifest's: a
    refetch with another prune list changes it) and patch-set digest. Files whose content did
    not change since the previous `dest` keep their old mtime, changed ones get a new mtime, so an
    incremental CMake/Ninja build in the same build directory recompiles exactly what changed.
    """
    stamp = {"commit": commit, "patches": ps.digest(), "series": list(ps.series)}
    if tree_sha256 is not None:
        stamp["tree_sha256"] = tree_sha256
    old_stamp = dest / STAMP
    if old_stamp.is_file() and json.loads(old_stamp.read_text()) == stamp:
        return False, [(n, "cached") for n in ps.series]
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".src-", dir=dest.parent))
    try:
        new = work / "src"
        shutil.copytree(pristine, new, symlinks=True)
        status = apply(ps, new, commit)
        if dest.is_dir():
            _carry_mtimes(dest, new)
        (new / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if dest.exists():
            os.replace(dest, work / "old")
        os.replace(new, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return True, status


def _carry_mtimes(old: Path, new: Path) -> None:
    now = time.time()
    for p in new.rglob("*"):
        if not p.is_file() or p.is_symlink():
            continue
        rel = p.relative_to(new)
        o = old / rel
        if o.is_file() and filecmp.cmp(o, p, shallow=False):
            st = o.stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            os.utime(p, (now, now))


def describe(ps: PatchSet) -> str:
    """describe() is a one-line summary for the console."""
    if ps.root is None:
        return "no patch directory"
    where = str(ps.root) if ps.series_dir is None else f"{ps.series_dir} and {ps.root}/overlay"
    return f"{len(ps.series)} patches, {len(ps.overlay)} overlay files from {where}"


