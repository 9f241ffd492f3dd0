"""Gemma 3: the loader's reading of its layers and ditto's forward pass with
sliding and global layers mixed, on tiny random models against the float64
reference (tests/reference.py, written from llama.cpp's src/models/gemma3.cpp).

What is gemma3-specific: embeddings times sqrt(n_embd), per-head q/k
RMSNorm, RMSNorm on each branch's output, GELU(tanh)-gated FFN, and layers
that slide (every layer but each 6th by default) with their own rope base
(10000 unless the file says) while the others attend to everything with
rope.freq_base.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from gguf_factory import write_tiny_gguf
from reference import ReferenceModel
from test_fidelity import argmax_agreement, greedy_agreement
from test_forward import alone, assert_close, assert_equal_rows, check_batched, random_schedule, run_seq
from test_speculative import assert_rewrite_lossless

from ditto._native import Context, Model
from ditto.engine.gguf_model import GGUFError, load_model_file

WINDOW = 4
# pattern 2: layer 0 slides, layer 1 is global, layer 2 slides
MIXED = dict(n_layer=3, sliding_window=WINDOW, metadata={"gemma3.attention.sliding_window_pattern": 2})


def test_every_sixth_layer_is_global_and_sliding_layers_use_base_10000(tmp_path):
    mf = load_model_file(write_tiny_gguf(tmp_path / "g.gguf", "gemma3", Q.F32, n_layer=13, sliding_window=8))
    hp = mf.hparams
    assert [hp.layer_slides(i) for i in range(13)] == [i % 6 != 5 for i in range(13)]
    assert (hp.rope_base, hp.rope_base_swa) == (1e6, 10000.0)


def test_rope_base_of_sliding_layers_comes_from_the_file_when_set(tmp_path):
    path = write_tiny_gguf(tmp_path / "g.gguf", "gemma3", Q.F32, sliding_window=8,
                           metadata={"gemma3.rope.freq_base_swa": 5000.0})
    assert load_model_file(path).hparams.rope_base_swa == 5000.0


def test_no_window_means_every_layer_is_global(tmp_path):
    hp = load_model_file(write_tiny_gguf(tmp_path / "g.gguf", "gemma3", Q.F32)).hparams
    assert not any(hp.layer_slides(i) for i in range(hp.n_layer))


def test_final_logit_softcapping_is_refused_by_name(tmp_path):
    path = write_tiny_gguf(tmp_path / "g.gguf", "gemma3", Q.F32, metadata={"gemma3.final_logit_softcapping": 30.0})
    with pytest.raises(GGUFError, match="softcapping"):
        load_model_file(path)


@pytest.mark.parametrize("name", ["attn_q_norm", "attn_k_norm", "post_attention_norm", "post_ffw_norm"])
def test_a_missing_gemma3_norm_is_refused_by_name(tmp_path, name):
    path = write_tiny_gguf(tmp_path / "g.gguf", "gemma3", Q.F32, drop_tensors=[f"blk.1.{name}.weight"])
    with pytest.raises(GGUFError, match=f"blk.1.{name}.weight"):
        load_model_file(path)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """(ModelFile, Model, ReferenceModel) per weight type, layers slide / global / slide."""
    cache = {}

    def get(wtype):
        if wtype not in cache:
            path = write_tiny_gguf(tmp_path_factory.mktemp("gemma3") / "m.gguf", "gemma3", wtype, **MIXED)
            mf = load_model_file(path)
            assert [mf.hparams.layer_slides(i) for i in range(3)] == [True, False, True]
            cache[wtype] = (mf, Model(mf), ReferenceModel(mf))
        return cache[wtype]
    return get


def toks_for(mf, n, seed):
    return np.random.default_rng(seed).integers(0, mf.hparams.n_vocab, n).astype(np.int32)


@pytest.mark.parametrize("wtype", [Q.F32, Q.Q5_0, Q.Q8_0, Q.Q4_K], ids=lambda t: t.name)
@pytest.mark.parametrize("isa_id", [0, 1, 2], ids=["scalar", "avx2", "avx512"])
def test_mixed_sliding_and_global_layers_match_reference(mixed, isa, isa_id, wtype):
    mf, _, ref = mixed(wtype)
    isa(isa_id)
    model = Model(mf)
    toks = toks_for(mf, 24, seed=1)
    one_shot = alone(model, toks)
    assert_close(one_shot, ref.logits(toks), f"gemma3/{wtype.name} isa {isa_id}")
    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=256, n_threads=2)
    rows = [run_seq(ctx, toks[:6])] + [run_seq(ctx, toks[i:i + 1]) for i in range(6, 24)]
    assert_equal_rows(np.concatenate(rows), one_shot, f"gemma3/{wtype.name} isa {isa_id} incremental")


def test_mixed_layers_are_batch_invariant(mixed):
    mf, model, _ = mixed(Q.Q5_0)
    rng = np.random.default_rng(3)
    lengths = [int(x) for x in rng.integers(1, 30, 4)]
    seqs = [toks_for(mf, n, seed=40 + s) for s, n in enumerate(lengths)]
    check_batched(model, seqs, random_schedule(rng, lengths), want_p=0.8, rng=rng)


def test_the_comparison_sees_the_window_and_the_rope_base_of_sliding_layers(mixed):
    """The rule checked above is sensitive to both per-layer properties: the
    reference with every layer global, or with one rope base, differs."""
    mf, _, ref = mixed(Q.F32)
    toks = toks_for(mf, 24, seed=1)
    want = ref.logits(toks)
    for hp in (replace(mf.hparams, swa_layers=(False,) * 3), replace(mf.hparams, rope_base_swa=0.0)):
        other = ReferenceModel(replace(mf, hparams=hp)).logits(toks)
        assert np.abs(other - want).max() > 1e-3 * np.abs(want).max()


def test_ring_cache_in_the_sliding_layers_matches_reference(mixed):
    """The ring holds the sliding layers' window, the global layer every
    position: logits far past the ring still equal the reference's
    (tests/test_ring.py checks them bit for bit against the full cache)."""
    mf, model, ref = mixed(Q.F32)
    toks = toks_for(mf, 60, seed=2)
    ctx = Context(model, n_seq=1, n_ctx=64, max_batch=8, n_threads=1, kv_ring=1)
    assert ctx.ring_slots == 16
    rows = [run_seq(ctx, toks[i:i + 5]) for i in range(0, 60, 5)]
    assert ctx.held_from(0) == 60 - 16
    assert_close(np.concatenate(rows), ref.logits(toks), "gemma3 ring")


# ---------------------------------------------------------------------------
# the real model: Gemma 3 270M (base), Q5_0 / Q4_K / Q6_K / Q8_0
# ---------------------------------------------------------------------------

REFERENCE = Path(__file__).resolve().parent / "data" / "reference" / "gemma3_270m_q4_k_m.json"


@pytest.fixture(scope="module")
def gemma_path(gemma_model_path):
    return gemma_model_path


@pytest.fixture(scope="module")
def gemma_model(gemma_path):
    return Model(load_model_file(gemma_path))


@pytest.mark.slow
def test_real_gemma3_greedy_continuations_match_reference(gemma_model):
    """>= 9 of 10 real-code prompts: ditto's greedy 64 tokens equal the
    float64 reference's (bench/reference_data.py made the data)."""
    matches, msg = greedy_agreement(gemma_model, json.loads(REFERENCE.read_text()))
    assert matches >= 9, msg


