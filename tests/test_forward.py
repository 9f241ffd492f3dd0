"""ditto's forward pass against the float64 reference, on tiny random models.

Every architecture x every weight type: logits match tests/reference.py;
incremental decoding equals a one-shot prefill; a token's logits do not
depend on the rest of the batch (bit for bit); thread counts do not change
a bit; sliding-window attention matches too.
"""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference import ReferenceModel

native = pytest.importorskip("ditto._native", exc_type=ModuleNotFoundError)  # a broken build fails
from ditto._native import Context, Model  # noqa: E402
from ditto.engine.gguf_model import load_model_file  # noqa: E402

ARCHS = ("llama", "qwen2", "gemma3")
TYPES = (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q4_K, Q.Q5_K, Q.Q6_K)
CASES = [pytest.param(a, t, id=f"{a}-{t.name}") for a in ARCHS for t in TYPES]

# Tolerance: max |ditto - reference| <= RTOL * max |reference logit| + ATOL.
# ditto computes in float32 (eps 6e-8) with the weights' exact dequantized
# values, so its only error is float32 rounding: measured <= 7e-7 relative on
# these models (2 layers, width 64-256). 1e-4 leaves >100x headroom for other
# ISAs and summation orders, while any real bug (rope pairing or frequency,
# a missing bias, a wrong scale or block offset, an off-by-one in the causal
# or sliding-window mask, GQA head mapping) moves logits by 1e-2 or more of
# their range. Quantization error is not in this comparison: both sides use
# the same quantized weights.
RTOL, ATOL = 1e-4, 1e-6

_models: dict[str, tuple] = {}


def load(path):
    """(ModelFile, ditto Model, ReferenceModel), cached per file."""
    if path not in _models:
        mf = load_model_file(path)
        _models[path] = (mf, Model(mf), ReferenceModel(mf))
    return _models[path]


def tokens_for(mf, n, seed):
    return np.random.default_rng(seed).integers(0, mf.hparams.n_vocab, n).astype(np.int32)


def run_seq(ctx, toks, seq=0, want=None):
    """Appends toks to sequence `seq`; returns the logits of every token (or `want`)."""
    start = ctx.seq_len(seq)
    n = len(toks)
    pos = np.arange(start, start + n, dtype=np.int32)
    return ctx.decode(toks, pos, np.full(n, seq, np.int32), np.ones(n, np.uint8) if want is None else want)


def alone(model, toks, n_threads=2):
    """One-shot logits of a sequence evaluated by itself in a fresh context."""
    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=256, n_threads=n_threads)
    return run_seq(ctx, toks)


def assert_close(got, ref, what):
    assert got.shape == ref.shape, (what, got.shape, ref.shape)
    assert np.all(np.isfinite(got)), f"{what}: non-finite logits"
    diff = np.abs(got.astype(np.float64) - ref)
    tol = RTOL * np.abs(ref).max() + ATOL
    if diff.max() > tol:
        t, v = np.unravel_index(diff.argmax(), diff.shape)
        rows = np.flatnonzero(diff.max(axis=1) > tol)
        pytest.fail(f"{what}: max |diff| {diff.max():.3g} > tol {tol:.3g} at token {t} vocab {v} "
                    f"(ditto {got[t, v]:.6g}, reference {ref[t, v]:.6g}); tokens over tol: {rows.tolist()}")


def assert_equal_rows(got, want, what):
    if not np.array_equal(got, want):
        bad = np.flatnonzero(np.any(got != want, axis=1))
        d = np.abs(got - want).max()
        pytest.fail(f"{what}: not bit-identical at rows {bad.tolist()} (max |diff| {d:.3g})")


# ---------------------------------------------------------------------------
# against the reference
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch,wtype", CASES)
def test_logits_match_reference(tiny_model_path, arch, wtype):
    mf, model, ref = load(tiny_model_path(arch, wtype))
    toks = tokens_for(mf, 40, seed=1)
    assert_close(alone(model, toks), ref.logits(toks), f"{arch}/{wtype.name} one-shot 40 tokens")


@pytest.mark.parametrize("arch,wtype", [
    pytest.param("llama", Q.Q4_K, id="llama-Q4_K"),
    pytest.param("qwen2", Q.Q8_0, id="qwen2-Q8_0"),
    pytest.param("llama", Q.Q6_K, id="llama-Q6_K"),
])
def test_untied_output_and_mixed_embedding(tiny_model_path, arch, wtype):
    """output.weight separate from token_embd, of another type (real GGUFs mix types)."""
    path = tiny_model_path(arch, wtype, tied_output=False, embd_type=Q.Q8_0, output_type=Q.Q6_K, seed=3)
    mf, model, ref = load(path)
    assert mf.output.name != mf.tok_embd.name
    toks = tokens_for(mf, 24, seed=2)
    assert_close(alone(model, toks), ref.logits(toks), f"{arch}/{wtype.name} untied")


