"""The tensor types of issue 12 (Q5_1, IQ4_NL, IQ4_XS, Q3_K, Q2_K), end to end.

Kernels (as tests/test_kernels.py): dequantization equals gguf.quants, and
ggml's own to_float (tests/data/quants/ggml_blocks.npz), bit for bit on
every ISA (random block bytes cover every bit pattern of the quants and
scales; the f16 fields get finite values, zeros and subnormals included);
matmuls are within the f32 bound of float64 numpy, each output is
exactly dot_f32 of the dequantized row, and they are batch-invariant; the
`fast` precision has no kernel for these types and must give the exact
path's bits. Models (as tests/test_forward.py): tiny random-weight models of
each type, and a Q4_K_M-like mix of types, match the float64 reference on
every ISA, are batch-invariant, and speculation stays lossless.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as Q
from gguf import quants as gquants
from hypothesis import given, settings, strategies as st

from gguf_factory import _F16_FIELDS
from test_kernels import ISAS, assert_bits_equal, dot_tol, k, reference, sane_f16, use_isa
from test_forward import (alone, assert_close, assert_equal_rows, check_batched, load, random_schedule,
                          run_seq, tokens_for)
from ditto._native import Context, Model
from ditto.engine.decode import Decoder, Request
from ditto.engine.drafters import make_drafter
from ditto.engine.gguf_model import SUPPORTED_TYPES, load_model_file

NEW_TYPES = [Q.Q5_1, Q.IQ4_NL, Q.IQ4_XS, Q.Q3_K, Q.Q2_K]
# Byte offsets of the f16 fields of one block (random bits there would be NaN / inf).
F16_FIELDS = {t: [off for off, _ in _F16_FIELDS[t]] for t in NEW_TYPES}
GGML_BLOCKS = Path(__file__).parent / "data" / "quants" / "ggml_blocks.npz"  # bench/ggml_quant_blocks.py
ids = lambda t: t.name  # noqa: E731

pytestmark = pytest.mark.usefixtures("restore_isa")


def random_raw(qtype, nb, rng):
    """nb blocks of random bytes with sane f16 fields, flat uint8."""
    raw = rng.integers(0, 256, (nb, GGML_QUANT_SIZES[qtype][1]), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        raw[:, off:off + 2] = sane_f16(rng, nb).view(np.uint8).reshape(nb, 2)
    return raw.reshape(-1)


def random_weight(qtype, rows, cols, rng):
    return random_raw(qtype, rows * cols // GGML_QUANT_SIZES[qtype][0], rng).reshape(rows, -1)


def dequantize_all_isas(qtype, raw, n):
    """{isa: ditto's dequantization} for every ISA this CPU has."""
    out = {}
    for isa in ISAS:
        if isa <= k.isa_best():
            k.isa_set(isa)
            out[isa] = k.dequantize(int(qtype), raw, n)
    return out


# ---- layout and dequantization -------------------------------------------------
@pytest.mark.parametrize("qtype", NEW_TYPES, ids=ids)
def test_layout_and_loader_accept_the_type(qtype):
    assert k.type_layout(int(qtype)) == GGML_QUANT_SIZES[qtype]
    assert qtype in SUPPORTED_TYPES


@pytest.mark.parametrize("isa", ISAS, ids=lambda i: k.ISA_NAMES[i])
@pytest.mark.parametrize("qtype", NEW_TYPES, ids=ids)
def test_dequantize_equals_gguf(qtype, isa):
    use_isa(isa)
    rng = np.random.default_rng(200 + int(qtype))
    bs = GGML_QUANT_SIZES[qtype][0]
    for nb in (1, 2, 3, 5, 16, 33):
        raw = random_raw(qtype, nb, rng)
        buf = np.empty(raw.size + 1, np.uint8)  # and at an odd address
        buf[1:] = raw
        want = reference(qtype, raw)
        assert_bits_equal(k.dequantize(int(qtype), raw, nb * bs), want)
        assert_bits_equal(k.dequantize(int(qtype), buf[1:], nb * bs), want)


@pytest.mark.parametrize("qtype", NEW_TYPES, ids=ids)
def test_dequantize_extreme_blocks(qtype):
    """All-zero and all-one quant bits with the largest and smallest f16 scales."""
    bs, ts = GGML_QUANT_SIZES[qtype]
    blocks = []
    for fill in (0x00, 0xFF, 0x55, 0xAA):
        for d in (65504.0, -65504.0, 2.0**-24, 0.0, 1.0):
            b = np.full(ts, fill, np.uint8)
            for off in F16_FIELDS[qtype]:
                b[off:off + 2] = np.array([d], np.float16).view(np.uint8)
            blocks.append(b)
    raw = np.concatenate(blocks)
    want = reference(qtype, raw)
    assert np.all(np.isfinite(want))
    for got in dequantize_all_isas(qtype, raw, len(blocks) * bs).values():
        assert_bits_equal(got, want)


@pytest.mark.parametrize("qtype", NEW_TYPES, ids=ids)
def test_dequantize_equals_ggml(qtype):
    """ggml's own to_float, on blocks from ggml's quantizer and on random blocks."""
    data = np.load(GGML_BLOCKS)
    raw, want = data[f"{qtype.name}_raw"], data[f"{qtype.name}_ggml"]
    assert_bits_equal(reference(qtype, raw), want)  # the two oracles agree
    for got in dequantize_all_isas(qtype, raw, want.size).values():
        assert_bits_equal(got, want)


def test_q5_1_from_gguf_quantizer():
    """Q5_1 blocks as a converter writes them (gguf.quants can quantize Q5_1)."""
    x = np.random.default_rng(3).normal(0, 0.05, (4, 32 * 24)).astype(np.float32)
    raw = np.ascontiguousarray(gquants.quantize(x, Q.Q5_1)).reshape(-1)
    want = reference(Q.Q5_1, raw)
    assert np.abs(want - x.reshape(-1)).max() < 0.02
    for got in dequantize_all_isas(Q.Q5_1, raw, x.size).values():
        assert_bits_equal(got, want)


@settings(max_examples=30, deadline=None)
@given(qtype=st.sampled_from(NEW_TYPES), nb=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_dequantize_property(qtype, nb, seed):
    raw = random_raw(qtype, nb, np.random.default_rng(seed))
    want = reference(qtype, raw)
    for got in dequantize_all_isas(qtype, raw, nb * GGML_QUANT_SIZES[qtype][0]).values():
        assert_bits_equal(got, want)


# ---- matmul --------------------------------------------------------------------------
def cols_for(qtype):
    return 2 * 256 if GGML_QUANT_SIZES[qtype][0] == 256 else 32 * 9


@pytest.mark.parametrize("isa", ISAS, ids=lambda i: k.ISA_NAMES[i])
@pytest.mark.parametrize("qtype", NEW_TYPES, ids=ids)
def test_matmul_against_float64_and_dot(qtype, isa):
    use_isa(isa)
    rng = np.random.default_rng(7 + int(qtype))
    rows, cols = 23, cols_for(qtype)
    raw = random_weight(qtype, rows, cols, rng)
    x = rng.standard_normal((9, cols)).astype(np.float32)
    w = reference(qtype, raw.reshape(-1)).reshape(rows, cols)
    w64, x64 = w.astype(np.float64), x.astype(np.float64)
    for n_tok in (1, 2, 4, 9):  # the few-token (decode) and the batched path
        y = k.matmul_rows(raw, int(qtype), cols, x[:n_tok])
        assert np.all(np.abs(y - x64[:n_tok] @ w64.T) <= dot_tol(x64[:n_tok], w64))
        for t in range(n_tok):
            for r in range(rows):
                assert y[t, r] == np.float32(k.dot_f32(w[r], x[t]))


@pytest.mark.parametrize("isa", ISAS, ids=lambda i: k.ISA_NAMES[i])
@pytest.mark.parametrize("qtype", NEW_TYPES, ids=ids)
def test_matmul_batch_invariance_and_fast_fallback(qtype, isa):
    """A token's outputs do not depend on the batch, the row range or the
    thread count; precision=FAST (no kernel for these types) gives the same bits."""
    use_isa(isa)
    rng = np.random.default_rng(11 + int(qtype))
    rows, cols = 37, cols_for(qtype)
    raw = random_weight(qtype, rows, cols, rng)
    x = rng.standard_normal((13, cols)).astype(np.float32)
    alone_rows = np.stack([k.matmul_rows(raw, int(qtype), cols, x[t:t + 1])[0] for t in range(13)])
    for n in (1, 2, 3, 5, 7, 13):
        assert_bits_equal(k.matmul_rows(raw, int(qtype), cols, x[:n]), alone_rows[:n])
        assert_bits_equal(k.matmul_rows(raw, int(qtype), cols, x[:n], precision=k.PRECISION_FAST), alone_rows[:n])
        other = rng.standard_normal((n, cols)).astype(np.float32)
        j = int(rng.integers(0, n))
        other[j] = x[0]
        assert_bits_equal(k.matmul_rows(raw, int(qtype), cols, other)[j], alone_rows[0])
        for threads in (1, 2):
            for precision in (k.PRECISION_EXACT, k.PRECISION_FAST):
                assert_bits_equal(k.matmul_threaded(raw, int(qtype), cols, x[:n], threads, precision),
                                  alone_rows[:n])
    for split in (1, 4, 5, 36):
        a = k.matmul_rows(raw, int(qtype), cols, x, 0, split)
        b = k.matmul_rows(raw, int(qtype), cols, x, split, rows)
        assert_bits_equal(a[:, :split], alone_rows[:, :split])
        assert_bits_equal(b[:, split:], alone_rows[:, split:])


# ---- tiny models ------------------------------------------------------------------------
ARCHS = ("llama", "qwen2", "gemma3")
CASES = [pytest.param(a, t, id=f"{a}-{t.name}") for a in ARCHS for t in NEW_TYPES]
# A Q4_K_M / Q5_K_M / IQ4_XS-style file: the new types mixed with the old in one model.
MIXED = dict(weight_type=Q.Q4_K, tied_output=False, embd_type=Q.Q3_K, output_type=Q.Q6_K, tensor_types={
    "blk.0.attn_v.weight": Q.Q5_1, "blk.0.ffn_down.weight": Q.Q2_K, "blk.1.attn_q.weight": Q.IQ4_XS,
    "blk.1.ffn_gate.weight": Q.IQ4_NL, "blk.1.ffn_down.weight": Q.Q5_K})


@pytest.mark.parametrize("isa_id", [0, 1, 2], ids=["scalar", "avx2", "avx512"])
@pytest.mark.parametrize("arch,wtype", CASES)
def test_model_matches_reference_on_every_isa(tiny_model_path, isa, isa_id, arch, wtype):
    mf, _, ref = load(tiny_model_path(arch, wtype))
    assert {m.type for m in (mf.tok_embd, mf.layers[0].wq, mf.layers[1].w_down)} == {int(wtype)}
    isa(isa_id)
    model = Model(mf)
    toks = tokens_for(mf, 24, seed=6)
    one_shot = alone(model, toks)
    assert_close(one_shot, ref.logits(toks), f"{arch}/{wtype.name} isa {isa_id}")
    ctx = Context(model, n_seq=1, n_ctx=256, max_batch=256, n_threads=2)
    rows = [run_seq(ctx, toks[:9])] + [run_seq(ctx, toks[i:i + 1]) for i in range(9, 24)]
    assert_equal_rows(np.concatenate(rows), one_shot, f"{arch}/{wtype.name} isa {isa_id} prefill + decode")


@pytest.mark.parametrize("arch", ARCHS)
def test_mixed_types_model(tiny_model_path, arch):
    mf, model, ref = load(tiny_model_path(arch, **MIXED))
    types = {Q(m.type) for layer in mf.layers for m in (layer.wq, layer.wv, layer.w_gate, layer.w_down)}
    assert types == {Q.Q4_K, Q.Q5_1, Q.Q2_K, Q.IQ4_XS, Q.IQ4_NL, Q.Q5_K}
    assert (Q(mf.tok_embd.type), Q(mf.output.type)) == (Q.Q3_K, Q.Q6_K)
    toks = tokens_for(mf, 32, seed=4)
    assert_close(alone(model, toks), ref.logits(toks), f"{arch} mixed types")
    rng = np.random.default_rng(9)
    lengths = [int(x) for x in rng.integers(1, 30, 3)]
    seqs = [tokens_for(mf, n, seed=20 + s) for s, n in enumerate(lengths)]
    check_batched(model, seqs, random_schedule(rng, lengths), want_p=0.8, rng=rng)


@pytest.mark.parametrize("wtype", NEW_TYPES, ids=ids)
def test_fast_precision_model_runs_exact(tiny_model_path, wtype):
    """No fast kernel for these types: precision="fast" gives the exact logits."""
    mf = load_model_file(tiny_model_path("llama", wtype))
    model = Model(mf)
    toks = tokens_for(mf, 16, seed=2)
    logits = [Context(model, n_seq=1, n_ctx=64, max_batch=64, n_threads=2, precision=p)
              .decode(toks, range(len(toks)), [0] * len(toks), [1] * len(toks)) for p in ("exact", "fast")]
    assert_equal_rows(logits[1], logits[0], f"{wtype.name} fast vs exact")


@pytest.mark.parametrize("wtype", [Q.Q3_K, Q.IQ4_XS], ids=ids)
def test_speculation_is_lossless(tiny_model_path, wtype):
    model = Model(load_model_file(tiny_model_path("qwen2", wtype)))
    source = list(range(40, 80))
    outs = []
    for drafter in (None, make_drafter("auto", source_tokens=source)):
        ctx = Context(model, n_seq=1, n_ctx=256, max_batch=64, n_threads=2)
        req = Request(prompt=source + source[:4], max_tokens=40, drafter=drafter)
        Decoder(ctx).run([req])
        outs.append(req.output)
    assert outs[0] == outs[1]
