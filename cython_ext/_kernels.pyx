# cython: language_level=3, boundscheck=False, wraparound=False
"""ditto._kernels: test and inspection access to the native quant kernels.

Every argument is checked here (ValueError / TypeError with a message); the
C functions then run with the GIL released.
"""
from libc.stdint cimport int64_t, uint8_t, uint16_t
from libc.stdlib cimport malloc, free

import numpy as np

from ditto_c cimport *


ISA_SCALAR = DT_ISA_SCALAR
ISA_AVX2 = DT_ISA_AVX2
ISA_AVX512 = DT_ISA_AVX512
PRECISION_EXACT = DT_PRECISION_EXACT
PRECISION_FAST = DT_PRECISION_FAST
PRECISION_Q16 = DT_PRECISION_Q16
PRECISIONS = (DT_PRECISION_EXACT, DT_PRECISION_FAST, DT_PRECISION_Q16)
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


def bf16_hw():
    """Whether attention on a bf16 KV cache runs AVX512_BF16's instructions."""
    return bool(dt_bf16_hw())


def bf16_hw_set(on):
    """Makes attention on a bf16 cache run the instructions (True) or their
    fma steps (False); ValueError if this CPU lacks them."""
    if dt_bf16_hw_set(1 if on else 0) != DT_OK:
        raise ValueError("this CPU has no AVX512_BF16")


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


cdef dt_tensor tensor_of(const uint8_t[:, ::1] raw, int type, int64_t cols):
    """A dt_tensor over validated raw rows (one row of blocks per output)."""
    cdef dt_tensor w
    w.data = &raw[0, 0]
    w.type = type
    w.rows = raw.shape[0]
    w.cols = cols
    w.q16 = NULL
    return w


def aligned_bytes(n):
    """A zeroed uint8 array of n bytes starting on a 64-byte boundary."""
    raw = np.zeros(n + 64, dtype=np.uint8)
    off = (-raw.ctypes.data) % 64
    return raw[off:off + n]


cdef object repack_into(dt_tensor *w):
    """Sets w.q16 to a repacked copy of w (for precisions q16 and fast) and returns the
    array that owns it; None if q16 does not cover w's type."""
    cdef int64_t n = dt_q16_repacked_bytes(w)
    if n <= 0:
        return None
    packed = aligned_bytes(n)
    cdef uint8_t[::1] view = packed
    cdef dt_pool *pool = NULL
    if dt_pool_new(1, &pool) != DT_OK:
        raise MemoryError()
    cdef int rc
    with nogil:
        rc = dt_q16_repack_tensor(pool, w, &view[0])
    dt_pool_free(pool)
    if rc != DT_OK:
        raise ValueError(f"dt_q16_repack_tensor failed ({rc})")
    w.q16 = &view[0]
    return packed


def q16_repack(const uint8_t[:, ::1] weight_raw not None, type, cols):
    """The q16 repacked copy (uint8 array) of GGUF rows of `type`."""
    _check_type(type)
    if weight_raw.shape[1] != dt_row_bytes(type, cols):
        raise ValueError("weight row bytes mismatch")
    cdef dt_tensor w = tensor_of(weight_raw, type, cols)
    packed = repack_into(&w)
    if packed is None:
        raise ValueError(f"q16 does not cover type {type}")
    return packed


def q16_unpack(const uint8_t[::1] packed not None, type, rows, cols):
    """The GGUF rows (rows, row_bytes) back from a q16 repacked copy."""
    _check_type(type)
    cdef dt_tensor w
    w.data = &packed[0]
    w.type = type
    w.rows = rows
    w.cols = cols
    w.q16 = &packed[0]
    if packed.shape[0] != dt_q16_repacked_bytes(&w):
        raise ValueError("packed size does not match the shape")
    out = np.zeros((rows, dt_row_bytes(type, cols)), dtype=np.uint8)
    cdef uint8_t[:, ::1] o = out
    cdef int64_t r
    for r in range(rows):
        if dt_q16_unpack(&w, r, &o[r, 0]) != DT_OK:
            raise ValueError("dt_q16_unpack failed")
    return out


