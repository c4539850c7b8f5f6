"""A timeline of the patched server's scheduler state: `GET /xsched` sampled every few tens of ms on a thread.

The sampler runs beside an open-loop phase of the serve scenario (patched configurations only) and keeps, per
sample, the client time (the midpoint of the request), its round trip, the state of the batch (least important)
instance derived from its queue rows, and every queue's raw figures (state, suspended, in flight, units,
suspended_us, active scopes, preemptions) as columns. It measures its own cost: the round trips and the CPU time
of its thread (JSON parsing and HTTP on the client; the server answers `/xsched` on an HTTP thread from the
scheduler's snapshot, without the instances' loops).

Batch state of one sample: `running` when one of its queues has work (ready or in flight) and is not suspended;
`suspended` when none runs and a queue with work (or an open activity scope) is suspended; `idle` otherwise.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

from .client import now, split_url
from .preempt import low_queue_rows

RUNNING, SUSPENDED, IDLE = "running", "suspended", "idle"
FIELDS = ("ready", "suspended", "in_flight", "units", "suspended_us", "active_scopes", "preemptions")


def batch_state(rows: list[dict[str, Any]]) -> str:
    """batch_state() is the state of one instance from its queue rows (running, suspended or idle)."""
    def busy(q: dict[str, Any]) -> bool:
        return q.get("state") == "ready" or int(q.get("in_flight") or 0) > 0
    if any(busy(q) and not q.get("suspended") for q in rows):
        return RUNNING
    if any(q.get("suspended") and (busy(q) or int(q.get("active_scopes") or 0) > 0) for q in rows):
        return SUSPENDED
    return IDLE


def _row(q: dict[str, Any]) -> list[float]:
    p = q.get("preemption")
    return [1 if q.get("state") == "ready" else 0, 1 if q.get("suspended") else 0, int(q.get("in_flight") or 0),
            int(q.get("units") or 0), int(q.get("suspended_us") or 0), int(q.get("active_scopes") or 0),
            int(p.get("count", 0)) if isinstance(p, dict) else 0]


class XschedSampler:
    """XschedSampler polls GET /xsched every interval_s on its own thread (one kept-alive connection)."""

    def __init__(self, url: str, interval_s: float = 0.025, timeout_s: float = 2.0) -> None:
        self.url = url
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.t: list[float] = []           # client time of each sample (midpoint of its request)
        self.rtt_ms: list[float] = []
        self.batch: list[str] = []          # batch instance state per sample
        self.queues: dict[str, dict[str, list[float]]] = {}
        self.batch_queues: list[str] = []
        self.errors = 0
        self.cpu_s = 0.0                    # CPU time of the sampler thread
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def probe(url: str) -> bool:
        """probe() says whether the server answers GET /xsched with scheduler queues (a patched build)."""
        conn = _KeepAlive(url, 5.0)
        try:
            doc = json.loads(conn.get("/xsched"))
        except (OSError, ValueError):
            return False
        finally:
            conn.close()
        return isinstance(doc, dict) and bool(doc.get("available")) and bool(doc.get("queues"))

    def start(self) -> XschedSampler:
        self._thread = threading.Thread(target=self._run, name="bench-xsched-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """stop() ends the thread (after its current request) and closes the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 1.0)

    def _run(self) -> None:
        c0 = time.thread_time()
        nxt = now()
        conn: _KeepAlive | None = None
        try:
            while True:
                last = self._stop.is_set()      # one more sample after stop(): the timeline covers the phase
                if conn is None:
                    conn = _KeepAlive(self.url, self.timeout_s)
                t0 = now()
                try:
                    doc = json.loads(conn.get("/xsched"))
                except (OSError, ValueError):
                    self.errors += 1
                    conn.close()
                    conn = None
                    doc = None
                t1 = now()
                if isinstance(doc, dict):
                    self._add((t0 + t1) / 2, (t1 - t0) * 1e3, doc)
                if last:
                    break
                nxt += self.interval_s
                if nxt < now():                # fell behind (a slow answer): no burst to catch up
                    nxt = now() + self.interval_s
                if not self._stop.is_set():
                    time.sleep(max(0.0, nxt - now()))   # half the CPU of an Event.wait wake-up here
        finally:
            if conn is not None:
                conn.close()
            self.cpu_s = time.thread_time() - c0

    def _add(self, t: float, rtt_ms: float, doc: dict[str, Any]) -> None:
        rows = [q for q in doc.get("queues") or [] if isinstance(q, dict)]
        low = low_queue_rows(doc)
        for q in low:                             # a queue created later (a new CUDA stream) joins the list
            if str(q.get("name")) not in self.batch_queues:
                self.batch_queues.append(str(q.get("name")))
        k = len(self.t)
        for q in rows:
            col = self.queues.setdefault(str(q.get("name")), {f: [0] * k for f in FIELDS})
            for f, v in zip(FIELDS, _row(q)):
                col[f].append(v)
        for col in self.queues.values():          # a queue missing from this sample repeats its last values
            for f in FIELDS:
                if len(col[f]) == k:
                    col[f].append(col[f][-1] if k else 0)
        self.t.append(t)
        self.rtt_ms.append(rtt_ms)
        self.batch.append(batch_state(low))

    def batch_units(self) -> list[int]:
        """batch_units() is the batch instance's units launched (all its queues) at each sample."""
        cols = [self.queues[n]["units"] for n in self.batch_queues if n in self.queues]
        return [int(sum(c[i] for c in cols)) for i in range(len(self.t))]

    def cost(self) -> dict[str, Any]:
        """cost() is what the sampling cost the client: samples, interval, round trips, CPU of its thread."""
        from . import stats
        n = len(self.t)
        span = self.t[-1] - self.t[0] if n > 1 else 0.0
        return {"samples": n, "errors": self.errors, "interval_ms": self.interval_s * 1e3,
                "mean_interval_ms": span * 1e3 / (n - 1) if n > 1 else None,
                "median_rtt_ms": stats.percentile(self.rtt_ms, 50), "p99_rtt_ms": stats.percentile(self.rtt_ms, 99),
                "max_rtt_ms": max(self.rtt_ms, default=None),
                "cpu_ms": self.cpu_s * 1e3, "cpu_ms_per_sample": self.cpu_s * 1e3 / n if n else None,
                "cpu_fraction": self.cpu_s / span if span > 0 else None}

    def to_json(self, origin: float) -> dict[str, Any]:
        """to_json() is the timeline as columns (times relative to origin, s) and the sampler's cost."""
        return {"t": [round(t - origin, 5) for t in self.t], "rtt_ms": [round(x, 3) for x in self.rtt_ms],
                "batch": list(self.batch), "batch_queues": list(self.batch_queues), "fields": list(FIELDS),
                "queues": self.queues, "cost": self.cost()}


