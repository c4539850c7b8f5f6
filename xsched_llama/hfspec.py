"""Hugging Face model references and llama.cpp's rules for picking a GGUF from a repository listing.

`owner/repo[@REV][:QUANT]` (llama.cpp's `-hf` notation) and `hf://owner/repo[@REV][/path/file.gguf]`; the file
choice follows common/download.cpp of the pinned llama.cpp commit (find_best_model, get_gguf_split_info,
get_split_files). Pure functions: no network, no files (hf.py does the pulling).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError

DEFAULT_QUANTS = ("Q4_K_M", "Q8_0")
"""llama.cpp's `-hf` without a quant: the first file tagged Q4_K_M, else Q8_0, else the first model GGUF."""

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_PLAIN = re.compile(rf"^({_NAME})/({_NAME})(?:@([^:@/\s]+))?(?::([A-Za-z0-9_.-]+))?$")
_SPLIT = re.compile(r"^(.+)-([0-9]{5})-of-([0-9]{5})$", re.I)
_TAG = re.compile(r"[-.]([A-Z0-9_]+)$", re.I)
_NOT_MODELS = ("mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-")


@dataclass(frozen=True)
class HfSpec:
    """HfSpec is a parsed Hugging Face model reference."""

    repo: str
    """owner/name."""
    revision: str = "main"
    """Branch, tag or commit."""
    file: str | None = None
    """Path inside the repository (hf:// form), or None to pick by quant."""
    quant: str | None = None
    """Quant tag such as Q8_0 (owner/repo:QUANT form); None = llama.cpp's default."""

    def __str__(self) -> str:
        rev = "" if self.revision == "main" else f"@{self.revision}"
        if self.file:
            return f"hf://{self.repo}{rev}/{self.file}"
        return f"{self.repo}{rev}{':' + self.quant if self.quant else ''}"


def _check_name(repo: str, spec: str) -> None:
    if len(repo) > 96 or "--" in repo or ".." in repo:
        raise UsageError(f"{spec!r}: {repo!r} is not a valid Hugging Face repository id")


def parse(spec: str) -> HfSpec | None:
    """parse() reads `owner/repo[@REV][:QUANT]` or `hf://owner/repo[@REV][/path.gguf]`; None if `spec` is neither.

    Raises UsageError for a malformed hf:// reference.
    """
    if spec.startswith("hf://"):
        rest = spec[len("hf://"):].strip("/")
        parts = rest.split("/")
        if parts and parts[0] in ("datasets", "spaces", "buckets"):
            raise UsageError(f"{spec!r}: only model repositories hold GGUF models for llama-server")
        if len(parts) < 2:
            raise UsageError(f"{spec!r}: expected hf://owner/repo[@REV]/path/file.gguf")
        if len(parts) == 2:
            m = _PLAIN.match("/".join(parts))
            if not m:
                raise UsageError(f"{spec!r}: expected hf://owner/repo[@REV]/path/file.gguf")
            return _from_match(m, spec)
        name, at, rev = parts[1].partition("@")
        repo = f"{parts[0]}/{name}"
        file = "/".join(parts[2:])
        bad_path = any(p in ("", ".", "..") for p in parts[2:])
        if not re.fullmatch(rf"{_NAME}/{_NAME}", repo) or (at and not rev) or bad_path:
            raise UsageError(f"{spec!r}: expected hf://owner/repo[@REV]/path/file.gguf")
        _check_name(repo, spec)
        if not file.lower().endswith(".gguf"):
            raise UsageError(f"{spec!r}: {file} is not a .gguf file")
        return HfSpec(repo, rev or "main", file=file)
    if spec.lower().endswith(".gguf"):
        return None  # a path that does not exist, not a repository
    m = _PLAIN.match(spec)
    return _from_match(m, spec) if m else None


def _from_match(m: re.Match[str], spec: str) -> HfSpec:
    repo = f"{m.group(1)}/{m.group(2)}"
    _check_name(repo, spec)
    return HfSpec(repo, m.group(3) or "main", quant=m.group(4))


# --- choosing the file: llama.cpp's rules (common/download.cpp at the pinned commit) ---

def split_info(path: str) -> tuple[str, str, int, int]:
    """split_info() is (prefix, TAG, index, count) of a GGUF name.

    `M-Q8_0-00002-of-00003.gguf` -> (`M-Q8_0`, `Q8_0`, 2, 3); `M-Q8_0.gguf` -> (`M-Q8_0`, `Q8_0`, 1, 1).
    """
    prefix = path[:-5] if path.lower().endswith(".gguf") else path
    index = count = 1
    m = _SPLIT.match(prefix)
    if m:
        prefix, index, count = m.group(1), int(m.group(2)), int(m.group(3))
    t = _TAG.search(prefix)
    return prefix, (t.group(1).upper() if t else ""), index, count


def is_model(path: str) -> bool:
    """is_model() is true for a GGUF that is a model, not a projector, imatrix or draft/sidecar file."""
    base = path.rsplit("/", 1)[-1]
    return path.endswith(".gguf") and not any(k in base for k in _NOT_MODELS)


def _first_part(path: str) -> bool:
    _, _, index, count = split_info(path)
    return count <= 1 or index == 1


def shards(paths: list[str], primary: str) -> list[str]:
    """shards() is every part of a split GGUF (`-0000k-of-0000N`) sharing `primary`'s prefix, in order."""
    prefix, _, _, count = split_info(primary)
    if count <= 1:
        return [primary]
    found = sorted((p for p in paths if split_info(p)[0] == prefix and split_info(p)[3] == count),
                   key=lambda p: split_info(p)[2])
    if [split_info(p)[2] for p in found] != list(range(1, count + 1)):
        have = ", ".join(str(split_info(p)[2]) for p in found) or "none"
        raise UsageError(f"{primary} is part 1 of {count}, but the repository has parts {have}")
    return found


def quants(paths: list[str]) -> list[str]:
    """quants() lists the quant tags of the model GGUFs in `paths` (for error messages)."""
    return sorted({split_info(p)[1] for p in paths if is_model(p) and _first_part(p) and split_info(p)[1]})


def choose(paths: list[str], quant: str | None, repo: str = "the repository") -> str:
    """choose() picks the model GGUF for `quant` among `paths` (listing order) the way llama.cpp's `-hf` does.

    A name matches QUANT when it contains `QUANT.` or `QUANT-` (any case); only unsplit files and first parts count.
    Without a quant it takes the first Q4_K_M, else the first Q8_0, else the first model GGUF, as llama.cpp does.
    With a quant, several matching models are refused where llama.cpp would take the first; one whose own tag
    (the last `-`/`.` component) is exactly QUANT wins over the others (Q4_0 over IQ4_0).
    """
    models = [p for p in paths if is_model(p) and _first_part(p)]
    for tag in ([quant] if quant else list(DEFAULT_QUANTS)):
        pat = re.compile(re.escape(tag) + r"[.-]", re.I)
        cands = [p for p in models if pat.search(p)]
        if not cands:
            continue
        if not quant:
            return cands[0]
        exact = [p for p in cands if split_info(p)[1] == tag.upper()] or cands
        if len(exact) > 1:
            raise UsageError(f"quant {quant} is ambiguous in {repo}: {', '.join(exact)}; "
                             f"name one with hf://{repo}/<file>")
        return exact[0]
    if not quant and models:
        return models[0]
    avail = quants(paths)
    if quant:
        raise UsageError(f"no GGUF with quant {quant} in {repo}; available: {', '.join(avail) or 'none'}")
    raise UsageError(f"no GGUF model in {repo}")


