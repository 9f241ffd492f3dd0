"""Load and validate a GGUF model file for ditto's native kernels.

Everything the C layer will trust (hyperparameters, tensor shapes, types,
byte ranges) is checked here, in Python, first. Loading runs in two steps:

1. ``gguf_reader.read_gguf``: a bounded walk over the raw header (magic,
   version, every metadata key/value, the tensor table, tensor byte ranges)
   that keeps the values and maps the file. After it, the header is known
   to be well formed and every length is bounded by the file size and by
   the reader's MAX_* limits.
2. Semantic checks: architecture, hyperparameters, tokenizer data, every
   tensor's presence, shape and type.

Policy choices (documented for the rest of ditto):

- Architectures: those of ``architectures.ARCHITECTURES`` (llama, qwen2,
  qwen3, gemma3, phi3); the entry says which tensors a layer has. q/k/v
  biases are read when present (some llama-arch conversions carry them) and
  required where the entry says so (qwen2). q/k/v may be one fused
  ``attn_qkv`` tensor in any architecture (as llama.cpp accepts); fused
  matrices become row views of the mapping, so C sees plain matrices.
- Unknown extra tensors are refused, naming them: a tensor ditto would
  ignore (``rope_freqs.weight``, an output bias, ...) means a model variant
  whose forward pass ditto does not implement.
- Rope scaling: only none/absent (or a factor of 1.0). Partial rope
  (``rope.dimension_count`` != head_dim) is refused.
- Special token ids outside the vocabulary are ignored (``None``), as
  llama.cpp does, rather than refusing an otherwise usable model.
- ``metadata`` holds every key as a plain Python value except the three
  large tokenizer arrays (tokens, token_type, merges: they are in
  ``TokenizerData``) and nested arrays (no ditto key uses them).
- Only little-endian GGUF, versions 2 and 3.
"""

from __future__ import annotations

import math
import os
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .architectures import ARCHITECTURES, Architecture
from .ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType
from .gguf_reader import MAX_ARRAY_LEN, Field, GGUFError, GGUFFile, TensorInfo, read_gguf
from .packed import InvalidItem, PackedStrings

__all__ = [
    "GGUFError",
    "SUPPORTED_ARCHS",
    "SUPPORTED_TYPES",
    "VECTOR_TYPES",
    "HParams",
    "WeightMatrix",
    "LayerWeights",
    "TokenizerData",
    "ModelFile",
    "load_model_file",
    "row_bytes",
]

Q = GGMLQuantizationType


SUPPORTED_ARCHS = tuple(ARCHITECTURES)
SUPPORTED_TYPES = frozenset(
    {Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K,
     Q.IQ4_NL, Q.IQ4_XS}
)
# Norms and biases: converted to float32, so only float types make sense.
VECTOR_TYPES = frozenset({Q.F32, Q.F16, Q.BF16})

# ---- limits of the semantic checks (the reader bounds the header itself)
MAX_VOCAB = MAX_ARRAY_LEN
MAX_EMBD = 1 << 16
MAX_LAYER = 1024
MAX_HEAD = 1024
MAX_HEAD_DIM = 1024
MAX_FF = 1 << 18
MAX_CTX = 1 << 24

_INT_VTYPES = frozenset(
    {
        GGUFValueType.UINT8, GGUFValueType.INT8, GGUFValueType.UINT16, GGUFValueType.INT16,
        GGUFValueType.UINT32, GGUFValueType.INT32, GGUFValueType.UINT64, GGUFValueType.INT64,
    }
)
_FLOAT_VTYPES = frozenset({GGUFValueType.FLOAT32, GGUFValueType.FLOAT64})