def test_reference_greedy_matches_teacher_forcing(tiny_model_path):
    """Sanity of the oracle itself: its KV-cache path equals its one-shot path."""
    mf, _, ref = load(tiny_model_path("qwen2", Q.F32))
    prompt = tokens_for(mf, 9, seed=5).tolist()
    cont = ref.greedy(prompt, 12)
    full = ref.logits(prompt + cont)
    assert full[len(prompt) - 1:-1].argmax(axis=1).tolist() == cont


# ---------------------------------------------------------------------------
# incremental decoding and batch invariance (bit for bit)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch,wtype", CASES)
def test_prefill_then_decode_equals_one_shot(tiny_model_path, arch, wtype):
    mf, model, ref = load(tiny_model_path(arch, wtype))
    toks = tokens_for(mf, 40, seed=1)
    one_shot = alone(model, toks)
    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=256, n_threads=2)
    rows = [run_seq(ctx, toks[:13])]
    rows += [run_seq(ctx, toks[i:i + 1]) for i in range(13, 40)]
    assert_equal_rows(np.concatenate(rows), one_shot, f"{arch}/{wtype.name} prefill 13 + 27 single steps")
    # uneven chunks, and a max_batch that forces the wrapper to split a batch
    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=7, n_threads=2)
    rows, i = [], 0
    for c in (5, 1, 9, 3, 1, 21):
        rows.append(run_seq(ctx, toks[i:i + c]))
        i += c
    assert_equal_rows(np.concatenate(rows), one_shot, f"{arch}/{wtype.name} chunks 5,1,9,3,1,21 max_batch 7")


def random_schedule(rng, lengths, max_chunk=8):
    """Batches mixing prefill chunks and single tokens of several sequences,
    interleaved in the batch order (each sequence's own order kept).
    Returns a list of batches, each a list of (seq, index in seq)."""
    done = [0] * len(lengths)
    batches = []
    while any(d < n for d, n in zip(done, lengths)):
        items = []
        for s in rng.permutation(len(lengths)):
            left = lengths[s] - done[s]
            if left and rng.random() < 0.7:
                c = int(min(left, 1 if rng.random() < 0.4 else rng.integers(1, max_chunk + 1)))
                items.append([(int(s), done[s] + k) for k in range(c)])
                done[s] += c
        # interleave: repeatedly take the next token of a random non-empty chunk
        batch = []
        while items:
            j = int(rng.integers(len(items)))
            batch.append(items[j].pop(0))
            if not items[j]:
                items.pop(j)
        if batch:
            batches.append(batch)
    return batches


def check_batched(model, seqs, batches, want_p, rng, n_threads=2, alone_logits=None):
    """Runs the schedule; every wanted row equals the sequence evaluated alone."""
    ctx = Context(model, n_seq=len(seqs), n_ctx=256, max_batch=64, n_threads=n_threads)
    if alone_logits is None:
        alone_logits = [alone(model, s) for s in seqs]
    for b, batch in enumerate(batches):
        sid = np.array([s for s, _ in batch], np.int32)
        idx = np.array([i for _, i in batch], np.int32)
        toks = np.array([seqs[s][i] for s, i in batch], np.int32)
        want = (rng.random(len(batch)) < want_p).astype(np.uint8)
        out = ctx.decode(toks, idx, sid, want)
        expect = np.stack([alone_logits[s][i] for s, i in batch])[want.astype(bool)]
        if not np.array_equal(out, expect):
            bad = [batch[k] for k in np.flatnonzero(want)[np.any(out != expect, axis=1)]]
            pytest.fail(f"batch {b} of {len(batches)} ({len(batch)} tokens): (seq, pos) {bad} differ "
                        f"from the sequence alone, max |diff| {np.abs(out - expect).max():.3g}")
    for s, toks in enumerate(seqs):
        assert ctx.seq_len(s) == len(toks)


@pytest.mark.parametrize("arch,wtype", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_batch_invariance(tiny_model_path, arch, wtype, seed):
    mf, model, _ = load(tiny_model_path(arch, wtype))
    rng = np.random.default_rng(100 + seed)
    lengths = [int(x) for x in rng.integers(1, 40, 4)]
    seqs = [tokens_for(mf, n, seed=10 * seed + s) for s, n in enumerate(lengths)]
    check_batched(model, seqs, random_schedule(rng, lengths), want_p=0.8, rng=rng)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), n_seq=st.integers(1, 5), max_chunk=st.sampled_from([1, 3, 16]))
def test_batch_invariance_property(tiny_model_path, seed, n_seq, max_chunk):
    mf, model, _ = load(tiny_model_path("qwen2", Q.Q4_K))
    rng = np.random.default_rng(seed)
    lengths = [int(x) for x in rng.integers(1, 30, n_seq)]
    seqs = [rng.integers(0, mf.hparams.n_vocab, n).astype(np.int32) for n in lengths]
    check_batched(model, seqs, random_schedule(rng, lengths, max_chunk), want_p=0.6, rng=rng)


