# cython: language_level=3, boundscheck=False, wraparound=False
"""ditto._kernels: test and inspection access to the native quant kernels.

Every argument is checked here (ValueError / TypeError with a message); the
C functions then run with the GIL released.
"""
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport malloc, free

import numpy as np

cdef extern from "ditto.h" nogil:
    enum:
        DT_OK
        DT_ISA_SCALAR
        DT_ISA_AVX2
        DT_ISA_AVX512
    ctypedef struct dt_tensor:
        const void *data
        int type
        int64_t rows
        int64_t cols
    int dt_type_layout(int type, int *block_size, int *type_size)
    int64_t dt_row_bytes(int type, int64_t n)
    int dt_isa_best()
    int dt_isa_get()
    int dt_isa_set(int isa)
    int dt_dequantize_row(int type, const void *src, float *dst, int64_t n)
    int dt_matmul_rows(const dt_tensor *w, const float *x, int64_t ldx, int64_t n_tok,
                       float *y, int64_t ldy, int64_t row_begin, int64_t row_end,
                       float *scratch)
    int64_t dt_matmul_scratch_floats(int64_t cols)
    float dt_dot_f32(const float *a, const float *b, int64_t n)

ISA_SCALAR = DT_ISA_SCALAR
ISA_AVX2 = DT_ISA_AVX2
ISA_AVX512 = DT_ISA_AVX512
ISA_NAMES = {DT_ISA_SCALAR: "scalar", DT_ISA_AVX2: "avx2", DT_ISA_AVX512: "avx512"}


def isa_best():
    """The best instruction set this CPU (and OS) supports."""
    return dt_isa_best()


def isa_get():
    """The instruction set the kernels use now."""
    return dt_isa_get()


def isa_set(isa):
    """Forces an instruction set; ValueError if unknown or unsupported here."""
    if not isinstance(isa, int):
        raise TypeError(f"isa must be an int, not {type(isa).__name__}")
    if isa not in ISA_NAMES:
        raise ValueError(f"unknown isa {isa}")
    if dt_isa_set(isa) != DT_OK:
        raise ValueError(f"isa {ISA_NAMES[isa]} is not supported by this CPU")


def type_layout(type):
    """(block_size, type_size) of a GGML tensor type."""
    cdef int bs = 0, ts = 0
    if not isinstance(type, int):
        raise TypeError(f"type must be an int, not {type.__class__.__name__}")
    if dt_type_layout(type, &bs, &ts) != DT_OK:
        raise ValueError(f"unsupported tensor type {type}")
    return bs, ts


cdef int _check_type(object type) except -1:
    cdef int bs = 0, ts = 0
    if not isinstance(type, int):
        raise TypeError(f"type must be an int, not {type.__class__.__name__}")
    if dt_type_layout(type, &bs, &ts) != DT_OK:
        raise ValueError(f"unsupported tensor type {type}")
    return bs


def dequantize(type, const uint8_t[::1] raw not None, n):
    """Dequantizes the first n values of raw (GGUF bytes of `type`) to float32."""
    cdef int bs = _check_type(type)
    cdef int t = type
    if not isinstance(n, int):
        raise TypeError("n must be an int")
    if n < 0 or n % bs:
        raise ValueError(f"n = {n} is not a non-negative multiple of the block size {bs}")
    cdef int64_t nn = n
    cdef int64_t need = dt_row_bytes(t, nn)
    if raw.shape[0] < need:
        raise ValueError(f"raw holds {raw.shape[0]} bytes, {need} needed for {n} values")
    out = np.empty(nn, dtype=np.float32)
    cdef float[::1] o = out
    cdef int rc
    if nn == 0:
        return out
    with nogil:
        rc = dt_dequantize_row(t, &raw[0], &o[0], nn)
    if rc != DT_OK:
        raise ValueError(f"dt_dequantize_row failed ({rc})")
    return out


def dot_f32(const float[::1] a not None, const float[::1] b not None):
    """dot(a, b) with the operation order of the matmul (float32 1-D arrays)."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"length mismatch: {a.shape[0]} != {b.shape[0]}")
    cdef int64_t n = a.shape[0]
    cdef float r = 0.0
    if n == 0:
        return 0.0
    with nogil:
        r = dt_dot_f32(&a[0], &b[0], n)
    return r


def matmul_rows(const uint8_t[:, ::1] weight_raw not None, type, cols,
                const float[:, ::1] x not None, row_begin=0, row_end=None):
    """Y = X W^T for rows [row_begin, row_end) of W.

    weight_raw: (rows, row_bytes) uint8, GGUF bytes of `type` with `cols`
    values per row; x: (n_tok, cols) float32. Returns (n_tok, rows) float32
    (columns outside the row range are zero).
    """
    cdef int bs = _check_type(type)
    cdef int t = type
    if not isinstance(cols, int):
        raise TypeError("cols must be an int")
    if cols <= 0 or cols % bs:
        raise ValueError(f"cols = {cols} is not a positive multiple of the block size {bs}")
    cdef int64_t c = cols
    cdef int64_t rb = dt_row_bytes(t, c)
    if weight_raw.shape[1] != rb:
        raise ValueError(f"weight rows hold {weight_raw.shape[1]} bytes, {rb} expected")
    if x.shape[1] != c:
        raise ValueError(f"x has {x.shape[1]} columns, {c} expected")
    cdef int64_t rows = weight_raw.shape[0]
    if row_end is None:
        row_end = rows
    if not isinstance(row_begin, int) or not isinstance(row_end, int):
        raise TypeError("row_begin and row_end must be ints")
    if not 0 <= row_begin <= row_end <= rows:
        raise ValueError(f"bad row range [{row_begin}, {row_end}) for {rows} rows")
    cdef int64_t n_tok = x.shape[0], r0 = row_begin, r1 = row_end
    out = np.zeros((n_tok, rows), dtype=np.float32)
    if n_tok == 0 or rows == 0 or r0 == r1:
        return out
    cdef float[:, ::1] y = out
    cdef dt_tensor w
    w.data = &weight_raw[0, 0]
    w.type = t
    w.rows = rows
    w.cols = c
    cdef float *scratch = <float *> malloc(dt_matmul_scratch_floats(c) * sizeof(float))
    if scratch == NULL:
        raise MemoryError()
    cdef int rc
    with nogil:
        rc = dt_matmul_rows(&w, &x[0, 0], c, n_tok, &y[0, 0], rows, r0, r1, scratch)
    free(scratch)
    if rc != DT_OK:
        raise ValueError(f"dt_matmul_rows failed ({rc})")
    return out
