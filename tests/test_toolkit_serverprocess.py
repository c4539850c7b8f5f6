"""ServerProcess with stand-in server programs (real processes on 127.0.0.1): health wait, failures, stop."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from xsched_llama.errors import ServerError
from xsched_llama.server import ServerProcess

HEALTHY = """
import http.server, signal, sys
args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
srv = http.server.HTTPServer(("127.0.0.1", port), H)
def bye(*_): print("got SIGINT, bye", flush=True); sys.exit(0)
signal.signal(signal.SIGINT, bye)
print("listening", flush=True)
srv.serve_forever()
"""


def script(tmp_path: Path, name: str, body: str) -> Path:
    p = tmp_path / name
    p.write_text(f"#!{sys.executable}\n{body}")
    p.chmod(0o755)
    return p


def test_start_waits_for_health_and_stop_sends_sigint(tmp_path: Path) -> None:
    binary = script(tmp_path, "healthy", HEALTHY)
    srv = ServerProcess(binary, ["-m", "x.gguf"], log_path=tmp_path / "s.log").start()
    assert srv.get("/health").status_code == 200
    assert srv.command()[-4:] == ["--host", "127.0.0.1", "--port", str(srv.port)]
    assert srv.stop() == 0
    assert "got SIGINT, bye" in srv.log_text()


def test_early_exit_is_a_server_error_with_the_log(tmp_path: Path) -> None:
    binary = script(tmp_path, "crash", "import sys\nprint('error: model not found', flush=True)\nsys.exit(1)\n")
    with pytest.raises(ServerError, match="exited with code 1.*model not found"):
        ServerProcess(binary, log_path=tmp_path / "c.log").start()


def test_never_healthy_times_out_and_is_stopped(tmp_path: Path) -> None:
    binary = script(tmp_path, "silent", "import time\nwhile True: time.sleep(1)\n")
    srv = ServerProcess(binary, log_path=tmp_path / "t.log", startup_timeout=1.5)
    with pytest.raises(ServerError, match="not healthy"):
        srv.start()
    assert srv.returncode is not None


def test_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="xsched-llama build"):
        ServerProcess(tmp_path / "nope").start()