# Tokenizer arrays kept out of ModelFile.metadata (TokenizerData has them).
_BIG_TOKENIZER_KEYS = frozenset(
    {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.scores"}
)


# ---------------------------------------------------------------------------
# public data types
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HParams:
    arch: str               # a key of architectures.ARCHITECTURES
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int           # n_embd // n_head, or {arch}.attention.key_length
    n_ff: int
    n_ctx_train: int
    rms_eps: float
    rope_base: float
    rope_neox: bool         # False: adjacent pairs (llama); True: halves (qwen2)
    sliding_window: int     # 0 = full attention
    # which layers use the window (None: all of them when it is set)
    swa_layers: tuple[bool, ...] | None = None
    rope_base_swa: float = 0.0  # rope base of the sliding layers (0: rope_base)

    @property
    def architecture(self) -> Architecture:
        return ARCHITECTURES[self.arch]

    def layer_slides(self, layer: int) -> bool:
        if self.swa_layers is None:
            return self.sliding_window > 0
        return self.swa_layers[layer]


@dataclass(frozen=True)
class WeightMatrix:
    name: str
    type: int               # GGML type number
    rows: int               # out features
    cols: int               # in features
    data: np.ndarray        # uint8 (rows, row_bytes), memory-mapped, C-contiguous

    @property
    def type_name(self) -> str:
        return Q(self.type).name


@dataclass(frozen=True)
class LayerWeights:
    attn_norm: np.ndarray           # float32 (n_embd,)
    wq: WeightMatrix                # (n_head*hd, n_embd)
    wk: WeightMatrix                # (n_head_kv*hd, n_embd)
    wv: WeightMatrix                # (n_head_kv*hd, n_embd)
    wo: WeightMatrix                # (n_embd, n_head*hd)
    bq: np.ndarray | None           # float32 (n_head*hd,) or None
    bk: np.ndarray | None           # float32 (n_head_kv*hd,) or None
    bv: np.ndarray | None           # float32 (n_head_kv*hd,) or None
    ffn_norm: np.ndarray            # float32 (n_embd,)
    w_gate: WeightMatrix            # (n_ff, n_embd)
    w_up: WeightMatrix              # (n_ff, n_embd)
    w_down: WeightMatrix            # (n_embd, n_ff)
    # per-head q/k norms and the norms of each branch's output (gemma3), or None
    q_norm: np.ndarray | None = None         # float32 (hd,)
    k_norm: np.ndarray | None = None         # float32 (hd,)
    post_attn_norm: np.ndarray | None = None  # float32 (n_embd,)
    post_ffn_norm: np.ndarray | None = None   # float32 (n_embd,)


@dataclass(frozen=True)
class TokenizerData:
    model: str                      # tokenizer.ggml.model ("gpt2", "llama", ...)
    pre: str                        # tokenizer.ggml.pre, "default" if absent
    tokens: Sequence[str]           # PackedStrings: one buffer, not 50k-262k objects
    token_types: list[int]          # 1 normal, 3 control, 4 user-defined, ...
    merges: Sequence[str]           # PackedStrings
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    pad_id: int | None
    add_bos: bool
    fim_prefix_id: int | None
    fim_suffix_id: int | None
    fim_middle_id: int | None
    chat_template: str | None
    fim_pad_id: int | None = None
    fim_rep_id: int | None = None       # repository name (repo-level FIM prompts)
    fim_sep_id: int | None = None       # file separator (repo-level FIM prompts)
    scores: Sequence[float] | None = None  # array('d'); SentencePiece ("llama") vocabularies: merge priorities
    add_space_prefix: bool = False      # SentencePiece: a space before the text
    # Phi-3 (llama.cpp decides by general.name): parsed special tokens eat the whitespace after them
    rstrip_specials: bool = False


@dataclass(frozen=True)
class ModelFile:
    path: str
    hparams: HParams
    metadata: dict[str, object]
    tok_embd: WeightMatrix          # (n_vocab, n_embd)
    output_norm: np.ndarray         # float32 (n_embd,)
    output: WeightMatrix            # output.weight, or tok_embd when tied
    layers: tuple[LayerWeights, ...]
    tokenizer: TokenizerData
    sha256_prefix: str              # sha256 of (file size, header bytes): a cheap identity

    @property
    def tied_output(self) -> bool:
        return self.output is self.tok_embd


def row_bytes(qtype: int, n: int) -> int:
    """Bytes of one row of n values (n a multiple of the type's block size)."""
    block, size = GGML_QUANT_SIZES[Q(qtype)]
    return n // block * size


# ---------------------------------------------------------------------------
# typed metadata access
# ---------------------------------------------------------------------------

_REQUIRED = object()


class _Meta:
    """Typed getters over the reader's fields; errors name the key."""

    def __init__(self, fields: dict[str, Field]):
        self.fields = fields

    def _field(self, key: str, default: Any) -> Field | None:
        f = self.fields.get(key)
        if f is None and default is _REQUIRED:
            raise GGUFError(f"required metadata key {key!r} is missing")
        return f

    def int(self, key: str, lo: int, hi: int, default: Any = _REQUIRED) -> Any:
        f = self._field(key, default)
        if f is None:
            return default
        if f.type not in _INT_VTYPES:
            raise GGUFError(f"metadata key {key!r} must be an integer, not {f.type.name}")
        v = int(f.value)
        if not lo <= v <= hi:
            raise GGUFError(f"metadata key {key!r} = {v} is out of range [{lo}, {hi}]")
        return v

    def float(self, key: str, lo: float, hi: float, default: Any = _REQUIRED) -> Any:
        f = self._field(key, default)
        if f is None:
            return default
        if f.type not in _FLOAT_VTYPES and f.type not in _INT_VTYPES:
            raise GGUFError(f"metadata key {key!r} must be a number, not {f.type.name}")
        v = float(f.value)
        if not (math.isfinite(v) and lo <= v <= hi):
            raise GGUFError(f"metadata key {key!r} = {v} is out of range [{lo}, {hi}]")
        return v

    def bool(self, key: str, default: Any = _REQUIRED) -> Any:
        f = self._field(key, default)
        if f is None:
            return default
        if f.type != GGUFValueType.BOOL:
            raise GGUFError(f"metadata key {key!r} must be a bool, not {f.type.name}")
        return bool(f.value)

    def str(self, key: str, default: Any = _REQUIRED) -> Any:
        f = self._field(key, default)
        if f is None:
            return default
        if f.type != GGUFValueType.STRING:
            raise GGUFError(f"metadata key {key!r} must be a string, not {f.type.name}")
        try:
            return f.value.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"metadata key {key!r} is not valid UTF-8") from None

    def _array(self, key: str, sub: frozenset, default: Any) -> Field | None:
        f = self._field(key, default)
        if f is None:
            return None
        if f.type != GGUFValueType.ARRAY:
            raise GGUFError(f"metadata key {key!r} must be an array, not {f.type.name}")
        if f.nested:
            raise GGUFError(f"metadata key {key!r}: nested arrays are not supported")
        if len(f.value) and f.element not in sub:  # empty arrays need no element type
            raise GGUFError(f"metadata key {key!r} has elements of the wrong type {f.element.name}")
        return f

    def strings(self, key: str, default: Any = _REQUIRED) -> Any:
        """A string array, packed (PackedStrings)."""
        f = self._array(key, frozenset({GGUFValueType.STRING}), default)
        if f is None:
            return default
        try:
            return PackedStrings.from_utf8(f.value)
        except InvalidItem as e:
            raise GGUFError(f"metadata key {key!r}: element {e.index} is not valid UTF-8") from None

    def floats(self, key: str, default: Any = _REQUIRED) -> Any:
        """A float array as array('d')."""
        f = self._array(key, _FLOAT_VTYPES, default)
        if f is None:
            return default
        if not np.isfinite(f.value).all():
            raise GGUFError(f"metadata key {key!r} holds a value that is not finite")
        return array("d", f.value.astype(np.float64).tobytes())

    def int_list(self, key: str, default: Any = _REQUIRED) -> Any:
        f = self._array(key, _INT_VTYPES, default)
        if f is None:
            return default
        return [int(v) for v in f.value]