@pytest.mark.parametrize("arch,wtype", CASES)
def test_thread_count_does_not_change_logits(tiny_model_path, arch, wtype):
    mf, model, _ = load(tiny_model_path(arch, wtype))
    rng = np.random.default_rng(7)
    lengths = [17, 3, 29]
    seqs = [tokens_for(mf, n, seed=20 + s) for s, n in enumerate(lengths)]
    batches = random_schedule(rng, lengths)
    one = [alone(model, s, n_threads=1) for s in seqs]
    two = [alone(model, s, n_threads=2) for s in seqs]
    for s in range(len(seqs)):
        assert_equal_rows(two[s], one[s], f"{arch}/{wtype.name} seq {s}: 2 threads vs 1")
    # the mixed batches on 1 and on 2 (and 3: more threads than cores) threads
    for nt in (1, 2, 3):
        check_batched(model, seqs, batches, want_p=1.0, rng=np.random.default_rng(8), n_threads=nt,
                      alone_logits=one)


@pytest.mark.parametrize("arch,wtype", [pytest.param("llama", Q.Q4_1, id="llama-Q4_1"),
                                        pytest.param("qwen2", Q.Q5_K, id="qwen2-Q5_K")])
def test_rollback_copy_and_save_load_replay(tiny_model_path, arch, wtype):
    """truncate / copy / save+load then new tokens: logits equal the new sequence alone."""
    mf, model, _ = load(tiny_model_path(arch, wtype))
    a, b = tokens_for(mf, 30, seed=31), tokens_for(mf, 30, seed=32)
    mixed = np.concatenate([a[:12], b[12:]])          # a's first 12, then b's
    expect = alone(model, mixed)
    ctx = Context(model, n_seq=3, n_ctx=256, max_batch=64, n_threads=2)
    run_seq(ctx, a, seq=0)
    ctx.copy(0, 1, 12)
    assert ctx.seq_len(1) == 12
    assert_equal_rows(run_seq(ctx, mixed[12:], seq=1), expect[12:], "copy(12) then new tokens")
    ctx.truncate(0, 12)
    assert ctx.seq_len(0) == 12
    assert_equal_rows(run_seq(ctx, mixed[12:20], seq=0), expect[12:20], "truncate(12) then new tokens")
    state = ctx.save(0)
    ctx.load(2, state)
    assert ctx.seq_len(2) == 20
    assert_equal_rows(run_seq(ctx, mixed[20:], seq=2), expect[20:], "save/load then new tokens")


# ---------------------------------------------------------------------------
# sliding window
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("arch,wtype", [pytest.param(a, t, id=f"{a}-{t.name}")
                                        for a in ARCHS for t in (Q.F32, Q.Q4_K)])
@pytest.mark.parametrize("window", [1, 5])
def test_sliding_window(tiny_model_path, arch, wtype, window):
    path = tiny_model_path(arch, wtype, sliding_window=window)
    mf, model, ref = load(path)
    if mf.hparams.sliding_window != window:
        pytest.skip(f"loader does not read the sliding window (got {mf.hparams.sliding_window})")
    toks = tokens_for(mf, 24, seed=4)
    expect = ref.logits(toks)
    full = ReferenceModel(load_model_file(tiny_model_path(arch, wtype)))   # same weights, no window
    assert np.abs(full.logits(toks)[window:] - expect[window:]).max() > 1e-3, "window not exercised"
    one_shot = alone(model, toks)
    assert_close(one_shot, expect, f"{arch}/{wtype.name} window {window}")
    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=256, n_threads=2)
    rows = [run_seq(ctx, toks[:7])] + [run_seq(ctx, toks[i:i + 1]) for i in range(7, 24)]
    assert_equal_rows(np.concatenate(rows), one_shot, f"{arch}/{wtype.name} window {window} incremental")


# ---------------------------------------------------------------------------
# every instruction-set path (scalar fallback included) against the reference
# ---------------------------------------------------------------------------



@pytest.mark.parametrize("isa_id", [0, 1, 2], ids=["scalar", "avx2", "avx512"])
@pytest.mark.parametrize("arch,wtype", CASES)
def test_every_isa_matches_reference_and_is_batch_invariant(tiny_model_path, isa, isa_id, arch, wtype):
    mf, _, ref = load(tiny_model_path(arch, wtype))
    isa(isa_id)
    model = Model(mf)                      # fresh: nothing prepared under another ISA
    toks = tokens_for(mf, 24, seed=6)
    one_shot = alone(model, toks)
    assert_close(one_shot, ref.logits(toks), f"{arch}/{wtype.name} isa {isa_id}")
    ctx = Context(model, n_seq=2, n_ctx=256, max_batch=256, n_threads=2)
    run_seq(ctx, toks[:5], seq=1)          # another sequence shares the batches below
    rows = []
    for a, b in ((0, 9), (9, 10), (10, 24)):
        n = b - a
        out = ctx.decode(np.concatenate([toks[a:b], toks[5:6]]),
                         np.concatenate([np.arange(a, b), [ctx.seq_len(1)]]),
                         np.concatenate([np.zeros(n), [1]]), np.concatenate([np.ones(n), [0]]))
        rows.append(out)
    assert_equal_rows(np.concatenate(rows), one_shot, f"{arch}/{wtype.name} isa {isa_id} chunked + shared batch")
