"""precision=q16 and precision=fast (native/quant.h): activations per block
of 32 quantized to 16 bits split in two int8 halves (q16) or to int8 (fast),
integer block sums on weights repacked in 16-row tiles, one f32 fma per block
and row. Both precisions run every test: the scalar reference is checked
against a numpy model of the definition, every SIMD kernel against the
scalar reference bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from test_kernels import ISAS, assert_bits_equal, k, make_weight, reference, use_isa

pytestmark = pytest.mark.usefixtures("restore_isa")

Q16_TYPES = [Q.Q4_0, Q.Q4_1, Q.Q8_0]
# each precision on the tiles with the largest activation code it uses
QMAX = {k.PRECISION_Q16: 32639, k.PRECISION_FAST: 127}
precisions = pytest.mark.parametrize("P", list(QMAX), ids=lambda p: {k.PRECISION_Q16: "q16", k.PRECISION_FAST: "fast"}[p])


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


def codes_scales(qtype, raw, rows, cols):
    """Unsigned codes (rows, nb, 32), offset c, dw and mw (rows, nb) float32."""
    nb = cols // 32
    blk = raw.reshape(rows, nb, -1)
    d = blk[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    if qtype == Q.Q8_0:
        u = blk[..., 2:].view(np.int8).astype(np.int64) + 128
        return u, 128, d, None
    qs = blk[..., 4:] if qtype == Q.Q4_1 else blk[..., 2:]
    u = np.concatenate([qs & 0xF, qs >> 4], axis=2).astype(np.int64)
    m = blk[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32) if qtype == Q.Q4_1 else None
    return u, (8 if qtype == Q.Q4_0 else 0), d, m


def numpy_tiles(P, qtype, raw, rows, cols, x):
    """The definition of precision P: q16's sum of two int8 halves, 256 * u.xh
    + u.xl, is u.xq exactly, so both precisions are the same model here."""
    u, c, dw, mw = codes_scales(qtype, raw, rows, cols)
    xq, dx, sx, s = prep(x, QMAX[P])
    xh, xl = split(xq)
    assert xh.min() >= -128 and xh.max() <= 127 and xl.min() >= -128 and xl.max() <= 127
    y = np.zeros((x.shape[0], rows), np.float32)
    for t in range(x.shape[0]):
        isum = np.einsum("rbv,bv->rb", u, xq[t]) - c * s[t]
        assert np.abs(isum).max() < 2**31
        acc = np.zeros(rows, np.float32)
        for b in range(cols // 32):   # in order, one fma each (float64 of an f32 product is exact)
            acc = fma32(dw[:, b] * dx[t, b], isum[:, b].astype(np.float32), acc)
            if mw is not None:
                acc = fma32(mw[:, b], np.full(rows, sx[t, b]), acc)
        y[t] = acc
    return y


def fma32(a, b, c):
    """f32 fma: the product of two f32 is exact in float64 and the sum rounded
    once to f32 (double rounding through float64 cannot change it: the exact
    sum needs at most 48 + 24 bits, and float64's 53 suffice unless the
    exponents are far apart, where the f32 result is the larger term)."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf / NaN inputs (hostile tests) propagate
        return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)


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


@precisions
@pytest.mark.parametrize("qtype", Q16_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("nb,rows", [(1, 16), (2, 13), (9, 33), (32, 5), (47, 17), (70, 40)])
def test_scalar_reference_is_the_definition(P, qtype, nb, rows):
    rng = np.random.default_rng(100 * nb + rows + int(qtype))
    cols = 32 * nb
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


@precisions
@pytest.mark.parametrize("isa", ISAS, ids=lambda i: k.ISA_NAMES[i])
@pytest.mark.parametrize("qtype", Q16_TYPES, ids=lambda t: t.name)
def test_kernels_equal_the_scalar_reference(P, qtype, isa):
    rng = np.random.default_rng(7 + int(qtype))
    rows, cols = 45, 32 * 19
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
def test_batch_invariance(P, isa):
    use_isa(isa)
    rng = np.random.default_rng(5)
    rows, cols = 37, 32 * 11
    for qtype in Q16_TYPES:
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
    cols = 32 * 7
    raw = make_weight(qtype, rows, cols, rng)
    packed = k.q16_repack(raw, int(qtype), cols)
    assert packed.ctypes.data % 64 == 0
    back = k.q16_unpack(packed, int(qtype), rows, cols)
    assert np.array_equal(back, raw)
    # bytes per weight stay the GGUF's (plus the padding of the last tile, whole lines)
    tiles = (rows + 15) // 16
    assert packed.nbytes <= tiles * 16 * raw.shape[1] + 64 * tiles


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


@pytest.mark.parametrize("precision,tol", [("q16", 2e-3), ("fast", 5e-2)])
def test_tiled_context_on_a_tied_model_embeds_from_the_repacked_head(tiny_model_path, precision, tol):
    """The tied embedding's mapped pages are dropped under q16 and fast and
    its rows come from the head's repacked copy: logits stay close to exact
    ones."""
    from ditto._native import Context, Model
    from ditto.engine.gguf_model import load_model_file

    toks = list(range(3, 20))
    exact = Context(Model(load_model_file(tiny_model_path("llama", Q.Q8_0))), n_seq=1, n_ctx=64, max_batch=64,
                    n_threads=2, precision="exact")
    want = exact.decode(toks, range(len(toks)), [0] * len(toks))
    mf = load_model_file(tiny_model_path("llama", Q.Q8_0))
    assert mf.tied_output
    ctx = Context(Model(mf), n_seq=1, n_ctx=64, max_batch=64, n_threads=2, precision=precision)
    got = ctx.decode(toks, range(len(toks)), [0] * len(toks))
    assert not np.array_equal(got, want)   # the integer path ran (so the tiles were prepared)
    assert np.abs(got - want).max() <= tol * np.abs(want).max()
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))


@precisions
@pytest.mark.parametrize("qtype", [Q.F32, Q.Q5_0, Q.Q4_K, Q.Q6_K], ids=lambda t: t.name)
def test_other_types_run_exact(P, qtype):
    rng = np.random.default_rng(int(qtype))
    rows, cols = 19, 512
    raw = make_weight(qtype, rows, cols, rng)
    x = rng.standard_normal((5, cols)).astype(np.float32)
    want = k.matmul_rows(raw, int(qtype), cols, x)
    assert_bits_equal(k.matmul_rows(raw, int(qtype), cols, x, precision=P), want)
    assert_bits_equal(k.matmul_threaded(raw, int(qtype), cols, x, 2, P), want)
