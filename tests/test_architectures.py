"""The architectures added after llama / qwen2 / gemma3, on tiny random models.

- qwen3 (llama.cpp src/models/qwen3.cpp): NeoX rope, per-head q/k RMSNorm
  before rope, no q/k/v biases in released files (accepted when present).
- phi3 (src/models/phi3.cpp): one fused attn_qkv tensor (q rows, k rows,
  v rows) and one ffn_up tensor of 2 * n_ff rows (gate half first); the
  sliding window phi3 files carry is ignored, as llama.cpp ignores it.
- mistral-style: a `llama` file with `llama.attention.sliding_window`:
  every layer slides, so the ring KV cache can hold it.

Each: the loader's reading, ditto's forward pass against the float64
reference (tests/reference.py, which splits fused tensors from the file
itself), incremental == one-shot and batch invariance bit for bit, and
lossless speculation.
"""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gguf_factory import write_tiny_gguf
from reference import ReferenceModel
from speculation import draw_noisy_requests
from test_forward import (TYPES, alone, assert_close, assert_equal_rows, check_batched, load, random_schedule,
                          run_seq, tokens_for)

from ditto._native import Context
from ditto.engine.decode import Decoder
from ditto.engine.gguf_model import GGUFError, load_model_file

WINDOW = 5
# name -> (architecture, write_tiny_gguf keywords)
VARIANTS = {
    "qwen3": ("qwen3", {}),
    "phi3": ("phi3", {}),
    "mistral": ("llama", {"sliding_window": WINDOW}),
}
CASES = [pytest.param(v, t, id=f"{v}-{t.name}") for v in VARIANTS for t in TYPES]


def variant_path(tiny_model_path, variant, wtype, **kw):
    arch, base = VARIANTS[variant]
    return tiny_model_path(arch, wtype, **base, **kw)


def file_rows(path, name):
    """The raw bytes of a tensor in the file, one row per matrix row."""
    t = next(t for t in GGUFReader(path).tensors if t.name == name)
    return np.asarray(t.data).view(np.uint8).reshape(int(t.shape[1]), -1)


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------

def test_phi3_fused_matrices_are_row_views_of_the_file(tiny_model_path):
    path = tiny_model_path("phi3", Q.Q4_0)
    mf = load_model_file(path)
    hp, layer = mf.hparams, mf.layers[1]
    q_dim, kv_dim = hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
    qkv = file_rows(path, "blk.1.attn_qkv.weight")
    parts = (layer.wq, layer.wk, layer.wv)
    bounds = (0, q_dim, q_dim + kv_dim, q_dim + 2 * kv_dim)
    for m, lo, hi in zip(parts, bounds, bounds[1:]):
        assert m.rows == hi - lo and m.data.base is not None and m.data.flags.c_contiguous
        np.testing.assert_array_equal(m.data, qkv[lo:hi])
    up = file_rows(path, "blk.1.ffn_up.weight")
    np.testing.assert_array_equal(layer.w_gate.data, up[:hp.n_ff])
    np.testing.assert_array_equal(layer.w_up.data, up[hp.n_ff:])


def test_fused_qkv_and_its_bias_load_in_any_architecture(tiny_model_path):
    mf = load_model_file(tiny_model_path("qwen2", Q.Q8_0, fused_qkv=True))
    hp, layer = mf.hparams, mf.layers[0]
    assert [b.shape[0] for b in (layer.bq, layer.bk, layer.bv)] == [hp.n_head * hp.head_dim] + [
        hp.n_head_kv * hp.head_dim] * 2


def test_phi3_ignores_the_sliding_window_its_files_carry(tiny_model_path):
    hp = load_model_file(tiny_model_path("phi3", Q.F32, sliding_window=4)).hparams
    assert hp.sliding_window == 0 and not hp.layer_slides(0)


def test_phi3_longrope_factors_are_refused_by_name(tmp_path):
    path = write_tiny_gguf(tmp_path / "p.gguf", "phi3", Q.F32,
                           extra_tensors={"rope_factors_long.weight": np.ones(8, np.float32)})
    with pytest.raises(GGUFError, match="rope_factors_long.*longrope"):
        load_model_file(path)


def test_phi3_without_its_fused_up_is_refused(tmp_path):
    path = write_tiny_gguf(tmp_path / "p.gguf", "phi3", Q.F32, tensor_shapes={"blk.0.ffn_up.weight": (128, 64)})
    with pytest.raises(GGUFError, match="blk.0.ffn_up.weight"):
        load_model_file(path)


@pytest.mark.parametrize("name", ["attn_q_norm", "attn_k_norm"])
def test_qwen3_needs_its_qk_norms(tmp_path, name):
    path = write_tiny_gguf(tmp_path / "q.gguf", "qwen3", Q.F32, drop_tensors=[f"blk.0.{name}.weight"])
    with pytest.raises(GGUFError, match=f"blk.0.{name}.weight"):
        load_model_file(path)


def test_qwen3_reads_biases_when_present(tiny_model_path):
    assert load_model_file(tiny_model_path("qwen3", Q.F32, qkv_bias=True)).layers[0].bq is not None
    assert load_model_file(tiny_model_path("qwen3", Q.F32)).layers[0].bq is None


