"""Open-loop load: requests sent at planned times (Poisson arrivals), whatever the server's progress.

Each request runs on its own thread from its arrival time on, so a slow server makes requests pile up
instead of slowing the arrivals (which is what separates open-loop from closed-loop load). Arrival times
and request sizes come from a seeded generator, so every build sees the same sequence.
"""
from __future__ import annotations

import random
import socket
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable

from .client import Completion, Prompt, complete, now
from .errors import BenchError


@dataclass(frozen=True)
class Planned:
    """Planned is one open-loop request: when it is due (seconds after the phase start) and its size."""

    offset: float
    prompt: Prompt
    n_predict: int


def poisson_offsets(rate: float, n: int, seed: int) -> list[float]:
    """poisson_offsets() are n arrival times (s from 0) of a Poisson process of `rate` per second."""
    if rate <= 0:
        raise ValueError(f"arrival rate must be > 0, not {rate}")
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def draw_lengths(lo_hi: tuple[int, int], n: int, seed: int) -> list[int]:
    """draw_lengths() draws n integers uniformly from the inclusive range lo_hi (seeded)."""
    lo, hi = lo_hi
    if lo < 1 or hi < lo:
        raise ValueError(f"empty length range {lo}-{hi}")
    rng = random.Random(seed)
    return [rng.randint(lo, hi) for _ in range(n)]


class OpenLoop:
    """OpenLoop sends planned requests at their times and collects what each produced."""

    def __init__(self, url: str, plan: list[Planned], priority: int | None, task: str,
                 alive: Callable[[], bool] = lambda: True) -> None:
        self.url = url
        self.plan = plan
        self.priority = priority
        self.task = task
        self.alive = alive
        self.results: list[Completion] = []
        self.cut_at_deadline = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: dict[int, socket.socket] = {}
        self._threads: list[threading.Thread] = []
        self._dead = False

    def run(self, deadline_s: float) -> list[Completion]:
        """run() sends every planned request, waits for all until deadline_s after the start, cuts the rest.

        Raises BenchError when the server process ends during the phase (the requests made so far stay in
        `results`, the cut ones marked cancelled).
        """
        t0 = now()
        for i, p in enumerate(self.plan):
            while True:
                wait = t0 + p.offset - now()
                if self._dead or not self.alive():
                    self._dead = True
                    break
                if wait <= 0:
                    break
                time.sleep(min(wait, 0.05))
            if self._dead:
                break
            th = threading.Thread(target=self._one, args=(i, p, t0 + p.offset), name=f"bench-{self.task}-{i}",
                                  daemon=True)
            self._threads.append(th)
            th.start()
        end = t0 + deadline_s
        for th in self._threads:
            while th.is_alive() and now() < end and not self._dead:
                th.join(0.05)
                if not self.alive():
                    self._dead = True
        pending = sum(1 for th in self._threads if th.is_alive())
        if pending:
            self._cut()
            for th in self._threads:
                th.join(30.0)
            if not self._dead:
                self.cut_at_deadline = pending
        self.results.sort(key=lambda c: c.t_send)
        if self._dead or not self.alive():
            raise BenchError(f"the server exited while the {self.task} requests ran "
                             f"({len(self.results)} of {len(self.plan)} sent)")
        return self.results

    def _cut(self) -> None:
        self._stop.set()
        with self._lock:
            socks = list(self._socks.values())
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _one(self, i: int, p: Planned, due: float) -> None:
        def on_connect(sock: socket.socket, _c: Completion) -> None:
            with self._lock:
                self._socks[i] = sock

        t_send = now()
        try:
            c = complete(self.url, p.prompt, p.n_predict, self.priority, task=self.task, stop=self._stop,
                         on_connect=on_connect)
        except BenchError as e:
            c = Completion(task=self.task, priority=self.priority, n_predict=p.n_predict, prompt_tokens=0,
                           t_send=t_send, t_end=now(), error=str(e))
            if not self.alive():
                self._dead = True
        finally:
            with self._lock:
                self._socks.pop(i, None)
        c.t_arrival = due
        with self._lock:
            self.results.append(c)
