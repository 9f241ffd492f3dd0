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
KV_TYPES = tuple(_native.KV_TYPES)      # the KV cache's element types: f32, f16
# f16 by measurement (bench/fidelity.py, exact precision, SmolLM2): greedy
# continuations equal to the float64 reference on 10 / 10 prompts and top-1
# agreement 99.97%, for half the KV memory and long-context bandwidth.
DEFAULT_KV_TYPE = "f16"
KV_TYPE_HELP = {
    "f32": "keys and values in f32: logits exactly as the f32 kernels compute them",
    "f16": "keys and values rounded to f16: half the KV memory and the bytes a long-context step reads",
}

__all__ = ["DEFAULT_CTX", "DEFAULT_KV_TYPE", "DEFAULT_PRECISION", "DRAFTER_NAMES", "KV_TYPES", "KV_TYPE_HELP",
           "PRECISIONS", "PRECISION_HELP", "VERSION"]
