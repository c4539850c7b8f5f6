"""One exception root with an exit code per subclass (documented in docs/toolkit.md)."""

from __future__ import annotations


class XschedLlamaError(Exception):
    """Root of every error the toolkit raises on purpose; `exit_code` is the process exit status."""

    exit_code = 1


class UsageError(XschedLlamaError):
    """Bad input: unknown preset, source, shape, option value."""

    exit_code = 2


class NetworkError(XschedLlamaError):
    """A host could not be reached or a download failed."""

    exit_code = 3


class VerificationError(XschedLlamaError):
    """A checksum or the llama.cpp commit did not match the pin."""

    exit_code = 4


class PatchError(XschedLlamaError):
    """A patch of the series (or an overlay file) could not be applied."""

    exit_code = 5


class BuildError(XschedLlamaError):
    """CMake configure or build failed."""

    exit_code = 6


class ToolMissingError(XschedLlamaError):
    """A required program (compiler, CMake, nvcc, nvidia-smi, git) is missing."""

    exit_code = 7


class DiskSpaceError(XschedLlamaError):
    """Not enough free disk space in the cache directory."""

    exit_code = 8


class ServerError(XschedLlamaError):
    """llama-server did not start, exited early or did not become healthy."""

    exit_code = 9


class AuthError(XschedLlamaError):
    """The Hugging Face hub refused access: a gated or private repository without a usable token, a refused token."""

    exit_code = 11


class SchedulerError(XschedLlamaError):
    """The global scheduler (xschedd) is not running at the socket, or is not ours."""

    exit_code = 12
