"""Pull GGUF models from the Hugging Face hub into the standard Hugging Face cache, through huggingface_hub.

The cache is the one llama.cpp's `-hf`, transformers and `hf download` share (`$HF_HUB_CACHE`, else
`$HF_HOME/hub`, else `~/.cache/huggingface/hub`): what they downloaded is reused, what we download they find.
A pull lists the repository at one commit (`GET /api/models/R/revision/REV`, then `…/tree/COMMIT?recursive=True`),
picks the file (hfspec.choose, llama.cpp's rules), downloads the missing files, every shard of a split model,
with `hf_hub_download` pinned to that commit, and checks each new file against the SHA-256 the listing gives for
it (the Git blob id for small non-LFS files). A file that does not match is deleted, pointer and blob. Without
the network, the cached snapshot of the revision is used.

huggingface_hub is imported only here, so a machine that never pulls from the hub does not need it.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from . import ui
from .errors import (AuthError, DiskSpaceError, NetworkError, ToolMissingError, UsageError, VerificationError,
                     XschedLlamaError)
from .hfspec import DEFAULT_QUANTS, HfSpec, choose, shards, split_info
from .paths import check_free_space

DEFAULT_ENDPOINT = "https://huggingface.co"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass(frozen=True)
class HubFile:
    """HubFile is one file of a repository listing."""

    path: str
    """Path inside the repository."""
    size: int | None = None
    """Size in bytes (None in a listing read from the cache)."""
    sha256: str | None = None
    """SHA-256 of the content, for LFS files (the hub's `lfs.oid`)."""
    git_oid: str | None = None
    """Git blob id, SHA-1 of `blob <size>\\0<content>` (the hub's ETag of a non-LFS file)."""


@dataclass(frozen=True)
class Listing:
    """Listing is a repository's files at one commit."""

    commit: str
    files: list[HubFile]
    cached: bool = False
    """True when it was read from the local cache (offline) instead of the hub."""


# --- settings, read from the environment at call time ---

def endpoint() -> str:
    """endpoint() is $HF_ENDPOINT (a mirror, a local hub), else https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _hf_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.path.expandvars(os.path.expanduser(os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface"))))


def hub_cache() -> Path:
    """hub_cache() is the Hugging Face cache: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(os.path.expandvars(os.path.expanduser(env))) if env else _hf_home() / "hub"


def token() -> tuple[str | None, str]:
    """token() is (token, where it came from): $HF_TOKEN, else the file `hf auth login` writes ($HF_HOME/token)."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        if os.environ.get(var, "").strip():
            return os.environ[var].strip(), var
    path = Path(os.environ.get("HF_TOKEN_PATH") or _hf_home() / "token")
    try:
        tok = path.read_text().strip()
    except OSError:
        return None, ""
    return (tok, str(path)) if tok else (None, "")


def offline() -> bool:
    """offline() is true when $HF_HUB_OFFLINE asks for the cache only."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")


def repo_dir(repo: str, cache: Path | None = None) -> Path:
    """repo_dir() is a model repository's folder in the hub cache (`models--owner--name`)."""
    return (cache or hub_cache()) / ("models--" + repo.replace("/", "--"))


def _hub() -> Any:
    try:
        return importlib.import_module("huggingface_hub")
    except ImportError:
        raise ToolMissingError("huggingface_hub is not installed (pip install huggingface_hub); it is needed "
                               "for owner/repo and hf:// models") from None


def _transport_errors() -> tuple[type[BaseException], ...]:
    out: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for mod, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                       ("requests", ("ConnectionError", "Timeout"))):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        out += [getattr(m, n) for n in names if isinstance(getattr(m, n, None), type)]
    return tuple(out)


# --- listing ---

