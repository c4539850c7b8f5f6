"""`xsched-llama patches checkout|export`: the patch series as a git branch a maintainer can edit.

checkout DIR makes DIR a git repository with three kinds of commits on the branch `xsched-llama`:
  1. "upstream <commit>": the pinned pristine tree (tag xsched/upstream);
  2. "xsched-llama overlay": our own files of patches/overlay/ (tag xsched/overlay);
  3. one commit per patch of patches/series, applied with `git am` (the DEP-3 header is the commit message).
Edit with ordinary git (new commits, `--fixup` + `rebase -i --autosquash`, `rebase` onto a new upstream tree).

For an older supported commit (pins.json) the series is patches/commits/<sha12>/ when it was ported; when it was
not, checkout ports it: the newest series is applied with `git am -3` (the newest pristine tree is committed as a
side commit, tag xsched/port-base, so the three-way merge has the preimages), and a conflict stops in DEST with
`git am` in progress (PatchError, exit 5): resolve, `git am --continue`, then export.

export DIR writes the branch back into patches/ (patches/commits/<sha12>/ for a commit other than the newest; the
overlay always goes to patches/overlay/): every commit after the overlay commit becomes a patch
(`git format-patch --zero-commit --no-numbered --no-signature --stat=80`), except its changes to overlay files,
which go back into patches/overlay/ (an overlay file's content is taken from HEAD). Patch file names are kept for
commits whose subject is unchanged. The new patches/ is assembled in a temporary directory and swapped in at
once, so a failed export changes nothing. A checkout exported without changes reproduces patches/ byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from . import patches as patches_mod
from . import pins
from .errors import PatchError, UsageError
from .proc import CommandError, run

META = "xsched-llama.json"  # in .git/: the commit, the series names and their subjects at checkout
TAG_UPSTREAM = "xsched/upstream"
TAG_OVERLAY = "xsched/overlay"
TAG_PORT_BASE = "xsched/port-base"
BRANCH = "xsched-llama"
_IDENT = {"GIT_AUTHOR_NAME": "xsched-llama", "GIT_AUTHOR_EMAIL": "xsched-llama@localhost",
          "GIT_COMMITTER_NAME": "xsched-llama", "GIT_COMMITTER_EMAIL": "xsched-llama@localhost"}


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    full = {"GIT_CEILING_DIRECTORIES": str(repo.parent), "GIT_CONFIG_NOSYSTEM": "1", **(env or {})}
    return run(["git", "-C", str(repo), *args], env=full, quiet=True).stdout


def _subject(patch_text: str) -> str:
    m = re.search(r"^Subject: (?:\[PATCH[^\]]*\] )?(.*(?:\n [^\n]*)*)", patch_text, re.M)
    return " ".join(m.group(1).split()) if m else ""


def checkout(dest: Path, ps: patches_mod.PatchSet, pristine: Path, commit: str,
             port_from: Path | None = None) -> dict[str, object]:
    """checkout() creates `dest` (must not exist, or be empty) as described in the module docstring.

    `port_from` is the pristine tree the series was written for when it is not `commit`'s own (a port): the
    series is then applied with `git am -3` in `dest`, and a conflict leaves `git am` in progress there.
    """
    if ps.root is None:
        raise UsageError("there is no patch directory to check out")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} exists and is not an empty directory")
    dest = dest.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".checkout-", dir=dest.parent))
    try:
        tree = work / "tree"
        tree.mkdir()
        _git(tree, "init", "-q", "-b", BRANCH)
        if port_from is not None:  # the preimages of the series, for git am -3; a root commit off the branch
            _commit_tree_as(tree, port_from, "series base (the tree the series was written for)")
            _git(tree, "tag", TAG_PORT_BASE)
            _git(tree, "checkout", "-q", "--orphan", BRANCH + "-upstream")
            _git(tree, "rm", "-rfq", ".")
            _clean_worktree(tree)
            _git(tree, "branch", "-q", "-D", BRANCH)
            _git(tree, "branch", "-q", "-m", BRANCH)
        shutil.copytree(pristine, tree, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
        (tree / patches_mod.STAMP).unlink(missing_ok=True)
        _git(tree, "add", "-A")
        _git(tree, "commit", "-q", "--no-verify", "-m", f"upstream {commit}", env=_IDENT)
        _git(tree, "tag", TAG_UPSTREAM)
        for rel in ps.overlay:
            dst = tree / rel
            if dst.exists():
                raise PatchError(f"overlay file overlay/{rel} would replace the upstream file {rel} of llama.cpp "
                                 f"{commit[:12]}; overlay files must be new files")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ps.root / "overlay" / rel, dst)
        _git(tree, "add", "-A")
        _git(tree, "commit", "-q", "--no-verify", "--allow-empty", "-m", "xsched-llama overlay", env=_IDENT)
        _git(tree, "tag", TAG_OVERLAY)
        pdir = ps.patch_dir
        assert pdir is not None
        subjects = [_subject((pdir / n).read_text(errors="replace")) for n in ps.series]
        if port_from is None:
            for name in ps.series:
                _am(tree, pdir / name, name, commit)
        meta = {"commit": commit, "series": list(ps.series), "subjects": subjects,
                "overlay": list(ps.overlay), "patches_dir": str(ps.root)}
        (tree / ".git" / META).write_text(json.dumps(meta, indent=2) + "\n")
        if dest.exists():
            dest.rmdir()
        os.replace(tree, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if port_from is not None:
        try:
            _git(dest, "am", "-q", "-3", "--keep-cr", "--committer-date-is-author-date",
                 *[str((pdir / n).resolve()) for n in ps.series], env=_IDENT)
        except CommandError as e:
            raise PatchError(_port_stop(dest, ps.series, commit, e)) from None
    return {"checkout": str(dest), "commit": commit, "branch": BRANCH, "patches": list(ps.series),
            "overlay_files": len(ps.overlay)}


def _am(tree: Path, patch: Path, name: str, commit: str) -> None:
    try:
        _git(tree, "am", "-q", "--keep-cr", "--committer-date-is-author-date", str(patch.resolve()), env=_IDENT)
    except CommandError as e:
        raise PatchError(f"patch {name} does not apply to llama.cpp {commit[:12]}: "
                         f"{(e.tail.strip().splitlines() or ['git am failed'])[-1]}") from None


def _port_stop(dest: Path, series: tuple[str, ...], commit: str, e: CommandError) -> str:
    """_port_stop() says where a port stopped: the patch (from git am's state) and the conflicting files."""
    nxt = dest / ".git" / "rebase-apply" / "next"
    idx = int(nxt.read_text()) - 1 if nxt.is_file() else -1
    name = series[idx] if 0 <= idx < len(series) else "?"
    try:
        files = _git(dest, "diff", "--name-only", "--diff-filter=U").split()
    except CommandError:
        files = []
    why = ", ".join(files) or (e.tail.strip().splitlines() or ["git am failed"])[-1]
    return (f"patch {name} does not apply to llama.cpp {commit[:12]} (conflict in {why}): resolve it in {dest}, "
            "`git am --continue`, then `xsched-llama patches export`")


def _clean_worktree(tree: Path) -> None:
    for p in tree.iterdir():
        if p.name == ".git":
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _commit_tree_as(tree: Path, src: Path, message: str) -> None:
    shutil.copytree(src, tree, symlinks=True, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
    (tree / patches_mod.STAMP).unlink(missing_ok=True)
    _git(tree, "add", "-A")
    _git(tree, "commit", "-q", "--no-verify", "-m", message, env=_IDENT)


def _keep_others(old: Path, new: Path, sub: Path) -> None:
    """_keep_others() copies what export does not write from `old` into `new`: everything but overlay/ and, in
    `sub` (the exported series' directory), `series` and the patch files (a README, the other commits' series)."""
    if not old.is_dir():
        return
    for p in sorted(old.rglob("*")):
        rel = p.relative_to(old)
        if rel.parts[0] == "overlay" or not p.is_file() or (new / rel).exists():
            continue
        if rel.parent == sub and (rel.name == "series" or rel.name.endswith(".patch")):
            continue
        (new / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, new / rel)


def _strings(v: object) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else []


def read_meta(repo: Path) -> dict[str, object]:
    meta = repo / ".git" / META
    if not meta.is_file():
        raise UsageError(f"{repo} is not a checkout made by `xsched-llama patches checkout`")
    return dict(json.loads(meta.read_text()))


def _overlay_commit(repo: Path) -> str:
    """_overlay_commit() finds the overlay commit on HEAD's first-parent line: the child of the upstream commit
    (the overlay tag goes stale once the overlay commit is amended or rebased)."""
    try:
        _git(repo, "merge-base", "--is-ancestor", TAG_UPSTREAM, "HEAD")
    except CommandError:
        raise UsageError(f"HEAD of {repo} does not descend from {TAG_UPSTREAM}: a foreign branch "
                         "(nothing was exported)") from None
    line = _git(repo, "rev-list", "--reverse", "--first-parent", f"{TAG_UPSTREAM}..HEAD").split()
    if not line or _git(repo, "log", "-1", "--format=%s", line[0]).strip() != "xsched-llama overlay":
        raise UsageError(f"the first commit after {TAG_UPSTREAM} in {repo} is not the overlay commit "
                         "(\"xsched-llama overlay\"): a foreign branch (nothing was exported)")
    return line[0]


def export(repo: Path, patches_dir: Path) -> dict[str, object]:
    """export() writes the branch of `repo` into `patches_dir` (see the module docstring)."""
    repo = repo.resolve()
    meta = read_meta(repo)
    if _git(repo, "status", "--porcelain", "--untracked-files=normal").strip():
        raise UsageError(f"{repo} has uncommitted changes: commit or stash them first (nothing was exported)")
    base = _overlay_commit(repo)
    overlay = [p for p in _git(repo, "diff", "--name-only", "--diff-filter=A", TAG_UPSTREAM, base).splitlines() if p]
    patches_dir = patches_dir.resolve()
    patches_dir.parent.mkdir(parents=True, exist_ok=True)
    commit = str(meta.get("commit", ""))
    # the series of an older commit goes to commits/<sha12>/, the overlay (shared) always to overlay/
    sub = Path(".") if not commit or pins.is_default(commit) else patches_mod.commit_dir(Path("."), commit)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=patches_dir.parent))
    try:
        new = work / "patches"
        (new / "overlay").mkdir(parents=True)
        (new / sub).mkdir(parents=True, exist_ok=True)
        for rel in overlay:
            src = repo / rel
            if not src.is_file():
                raise UsageError(f"overlay file {rel} was deleted on the branch; remove it from the overlay commit "
                                 "instead (nothing was exported)")
            dst = new / "overlay" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        raw = work / "raw"
        excludes = [f":(exclude){p}" for p in overlay]
        _git(repo, "format-patch", "-q", "--zero-commit", "--no-numbered", "--no-signature", "--stat=80",
             "-o", str(raw), f"{base}..HEAD", "--", ".", *excludes)
        generated = sorted(raw.glob("*.patch")) if raw.is_dir() else []
        old_names = [str(n) for n in _strings(meta.get("series"))]
        old_subjects = [str(s) for s in _strings(meta.get("subjects"))]
        names: list[str] = []
        for g in generated:
            subject = _subject(g.read_text(errors="replace"))
            name = g.name
            if subject in old_subjects:
                name = old_names[old_subjects.index(subject)]
            if name in names:
                raise UsageError(f"two commits of the branch have the subject {subject!r} (nothing was exported)")
            shutil.copy2(g, new / sub / name)
            names.append(name)
        (new / sub / "series").write_text("".join(n + "\n" for n in names))
        _keep_others(patches_dir, new, sub)
        old = work / "old"
        if patches_dir.exists():
            os.replace(patches_dir, old)
        os.replace(new, patches_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"exported": str(patches_dir), "patches": names, "overlay_files": len(overlay)}