def matmul_rows(const uint8_t[:, ::1] weight_raw not None, type, cols,
                const float[:, ::1] x not None, row_begin=0, row_end=None, precision=0):
    """Y = X W^T for rows [row_begin, row_end) of W.

    weight_raw: (rows, row_bytes) uint8, GGUF bytes of `type` with `cols`
    values per row; x: (n_tok, cols) float32; precision: one of PRECISIONS
    (q16 and fast repack the weights first). Returns (n_tok, rows) float32 (columns outside the row
    range are zero).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    cdef int prec = precision
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
    cdef dt_tensor w = tensor_of(weight_raw, t, c)
    keep = repack_into(&w) if prec != DT_PRECISION_EXACT else None
    cdef float *scratch = <float *> malloc(dt_matmul_scratch_floats(c) * sizeof(float))
    if scratch == NULL:
        raise MemoryError()
    cdef int rc
    with nogil:
        rc = dt_matmul_rows_p(prec, &w, &x[0, 0], c, n_tok, &y[0, 0], rows, r0, r1, scratch)
    free(scratch)
    if rc != DT_OK:
        raise ValueError(f"dt_matmul_rows failed ({rc})")
    return out


cdef extern from "attention.h" nogil:
    enum: DT_ATTN_CHUNK
    ctypedef struct dt_attn_tile:
        const void *k
        const void *v
        int kv_type
        const float *q
        int64_t ldq
        float *out
        int64_t ldo
        int head_dim
        int group
        int n_tok
        int pos0
        int window
        int origin
        float scale
    int64_t dt_attention_scratch_floats(int n_rows, int n_pos, int head_dim)
    int64_t dt_attention_part_floats(int n_rows, int n_pos, int head_dim)
    void dt_attention(const dt_attn_tile *a, float *scratch)
    void dt_attention_chunks(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch)
    void dt_attention_combine(const dt_attn_tile *a, const float *part)
    void dt_f16_from_f32(const float *x, uint16_t *y, int64_t n)
    void dt_bf16_from_f32(const float *x, uint16_t *y, int64_t n)


# Positions per chunk of attention's chunked softmax (attention.h).
ATTN_CHUNK = DT_ATTN_CHUNK


ctypedef void (*half_fn)(const float *x, uint16_t *y, int64_t n) noexcept nogil


cdef _halves(const float[::1] x, half_fn convert):
    cdef int64_t n = x.shape[0]
    out = np.empty(n, dtype=np.uint16)
    cdef uint16_t[::1] o = out
    if n:
        with nogil:
            convert(&x[0], &o[0], n)
    return out


def f16_from_f32(const float[::1] x not None):
    """float32 values rounded to IEEE half by the current ISA's conversion
    (the one an f16 KV cache stores with); returns their uint16 bits."""
    return _halves(x, dt_f16_from_f32)


def bf16_from_f32(const float[::1] x not None):
    """float32 values rounded to bfloat16 by the current ISA's conversion
    (the one a bf16 KV cache stores with); returns their uint16 bits."""
    return _halves(x, dt_bf16_from_f32)


def attention(const float[:, :, ::1] q not None, k not None, v not None, pos0, window=0, scale=None,
              origin=0, chunk_ranges=None, bf16=False):
    """The attention kernel of the current ISA on one tile (a test hook).

    q: (n_tok, group, head_dim) float32, the queries of tokens at positions
    pos0 .. pos0 + n_tok - 1 that share one kv head; k, v: (n_pos, head_dim)
    rows of that kv head, both float32 or both float16 (the kv_type the
    kernel reads; n_pos >= pos0 + n_tok; later rows must not matter); with
    bf16 both float32, stored as a bf16 cache stores them (rounded by
    dt_bf16_from_f32, in pairs).
    window: sliding window (0: none); scale: 1/sqrt(head_dim) by default;
    origin: absolute position of row 0 of k and v (a multiple of 16; chunk
    boundaries are absolute). chunk_ranges: None runs dt_attention; else
    a list of (c0, c1) absolute chunk ranges, each computed by its own
    dt_attention_chunks call, then dt_attention_combine (as a decode split
    over threads does); together they must cover the tile's chunks.
    Keys are laid out in the cache's blocks of 16 positions here.
    Returns (n_tok, group, head_dim) float32.
    """
    k, v = np.asarray(k), np.asarray(v)
    if k.dtype != v.dtype or k.dtype not in (np.float32, np.float16) or k.ndim != 2 or v.ndim != 2:
        raise TypeError(f"k and v must be 2-d, both float32 or both float16, not {k.dtype} and {v.dtype}")
    if bf16 and k.dtype != np.float32:
        raise TypeError("a bf16 cache is stored from float32 keys and values")
    cdef int n_tok = q.shape[0], group = q.shape[1], hd = q.shape[2]
    cdef int64_t n_pos = k.shape[0]
    if not isinstance(pos0, int) or not isinstance(window, int) or not isinstance(origin, int):
        raise TypeError("pos0, window and origin must be ints")
    if n_tok < 1 or group < 1 or hd < 2 or hd % 2:
        raise ValueError(f"bad q shape {(n_tok, group, hd)}: need tokens, heads >= 1 and an even head_dim")
    if k.shape[1] != hd or v.shape[1] != hd or v.shape[0] != n_pos:
        raise ValueError(f"k ({k.shape[0]}, {k.shape[1]}) and v ({v.shape[0]}, {v.shape[1]}) must be (n_pos, {hd})")
    if pos0 < 0 or window < 0 or pos0 + n_tok > n_pos:
        raise ValueError(f"positions {pos0} .. {pos0 + n_tok - 1} outside the {n_pos} given rows")
    if origin < 0 or origin % 16 or origin + n_pos >= 2 ** 30:
        raise ValueError(f"origin {origin} is not a multiple of 16 in range")
    cdef float sc = (1.0 / hd ** 0.5) if scale is None else scale
    cdef int64_t nb = (n_pos + 15) // 16
    blocked = np.zeros((nb * 16, hd), dtype=k.dtype)
    blocked[:n_pos] = k
    if bf16:  # [pos / 16][hd / 2][16][2] and [pos / 2][hd][2]
        blocked = bf16_from_f32(blocked.reshape(-1)).reshape(nb, 16, hd // 2, 2).transpose(0, 2, 1, 3)
        paired = np.zeros(((n_pos + 1) // 2 * 2, hd), dtype=np.float32)
        paired[:n_pos] = v
        values = np.ascontiguousarray(bf16_from_f32(paired.reshape(-1)).reshape(-1, 2, hd).transpose(0, 2, 1))
    else:
        blocked = blocked.reshape(nb, 16, hd).transpose(0, 2, 1)
        values = np.ascontiguousarray(v)
    blocked = np.ascontiguousarray(blocked)
    # the kernel reads raw elements: views of the bytes, whatever the dtype
    cdef const uint8_t[::1] kb = blocked.reshape(-1).view(np.uint8)
    cdef const uint8_t[::1] vb = values.reshape(-1).view(np.uint8)
    out = np.empty((n_tok, group, hd), dtype=np.float32)
    cdef float[:, :, ::1] o = out
    cdef dt_attn_tile a
    a.k = &kb[0]
    a.v = &vb[0]
    a.kv_type = DT_BF16 if bf16 else DT_F16 if k.dtype == np.float16 else DT_F32
    a.q = &q[0, 0, 0]
    a.ldq = <int64_t>group * hd
    a.out = &o[0, 0, 0]
    a.ldo = <int64_t>group * hd
    a.head_dim = hd
    a.group = group
    a.n_tok = n_tok
    a.pos0 = pos0
    a.window = window
    a.origin = origin
    a.scale = sc
    cdef int first = pos0 - window + 1 if 0 < window <= pos0 else 0
    cdef int tile_c0 = (first + origin) // DT_ATTN_CHUNK, tile_c1 = (pos0 + n_tok - 1 + origin) // DT_ATTN_CHUNK
    ranges = [] if chunk_ranges is None else [(int(r[0]), int(r[1])) for r in chunk_ranges]
    covered = sorted(c for c0, c1 in ranges for c in range(max(c0, tile_c0), min(c1, tile_c1) + 1))
    if chunk_ranges is not None and covered != list(range(tile_c0, tile_c1 + 1)):
        raise ValueError(f"chunk ranges {ranges} do not cover chunks {tile_c0} .. {tile_c1} once each")
    cdef int64_t n_scratch = dt_attention_scratch_floats(n_tok * group, pos0 + n_tok, hd)
    cdef float *scratch = <float *> malloc(n_scratch * sizeof(float))
    cdef float *part = <float *> malloc(dt_attention_part_floats(n_tok * group, pos0 + n_tok, hd) * sizeof(float))
    if scratch == NULL or part == NULL:
        free(scratch)
        free(part)
        raise MemoryError()
    cdef int c0, c1
    with nogil:
        if chunk_ranges is None:
            dt_attention(&a, scratch)
    for c0, c1 in ranges:
        with nogil:
            dt_attention_chunks(&a, c0, c1, part, scratch)
    if ranges:
        with nogil:
            dt_attention_combine(&a, part)
    free(scratch)
    free(part)
    return out


def matmul_threaded(const uint8_t[:, ::1] weight_raw not None, type, cols,
                    const float[:, ::1] x not None, n_threads=2, precision=0):
    """Y = X W^T over all rows with dt_matmul_p on a pool of n_threads."""
    cdef int bs = _check_type(type)
    cdef int t = type
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    if not isinstance(n_threads, int) or not 1 <= n_threads <= 64:
        raise ValueError("n_threads must be an int in [1, 64]")
    if not isinstance(cols, int) or cols <= 0 or cols % bs:
        raise ValueError(f"cols = {cols} is not a positive multiple of the block size {bs}")
    cdef int64_t c = cols
    if weight_raw.shape[1] != dt_row_bytes(t, c):
        raise ValueError("weight row bytes mismatch")
    if x.shape[1] != c:
        raise ValueError(f"x has {x.shape[1]} columns, {c} expected")
    cdef int64_t rows = weight_raw.shape[0], n_tok = x.shape[0]
    out = np.zeros((n_tok, rows), dtype=np.float32)
    if n_tok == 0 or rows == 0:
        return out
    cdef float[:, ::1] y = out
    cdef dt_tensor w = tensor_of(weight_raw, t, c)
    cdef dt_pool *pool = NULL
    cdef int prec = precision, nt = n_threads, rc
    keep = repack_into(&w) if prec != DT_PRECISION_EXACT else None
    if dt_pool_new(nt, &pool) != DT_OK:
        raise MemoryError()
    with nogil:
        rc = dt_matmul_p(pool, prec, &w, &x[0, 0], c, n_tok, &y[0, 0], rows)
    dt_pool_free(pool)
    if rc != DT_OK:
        raise ValueError(f"dt_matmul_p failed ({rc})")
    return out


def matmul_group(weights, cols, const float[:, ::1] x not None, precision, prepared=False, n_threads=2):
    """[X W_i^T for each (weight_raw, type) in weights] in one dt_matmul_group
    dispatch on a pool of n_threads; prepared: the tokens quantized first,
    one by one with dt_act_prep, and run by dt_matmul_group_prepared (the
    route model.c takes), which raises ValueError where the group has no
    one integer format."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}")
    if not 1 <= len(weights) <= 4:
        raise ValueError("a group holds 1 to 4 matrices")
    if not isinstance(n_threads, int) or not 1 <= n_threads <= 64:
        raise ValueError("n_threads must be an int in [1, 64]")
    if not isinstance(cols, int) or x.shape[1] != cols:
        raise ValueError(f"x has {x.shape[1]} columns, {cols} expected")
    cdef int n = len(weights), i, prec = precision, rc
    cdef dt_tensor w[4]
    cdef const dt_tensor *wp[4]
    cdef float *yp[4]
    cdef int64_t ld[4]
    cdef int64_t n_tok = x.shape[0], c = cols, t
    cdef const uint8_t[:, ::1] raw
    cdef float[:, ::1] y
    keep, outs = [], []
    for i in range(n):
        raw, type = weights[i]
        bs = _check_type(type)
        if c <= 0 or c % bs or raw.shape[1] != dt_row_bytes(type, c):
            raise ValueError(f"matrix {i}: rows do not hold {cols} values of type {type}")
        w[i] = tensor_of(raw, type, c)
        keep.append((raw, repack_into(&w[i]) if prec != DT_PRECISION_EXACT else None))
        wp[i] = &w[i]
        out = np.zeros((n_tok, raw.shape[0]), dtype=np.float32)
        outs.append(out)
        y = out
        yp[i] = &y[0, 0] if n_tok else NULL
        ld[i] = raw.shape[0]
    cdef dt_act_format f
    cdef uint8_t[::1] xq
    cdef bint prep = prepared
    if prep:
        if not dt_act_format_of(prec, n, wp, &f):
            raise ValueError("the group has no one integer activation format")
        xq_buf = aligned_bytes(max(1, n_tok * f.tok_bytes))
        xq = xq_buf
        for t in range(n_tok):
            dt_act_prep(&f, &x[t, 0], &xq[t * f.tok_bytes])
    if n_tok == 0:
        return outs
    cdef dt_pool *pool = NULL
    if dt_pool_new(n_threads, &pool) != DT_OK:
        raise MemoryError()
    with nogil:
        if prep:
            rc = dt_matmul_group_prepared(pool, prec, n, wp, &f, &xq[0], n_tok, yp, ld)
        else:
            rc = dt_matmul_group(pool, prec, n, wp, &x[0, 0], c, n_tok, yp, ld)
    dt_pool_free(pool)
    if rc != DT_OK:
        raise ValueError(f"dt_matmul_group failed ({rc})")
    return outs