def _plain_metadata(fields: dict[str, Field]) -> dict[str, object]:
    """Every key as a plain Python value, but the big tokenizer arrays and
    nested arrays (no ditto key uses them)."""
    return {key: _plain_value(f) for key, f in fields.items()
            if key not in _BIG_TOKENIZER_KEYS and not f.nested}


def _plain_value(f: Field) -> object:
    if f.type == GGUFValueType.STRING:
        return f.value.decode("utf-8", errors="replace")
    if f.type != GGUFValueType.ARRAY:
        return f.value
    if f.element == GGUFValueType.STRING:
        return [b.decode("utf-8", errors="replace") for b in f.value]
    return f.value.tolist()


# ---------------------------------------------------------------------------
# hyperparameters
# ---------------------------------------------------------------------------


def _read_arch(meta: _Meta) -> Architecture:
    arch = meta.str("general.architecture")
    if arch not in ARCHITECTURES:
        raise GGUFError(
            f"unsupported model architecture {arch!r} (supported: {', '.join(SUPPORTED_ARCHS)})"
        )
    return ARCHITECTURES[arch]


def _read_hparams(meta: _Meta, arch: Architecture, n_vocab: int) -> HParams:
    a = arch.name
    n_embd = meta.int(f"{a}.embedding_length", 1, MAX_EMBD)
    n_layer = meta.int(f"{a}.block_count", 1, MAX_LAYER)
    n_head = meta.int(f"{a}.attention.head_count", 1, MAX_HEAD)
    n_head_kv = meta.int(f"{a}.attention.head_count_kv", 1, MAX_HEAD, default=n_head)
    n_ff = meta.int(f"{a}.feed_forward_length", 1, MAX_FF)
    n_ctx_train = meta.int(f"{a}.context_length", 1, MAX_CTX)
    # the lower bound as float32, the type GGUF files store it in
    rms_eps = meta.float(f"{a}.attention.layer_norm_rms_epsilon", float(np.float32(1e-12)), 0.1)
    rope_base = meta.float(f"{a}.rope.freq_base", 1.0, 1e12, default=10000.0)
    sliding_window = meta.int(f"{a}.attention.sliding_window", 0, MAX_CTX, default=0)
    if not arch.reads_sliding_window:
        sliding_window = 0

    if n_head % n_head_kv:
        raise GGUFError(
            f"{a}.attention.head_count ({n_head}) is not divisible by head_count_kv ({n_head_kv})"
        )
    head_dim = _read_head_dim(meta, a, n_embd, n_head)
    rope_dims = meta.int(f"{a}.rope.dimension_count", 1, MAX_HEAD_DIM, default=head_dim)
    if rope_dims != head_dim:
        raise GGUFError(
            f"partial rope is not supported: {a}.rope.dimension_count = {rope_dims}, "
            f"head dimension = {head_dim}"
        )
    _check_rope_scaling(meta, a)
    softcap = meta.float(f"{a}.final_logit_softcapping", -1e9, 1e9, default=0.0)
    if softcap:
        raise GGUFError(f"final logit softcapping ({a}.final_logit_softcapping = {softcap}) is not supported")
    vocab_key = meta.int(f"{a}.vocab_size", 1, MAX_VOCAB, default=n_vocab)
    if vocab_key != n_vocab:
        raise GGUFError(f"{a}.vocab_size = {vocab_key} but the tokenizer lists {n_vocab} tokens")

    pattern = meta.int(f"{a}.attention.sliding_window_pattern", 0, MAX_LAYER, default=None)
    swa_layers = None
    if sliding_window and (arch.swa_pattern or pattern):
        swa_layers = tuple(arch.layer_slides(i, sliding_window, pattern) for i in range(n_layer))
    rope_base_swa = 0.0
    if sliding_window:
        rope_base_swa = meta.float(f"{a}.rope.freq_base_swa", 1.0, 1e12, default=arch.rope_base_swa or 0.0)

    return HParams(
        arch=a, n_vocab=n_vocab, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        n_head_kv=n_head_kv, head_dim=head_dim, n_ff=n_ff, n_ctx_train=n_ctx_train,
        rms_eps=rms_eps, rope_base=rope_base, rope_neox=arch.rope_neox,
        sliding_window=sliding_window, swa_layers=swa_layers, rope_base_swa=rope_base_swa,
    )


