"""The attention kernel (native/attention*.c) against a float64 numpy attention.

Every ISA this CPU has: outputs match the float64 reference for short and
long ranges (around the 16-position key blocks), several group sizes and
head dims, sliding windows, and tiles of several tokens; a token's output
is bit-identical whatever tile it is computed in and whatever the cache
holds past its position; the ISAs agree with the scalar reference. An f16
cache: every ISA's f32 -> f16 conversion gives numpy's bits, and each kernel
reading f16 keys and values gives exactly its bits on the widened f32
values (so everything above holds for f16 too). The chunked softmax
(attention.h): splitting a tile into any chunk ranges, or seeing it from a
ring's origin, gives the tile's bits; chunks whose maxima differ widely
still match the reference. A bf16 cache (bf16 dot products): every ISA's
conversion rounds to nearest even as the instruction does, every ISA
matches a float64 model of the definition (operands rounded to bf16) and
the scalar reference, AVX512_BF16's instructions give the bits of their
fma steps, and every invariance above holds. Then the blocked key cache
through the model:
copying a prefix that ends inside a block, and save / load, continue
bit-exactly, in f32 and f16; and a token decoded alone at a long context
(split over threads by chunk) gets the bits it gets inside a prefill tile.
"""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

K = pytest.importorskip("ditto._kernels")
from ditto._native import Context, Model  # noqa: E402
from ditto.engine.gguf_model import load_model_file  # noqa: E402

ISAS = [i for i in (K.ISA_SCALAR, K.ISA_AVX2, K.ISA_AVX512) if i <= K.isa_best()]
ISA_PARAMS = [pytest.param(i, id=K.ISA_NAMES[i]) for i in ISAS]

# Tolerance: max |kernel - reference| <= TOL * max |v|. The output is a
# convex combination of value rows; its error is float32 rounding of the
# scores, of exp (1-2 ulp) and of the sums over up to 4k positions: measured
# <= 7e-7 of max |v| on these inputs (scores of a few units). 1e-5 leaves
# >10x headroom, while a wrong mask at a block edge, scale, head mapping or a
# dropped block moves the output by 1e-3 of max |v| or more. Very sharp
# softmaxes (scores ~ +-200) amplify the float32 rounding of the scores
# themselves: measured <= 1e-5 there, checked against TOL_SHARP.
TOL = 1e-5
TOL_SHARP = 5e-5
# bf16 tiles against bf16_model (the same bf16 operands, float64 sums) or
# one ISA against another: a p whose exp or score differs in the last bit
# can round to the neighbouring bf16, 2^-8 of that p, so a dominant one
# moves the output by up to ~2^-9 of max |v|: measured <= 4e-4 (one case of
# 162), the rest <= 1e-4. Against the float64 attention itself bf16
# operands move the output by ~5e-3 of max |v|.
TOL_BF16 = 2e-3


# Every test here may switch the instruction set: conftest's fixture restores it.
pytestmark = pytest.mark.usefixtures("restore_isa")


def reference(q, k, v, pos0, window=0, scale=None):
    """float64 attention of q (n_tok, group, hd) over rows of k, v."""
    n_tok, group, hd = q.shape
    scale = 1.0 / np.sqrt(hd) if scale is None else scale
    out = np.empty(q.shape, np.float64)
    for t in range(n_tok):
        pos = pos0 + t
        first = pos - window + 1 if window > 0 and pos >= window else 0
        kk = k[first:pos + 1].astype(np.float64)
        vv = v[first:pos + 1].astype(np.float64)
        s = q[t].astype(np.float64) @ kk.T * np.float64(np.float32(scale))
        p = np.exp(s - s.max(axis=1, keepdims=True))
        out[t] = (p @ vv) / p.sum(axis=1, keepdims=True)
    return out