class _KeepAlive:
    """_KeepAlive is a minimal HTTP/1.1 GET client on one kept-alive socket: a fixed request and a parse of the
    status line and Content-Length (or chunks), so that a sample costs tens of µs of CPU, not http.client's
    header parsing. OSError or ValueError on anything unexpected (the caller reconnects)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.host, self.port = split_url(url)
        self.timeout_s = timeout_s
        self.sock: socket.socket | None = None
        self.buf = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""

    def _fill(self) -> None:
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data:
            raise OSError("connection closed by the server")
        self.buf += data

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def get(self, path: str) -> bytes:
        """get() is the body of GET path (status 200 only)."""
        if self.sock is None:
            self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        status = self._line().split(b" ", 2)
        if len(status) < 2 or status[1] != b"200":
            raise ValueError(f"GET {path} answered {b' '.join(status[1:]).decode(errors='replace')!r}")
        length, chunked, close = None, False, False
        while line := self._line():
            key, _, val = line.partition(b":")
            key, val = key.strip().lower(), val.strip().lower()
            if key == b"content-length":
                length = int(val)
            elif key == b"transfer-encoding" and b"chunked" in val:
                chunked = True
            elif key == b"connection" and val == b"close":
                close = True
        if chunked:
            body = b""
            while (n := int(self._line().split(b";")[0], 16)) > 0:
                body += self._take(n)
                self._line()
            self._line()
        elif length is not None:
            body = self._take(length)
        else:
            raise ValueError(f"GET {path}: a response without Content-Length")
        if close:
            self.close()
        return body
