"""`xsched-llama model synth`: a random-weight GGUF with a real model's exact tensor shapes.

The weights are random Q8_0 blocks (int8 quants + fp16 scales written directly, nothing is quantized),
so an 8 GiB file takes seconds to generate. It loads and runs in llama.cpp with the real Qwen2/Qwen3
vocabulary (taken from models/ggml-vocab-qwen2.gguf of the fetched tree), but ITS TEXT IS GIBBERISH:
use it only to measure speed and scheduling, never quality.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import ui
from .errors import UsageError
from .paths import check_free_space

QK8_0 = 32
BLOCK_BYTES = 34  # fp16 scale + 32 int8


@dataclass(frozen=True)
class Shape:
    """Shape is the architecture of a synthetic "qwen3" model."""

    n_layer: int
    """Transformer blocks."""
    n_embd: int
    """Hidden size."""
    n_ff: int
    """Feed-forward size."""
    n_head: int
    """Query heads."""
    n_head_kv: int
    """Key/value heads."""
    head_dim: int
    """Size of one head."""
    n_ctx_train: int = 40960
    """Training context length written to the GGUF."""
    rope_theta: float = 1e6
    """RoPE frequency base."""
    tied: bool = False
    """Tied embeddings: no output.weight; llama.cpp then uses token_embd.weight for the output projection."""


# The published Qwen3 configs (Hugging Face Qwen/Qwen3-*/config.json): num_hidden_layers, hidden_size,
# intermediate_size, num_attention_heads, num_key_value_heads, head_dim, tie_word_embeddings. All have
# vocab_size 151936, max_position_embeddings 40960, rope_theta 1e6, rms_norm_eps 1e-6.
SHAPES = {
    "qwen3-0.6b": Shape(n_layer=28, n_embd=1024, n_ff=3072, n_head=16, n_head_kv=8, head_dim=128, tied=True),
    "qwen3-1.7b": Shape(n_layer=28, n_embd=2048, n_ff=6144, n_head=16, n_head_kv=8, head_dim=128, tied=True),
    "qwen3-4b": Shape(n_layer=36, n_embd=2560, n_ff=9728, n_head=32, n_head_kv=8, head_dim=128, tied=True),
    "qwen3-8b": Shape(n_layer=36, n_embd=4096, n_ff=12288, n_head=32, n_head_kv=8, head_dim=128),
    "tiny": Shape(n_layer=2, n_embd=64, n_ff=128, n_head=4, n_head_kv=2, head_dim=16),
}


def _tensors(s: Shape, n_vocab: int) -> list[tuple[str, tuple[int, ...], bool]]:
    """(name, numpy shape (rows, cols), quantized) in file order."""
    q, kv = s.n_head * s.head_dim, s.n_head_kv * s.head_dim
    out: list[tuple[str, tuple[int, ...], bool]] = [("token_embd.weight", (n_vocab, s.n_embd), True)]
    for i in range(s.n_layer):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", (s.n_embd,), False), (b + "attn_q.weight", (q, s.n_embd), True),
                (b + "attn_k.weight", (kv, s.n_embd), True), (b + "attn_v.weight", (kv, s.n_embd), True),
                (b + "attn_output.weight", (s.n_embd, q), True),
                (b + "attn_q_norm.weight", (s.head_dim,), False), (b + "attn_k_norm.weight", (s.head_dim,), False),
                (b + "ffn_norm.weight", (s.n_embd,), False), (b + "ffn_gate.weight", (s.n_ff, s.n_embd), True),
                (b + "ffn_up.weight", (s.n_ff, s.n_embd), True), (b + "ffn_down.weight", (s.n_embd, s.n_ff), True)]
    out.append(("output_norm.weight", (s.n_embd,), False))
    if not s.tied:
        out.append(("output.weight", (n_vocab, s.n_embd), True))
    return out


def default_path(cache: Path, shape: str) -> Path:
    """default_path() is where `model synth --shape SHAPE` writes: <cache>/models/synth-SHAPE-q8_0.gguf."""
    return cache / "models" / f"synth-{shape}-q8_0.gguf"


def check_shape(shape: str) -> Shape:
    """check_shape() returns the named shape; UsageError (one line, the choices) for an unknown name."""
    if shape not in SHAPES:
        raise UsageError(f"unknown shape {shape!r}: use {', '.join(SHAPES)}")
    return SHAPES[shape]


def synth_cached(shape: str, cache: Path, *, source: str | None = None, seed: int = 0) -> Path:
    """synth_cached() returns <cache>/models/synth-SHAPE-q8_0.gguf, fetching llama.cpp's vocabulary and
    synthesizing the file first when it is missing (what `xsched-llama bench --shape` uses)."""
    check_shape(shape)
    out = default_path(cache, shape)
    if out.is_file():
        return out
    from . import fetch as fetch_mod
    tree = fetch_mod.fetch(source, cache=cache).tree
    return synth(shape, out, tree / "models" / "ggml-vocab-qwen2.gguf", seed=seed)


_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_kv(path: Path, prefix: str = "") -> dict[str, Any]:
    """read_kv() reads the GGUF key/values starting with `prefix` (fast: gguf.GGUFReader takes ~20 s
    on the 151936-token vocabulary, this takes well under a second)."""
    data = path.read_bytes()
    magic, version, _n_tensors, n_kv = struct.unpack_from("<IIQQ", data, 0)
    if magic != 0x46554747 or version < 2:
        raise UsageError(f"{path} is not a GGUF v2+ file")
    off = 24

    def rstr() -> str:
        nonlocal off
        (n,) = struct.unpack_from("<Q", data, off)
        off += 8 + n
        return data[off - n:off].decode("utf-8", errors="replace")

    def rval(t: int) -> Any:
        nonlocal off
        if t == 8:
            return rstr()
        if t == 9:
            at, n = struct.unpack_from("<IQ", data, off)
            off += 12
            if at == 8:
                return [rstr() for _ in range(n)]
            if at == 9:
                return [rval(9) for _ in range(n)]
            fmt = _SCALARS[at]
            size = struct.calcsize(fmt)
            vals = list(struct.unpack_from(f"<{n}{fmt}", data, off))
            off += n * size
            return vals
        fmt = _SCALARS[t]
        (v,) = struct.unpack_from("<" + fmt, data, off)
        off += struct.calcsize(fmt)
        return v

    out: dict[str, Any] = {}
    for _ in range(n_kv):
        key = rstr()
        (t,) = struct.unpack_from("<I", data, off)
        off += 4
        val = rval(t)
        if key.startswith(prefix):
            out[key] = val
    return out


def estimate_bytes(s: Shape, n_vocab: int = 151936) -> int:
    """estimate_bytes() is the size of the tensor data."""
    total = 0
    for _, shape, quant in _tensors(s, n_vocab):
        n = 1
        for d in shape:
            n *= d
        total += n // QK8_0 * BLOCK_BYTES if quant else n * 4
    return total


def parameters(s: Shape, n_vocab: int = 151936) -> tuple[int, int]:
    """parameters() is (all weights, weights outside the embeddings): what model cards call the parameter
    count and the non-embedding parameter count (a tied output counts once, as token_embd)."""
    total = embedding = 0
    for name, shape, _quant in _tensors(s, n_vocab):
        n = 1
        for d in shape:
            n *= d
        total += n
        if name in ("token_embd.weight", "output.weight"):
            embedding += n
    return total, total - embedding


def synth(shape: str, out: Path, vocab: Path, *, seed: int = 0, force: bool = False) -> Path:
    """synth() writes the random-weight GGUF `out` (atomically, via `out`.part) and returns it."""
    import gguf
    import numpy as np

    s = check_shape(shape)
    if out.exists() and not force:
        ui.info(f"{out} exists (use --force to regenerate)")
        return out
    if not vocab.is_file():
        raise UsageError(f"vocabulary {vocab} not found; run `xsched-llama fetch` first")
    fields = read_kv(vocab, "tokenizer.")
    n_vocab = len(fields["tokenizer.ggml.tokens"])
    size = estimate_bytes(s, n_vocab)
    out.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(out.parent, size / 1e9 + 0.5, f"the {shape} GGUF")
    ui.warn(f"SYNTHETIC MODEL: {out.name} has random weights with {shape}'s shapes; its text is GIBBERISH "
            "(use it for speed/scheduling measurements only)")
    tensors = _tensors(s, n_vocab)
    rng = np.random.default_rng(seed)
    biggest = max((r * c // QK8_0 for _, (r, *rest), quant in tensors if quant for c in rest), default=0)
    pool = np.empty((biggest + 4096, BLOCK_BYTES), dtype=np.uint8)
    pool[:, 2:] = np.frombuffer(rng.bytes(pool.shape[0] * 32), dtype=np.uint8).reshape(-1, 32)
    # scale d so that weights d*q (q uniform in [-128, 127]) have a std of about 0.02 / sqrt(n_embd / 4096)
    d = np.float16(0.02 / 74.0 * (4096 / s.n_embd) ** 0.5 * 8)
    scales = (rng.uniform(0.5, 1.0, pool.shape[0]) * float(d)).astype(np.float16)
    pool[:, :2] = scales.view(np.uint8).reshape(-1, 2)
    part = out.with_name(out.name + ".part")
    w = gguf.GGUFWriter(str(part), "qwen3")
    w.add_name(f"xsched-llama synthetic {shape} (random weights, gibberish output)")
    w.add_description("Random weights with exact tensor shapes, for benchmarking only; the text is gibberish.")
    w.add_block_count(s.n_layer)
    w.add_context_length(s.n_ctx_train)
    w.add_embedding_length(s.n_embd)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head_kv)
    w.add_key_length(s.head_dim)
    w.add_value_length(s.head_dim)
    w.add_rope_freq_base(s.rope_theta)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model(str(fields["tokenizer.ggml.model"]))
    w.add_tokenizer_pre(str(fields["tokenizer.ggml.pre"]))
    w.add_token_list(list(fields["tokenizer.ggml.tokens"]))
    w.add_token_types(list(fields["tokenizer.ggml.token_type"]))
    w.add_token_merges(list(fields["tokenizer.ggml.merges"]))
    for key, add in (("eos", w.add_eos_token_id), ("bos", w.add_bos_token_id), ("padding", w.add_pad_token_id)):
        if f"tokenizer.ggml.{key}_token_id" in fields:
            add(int(fields[f"tokenizer.ggml.{key}_token_id"]))
    if "tokenizer.chat_template" in fields:
        w.add_chat_template(str(fields["tokenizer.chat_template"]))
    ones = {n: np.ones(n, dtype=np.float32) for n in {s.n_embd, s.head_dim}}
    for name, shp, quant in tensors:
        if quant:
            rows, cols = shp
            nb = rows * cols // QK8_0
            off = int(rng.integers(0, pool.shape[0] - nb + 1))
            w.add_tensor(name, pool[off:off + nb].reshape(rows, cols // QK8_0 * BLOCK_BYTES),
                         raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, ones[shp[0]])
    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file(progress=ui.is_tty())
        w.close()
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    return out