def bf16(x):
    """float32 x rounded to bfloat16, to nearest even (finite, normal x)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)


def bf16_model(q, k, v, pos0, window=0, scale=None):
    """The bf16 tile's definition (attention.h) in float64: q, k, v and p
    rounded to bf16, exact products, float64 sums."""
    n_tok, group, hd = q.shape
    scale = 1.0 / np.sqrt(hd) if scale is None else scale
    qb, kb, vb = bf16(q).astype(np.float64), bf16(k).astype(np.float64), bf16(v).astype(np.float64)
    out = np.empty(q.shape, np.float64)
    for t in range(n_tok):
        pos = pos0 + t
        first = pos - window + 1 if window > 0 and pos >= window else 0
        s = (qb[t] @ kb[first:pos + 1].T).astype(np.float32) * np.float32(scale)
        # p per chunk of the row (each relative to its own max), then the combine
        o, l, m_all = np.zeros((group, hd)), np.zeros((group, 1)), s.max(axis=1, keepdims=True)
        for c0 in range((first // C) * C, pos + 1, C):
            lo, hi = max(first, c0), min(pos, c0 + C - 1)
            sc = s[:, lo - first:hi - first + 1]
            m = sc.max(axis=1, keepdims=True)
            p = bf16(np.exp((sc - m).astype(np.float64)).astype(np.float32)).astype(np.float64)
            w = np.exp(m.astype(np.float64) - m_all)
            o += w * (p @ vb[lo:hi + 1])
            l += w * p.sum(axis=1, keepdims=True)
        out[t] = o / l
    return out


def inputs(n_pos, n_tok, group, hd, seed, sharp=1.0):
    rng = np.random.default_rng(seed)
    q = (rng.standard_normal((n_tok, group, hd)) * sharp).astype(np.float32)
    k = rng.standard_normal((n_pos, hd)).astype(np.float32)
    v = rng.standard_normal((n_pos, hd)).astype(np.float32)
    return q, k, v


def check(got, ref, v, what, rel=TOL):
    assert got.shape == ref.shape
    assert np.all(np.isfinite(got)), what
    err = np.abs(got.astype(np.float64) - ref).max()
    tol = rel * np.abs(v).max()
    assert err <= tol, f"{what}: max |diff| {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("n", [1, 15, 16, 17, 1000, 4097])
@pytest.mark.parametrize("group,hd", [(1, 64), (3, 64), (4, 128), (3, 80), (2, 6)])
def test_matches_float64_reference(isa, n, group, hd):
    K.isa_set(isa)
    # The last token attends to n positions; a tile of 3 tokens when there is room.
    n_tok = min(3, n)
    q, k, v = inputs(n + 5, n_tok, group, hd, seed=n * 7 + group + hd, sharp=2.0)
    pos0 = n - n_tok
    got = K.attention(q, k, v, pos0)
    check(got, reference(q, k, v, pos0), v, f"n={n} group={group} hd={hd}")


@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("n_tok,pos0,window", [(24, 0, 0), (8, 100, 0), (24, 37, 0), (5, 40, 16),
                                               (24, 50, 7), (12, 3, 5), (30, 200, 33)])
def test_tiles_and_sliding_windows(isa, n_tok, pos0, window):
    K.isa_set(isa)
    q, k, v = inputs(pos0 + n_tok + 20, n_tok, 3, 64, seed=pos0 + n_tok)
    got = K.attention(q, k, v, pos0, window=window)
    check(got, reference(q, k, v, pos0, window), v, f"tile {n_tok} at {pos0}, window {window}")


@pytest.mark.parametrize("isa", ISA_PARAMS)
def test_sharp_and_flat_softmax(isa):
    K.isa_set(isa)
    for sharp in (0.0, 0.01, 30.0):
        q, k, v = inputs(300, 4, 3, 64, seed=11, sharp=sharp)
        check(K.attention(q, k, v, 296), reference(q, k, v, 296), v, f"sharp={sharp}",
              TOL_SHARP if sharp > 2 else TOL)


KV_DTYPES = [pytest.param(np.float32, id="f32"), pytest.param(np.float16, id="f16")]
# (the dtype given, a bf16 cache made from it): every kv_type the kernel reads
KV_DOTS = [pytest.param(np.float32, False, id="f32"), pytest.param(np.float16, False, id="f16"),
           pytest.param(np.float32, True, id="bf16")]


@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("kv,bf16", KV_DOTS)
@pytest.mark.parametrize("group,hd,window", [(3, 64, 0), (1, 128, 0), (3, 80, 0), (3, 64, 20), (2, 6, 0)])
def test_token_result_is_independent_of_its_tile_and_of_later_positions(isa, kv, bf16, group, hd, window):
    K.isa_set(isa)
    n_tok, pos0 = 24, 57
    q, k, v = inputs(pos0 + n_tok + 40, n_tok, group, hd, seed=3)
    k, v = k.astype(kv), v.astype(kv)
    tile = K.attention(q, k, v, pos0, window=window, bf16=bf16)
    for t in range(n_tok):
        pos = pos0 + t
        # Alone, with whatever lies past its position replaced by junk.
        kj, vj = k.copy(), v.copy()
        with np.errstate(over="ignore"):              # 1e30 is inf in f16
            kj[pos + 1:] = 1e30 if t % 2 else np.nan
            vj[pos + 1:] = -1e30 if t % 2 else np.inf
        alone = K.attention(q[t:t + 1], kj[:pos + 1 + t % 17], vj[:pos + 1 + t % 17], pos, window=window, bf16=bf16)
        assert np.array_equal(alone[0], tile[t]), f"token {t}: tile and alone differ"
    # Sub-tiles starting anywhere give the same bits as the full tile.
    for a, b in [(0, 5), (5, 13), (13, 24), (7, 8)]:
        sub = K.attention(q[a:b], k, v, pos0 + a, window=window, bf16=bf16)
        assert np.array_equal(sub, tile[a:b]), f"sub-tile {a}:{b} differs"


@pytest.mark.parametrize("isa", [i for i in ISA_PARAMS if i.values[0] != K.ISA_SCALAR])
@pytest.mark.parametrize("kv,bf16", KV_DOTS)
@pytest.mark.parametrize("n,group,hd", [(1, 3, 64), (33, 3, 64), (1000, 3, 64), (517, 8, 128), (77, 2, 80)])
def test_isa_matches_scalar(isa, kv, bf16, n, group, hd):
    q, k, v = inputs(n, min(n, 10), group, hd, seed=n + hd)
    k, v = k.astype(kv), v.astype(kv)
    pos0 = n - min(n, 10)
    K.isa_set(K.ISA_SCALAR)
    want = K.attention(q, k, v, pos0, bf16=bf16)
    K.isa_set(isa)
    got = K.attention(q, k, v, pos0, bf16=bf16)
    err = np.abs(got - want).max()
    assert err <= (TOL_BF16 if bf16 else TOL) * np.abs(v).max(), f"{K.ISA_NAMES[isa]} vs scalar: {err:.3g}"


# ---- the chunked softmax ------------------------------------------------------------

C = K.ATTN_CHUNK


def split_ranges(c0, c1, cuts):
    """[c0, c1] cut before each chunk in cuts."""
    bounds = [c0] + [c for c in cuts if c0 < c <= c1] + [c1 + 1]
    return [(a, b - 1) for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("kv,bf16", KV_DOTS)
@pytest.mark.parametrize("n_tok,pos0,window", [(1, 2 * C + 3, 0), (1, 3 * C - 1, 0), (1, 3 * C, 0), (8, 2 * C - 4, 0),
                                               (3, C - 2, 0), (24, 3 * C - 10, 0), (2, 3 * C + 5, C + 40),
                                               (6, 2 * C - 3, 300)])
def test_any_split_into_chunk_ranges_gives_the_tiles_bits(isa, kv, bf16, n_tok, pos0, window):
    """Rows that cross chunk boundaries: one call per chunk, uneven ranges,
    and a whole-tile call all give the same bits (as decode split over
    threads, and the same rows inside a prefill tile)."""
    K.isa_set(isa)
    q, k, v = inputs(pos0 + n_tok + 7, n_tok, 3, 64, seed=pos0 + n_tok, sharp=2.0)
    k, v = k.astype(kv), v.astype(kv)
    whole = K.attention(q, k, v, pos0, window=window, bf16=bf16)
    first = pos0 - window + 1 if 0 < window <= pos0 else 0
    c0, c1 = first // C, (pos0 + n_tok - 1) // C
    assert c1 > c0, "the rows must span several chunks"
    for cuts in (range(c0 + 1, c1 + 1), [c1], [c0 + 1]):
        ranges = split_ranges(c0, c1, cuts)
        got = K.attention(q, k, v, pos0, window=window, chunk_ranges=ranges[::-1], bf16=bf16)  # any order of calls
        assert np.array_equal(got, whole), f"chunk ranges {ranges} differ from the whole tile"
    for t in range(n_tok):                                # and each token decoded alone, chunk by chunk
        alone = K.attention(q[t:t + 1], k, v, pos0 + t, window=window,
                            chunk_ranges=[(c, c) for c in range(c0, c1 + 1)], bf16=bf16)
        assert np.array_equal(alone[0], whole[t]), f"token {t} alone differs"
    check(whole, (bf16_model if bf16 else reference)(q, k.astype(np.float32), v.astype(np.float32), pos0, window),
          v.astype(np.float32), f"tile {n_tok} at {pos0}, window {window}", TOL_BF16 if bf16 else TOL_SHARP)


@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("kv,bf16", KV_DOTS)
@pytest.mark.parametrize("origin", [16, 240, C, 3 * C - 32])
def test_ring_origin_keeps_chunks_absolute(isa, kv, bf16, origin):
    """A ring tile sees its window from its first key block (origin): the
    same rows of k and v, shifted by whole blocks, give the same bits as the
    full cache because chunk boundaries stay at absolute positions."""
    K.isa_set(isa)
    n_tok, pos0, window = 5, origin + 2 * C + 9, 2 * C - 20
    q, k, v = inputs(pos0 + n_tok, n_tok, 2, 64, seed=origin)
    k, v = k.astype(kv), v.astype(kv)
    full = K.attention(q, k, v, pos0, window=window, bf16=bf16)
    shifted = K.attention(q, k[origin:], v[origin:], pos0 - origin, window=window, origin=origin, bf16=bf16)
    assert np.array_equal(shifted, full)
    if (origin % C) != 0:                                 # seen without its origin, the chunks move
        assert not np.array_equal(K.attention(q, k[origin:], v[origin:], pos0 - origin, window=window, bf16=bf16), full)


@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("kv", KV_DTYPES)
def test_chunks_with_far_apart_maxima_match_the_reference(isa, kv):
    """One chunk dominates by ~60 (its keys point along q), another lies
    ~120 below it (its weight exp(m_c - M) underflows): the combine still
    gives the softmax over every position."""
    K.isa_set(isa)
    n_tok, group, hd = 2, 3, 64
    pos0 = 4 * C + 17
    q, k, v = inputs(pos0 + n_tok, n_tok, group, hd, seed=21)
    qdir = q[:, 0].mean(axis=0)
    qdir /= np.linalg.norm(qdir)
    k[2 * C:3 * C] += 60.0 * qdir * np.sqrt(hd) / np.linalg.norm(q[:, 0].mean(axis=0))
    k[C:2 * C] -= 60.0 * qdir * np.sqrt(hd) / np.linalg.norm(q[:, 0].mean(axis=0))
    k, v = k.astype(kv), v.astype(kv)
    k32, v32 = k.astype(np.float32), v.astype(np.float32)
    got = K.attention(q, k, v, pos0)
    check(got, reference(q, k32, v32, pos0), v32, "far-apart chunk maxima", TOL_SHARP)


# ---- f16 keys and values -------------------------------------------------------------


def f16_edge_values():
    """Floats around every rounding decision of f32 -> f16: ties to even,
    the largest half and the overflow threshold, subnormal halves and the
    underflow to zero, signed zeros, infinities, quiet NaNs with payloads."""
    halves = np.arange(0, 1 << 16, dtype=np.uint32).astype(np.uint16)
    widened = halves.view(np.float16).astype(np.float32).view(np.uint32)
    finite = widened[(widened & 0x7F800000) != 0x7F800000]
    # each half exactly, one ulp (of f32) either side, and the midpoints to the next half
    steps = np.array([0, 1, 0xFFFFFFFF, 0x1000, 0x0FFF, 0x1001, 0x2000], dtype=np.uint32)
    around = (finite[:, None] + steps[None, :]).reshape(-1)
    specials = np.array([0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7FE01234, 0x477FE000, 0x477FEFFF,
                         0x477FF000, 0x477FF001, 0x33000000, 0x33000001, 0x32FFFFFF, 0x38800000, 0x387FFFFF,
                         0x00000001, 0x80000001, 0x7F7FFFFF], dtype=np.uint32)
    rng = np.random.default_rng(5)
    rand = rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    bits = np.concatenate([around, specials, rand])
    # signalling NaNs are never stored (F16C quiets them, numpy keeps them signalling)
    snan = ((bits & 0x7F800000) == 0x7F800000) & ((bits & 0x007FFFFF) != 0) & ((bits & 0x00400000) == 0)
    return bits[~snan].view(np.float32)


@pytest.mark.parametrize("isa", ISA_PARAMS)
def test_f16_conversion_is_numpys_round_to_nearest_even(isa):
    K.isa_set(isa)
    x = f16_edge_values()
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).view(np.uint16)
    for n in (len(x), 1, 7, 8, 9, 15, 17, 33):           # the vector bodies and the scalar tails
        got = K.f16_from_f32(np.ascontiguousarray(x[:n]))
        bad = np.flatnonzero(got != want[:n])
        assert not bad.size, (f"{K.ISA_NAMES[isa]}: {x[bad[0]]!r} (bits {x[bad[0]:bad[0] + 1].view(np.uint32)[0]:#x}) "
                              f"-> {got[bad[0]]:#x}, numpy {want[bad[0]]:#x}; {bad.size} differ")


@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("n,group,hd,window", [(1, 3, 64, 0), (17, 3, 64, 0), (1000, 3, 64, 0), (517, 4, 128, 0),
                                               (77, 2, 80, 0), (40, 2, 6, 0), (300, 3, 64, 33), (90, 1, 256, 20)])
def test_f16_kernel_reads_exactly_the_widened_values(isa, n, group, hd, window):
    K.isa_set(isa)
    n_tok = min(n, 12)
    q, k, v = inputs(n + 3, n_tok, group, hd, seed=n + group, sharp=2.0)
    k16, v16 = k.astype(np.float16), v.astype(np.float16)
    k32, v32 = k16.astype(np.float32), v16.astype(np.float32)
    got = K.attention(q, k16, v16, n - n_tok, window=window)
    assert np.array_equal(got, K.attention(q, k32, v32, n - n_tok, window=window))
    check(got, reference(q, k32, v32, n - n_tok, window), v32, f"f16 n={n} group={group} hd={hd}")


# ---- bf16 dot products ------------------------------------------------------------------


@pytest.mark.parametrize("isa", ISA_PARAMS)
@pytest.mark.parametrize("n,n_tok,group,hd,window", [(1, 1, 3, 64, 0), (17, 3, 3, 64, 0), (300, 24, 3, 64, 0),
                                                     (1000, 10, 3, 64, 0), (517, 10, 8, 128, 0), (77, 5, 2, 80, 0),
                                                     (40, 8, 2, 6, 0), (300, 12, 3, 64, 33), (2 * C + 40, 24, 3, 64, 0),
                                                     (2 * C + 41, 7, 3, 64, 300)])
def test_bf16_cache_matches_its_definition(isa, n, n_tok, group, hd, window):
    K.isa_set(isa)
    q, k, v = inputs(n, n_tok, group, hd, seed=n + hd, sharp=2.0)
    got = K.attention(q, k, v, n - n_tok, window=window, bf16=True)
    check(got, bf16_model(q, k, v, n - n_tok, window), v, f"bf16 n={n} group={group} hd={hd}", TOL_BF16)
    check(got, reference(q, k, v, n - n_tok, window), v, "bf16 against float64", 3e-2)
    assert not np.array_equal(got, K.attention(q, k, v, n - n_tok, window=window)), "the f32 cache gives the same"


@pytest.mark.skipif(not K.bf16_hw(), reason="CPU lacks AVX512_BF16")
@pytest.mark.parametrize("n,n_tok,group,hd,window", [(1, 1, 3, 64, 0), (300, 24, 3, 64, 0), (517, 10, 8, 128, 0),
                                                     (77, 5, 2, 80, 0), (40, 8, 2, 6, 0), (2 * C + 9, 6, 3, 64, 300)])
def test_bf16_instructions_give_the_bits_of_their_fma_steps(n, n_tok, group, hd, window):
    """vdpbf16ps and vcvtneps2bf16 against attention_x86.h's fma steps and
    integer rounding (what AVX-512 CPUs without the instructions run): the
    same bits on normal values."""
    K.isa_set(K.ISA_AVX512)
    q, k, v = inputs(n, n_tok, group, hd, seed=n, sharp=2.0)
    try:
        K.bf16_hw_set(True)
        hw = K.attention(q, k, v, n - n_tok, window=window, bf16=True)
        K.bf16_hw_set(False)
        steps = K.attention(q, k, v, n - n_tok, window=window, bf16=True)
    finally:
        K.bf16_hw_set(True)
    assert np.array_equal(hw, steps)


def bf16_nearest_even(x):
    """bf16 bits of float32 x by comparing distances (independent of the
    C code's bit trick): nearest, ties to even; subnormals flush to signed
    zero, NaNs are quieted with the payload truncated, overflow is inf."""
    u = x.view(np.uint32)
    lo = u & np.uint32(0xFFFF0000)
    hi = lo + np.uint32(0x10000)
    mag = lambda b: np.abs(b.view(np.float32).astype(np.float64))  # noqa: E731
    hi_mag = np.where((hi & 0x7FFFFFFF) == 0x7F800000, 2.0 ** 128, mag(hi))
    d_lo, d_hi = mag(x.copy()) - mag(lo), hi_mag - mag(x.copy())
    up = (d_hi < d_lo) | ((d_hi == d_lo) & ((lo >> 16) & 1).astype(bool))
    out = (np.where(up, hi, lo) >> 16).astype(np.uint16)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    out[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    tiny = (u & 0x7F800000) == 0
    out[tiny] = ((u[tiny] >> 16) & 0x8000).astype(np.uint16)
    return out


@pytest.mark.parametrize("isa", ISA_PARAMS)
def test_bf16_conversion_is_nearest_even_with_flushed_subnormals(isa):
    K.isa_set(isa)
    rng = np.random.default_rng(9)
    bits = np.concatenate([rng.integers(0, 1 << 32, 300_000, dtype=np.uint64).astype(np.uint32),
                           np.arange(0, 1 << 16, dtype=np.uint32) << 16 | 0x8000,      # every tie
                           np.arange(0, 1 << 16, dtype=np.uint32) << 16 | 0x7FFF,
                           np.array([0x7F7F8000, 0x7F7F7FFF, 0xFF7F8000, 0x7F800000, 0x00800000, 0x007FFFFF,
                                     0x80000001, 0x7F800001, 0xFFC12345], dtype=np.uint32)])
    x = bits.view(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        want = bf16_nearest_even(x)
    for n in (len(x), 1, 7, 8, 9, 15, 17, 33):           # the vector bodies and the scalar tails
        got = K.bf16_from_f32(np.ascontiguousarray(x[:n]))
        bad = np.flatnonzero(got != want[:n])
        assert not bad.size, f"{bits[bad[0]]:#x} -> {got[bad[0]]:#x}, want {want[bad[0]]:#x}; {bad.size} differ"


def test_hook_validates_arguments():
    q, k, v = inputs(10, 2, 3, 64, seed=0)
    with pytest.raises(ValueError):
        K.attention(q, k, v, 9)  # token at position 10 has no row
    with pytest.raises(ValueError):
        K.attention(q, k[:, :32].copy(), v, 0)
    with pytest.raises(TypeError):
        K.attention(q, k, v, 1.5)
    with pytest.raises(TypeError, match="both float32 or both float16"):
        K.attention(q, k.astype(np.float16), v, 0)
    with pytest.raises(TypeError, match="from float32"):
        K.attention(q, k.astype(np.float16), v.astype(np.float16), 0, bf16=True)
    with pytest.raises(ValueError, match="origin"):
        K.attention(q, k, v, 0, origin=8)
    q, k, v = inputs(C + 10, 1, 3, 64, seed=0)
    with pytest.raises(ValueError, match="do not cover"):
        K.attention(q, k, v, C + 5, chunk_ranges=[(0, 0)])
    with pytest.raises(ValueError, match="do not cover"):
        K.attention(q, k, v, C + 5, chunk_ranges=[(0, 1), (1, 1)])


# ---- the blocked key cache through the model ----------------------------------------


@pytest.fixture(scope="module")
def model(tiny_model_path):
    return Model(load_model_file(tiny_model_path("llama", Q.F32)))


KV_TYPES = ["f32", "f16", "bf16"]


def feed(ctx, seq, tokens):
    start = ctx.seq_len(seq)
    n = len(tokens)
    return ctx.decode(np.asarray(tokens, np.int32), np.arange(start, start + n, dtype=np.int32),
                      np.full(n, seq, np.int32))


@pytest.mark.parametrize("kv_type", KV_TYPES)
@pytest.mark.parametrize("n_copy", [0, 1, 15, 16, 17, 33, 47])
def test_copy_prefix_ending_inside_a_key_block(model, kv_type, n_copy):
    toks = [(i * 37) % 200 + 1 for i in range(47)]
    ctx = Context(model, n_seq=2, n_ctx=80, max_batch=64, n_threads=2, kv_type=kv_type)
    feed(ctx, 1, [5] * 60)                # stale keys in seq 1 past the copied prefix
    feed(ctx, 0, toks)
    ctx.copy(0, 1, n_copy)
    fresh = Context(model, n_seq=1, n_ctx=80, max_batch=64, n_threads=1, kv_type=kv_type)
    if n_copy:
        feed(fresh, 0, toks[:n_copy])
    assert np.array_equal(feed(ctx, 1, [4, 9, 2]), feed(fresh, 0, [4, 9, 2]))


@pytest.mark.parametrize("kv_type", KV_TYPES)
@pytest.mark.parametrize("n", [1, 16, 23])
def test_save_load_blocked_keys_bit_exact(model, kv_type, n):
    toks = [(i * 11) % 200 + 1 for i in range(n)]
    ctx = Context(model, n_seq=1, n_ctx=64, max_batch=32, n_threads=2, kv_type=kv_type)
    feed(ctx, 0, toks)
    state = ctx.save(0)
    want = feed(ctx, 0, [7, 8])
    other = Context(model, n_seq=2, n_ctx=48, max_batch=32, n_threads=1, kv_type=kv_type)
    feed(other, 1, [3] * 40)
    other.load(1, state)
    assert other.save(1) == state           # the saved bytes round-trip too
    assert np.array_equal(feed(other, 1, [7, 8]), want)


@pytest.mark.parametrize("kv_type", KV_TYPES)
def test_decode_at_long_context_equals_the_prefill_tile(model, kv_type):
    """Tokens of two sequences decoded one step at a time, both in each
    step, at positions around chunk boundaries (attention split by chunk
    over two threads, two tiles) get exactly the logits they get inside
    prefill tiles (not split)."""
    n = 2 * C + 6
    streams = [[(i * 29) % 200 + 1 for i in range(n)], [(i * 13) % 190 + 3 for i in range(n)]]
    tiles = []
    for toks in streams:
        ctx = Context(model, n_seq=1, n_ctx=n, max_batch=n, n_threads=2, kv_type=kv_type)
        tiles.append(ctx.decode(np.asarray(toks, np.int32), np.arange(n, dtype=np.int32), np.zeros(n, np.int32),
                                want=np.ones(n, np.uint8)))
    step = Context(model, n_seq=2, n_ctx=n, max_batch=4, n_threads=2, kv_type=kv_type)
    for p in range(n):
        got = step.decode(np.asarray([streams[0][p], streams[1][p]], np.int32), np.asarray([p, p], np.int32),
                          np.asarray([0, 1], np.int32), want=np.ones(2, np.uint8))
        if p % C in (C - 2, C - 1, 0, 1, 5) and p >= C - 2:
            for s in (0, 1):
                assert np.array_equal(got[s], tiles[s][p]), f"sequence {s}, position {p}"


@pytest.mark.parametrize("kv_type", KV_TYPES)
def test_ring_window_across_chunks_equals_the_full_cache(tiny_model_path, kv_type):
    """A sliding window of 300 over a ring of 368 slots: the windows seen
    from their first key block (not a chunk boundary) give the full cache's
    logits bit for bit, prefill tiles and single decode steps (the full
    cache's split by chunk) alike."""
    m = Model(load_model_file(tiny_model_path("llama", Q.F32, sliding_window=300)))
    toks = [(i * 31) % 200 + 1 for i in range(2 * C + 200)]
    n_prefill = 2 * C + 150
    opts = dict(n_seq=1, n_ctx=len(toks), max_batch=n_prefill, n_threads=2, kv_type=kv_type)
    ring = Context(m, kv_ring=True, **opts)
    full = Context(m, **opts)
    assert ring.ring_slots % C != 0
    want = np.ones(n_prefill, np.uint8)
    args = (np.asarray(toks[:n_prefill], np.int32), np.arange(n_prefill, dtype=np.int32), np.zeros(n_prefill, np.int32))
    assert np.array_equal(ring.decode(*args, want=want), full.decode(*args, want=want))
    for tok in toks[n_prefill:]:
        assert np.array_equal(feed(ring, 0, [tok]), feed(full, 0, [tok]))
