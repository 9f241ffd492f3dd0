"""Regenerate tests/data/quants/ggml_blocks.npz: blocks of the newer tensor
types (Q5_1, IQ4_NL, IQ4_XS, Q3_K, Q2_K) and ggml's own dequantization of
them, a second oracle next to gguf.quants for tests/test_quant_types.py.

    python bench/ggml_quant_blocks.py [--llama-bin-dir DIR]

Per type, rows quantized by ggml's quantizer (ggml_quantize_chunk, from
normal values with outliers and an all-zero row) and rows of random block
bytes with sane f16 scales (tests/gguf_factory.py), both dequantized with
ggml's to_float; ggml is called through ctypes in DIR/libggml-base.so of a
llama.cpp build (bench/README.md). CI only reads the committed file.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import sys
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as Q

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from gguf_factory import random_matrix_bytes  # noqa: E402

OUT = ROOT / "tests" / "data" / "quants" / "ggml_blocks.npz"
TYPES = (Q.Q5_1, Q.IQ4_NL, Q.IQ4_XS, Q.Q3_K, Q.Q2_K)
ROWS, COLS = 4, 512


class _Traits(ctypes.Structure):  # ggml.h: struct ggml_type_traits
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64),
                ("blck_size_interleave", ctypes.c_int64), ("type_size", ctypes.c_size_t),
                ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p), ("from_float_ref", ctypes.c_void_p)]


_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class Ggml:
    def __init__(self, bin_dir: str):
        self.lib = ctypes.CDLL(os.path.join(bin_dir, "libggml-base.so"))
        self.lib.ggml_get_type_traits.restype = ctypes.POINTER(_Traits)
        self.lib.ggml_quantize_chunk.restype = ctypes.c_size_t
        self.lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                                 ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]

    def quantize(self, qtype: Q, x: np.ndarray) -> np.ndarray:
        bs, ts = GGML_QUANT_SIZES[qtype]
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.zeros((x.shape[0], x.shape[1] // bs * ts), np.uint8)
        n = self.lib.ggml_quantize_chunk(int(qtype), x.ctypes.data, out.ctypes.data, 0, x.shape[0], x.shape[1], None)
        if n != out.nbytes:
            raise RuntimeError(f"ggml_quantize_chunk({qtype.name}) wrote {n} bytes, expected {out.nbytes}")
        return out

    def to_float(self, qtype: Q, raw: np.ndarray, n: int) -> np.ndarray:
        traits = self.lib.ggml_get_type_traits(int(qtype)).contents
        if (traits.blck_size, traits.type_size) != GGML_QUANT_SIZES[qtype]:
            raise RuntimeError(f"{qtype.name}: ggml's block layout differs from gguf's")
        raw = np.ascontiguousarray(raw, dtype=np.uint8)
        out = np.empty(n, np.float32)
        _TO_FLOAT(traits.to_float)(raw.ctypes.data, out.ctypes.data, n)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llama-bin-dir", default=os.environ.get("LLAMA_CPP_BIN_DIR"),
                    help="llama.cpp build directory holding libggml-base.so (default: $LLAMA_CPP_BIN_DIR)")
    args = ap.parse_args()
    if not args.llama_bin_dir:
        raise SystemExit("pass --llama-bin-dir or set LLAMA_CPP_BIN_DIR")
    ggml = Ggml(args.llama_bin_dir)
    rng = np.random.default_rng(12)
    data = {}
    for qtype in TYPES:
        x = rng.standard_normal((ROWS, COLS)).astype(np.float32)
        x[0, rng.integers(0, COLS, 5)] *= 40.0  # outliers
        x[1] = 0.0
        raw = np.concatenate([ggml.quantize(qtype, x), random_matrix_bytes(ROWS, COLS, qtype, rng, 0.05)])
        data[f"{qtype.name}_raw"] = raw.reshape(-1)
        data[f"{qtype.name}_ggml"] = ggml.to_float(qtype, raw, 2 * ROWS * COLS)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT.relative_to(ROOT)}: {', '.join(t.name for t in TYPES)}")


if __name__ == "__main__":
    main()
