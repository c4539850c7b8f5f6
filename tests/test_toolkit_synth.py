"""model synth: exact Qwen3 shapes, Q8_0 weights, the real vocabulary; the tiny and the 0.6B shapes load in llama-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from xsched_llama import synth

# The published configs (Hugging Face Qwen/Qwen3-*/config.json): num_hidden_layers, hidden_size,
# intermediate_size, num_attention_heads, num_key_value_heads, head_dim, tie_word_embeddings, and the
# model cards' parameter counts (total, non-embedding) in billions, as rounded there.
PUBLISHED = {
    "qwen3-0.6b": ((28, 1024, 3072, 16, 8, 128, True), 0.6, 0.44),
    "qwen3-1.7b": ((28, 2048, 6144, 16, 8, 128, True), 1.7, 1.4),
    "qwen3-4b": ((36, 2560, 9728, 32, 8, 128, True), 4.0, 3.6),
    "qwen3-8b": ((36, 4096, 12288, 32, 8, 128, False), 8.2, 6.95),
}


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


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_shapes(name: str) -> None:
    config, total_b, non_embedding_b = PUBLISHED[name]
    s = synth.SHAPES[name]
    assert (s.n_layer, s.n_embd, s.n_ff, s.n_head, s.n_head_kv, s.head_dim, s.tied) == config
    assert (s.n_ctx_train, s.rope_theta) == (40960, 1e6)
    total, non_embedding = synth.parameters(s)
    # the model cards round to the digits shown
    digits = len(str(non_embedding_b).split(".")[1])
    assert round(non_embedding / 1e9, digits) == non_embedding_b
    assert round(total / 1e9, 1) == total_b
    names = [t[0] for t in synth._tensors(s, 151936)]
    assert ("output.weight" in names) is (not s.tied)       # tied: llama.cpp reuses token_embd for the output
    assert len(names) == (2 if s.tied else 3) + 11 * s.n_layer


def test_qwen3_8b_size() -> None:
    gib = synth.estimate_bytes(synth.SHAPES["qwen3-8b"]) / 2**30
    assert 8.0 < gib < 8.2
    assert 0.55 < synth.estimate_bytes(synth.SHAPES["qwen3-0.6b"]) / 2**30 < 0.62


def test_unknown_shape_is_a_usage_error(tmp_path: Path) -> None:
    from xsched_llama.errors import UsageError
    with pytest.raises(UsageError, match="unknown shape 'qwen3-9b': use qwen3-0.6b, qwen3-1.7b"):
        synth.synth_cached("qwen3-9b", tmp_path)
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
def test_tiny_loads_in_the_patched_server(tiny: Path, patched_cpu_server: Path, start_server) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(patched_cpu_server, ["-m", tiny, "-c", "256", "-t", "2"])
    r = srv.post("/completion", {"prompt": "Hello", "n_predict": 4})
    assert r.status_code == 200 and r.json()["tokens_predicted"] == 4


@pytest.mark.slow
def test_qwen3_0_6b_loads_in_the_cpu_server(default_commit_only: None, llama_source: Path, patched_cpu_server: Path,
                                             tmp_path_factory: pytest.TempPathFactory, start_server) -> None:  # type: ignore[no-untyped-def]
    """The tied 0.6B shape (no output.weight: llama.cpp must fall back to token_embd) loads and generates."""
    out = synth.synth("qwen3-0.6b", tmp_path_factory.mktemp("synth06") / "m.gguf",
                      llama_source / "models" / "ggml-vocab-qwen2.gguf")
    try:
        srv = start_server(patched_cpu_server, ["-m", out, "-c", "256", "-t", "2"])
        r = srv.post("/completion", {"prompt": "Hello", "n_predict": 3})
        assert r.status_code == 200 and r.json()["tokens_predicted"] == 3
        meta = srv.get("/v1/models").json()["data"][0]["meta"]
        s = synth.SHAPES["qwen3-0.6b"]
        # llama.cpp counts the weights it loaded: token_embd once (no output.weight), as the model card's 0.60 B
        assert meta["n_params"] == synth.parameters(s)[0] == 596049920
        assert (meta["n_embd"], meta["n_vocab"], meta["n_ctx_train"]) == (s.n_embd, 151936, s.n_ctx_train)
    finally:
        out.unlink(missing_ok=True)
