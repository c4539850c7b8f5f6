"""ServerProcess: run a llama-server binary on a free 127.0.0.1 port, wait until healthy, stop it cleanly.

Stable API (used by the server, bench and test code)::

    with ServerProcess(binary, ["-m", model, "-c", "2048"], log_path=tmp / "server.log") as srv:
        r = srv.post("/completion", {"prompt": "Hello", "n_predict": 8})
        print(srv.url, r.json()["content"])
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ServerError

DEFAULT_HOST = "127.0.0.1"


def _die_with_parent() -> Callable[[], None] | None:
    """_die_with_parent() returns a preexec_fn that makes the child receive SIGTERM when the thread that started it
    ends (Linux prctl PR_SET_PDEATHSIG), or None where that does not exist. The libc lookup happens here, in the
    parent; the child only calls it. Use it only from a process with one thread (preexec_fn is not safe otherwise)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def set_pdeathsig() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before prctl: nobody is left to stop the server
            os._exit(1)
    return set_pdeathsig


def free_port(host: str = DEFAULT_HOST) -> int:
    """free_port() returns a TCP port on `host` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """ServerProcess is one llama-server child process with its log file.

    `args` are passed to the binary as they are; `--host` and `--port` are added (do not pass them).
    Output (stdout and stderr) goes to `log_path` (a temporary file when omitted), or with `stream` to
    this process's stdout/stderr (then the log file stays empty). The child gets its
    own process group, so a Ctrl-C in the parent's terminal reaches it only through `stop()`. With
    `die_with_parent` (for single-threaded callers such as `xsched-llama serve`) the child also gets SIGTERM when
    the calling thread dies, so that a SIGKILL of the caller does not leave a server holding the port.
    """

    def __init__(self, binary: str | os.PathLike[str], args: Sequence[str | os.PathLike[str]] = (), *,
                 host: str = DEFAULT_HOST, port: int | None = None,
                 log_path: str | os.PathLike[str] | None = None,
                 env: Mapping[str, str] | None = None, startup_timeout: float = 180.0,
                 stream: bool = False, die_with_parent: bool = False) -> None:
        self.binary = Path(binary)
        self.args = [str(a) for a in args]
        self.host = host
        self.port = port if port is not None else free_port(host)
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
            os.close(fd)
            log_path = name
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.startup_timeout = startup_timeout
        self.stream = stream
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """url is the base URL, e.g. `http://127.0.0.1:41234`."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """pid is the child's process id (None before start)."""
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        """returncode is the child's exit status once it has exited, else None."""
        return self.proc.poll() if self.proc else None

    def command(self) -> list[str]:
        """command() is the full argv that start() runs."""
        return [str(self.binary), *self.args, "--host", self.host, "--port", str(self.port)]

    def start(self, wait: bool = True) -> ServerProcess:
        """start() launches the server and (with `wait`) blocks until GET /health answers 200.

        Raises ServerError (with the log's last lines) when the binary is missing, exits early or
        is not healthy within `startup_timeout` seconds; the child is stopped in that case.
        """
        if not self.binary.is_file():
            raise ServerError(f"llama-server binary not found: {self.binary}; run `xsched-llama build` first")
        if self.proc is not None:
            raise ServerError("ServerProcess.start() called twice")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env} if self.env is not None else None
        with open(self.log_path, "ab") as log:
            log.write(("+ " + " ".join(self.command()) + "\n").encode())
            log.flush()
            out = None if self.stream else log
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=None if self.stream else subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                         preexec_fn=_die_with_parent() if self.die_with_parent else None)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float | None = None) -> None:
        """wait_healthy() polls /health until it answers 200 (503 means "loading")."""
        import requests
        deadline = time.monotonic() + (timeout if timeout is not None else self.startup_timeout)
        while True:
            rc = self.returncode
            if rc is not None:
                raise ServerError(f"llama-server exited with code {rc} during start-up; "
                                  f"log {self.log_path}: {self.log_tail(3)}")
            try:
                r = requests.get(self.url + "/health", timeout=2)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"llama-server not healthy after {self.startup_timeout:.0f} s; "
                                  f"log {self.log_path}: {self.log_tail(3)}")
            time.sleep(0.2)

    def stop(self, timeout: float = 15.0) -> int | None:
        """stop() sends SIGINT, waits `timeout` s, then SIGTERM, then SIGKILL; returns the exit status."""
        p = self.proc
        if p is None:
            return None
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if p.poll() is not None:
                break
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                p.wait(timeout=timeout if sig != signal.SIGKILL else None)
            except subprocess.TimeoutExpired:
                continue
        return p.wait()

    def wait(self) -> int:
        """wait() blocks until the child exits and returns its status."""
        if self.proc is None:
            raise ServerError("ServerProcess.wait() before start()")
        return self.proc.wait()

    def log_text(self) -> str:
        """log_text() returns the whole log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 20) -> str:
        """log_tail() returns the last `n` log lines joined by ' | ' (for one-line errors)."""
        return " | ".join(self.log_text().strip().splitlines()[-n:])

    def get(self, path: str, timeout: float = 60.0, **kw: Any) -> Any:
        """get() does GET url+path and returns the requests.Response."""
        import requests
        return requests.get(self.url + path, timeout=timeout, **kw)

    def post(self, path: str, payload: Any = None, timeout: float = 300.0, **kw: Any) -> Any:
        """post() does POST url+path with a JSON body and returns the requests.Response."""
        import requests
        return requests.post(self.url + path, json=payload, timeout=timeout, **kw)

    def __enter__(self) -> ServerProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


POLICIES = ("hpf", "wrr", "none")


def _int(text: str) -> bool:
    return text.lstrip("-").isdigit() and text.count("-") <= 1 and not text.endswith("-")


INSTANCE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")  # llama-server's rule for NAME= in --instances


def _instance_spec(parts: list[str], name: str | None = None) -> str | None:
    """_instance_spec() checks `P:W:NP[:Q]` (already split) and an optional NAME, and returns llama-server's
    `[NAME=]P:W:NP[:Q]`, or None when malformed."""
    if len(parts) not in (3, 4) or not all(_int(p) for p in parts):
        return None
    if len(parts) == 4 and int(parts[3]) < 1:
        return None
    if name is not None and (not INSTANCE_NAME.fullmatch(name) or name.isdigit()):
        return None
    return (f"{name}=" if name is not None else "") + ":".join(parts)


def scheduling_args(instances: Sequence[str] = (), instances_csv: str | None = None,
                    policy: str | None = None, max_waiting: int | None = None) -> list[str]:
    """scheduling_args() turns the friendly options into llama-server's `--instances`/`--xsched-policy`/
    `--xsched-max-waiting`.

    `instances` are `[NAME:]PRIORITY:WEIGHT:SLOTS[:QUEUE]` (e.g. `high:10:1:2`, `batch:0:1:4:16`; NAME is not an
    integer), `instances_csv` is the server's own `[NAME=]P:W:NP[:Q],...` form; they are merged in that order. A
    NAME ([A-Za-z0-9_.-]{1,32}, not all digits, unique) is passed on as llama-server's `NAME=` (GET /xsched, /props, /slots, the
    metrics' `name` label); without one the server names the instance `inst<index>`. QUEUE and `max_waiting` are
    admission bounds (waiting requests, >= 1; docs/server.md).
    """
    from .errors import UsageError
    specs: list[str] = []
    names: list[str] = []
    for spec in instances:
        parts = spec.split(":")
        name = None
        if parts and not _int(parts[0]):
            name, parts = parts[0], parts[1:]
        joined = _instance_spec(parts, name)
        if joined is None:
            raise UsageError(f"bad --instance {spec!r}: use [NAME:]PRIORITY:WEIGHT:SLOTS[:QUEUE] with NAME of 1-32 "
                             "characters A-Z a-z 0-9 _ . - and QUEUE >= 1, e.g. high:10:1:2 or batch:0:1:4:16")
        names += [name] if name is not None else []
        specs.append(joined)
    if instances_csv:
        for spec in instances_csv.split(","):
            name, eq, rest = spec.strip().rpartition("=")
            joined = _instance_spec(rest.split(":"), name if eq else None)
            if joined is None:
                raise UsageError(f"bad --instances item {spec!r}: use [NAME=]PRIORITY:WEIGHT:SLOTS[:QUEUE][,...] with "
                                 "QUEUE >= 1, e.g. high=10:1:2,0:1:4:16")
            names += [name] if eq else []
            specs.append(joined)
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise UsageError(f"instance name {dups[0]!r} given twice: names must be unique")
    args: list[str] = []
    if specs:
        args += ["--instances", ",".join(specs)]
    if policy:
        if policy.lower() not in POLICIES:
            raise UsageError(f"unknown --policy {policy!r}: use hpf, wrr or none")
        args += ["--xsched-policy", policy.upper()]
    if max_waiting is not None:
        if max_waiting < 1:
            raise UsageError(f"bad --max-waiting {max_waiting}: must be an integer >= 1")
        args += ["--xsched-max-waiting", str(max_waiting)]
    return args


def run_foreground(srv: ServerProcess, on_ready: Any = None) -> int:
    """run_foreground() starts `srv`, waits for health, then waits until it exits.

    SIGINT/SIGTERM received by this process are forwarded to the server; a second one (or 15 s
    without exit) escalates to SIGTERM, then SIGKILL. Returns the server's exit status (0 after Ctrl-C).
    """
    received: list[int] = []

    def forward(sig: int, _frame: object) -> None:
        received.append(sig)
        p = srv.proc
        if p is not None and p.poll() is None:
            escal = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
            p.send_signal(escal[min(len(received) - 1, 2)] if sig == signal.SIGINT else signal.SIGTERM)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        srv.start(wait=False)
        try:
            srv.wait_healthy()
        except ServerError:
            if received:
                return 0
            raise
        if on_ready is not None:
            on_ready(srv)
        while True:
            try:
                rc = srv.proc.wait(timeout=15 if received else None) if srv.proc else 0
                break
            except subprocess.TimeoutExpired:
                forward(signal.SIGINT, None)
        return 0 if received and rc in (0, -signal.SIGINT, -signal.SIGTERM, 130) else rc
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        srv.stop(timeout=5)
