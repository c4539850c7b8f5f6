"""BenchError: a benchmark request or scenario failed (a subclass of the project's root error)."""
from __future__ import annotations

from ..errors import XschedLlamaError


class BenchError(XschedLlamaError):
    """A request failed, a server did not answer as expected, or a scenario could not be measured."""

    exit_code = 10
