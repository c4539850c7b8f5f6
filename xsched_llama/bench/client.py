"""One `/completion` request to a llama-server, streamed, with a timestamp per generated token.

Every request uses the benchmark's fixed sampling (`ignore_eos`, `temperature: 0`,
`cache_prompt: false`), so that the work per request depends only on the token counts.
Times are `time.perf_counter()` seconds; the scenarios make them relative to one origin.
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from .errors import BenchError

Prompt = str | Sequence[int]


def now() -> float:
    """now() is the benchmark clock (seconds, monotonic)."""
    return time.perf_counter()


@dataclass
class Completion:
    """Completion is what one request produced and when."""

    task: str                      # "A" or "B" (or any label)
    priority: int | None
    n_predict: int
    prompt_tokens: int             # tokens the server evaluated (0 if unknown)
    t_send: float
    t_first: float | None = None  # first generated token arrived
    t_end: float | None = None    # last event arrived (or the request was cut)
    tokens: int = 0                  # tokens generated
    token_times: list[float] = field(default_factory=list)  # arrival time of token 1..tokens
    cancelled: bool = False          # cut by the client before the server finished
    timings: dict[str, Any] = field(default_factory=dict)   # the server's own `timings`
    xsched_timings: dict[str, Any] = field(default_factory=dict)  # patched server: ms since its handler got it
    t_arrival: float | None = None  # open-loop arrivals: when the request was due (t_send is when it went)
    error: str | None = None        # why the request failed (it is then not completed)

    @property
    def latency(self) -> float:
        """latency is the request's wall time, send to last token."""
        assert self.t_end is not None
        return self.t_end - self.t_send

    @property
    def tokens_per_s(self) -> float:
        """tokens_per_s is generated tokens over the request's wall time."""
        return self.tokens / self.latency if self.latency > 0 else 0.0

    def to_json(self, origin: float) -> dict[str, Any]:
        """to_json() returns the request as plain data, times relative to origin."""
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - origin, 6)
        return {
            "task": self.task, "priority": self.priority, "n_predict": self.n_predict,
            "prompt_tokens": self.prompt_tokens, "t_send": rel(self.t_send), "t_first": rel(self.t_first),
            "t_end": rel(self.t_end), "tokens": self.tokens, "cancelled": self.cancelled,
            "latency_s": None if self.t_end is None else round(self.latency, 6),
            "token_times": [round(t - origin, 5) for t in self.token_times],
            "timings": self.timings,
            **({"xsched_timings": self.xsched_timings} if self.xsched_timings else {}),
            **({"t_arrival": rel(self.t_arrival)} if self.t_arrival is not None else {}),
            **({"error": self.error} if self.error else {}),
        }


def split_url(url: str) -> tuple[str, int]:
    """split_url() returns (host, port) of an http:// base URL, or raises BenchError."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise BenchError(f"bad server URL {url!r}: expected http://HOST:PORT")
    try:
        port = parts.port or 80
    except ValueError as e:
        raise BenchError(f"bad server URL {url!r}: {e}") from None
    return parts.hostname, port


def get_json(url: str, path: str, timeout: float = 10.0) -> Any:
    """get_json() GETs url+path and returns the decoded JSON body; BenchError on any failure."""
    return _call(url, "GET", path, None, timeout)


def post_json(url: str, path: str, body: Any, timeout: float = 600.0) -> Any:
    """post_json() POSTs a JSON body and returns the decoded JSON answer; BenchError on any failure."""
    return _call(url, "POST", path, body, timeout)


def _call(url: str, method: str, path: str, body: Any, timeout: float) -> Any:
    host, port = split_url(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise BenchError(f"no llama-server answering at {url} ({_reason(e)})") from None
    finally:
        conn.close()
    if resp.status != 200:
        raise BenchError(f"{method} {url}{path} answered HTTP {resp.status}: {_error_text(raw)}")
    try:
        return json.loads(raw)
    except ValueError:
        raise BenchError(f"{method} {url}{path} answered something that is not JSON") from None


def tokenize(url: str, text: str) -> list[int]:
    """tokenize() returns the server's token ids for text (no special tokens)."""
    ans = post_json(url, "/tokenize", {"content": text})
    return [int(t) for t in ans["tokens"]]