def cached_listing(spec: HfSpec, cache: Path | None = None) -> Listing | None:
    """cached_listing() is the cached snapshot of `spec`'s revision (refs/REV or snapshots/COMMIT), or None."""
    d = repo_dir(spec.repo, cache)
    commit: str | None = spec.revision if _COMMIT.match(spec.revision) else None
    ref = d / "refs" / spec.revision
    if commit is None and ref.is_file():
        commit = ref.read_text().strip()
    snap = d / "snapshots" / commit if commit else None
    if snap is None or not snap.is_dir():
        return None
    files = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())
    return Listing(str(commit), [HubFile(f) for f in files], cached=True)


def remote_listing(spec: HfSpec) -> Listing:
    """remote_listing() asks the hub for the commit of `spec`'s revision and the files at that commit."""
    hub = _hub()
    tok, _ = token()
    api = hub.HfApi(endpoint=endpoint(), token=tok or False)
    info = api.model_info(spec.repo, revision=spec.revision)
    if not info.sha:
        raise NetworkError(f"{endpoint()} gave no commit for {spec.repo}@{spec.revision}; is HF_ENDPOINT a hub?")
    files = [HubFile(e.path, e.size, e.lfs.sha256 if e.lfs else None, e.blob_id)
             for e in api.list_repo_tree(spec.repo, revision=info.sha, recursive=True)
             if isinstance(e, hub.hf_api.RepoFile)]
    return Listing(str(info.sha), files)


def listing(spec: HfSpec, cache: Path) -> Listing:
    """listing() is remote_listing(), or the cached snapshot when offline or when the hub cannot be reached."""
    if offline():
        cached = cached_listing(spec, cache)
        if cached is None:
            raise NetworkError(f"HF_HUB_OFFLINE is set and {spec.repo}@{spec.revision} is not in the Hugging Face "
                               f"cache ({cache})")
        return cached
    try:
        return remote_listing(spec)
    except _transport_errors() as e:
        cached = cached_listing(spec, cache)
        if cached is None:
            raise NetworkError(f"cannot reach {endpoint()} ({type(e).__name__}) and {spec.repo} is not in the "
                               f"Hugging Face cache ({cache}); check the network (HF_ENDPOINT for a mirror)") from None
        ui.warn(f"cannot reach {endpoint()} ({type(e).__name__}): using the cached snapshot "
                f"{cached.commit[:12]} of {spec.repo}")
        return cached
    except Exception as e:
        err = _translate(e, spec, cache)
        if err is None:
            raise
        raise err from None


# --- pulling ---

def pull(spec: HfSpec, *, force: bool = False) -> Path:
    """pull() returns the cached path of `spec`'s GGUF (the first part of a split model), downloading what is missing.

    The path is the snapshot's link (`…/snapshots/COMMIT/FILE`), next to the other parts, as llama-server needs.
    Raises UsageError (no such repository, revision, file or quant), AuthError, NetworkError, VerificationError,
    DiskSpaceError.
    """
    cache = hub_cache()
    lst = listing(spec, cache)
    names = [f.path for f in lst.files]
    where = f"{spec.repo}@{lst.commit[:12]}"
    if spec.file:
        if spec.file not in names:
            ggufs = [n for n in names if n.endswith(".gguf")]
            raise UsageError(f"{where} has no file {spec.file}; GGUF files: {', '.join(ggufs) or 'none'}")
        parts = shards(names, spec.file)
    else:
        primary = choose(names, spec.quant, spec.repo)
        if not spec.quant:
            ui.info(f"{spec.repo}: no quant given, took {primary} (llama.cpp's default: "
                    f"{', then '.join(DEFAULT_QUANTS)}, then the first GGUF)")
        parts = shards(names, primary)
    snap = repo_dir(spec.repo, cache) / "snapshots" / lst.commit
    if lst.cached:
        missing = [p for p in parts if not (snap / p).is_file()]
        if missing:
            raise NetworkError(f"cannot reach {endpoint()} and the cached {where} lacks {', '.join(missing)}")
        return snap / parts[0]
    by_path = {f.path: f for f in lst.files}
    _download(spec, lst, [by_path[p] for p in parts], cache, force)
    return snap / parts[0]


