"""Patch series: apply, re-apply (no-op), broken patch (clear error, source untouched), overlay rules."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from xsched_llama import fetch, patches, pins
from xsched_llama.errors import PatchError

COMMIT = "0c1e57098bba43ac29e6e3b677cdceebdd22334f"


def make_patch(tmp: Path, rel: str, old: str, new: str, name: str) -> str:
    """Writes a `git format-patch`-style diff changing `rel` from `old` to `new`; returns its text."""
    a, b = tmp / "pa", tmp / "pb"
    for d, text in ((a, old), (b, new)):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    diff = subprocess.run(["git", "diff", "--no-index", "--no-prefix", "--src-prefix=a/", "--dst-prefix=b/",
                           str(a / rel), str(b / rel)], capture_output=True, text=True).stdout
    diff = diff.replace(f"a{a}/", "a/").replace(f"b{b}/", "b/")
    header = f"From 0000 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] {name}\n\nDescription: test\n" \
             "Forwarded: not-needed\nLast-Update: 2026-11-23\n---\n"
    for d in (a, b):
        subprocess.run(["rm", "-rf", str(d)], check=True)
    return header + diff


@pytest.fixture
def pristine(tmp_path: Path) -> Path:
    root = tmp_path / "pristine"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.c").write_text("int a = 1;\nint b = 2;\nint c = 3;\n")
    (root / "src" / "b.c").write_text("void f(void) {}\n")
    return root


@pytest.fixture
def series(tmp_path: Path) -> Path:
    d = tmp_path / "patches"
    d.mkdir()
    (d / "0001-src-change-a.patch").write_text(
        make_patch(tmp_path, "src/a.c", "int a = 1;\nint b = 2;\nint c = 3;\n",
                   "int a = 1;\nint b = 20;\nint c = 3;\n", "src: change a"))
    (d / "0002-src-change-b.patch").write_text(
        make_patch(tmp_path, "src/b.c", "void f(void) {}\n", "void f(void) { g(); }\n", "src: change b"))
    (d / "series").write_text("# order matters\n0001-src-change-a.patch\n0002-src-change-b.patch\n")
    (d / "overlay" / "src").mkdir(parents=True)
    (d / "overlay" / "src" / "ours.c").write_text("int ours;\n")
    return d


def snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_apply_then_reapply_is_a_noop(tmp_path: Path, pristine: Path, series: Path) -> None:
    ps = patches.load(series)
    assert ps.series == ("0001-src-change-a.patch", "0002-src-change-b.patch")
    assert ps.overlay == ("src/ours.c",)
    status = patches.apply(ps, pristine, COMMIT)
    assert [s for _, s in status] == ["applied"] * 3
    after = snapshot(pristine)
    assert "int b = 20;" in after["src/a.c"] and after["src/ours.c"] == "int ours;\n"
    again = patches.apply(ps, pristine, COMMIT)
    assert [s for _, s in again] == ["already applied"] * 3
    assert snapshot(pristine) == after


def test_reapply_of_stacked_patches_is_a_noop(tmp_path: Path, pristine: Path) -> None:
    # a later patch that changes a line an earlier one added (and so its context): the earlier one no longer
    # reverses on its own once both are applied, yet a second apply finds both applied (the server patches)
    d = tmp_path / "stacked"
    d.mkdir()
    one = "int a = 1;\nint b = 2;\nint c = 3;\n"
    two = "int a = 1;\nint b = 2;\nint added = 1;\nint c = 3;\n"
    three = "int a = 1;\nint b = 2;\nint before = 0;\nint added = 2;\nint c = 3;\n"
    (d / "0001-src-add.patch").write_text(make_patch(tmp_path, "src/a.c", one, two, "src: add"))
    (d / "0002-src-change-the-added-line.patch").write_text(
        make_patch(tmp_path, "src/a.c", two, three, "src: change the added line"))
    (d / "series").write_text("0001-src-add.patch\n0002-src-change-the-added-line.patch\n")
    ps = patches.load(d)
    assert [s for _, s in patches.apply(ps, pristine, COMMIT)] == ["applied"] * 2
    after = snapshot(pristine)
    assert after["src/a.c"] == three
    with pytest.raises(subprocess.CalledProcessError):  # the first patch alone does not reverse any more
        subprocess.run(["git", "apply", "--reverse", "--check", str(d / "0001-src-add.patch")], cwd=pristine,
                       env={**os.environ, "GIT_DIR": str(pristine / ".no-git")}, check=True, capture_output=True)
    assert [s for _, s in patches.apply(ps, pristine, COMMIT)] == ["already applied"] * 2
    assert snapshot(pristine) == after
    # a tree with only the first patch: the second is applied on top
    (pristine / "src" / "a.c").write_text(two)
    assert [s for _, s in patches.apply(ps, pristine, COMMIT)] == ["already applied", "applied"]
    assert snapshot(pristine) == after


def test_prepare_source_keeps_pristine_and_reuses(tmp_path: Path, pristine: Path, series: Path) -> None:
    before = snapshot(pristine)
    ps = patches.load(series)
    dest = tmp_path / "build" / "src"
    changed, status = patches.prepare_source(pristine, dest, ps, COMMIT)
    assert changed and [s for _, s in status] == ["applied"] * 3
    assert snapshot(pristine) == before
    assert "g();" in (dest / "src" / "b.c").read_text()
    changed, status = patches.prepare_source(pristine, dest, ps, COMMIT)
    assert not changed and [s for _, s in status] == ["cached", "cached"]


def test_broken_patch_names_patch_file_commit_and_leaves_source_untouched(
        tmp_path: Path, pristine: Path, series: Path) -> None:
    ps = patches.load(series)
    dest = tmp_path / "build" / "src"
    patches.prepare_source(pristine, dest, ps, COMMIT)
    good = snapshot(dest)
    (series / "0002-src-change-b.patch").write_text(
        make_patch(tmp_path, "src/b.c", "void something_else(void) {}\n", "void x(void) {}\n", "broken"))
    before = snapshot(pristine)
    with pytest.raises(PatchError) as e:
        patches.prepare_source(pristine, dest, patches.load(series), COMMIT)
    msg = str(e.value)
    assert "0002-src-change-b.patch" in msg and "src/b.c" in msg and COMMIT in msg and "1)" in msg
    assert "\n" not in msg
    assert snapshot(pristine) == before
    assert snapshot(dest) == good
    assert [p.name for p in dest.parent.iterdir()] == ["src"]


def test_overlay_must_not_replace_an_upstream_file(tmp_path: Path, pristine: Path, series: Path) -> None:
    (series / "overlay" / "src" / "a.c").write_text("replaced\n")
    with pytest.raises(PatchError, match="upstream file src/a.c"):
        patches.prepare_source(pristine, tmp_path / "out", patches.load(series), COMMIT)
    assert not (tmp_path / "out").exists()


def test_digest_covers_series_and_overlay(series: Path) -> None:
    d0 = patches.load(series).digest()
    (series / "overlay" / "src" / "ours.c").write_text("int ours2;\n")
    d1 = patches.load(series).digest()
    (series / "series").write_text("0001-src-change-a.patch\n")
    d2 = patches.load(series).digest()
    assert len({d0, d1, d2}) == 3


def test_missing_series_means_no_patches(tmp_path: Path, pristine: Path) -> None:
    (tmp_path / "empty").mkdir()
    ps = patches.load(tmp_path / "empty")
    assert ps.series == () and patches.apply(ps, pristine, COMMIT) == []


def test_series_listing_a_missing_patch_is_an_error(tmp_path: Path) -> None:
    d = tmp_path / "p"
    d.mkdir()
    (d / "series").write_text("0001-nope.patch\n")
    with pytest.raises(PatchError, match="0001-nope.patch"):
        patches.load(d)


@pytest.mark.parametrize("commit", pins.commits(), ids=lambda c: c[:12])
def test_project_series_applies_to_every_pinned_tree(tmp_path: Path, toolkit_cache: Path, commit: str) -> None:
    # every supported commit (pins.json) takes its series (patches/ for the newest, patches/commits/<sha12>/ for an
    # older one) and the one overlay with plain `git apply`, no fuzz; a second apply is a no-op
    tree = fetch.fetch(cache=toolkit_cache, commit=commit).tree
    ps = patches.load(commit=commit)
    assert (ps.series_dir is None) == pins.is_default(commit)
    assert ps.series_dir is None or ps.series_dir == patches.commit_dir(ps.root, commit)  # type: ignore[arg-type]
    dest = tmp_path / "src"
    _, status = patches.prepare_source(tree, dest, ps, commit)
    assert [n for n, _ in status if not n.startswith("overlay/")] == list(ps.series)
    assert all(s == "applied" for _, s in status)
    assert [s for _, s in patches.apply(ps, dest, commit)] == ["already applied"] * len(status)


def test_newest_series_does_not_apply_to_the_older_commit(tmp_path: Path, toolkit_cache: Path) -> None:
    # why the older commit has a series of its own: the newest one stops with exit 5, naming the patch and file
    older = pins.commits()[-1]
    tree = fetch.fetch(cache=toolkit_cache, commit=older).tree
    ps = patches.load()
    with pytest.raises(PatchError, match=r"patch 000\d-.*\.patch does not apply to llama.cpp .*\(file [^?]") as e:
        patches.prepare_source(tree, tmp_path / "src", ps, older)
    assert e.value.exit_code == 5 and not (tmp_path / "src").exists()
