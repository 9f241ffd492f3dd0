"""Native quant kernels (ditto._kernels) against gguf.quants and float64 numpy.

Tolerances: dequantization must equal gguf.quants bit for bit (every product
in the formulas is exact in f32, the single add/subtract of a min rounds the
same way). Every SIMD path must equal the scalar reference dequantization bit
for bit. Dots and matmuls are compared with float64 numpy within
(n/8 + 16) * 2**-23 * sum|a_i * b_i|, a bound for an 8/16-lane f32
accumulation with a tree reduction. Batch invariance is bit for bit.
"""
import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize as gguf_dequantize
from hypothesis import given, settings, strategies as st

k = pytest.importorskip("ditto._kernels")

TYPES = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q4_K, Q.Q5_K, Q.Q6_K]
LAYOUT = {
    Q.F32: (1, 4), Q.F16: (1, 2), Q.BF16: (1, 2), Q.Q8_0: (32, 34), Q.Q4_0: (32, 18),
    Q.Q4_1: (32, 20), Q.Q5_0: (32, 22), Q.Q5_1: (32, 24), Q.Q4_K: (256, 144), Q.Q5_K: (256, 176), Q.Q6_K: (256, 210),
}
# Byte offsets of the f16 scale fields inside one block: random bits there
# would give NaN / inf, so they get sane values instead.
F16_FIELDS = {
    Q.Q8_0: [0], Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
}
ISAS = [k.ISA_SCALAR, k.ISA_AVX2, k.ISA_AVX512]


# Every test here may switch the instruction set: conftest's fixture restores it.
pytestmark = pytest.mark.usefixtures("restore_isa")


def use_isa(isa):
    if isa > k.isa_best():
        pytest.skip(f"CPU lacks {k.ISA_NAMES[isa]}")
    k.isa_set(isa)


def sane_f16(rng, n):
    """Finite f16 scales of both signs, with zeros and subnormals mixed in."""
    v = (rng.standard_normal(n) * 0.02).astype(np.float16)
    pick = rng.random(n)
    v[pick < 0.05] = 0.0
    sub = pick > 0.95
    sub_bits = rng.integers(1, 0x400, sub.sum(), dtype=np.uint16) | (rng.integers(0, 2, sub.sum(), dtype=np.uint16) << 15)
    v[sub] = sub_bits.view(np.float16)
    return v


