"""Hugging Face models through huggingface_hub, against a local hub on 127.0.0.1 (HF_ENDPOINT points at it).

FakeHub speaks the part of the hub's protocol that huggingface_hub uses for a pull, the way huggingface.co does:
  GET      /api/models/R[/revision/REV]       model info: `sha` (the commit), `siblings`, `gated`, `private`
  GET      /api/models/R/tree/REV[/PATH]      listing (`recursive`), cursor pages through `Link: <…>; rel="next"`;
                                              LFS files carry `lfs.oid` (SHA-256) and `size`
  HEAD|GET /R/resolve/REV/PATH                `X-Repo-Commit`; an LFS file: 302 to the CDN with `X-Linked-Etag`
                                              (the SHA-256) and `X-Linked-Size`; a plain file: 200, ETag = Git blob id
  GET      CDN/SHA256?sig=…                   the bytes, `Range` (206 + `Content-Range`); another origin, so the
                                              client drops `Authorization` as it does for the real CDN
Errors as the hub sends them: `X-Error-Code: RepoNotFound` (401 without a token, 404 with one), `GatedRepo`
(401 without a token, 403 with one that has no access), `RevisionNotFound`, `EntryNotFound`, and 401
`Invalid credentials in Authorization header` for an unknown token.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

from xsched_llama import hfspec, models, server
from xsched_llama.errors import (AuthError, DiskSpaceError, NetworkError, UsageError, VerificationError)

ROOT = Path(__file__).resolve().parent.parent
GOOD, NO_ACCESS = "hf_good_token", "hf_valid_but_not_granted"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def gguf(tag: str, size: int = 200_000) -> bytes:
    """Bytes standing for a GGUF file (the hub does not look inside)."""
    seed = hashlib.sha256(tag.encode()).digest()
    return b"GGUF" + (seed * (size // len(seed) + 1))[: size - 4]


@dataclass
class FakeRepo:
    files: dict[str, bytes]
    gated: bool = False
    private: bool = False
    sha256: dict[str, str] = field(init=False)
    commit: str = field(init=False)

    def __post_init__(self) -> None:
        self.sha256 = {p: hashlib.sha256(d).hexdigest() for p, d in self.files.items()}
        h = hashlib.sha1()
        for p in sorted(self.files):
            h.update(p.encode() + b"\0" + self.sha256[p].encode())
        self.commit = h.hexdigest()

    @staticmethod
    def is_lfs(path: str) -> bool:
        return path.endswith(".gguf")  # as .gitattributes has it on the hub: *.gguf filter=lfs


def lfs_pointer(data: bytes) -> bytes:
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
            f"size {len(data)}\n").encode()


@dataclass
class FakeHub:
    repos: dict[str, FakeRepo] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=lambda: {GOOD, NO_ACCESS})
    granted: set[str] = field(default_factory=lambda: {GOOD})
    cut: dict[str, int] = field(default_factory=dict)
    """SHA-256 -> bytes the CDN sends before it drops the connection (once)."""
    corrupt: set[str] = field(default_factory=set)
    """SHA-256 of files whose CDN bytes differ from what the listing says (one byte flipped)."""
    log: list[tuple[str, str, str, dict[str, str]]] = field(default_factory=list)
    """(server, method, path, {range, authorization}) of every request."""
    page_size: int = 2
    secret: bytes = field(default_factory=lambda: os.urandom(16))
    endpoint: str = ""
    cdn: str = ""

    def add(self, repo_id: str, files: dict[str, bytes], **kw: Any) -> FakeRepo:
        self.repos[repo_id] = FakeRepo(files, **kw)
        return self.repos[repo_id]

    def sig(self, sha: str) -> str:
        return hmac.new(self.secret, sha.encode(), "sha256").hexdigest()[:32]

    def requests(self, server_name: str | None = None,
                 method: str | None = None) -> list[tuple[str, str, str, dict[str, str]]]:
        return [r for r in self.log if (server_name is None or r[0] == server_name)
                and (method is None or r[1] == method)]

    def downloads(self) -> list[tuple[str, str, str, dict[str, str]]]:
        """Requests that move file bytes or resolve a file: CDN GETs and /resolve/ calls."""
        return [r for r in self.log if r[0] == "cdn" or "/resolve/" in r[2]]


class _Base(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub
    name = ""

    def log_message(self, *args: object) -> None:
        pass

    def _record(self) -> None:
        self.hub.log.append((self.name, self.command, self.path,
                             {"range": self.headers.get("Range", ""),
                              "authorization": self.headers.get("Authorization", "")}))

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.reply(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def error(self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None) -> None:
        h = {"X-Error-Message": message, **(headers or {})}
        if code:
            h["X-Error-Code"] = code
        self.reply_json(status, {"error": message}, h)

    def send_bytes(self, data: bytes, headers: dict[str, str], cut: int | None = None) -> None:
        """200 or 206 (Range: bytes=N- or N-M); `cut`: drop the connection after that many body bytes."""
        start, end = 0, len(data) - 1
        rng = self.headers.get("Range")
        if rng:
            a, _, b = rng.removeprefix("bytes=").partition("-")
            start, end = int(a), (int(b) if b else len(data) - 1)
            if start >= len(data):
                return self.reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
        body = data[start:end + 1]
        self.send_response(206 if rng else 200)
        for k, v in {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}.items():
            self.send_header(k, v)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


class HubHandler(_Base):
    name = "hub"

    def token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ").strip() or None

    def repo_or_error(self, repo_id: str) -> FakeRepo | None:
        tok = self.token()
        if tok and tok not in self.hub.tokens:
            self.error(401, None, "Invalid credentials in Authorization header")
            return None
        repo = self.hub.repos.get(repo_id)
        if repo is None or (repo.private and tok not in self.hub.granted):
            self.error(404 if tok else 401, "RepoNotFound", "Repository not found")
            return None
        return repo

    def commit_or_error(self, repo: FakeRepo, rev: str, extra: dict[str, str] | None = None) -> str | None:
        if rev in ("main", repo.commit):
            return repo.commit
        self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}", extra)
        return None

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._record()
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self.api(f"{parts[2]}/{parts[3]}", parts[4:], parse_qs(url.query))
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        self.error(404, None, "Not found")

    def api(self, repo_id: str, rest: list[str], query: dict[str, list[str]]) -> None:
        repo = self.repo_or_error(repo_id)
        if repo is None:
            return
        if not rest or rest[0] == "revision":
            commit = self.commit_or_error(repo, rest[1] if len(rest) > 1 else "main")
            if commit is None:
                return
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            siblings = []
            for p in sorted(repo.files):
                s: dict[str, Any] = {"rfilename": p}
                if blobs:
                    d = repo.files[p]
                    s.update(size=len(d), blobId=git_blob_id(lfs_pointer(d) if repo.is_lfs(p) else d))
                    if repo.is_lfs(p):
                        s["lfs"] = {"sha256": repo.sha256[p], "size": len(d), "pointerSize": len(lfs_pointer(d))}
                siblings.append(s)
            return self.reply_json(200, {
                "_id": repo.commit[:24], "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0],
                "sha": commit, "lastModified": "2026-11-30T12:00:00.000Z", "createdAt": "2026-11-01T12:00:00.000Z",
                "private": repo.private, "gated": "manual" if repo.gated else False, "disabled": False,
                "downloads": 0, "likes": 0, "tags": ["gguf"], "library_name": "gguf", "siblings": siblings})
        if rest[0] == "tree" and len(rest) >= 2:
            commit = self.commit_or_error(repo, rest[1])
            if commit is None:
                return
            return self.tree(repo, "/".join(rest[2:]), query)
        self.error(404, None, "Not found")

    def tree(self, repo: FakeRepo, path: str, query: dict[str, list[str]]) -> None:
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        dirs = {"/".join(p.split("/")[:i]) for p in repo.files for i in range(1, p.count("/") + 1)}
        entries: list[dict[str, Any]] = []
        for p in sorted(set(repo.files) | dirs):
            parent = p.rsplit("/", 1)[0] if "/" in p else ""
            inside = p.startswith(path + "/") if path else True
            if not inside or (not recursive and parent != path):
                continue
            if p in dirs:
                entries.append({"type": "directory", "oid": hashlib.sha1(p.encode()).hexdigest(), "size": 0, "path": p})
                continue
            d = repo.files[p]
            e: dict[str, Any] = {"type": "file", "size": len(d), "path": p,
                                 "oid": git_blob_id(lfs_pointer(d) if repo.is_lfs(p) else d)}
            if repo.is_lfs(p):
                e["lfs"] = {"oid": hashlib.sha256(d).hexdigest(), "size": len(d), "pointerSize": len(lfs_pointer(d))}
            entries.append(e)
        if path and not entries:
            return self.error(404, "EntryNotFound", f"{path} does not exist")
        cursor = int(query.get("cursor", ["0"])[0])
        page = entries[cursor:cursor + self.hub.page_size]
        headers = {}
        if cursor + self.hub.page_size < len(entries):
            base = self.hub.endpoint + urlsplit(self.path).path
            nxt = f"{base}?recursive={str(recursive)}&expand=False&cursor={cursor + self.hub.page_size}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        self.reply_json(200, page, headers)

    def resolve(self, repo_id: str, rev: str, path: str) -> None:
        repo = self.repo_or_error(repo_id)
        if repo is None:
            return
        commit = self.commit_or_error(repo, rev)
        if commit is None:
            return
        tok = self.token()
        if repo.gated and tok not in self.hub.granted:
            msg = (f"Access to model {repo_id} is restricted and you are not in the authorized list."
                   if tok else f"Access to model {repo_id} is restricted. You must have access to it and be "
                   "authenticated to access it. Please log in.")
            return self.error(403 if tok else 401, "GatedRepo", msg)
        if path not in repo.files:
            return self.error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit})
        data = repo.files[path]
        common = {"X-Repo-Commit": commit}
        if not repo.is_lfs(path):
            return self.send_bytes(data, {**common, "ETag": f'"{git_blob_id(data)}"'})
        sha = repo.sha256[path]
        location = f"{self.hub.cdn}/{sha}?sig={self.hub.sig(sha)}&name={quote(path.rsplit('/', 1)[-1])}"
        self.reply(302, b"", {**common, "Location": location, "ETag": f'"{git_blob_id(lfs_pointer(data))}"',
                              "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))})


class CdnHandler(_Base):
    name = "cdn"

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self._record()
        url = urlsplit(self.path)
        sha = url.path.rsplit("/", 1)[-1]
        if parse_qs(url.query).get("sig", [""])[0] != self.hub.sig(sha):
            return self.reply(403, b"signature does not match")
        data = next((r.files[p] for r in self.hub.repos.values() for p, h in r.sha256.items() if h == sha), None)
        if data is None:
            return self.reply(404, b"no such object")
        if sha in self.hub.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        self.send_bytes(data, {"ETag": f'"{sha}"'}, cut=self.hub.cut.pop(sha, None))


def _serve(handler: type[_Base], hub: FakeHub) -> http.server.ThreadingHTTPServer:
    cls = type(handler.__name__, (handler,), {"hub": hub})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), cls)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


Q4 = "Tiny-Q4_K_M.gguf"
Q8 = "Tiny-Q8_0.gguf"
SHARDS = [f"Q4_K_M/Big-Q4_K_M-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A local hub with `acme/Tiny-GGUF` (several quants), `acme/Big-GGUF` (3 shards), gated `acme/Gated-GGUF`;
    HF_ENDPOINT points at it and the Hugging Face cache and home are in tmp_path."""
    h = FakeHub()
    h.add("acme/Tiny-GGUF", {"README.md": b"# Tiny\n",
                             ".gitattributes": b"*.gguf filter=lfs diff=lfs merge=lfs -text\n",
                             "Tiny-IQ4_XS.gguf": gguf("iq4"), Q4: gguf("q4"), Q8: gguf("q8", 300_000),
                             "Tiny-BF16.gguf": gguf("bf16"), "mmproj-Tiny-F16.gguf": gguf("mmproj")})
    h.add("acme/Big-GGUF", {"README.md": b"# Big\n", **{p: gguf(p, 150_000 + i) for i, p in enumerate(SHARDS)}})
    h.add("acme/Gated-GGUF", {"Gated-Q8_0.gguf": gguf("gated")}, gated=True)
    hub_srv, cdn_srv = _serve(HubHandler, h), _serve(CdnHandler, h)
    h.endpoint = f"http://127.0.0.1:{hub_srv.server_address[1]}"
    h.cdn = f"http://127.0.0.1:{cdn_srv.server_address[1]}/cdn"
    monkeypatch.setenv("HF_ENDPOINT", h.endpoint)
    yield h
    for s in (hub_srv, cdn_srv):
        s.shutdown()
        s.server_close()


