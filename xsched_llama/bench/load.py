"""Neighbour: a thread that sends the same kind of request back to back until stopped.

It is task B of the scenarios: a decoding neighbour (short prompt, many tokens) or a
prefilling neighbour (a long prompt, one token). `wait_busy()` returns once B is really
running (its first token arrived, or its first long prompt has been sent).
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from .client import Completion, Prompt, complete, now
from .errors import BenchError


class Neighbour:
    """Neighbour runs requests of one shape back to back on its own thread."""

    def __init__(self, url: str, prompt_for: Callable[[int], Prompt], n_predict: int, priority: int | None,
                 task: str = "B", n_predict_for: Callable[[int], int] | None = None) -> None:
        self.url = url
        self.prompt_for = prompt_for   # request index -> prompt (a fresh prompt per request)
        self.n_predict = n_predict
        self.n_predict_for = n_predict_for  # request index -> tokens to generate (default: n_predict)
        self.priority = priority
        self.task = task
        self.done: list[Completion] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._sock: socket.socket | None = None
        self._live: Completion | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"bench-{task}", daemon=True)

    def start(self) -> "Neighbour":
        """start() starts the thread and returns self."""
        self._thread.start()
        return self

    def wait_busy(self, timeout: float = 600.0, tokens: int = 1) -> None:
        """wait_busy() blocks until the neighbour has generated `tokens` tokens (0: sent a request)."""
        deadline = now() + timeout
        while now() < deadline:
            if self.error is not None:
                raise BenchError(f"neighbour {self.task} failed: {self.error}")
            if tokens == 0 and self._started.is_set():
                return
            if tokens > 0 and self.tokens_so_far() >= tokens:
                return
            time.sleep(0.005)
        raise BenchError(f"neighbour {self.task} produced no token within {timeout:.0f} s")

    def tokens_so_far(self) -> int:
        """tokens_so_far() counts the tokens of the neighbour's finished and current requests."""
        with self._lock:
            live = self._live.tokens if self._live is not None else 0
            return sum(c.tokens for c in self.done) + live

    def stop(self, timeout: float = 600.0) -> list[Completion]:
        """stop() cuts the current request, joins the thread and returns every request made."""
        self._stop.set()
        with self._lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise BenchError(f"neighbour {self.task} did not stop within {timeout:.0f} s")
        if self.error is not None:
            raise BenchError(f"neighbour {self.task} failed: {self.error}")
        return list(self.done)

    def _on_connect(self, sock: socket.socket, live: Completion) -> None:
        with self._lock:
            self._sock = sock
            self._live = live
        self._started.set()

    def _run(self) -> None:
        i = 0
        try:
            while not self._stop.is_set():
                n = self.n_predict_for(i) if self.n_predict_for is not None else self.n_predict
                c = complete(self.url, self.prompt_for(i), n, self.priority, task=self.task,
                             stop=self._stop, on_connect=self._on_connect)
                with self._lock:
                    self._sock = None
                    self._live = None
                    self.done.append(c)
                i += 1
        except BaseException as e:  # reported by wait_busy() / stop()
            self.error = e
