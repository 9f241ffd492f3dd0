"""precision=q16 and precision=fast (native/quant.h): activations per block
of 32 quantized to 16 bits split in two int8 halves (q16) or to int8 (fast),
integer block sums on weights repacked in 16-row tiles, one f32 fma per block
and row. Both precisions run every test: the scalar reference is checked
against a numpy model of the definition, every SIMD kernel against the
scalar reference bit for bit."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from test_kernels import F16_FIELDS, ISAS, LAYOUT, assert_bits_equal, k, make_weight, reference, use_isa

pytestmark = pytest.mark.usefixtures("restore_isa")

Q16_TYPES = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q8_0, Q.Q4_K, Q.Q6_K]
K_TYPES = (Q.Q4_K, Q.Q6_K)
# bits per weight of the repacked layout (quant.h): the GGUF's, except Q4_K's
# 6-bit scales and mins stored as bytes
BITS_PER_WEIGHT = {Q.Q4_0: 4.5, Q.Q4_1: 5.0, Q.Q5_0: 5.5, Q.Q8_0: 8.5, Q.Q4_K: 4.625, Q.Q6_K: 6.5625}
# each precision on the tiles with the largest activation code it uses, and its types
# (Q6_K runs q16 under fast: matmul.c)
QMAX = {k.PRECISION_Q16: 32639, k.PRECISION_FAST: 127}
TYPES_OF = {k.PRECISION_Q16: Q16_TYPES, k.PRECISION_FAST: [t for t in Q16_TYPES if t != Q.Q6_K]}
NAME_OF = {k.PRECISION_Q16: "q16", k.PRECISION_FAST: "fast"}
precisions = pytest.mark.parametrize("P", list(QMAX), ids=lambda p: NAME_OF[p])
precisions_and_types = pytest.mark.parametrize(
    "P,qtype", [(p, t) for p in QMAX for t in TYPES_OF[p]], ids=lambda v: v.name if isinstance(v, Q) else NAME_OF[v])


def cols_of(qtype, nb):
    """About nb blocks of 32, whole GGUF blocks (the K types: super-blocks of 256)."""
    return 256 * -(-nb // 8) if qtype in K_TYPES else 32 * nb


# ---- a numpy model of the definition ---------------------------------------------
def prep(x, qmax):
    """Per token and block: xq (int64), dx, sx (float32), S (int64)."""
    xb = x.astype(np.float32).reshape(x.shape[0], -1, 32)
    amax = np.fmax.reduce(np.abs(xb), axis=2)   # a NaN does not count (C's fmaxf)
    dx = (amax / np.float32(qmax)).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.rint(xb / dx[..., None]).astype(np.float32)
    r = np.where(np.isnan(r), np.float32(-qmax), r)
    xq = np.where(dx[..., None] == 0, 0, np.clip(r, -qmax, qmax)).astype(np.int64)
    s = xq.sum(axis=2)
    sx = (dx * s.astype(np.float32)).astype(np.float32)
    return xq, dx, sx, s


def split(xq):
    xl = ((xq & 0xFF) ^ 0x80) - 0x80
    xh = (xq - xl) >> 8
    return xh, xl


def f16(b):
    """float32 of the f16 whose two bytes end the last axis."""
    return b.copy().view(np.float16)[..., 0].astype(np.float32)


def nibbles(qs):
    """Q4-style bytes (..., 16): low nibbles are values 0..15, high 16..31."""
    return np.concatenate([qs & 0xF, qs >> 4], axis=-1).astype(np.int64)


def q4_k_scales(sc):
    """ggml's get_scale_min_k4 for the 8 sub-blocks: (..., 8) scales and mins."""
    lo, hi = sc[..., 0:4].astype(np.int64), sc[..., 8:12].astype(np.int64)
    mlo = sc[..., 4:8].astype(np.int64)
    scales = np.concatenate([lo & 63, (hi & 0xF) | ((lo >> 6) << 4)], axis=-1)
    mins = np.concatenate([mlo & 63, (hi >> 4) | ((mlo >> 6) << 4)], axis=-1)
    return scales, mins


