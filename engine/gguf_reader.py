"""A bounds-checked GGUF reader over a memory map.

ditto reads GGUF files itself rather than through ``gguf.GGUFReader`` for
two reasons. That reader trusts length fields (a huge array length makes it
loop and allocate for ever; tensor data past the end of the file comes back
as a silently short array), and it builds a numpy view per string, which
costs seconds on a 50k-262k token vocabulary. Here every read is checked
against the file size and the MAX_* limits first, numeric arrays become one
numpy array each, string arrays one buffer each (``PackedBytes``), and
tensor data stays in the mapping, untouched until a kernel reads it. ``gguf.GGUFReader`` remains
the reference these results are tested against.

Only little-endian GGUF, versions 2 and 3.
"""
from __future__ import annotations

import hashlib
import math
import mmap
import os
import struct
from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ggml_types import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType
from .packed import PackedBytes

Q = GGMLQuantizationType
V = GGUFValueType


class GGUFError(ValueError):
    """A model file ditto cannot use; the message names the problem."""


# ---- limits: generous for real models, small enough that nothing absurd
# ---- is allocated or looped over because a header says so.
MAX_TENSORS = 1 << 16
MAX_KV = 1 << 16
MAX_KEY_LEN = 1 << 16
MAX_TENSOR_NAME_LEN = 1 << 10
MAX_STRING_LEN = 1 << 24          # chat templates are tens of KB
MAX_ARRAY_LEN = 1 << 20           # largest real vocabularies are ~262k
MAX_TOTAL_ARRAY_ELEMS = 1 << 22   # bounds the work of walking all arrays
MAX_ARRAY_DEPTH = 4
MAX_DIMS = 4                      # GGML_MAX_DIMS
MAX_ALIGNMENT = 1 << 16

_MAGIC = b"GGUF"
_VERSIONS = (2, 3)
_DEFAULT_ALIGNMENT = 32

_SCALAR_FMT = {
    V.UINT8: "<B", V.INT8: "<b", V.UINT16: "<H", V.INT16: "<h", V.UINT32: "<I", V.INT32: "<i",
    V.FLOAT32: "<f", V.UINT64: "<Q", V.INT64: "<q", V.FLOAT64: "<d", V.BOOL: "<?",
}
_SCALAR_DTYPE = {vt: np.dtype(fmt) for vt, fmt in _SCALAR_FMT.items()}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class Field:
    """One metadata value.

    type: the value's type; for arrays `element` is the elements' type
    (None for an empty array whose type the file did not say, or NESTED
    arrays, which ditto walks but does not keep). value: a Python scalar,
    ``bytes`` for a string (undecoded: the caller names the key in the
    error), a numpy array for a numeric array, a ``PackedBytes`` (a sequence
    of ``bytes``) for a string array, None for nested arrays.
    """
    type: GGUFValueType
    value: Any
    element: GGUFValueType | None = None
    nested: bool = False


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]    # ggml order: shape[0] is the row length
    type: int                 # GGML type number (known, with a block layout)
    offset: int               # absolute byte offset in the file
    nbytes: int


@dataclass
class GGUFFile:
    path: str
    size: int
    fields: dict[str, Field]
    tensors: dict[str, TensorInfo]
    identity: str             # sha256 of (file size, header bytes): a cheap identity
    _map: mmap.mmap

    def tensor_bytes(self, info: TensorInfo) -> np.ndarray:
        """The tensor's bytes as a read-only uint8 array on the mapping (no copy)."""
        return np.frombuffer(self._map, dtype=np.uint8, count=info.nbytes, offset=info.offset)


