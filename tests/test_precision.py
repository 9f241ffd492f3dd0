"""precision="fast" (int8 activations), precision="q16" (16-bit activations
on repacked weights), kv_type="f16" (a half-precision KV cache) and
kv_type="bf16" (bf16 dot products in attention): all still batch-invariant,
so speculation stays lossless; fast and q16 are close to the exact path, f16
matches the float64 reference whose keys and values are rounded to half as
the cache stores them, and bf16 stays close to the plain reference."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ditto._native import Context, Model
from ditto.engine.decode import Decoder, Request
from ditto.engine.drafters import make_drafter
from ditto.engine.gguf_model import load_model_file
from reference import ReferenceModel
from speculation import draw_noisy_requests

TYPES = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q8_0, Q.Q4_K, Q.Q6_K]


@pytest.mark.parametrize("precision", ["fast", "q16"])
@pytest.mark.parametrize("wtype", TYPES, ids=[t.name for t in TYPES])
def test_integer_precisions_are_batch_invariant_and_close_to_exact(tiny_model_path, wtype, precision):
    model = Model(load_model_file(tiny_model_path("llama", wtype)))
    toks = list(range(2, 30))
    alone = Context(model, n_seq=2, n_ctx=64, max_batch=64, n_threads=2, precision=precision)
    solo = alone.decode(toks, range(len(toks)), [0] * len(toks), [1] * len(toks))
    mixed = Context(model, n_seq=2, n_ctx=64, max_batch=64, n_threads=2, precision=precision)
    mixed.decode([7, 8, 9], [0, 1, 2], [1, 1, 1])
    rows = []
    for t, tok in enumerate(toks):   # one at a time, interleaved with another sequence
        rows.append(mixed.decode([tok, 5], [t, 3 + t], [0, 1], [1, 0])[0])
    assert np.array_equal(np.stack(rows), solo)
    exact = Context(model, n_seq=1, n_ctx=64, max_batch=64, n_threads=2, precision="exact")
    ref = exact.decode(toks, range(len(toks)), [0] * len(toks), [1] * len(toks))
    scale = np.abs(ref).max()
    assert np.abs(solo - ref).max() <= (0.05 if precision == "fast" else 0.002) * scale


@pytest.mark.parametrize("precision,kv_type", [("fast", "f32"), ("exact", "f16"), ("fast", "f16"), ("q16", "f32"),
                                              ("q16", "f16"), ("fast", "bf16"), ("q16", "bf16")])
def test_speculation_is_lossless(tiny_model_path, precision, kv_type):
    model = Model(load_model_file(tiny_model_path("llama", Q.Q4_1)))
    source = list(range(40, 80))
    outs = []
    for drafter in (None, make_drafter("auto", source_tokens=source)):
        ctx = Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=2, precision=precision, kv_type=kv_type)
        req = Request(prompt=source + source[:4], max_tokens=40, drafter=drafter)
        Decoder(ctx).run([req])
        outs.append(req.output)
    assert outs[0] == outs[1]


def test_unknown_precision_or_kv_type_is_refused(tiny_model_path):
    model = Model(load_model_file(tiny_model_path("llama", Q.Q4_1)))
    with pytest.raises(ValueError, match="precision"):
        Context(model, precision="turbo")
    with pytest.raises(ValueError, match="kv_type must be one of f32, f16"):
        Context(model, kv_type="q8_0")


# ---- kv_type="f16" ------------------------------------------------------------------

# As tests/test_forward.py: max |ditto - reference| <= RTOL * max |reference| + ATOL.
RTOL, ATOL = 1e-4, 1e-6
# bf16 KV against the f32-cache reference, relative to the largest logit:
# measured 1.1e-3 (llama), 2.3e-3 (qwen2), 3.8e-3 (gemma3) on these models.
BF16_RTOL = 2e-2


def logits_all(ctx, toks, seq=0):
    start = ctx.seq_len(seq)
    n = len(toks)
    return ctx.decode(toks, np.arange(start, start + n), np.full(n, seq), np.ones(n))


@pytest.mark.parametrize("isa_id", [0, 1, 2], ids=["scalar", "avx2", "avx512"])
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
@pytest.mark.parametrize("kv_type", ["f16", "bf16"])
def test_half_kv_matches_its_reference_and_is_batch_invariant(tiny_model_path, isa, isa_id, arch, kv_type):
    """f16 against the reference with keys and values rounded to half (as
    tight as f32's); bf16 (which rounds q and p too) against the plain one."""
    mf = load_model_file(tiny_model_path(arch, Q.Q8_0))
    isa(isa_id)
    model = Model(mf)
    toks = np.random.default_rng(3).integers(0, mf.hparams.n_vocab, 40).astype(np.int32)
    ctx = Context(model, n_seq=2, n_ctx=128, max_batch=64, n_threads=2, kv_type=kv_type)
    one_shot = logits_all(ctx, toks)
    ref = ReferenceModel(mf, kv_dtype=np.float16 if kv_type == "f16" else np.float32).logits(toks)
    err = np.abs(one_shot - ref).max()
    tol = RTOL * np.abs(ref).max() + ATOL if kv_type == "f16" else BF16_RTOL * np.abs(ref).max()
    assert err <= tol, f"{kv_type} KV vs its reference: {err:.3g} > {tol:.3g}"
    f32 = logits_all(Context(model, n_seq=1, n_ctx=128, max_batch=64, n_threads=2), toks)
    assert not np.array_equal(one_shot, f32), f"the {kv_type} cache gave the f32 cache's bits: not in use?"
    # one token at a time, sharing each pass with another sequence
    ctx.truncate(0, 0)
    logits_all(ctx, toks[:7], seq=1)
    rows = [ctx.decode([t, 5], [i, ctx.seq_len(1)], [0, 1], [1, 0])[0] for i, t in enumerate(toks)]
    assert np.array_equal(np.stack(rows), one_shot)


@pytest.mark.parametrize("arch,wtype", [("llama", Q.Q4_1), ("qwen2", Q.Q8_0), ("gemma3", Q.Q8_0)])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_f16_and_bf16_kv_speculative_greedy_equals_plain(tiny_model_path, arch, wtype, data):
    model = Model(load_model_file(tiny_model_path(arch, wtype)))
    kv_type = data.draw(st.sampled_from(["f16", "bf16"]), label="kv_type")
    reqs, truths = draw_noisy_requests(data, model, max_prompt=40, max_new=40, max_draft=24, kv_type=kv_type)
    ctx = Context(model, n_seq=len(reqs), n_ctx=256, max_batch=data.draw(st.sampled_from([7, 64])), n_threads=2,
                  kv_type=kv_type)
    Decoder(ctx).run(reqs)
    assert [r.output for r in reqs] == truths