@pytest.mark.slow
def test_real_gemma3_teacher_forced_argmax_matches_reference(gemma_model):
    agree, total, msg = argmax_agreement(gemma_model, json.loads(REFERENCE.read_text()))
    assert agree >= 0.999 * total, msg


@pytest.mark.slow
def test_real_gemma3_speculative_rewrite_equals_plain(gemma_path):
    assert_rewrite_lossless(gemma_path)


@pytest.mark.slow
def test_real_gemma3_ring_speculative_rewrite_equals_full_cache_plain(gemma_path):
    """Sliding layers on the ring (window 512), global layers whole: a
    speculative rewrite whose prompt is longer than the ring (so every
    verify pass overwrites ring slots, and rejected drafts are undone by
    checkpoint, restore and replay) gives plain greedy decoding's tokens
    on the full cache."""
    from ditto.engine.llm import LLM
    from ditto.engine.rewrite import RewriteJob, rewrite

    source = "".join(f"def area_{i}(width, height):\n    return width * height + {i}\n\n\n" for i in range(40))
    outputs, stats = {}, {}
    for ring, speculate in ((False, False), (True, True)):
        llm = LLM(gemma_path, n_ctx=2048, kv_ring=ring)
        job = RewriteJob(source=source, instruction="Rename the parameter width to w.", language="python")
        done = rewrite(llm, job, speculate=speculate, max_tokens=200)
        outputs[ring], stats[ring] = done.request.output, done.request.stats
        assert len(done.request.prompt) > 600
        if ring:
            assert llm.ctx.ring_slots == 576 and llm.ctx.held_from(0) > 0    # the ring wrapped
    assert outputs[True] == outputs[False]
    assert stats[True].accepted > 0