def _present(rd: Path, commit: str, f: HubFile) -> bool:
    """_present() is true when hf_hub_download would not download `f`: its snapshot link or its blob exists."""
    blobs = [b for b in (f.sha256, f.git_oid) if b]
    return (rd / "snapshots" / commit / f.path).is_file() or any((rd / "blobs" / b).is_file() for b in blobs)


def _download(spec: HfSpec, lst: Listing, files: list[HubFile], cache: Path, force: bool) -> None:
    hub = _hub()
    rd = repo_dir(spec.repo, cache)
    existed = rd.exists()
    todo = [f for f in files if force or not _present(rd, lst.commit, f)]
    if todo:
        need = sum(f.size or 0 for f in todo)
        where = next(p for p in (cache, *cache.parents) if p.exists())
        check_free_space(where, need / 1e9 + 0.1, f"downloading {spec} ({need / 1e9:.2f} GB)")
        if not ui.is_tty():
            hub.utils.disable_progress_bars()
    tok, _ = token()
    for i, f in enumerate(todo):
        size = f" ({f.size / 1e6:.1f} MB)" if f.size else ""
        count = f" [{i + 1}/{len(todo)}]" if len(todo) > 1 else ""
        with ui.step(f"Downloading {f.path}{size} from {spec.repo}{count}"):
            try:
                local = Path(hub.hf_hub_download(spec.repo, f.path, revision=lst.commit, cache_dir=str(cache),
                                                 endpoint=endpoint(), token=tok or False, force_download=force))
            except BaseException as e:
                err = _translate(e, spec, cache, f) if isinstance(e, Exception) else None
                _discard(rd, lst.commit, f, existed, delete_file=False,
                         delete_partial=isinstance(err, DiskSpaceError))
                if err is None:
                    raise
                raise err from None
            try:
                _verify(local, f)
            except VerificationError:
                _discard(rd, lst.commit, f, existed, delete_file=True)
                raise
    if not _COMMIT.match(spec.revision):  # like hf_hub_download with a branch: refs/REV names the commit
        ref = rd / "refs" / spec.revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        tmp = ref.with_name(ref.name + f".{os.getpid()}.tmp")
        tmp.write_text(lst.commit)
        os.replace(tmp, ref)