def random_raw(qtype, n_values, rng):
    """GGUF bytes of n_values of qtype, random content, sane f16 scales."""
    bs, ts = LAYOUT[qtype]
    nb = n_values // bs
    if qtype == Q.F32:
        return (rng.standard_normal(n_values).astype(np.float32)).view(np.uint8).copy()
    if qtype == Q.F16:
        bits = rng.integers(0, 1 << 16, n_values, dtype=np.uint16)
        bits[(bits & 0x7C00) == 0x7C00] &= 0xBFFF  # no NaN / inf
        return bits.view(np.uint8).copy()
    if qtype == Q.BF16:
        return rng.integers(0, 1 << 16, n_values, dtype=np.uint16).view(np.uint8).copy()
    raw = rng.integers(0, 256, (nb, ts), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        raw[:, off:off + 2] = sane_f16(rng, nb).view(np.uint8).reshape(nb, 2)
    return raw.reshape(-1).copy()


def reference(qtype, raw):
    return np.asarray(gguf_dequantize(raw, qtype), dtype=np.float32).reshape(-1)


def assert_bits_equal(a, b):
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    assert a.shape == b.shape
    bad = np.flatnonzero(a.view(np.uint32) != b.view(np.uint32))
    assert bad.size == 0, f"{bad.size} mismatches, first at {bad[0]}: {a[bad[0]]!r} != {b[bad[0]]!r}"


def dot_tol(a64, b64):
    n = a64.shape[-1]
    return (n / 8 + 16) * 2.0**-23 * (np.abs(a64) @ np.abs(b64).T)


# ---- layout ----------------------------------------------------------------
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_type_layout(qtype):
    assert k.type_layout(int(qtype)) == LAYOUT[qtype]


def test_type_layout_rejects_unknown():
    with pytest.raises(ValueError):
        k.type_layout(16)  # IQ2_XXS: not supported by ditto
    with pytest.raises(ValueError):
        k.type_layout(-1)
    with pytest.raises(TypeError):
        k.type_layout("Q4_0")


def test_isa_set_validates():
    assert k.isa_best() in ISAS
    with pytest.raises(ValueError):
        k.isa_set(7)
    for isa in ISAS:
        if isa <= k.isa_best():
            k.isa_set(isa)
            assert k.isa_get() == isa
        else:
            with pytest.raises(ValueError):
                k.isa_set(isa)


# ---- dequantization ----------------------------------------------------------
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_dequantize_matches_gguf(qtype):
    rng = np.random.default_rng(int(qtype) + 1)
    k.isa_set(k.ISA_SCALAR)
    for nb in (1, 2, 7):
        n = LAYOUT[qtype][0] * nb * (37 if LAYOUT[qtype][0] == 1 else 1)
        raw = random_raw(qtype, n, rng)
        assert_bits_equal(k.dequantize(int(qtype), raw, n), reference(qtype, raw))


def test_f16_specials():
    bits = np.array([0x0000, 0x8000, 0x0001, 0x83FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x3C00],
                    dtype=np.uint16)
    for isa in ISAS:
        if isa > k.isa_best():
            continue
        k.isa_set(isa)
        out = k.dequantize(int(Q.F16), bits.view(np.uint8), bits.size)
        assert_bits_equal(out, bits.view(np.float16).astype(np.float32))
        nan = k.dequantize(int(Q.F16), np.array([0x7E00, 0x7C01, 0xFFFF], np.uint16).view(np.uint8), 3)
        assert np.isnan(nan).all()


@pytest.mark.parametrize("isa", ISAS[1:], ids=lambda i: k.ISA_NAMES[i])
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_simd_dequantize_equals_scalar(qtype, isa):
    rng = np.random.default_rng(100 + int(qtype))
    bs, ts = LAYOUT[qtype]
    for nb in (1, 2, 3, 5, 16, 33):
        n = bs * nb * (17 if bs == 1 else 1)
        raw = random_raw(qtype, n, rng)
        # also at an odd address: GGUF tensors need not be aligned for SIMD
        buf = np.empty(raw.size + 1, np.uint8)
        buf[1:] = raw
        k.isa_set(k.ISA_SCALAR)
        want = k.dequantize(int(qtype), raw, n)
        use_isa(isa)
        assert_bits_equal(k.dequantize(int(qtype), raw, n), want)
        assert_bits_equal(k.dequantize(int(qtype), buf[1:], n), want)


@settings(max_examples=30, deadline=None)
@given(qtype=st.sampled_from(TYPES), nb=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_dequantize_property(qtype, nb, seed):
    rng = np.random.default_rng(seed)
    n = LAYOUT[qtype][0] * nb
    raw = random_raw(qtype, n, rng)
    want = reference(qtype, raw)
    for isa in ISAS:
        if isa <= k.isa_best():
            k.isa_set(isa)
            assert_bits_equal(k.dequantize(int(qtype), raw, n), want)


def test_dequantize_validates():
    raw = np.zeros(18, np.uint8)
    with pytest.raises(ValueError):
        k.dequantize(int(Q.Q4_0), raw, 31)  # not a whole block
    with pytest.raises(ValueError):
        k.dequantize(int(Q.Q4_0), raw, 64)  # buffer too short
    with pytest.raises(ValueError):
        k.dequantize(6, raw, 32)  # unsupported type
    with pytest.raises(TypeError):
        k.dequantize(int(Q.Q4_0), raw, 32.0)


# ---- dot -------------------------------------------------------------------------
@pytest.mark.parametrize("isa", ISAS, ids=lambda i: k.ISA_NAMES[i])
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 700), seed=st.integers(0, 2**32 - 1))
def test_dot_against_float64(isa, n, seed):
    use_isa(isa)
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    got = k.dot_f32(a, b)
    want = a.astype(np.float64) @ b.astype(np.float64)
    assert abs(got - want) <= dot_tol(a.astype(np.float64), b.astype(np.float64))


