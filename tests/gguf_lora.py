"""make_lora(): a small random LoRA adapter (GGUF, made with the `gguf` package) for a llama-architecture model."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np


def make_lora(model: Path, out: Path, *, rank: int = 4, layers: int = 4, std: float = 0.5, seed: int = 0) -> Path:
    """make_lora() writes to `out` a rank-`rank` adapter on attn_q of the first `layers` blocks of `model`, with
    N(0, std) entries (large enough to change greedy output), and returns `out`."""
    reader = gguf.GGUFReader(model)
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    shapes = {t.name: [int(n) for n in t.shape] for t in reader.tensors}
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(out, arch)
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(rank))
    for i in range(layers):
        name = f"blk.{i}.attn_q.weight"
        n_in, n_out = shapes[name]  # ggml order: ne0 = input, ne1 = output
        # numpy shapes are ggml's reversed: lora_a ne = [n_in, rank], lora_b ne = [rank, n_out]
        w.add_tensor(name + ".lora_a", rng.normal(0, std, (rank, n_in)).astype(np.float32))
        w.add_tensor(name + ".lora_b", rng.normal(0, std, (n_out, rank)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