def _read_head_dim(meta: _Meta, a: str, n_embd: int, n_head: int) -> int:
    key_len = meta.int(f"{a}.attention.key_length", 1, MAX_HEAD_DIM, default=None)
    if key_len is None:
        if n_embd % n_head:
            raise GGUFError(
                f"{a}.embedding_length ({n_embd}) is not divisible by "
                f"{a}.attention.head_count ({n_head})"
            )
        head_dim = n_embd // n_head
    else:
        head_dim = key_len
    val_len = meta.int(f"{a}.attention.value_length", 1, MAX_HEAD_DIM, default=head_dim)
    if val_len != head_dim:
        raise GGUFError(
            f"{a}.attention.value_length ({val_len}) differs from the key length ({head_dim}): not supported"
        )
    if head_dim % 2 or head_dim > MAX_HEAD_DIM:
        raise GGUFError(f"head dimension {head_dim} must be even and at most {MAX_HEAD_DIM} (rope pairs)")
    return head_dim


def _check_rope_scaling(meta: _Meta, a: str) -> None:
    kind = meta.str(f"{a}.rope.scaling.type", default="none")
    if kind != "none":
        raise GGUFError(f"rope scaling type {kind!r} is not supported (only none)")
    for key in (f"{a}.rope.scaling.factor", f"{a}.rope.scale_linear"):
        factor = meta.float(key, -1e9, 1e9, default=1.0)
        if factor not in (0.0, 1.0):  # 0 and 1 both mean "no scaling"
            raise GGUFError(f"rope scaling ({key} = {factor}) is not supported")


