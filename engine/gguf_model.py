"""Load and validate a GGUF model file for ditto's native kernels.

Everything the C layer will trust (hyperparameters, tensor shapes, types,
byte ranges) is checked here, in Python, first. Loading runs in three steps:

1. ``_prescan``: a bounded walk over the raw header (magic, version, every
   metadata key/value, the tensor table, tensor byte ranges). It exists
   because ``gguf.GGUFReader`` trusts length fields: a huge array length
   makes it loop (and allocate) for ever, and tensor data past the end of
   the file comes back as a silently short array. After the prescan, the
   header is known to be well formed and every length is bounded by the
   file size and by the MAX_* limits below.
2. ``gguf.GGUFReader`` parses the same header (memory-mapped, no copies of
   tensor data). Any exception it still raises becomes a ``GGUFError``.
3. Semantic checks: architecture, hyperparameters, tokenizer data, every
   tensor's presence, shape and type.

Policy choices (documented for the rest of ditto):

- Architectures: ``llama`` and ``qwen2``. qwen2 requires q/k/v biases;
  llama accepts q/k/v biases if present (some llama-arch conversions carry
  them; ``dt_layer`` has the pointers) and otherwise leaves them ``None``.
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

import hashlib
import math
import mmap
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFValueType

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


class GGUFError(ValueError):
    """A model file ditto cannot use; the message names the problem."""


SUPPORTED_ARCHS = ("llama", "qwen2")
SUPPORTED_TYPES = frozenset(
    {Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q5_K, Q.Q6_K}
)
# Norms and biases: converted to float32, so only float types make sense.
VECTOR_TYPES = frozenset({Q.F32, Q.F16, Q.BF16})

# ---- limits: generous for real models, small enough that nothing absurd
# ---- is allocated or looped over because a header says so.
MAX_TENSORS = 1 << 16
MAX_KV = 1 << 16
MAX_KEY_LEN = 1 << 16
MAX_TENSOR_NAME_LEN = 1 << 10
MAX_STRING_LEN = 1 << 24          # chat templates are tens of KB
MAX_ARRAY_LEN = 1 << 20           # largest real vocabularies are ~262k
MAX_TOTAL_ARRAY_ELEMS = 1 << 22   # GGUFReader builds a numpy view per element
MAX_ARRAY_DEPTH = 4
MAX_DIMS = 4                      # GGML_MAX_DIMS
MAX_ALIGNMENT = 1 << 16

MAX_VOCAB = MAX_ARRAY_LEN
MAX_EMBD = 1 << 16
MAX_LAYER = 1024
MAX_HEAD = 1024
MAX_HEAD_DIM = 1024
MAX_FF = 1 << 18
MAX_CTX = 1 << 24

_GGUF_MAGIC = b"GGUF"
_GGUF_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32

_SCALAR_FMT = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
    GGUFValueType.BOOL: "<?",
}
_INT_VTYPES = frozenset(
    {
        GGUFValueType.UINT8, GGUFValueType.INT8, GGUFValueType.UINT16, GGUFValueType.INT16,
        GGUFValueType.UINT32, GGUFValueType.INT32, GGUFValueType.UINT64, GGUFValueType.INT64,
    }
)
_FLOAT_VTYPES = frozenset({GGUFValueType.FLOAT32, GGUFValueType.FLOAT64})

# Tokenizer arrays kept out of ModelFile.metadata (TokenizerData has them).
_BIG_TOKENIZER_KEYS = frozenset(
    {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"}
)


# ---------------------------------------------------------------------------
# public data types
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HParams:
    arch: str               # "llama" | "qwen2"
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


@dataclass(frozen=True)
class TokenizerData:
    model: str                      # tokenizer.ggml.model ("gpt2", "llama", ...)
    pre: str                        # tokenizer.ggml.pre, "default" if absent
    tokens: list[str]
    token_types: list[int]          # 1 normal, 3 control, 4 user-defined, ...
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    pad_id: int | None
    add_bos: bool
    fim_prefix_id: int | None
    fim_suffix_id: int | None
    fim_middle_id: int | None
    chat_template: str | None


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


def _type_name(raw: int) -> str:
    try:
        return Q(raw).name
    except ValueError:
        return f"unknown type {raw}"


# ---------------------------------------------------------------------------
# step 1: bounded walk over the raw header
# ---------------------------------------------------------------------------


@dataclass
class _Prescan:
    file_size: int
    data_start: int
    identity: str


class _HeaderWalker:
    """Cursor over the header bytes; every read is bounds-checked."""

    def __init__(self, buf: mmap.mmap, size: int):
        self.buf = buf
        self.size = size
        self.pos = 0
        self.array_elems = 0

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise GGUFError(
                f"file is truncated: {what} at byte {self.pos} needs {n} bytes, "
                f"only {self.size - self.pos} remain"
            )

    def scalar(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def u32(self, what: str) -> int:
        return self.scalar("<I", what)

    def u64(self, what: str) -> int:
        return self.scalar("<Q", what)

    def string(self, what: str, limit: int) -> bytes:
        n = self.u64(f"length of {what}")
        if n > limit:
            raise GGUFError(f"{what}: string length {n} exceeds the limit of {limit} bytes")
        self.need(n, what)
        s = self.buf[self.pos : self.pos + n]
        self.pos += n
        return s

    def value(self, vtype: int, key: str, depth: int = 0) -> Any:
        """Skips (or returns, for scalars) one value of type vtype."""
        try:
            vt = GGUFValueType(vtype)
        except ValueError:
            raise GGUFError(f"metadata key {key!r} has unknown value type {vtype}") from None
        if vt in _SCALAR_FMT:
            return self.scalar(_SCALAR_FMT[vt], f"value of {key!r}")
        if vt == GGUFValueType.STRING:
            self.string(f"value of {key!r}", MAX_STRING_LEN)
            return None
        return self.array(key, depth)

    def array(self, key: str, depth: int) -> None:
        if depth >= MAX_ARRAY_DEPTH:
            raise GGUFError(f"metadata key {key!r}: arrays nested deeper than {MAX_ARRAY_DEPTH}")
        itype = self.u32(f"array element type of {key!r}")
        n = self.u64(f"array length of {key!r}")
        if n > MAX_ARRAY_LEN:
            raise GGUFError(f"metadata key {key!r}: array length {n} exceeds the limit of {MAX_ARRAY_LEN}")
        self.array_elems += n
        if self.array_elems > MAX_TOTAL_ARRAY_ELEMS:
            raise GGUFError(f"metadata arrays hold more than {MAX_TOTAL_ARRAY_ELEMS} elements in total")
        try:
            it = GGUFValueType(itype)
        except ValueError:
            raise GGUFError(f"metadata key {key!r}: array of unknown value type {itype}") from None
        if it in _SCALAR_FMT:
            # fixed-size elements: skip them in one step
            nbytes = n * struct.calcsize(_SCALAR_FMT[it])
            self.need(nbytes, f"array data of {key!r}")
            self.pos += nbytes
            return
        # every string or sub-array takes at least 8 bytes: bounds the loop
        self.need(n * 8, f"array data of {key!r}")
        for _ in range(n):
            self.value(itype, key, depth + 1)


def _prescan(path: str) -> _Prescan:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise GGUFError("file is empty")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _walk_header(buf, size)
    except OSError as e:
        raise GGUFError(f"cannot read model file: {e}") from e


def _walk_header(buf: mmap.mmap, size: int) -> _Prescan:
    w = _HeaderWalker(buf, size)
    w.need(4, "magic")
    if buf[0:4] != _GGUF_MAGIC:
        raise GGUFError(f"not a GGUF file: bad magic {bytes(buf[0:4])!r} (expected b'GGUF')")
    w.pos = 4
    version = w.u32("version")
    if version not in _GGUF_VERSIONS:
        if version & 0xFFFF == 0 and (version >> 24) in _GGUF_VERSIONS:
            raise GGUFError("big-endian GGUF files are not supported")
        raise GGUFError(f"unsupported GGUF version {version} (supported: 2, 3)")
    n_tensors = w.u64("tensor count")
    n_kv = w.u64("metadata key count")
    if n_tensors > MAX_TENSORS:
        raise GGUFError(f"tensor count {n_tensors} exceeds the limit of {MAX_TENSORS}")
    if n_kv > MAX_KV:
        raise GGUFError(f"metadata key count {n_kv} exceeds the limit of {MAX_KV}")

    alignment = _walk_metadata(w, n_kv)
    tensors = _walk_tensor_infos(w, n_tensors)

    data_start = -(-w.pos // alignment) * alignment
    for name, ne, qtype, offset in tensors:
        _check_tensor_range(name, ne, qtype, offset, alignment, data_start, size)

    h = hashlib.sha256()
    h.update(struct.pack("<Q", size))
    h.update(buf[0 : w.pos])
    return _Prescan(file_size=size, data_start=data_start, identity=h.hexdigest())


def _walk_metadata(w: _HeaderWalker, n_kv: int) -> int:
    """Walks the key/value section; returns the data alignment."""
    seen: set[str] = set()
    alignment = _DEFAULT_ALIGNMENT
    for i in range(n_kv):
        raw = w.string(f"key of metadata entry {i}", MAX_KEY_LEN)
        key = _decode(raw, f"key of metadata entry {i}")
        if key in seen:
            raise GGUFError(f"duplicate metadata key {key!r}")
        seen.add(key)
        vtype = w.u32(f"value type of {key!r}")
        v = w.value(vtype, key)
        if key == "general.alignment":
            if vtype != GGUFValueType.UINT32:
                raise GGUFError("general.alignment must be a uint32")
            if v == 0 or v & (v - 1) or v > MAX_ALIGNMENT:
                raise GGUFError(f"general.alignment = {v} is not a power of two <= {MAX_ALIGNMENT}")
            alignment = v
    return alignment


def _walk_tensor_infos(w: _HeaderWalker, n_tensors: int) -> list[tuple[str, list[int], int, int]]:
    seen: set[str] = set()
    out = []
    for i in range(n_tensors):
        name = _decode(w.string(f"name of tensor {i}", MAX_TENSOR_NAME_LEN), f"name of tensor {i}")
        if name in seen:
            raise GGUFError(f"duplicate tensor {name!r}")
        seen.add(name)
        n_dims = w.u32(f"dimension count of tensor {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise GGUFError(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        ne = [w.u64(f"dimension {d} of tensor {name!r}") for d in range(n_dims)]
        qtype = w.u32(f"type of tensor {name!r}")
        offset = w.u64(f"data offset of tensor {name!r}")
        out.append((name, ne, qtype, offset))
    return out


def _check_tensor_range(
    name: str, ne: list[int], qtype: int, offset: int, alignment: int, data_start: int, size: int
) -> None:
    try:
        qt = Q(qtype)
    except ValueError:
        raise GGUFError(f"tensor {name!r} has unknown type number {qtype}") from None
    if qt not in GGML_QUANT_SIZES:
        raise GGUFError(f"tensor {name!r} has type {qt.name} with no known block layout")
    if any(d == 0 for d in ne):
        raise GGUFError(f"tensor {name!r} has a zero dimension {ne}")
    block, tsize = GGML_QUANT_SIZES[qt]
    if ne[0] % block:
        raise GGUFError(
            f"tensor {name!r}: row length {ne[0]} is not a multiple of the {qt.name} block size {block}"
        )
    n_elems = math.prod(ne)
    nbytes = n_elems // block * tsize
    if offset % alignment:
        raise GGUFError(f"tensor {name!r}: data offset {offset} is not aligned to {alignment}")
    end = data_start + offset + nbytes
    if end > size:
        raise GGUFError(
            f"tensor {name!r}: data [{data_start + offset}, {end}) lies beyond the end of the "
            f"file ({size} bytes); the file is truncated or the tensor table is corrupt"
        )


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GGUFError(f"{what} is not valid UTF-8") from None


# ---------------------------------------------------------------------------
# step 2: GGUFReader
# ---------------------------------------------------------------------------


def _open_reader(path: str) -> GGUFReader:
    # The prescan has bounded every length; whatever the reader still
    # objects to (or a bug in it) must surface as a GGUFError, not a crash.
    try:
        return GGUFReader(path, "r")
    except Exception as e:  # noqa: BLE001 - reader errors are ValueError/KeyError/IndexError/...
        raise GGUFError(f"malformed GGUF file: {type(e).__name__}: {e}") from e


# ---------------------------------------------------------------------------
# step 3: typed metadata access
# ---------------------------------------------------------------------------

_REQUIRED = object()


class _Meta:
    """Typed getters over GGUFReader fields; errors name the key."""

    def __init__(self, reader: GGUFReader):
        self.fields = reader.fields

    def _field(self, key: str, default: Any):
        f = self.fields.get(key)
        if f is None and default is _REQUIRED:
            raise GGUFError(f"required metadata key {key!r} is missing")
        return f

    @staticmethod
    def _kind(f) -> GGUFValueType:
        return f.types[0] if f.types else GGUFValueType.ARRAY

    def int(self, key: str, lo: int, hi: int, default: Any = _REQUIRED) -> Any:
        f = self._field(key, default)
        if f is None:
            return default
        kind = self._kind(f)
        if kind not in _INT_VTYPES:
            raise GGUFError(f"metadata key {key!r} must be an integer, not {kind.name}")
        v = int(f.parts[-1][0])
        if not lo <= v <= hi:
            raise GGUFError(f"metadata key {key!r} = {v} is out of range [{lo}, {hi}]")
        return v

    def float(self, key: str, lo: float, hi: float, default: Any = _REQUIRED) -> Any:
        f = self._field(key, default)
        if f is None:
            return default
        kind = self._kind(f)
        if kind not in _FLOAT_VTYPES and kind not in _INT_VTYPES:
            raise GGUFError(f"metadata key {key!r} must be a number, not {kind.name}")
        v = float(f.parts[-1][0])
        if not (math.isfinite(v) and lo <= v <= hi):
            raise GGUFError(f"metadata key {key!r} = {v} is out of range [{lo}, {hi}]")
        return v

    def bool(self, key: str, default: Any = _REQUIRED) -> Any:
        f = self._field(key, default)
        if f is None:
            return default
        if self._kind(f) != GGUFValueType.BOOL:
            raise GGUFError(f"metadata key {key!r} must be a bool, not {self._kind(f).name}")
        return bool(f.parts[-1][0])

    def str(self, key: str, default: Any = _REQUIRED) -> Any:
        f = self._field(key, default)
        if f is None:
            return default
        if self._kind(f) != GGUFValueType.STRING:
            raise GGUFError(f"metadata key {key!r} must be a string, not {self._kind(f).name}")
        return _decode(f.parts[-1].tobytes(), f"metadata key {key!r}")

    def _array(self, key: str, sub: frozenset | GGUFValueType, default: Any):
        f = self._field(key, default)
        if f is None:
            return None
        if self._kind(f) != GGUFValueType.ARRAY:
            raise GGUFError(f"metadata key {key!r} must be an array, not {self._kind(f).name}")
        if len(f.types) > 2:
            raise GGUFError(f"metadata key {key!r}: nested arrays are not supported")
        if len(f.types) == 2:  # empty arrays carry no element type
            it = f.types[1]
            ok = it in sub if isinstance(sub, frozenset) else it == sub
            if not ok:
                raise GGUFError(f"metadata key {key!r} has elements of the wrong type {it.name}")
        return f

    def str_list(self, key: str, default: Any = _REQUIRED) -> Any:
        f = self._array(key, GGUFValueType.STRING, default)
        if f is None:
            return default
        parts = f.parts
        out = []
        for i, idx in enumerate(f.data):
            try:
                out.append(parts[idx].tobytes().decode("utf-8"))
            except UnicodeDecodeError:
                raise GGUFError(f"metadata key {key!r}: element {i} is not valid UTF-8") from None
        return out

    def int_list(self, key: str, default: Any = _REQUIRED) -> Any:
        f = self._array(key, _INT_VTYPES, default)
        if f is None:
            return default
        if not f.data:
            return []
        # elements are consecutive 1-element views: read them as one array
        return [int(v) for v in np.concatenate([f.parts[i] for i in f.data])]


def _plain_metadata(reader: GGUFReader) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key in _BIG_TOKENIZER_KEYS:
            continue
        v = _plain_value(f)
        if v is not _SKIP:
            out[key] = v
    return out


_SKIP = object()


def _plain_value(f) -> object:
    kind = f.types[0] if f.types else GGUFValueType.ARRAY
    if kind == GGUFValueType.STRING:
        return f.parts[-1].tobytes().decode("utf-8", errors="replace")
    if kind != GGUFValueType.ARRAY:
        return f.parts[-1][0].item()
    if len(f.types) > 2:
        return _SKIP  # nested arrays: no ditto key uses them
    if len(f.types) == 1 or not f.data:
        return []
    if f.types[1] == GGUFValueType.STRING:
        return [f.parts[i].tobytes().decode("utf-8", errors="replace") for i in f.data]
    return np.concatenate([f.parts[i] for i in f.data]).tolist()


# ---------------------------------------------------------------------------
# hyperparameters
# ---------------------------------------------------------------------------


def _read_arch(meta: _Meta) -> str:
    arch = meta.str("general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise GGUFError(
            f"unsupported model architecture {arch!r} (supported: {', '.join(SUPPORTED_ARCHS)})"
        )
    return arch


def _read_hparams(meta: _Meta, arch: str, n_vocab: int) -> HParams:
    a = arch
    n_embd = meta.int(f"{a}.embedding_length", 1, MAX_EMBD)
    n_layer = meta.int(f"{a}.block_count", 1, MAX_LAYER)
    n_head = meta.int(f"{a}.attention.head_count", 1, MAX_HEAD)
    n_head_kv = meta.int(f"{a}.attention.head_count_kv", 1, MAX_HEAD, default=n_head)
    n_ff = meta.int(f"{a}.feed_forward_length", 1, MAX_FF)
    n_ctx_train = meta.int(f"{a}.context_length", 1, MAX_CTX)
    rms_eps = meta.float(f"{a}.attention.layer_norm_rms_epsilon", 1e-12, 0.1)
    rope_base = meta.float(f"{a}.rope.freq_base", 1.0, 1e12, default=10000.0)
    sliding_window = meta.int(f"{a}.attention.sliding_window", 0, MAX_CTX, default=0)

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
    vocab_key = meta.int(f"{a}.vocab_size", 1, MAX_VOCAB, default=n_vocab)
    if vocab_key != n_vocab:
        raise GGUFError(f"{a}.vocab_size = {vocab_key} but the tokenizer lists {n_vocab} tokens")

    return HParams(
        arch=arch, n_vocab=n_vocab, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        n_head_kv=n_head_kv, head_dim=head_dim, n_ff=n_ff, n_ctx_train=n_ctx_train,
        rms_eps=rms_eps, rope_base=rope_base, rope_neox=(arch == "qwen2"),
        sliding_window=sliding_window,
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
    tokens = meta.str_list(t + "tokens")
    n_vocab = len(tokens)
    if n_vocab == 0:
        raise GGUFError("tokenizer.ggml.tokens is empty")
    types = meta.int_list(t + "token_type", default=None)
    if types is None:
        types = [1] * n_vocab
    elif len(types) != n_vocab:
        raise GGUFError(f"tokenizer.ggml.token_type has {len(types)} entries for {n_vocab} tokens")
    merges = meta.str_list(t + "merges", default=[])

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
    )


# ---------------------------------------------------------------------------
# tensors
# ---------------------------------------------------------------------------


class _Tensors:
    """Looks tensors up by name, checks them, and tracks which were used."""

    def __init__(self, reader: GGUFReader, file_size: int):
        self.by_name = {t.name: t for t in reader.tensors}
        self.used: set[str] = set()
        self.file_size = file_size

    def has(self, name: str) -> bool:
        return name in self.by_name

    def _get(self, name: str, shape: tuple[int, ...], allowed: frozenset):
        t = self.by_name.get(name)
        if t is None:
            raise GGUFError(f"tensor {name!r} is missing")
        self.used.add(name)
        ne = [int(d) for d in t.shape]
        while len(ne) > len(shape) and ne[-1] == 1:
            ne.pop()  # trailing 1s carry no meaning in ggml shapes
        if tuple(ne) != shape:
            raise GGUFError(f"tensor {name!r} has shape {ne}, expected {list(shape)}")
        qt = Q(t.tensor_type)
        if qt not in allowed:
            names = ", ".join(sorted(x.name for x in allowed))
            raise GGUFError(f"tensor {name!r} has type {qt.name}, which ditto does not support (supported: {names})")
        if t.data_offset + t.n_bytes > self.file_size or t.data.nbytes != t.n_bytes:
            raise GGUFError(f"tensor {name!r}: data lies beyond the end of the file")
        return t, qt

    def matrix(self, name: str, rows: int, cols: int) -> WeightMatrix:
        t, qt = self._get(name, (cols, rows), SUPPORTED_TYPES)
        rb = row_bytes(qt, cols)
        # a plain ndarray view (not np.memmap) on the mapping; .base keeps it alive
        data = np.asarray(t.data).view(np.uint8).reshape(rows, rb)
        if not data.flags.c_contiguous:
            raise GGUFError(f"tensor {name!r}: data is not contiguous")
        if data.ctypes.data % 4:
            # only with a general.alignment < 4: the kernels read f32/f16 in place
            raise GGUFError(f"tensor {name!r}: data is not 4-byte aligned in the file")
        return WeightMatrix(name=name, type=int(qt), rows=rows, cols=cols, data=data)

    def vector(self, name: str, n: int) -> np.ndarray:
        t, qt = self._get(name, (n,), VECTOR_TYPES)
        raw = np.asarray(t.data).reshape(-1)
        if qt == Q.BF16:
            bits = raw.view(np.uint8).view("<u2").astype(np.uint32) << 16
            return bits.view(np.float32)
        if qt == Q.F16:
            return raw.astype(np.float32)
        # F32: keep the mapping when the C side can read it as float*
        if raw.ctypes.data % 4:
            return raw.astype(np.float32)
        return raw.view(np.float32)

    def unused(self) -> list[str]:
        return [n for n in self.by_name if n not in self.used]


def _read_layer(ts: _Tensors, hp: HParams, i: int) -> LayerWeights:
    p = f"blk.{i}."
    d, q_dim, kv_dim = hp.n_embd, hp.n_head * hp.head_dim, hp.n_head_kv * hp.head_dim

    def bias(name: str, n: int) -> np.ndarray | None:
        if hp.arch == "llama" and not ts.has(p + name):
            return None  # optional for llama, required for qwen2
        return ts.vector(p + name, n)

    return LayerWeights(
        attn_norm=ts.vector(p + "attn_norm.weight", d),
        wq=ts.matrix(p + "attn_q.weight", q_dim, d),
        wk=ts.matrix(p + "attn_k.weight", kv_dim, d),
        wv=ts.matrix(p + "attn_v.weight", kv_dim, d),
        wo=ts.matrix(p + "attn_output.weight", d, q_dim),
        bq=bias("attn_q.bias", q_dim),
        bk=bias("attn_k.bias", kv_dim),
        bv=bias("attn_v.bias", kv_dim),
        ffn_norm=ts.vector(p + "ffn_norm.weight", d),
        w_gate=ts.matrix(p + "ffn_gate.weight", hp.n_ff, d),
        w_up=ts.matrix(p + "ffn_up.weight", hp.n_ff, d),
        w_down=ts.matrix(p + "ffn_down.weight", d, hp.n_ff),
    )


def _refuse_unused(ts: _Tensors) -> None:
    extra = ts.unused()
    if not extra:
        return
    if "rope_freqs.weight" in extra:
        raise GGUFError("tensor 'rope_freqs.weight' (llama3-style rope scaling) is not supported")
    shown = ", ".join(repr(n) for n in extra[:5])
    more = f" and {len(extra) - 5} more" if len(extra) > 5 else ""
    raise GGUFError(f"unexpected tensors for this architecture: {shown}{more}")


# ---------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------


def load_model_file(path: str | os.PathLike) -> ModelFile:
    """Opens, validates and memory-maps a GGUF model. Raises GGUFError."""
    path = os.fspath(path)
    pre = _prescan(path)
    reader = _open_reader(path)
    meta = _Meta(reader)

    arch = _read_arch(meta)
    tokenizer = _read_tokenizer(meta)
    hp = _read_hparams(meta, arch, len(tokenizer.tokens))

    ts = _Tensors(reader, pre.file_size)
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
        metadata=_plain_metadata(reader),
        tok_embd=tok_embd,
        output_norm=output_norm,
        output=output,
        layers=layers,
        tokenizer=tokenizer,
        sha256_prefix=pre.identity,
    )