@pytest.fixture(autouse=True)
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never the user's Hugging Face cache or token."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setenv("XSCHED_LLAMA_CACHE", str(tmp_path / "cache"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_OFFLINE", "XSCHED_LLAMA_MIN_FREE_GB"):
        monkeypatch.delenv(var, raising=False)


def hub_files(tmp_path: Path) -> list[str]:
    """Files in the Hugging Face cache and the toolkit's models/, less the cache tags and lock files."""
    out = []
    for base in (tmp_path / "hf-home" / "hub", tmp_path / "cache" / "models"):
        for p in base.rglob("*") if base.exists() else []:
            rel = p.relative_to(base).as_posix()
            if (p.is_file() or p.is_symlink()) and p.name != "CACHEDIR.TAG" and not rel.startswith(".locks/"):
                out.append(rel)
    return out


def cli(*args: str, env: dict[str, str] | None = None, limit_file_bytes: int | None = None
        ) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if limit_file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))
    return subprocess.run([sys.executable, "-m", "xsched_llama", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, timeout=120,
                          preexec_fn=limit)


def error_line(cp: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in cp.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in cp.stderr, cp.stderr
    return lines[0]


# --- references and llama.cpp's choice (pure) ---

@pytest.mark.parametrize("spec,want", [
    ("unsloth/Qwen3-0.6B-GGUF:Q8_0", hfspec.HfSpec("unsloth/Qwen3-0.6B-GGUF", quant="Q8_0")),
    ("unsloth/Qwen3-0.6B-GGUF", hfspec.HfSpec("unsloth/Qwen3-0.6B-GGUF")),
    ("acme/x@v2:UD-Q4_K_XL", hfspec.HfSpec("acme/x", "v2", quant="UD-Q4_K_XL")),
    ("hf://acme/x/sub/dir/m-Q8_0.gguf", hfspec.HfSpec("acme/x", file="sub/dir/m-Q8_0.gguf")),
    ("hf://acme/x@" + "a" * 40 + "/m.gguf", hfspec.HfSpec("acme/x", "a" * 40, file="m.gguf")),
    ("hf://acme/x:Q8_0", hfspec.HfSpec("acme/x", quant="Q8_0")),
    ("smollm2-135m", None), ("models/missing.gguf", None), ("./a/b", None),
])
def test_parse(spec: str, want: hfspec.HfSpec | None) -> None:
    assert hfspec.parse(spec) == want


@pytest.mark.parametrize("spec", ["hf://acme", "hf://acme/x/weights.bin", "hf://datasets/acme/x/m.gguf",
                                  "hf://acme/x/../m.gguf", "hf://acme/x@/m.gguf", "acme--x/y"])
def test_parse_refuses(spec: str) -> None:
    with pytest.raises(UsageError):
        hfspec.parse(spec)


UNSLOTH = ["README.md", "Qwen3-0.6B-BF16.gguf", "Qwen3-0.6B-IQ4_XS.gguf", "Qwen3-0.6B-Q4_K_M.gguf",
           "Qwen3-0.6B-Q8_0.gguf", "Qwen3-0.6B-UD-Q4_K_XL.gguf", "mmproj-F16.gguf"]


def test_choose_like_llama_cpp() -> None:
    assert hfspec.choose(UNSLOTH, None) == "Qwen3-0.6B-Q4_K_M.gguf"          # default: Q4_K_M first
    assert hfspec.choose([p for p in UNSLOTH if "Q4_K_M" not in p], None) == "Qwen3-0.6B-Q8_0.gguf"  # then Q8_0
    assert hfspec.choose(["mmproj-F16.gguf", "x-imatrix.gguf", "M-BF16.gguf"], None) == "M-BF16.gguf"  # then any model
    assert hfspec.choose(UNSLOTH, "q8_0") == "Qwen3-0.6B-Q8_0.gguf"          # any case
    assert hfspec.choose(UNSLOTH, "UD-Q4_K_XL") == "Qwen3-0.6B-UD-Q4_K_XL.gguf"
    assert hfspec.choose(["M-IQ4_0.gguf", "M-Q4_0.gguf"], "Q4_0") == "M-Q4_0.gguf"  # the exact tag wins
    split = ["M-Q8_0-00002-of-00002.gguf", "M-Q8_0-00001-of-00002.gguf"]
    assert hfspec.choose(split, "Q8_0") == "M-Q8_0-00001-of-00002.gguf"      # the first part only
    assert hfspec.shards(split, "M-Q8_0-00001-of-00002.gguf") == sorted(split)


@pytest.mark.parametrize("paths,quant,needle", [
    (UNSLOTH, "Q2_K", "no GGUF with quant Q2_K in r; available: BF16, IQ4_XS, Q4_K_M, Q4_K_XL, Q8_0"),
    (["a/M-Q8_0.gguf", "b/M-Q8_0.gguf"], "Q8_0", "ambiguous"),
    (["mmproj-F16.gguf", "README.md"], None, "no GGUF model"),
])
def test_choose_refuses(paths: list[str], quant: str | None, needle: str) -> None:
    with pytest.raises(UsageError, match=re.escape(needle)):
        hfspec.choose(paths, quant, "r")


def test_shards_must_be_complete() -> None:
    with pytest.raises(UsageError, match="part 1 of 3, but the repository has parts 1, 3"):
        hfspec.shards(["M-00001-of-00003.gguf", "M-00003-of-00003.gguf"], "M-00001-of-00003.gguf")


# --- pulls against the local hub ---

def test_pull_quant(hub: FakeHub, tmp_path: Path) -> None:
    repo = hub.repos["acme/Tiny-GGUF"]
    path = models.pull("acme/Tiny-GGUF:Q8_0")
    cache = tmp_path / "hf-home" / "hub" / "models--acme--Tiny-GGUF"
    assert path == cache / "snapshots" / repo.commit / Q8 and path.read_bytes() == repo.files[Q8]
    assert path.is_symlink() and path.resolve() == cache / "blobs" / hashlib.sha256(repo.files[Q8]).hexdigest()
    assert (cache / "refs" / "main").read_text() == repo.commit
    # the listing was paginated, the file came from the CDN without the token, nothing else was downloaded
    assert len([r for r in hub.requests("hub") if "/tree/" in r[2]]) > 1
    assert [r[2].split("?")[0] for r in hub.requests("cdn")] == [f"/cdn/{hashlib.sha256(repo.files[Q8]).hexdigest()}"]
    # without a quant: llama.cpp's default, Q4_K_M
    assert models.pull("acme/Tiny-GGUF").name == Q4


def test_second_pull_downloads_nothing(hub: FakeHub, tmp_path: Path) -> None:
    first = models.pull("acme/Tiny-GGUF:Q8_0")
    hub.log.clear()
    assert models.pull("acme/Tiny-GGUF:Q8_0") == first
    assert models.pull(f"hf://acme/Tiny-GGUF/{Q8}") == first
    assert hub.downloads() == [] and hub.requests("hub")  # it listed the repository, fetched no file


def test_reuses_what_other_tools_downloaded(hub: FakeHub, tmp_path: Path) -> None:
    import huggingface_hub
    other = huggingface_hub.hf_hub_download("acme/Tiny-GGUF", Q4, cache_dir=str(tmp_path / "hf-home" / "hub"),
                                            endpoint=hub.endpoint, token=False)
    hub.log.clear()
    assert models.pull("acme/Tiny-GGUF:Q4_K_M") == Path(other)
    assert hub.downloads() == []


def test_shards(hub: FakeHub, tmp_path: Path) -> None:
    repo = hub.repos["acme/Big-GGUF"]
    path = models.pull("acme/Big-GGUF:Q4_K_M")
    snap = tmp_path / "hf-home" / "hub" / "models--acme--Big-GGUF" / "snapshots" / repo.commit
    assert path == snap / SHARDS[0]
    for p in SHARDS:  # every part beside the first, where llama-server looks for them
        assert (snap / p).read_bytes() == repo.files[p]
    assert len(hub.requests("cdn", "GET")) == 3
    hub.log.clear()
    assert models.pull(f"hf://acme/Big-GGUF/{SHARDS[0]}") == path and hub.downloads() == []
    assert models.pull(f"hf://acme/Big-GGUF/{SHARDS[1]}") == path  # any part names the whole model


def test_force_downloads_again(hub: FakeHub, tmp_path: Path) -> None:
    path = models.pull("acme/Tiny-GGUF:Q8_0")
    hub.log.clear()
    assert models.pull("acme/Tiny-GGUF:Q8_0", force=True) == path
    assert len(hub.requests("cdn", "GET")) == 1 and path.read_bytes() == hub.repos["acme/Tiny-GGUF"].files[Q8]


def test_resume_after_a_cut(hub: FakeHub, tmp_path: Path) -> None:
    """A cut connection is resumed with a Range request from what was written: in the same pull (huggingface_hub
    2.x retries; it writes 10 MiB chunks), or by the next pull (1.x keeps `blobs/ETAG.incomplete`)."""
    data = gguf("big", 24 << 20)
    hub.add("acme/Cut-GGUF", {"Cut-Q8_0.gguf": data})
    hub.cut[hashlib.sha256(data).hexdigest()] = 15 << 20
    try:
        path = models.pull("acme/Cut-GGUF:Q8_0")
    except NetworkError as e:
        assert "run the same command again" in str(e)
        assert [Path(p).suffix for p in hub_files(tmp_path)] == [".incomplete"]  # nothing looks complete
        path = models.pull("acme/Cut-GGUF:Q8_0")
    assert path.read_bytes() == data and not list(tmp_path.rglob("*.incomplete"))
    ranges = [r[3]["range"] for r in hub.requests("cdn", "GET")]
    assert len(ranges) == 2 and ranges[0] == "" and ranges[1].startswith("bytes=") and ranges[1].endswith("-")
    assert 0 < int(ranges[1][6:-1]) <= 15 << 20


def test_checksum_mismatch(hub: FakeHub, tmp_path: Path) -> None:
    hub.corrupt.add(hashlib.sha256(hub.repos["acme/Tiny-GGUF"].files[Q8]).hexdigest())
    cp = cli("model", "pull", "acme/Tiny-GGUF:Q8_0")
    assert cp.returncode == VerificationError.exit_code, cp.stderr
    assert "sha256" in error_line(cp) and "does not match the hub's" in error_line(cp)
    assert hub_files(tmp_path) == []
    assert not (tmp_path / "hf-home" / "hub" / "models--acme--Tiny-GGUF").exists()


def test_checksum_mismatch_keeps_other_files(hub: FakeHub, tmp_path: Path) -> None:
    good = models.pull("acme/Tiny-GGUF:Q4_K_M")
    hub.corrupt.add(hashlib.sha256(hub.repos["acme/Tiny-GGUF"].files[Q8]).hexdigest())
    with pytest.raises(VerificationError):
        models.pull("acme/Tiny-GGUF:Q8_0")
    assert good.is_file() and not (good.parent / Q8).exists()
    assert sorted(hub_files(tmp_path)) == sorted([
        "models--acme--Tiny-GGUF/blobs/" + hashlib.sha256(good.read_bytes()).hexdigest(),
        "models--acme--Tiny-GGUF/refs/main", f"models--acme--Tiny-GGUF/snapshots/{good.parent.name}/{Q4}"])


def test_gated_needs_a_token(hub: FakeHub, tmp_path: Path) -> None:
    cp = cli("model", "pull", "acme/Gated-GGUF:Q8_0")
    assert cp.returncode == AuthError.exit_code and "is gated" in error_line(cp) and "HF_TOKEN" in error_line(cp)
    assert hub.requests("hub", "HEAD")[-1][3]["authorization"] == ""
    cp = cli("model", "pull", "acme/Gated-GGUF:Q8_0", env={"HF_TOKEN": NO_ACCESS})
    assert cp.returncode == AuthError.exit_code and "has no access" in error_line(cp)
    cp = cli("model", "pull", "acme/Gated-GGUF:Q8_0", env={"HF_TOKEN": "hf_revoked"})
    assert cp.returncode == AuthError.exit_code and "refused the token from HF_TOKEN" in error_line(cp)
    assert hub_files(tmp_path) == []
    hub.log.clear()
    cp = cli("model", "pull", "acme/Gated-GGUF:Q8_0", env={"HF_TOKEN": GOOD})
    assert cp.returncode == 0, cp.stderr
    assert Path(cp.stdout.strip()).read_bytes() == hub.repos["acme/Gated-GGUF"].files["Gated-Q8_0.gguf"]
    repo_calls = [r for r in hub.requests("hub") if "acme/" in r[2]]
    assert repo_calls and [r[:3] for r in repo_calls if r[3]["authorization"] != f"Bearer {GOOD}"] == []
    assert all(r[3]["authorization"] == "" for r in hub.requests("cdn"))  # the token stays on the hub


def test_token_from_hf_home(hub: FakeHub, tmp_path: Path) -> None:
    (tmp_path / "hf-home").mkdir(parents=True, exist_ok=True)
    (tmp_path / "hf-home" / "token").write_text(GOOD + "\n")  # where `hf auth login` writes it
    assert models.pull("acme/Gated-GGUF").name == "Gated-Q8_0.gguf"


@pytest.mark.parametrize("spec,code,needle", [
    ("acme/No-Such-GGUF:Q8_0", 2, "no model repository acme/No-Such-GGUF on http://127.0.0.1"),
    ("acme/Tiny-GGUF:Q2_K", 2, "no GGUF with quant Q2_K in acme/Tiny-GGUF; available: BF16, IQ4_XS, Q4_K_M, Q8_0"),
    ("hf://acme/Tiny-GGUF@v9/Tiny-Q8_0.gguf", 2, "acme/Tiny-GGUF has no revision v9"),
    ("hf://acme/Tiny-GGUF/Tiny-Q2_K.gguf", 2, "has no file Tiny-Q2_K.gguf; GGUF files: Tiny-BF16.gguf"),
    ("hf://acme", 2, "expected hf://owner/repo"),
    ("missing/file.gguf", 2, "no such file: missing/file.gguf"),
    ("acme/Tiny.git", 2, "acme/Tiny.git: Repo_id cannot end by '.git'"),
])
def test_bad_input(hub: FakeHub, tmp_path: Path, spec: str, code: int, needle: str) -> None:
    cp = cli("model", "pull", spec)
    assert cp.returncode == code and needle in error_line(cp), cp.stderr
    assert hub_files(tmp_path) == [] and hub.downloads() == []


def test_ambiguous_quant(hub: FakeHub, tmp_path: Path) -> None:
    hub.add("acme/Two-GGUF", {"a/M-Q8_0.gguf": gguf("a"), "b/M-Q8_0.gguf": gguf("b")})
    cp = cli("model", "pull", "acme/Two-GGUF:Q8_0")
    assert cp.returncode == 2
    assert "quant Q8_0 is ambiguous in acme/Two-GGUF: a/M-Q8_0.gguf, b/M-Q8_0.gguf" in error_line(cp)
    assert hub_files(tmp_path) == []


def test_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cp = cli("model", "pull", "acme/Tiny-GGUF:Q8_0", env={"HF_ENDPOINT": f"http://127.0.0.1:{server.free_port()}"})
    assert cp.returncode == NetworkError.exit_code and "cannot reach http://127.0.0.1" in error_line(cp)
    assert hub_files(tmp_path) == []


def test_offline_uses_the_cache(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    path = models.pull("acme/Big-GGUF")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.free_port()}")
    assert models.pull("acme/Big-GGUF") == path
    assert "using the cached snapshot" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert models.pull("acme/Big-GGUF:Q4_K_M") == path
    with pytest.raises(NetworkError, match="HF_HUB_OFFLINE is set and acme/Tiny-GGUF@main is not in"):
        models.pull("acme/Tiny-GGUF")


def test_not_enough_space_before_the_download(hub: FakeHub, tmp_path: Path) -> None:
    cp = cli("model", "pull", "acme/Tiny-GGUF:Q8_0", env={"XSCHED_LLAMA_MIN_FREE_GB": "1e9"})
    assert cp.returncode == DiskSpaceError.exit_code and "needs 1e+09 GB free" in error_line(cp)
    assert hub_files(tmp_path) == [] and hub.requests("cdn") == []


def test_disk_full_during_the_download(hub: FakeHub, tmp_path: Path) -> None:
    # the file-size limit makes the write fail part-way, as a full disk does (EFBIG instead of ENOSPC)
    cp = cli("model", "pull", "acme/Tiny-GGUF:Q8_0", limit_file_bytes=100_000)
    assert cp.returncode == DiskSpaceError.exit_code and "no space left for Tiny-Q8_0.gguf" in error_line(cp)
    assert hub.requests("cdn", "GET") and hub_files(tmp_path) == []
    assert not list((tmp_path / "hf-home").rglob("*.incomplete"))


def test_sha256_flag_is_for_urls(hub: FakeHub) -> None:
    with pytest.raises(UsageError, match="--sha256 is for presets and URLs"):
        models.pull("acme/Tiny-GGUF", sha256="0" * 64)


def test_serve_m_resolves_hub_models_and_keeps_links(hub: FakeHub, tmp_path: Path) -> None:
    path = models.resolve("acme/Big-GGUF:Q4_K_M")
    assert path.name == Path(SHARDS[0]).name and path.is_symlink()
    assert models.resolve(str(path)) == path  # a path into the HF cache is not replaced by its blob


def test_model_list_shows_the_hf_cache(hub: FakeHub, tmp_path: Path) -> None:
    models.pull("acme/Big-GGUF")
    models.pull("acme/Tiny-GGUF:Q8_0")
    cp = cli("model", "list", "--json")
    assert cp.returncode == 0, cp.stderr
    rows = {r["name"]: r for r in json.loads(cp.stdout)}
    assert "smollm2-135m" in rows  # the presets are still listed
    assert rows[f"hf://acme/Big-GGUF/{SHARDS[0]}"]["source"].endswith("3 parts")
    assert rows[f"hf://acme/Tiny-GGUF/{Q8}"]["size"] == len(hub.repos["acme/Tiny-GGUF"].files[Q8])


@pytest.mark.slow
def test_serve_a_hub_model(hub: FakeHub, tmp_path: Path, patched_cpu_server: Path, default_model: Path,
                           toolkit_cache: Path) -> None:
    """`serve -m owner/repo:QUANT` pulls through the hub and llama-server loads the snapshot link."""
    hub.add("acme/Smol-GGUF", {"README.md": b"# Smol\n", "Smol-Q4_1.gguf": default_model.read_bytes()})
    port = server.free_port()
    env = {**os.environ, "XSCHED_LLAMA_CACHE": str(toolkit_cache)}
    proc = subprocess.Popen([sys.executable, "-m", "xsched_llama", "serve", "-m", "acme/Smol-GGUF:Q4_1",
                             "--port", str(port), "--", "-c", "512", "-t", "1", "--no-warmup"],
                            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    import requests
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "serve did not become healthy"
            time.sleep(0.5)
        r = requests.post(f"http://127.0.0.1:{port}/completion", json={"prompt": "Hello", "n_predict": 4}, timeout=60)
        assert r.status_code == 200 and r.json()["tokens_predicted"] > 0
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    snap = tmp_path / "hf-home" / "hub" / "models--acme--Smol-GGUF" / "snapshots" / hub.repos["acme/Smol-GGUF"].commit
    assert f"-m {snap / 'Smol-Q4_1.gguf'}" in out


def test_auth_error_has_an_exit_code_of_its_own() -> None:
    import xsched_llama.bench.errors  # noqa: F401  (BenchError)
    from xsched_llama.errors import XschedLlamaError

    def subclasses(c: type) -> list[type]:
        return [s for d in c.__subclasses__() for s in (d, *subclasses(d))]
    codes = {c: c.exit_code for c in subclasses(XschedLlamaError) if "exit_code" in vars(c)}
    assert AuthError in codes and list(codes.values()).count(AuthError.exit_code) == 1, codes