def git_blob_sha1(path: Path) -> str:
    """git_blob_sha1() is Git's blob id of a file: SHA-1 of `blob <size>\\0` followed by the content."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, f: HubFile) -> None:
    from .models import sha256_file
    if f.sha256:
        got, want, kind = sha256_file(path), f.sha256, "sha256"
    elif f.git_oid:
        got, want, kind = git_blob_sha1(path), f.git_oid, "git blob id"
    else:
        ui.warn(f"the hub lists no checksum for {f.path}: not verified")
        return
    if got != want:
        raise VerificationError(f"{f.path}: {kind} {got} does not match the hub's {want}; the file was deleted")


def _discard(rd: Path, commit: str, f: HubFile, existed: bool, delete_file: bool,
             delete_partial: bool = False) -> None:
    """_discard() cleans up after a failed download of `f`: its link and blob when `delete_file` (they hold the
    wrong bytes; after a download error huggingface_hub has left any older copy alone), its partial download
    `blobs/ETAG….incomplete` when `delete_partial` (a full disk; after a cut it stays, for huggingface_hub
    versions that resume from it), empty folders, and the repository folder if this pull created it and it
    holds no complete file."""
    link = rd / "snapshots" / commit / f.path
    if delete_partial:
        for b in (f.sha256, f.git_oid):
            for p in (rd / "blobs").glob(f"{b}*.incomplete") if b else []:
                p.unlink(missing_ok=True)
    if delete_file:
        targets = [link.resolve()] if link.is_symlink() else []
        targets += [rd / "blobs" / b for b in (f.sha256, f.git_oid) if b]
        for p in [link, *targets]:
            if p.is_relative_to(rd):
                p.unlink(missing_ok=True)
    d = link.parent
    while d != rd and d.is_dir() and not any(d.iterdir()):
        d.rmdir()
        d = d.parent
    blobs = rd / "blobs"
    if not existed and rd.is_dir() and not (blobs.is_dir() and any(blobs.iterdir())):
        shutil.rmtree(rd, ignore_errors=True)
        shutil.rmtree(rd.parent / ".locks" / rd.name, ignore_errors=True)


def _translate(e: BaseException, spec: HfSpec, cache: Path, f: HubFile | None = None) -> XschedLlamaError | None:
    """_translate() maps a huggingface_hub/HTTP/OS error to the toolkit's error (one line), or None if unknown."""
    if isinstance(e, XschedLlamaError):
        return e
    errs = _hub().utils
    ep, repo = endpoint(), spec.repo
    tok, src = token()
    resp = getattr(e, "response", None)
    status = getattr(resp, "status_code", None)
    server_msg = (resp.headers.get("X-Error-Message") if resp is not None else None) or ""
    what = f.path if f else str(spec)
    if isinstance(e, errs.HFValidationError):
        return UsageError(f"{spec}: {(str(e).strip().splitlines() or ['not a valid reference'])[0]}")
    if isinstance(e, errs.GatedRepoError):
        if tok:
            return AuthError(f"{repo} is gated and the token from {src} has no access to it (HTTP {status}); "
                             f"request access at {ep}/{repo}")
        return AuthError(f"{repo} is gated: accept its conditions at {ep}/{repo}, then set HF_TOKEN "
                         "(or run `hf auth login`)")
    if isinstance(e, errs.RepositoryNotFoundError):
        hint = "" if tok else " (if it is private, set HF_TOKEN)"
        return UsageError(f"no model repository {repo} on {ep}{hint}")
    if isinstance(e, errs.RevisionNotFoundError):
        return UsageError(f"{repo} has no revision {spec.revision} on {ep}")
    if isinstance(e, errs.EntryNotFoundError):
        return UsageError(f"{repo}@{spec.revision} has no file {what} on {ep}")
    if isinstance(e, errs.HfHubHTTPError) and status in (401, 403):
        if tok:
            said = f": {server_msg}" if server_msg else ""
            return AuthError(f"{ep} refused the token from {src} (HTTP {status}{said})")
        return AuthError(f"{ep} needs a token for {repo} (HTTP {status}): set HF_TOKEN")
    if isinstance(e, errs.HfHubHTTPError):
        return NetworkError(f"{ep} answered HTTP {status} for {what}; try again later")
    if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
        return DiskSpaceError(f"no space left for {what} in {cache} ({os.strerror(e.errno or 0)}); the partial file "
                              "was deleted; free some space or point HF_HUB_CACHE elsewhere")
    if isinstance(e, errs.LocalEntryNotFoundError) or isinstance(e, _transport_errors()):
        host = urlparse(ep).netloc or ep
        return NetworkError(f"download of {what} failed ({type(e).__name__} with {host} or its CDN); run the same "
                            "command again")
    if isinstance(e, OSError):  # huggingface_hub's size check ("Consistency check failed") among others
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return NetworkError(f"download of {what} failed: {first}; run the same command again")
    return None


def cached_models(cache: Path | None = None) -> list[dict[str, object]]:
    """cached_models() lists the model GGUFs (first parts) in the hub cache's snapshots, for `model list`."""
    cache = cache or hub_cache()
    out: list[dict[str, object]] = []
    for rd in sorted(cache.glob("models--*--*")) if cache.is_dir() else []:
        repo = rd.name[len("models--"):].replace("--", "/", 1)
        for snap in sorted((rd / "snapshots").glob("*")):
            for p in sorted(snap.rglob("*.gguf")):
                rel = p.relative_to(snap).as_posix()
                if not p.is_file() or split_info(rel)[2] != 1:
                    continue
                parts = split_info(rel)[3]
                out.append({"name": f"hf://{repo}/{rel}", "file": str(p), "present": True,
                            "size": p.stat().st_size, "source": f"hf {snap.name[:12]}"
                            + (f", {parts} parts" if parts > 1 else "")})
    return out
