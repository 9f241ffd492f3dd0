"""The gated FFN's activation kernels (native/activation.h): act(g) * u with
act SiLU or GELU (tanh form as a sigmoid), e^x a port of glibc's expf. Every
ISA gives the scalar reference's floats bit for bit, the reference is within
a few ulps of float64 mathematics, extremes, infinities and NaN included,
and its e^x is glibc's expf where the C library is glibc."""
from __future__ import annotations

import ctypes
import math
import platform

import numpy as np
import pytest

K = pytest.importorskip("ditto._kernels")

ACTS = ("silu", "gelu")


def exact(act: str, g: np.ndarray, u: np.ndarray) -> np.ndarray:
    """act(g) * u in float64 (GELU's 0.5 (1 + tanh y) as 1 / (1 + e^-2y), the
    same function without float64's cancellation for y << 0)."""
    g64, u64 = g.astype(np.float64), u.astype(np.float64)
    with np.errstate(over="ignore"):
        if act == "silu":
            a = g64 / (1.0 + np.exp(-g64))
        else:
            y = math.sqrt(2 / math.pi) * (g64 + 0.044715 * g64 ** 3)
            a = g64 / (1.0 + np.exp(-2 * y))
    return a * u64


def samples(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = (rng.standard_normal(n) * rng.choice([0.01, 1.0, 8.0, 40.0], n)).astype(np.float32)
    u = rng.standard_normal(n).astype(np.float32)
    return g, u


def isas():
    return [pytest.param(i, id=K.ISA_NAMES[i]) for i in (K.ISA_SCALAR, K.ISA_AVX2, K.ISA_AVX512)]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("n", [1, 7, 8, 15, 16, 17, 100, 1536, 2049])
def test_near_float64(act, n, restore_isa):
    g, u = samples(n, seed=n)
    K.isa_set(K.ISA_SCALAR)
    got = K.gated(act, g, u).astype(np.float64)
    want = exact(act, g, u)
    # a few ulps of the result, times the exponent's size for GELU: its
    # argument is rounded to float32 before e^x, which scales that error by |x|;
    # below 1e-30 absolutely (act(g) of g < -88.7: e^-g overflows, act gives -0)
    g64 = g.astype(np.float64)
    arg = np.abs(g64) if act == "silu" else np.abs(1.6 * (g64 + 0.044715 * g64 ** 3))
    tol = 4 * np.finfo(np.float32).eps * (1 + arg) * np.abs(want) + 1e-30
    assert np.all(np.abs(got - want) <= tol), np.max(np.abs(got - want) / (np.abs(want) + 1e-30))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("isa", isas())
def test_every_isa_is_the_reference(act, isa, restore_isa):
    if isa > K.isa_best():
        pytest.skip(f"CPU lacks {K.ISA_NAMES[isa]}")
    g, u = samples(4099, seed=7)
    special = np.array([0.0, -0.0, 1e-30, -1e-30, 87.0, 87.5, 88.5, 103.9, 104.5, -87.0, -87.5, -88.5,
                        -103.9, -104.5, 200.0, -200.0, 3e38, -3e38, np.inf, -np.inf, np.nan], np.float32)
    g = np.concatenate([g, special])
    u = np.concatenate([u, np.full(special.size, 1.5, np.float32)])
    K.isa_set(K.ISA_SCALAR)
    ref = K.gated(act, g, u)
    K.isa_set(isa)
    got = K.gated(act, g, u)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("act", ACTS)
def test_extremes(act, restore_isa):
    g = np.array([np.inf, -np.inf, np.nan, 1e4, -1e4, 0.0], np.float32)
    got = K.gated(act, g, np.ones_like(g))
    assert got[0] == np.inf and np.isnan(got[2]) and got[3] == 1e4 and got[5] == 0.0
    assert np.isnan(got[1])             # -inf / (1 + e^inf), as with libm's expf
    assert -1e-30 < got[4] <= 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="unknown activation"):
        K.gated("relu", np.zeros(2, np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="has 2 values, u 3"):
        K.gated("silu", np.zeros(2, np.float32), np.zeros(3, np.float32))


def glibc_expf():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the C library is not glibc")
    libm = ctypes.CDLL("libm.so.6")
    libm.expf.restype = ctypes.c_float
    libm.expf.argtypes = (ctypes.c_float,)
    return libm.expf


def test_expf_is_glibcs():
    libm_expf = glibc_expf()
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-110, 95, 200_000), rng.standard_normal(50_000),
                        [float.fromhex(h) for h in ("-0x1.9fe368p6", "-0x1.9fe36ap6", "0x1.62e42ep6", "0x1.62e430p6")],
                        [0.0, -0.0,
                         np.inf, -np.inf, np.nan]]).astype(np.float32)
    got = K.expf(x)
    want = np.array([libm_expf(float(v)) for v in x], np.float32)
    same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
    assert same.all(), x[~same][:5]

