"""model synth: exact Qwen3 shapes, Q8_0 weights, the real vocabulary; the tiny shape loads in llama-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from xsched_llama import synth


@pytest.fixture(scope="module")
def tiny(llama_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "tiny.gguf"
    return synth.synth("tiny", out, llama_source / "models" / "ggml-vocab-qwen2.gguf")


def test_tiny_has_qwen3_layout(tiny: Path) -> None:
    import gguf
    r = gguf.GGUFReader(str(tiny))
    assert r.fields["general.architecture"].contents() == "qwen3"
    assert len(r.fields["tokenizer.ggml.tokens"].contents()) == 151936
    t = {x.name: x for x in r.tensors}
    s = synth.SHAPES["tiny"]
    assert len(t) == 3 + 11 * s.n_layer
    assert t["blk.0.attn_q_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert t["blk.1.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    assert list(t["blk.1.ffn_down.weight"].shape) == [s.n_ff, s.n_embd]
    assert list(t["blk.0.attn_k.weight"].shape) == [s.n_embd, s.n_head_kv * s.head_dim]
    assert list(t["token_embd.weight"].shape) == [s.n_embd, 151936]


def test_qwen3_8b_size() -> None:
    gib = synth.estimate_bytes(synth.SHAPES["qwen3-8b"]) / 2**30
    assert 8.0 < gib < 8.2


@pytest.mark.slow
def test_tiny_loads_in_the_patched_server(tiny: Path, patched_cpu_server: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(patched_cpu_server, ["-m", tiny, "-c", "256", "-t", "2"])
    r = srv.post("/completion", {"prompt": "Hello", "n_predict": 4})
    assert r.status_code == 200 and r.json()["tokens_predicted"] == 4
