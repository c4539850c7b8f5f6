"""`xsched-llama scheduler`: the global scheduler daemon (xschedd) and its status.

xschedd (built and installed with the core: xsched_llama/_native/bin/xschedd) owns one policy for the queues of
every process that joins it: a patched llama-server joins with `XSCHED_SCHEDULER=PATH` (`xsched-llama serve
--xsched-scheduler PATH`). Design and protocol: native/xsched/DESIGN.md ("Global scheduler"); use: docs/scheduler.md.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

from . import native, ui
from .errors import SchedulerError, ToolMissingError, UsageError

SOCKET_ENV = "XSCHED_SCHEDULER"
POLICIES = ("hpf", "wrr", "none")
_SUN_PATH_MAX = 107


def default_socket() -> Path:
    """default_socket() is $XDG_RUNTIME_DIR/xsched-llama/xschedd.sock, else /tmp/xsched-llama-UID/xschedd.sock."""
    run = os.environ.get("XDG_RUNTIME_DIR")
    if run and Path(run).is_dir():
        return Path(run) / "xsched-llama" / "xschedd.sock"
    return Path(f"/tmp/xsched-llama-{os.getuid()}") / "xschedd.sock"


def socket_path(path: str | os.PathLike[str] | None) -> Path:
    """socket_path() makes `path` (None: the default) absolute and checks that it can name a Unix socket."""
    p = Path(path).expanduser().absolute() if path else default_socket()
    if len(str(p).encode()) > _SUN_PATH_MAX:
        raise UsageError(f"socket path {p} is longer than {_SUN_PATH_MAX} bytes (a Unix socket's limit)")
    return p


def daemon_binary() -> Path:
    """daemon_binary() is the installed xschedd."""
    p = native.root() / "bin" / "xschedd"
    if not p.is_file():
        raise ToolMissingError(f"xschedd is not installed ({p} missing); run `pip install .` in the checkout")
    return p


def _prepare_dir(sock: Path, group: str | None) -> None:
    """_prepare_dir() creates the socket's directory (owner-only, or group-traversable with a group)."""
    d = sock.parent
    if not d.exists():
        d.mkdir(parents=True, mode=0o710 if group else 0o700)
        return
    st = d.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{d} is not a directory")
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        raise UsageError(f"{d} is writable by every user: choose a directory only you can write to")


def daemon_command(sock: Path, policy: str = "hpf", timeslice_us: int = 5000, group: str | None = None,
                   max_processes: int = 64, verbose: bool = False, poll: bool = True) -> list[str]:
    """daemon_command() is the xschedd command line for these settings."""
    if policy.lower() not in POLICIES:
        raise UsageError(f"unknown --policy {policy!r}: use hpf, wrr or none")
    cmd = [str(daemon_binary()), "--socket", str(sock), "--policy", policy.upper(),
           "--timeslice-us", str(timeslice_us), "--max-processes", str(max_processes)]
    if group:
        cmd += ["--group", group]
    if verbose:
        cmd.append("--verbose")
    if poll:
        cmd.append("--poll")
    return cmd


def run_foreground(sock: Path, **kw: Any) -> None:
    """run_foreground() replaces this process with xschedd (logs on stderr; SIGINT/SIGTERM stop it cleanly)."""
    cmd = daemon_command(sock, **kw)
    _prepare_dir(sock, kw.get("group"))
    ui.info("+ " + " ".join(cmd))
    ui.info(f"join it with: xsched-llama serve --xsched-scheduler {sock}  (or {SOCKET_ENV}={sock})")
    os.execv(cmd[0], cmd)


def status(sock: Path, timeout: float = 3.0) -> dict[str, Any]:
    """status() asks the daemon at `sock` for its status (every process and queue)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(str(sock))
        except OSError as e:
            raise SchedulerError(f"no global scheduler at {sock} ({e.strerror or e})") from None
        s.sendall(b"STATUS\n")
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                raise SchedulerError(f"{sock} did not answer within {timeout:.0f} s") from None
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    raw = b"".join(chunks).decode(errors="replace")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        first = raw.splitlines()[0][:80] if raw else ""
        raise SchedulerError(f"{sock} is not an xsched scheduler (it answered {first!r})") from None
    if not isinstance(data, dict) or "daemon" not in data:
        raise SchedulerError(f"{sock} is not an xsched scheduler (unexpected answer)")
    return data


def format_status(data: dict[str, Any]) -> str:
    """format_status() renders status() as text: the daemon, then one line per process and per queue."""
    d = data["daemon"]
    lat = d.get("decision_latency_us", {})
    out = [f"xschedd pid {d['pid']} at {d['socket']}: policy {d['policy']}, timeslice {d['timeslice_us']} us, "
           f"{len(data['processes'])}/{d['max_processes']} processes, {d['decisions']} decisions "
           f"(latency p50 {lat.get('p50', 0):.0f} us, p99 {lat.get('p99', 0):.0f} us over the last {lat.get('window', 0)})"]
    for p in data["processes"]:
        out.append(f"  pid {p['pid']} {p['name']} (uid {p['uid']}), joined {p['joined_s']:.0f} s ago, "
                   f"{len(p['queues'])} queues")
        for q in p["queues"]:
            out.append(f"    {q['name'] or '-':<20} priority {q['priority']:>4}  weight {q['weight']:>3}  "
                       f"{q['state']:<5} {'SUSPENDED' if q['suspended'] else 'running  '}  "
                       f"suspended {q['suspended_us'] / 1e6:.3f} s  units {q['units']}")
    return "\n".join(out)