# ---------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------


def _read_tokenizer(meta: _Meta) -> TokenizerData:
    t = "tokenizer.ggml."
    model = meta.str(t + "model")
    tokens = meta.strings(t + "tokens")
    n_vocab = len(tokens)
    if n_vocab == 0:
        raise GGUFError("tokenizer.ggml.tokens is empty")
    types = meta.int_list(t + "token_type", default=None)
    if types is None:
        types = [1] * n_vocab
    elif len(types) != n_vocab:
        raise GGUFError(f"tokenizer.ggml.token_type has {len(types)} entries for {n_vocab} tokens")
    merges = meta.strings(t + "merges", default=[])
    scores = meta.floats(t + "scores", default=None)
    if scores is not None and len(scores) != n_vocab:
        raise GGUFError(f"tokenizer.ggml.scores has {len(scores)} entries for {n_vocab} tokens")

    def special(*keys: str) -> int | None:
        # like llama.cpp: an id outside the vocabulary is ignored
        for key in keys:
            v = meta.int(t + key, -(1 << 63), (1 << 64) - 1, default=None)
            if v is not None:
                return v if 0 <= v < n_vocab else None
        return None

    return TokenizerData(
        model=model,
        pre=meta.str(t + "pre", default="default"),
        tokens=tokens,
        token_types=types,
        merges=merges,
        bos_id=special("bos_token_id"),
        eos_id=special("eos_token_id"),
        eot_id=special("eot_token_id"),
        pad_id=special("padding_token_id"),
        add_bos=meta.bool(t + "add_bos_token", default=(model == "llama")),
        fim_prefix_id=special("fim_pre_token_id", "prefix_token_id"),
        fim_suffix_id=special("fim_suf_token_id", "suffix_token_id"),
        fim_middle_id=special("fim_mid_token_id", "middle_token_id"),
        chat_template=meta.str("tokenizer.chat_template", default=None),
        fim_pad_id=special("fim_pad_token_id"),
        fim_rep_id=special("fim_rep_token_id"),
        fim_sep_id=special("fim_sep_token_id"),
        scores=scores,
        # llama.cpp's default for SentencePiece vocabularies is a prefix space
        add_space_prefix=meta.bool(t + "add_space_prefix", default=(model == "llama")),
        rstrip_specials=any(n in meta.str("general.name", default="").lower() for n in ("phi-3", "phi3")),
    )