def codes_scales(qtype, raw, rows, cols):
    """Unsigned codes (rows, nb, 32), offset c, scales dw (rows, nb, halves):
    one per block, or Q6_K's two per 16 values, and the mins mw (rows, nb)
    or None; all float32, as the GGUF dequantization uses them."""
    nb = cols // 32
    if qtype in K_TYPES:
        sb = raw.reshape(rows, cols // 256, -1)
        if qtype == Q.Q4_K:
            d, dmin = f16(sb[..., 0:2]), f16(sb[..., 2:4])
            sc, m = q4_k_scales(sb[..., 4:16])
            qs = sb[..., 16:].reshape(rows, -1, 4, 32)
            u = np.stack([qs & 0xF, qs >> 4], axis=3).reshape(rows, nb, 32).astype(np.int64)
            dw = (d[..., None] * sc.astype(np.float32)).reshape(rows, nb, 1)
            mw = (-dmin[..., None] * m.astype(np.float32)).reshape(rows, nb)
            return u, 0, dw, mw
        # Q6_K: per half of 128 values, 32-value groups k = 0..3 (ggml's dequantize_row_q6_K)
        ql = sb[..., 0:128].reshape(rows, -1, 2, 2, 32).astype(np.int64)   # (half, k % 2, l)
        qh = sb[..., 128:192].reshape(rows, -1, 2, 1, 32).astype(np.int64)
        k4 = np.arange(4).reshape(4, 1)
        low = np.concatenate([ql & 0xF, ql >> 4], axis=3)                  # index k: [k%2 low, k%2 high]
        u = low | (((qh >> (2 * k4)) & 3) << 4)
        sc = sb[..., 192:208].view(np.int8).astype(np.float32)
        dw = (f16(sb[..., 208:210])[..., None] * sc).reshape(rows, nb, 2)
        return u.reshape(rows, nb, 32), 32, dw, None
    blk = raw.reshape(rows, nb, -1)
    d = f16(blk[..., 0:2])[..., None]
    if qtype == Q.Q8_0:
        return blk[..., 2:].view(np.int8).astype(np.int64) + 128, 128, d, None
    if qtype == Q.Q5_0:
        qh = blk[..., 2:6].copy().view(np.uint32).astype(np.int64)
        return nibbles(blk[..., 6:]) | (((qh >> np.arange(32)) & 1) << 4), 16, d, None
    if qtype == Q.Q4_1:
        return nibbles(blk[..., 4:]), 0, d, f16(blk[..., 2:4])
    return nibbles(blk[..., 2:]), 8, d, None


def numpy_tiles(P, qtype, raw, rows, cols, x):
    """The definition of precision P: q16's sum of two int8 halves, 256 * u.xh
    + u.xl, is u.xq exactly, so both precisions are the same model here."""
    u, c, dw, mw = codes_scales(qtype, raw, rows, cols)
    xq, dx, sx, _ = prep(x, QMAX[P])
    xh, xl = split(xq)
    assert xh.min() >= -128 and xh.max() <= 127 and xl.min() >= -128 and xl.max() <= 127
    halves = dw.shape[2]                  # each with its own integer sum
    uh = u.reshape(rows, -1, halves, 32 // halves)
    y = np.zeros((x.shape[0], rows), np.float32)
    for t in range(x.shape[0]):
        xqt = xq[t].reshape(-1, halves, 32 // halves)
        isum = np.einsum("rbhv,bhv->rbh", uh, xqt) - c * xqt.sum(axis=2)
        assert np.abs(isum).max() < 2**31
        acc = np.zeros(rows, np.float32)
        for b in range(cols // 32):   # in order, one fma each (float64 of an f32 product is exact)
            for h in range(halves):
                acc = fma32(dw[:, b, h] * dx[t, b], isum[:, b, h].astype(np.float32), acc)
            if mw is not None:
                acc = fma32(mw[:, b], np.full(rows, sx[t, b]), acc)
        y[t] = acc
    return y


def fma32(a, b, c):
    """f32 fma, rounded once: the product of two f32 is exact in float64; the
    sum is taken to float64 rounded to odd (TwoSum gives what rounding to
    nearest dropped; an inexact even result steps one ulp towards it), which
    then rounds to f32 exactly as the exact sum would (53 >= 24 + 2 bits)."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf / NaN inputs (hostile tests) propagate
        p = a.astype(np.float64) * b.astype(np.float64)
        c64 = c.astype(np.float64)
        s = p + c64
        back = s - c64
        dropped = (p - back) + (c64 - (s - back))
        odd = (s.view(np.int64) & 1) == 1
        step = (dropped != 0) & ~odd & np.isfinite(s)
        s = np.where(step, np.nextafter(s, np.where(dropped > 0, np.inf, -np.inf)), s)
        return s.astype(np.float32)


def hostile_x(rng, n_tok, cols, qmax):
    x = rng.standard_normal((n_tok, cols)).astype(np.float32)
    x[0, :32] = 0.0                       # an all-zero block
    if n_tok > 1:
        x[1, 40 % cols] = 3e4             # one huge value
    if n_tok > 2:                         # dx = 1/1024 exactly: ties at .5 in x / dx
        x[2, :32] = (np.arange(32) - 16.5) / 1024
        x[2, 0] = qmax / 1024
        x[2, 32:64] = 0.5                 # every value at amax (empty slice if cols == 32)
    if n_tok > 3:
        x[3, :32] = np.float32(1e-30) * rng.standard_normal(32).astype(np.float32)  # subnormal scale
    return x


@precisions_and_types
@pytest.mark.parametrize("nb,rows", [(1, 16), (2, 13), (9, 33), (32, 5), (47, 17), (70, 40)])
def test_scalar_reference_is_the_definition(P, qtype, nb, rows):
    rng = np.random.default_rng(100 * nb + rows + int(qtype))
    cols = cols_of(qtype, nb)
    nb = cols // 32
    raw = make_weight(qtype, rows, cols, rng)
    x = hostile_x(rng, 5, cols, QMAX[P])
    k.isa_set(k.ISA_SCALAR)
    y = k.matmul_rows(raw, int(qtype), cols, x, precision=P)
    assert_bits_equal(y, numpy_tiles(P, qtype, raw.reshape(-1), rows, cols, x))
    # and close to the float64 product: rounding loses up to amax / (2 qmax) per value
    w64 = reference(qtype, raw.reshape(-1)).reshape(rows, cols).astype(np.float64)
    x64 = x.astype(np.float64)
    amax = np.abs(x64).reshape(5, nb, 32).max(axis=2)
    tol = (amax @ np.abs(w64).reshape(rows, nb, 32).sum(axis=2).T / (2.0 * QMAX[P]) * 1.01
           + 1e-5 * np.abs(x64) @ np.abs(w64).T)
    assert np.all(np.abs(y - x64 @ w64.T) <= tol + 1e-30)


@precisions_and_types
@pytest.mark.parametrize("isa", ISAS, ids=lambda i: k.ISA_NAMES[i])
def test_kernels_equal_the_scalar_reference(P, qtype, isa):
    rng = np.random.default_rng(7 + int(qtype))
    rows, cols = 45, cols_of(qtype, 19)
    raw = make_weight(qtype, rows, cols, rng)
    x = hostile_x(rng, 17, cols, QMAX[P])
    k.isa_set(k.ISA_SCALAR)
    ref = k.matmul_rows(raw, int(qtype), cols, x, precision=P)
    use_isa(isa)
    if isa == k.ISA_AVX2:   # no AVX2 kernel on the tiles: the exact path
        ref = k.matmul_rows(raw, int(qtype), cols, x)
    for n in range(1, 18):   # token tiles of 8 and every remainder
        assert_bits_equal(k.matmul_rows(raw, int(qtype), cols, x[:n], precision=P), ref[:n])
        assert_bits_equal(k.matmul_threaded(raw, int(qtype), cols, x[:n], 2, P), ref[:n])
    for begin, end in ((0, 1), (3, 19), (15, 17), (16, 32), (20, 45), (44, 45)):
        y = k.matmul_rows(raw, int(qtype), cols, x[:5], begin, end, precision=P)
        assert_bits_equal(y[:, begin:end], ref[:5, begin:end])
        assert not y[:, :begin].any() and not y[:, end:].any()   # nothing outside the range written
    for threads in (1, 3):
        for n in (1, 2, 4, 9, 17):
            assert_bits_equal(k.matmul_threaded(raw, int(qtype), cols, x[:n], threads, P), ref[:n])


@precisions
@pytest.mark.parametrize("isa", ISAS, ids=lambda i: k.ISA_NAMES[i])
def test_group_on_prepared_tokens_equals_separate_matmuls(P, isa):
    """model.c quantizes a group's tokens as it writes them (dt_act_prep) and
    runs dt_matmul_group_prepared: the same bits as each matrix alone."""
    use_isa(isa)
    rng = np.random.default_rng(11)
    for qtypes in ([Q.Q4_1], [Q.Q4_0, Q.Q8_0, Q.Q4_0], [Q.Q4_K, Q.Q4_K], [Q.Q4_1, Q.Q4_1, Q.Q4_1, Q.Q4_1]):
        cols = cols_of(qtypes[0], 40)   # 2 groups of 16 blocks and a remainder in the preps
        weights = [(make_weight(t, rows, cols, rng), int(t)) for t, rows in zip(qtypes, (48, 17, 33, 16))]
        x = hostile_x(rng, 19, cols, QMAX[P])
        offsets = {Q.Q4_0: 8, Q.Q8_0: 128, Q.Q4_1: 0, Q.Q4_K: 0}   # fast's code offset c per type
        prepared = isa != k.ISA_AVX2 and (P == k.PRECISION_Q16 or len({offsets[t] for t in qtypes}) == 1)
        for n in (1, 4, 19):
            alone = [k.matmul_threaded(raw, t, cols, x[:n], 2, P) for raw, t in weights]
            for got, want in zip(k.matmul_group(weights, cols, x[:n], P), alone):
                assert_bits_equal(got, want)
            if not prepared:   # AVX2 has no tile kernels; Q4_0 and Q8_0 differ in fast's code offset
                with pytest.raises(ValueError, match="no one integer"):
                    k.matmul_group(weights, cols, x[:n], P, prepared=True)
                continue
            for got, want in zip(k.matmul_group(weights, cols, x[:n], P, prepared=True, n_threads=3), alone):
                assert_bits_equal(got, want)
    raw = make_weight(Q.Q4_0, 16, 64, rng)
    with pytest.raises(ValueError, match="no one integer"):   # the exact path takes floats
        k.matmul_group([(raw, int(Q.Q4_0))], 64, np.ascontiguousarray(x[:2, :64]), k.PRECISION_EXACT, prepared=True)


@precisions
@pytest.mark.parametrize("isa", ISAS, ids=lambda i: k.ISA_NAMES[i])
def test_batch_invariance(P, isa):
    use_isa(isa)
    rng = np.random.default_rng(5)
    rows = 37
    for qtype in TYPES_OF[P]:
        cols = cols_of(qtype, 11)
        raw = make_weight(qtype, rows, cols, rng)
        x = rng.standard_normal((13, cols)).astype(np.float32)
        alone = np.stack([k.matmul_rows(raw, int(qtype), cols, x[t:t + 1], precision=P)[0] for t in range(13)])
        for n in (2, 5, 9, 13):
            other = rng.standard_normal((n, cols)).astype(np.float32)
            j = int(rng.integers(0, n))
            other[j] = x[3]
            assert_bits_equal(k.matmul_threaded(raw, int(qtype), cols, other, 2, P)[j], alone[3])
            assert_bits_equal(k.matmul_rows(raw, int(qtype), cols, x[:n], precision=P), alone[:n])


@pytest.mark.parametrize("qtype", Q16_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("rows", [1, 16, 17, 50])
def test_repack_round_trips(qtype, rows):
    rng = np.random.default_rng(rows + int(qtype))
    cols = cols_of(qtype, 7)
    raw = make_weight(qtype, rows, cols, rng)
    if qtype in K_TYPES:   # every bit pattern, f16 fields included, comes back
        raw = rng.integers(0, 256, raw.shape, dtype=np.uint8)
    packed = k.q16_repack(raw, int(qtype), cols)
    assert packed.ctypes.data % 64 == 0
    back = k.q16_unpack(packed, int(qtype), rows, cols)
    assert np.array_equal(back, raw)
    # bytes per weight: the layout's (the padding of the last tile, whole lines)
    tiles = (rows + 15) // 16
    assert packed.nbytes == tiles * (-(-16 * cols * BITS_PER_WEIGHT[qtype] // 8 // 64) * 64)


@pytest.mark.parametrize("qtype", Q16_TYPES, ids=lambda t: t.name)
def test_codes_and_scales_are_the_gguf_weights(qtype):
    """The numpy model's reading of a GGUF block is gguf.quants' dequantization."""
    rng = np.random.default_rng(3 + int(qtype))
    rows, cols = 3, cols_of(qtype, 16)
    raw = make_weight(qtype, rows, cols, rng).reshape(-1)
    u, c, dw, mw = codes_scales(qtype, raw, rows, cols)
    halves = dw.shape[2]
    w = (u - c).reshape(rows, -1, halves, 32 // halves) * dw[..., None].astype(np.float64)
    w = w.reshape(rows, -1, 32) + (0 if mw is None else mw[..., None])
    want = reference(qtype, raw).reshape(rows, cols)
    assert np.allclose(w.reshape(rows, cols), want, rtol=0, atol=1e-6 * np.abs(want).max())


@precisions_and_types
@pytest.mark.parametrize("isa", [k.ISA_SCALAR, k.ISA_AVX512], ids=lambda i: k.ISA_NAMES[i])   # the tile kernels
def test_extreme_codes_and_scales(P, qtype, isa):
    """Every code at its largest or smallest, scales at their extremes,
    activations at amax: the integer sums' widest range, still exact."""
    use_isa(isa)
    rows, cols = 18, cols_of(qtype, 8)
    raw = np.zeros(make_weight(qtype, rows, cols, np.random.default_rng(0)).shape, np.uint8)
    raw[1::2] = 0xFF
    if qtype == Q.Q8_0:   # codes q + 128: 0 and 255
        raw[0::2], raw[1::2] = 0x80, 0x7F
    bs, ts = LAYOUT[qtype]
    blocks = raw.reshape(-1, ts)
    for off in F16_FIELDS[qtype]:
        blocks[:, off:off + 2] = np.array([1.0], np.float16).view(np.uint8)
    if qtype == Q.Q6_K:
        blocks[0::2, 192:208] = 0x80   # scale -128 with code 0: (0 - 32) * -128
    x = np.full((3, cols), 2.0, np.float32)
    x[1] = -x[1]
    x[2, 1::2] = -2.0
    want = numpy_tiles(P, qtype, raw.reshape(-1), rows, cols, x)
    assert_bits_equal(k.matmul_rows(raw, int(qtype), cols, x, precision=P), want)


@precisions
def test_hostile_blocks_do_not_crash(P):
    rng = np.random.default_rng(9)
    rows, cols = 20, 64
    q8 = np.zeros((rows, 2, 34), np.uint8)
    q8[:, :, 2:] = 0x80                                        # every code -128
    q8[:, :, 0:2] = np.array([1.0], np.float16).view(np.uint8)
    q8[3, 0, 0:2] = np.array([np.nan], np.float16).view(np.uint8)
    q8[4, 1, 0:2] = np.array([np.inf], np.float16).view(np.uint8)
    q8 = q8.reshape(rows, -1)
    x = rng.standard_normal((3, cols)).astype(np.float32)
    x[1, 7] = np.inf
    x[2, 9] = np.nan
    results = []
    for isa in ISAS:
        if isa <= k.isa_best():
            k.isa_set(isa)
            results.append(k.matmul_rows(q8, int(Q.Q8_0), cols, x, precision=P))
    want = numpy_tiles(P, Q.Q8_0, q8.reshape(-1), rows, cols, x)
    assert_bits_equal(results[0], want)
    assert np.isnan(results[0][0, 3]) and np.isfinite(results[0][0, 0])
    if len(results) > 2:
        assert_bits_equal(results[2], results[0])


def test_only_file_mapped_weights_have_their_pages_dropped(tiny_model_path):
    from ditto._native import on_file_mapping
    from ditto.engine.gguf_model import load_model_file

    mf = load_model_file(tiny_model_path("llama", Q.Q4_1))
    assert on_file_mapping(mf.layers[0].wq.data) and on_file_mapping(mf.output.data)
    assert not on_file_mapping(np.array(mf.layers[0].wq.data))
    assert not on_file_mapping(np.zeros(3))


@pytest.mark.parametrize("precision,tol,wtype", [("q16", 2e-3, Q.Q8_0), ("q16", 2e-3, Q.Q5_0), ("q16", 2e-3, Q.Q6_K),
                                                 ("fast", 5e-2, Q.Q8_0), ("fast", 5e-2, Q.Q5_0)],
                         ids=lambda v: v.name if isinstance(v, Q) else str(v))
def test_tiled_context_on_a_tied_model_embeds_from_the_repacked_head(tiny_model_path, precision, tol, wtype):
    """The tied embedding's mapped pages are dropped under q16 and fast and
    its rows come from the head's repacked copy: logits stay close to exact
    ones."""
    from ditto._native import Context, Model
    from ditto.engine.gguf_model import load_model_file

    toks = list(range(3, 20))
    exact = Context(Model(load_model_file(tiny_model_path("llama", wtype))), n_seq=1, n_ctx=64, max_batch=64,
                    n_threads=2, precision="exact")
    want = exact.decode(toks, range(len(toks)), [0] * len(toks))
    mf = load_model_file(tiny_model_path("llama", wtype))
    assert mf.tied_output
    ctx = Context(Model(mf), n_seq=1, n_ctx=64, max_batch=64, n_threads=2, precision=precision)
    got = ctx.decode(toks, range(len(toks)), [0] * len(toks))
    assert not np.array_equal(got, want)   # the integer path ran (so the tiles were prepared)
    assert np.abs(got - want).max() <= tol * np.abs(want).max()
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))


@pytest.mark.parametrize("P,qtype", [(p, t) for p in QMAX for t in [Q.F32, Q.Q5_1, Q.Q5_K]],
                         ids=lambda v: v.name if isinstance(v, Q) else NAME_OF[v])
def test_other_types_run_exact(P, qtype):
    rng = np.random.default_rng(int(qtype))
    rows, cols = 19, 512
    raw = make_weight(qtype, rows, cols, rng)
    x = rng.standard_normal((5, cols)).astype(np.float32)
    want = k.matmul_rows(raw, int(qtype), cols, x)
    assert_bits_equal(k.matmul_rows(raw, int(qtype), cols, x, precision=P), want)
    assert_bits_equal(k.matmul_threaded(raw, int(qtype), cols, x, 2, P), want)


@pytest.mark.slow
def test_real_gemma3_under_q16_matches_the_float64_reference(gemma_model_path):
    """Every matrix of Gemma 3 270M Q4_K_M runs q16 (Q5_0, Q4_K, Q6_K, Q8_0):
    greedy continuations and teacher-forced argmax stay the float64 pass's."""
    from ditto._native import Model
    from ditto.engine.gguf_model import load_model_file
    from test_fidelity import argmax_agreement, greedy_agreement

    model = Model(load_model_file(gemma_model_path))
    reference = json.loads((Path(__file__).parent / "data" / "reference" / "gemma3_270m_q4_k_m.json").read_text())
    matches, msg = greedy_agreement(model, reference, precision="q16")
    assert matches >= 9, msg
    agree, total, msg = argmax_agreement(model, reference, precision="q16")
    assert agree >= 0.999 * total, msg


@pytest.mark.parametrize("isa", ISAS, ids=lambda i: k.ISA_NAMES[i])
def test_q6_k_runs_q16_under_fast(isa):
    """fast has no Q6_K kernel (two scales per block): such a matrix runs
    q16 on its repacked copy, not exact on the mapped original."""
    use_isa(isa)
    rng = np.random.default_rng(61)
    rows, cols = 37, cols_of(Q.Q6_K, 16)
    raw = make_weight(Q.Q6_K, rows, cols, rng)
    x = rng.standard_normal((11, cols)).astype(np.float32)
    want = k.matmul_rows(raw, int(Q.Q6_K), cols, x, precision=k.PRECISION_Q16)
    if isa != k.ISA_AVX2:   # (AVX2 has neither kernel: both run exact)
        assert not np.array_equal(want, k.matmul_rows(raw, int(Q.Q6_K), cols, x))
    assert_bits_equal(k.matmul_rows(raw, int(Q.Q6_K), cols, x, precision=k.PRECISION_FAST), want)
    assert_bits_equal(k.matmul_threaded(raw, int(Q.Q6_K), cols, x, 2, k.PRECISION_FAST), want)

