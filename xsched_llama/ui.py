"""Console output: timed steps, a progress line on a terminal (plain lines otherwise), NO_COLOR honoured."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def is_tty() -> bool:
    """is_tty() is true when stderr is an interactive terminal (animations and colour allowed)."""
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"


def _colour(text: str, code: str) -> str:
    if not is_tty() or os.environ.get("NO_COLOR"):
        return text
    return f"\033[{code}m{text}\033[0m"


def info(msg: str) -> None:
    """info() prints a line to stderr (stdout is kept for --json)."""
    print(msg, file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    """warn() prints a highlighted warning line to stderr."""
    print(_colour("warning: ", "1;33") + msg, file=sys.stderr, flush=True)


@contextmanager
def step(title: str) -> Iterator[None]:
    """step() prints `title…` and then `✓ 0.4 s` (or `✗`) when the block ends."""
    start = time.monotonic()
    print(f"{title}…", file=sys.stderr, flush=True)
    try:
        yield
    except BaseException:
        print(f"{title} {_colour('✗', '31')} {time.monotonic() - start:.1f} s", file=sys.stderr, flush=True)
        raise
    print(f"{title} {_colour('✓', '32')} {time.monotonic() - start:.1f} s", file=sys.stderr, flush=True)


class Progress:
    """Progress shows `done/total` as a tqdm bar on a terminal, or a plain line every 10 % / 30 s otherwise."""

    def __init__(self, desc: str, total: float | None, unit: str = "it", unit_scale: bool = False,
                 initial: float = 0) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.n = initial
        self._last_pct = -10.0
        self._last_t = time.monotonic()
        self._bar = None
        if is_tty():
            try:
                from tqdm import tqdm
                self._bar = tqdm(desc=desc, total=total, unit=unit, unit_scale=unit_scale,
                                 initial=initial, file=sys.stderr, leave=True, dynamic_ncols=True)
            except ImportError:
                self._bar = None

    def update(self, n: float = 1, total: float | None = None) -> None:
        """update() advances by `n` (and may change the total)."""
        self.n += n
        if total is not None:
            self.total = total
        if self._bar is not None:
            if total is not None:
                self._bar.total = total
            self._bar.update(n)
            return
        self._plain()

    def set(self, done: float, total: float | None = None) -> None:
        """set() moves to an absolute position."""
        self.update(done - self.n, total)

    def _plain(self) -> None:
        now = time.monotonic()
        pct = 100.0 * self.n / self.total if self.total else 0.0
        if pct - self._last_pct >= 10 or now - self._last_t >= 30:
            self._last_pct, self._last_t = pct, now
            total = f"/{self.total:.0f}" if self.total else ""
            print(f"  {self.desc}: {self.n:.0f}{total} {self.unit} ({pct:.0f} %)", file=sys.stderr, flush=True)

    def close(self) -> None:
        """close() ends the bar."""
        if self._bar is not None:
            self._bar.close()
