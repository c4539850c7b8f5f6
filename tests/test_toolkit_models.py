"""model pull: downloads from a real HTTP server on 127.0.0.1 (resume after a cut, checksum, progress)."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from xsched_llama import models, server
from xsched_llama.errors import NetworkError, UsageError, VerificationError

DATA = os.urandom(3 * 1024 * 1024 + 123)
SHA = hashlib.sha256(DATA).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    cut_after: int | None = None  # bytes sent before the connection is dropped (once)
    ranges: list[str | None] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        body = DATA[start:]
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = type(self).cut_after
        if cut is not None:
            type(self).cut_after = None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def http_url() -> Iterator[str]:
    Handler.cut_after, Handler.ranges = None, []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/model.gguf"
    srv.shutdown()
    srv.server_close()


def test_pull_url_verifies_and_shows_progress(tmp_path: Path, http_url: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = models.pull(http_url, cache=tmp_path, sha256=SHA)
    assert path == tmp_path / "models" / "model.gguf" and path.read_bytes() == DATA
    assert not list((tmp_path / "models").glob("*.part"))
    err = capsys.readouterr().err
    assert "model.gguf" in err and "(100 %)" in err


def test_download_resumes_after_a_cut(tmp_path: Path, http_url: str) -> None:
    Handler.cut_after = 1024 * 1024
    dest = tmp_path / "m.gguf"
    with pytest.raises(NetworkError, match="resume"):
        models.download(http_url, dest, sha256=SHA)
    part = tmp_path / "m.gguf.part"
    assert not dest.exists() and part.stat().st_size == 1024 * 1024
    models.download(http_url, dest, sha256=SHA)
    assert dest.read_bytes() == DATA and not part.exists()
    assert Handler.ranges == [None, f"bytes={1024 * 1024}-"]


def test_checksum_mismatch_deletes_everything(tmp_path: Path, http_url: str) -> None:
    dest = tmp_path / "m.gguf"
    with pytest.raises(VerificationError, match="does not match"):
        models.download(http_url, dest, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_host_is_a_network_error(tmp_path: Path) -> None:
    port = server.free_port()
    with pytest.raises(NetworkError, match="cannot download"):
        models.download(f"http://127.0.0.1:{port}/x.gguf", tmp_path / "x.gguf")
    assert list(tmp_path.iterdir()) == []


def test_unknown_preset(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown model"):
        models.pull("no-such-model", cache=tmp_path)


def test_list_shows_presets(tmp_path: Path) -> None:
    names = [r["name"] for r in models.list_models(tmp_path)]
    assert "smollm2-135m" in names and "deepseek-r1-0528-qwen3-8b-q8_0" in names


def test_default_model_is_the_pinned_file(default_model: Path) -> None:
    assert default_model.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert models.sha256_file(default_model) == \
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