_TEXT = ("The scheduler keeps interactive requests fast while batch jobs harvest the idle time of the "
         "accelerator; every queue is gated before it launches work, and weights share the device. ")


def make_prompt(url: str, n_tokens: int, salt: int = 0) -> list[int]:
    """make_prompt() returns exactly n_tokens token ids of English text (different per salt)."""
    if n_tokens < 1:
        raise BenchError(f"a prompt needs at least 1 token, not {n_tokens}")
    unit = tokenize(url, f"Document {salt}. " + _TEXT)
    reps = n_tokens // max(1, len(unit)) + 1
    return (unit * reps)[:n_tokens]


def complete(url: str, prompt: Prompt, n_predict: int, priority: int | None, *, task: str = "A",
             stop: threading.Event | None = None,
             on_connect: Callable[[socket.socket, Completion], None] | None = None,
             timeout: float = 900.0) -> Completion:
    """complete() sends one streamed /completion and returns its Completion.

    If stop is set while tokens arrive, the request is cut (the connection closed, so the server
    cancels it) and the Completion is marked cancelled. on_connect receives the socket and the
    Completion being filled, so that another thread can watch its progress and cut a request that
    is still evaluating its prompt (socket.shutdown()).
    """
    host, port = split_url(url)
    body: dict[str, Any] = {"prompt": prompt, "n_predict": n_predict, "ignore_eos": True, "temperature": 0,
                            "cache_prompt": False, "stream": True}
    if priority is not None:
        body["priority"] = priority
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    c = Completion(task=task, priority=priority, n_predict=n_predict, prompt_tokens=0, t_send=now())
    try:
        conn.connect()
        if on_connect is not None and conn.sock is not None:
            on_connect(conn.sock, c)
        conn.request("POST", "/completion", body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise BenchError(f"POST {url}/completion answered HTTP {resp.status}: {_error_text(resp.read())}")
        if not _read_events(resp, c, stop) and not c.cancelled:
            if stop is not None and stop.is_set():
                c.cancelled = True
            else:
                raise BenchError(f"the stream from {url}/completion ended before its final event")
    except (OSError, http.client.HTTPException) as e:
        if stop is not None and stop.is_set():
            c.cancelled = True
        else:
            raise BenchError(f"request to {url}/completion failed ({_reason(e)})") from None
    finally:
        conn.close()
    if c.t_end is None:
        c.t_end = now()
    return c


def _read_events(resp: http.client.HTTPResponse, c: Completion, stop: threading.Event | None) -> bool:
    """_read_events() fills c from the stream; True when the final event (`stop: true`) arrived."""
    for raw in resp:
        line = raw.strip()
        if not line.startswith(b"data: "):
            continue
        t = now()
        try:
            ev = json.loads(line[6:])
        except ValueError:
            raise BenchError(f"the server sent a stream event that is not JSON: {line[:80]!r}") from None
        if not isinstance(ev, dict):
            raise BenchError(f"the server sent a stream event that is not an object: {line[:80]!r}")
        if "error" in ev:
            raise BenchError(f"server error during the request: {_error_text(line[6:])}")
        n = int(ev.get("tokens_predicted", c.tokens))
        if n > c.tokens:
            if c.t_first is None:
                c.t_first = t
            c.token_times.extend([t] * (n - c.tokens))
            c.tokens = n
        c.prompt_tokens = int(ev.get("tokens_evaluated", c.prompt_tokens))
        c.t_end = t
        if ev.get("stop"):
            c.timings = dict(ev.get("timings") or {})
            xt = ev.get("xsched_timings")
            if isinstance(xt, dict):
                c.xsched_timings = dict(xt)
            return True
        if stop is not None and stop.is_set():
            c.cancelled = True
            return False
    return False


def _reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0] if text else type(e).__name__


def _error_text(raw: bytes) -> str:
    try:
        doc = json.loads(raw)
        err = doc.get("error", doc) if isinstance(doc, dict) else doc
        msg = err.get("message", err) if isinstance(err, dict) else err
        return str(msg).splitlines()[0][:300]
    except ValueError:
        return raw.decode(errors="replace").strip().splitlines()[0][:300] if raw.strip() else "(empty body)"