def test_dot_validates():
    with pytest.raises(ValueError):
        k.dot_f32(np.zeros(3, np.float32), np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        k.dot_f32(np.zeros(3, np.float64), np.zeros(3, np.float64))
    assert k.dot_f32(np.zeros(0, np.float32), np.zeros(0, np.float32)) == 0.0


# ---- matmul -------------------------------------------------------------------------
def make_weight(qtype, rows, cols, rng):
    if qtype == Q.BF16:  # random bf16 bits include NaN / huge values
        f = rng.standard_normal(rows * cols).astype(np.float32)
        return (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(rows, -1)
    raw = random_raw(qtype, rows * cols, rng)
    return raw.reshape(rows, -1)


def cols_for(qtype, extra=0):
    bs = LAYOUT[qtype][0]
    return 2 * 256 if bs == 256 else (bs * 9 if bs == 32 else 67 + extra)


@pytest.mark.parametrize("isa", ISAS, ids=lambda i: k.ISA_NAMES[i])
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_matmul_against_float64_and_dot(qtype, isa):
    use_isa(isa)
    rng = np.random.default_rng(7 + int(qtype))
    rows, cols = 23, cols_for(qtype)
    raw = make_weight(qtype, rows, cols, rng)
    x = rng.standard_normal((9, cols)).astype(np.float32)
    y = k.matmul_rows(raw, int(qtype), cols, x)
    w = reference(qtype, raw.reshape(-1)).reshape(rows, cols)
    w64, x64 = w.astype(np.float64), x.astype(np.float64)
    assert np.all(np.abs(y - x64 @ w64.T) <= dot_tol(x64, w64))
    # each output is exactly dt_dot_f32 of the dequantized row and the token
    for t in range(x.shape[0]):
        for r in range(rows):
            assert y[t, r] == np.float32(k.dot_f32(w[r], x[t]))


@pytest.mark.parametrize("isa", ISAS, ids=lambda i: k.ISA_NAMES[i])
@pytest.mark.parametrize("qtype", [Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.Q5_0, Q.Q5_1, Q.Q4_K], ids=lambda t: t.name)
@pytest.mark.parametrize("nb", [1, 2, 9, 18, 33, 48, 70])
def test_decode_matmul_any_row_length(qtype, isa, nb):
    """Decode batches (1-4 tokens, the fused kernels) over rows of any block
    count, across the kernels' chunks of block scales: each output is
    dt_dot_f32 of the dequantized row, as for a big batch."""
    use_isa(isa)
    rng = np.random.default_rng(41 + int(qtype) + nb)
    rows, cols = 7, 32 * nb * (8 if qtype == Q.Q4_K else 1)   # Q4_K: nb super-blocks of 8 sub-blocks
    raw = make_weight(qtype, rows, cols, rng)
    x = rng.standard_normal((6, cols)).astype(np.float32)
    w = reference(qtype, raw.reshape(-1)).reshape(rows, cols)
    want = np.array([[k.dot_f32(w[r], x[t]) for r in range(rows)] for t in range(6)], np.float32)
    for n in (1, 2, 3, 4):
        assert_bits_equal(k.matmul_rows(raw, int(qtype), cols, x[:n]), want[:n])
    assert_bits_equal(k.matmul_rows(raw, int(qtype), cols, x), want)


@pytest.mark.parametrize("isa", ISAS, ids=lambda i: k.ISA_NAMES[i])
@pytest.mark.parametrize("qtype", TYPES, ids=lambda t: t.name)
def test_matmul_batch_invariance(qtype, isa):
    use_isa(isa)
    rng = np.random.default_rng(11 + int(qtype))
    rows, cols = 37, cols_for(qtype, extra=13)
    raw = make_weight(qtype, rows, cols, rng)
    x = rng.standard_normal((17, cols)).astype(np.float32)
    full = k.matmul_rows(raw, int(qtype), cols, x)
    alone = np.stack([k.matmul_rows(raw, int(qtype), cols, x[t:t + 1])[0] for t in range(17)])
    assert_bits_equal(full, alone)
    for n in range(1, 18):
        assert_bits_equal(k.matmul_rows(raw, int(qtype), cols, x[:n]), alone[:n])
        # token 0 at position j of a batch of other tokens
        j = int(rng.integers(0, n))
        other = rng.standard_normal((n, cols)).astype(np.float32)
        other[j] = x[0]
        assert_bits_equal(k.matmul_rows(raw, int(qtype), cols, other)[j], alone[0])
    for split in (1, 3, 4, 5, 8, 17, 36):
        a = k.matmul_rows(raw, int(qtype), cols, x, 0, split)
        b = k.matmul_rows(raw, int(qtype), cols, x, split, rows)
        assert_bits_equal(a[:, :split], alone[:, :split])
        assert_bits_equal(b[:, split:], alone[:, split:])
        assert not a[:, split:].any() and not b[:, :split].any()


@pytest.mark.parametrize("qtype", [Q.Q4_1, Q.F32, Q.Q6_K], ids=lambda t: t.name)
def test_matmul_row_ranges_any_split(qtype):
    rng = np.random.default_rng(5)
    rows, cols = 29, cols_for(qtype)
    raw = make_weight(qtype, rows, cols, rng)
    x = rng.standard_normal((5, cols)).astype(np.float32)
    for isa in ISAS:
        if isa > k.isa_best():
            continue
        k.isa_set(isa)
        full = k.matmul_rows(raw, int(qtype), cols, x)
        for _ in range(10):
            lo, hi = sorted(rng.integers(0, rows + 1, 2))
            part = k.matmul_rows(raw, int(qtype), cols, x, int(lo), int(hi))
            assert_bits_equal(part[:, lo:hi], full[:, lo:hi])


def test_matmul_validates():
    raw = np.zeros((3, 18), np.uint8)
    x = np.zeros((2, 32), np.float32)
    with pytest.raises(ValueError):
        k.matmul_rows(raw, int(Q.Q4_0), 64, x)  # row bytes mismatch
    with pytest.raises(ValueError):
        k.matmul_rows(raw, int(Q.Q4_0), 32, np.zeros((2, 31), np.float32))
    with pytest.raises(ValueError):
        k.matmul_rows(raw, int(Q.Q4_0), 32, x, 2, 1)
    with pytest.raises(ValueError):
        k.matmul_rows(raw, int(Q.Q4_0), 32, x, 0, 4)
    with pytest.raises(ValueError):
        k.matmul_rows(raw, 6, 32, x)
    with pytest.raises(ValueError):
        k.matmul_rows(raw, int(Q.Q4_0), 32, np.zeros((2, 32), np.float64))
    assert k.matmul_rows(raw, int(Q.Q4_0), 32, np.zeros((0, 32), np.float32)).shape == (0, 3)


@pytest.mark.parametrize("qtype", [Q.Q4_1, Q.Q8_0], ids=lambda t: t.name)
def test_threaded_exact_equals_rows(qtype):
    rng = np.random.default_rng(3)
    rows, cols = 101, 32 * 18
    raw = make_weight(qtype, rows, cols, rng)
    x = rng.standard_normal((7, cols)).astype(np.float32)
    for isa in ISAS:
        if isa > k.isa_best():
            continue
        k.isa_set(isa)
        want = k.matmul_rows(raw, int(qtype), cols, x)
        for threads in (1, 2):
            for n in (1, 3, 4, 7):
                assert_bits_equal(k.matmul_threaded(raw, int(qtype), cols, x[:n], threads), want[:n])


def test_precision_validates():
    raw = np.zeros((3, 18), np.uint8)
    x = np.zeros((2, 32), np.float32)
    with pytest.raises(ValueError):
        k.matmul_rows(raw, int(Q.Q4_0), 32, x, precision=3)
    with pytest.raises(ValueError):
        k.matmul_threaded(raw, int(Q.Q4_0), 32, x, 2, -1)