cdef extern from "activation.h" nogil:
    void dt_silu_mul(const float *g, const float *u, float *h, int64_t n)
    void dt_gelu_mul(const float *g, const float *u, float *h, int64_t n)
    float dt_expf(float x)


def expf(const float[::1] x not None):
    """e^x as the FFN activations compute it (activation.h's port of glibc's
    expf), float32."""
    out = np.empty(x.shape[0], dtype=np.float32)
    cdef float[::1] o = out
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            o[i] = dt_expf(x[i])
    return out


def gated(str act, const float[::1] g not None, const float[::1] u not None):
    """act(g) * u by the current ISA's FFN activation kernel, act "silu" or
    "gelu" (activation.h); float32."""
    if act not in ("silu", "gelu"):
        raise ValueError(f"unknown activation {act!r}: silu or gelu")
    if g.shape[0] != u.shape[0]:
        raise ValueError(f"g has {g.shape[0]} values, u {u.shape[0]}")
    cdef int64_t n = g.shape[0]
    cdef bint silu = act == "silu"
    out = np.empty(n, dtype=np.float32)
    cdef float[::1] h = out
    if n:
        with nogil:
            if silu:
                dt_silu_mul(&g[0], &u[0], &h[0], n)
            else:
                dt_gelu_mul(&g[0], &u[0], &h[0], n)
    return out


cdef extern from "norm.h" nogil:
    void dt_rmsnorm(float *out, const float *x, const float *w, int n, float eps)


def rmsnorm(const float[::1] x not None, const float[::1] w not None, float eps):
    """RMS normalization of one row by the current ISA's kernel (norm.h),
    float32."""
    if x.shape[0] != w.shape[0]:
        raise ValueError(f"x has {x.shape[0]} values, w {w.shape[0]}")
    cdef int n = x.shape[0]
    out = np.empty(n, dtype=np.float32)
    cdef float[::1] o = out
    if n:
        with nogil:
            dt_rmsnorm(&o[0], &x[0], &w[0], n, eps)
    return out