def read_gguf(path: str | os.PathLike) -> GGUFFile:
    """Reads a GGUF file's header and maps its data. Raises GGUFError."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise GGUFError("file is empty")
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise GGUFError(f"cannot read model file: {e}") from e
    r = _Reader(buf, size)
    fields, alignment = r.header()
    infos = r.tensor_infos()
    data_start = -(-r.pos // alignment) * alignment
    tensors = {name: _tensor_info(name, ne, qtype, offset, alignment, data_start, size)
               for name, ne, qtype, offset in infos}
    h = hashlib.sha256()
    h.update(struct.pack("<Q", size))
    h.update(buf[0:r.pos])
    return GGUFFile(path, size, fields, tensors, h.hexdigest(), buf)


class _Reader:
    """Cursor over the header bytes; every read is bounds-checked."""

    def __init__(self, buf: mmap.mmap, size: int) -> None:
        self.buf = buf
        self.size = size
        self.pos = 0
        self.array_elems = 0

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise GGUFError(f"file is truncated: {what} at byte {self.pos} needs {n} bytes, "
                            f"only {self.size - self.pos} remain")

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
        s = self.buf[self.pos:self.pos + n]
        self.pos += n
        return s

    # ---- the header ------------------------------------------------------------------
    def header(self) -> tuple[dict[str, Field], int]:
        self.need(4, "magic")
        if self.buf[0:4] != _MAGIC:
            raise GGUFError(f"not a GGUF file: bad magic {bytes(self.buf[0:4])!r} (expected b'GGUF')")
        self.pos = 4
        version = self.u32("version")
        if version not in _VERSIONS:
            if version & 0xFFFF == 0 and (version >> 24) in _VERSIONS:
                raise GGUFError("big-endian GGUF files are not supported")
            raise GGUFError(f"unsupported GGUF version {version} (supported: 2, 3)")
        self.n_tensors = self.u64("tensor count")
        n_kv = self.u64("metadata key count")
        if self.n_tensors > MAX_TENSORS:
            raise GGUFError(f"tensor count {self.n_tensors} exceeds the limit of {MAX_TENSORS}")
        if n_kv > MAX_KV:
            raise GGUFError(f"metadata key count {n_kv} exceeds the limit of {MAX_KV}")
        fields: dict[str, Field] = {}
        alignment = _DEFAULT_ALIGNMENT
        for i in range(n_kv):
            key = _decode(self.string(f"key of metadata entry {i}", MAX_KEY_LEN), f"key of metadata entry {i}")
            if key in fields:
                raise GGUFError(f"duplicate metadata key {key!r}")
            fields[key] = field = self.value(self.u32(f"value type of {key!r}"), key)
            if key == "general.alignment":
                v = field.value
                if field.type != V.UINT32:
                    raise GGUFError("general.alignment must be a uint32")
                if v == 0 or v & (v - 1) or v > MAX_ALIGNMENT:
                    raise GGUFError(f"general.alignment = {v} is not a power of two <= {MAX_ALIGNMENT}")
                alignment = v
        return fields, alignment

    def value(self, vtype: int, key: str, depth: int = 0) -> Field:
        vt = _value_type(vtype, f"metadata key {key!r} has unknown value type {vtype}")
        if vt in _SCALAR_FMT:
            return Field(vt, self.scalar(_SCALAR_FMT[vt], f"value of {key!r}"))
        if vt == V.STRING:
            return Field(vt, self.string(f"value of {key!r}", MAX_STRING_LEN))
        return self.array(key, depth)

    def array(self, key: str, depth: int) -> Field:
        if depth >= MAX_ARRAY_DEPTH:
            raise GGUFError(f"metadata key {key!r}: arrays nested deeper than {MAX_ARRAY_DEPTH}")
        itype = self.u32(f"array element type of {key!r}")
        n = self.u64(f"array length of {key!r}")
        if n > MAX_ARRAY_LEN:
            raise GGUFError(f"metadata key {key!r}: array length {n} exceeds the limit of {MAX_ARRAY_LEN}")
        self.array_elems += n
        if self.array_elems > MAX_TOTAL_ARRAY_ELEMS:
            raise GGUFError(f"metadata arrays hold more than {MAX_TOTAL_ARRAY_ELEMS} elements in total")
        it = _value_type(itype, f"metadata key {key!r}: array of unknown value type {itype}")
        if it in _SCALAR_DTYPE:
            dtype = _SCALAR_DTYPE[it]
            self.need(n * dtype.itemsize, f"array data of {key!r}")
            values = np.frombuffer(self.buf, dtype=dtype, count=n, offset=self.pos).copy()
            self.pos += n * dtype.itemsize
            return Field(V.ARRAY, values, it)
        # every string or sub-array takes at least 8 bytes: bounds the loop
        self.need(n * 8, f"array data of {key!r}")
        if it == V.STRING:
            return Field(V.ARRAY, self.strings(n, key), it)
        for _ in range(n):
            self.value(itype, key, depth + 1)
        return Field(V.ARRAY, None, it, nested=True)

    def strings(self, n: int, key: str) -> PackedBytes:
        """n consecutive strings: the tight loop that a 262k vocabulary runs
        through. Only offsets are collected here (no object per string); the
        bytes are then gathered into one buffer, the length fields left out."""
        buf, pos, size, unpack = self.buf, self.pos, self.size, _U64.unpack_from
        starts = array("q")
        append = starts.append
        first = pos
        for i in range(n):
            if size - pos < 8:
                self.pos = pos
                self.need(8, f"length of element {i} of {key!r}")
            (ln,) = unpack(buf, pos)
            pos += 8
            if ln > MAX_STRING_LEN or ln > size - pos:
                self.pos = pos
                raise GGUFError(f"metadata key {key!r}: element {i} has length {ln}, past the end of "
                                f"the file or the limit of {MAX_STRING_LEN} bytes")
            append(pos)
            pos += ln
        self.pos = pos
        if not n:
            return PackedBytes([])
        begin = np.frombuffer(starts, dtype=np.int64) - first   # string starts in the region
        region = np.frombuffer(buf, dtype=np.uint8, count=pos - first, offset=first)
        keep = np.ones(pos - first, dtype=bool)
        for k in range(1, 9):       # the 8 length bytes before each string
            keep[begin - k] = False
        ends = np.append(begin[1:] - 8, pos - first)
        offsets = np.concatenate(([0], np.cumsum(ends - begin)))
        return PackedBytes.from_buffer(region[keep].tobytes(), offsets)

    # ---- the tensor table --------------------------------------------------------------
    def tensor_infos(self) -> list[tuple[str, list[int], int, int]]:
        seen: set[str] = set()
        out = []
        for i in range(self.n_tensors):
            name = _decode(self.string(f"name of tensor {i}", MAX_TENSOR_NAME_LEN), f"name of tensor {i}")
            if name in seen:
                raise GGUFError(f"duplicate tensor {name!r}")
            seen.add(name)
            n_dims = self.u32(f"dimension count of tensor {name!r}")
            if not 1 <= n_dims <= MAX_DIMS:
                raise GGUFError(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
            ne = [self.u64(f"dimension {d} of tensor {name!r}") for d in range(n_dims)]
            qtype = self.u32(f"type of tensor {name!r}")
            offset = self.u64(f"data offset of tensor {name!r}")
            out.append((name, ne, qtype, offset))
        return out


def _tensor_info(name: str, ne: list[int], qtype: int, offset: int, alignment: int, data_start: int,
                 size: int) -> TensorInfo:
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
        raise GGUFError(f"tensor {name!r}: row length {ne[0]} is not a multiple of the {qt.name} "
                        f"block size {block}")
    nbytes = math.prod(ne) // block * tsize
    if offset % alignment:
        raise GGUFError(f"tensor {name!r}: data offset {offset} is not aligned to {alignment}")
    start = data_start + offset
    if start + nbytes > size:
        raise GGUFError(f"tensor {name!r}: data [{start}, {start + nbytes}) lies beyond the end of the "
                        f"file ({size} bytes); the file is truncated or the tensor table is corrupt")
    return TensorInfo(name, tuple(ne), int(qt), start, nbytes)


def _value_type(raw: int, message: str) -> GGUFValueType:
    try:
        return V(raw)
    except ValueError:
        raise GGUFError(message) from None


def _decode(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GGUFError(f"{what} is not valid UTF-8") from None
