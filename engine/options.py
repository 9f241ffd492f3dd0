"""Names and defaults that every front end shares (the command line, the
language server's settings, the editor clients' configuration): declared
once here, or taken from the code that owns them, so they cannot drift apart.
"""
from __future__ import annotations

from .. import _native  # the compiled extension, installed beside this package
from .drafters import DRAFTER_NAMES

VERSION = "0.1.0"   # pyproject.toml's and meson.build's (tests/test_options.py); not read from
                    # the installed metadata: importlib.metadata costs ~50 ms at every start

DEFAULT_CTX = 4096                  # context size in tokens per sequence
PRECISIONS = tuple(_native.PRECISIONS)   # the kernels' own names: exact, fast, q16
# q16 by measurement (bench/fidelity.py, SmolLM2, f16 KV): greedy continuations
# equal to the float64 reference on 10 / 10 prompts, top-1 agreement 99.97%
# (as exact), for ~1.7x exact's decode speed. Types it does not cover, and
# CPUs without AVX-512 VNNI, run exact.
DEFAULT_PRECISION = "q16"
PRECISION_HELP = {
    "exact": "f32 activations: greedy output equals a float64 reference",
    "fast": "int8 activations per block, integer dot products on q16's repacked weights (Q4_0, Q4_1, Q5_0, "
            "Q8_0, Q4_K): the fastest prefill, coarser than q16",
    "q16": "16-bit activations per block, integer dot products on repacked weights (Q4_0, Q4_1, Q5_0, Q8_0, "
           "Q4_K, Q6_K): faster steps, close to exact",
}
# The KV cache's element types (the kernels' names: f32, f16, bf16), after
# "auto": f16, or bf16 under the fast precision. f16 by measurement
# (bench/fidelity.py, SmolLM2): greedy continuations equal to the float64
# reference on 10 / 10 prompts and top-1 agreement 99.97% under exact, for
# half the KV memory and long-context bandwidth. bf16 pairs the cache for
# bf16 dot products (vdpbf16ps), which fast's prefill wants.
KV_TYPES = ("auto",) + tuple(_native.KV_TYPES)
DEFAULT_KV_TYPE = "auto"
KV_TYPE_HELP = {
    "auto": "f16, or bf16 with the fast precision",
    "f32": "keys and values in f32: logits exactly as the f32 kernels compute them",
    "f16": "keys and values rounded to f16: half the KV memory and the bytes a long-context step reads",
    "bf16": "keys and values rounded to bf16, attention's dot products on bf16 (twice the multiply-adds per "
            "instruction where the CPU has AVX512_BF16): f16's memory, coarser",
}


def resolve_kv_type(kv_type: str, precision: str) -> str:
    """The element type a KV_TYPES choice stands for under a precision."""
    if kv_type == "auto":
        return "bf16" if precision == "fast" else "f16"
    return kv_type


__all__ = ["DEFAULT_CTX", "DEFAULT_KV_TYPE", "DEFAULT_PRECISION", "DRAFTER_NAMES", "KV_TYPES", "KV_TYPE_HELP",
           "PRECISIONS", "PRECISION_HELP", "VERSION", "resolve_kv_type"]
