"""The architectures ditto runs, each described once.

An entry says what differs between transformer families (as llama.cpp's
``llama-arch`` table and per-model graphs do): which optional tensors a
layer has, the rope style, the FFN activation, the embedding scale and
which layers use the sliding window. The loader (gguf_model.py) reads the
tensors an entry names; the native layer gets the entry as capability
flags (``native_flags``), never as a name. Adding an architecture is one
entry here, plus a kernel if it needs a new operation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Architecture", "ARCHITECTURES"]

# Capability flags, as native/ditto.h's enum dt_model_flag.
FLAG_ROPE_NEOX = 1 << 0
FLAG_QKV_BIAS = 1 << 1
FLAG_QK_NORM = 1 << 2
FLAG_POST_NORMS = 1 << 3
FLAG_GELU = 1 << 4


@dataclass(frozen=True)
class Architecture:
    name: str
    rope_neox: bool                 # rope pairs (x[i], x[i + hd/2]); False: (x[2i], x[2i+1])
    qkv_bias: str = "optional"      # "required" | "optional" (used when present)
    qk_norm: bool = False           # attn_q_norm / attn_k_norm: per-head RMSNorm before rope
    post_norms: bool = False        # post_attention_norm / post_ffw_norm on each branch's output
    activation: str = "silu"        # gate activation of the FFN: "silu" | "gelu_tanh"
    embd_scale_sqrt: bool = False   # embeddings multiplied by sqrt(n_embd)
    # 0: every layer slides when the file sets a window; n: layer i slides
    # iff i % n < n - 1 (llama.cpp's set_swa_pattern), the others attend
    # to everything.
    swa_pattern: int = 0
    # Rope base of sliding layers when the file has no rope.freq_base_swa
    # (None: the same base as the global layers).
    rope_base_swa: float | None = None
    # The FFN's gate and up matrices are one ffn_up tensor of 2 * n_ff rows,
    # gate first (llama.cpp's fused SwiGLU: silu(first half) * second half).
    fused_gate_up: bool = False
    # False: {arch}.attention.sliding_window is ignored, as llama.cpp does
    # where converters wrote windows the model does not use (phi3).
    reads_sliding_window: bool = True

    def layer_slides(self, layer: int, window: int, pattern: int | None = None) -> bool:
        n = self.swa_pattern if pattern is None else pattern
        return window > 0 and (n == 0 or layer % n < n - 1)

    def attention_scale(self, head_dim: int) -> float:
        return 1.0 / math.sqrt(head_dim)

    def embd_scale(self, n_embd: int) -> float:
        return math.sqrt(n_embd) if self.embd_scale_sqrt else 1.0

    @property
    def native_flags(self) -> int:
        """The entry as native/ditto.h's capability flags."""
        return (
            (FLAG_ROPE_NEOX if self.rope_neox else 0)
            | (FLAG_QKV_BIAS if self.qkv_bias == "required" else 0)
            | (FLAG_QK_NORM if self.qk_norm else 0)
            | (FLAG_POST_NORMS if self.post_norms else 0)
            | (FLAG_GELU if self.activation == "gelu_tanh" else 0)
        )


ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture("llama", rope_neox=False),
        Architecture("qwen2", rope_neox=True, qkv_bias="required"),
        # llama.cpp src/models/qwen3.cpp: per-head q/k RMSNorm, no biases in
        # released files (accepted when present, as llama.cpp does).
        Architecture("qwen3", rope_neox=True, qk_norm=True),
        # llama.cpp src/models/phi3.cpp: fused attn_qkv (any entry may have
        # it) and fused ffn_up; the window phi3 files carry is not used.
        Architecture("phi3", rope_neox=True, fused_gate_up=True, reads_sliding_window=False),
        # llama.cpp src/models/gemma3.cpp; the converter folds Gemma's
        # (1 + w) into the stored norm weights, so they multiply plainly.
        Architecture(
            "gemma3", rope_neox=True, qk_norm=True, post_norms=True, activation="gelu_tanh",
            embd_scale_sqrt=True, swa_pattern=6, rope_base_swa=10000.0,
        ),
    )
}

