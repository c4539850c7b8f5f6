"""The maintainer's workflow (`xsched-llama patches checkout|export`, xsched_llama/workspace.py) and the
consistency of patches/ (series, files, DEP-3 headers, the tables of docs/patches.md).

Real git, the real pinned tree (fetched like every other test) and the real series: a checkout exported without
changes reproduces patches/ byte for byte; an overlay edit and a `--fixup` edit land where they belong; dirty or
foreign checkouts are refused with one line and nothing written.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xsched_llama import patches as patches_mod
from xsched_llama import pins, workspace

ROOT = Path(__file__).resolve().parents[1]
PATCHES = ROOT / "patches"
IDENT = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["python3", "-m", "xsched_llama", *args], cwd=cwd or ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=600)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], env={**os.environ, **IDENT}, check=True,
                          stdout=subprocess.PIPE, text=True).stdout


def snapshot(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def newest_only(snap: dict[str, bytes]) -> dict[str, bytes]:
    """newest_only() drops the older commits' series (patches/commits/): what an export of the newest writes."""
    return {k: v for k, v in snap.items() if not k.startswith(patches_mod.COMMITS_DIR + "/")}


@pytest.fixture(scope="module")
def normalized(tmp_path_factory: pytest.TempPathFactory, llama_source: Path) -> Path:
    """patches/ as export writes it (the repository's files are written by export, so this is a copy of them)."""
    tmp = tmp_path_factory.mktemp("norm")
    shutil.copytree(PATCHES, tmp / "patches")
    r = cli("patches", "checkout", str(tmp / "ws"), "--patches", str(tmp / "patches"))
    assert r.returncode == 0, r.stderr
    r = cli("patches", "export", str(tmp / "ws"), "--patches", str(tmp / "patches"))
    assert r.returncode == 0, r.stderr
    return tmp / "patches"


def test_repository_patches_are_export_output(normalized: Path) -> None:
    # what is committed is what export writes: a maintainer's round trip never shows unrelated churn
    assert snapshot(normalized) == snapshot(PATCHES)


