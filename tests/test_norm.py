"""RMS normalization (native/norm.h): every ISA gives the scalar reference's
floats bit for bit, and the reference is within float
rounding of float64 mathematics."""
from __future__ import annotations

import numpy as np
import pytest

K = pytest.importorskip("ditto._kernels")

SIZES = [1, 7, 8, 9, 15, 16, 17, 64, 256, 576, 640, 1000]


def isas():
    return [pytest.param(i, id=K.ISA_NAMES[i]) for i in (K.ISA_SCALAR, K.ISA_AVX2, K.ISA_AVX512)]


def row(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * rng.choice([1e-3, 1.0, 50.0])).astype(np.float32)
    w = (1 + rng.standard_normal(n) * 0.1).astype(np.float32)
    return x, w


@pytest.mark.parametrize("n", SIZES)
def test_near_float64(n, restore_isa):
    x, w = row(n, n)
    K.isa_set(K.ISA_SCALAR)
    got = K.rmsnorm(x, w, 1e-5).astype(np.float64)
    x64 = x.astype(np.float64)
    want = x64 / np.sqrt(np.mean(x64 * x64) + 1e-5) * w.astype(np.float64)
    assert np.all(np.abs(got - want) <= 3 * np.finfo(np.float32).eps * np.abs(want) + 1e-30)


@pytest.mark.parametrize("isa", isas())
def test_every_isa_is_the_reference(isa, restore_isa):
    if isa > K.isa_best():
        pytest.skip(f"CPU lacks {K.ISA_NAMES[isa]}")
    for n in SIZES:
        for seed in range(3):
            x, w = row(n, 100 * n + seed)
            x[seed % n] = [0.0, 3e18, -1e-20][seed]
            K.isa_set(K.ISA_SCALAR)
            ref = K.rmsnorm(x, w, 1e-6)
            K.isa_set(isa)
            assert np.array_equal(K.rmsnorm(x, w, 1e-6).view(np.uint32), ref.view(np.uint32)), (n, seed)


def test_bad_input():
    with pytest.raises(ValueError, match="x has 2 values, w 3"):
        K.rmsnorm(np.zeros(2, np.float32), np.zeros(3, np.float32), 1e-5)