# ---------------------------------------------------------------------------
# tensors
# ---------------------------------------------------------------------------


class _Tensors:
    """Looks tensors up by name, checks them, and tracks which were used."""

    def __init__(self, file: GGUFFile):
        self.file = file
        self.used: set[str] = set()

    def has(self, name: str) -> bool:
        return name in self.file.tensors

    def _get(self, name: str, shape: tuple[int, ...], allowed: frozenset) -> tuple[TensorInfo, Q]:
        t = self.file.tensors.get(name)
        if t is None:
            raise GGUFError(f"tensor {name!r} is missing")
        self.used.add(name)
        ne = list(t.shape)
        while len(ne) > len(shape) and ne[-1] == 1:
            ne.pop()  # trailing 1s carry no meaning in ggml shapes
        if tuple(ne) != shape:
            raise GGUFError(f"tensor {name!r} has shape {ne}, expected {list(shape)}")
        qt = Q(t.type)
        if qt not in allowed:
            names = ", ".join(sorted(x.name for x in allowed))
            raise GGUFError(f"tensor {name!r} has type {qt.name}, which ditto does not support (supported: {names})")
        return t, qt

    def matrix(self, name: str, rows: int, cols: int) -> WeightMatrix:
        t, qt = self._get(name, (cols, rows), SUPPORTED_TYPES)
        # a view on the mapping; its .base keeps the mapping alive
        data = self.file.tensor_bytes(t).reshape(rows, row_bytes(qt, cols))
        if data.ctypes.data % 4:
            # only with a general.alignment < 4: the kernels read f32/f16 in place
            raise GGUFError(f"tensor {name!r}: data is not 4-byte aligned in the file")
        return WeightMatrix(name=name, type=int(qt), rows=rows, cols=cols, data=data)

    def matrix_parts(self, name: str, parts: tuple[int, ...], cols: int) -> list[WeightMatrix]:
        """A fused matrix (attn_qkv, phi3's ffn_up) as consecutive row blocks
        of `parts` rows each: views on the mapping, no copy, as llama.cpp's
        views of the fused product."""
        whole = self.matrix(name, sum(parts), cols)
        out, lo = [], 0
        for rows in parts:
            data = whole.data[lo:lo + rows]
            if data.ctypes.data % 4:
                raise GGUFError(f"tensor {name!r}: rows {lo}.. are not 4-byte aligned in the file")
            out.append(WeightMatrix(name=f"{name}[{lo}:{lo + rows}]", type=whole.type, rows=rows,
                                    cols=cols, data=data))
            lo += rows
        return out

    def vector_parts(self, name: str, parts: tuple[int, ...]) -> list[np.ndarray]:
        whole = self.vector(name, sum(parts))
        bounds = np.cumsum((0,) + parts)
        return [whole[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def vector(self, name: str, n: int) -> np.ndarray:
        t, qt = self._get(name, (n,), VECTOR_TYPES)
        raw = self.file.tensor_bytes(t)
        if qt == Q.BF16:
            bits = raw.view("<u2").astype(np.uint32) << 16
            return bits.view(np.float32)
        if qt == Q.F16:
            return raw.view("<f2").astype(np.float32)
        # F32: keep the mapping when the C side can read it as float*
        if raw.ctypes.data % 4:
            return raw.copy().view("<f4")
        return raw.view("<f4")

    def unused(self) -> list[str]:
        return [n for n in self.file.tensors if n not in self.used]


def _read_layer(ts: _Tensors, hp: HParams, i: int) -> LayerWeights:
    p = f"blk.{i}."
    d = hp.n_embd
    arch = hp.architecture

    def norm_if(present: bool, name: str, n: int) -> np.ndarray | None:
        return ts.vector(p + name, n) if present else None

    if arch.fused_gate_up:
        w_gate, w_up = ts.matrix_parts(p + "ffn_up.weight", (hp.n_ff, hp.n_ff), d)
    else:
        w_gate, w_up = ts.matrix(p + "ffn_gate.weight", hp.n_ff, d), ts.matrix(p + "ffn_up.weight", hp.n_ff, d)
    wq, wk, wv, bq, bk, bv = _read_qkv(ts, hp, p)
    return LayerWeights(
        attn_norm=ts.vector(p + "attn_norm.weight", d),
        wq=wq, wk=wk, wv=wv,
        wo=ts.matrix(p + "attn_output.weight", d, hp.n_head * hp.head_dim),
        bq=bq, bk=bk, bv=bv,
        ffn_norm=ts.vector(p + "ffn_norm.weight", d),
        w_gate=w_gate, w_up=w_up,
        w_down=ts.matrix(p + "ffn_down.weight", d, hp.n_ff),
        q_norm=norm_if(arch.qk_norm, "attn_q_norm.weight", hp.head_dim),
        k_norm=norm_if(arch.qk_norm, "attn_k_norm.weight", hp.head_dim),
        post_attn_norm=norm_if(arch.post_norms, "post_attention_norm.weight", d),
        post_ffn_norm=norm_if(arch.post_norms, "post_ffw_norm.weight", d),
    )


def _read_qkv(ts: _Tensors, hp: HParams, p: str) -> tuple:
    """wq, wk, wv and their biases (or None): separate tensors, or one fused
    attn_qkv (q rows, then k, then v) with a fused or separate bias, the
    forms llama.cpp's create_tensor_qkv accepts for every architecture."""
    d, q_dim, kv_dim = hp.n_embd, hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim
    dims = (q_dim, kv_dim, kv_dim)
    if ts.has(p + "attn_qkv.weight"):
        weights = ts.matrix_parts(p + "attn_qkv.weight", dims, d)
    else:
        weights = [ts.matrix(p + f"attn_{x}.weight", n, d) for x, n in zip("qkv", dims)]
    if ts.has(p + "attn_qkv.bias"):
        return (*weights, *ts.vector_parts(p + "attn_qkv.bias", dims))
    required = hp.architecture.qkv_bias == "required"
    biases = [ts.vector(p + f"attn_{x}.bias", n) if required or ts.has(p + f"attn_{x}.bias") else None
              for x, n in zip("qkv", dims)]
    return (*weights, *biases)


def _refuse_unused(ts: _Tensors) -> None:
    extra = ts.unused()
    if not extra:
        return
    if "rope_freqs.weight" in extra:
        raise GGUFError("tensor 'rope_freqs.weight' (llama3-style rope scaling) is not supported")
    longrope = [n for n in extra if n.startswith("rope_factors_")]
    if longrope:
        raise GGUFError(f"tensor {longrope[0]!r} (phi3 longrope scaling, 128k-context variants) is not supported")
    shown = ", ".join(repr(n) for n in extra[:5])
    more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
    raise GGUFError(f"unexpected tensors for this architecture: {shown}{more}")


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------


def load_model_file(path: str | os.PathLike) -> ModelFile:
    """Opens, validates and memory-maps a GGUF model. Raises GGUFError."""
    path = os.fspath(path)
    file = read_gguf(path)
    meta = _Meta(file.fields)

    arch = _read_arch(meta)
    tokenizer = _read_tokenizer(meta)
    hp = _read_hparams(meta, arch, len(tokenizer.tokens))

    ts = _Tensors(file)
    tok_embd = ts.matrix("token_embd.weight", hp.n_vocab, hp.n_embd)
    output_norm = ts.vector("output_norm.weight", hp.n_embd)
    if ts.has("output.weight"):
        output = ts.matrix("output.weight", hp.n_vocab, hp.n_embd)
    else:
        output = tok_embd  # tied embeddings
    layers = tuple(_read_layer(ts, hp, i) for i in range(hp.n_layer))
    _refuse_unused(ts)

    return ModelFile(
        path=path,
        hparams=hp,
        metadata=_plain_metadata(file.fields),
        tok_embd=tok_embd,
        output_norm=output_norm,
        output=output,
        layers=layers,
        tokenizer=tokenizer,
        sha256_prefix=file.identity,
    )