def test_checkout_export_round_trip(normalized: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    r = cli("patches", "checkout", str(ws), "--patches", str(normalized), "--json")
    assert r.returncode == 0, r.stderr
    log = git(ws, "log", "--format=%s", "--reverse").splitlines()
    series = patches_mod.load(normalized).series
    assert log[0].startswith("upstream ") and log[1] == "xsched-llama overlay" and len(log) == 2 + len(series)
    assert git(ws, "rev-parse", "--abbrev-ref", "HEAD").strip() == "xsched-llama"
    out = tmp_path / "out"
    r = cli("patches", "export", str(ws), "--patches", str(out))
    assert r.returncode == 0, r.stderr
    # export writes the checkout's commit's series and the overlay (into an empty directory: nothing else)
    assert snapshot(out) == newest_only(snapshot(normalized))


def test_overlay_and_fixup_edits_land_where_they_belong(default_commit_only: None, normalized: Path, tmp_path: Path,
                                                         llama_source: Path) -> None:
    ws = tmp_path / "ws"
    assert cli("patches", "checkout", str(ws), "--patches", str(normalized)).returncode == 0
    # an overlay file edited in a commit of its own on top
    cuh = ws / "ggml" / "src" / "ggml-xqueue-plan.h"
    cuh.write_text(cuh.read_text() + "// overlay edit\n")
    git(ws, "commit", "-qam", "overlay edit")
    # a change to upstream code, folded into the patch that owns the file
    target = next(c for c in git(ws, "log", "--format=%h %s").splitlines() if "llama_set_priority" in c).split()[0]
    header = ws / "include" / "llama.h"
    header.write_text(header.read_text() + "// fixup edit\n")
    git(ws, "commit", "-qa", "--fixup", target)
    subprocess.run(["git", "-C", str(ws), "rebase", "-q", "-i", "--autosquash", workspace.TAG_OVERLAY],
                   env={**os.environ, **IDENT, "GIT_SEQUENCE_EDITOR": "true"}, check=True)
    out = tmp_path / "out"
    r = cli("patches", "export", str(ws), "--patches", str(out))
    assert r.returncode == 0, r.stderr
    before, after = newest_only(snapshot(normalized)), snapshot(out)
    changed = sorted(k for k in before if before[k] != after.get(k))
    assert changed == ["0004-llama-add-llama_set_priority.patch", "overlay/ggml/src/ggml-xqueue-plan.h"], changed
    assert set(after) == set(before)  # no new patch for the overlay commit
    assert b"+// fixup edit" in after["0004-llama-add-llama_set_priority.patch"]
    # and the exported series builds a tree with both edits
    tree = tmp_path / "tree"
    shutil.copytree(llama_source, tree)
    patches_mod.apply(patches_mod.load(out), tree, "test")
    assert (tree / "include" / "llama.h").read_text().endswith("// fixup edit\n")
    assert (tree / "ggml" / "src" / "ggml-xqueue-plan.h").read_text().endswith("// overlay edit\n")


def test_dirty_or_foreign_checkout_is_refused(normalized: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert cli("patches", "checkout", str(ws), "--patches", str(normalized)).returncode == 0
    out = tmp_path / "out"
    shutil.copytree(normalized, out)
    before = snapshot(out)
    with open(ws / "CMakeLists.txt", "a") as f:
        f.write("# dirty\n")
    r = cli("patches", "export", str(ws), "--patches", str(out))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "uncommitted changes" in r.stderr, r.stderr
    assert snapshot(out) == before
    git(ws, "checkout", "-q", "CMakeLists.txt")
    git(ws, "checkout", "-q", "--orphan", "other")
    git(ws, "commit", "-qm", "foreign")
    r = cli("patches", "export", str(ws), "--patches", str(out))
    assert r.returncode == 2 and "foreign branch" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert snapshot(out) == before
    plain = tmp_path / "plain"
    plain.mkdir()
    r = cli("patches", "export", str(plain), "--patches", str(out))
    assert r.returncode == 2 and "not a checkout made by" in r.stderr, r.stderr
    r = cli("patches", "checkout", str(ws), "--patches", str(normalized))
    assert r.returncode == 2 and "not an empty directory" in r.stderr, r.stderr


OLDER = pins.commits()[-1]


def test_older_commit_checkout_export_round_trip(normalized: Path, tmp_path: Path) -> None:
    # the older commit's series (patches/commits/<sha12>/) checks out on its own tree and exports byte for byte;
    # the newest series and the overlay stay as they are
    ws = tmp_path / "ws"
    r = cli("patches", "checkout", str(ws), "--patches", str(normalized), "--llama-commit", OLDER[:10])
    assert r.returncode == 0, r.stderr
    assert git(ws, "log", "--format=%s", "--reverse").splitlines()[0] == f"upstream {OLDER}"
    out = tmp_path / "out"
    shutil.copytree(normalized, out)
    r = cli("patches", "export", str(ws), "--patches", str(out))
    assert r.returncode == 0, r.stderr
    assert snapshot(out) == snapshot(normalized)


def test_unported_commit_is_ported_with_three_way_merges(normalized: Path, tmp_path: Path) -> None:
    # without patches/commits/<sha12>/, checkout ports the newest series with `git am -3`: at the older commit the
    # first conflict (0006, three server files) stops it with exit 5 and `git am` in progress in the checkout
    bare = tmp_path / "patches"
    shutil.copytree(normalized, bare, ignore=shutil.ignore_patterns(patches_mod.COMMITS_DIR))
    ws = tmp_path / "ws"
    r = cli("patches", "checkout", str(ws), "--patches", str(bare), "--llama-commit", OLDER[:10])
    assert r.returncode == 5 and r.stderr.count("error: ") == 1 and "git am --continue" in r.stderr, r.stderr
    assert (ws / ".git" / "rebase-apply").is_dir()  # am in progress, as the message says
    assert "patch 0006-server-prioritised-instances.patch does not apply" in r.stderr, r.stderr
    conflicts = ["tools/server/server-context.cpp", "tools/server/server-context.h", "tools/server/server.cpp"]
    assert f"conflict in {', '.join(conflicts)}" in r.stderr
    assert git(ws, "diff", "--name-only", "--diff-filter=U").split() == conflicts
    assert len(git(ws, "log", "--format=%s", "xsched/overlay..HEAD").splitlines()) == 5  # 0001-0005 merged
    assert not (bare / patches_mod.COMMITS_DIR).exists()  # nothing written into patches/


def test_older_series_mirrors_the_newest() -> None:
    # one logical change per patch on both commits: the newest's patches with the same names, order and DEP-3
    # headers, then only `compat` patches (later upstream API the shared overlay uses), each with its own header
    older = patches_mod.load(PATCHES, OLDER)
    newest = patches_mod.load(PATCHES).series
    assert older.series_dir == patches_mod.commit_dir(PATCHES, OLDER)
    assert older.series[:len(newest)] == newest
    for i, name in enumerate(older.series[len(newest):], len(newest) + 1):
        assert re.fullmatch(rf"{i:04d}-compat-[a-z0-9_-]+\.patch", name), name
        head = (older.series_dir / name).read_text().split("\n---\n", 1)[0]
        assert re.search(r"^Description: .*^Forwarded: .*^Last-Update: ", head, re.M | re.S), name
    assert sorted(p.name for p in older.series_dir.glob("*.patch")) == sorted(older.series)
    for name in newest:
        head = (PATCHES / name).read_text().split("\n---\n", 1)[0]
        assert (older.series_dir / name).read_text().split("\n---\n", 1)[0] == head, name


def test_series_files_headers_and_docs_agree() -> None:
    ps = patches_mod.load(PATCHES)
    on_disk = sorted(p.name for p in PATCHES.glob("*.patch"))
    assert sorted(ps.series) == on_disk, "every patch file is in series and every series entry exists"
    docs = (ROOT / "docs" / "patches.md").read_text()
    for i, name in enumerate(ps.series, 1):
        assert name.startswith(f"{i:04d}-"), f"{name}: numbered in series order"
        text = (PATCHES / name).read_text()
        header = text.split("\n---\n", 1)[0]
        for field in ("Description:", "Forwarded:", "Last-Update:"):
            assert re.search(rf"^{field} ", header, re.M), f"{name}: DEP-3 {field} missing"
        m = re.search(r"^Last-Update: (\d{4}-\d{2}-\d{2})$", header, re.M)
        assert m, f"{name}: Last-Update is a date"
        assert f"`{name}`" in docs, f"docs/patches.md has no table row for {name}"
    # every patch of both series has a row whose "lines" column is the files' lengths (newest / older; – = absent)
    older = patches_mod.load(PATCHES, OLDER)
    assert older.series_dir is not None
    for name in sorted(set(ps.series) | set(older.series)):
        m = re.search(rf"^\| `{re.escape(name)}` \| (\d+|–) / (\d+|–) \|", docs, re.M)
        assert m, f"docs/patches.md: no row with a lines column for {name}"
        want = tuple(str((d / name).read_text().count("\n")) if name in series else "–"
                     for d, series in ((PATCHES, ps.series), (older.series_dir, older.series)))
        assert m.groups() == want, f"docs/patches.md: {name} has {' / '.join(m.groups())} lines, the files {want}"
    for rel in ps.overlay:
        assert f"`{rel}`" in docs, f"docs/patches.md does not describe overlay/{rel}"