# ---------------------------------------------------------------------------
# forward pass
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("variant,wtype", CASES)
def test_logits_match_reference(tiny_model_path, variant, wtype):
    mf, model, ref = load(variant_path(tiny_model_path, variant, wtype))
    toks = tokens_for(mf, 24, seed=2)
    one_shot = alone(model, toks)
    assert_close(one_shot, ref.logits(toks), f"{variant}/{wtype.name}")
    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=256, n_threads=2)
    rows = [run_seq(ctx, toks[:7])] + [run_seq(ctx, toks[i:i + 1]) for i in range(7, 24)]
    assert_equal_rows(np.concatenate(rows), one_shot, f"{variant}/{wtype.name} incremental")


@pytest.mark.parametrize("variant", VARIANTS)
def test_batch_invariance(tiny_model_path, variant):
    mf, model, _ = load(variant_path(tiny_model_path, variant, Q.Q4_1))
    rng = np.random.default_rng(5)
    lengths = [int(x) for x in rng.integers(1, 30, 4)]
    seqs = [tokens_for(mf, n, seed=60 + s) for s, n in enumerate(lengths)]
    check_batched(model, seqs, random_schedule(rng, lengths), want_p=0.8, rng=rng)


@pytest.mark.parametrize("variant", ["qwen3", "phi3"])
def test_heads_wider_than_n_embd_over_n_head(tiny_model_path, variant):
    """Qwen3 0.6B: 16 heads of 128 over n_embd 1024 (key_length set)."""
    mf, model, ref = load(variant_path(tiny_model_path, variant, Q.Q8_0, head_dim=32))
    hp = mf.hparams
    assert hp.head_dim == 32 and hp.n_head * hp.head_dim == 2 * hp.n_embd
    toks = tokens_for(mf, 20, seed=6)
    assert_close(alone(model, toks), ref.logits(toks), f"{variant} head_dim 32")


def test_qwen3_biases_reach_the_forward_pass(tiny_model_path):
    mf, model, ref = load(tiny_model_path("qwen3", Q.F32, qkv_bias=True))
    toks = tokens_for(mf, 16, seed=3)
    assert_close(alone(model, toks), ref.logits(toks), "qwen3 with biases")


def test_mistral_window_is_exercised_and_the_ring_cache_matches(tiny_model_path):
    mf, model, ref = load(variant_path(tiny_model_path, "mistral", Q.Q8_0))
    assert all(mf.hparams.layer_slides(i) for i in range(mf.hparams.n_layer))
    toks = tokens_for(mf, 24, seed=4)
    full = ReferenceModel(load_model_file(tiny_model_path("llama", Q.Q8_0)))  # same weights, no window
    assert np.abs(full.logits(toks)[WINDOW:] - ref.logits(toks)[WINDOW:]).max() > 1e-3
    ring = Context(model, n_seq=1, n_ctx=256, max_batch=8, n_threads=2, kv_ring=WINDOW)
    rows = np.concatenate([run_seq(ring, toks[i:i + 3]) for i in range(0, 24, 3)])
    assert ring.ring_slots == 16 and ring.held_from(0) > 0   # the ring wrapped
    assert_equal_rows(rows, alone(model, toks), "mistral ring cache")


# ---------------------------------------------------------------------------
# lossless speculation
# ---------------------------------------------------------------------------

SPEC = [("qwen3", Q.Q8_0, False), ("phi3", Q.Q4_K, False), ("mistral", Q.Q4_0, WINDOW)]


@pytest.mark.parametrize("variant,wtype,ring", SPEC, ids=[f"{v}-{t.name}" for v, t, _ in SPEC])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_speculative_greedy_equals_plain(tiny_model_path, variant, wtype, ring, data):
    _, model, _ = load(variant_path(tiny_model_path, variant, wtype))
    reqs, truths = draw_noisy_requests(data, model, max_prompt=30, max_new=30, max_draft=16)
    ctx = Context(model, n_seq=len(reqs), n_ctx=256, max_batch=data.draw(st.sampled_from([7, 64])),
                  n_threads=2, kv_ring=ring)
    Decoder(ctx).run(reqs)
    for req, truth in zip(reqs, truths):
        assert req.output == truth


# ---------------------------------------------------------------------------
# phi3's tokenizer: special tokens eat the whitespace after them
# ---------------------------------------------------------------------------

def test_phi3_specials_drop_the_whitespace_after_them(tiny_model_path):
    """llama.cpp marks a Phi-3 model's special tokens RSTRIP (by general.name)
    but <unk>, <s> and <|endoftext|>; these ids equal llama-server's
    /tokenize with parse_special on this file (checked when written)."""
    from ditto.engine.tokenizer import Tokenizer

    tok = Tokenizer.from_gguf(tiny_model_path("phi3", Q.F32))
    sp = tok.token_id
    assert tok.encode_with_specials("a <|end|>\r\n\n b <unk> c") == (
        tok.encode("a ") + [sp("<|end|>")] + tok.encode("b ") + [sp("<unk>")] + tok.encode(" c"))
    assert tok.encode_with_specials("<|endoftext|>  x</s> \t\ny") == (
        [sp("<|endoftext|>")] + tok.encode("  x") + [sp("</s>")] + tok.encode("y"))
    assert sp("<|end|>") not in tok.encode("a <|end|>\n")  # document text: never a special token


def test_only_phi3_names_strip(tiny_model_path):
    from ditto.engine.tokenizer import Tokenizer

    path = tiny_model_path("phi3", Q.F32, metadata={"general.name": "some-other-model"})
    tok = Tokenizer.from_gguf(path)
    assert tok.encode_with_specials("<|end|>\n") == [tok.token_id("<|end|>")] + tok.encode("\n")
