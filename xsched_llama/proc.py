"""The one subprocess helper: echoes the command, checks the program exists, captures or logs output."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .errors import ToolMissingError, XschedLlamaError


class CommandError(XschedLlamaError):
    """A command exited non-zero; carries the command, the exit code and the tail of its output."""

    def __init__(self, cmd: Sequence[str], returncode: int, tail: str, log: Path | None = None) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.tail = tail
        self.log = log
        where = f" (full log: {log})" if log else ""
        last = tail.strip().splitlines()[-1] if tail.strip() else ""
        super().__init__(f"`{shlex.join(self.cmd)}` failed with exit code {returncode}{where}"
                         + (f": {last}" if last else ""))


def which(program: str, hint: str = "") -> str:
    """which() returns the full path of `program` or raises ToolMissingError with `hint`."""
    path = shutil.which(program)
    if path is None:
        raise ToolMissingError(f"`{program}` not found on PATH" + (f"; {hint}" if hint else ""))
    return path


def echo(cmd: Sequence[str], quiet: bool = False) -> None:
    """echo() prints `+ cmd` to stderr (the way the build tools we admire show what they run)."""
    if not quiet:
        print("+ " + shlex.join(str(c) for c in cmd), file=sys.stderr, flush=True)


def run(cmd: Sequence[str | os.PathLike[str]], *, cwd: Path | None = None,
        env: Mapping[str, str] | None = None, log: Path | None = None,
        on_line: Callable[[str], None] | None = None, quiet: bool = False,
        timeout: float | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """run() runs `cmd`; captures its output (returned), or with `log` streams it to that file line by line.

    `on_line` sees every output line (used for progress). Raises ToolMissingError when the program is
    missing and CommandError (with the output tail) when it exits non-zero and `check` is true.
    """
    args = [str(c) for c in cmd]
    if os.sep not in args[0]:
        args[0] = which(args[0])
    echo(args, quiet)
    full_env = None if env is None else {**os.environ, **env}
    if log is None and on_line is None:
        try:
            cp = subprocess.run(args, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise CommandError(args, -1, f"timed out after {timeout} s") from e
        if check and cp.returncode != 0:
            raise CommandError(args, cp.returncode, _tail(cp.stdout))
        return cp
    lines: list[str] = []
    with subprocess.Popen(args, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, errors="replace",
                          stdin=subprocess.DEVNULL) as p:
        with open(log, "a") if log else open(os.devnull, "w") as fh:
            fh.write("+ " + shlex.join(args) + "\n")
            assert p.stdout is not None
            for line in p.stdout:
                fh.write(line)
                fh.flush()
                lines.append(line)
                if len(lines) > 400:
                    del lines[:200]
                if on_line is not None:
                    on_line(line.rstrip("\n"))
        rc = p.wait()
    out = "".join(lines)
    if check and rc != 0:
        raise CommandError(args, rc, _tail(out), log)
    return subprocess.CompletedProcess(args, rc, out, None)


def _tail(text: str, n: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-n:])
