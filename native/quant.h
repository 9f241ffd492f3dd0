/* ditto native layer: quant block layouts and the per-ISA kernel table.
 *
 * Internal header (not part of the ABI). Block layouts are GGML's, byte for
 * byte, so GGUF tensors are used in place. Every type has a scalar
 * reference dequantizer (quant.c); the AVX2 / AVX-512 files provide fast
 * paths that give the same floats bit for bit, and fall back to the scalar
 * one for anything they do not cover.
 */
#ifndef DITTO_QUANT_H
#define DITTO_QUANT_H

#include <stdint.h>
#include <string.h>

#include "ditto.h"

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK4_NL 32
#define QK8_0 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef uint16_t dt_f16;  /* IEEE half, raw bits */
typedef uint16_t dt_bf16; /* bfloat16, raw bits */

typedef struct {
    dt_f16 d;             /* scale */
    uint8_t qs[QK4_0 / 2]; /* nibbles: low = values 0..15, high = 16..31; x = d * (q - 8) */
} block_q4_0;             /* 18 bytes */

typedef struct {
    dt_f16 d;             /* scale */
    dt_f16 m;             /* min */
    uint8_t qs[QK4_1 / 2]; /* nibbles as q4_0; x = d * q + m */
} block_q4_1;             /* 20 bytes */

typedef struct {
    dt_f16 d;              /* scale */
    uint8_t qh[4];         /* 5th bits: bit j (little-endian u32) belongs to value j */
    uint8_t qs[QK5_0 / 2]; /* low 4 bits as q4_0's nibbles; x = d * (q - 16) */
} block_q5_0;              /* 22 bytes */

typedef struct {
    dt_f16 d;              /* scale */
    dt_f16 m;              /* min */
    uint8_t qh[4];         /* 5th bits, as q5_0 */
    uint8_t qs[QK5_1 / 2]; /* low 4 bits, as q5_0; x = d * q + m */
} block_q5_1;              /* 24 bytes */

typedef struct {
    dt_f16 d;         /* scale */
    int8_t qs[QK8_0]; /* x = q * d */
} block_q8_0;         /* 34 bytes */

typedef struct {
    dt_f16 d;                     /* super-block scale for the 6-bit scales */
    dt_f16 dmin;                  /* super-block scale for the 6-bit mins */
    uint8_t scales[K_SCALE_SIZE]; /* 8 (scale, min) pairs of 6 bits, packed */
    uint8_t qs[QK_K / 2];         /* 4 x 32 bytes; each 32 bytes: low nibbles = sub-block 2j, high = 2j+1 */
} block_q4_K;                     /* 144 bytes; x = (d*sc) * q - (dmin*m) per 32 values */

typedef struct {
    dt_f16 d;                     /* super-block scale for the 6-bit scales */
    dt_f16 dmin;                  /* super-block scale for the 6-bit mins */
    uint8_t scales[K_SCALE_SIZE]; /* as q4_K */
    uint8_t qh[QK_K / 8];         /* 5th bit: bit i of qh[l] belongs to sub-block i, value l */
    uint8_t qs[QK_K / 2];         /* low 4 bits, as q4_K */
} block_q5_K;                     /* 176 bytes */

typedef struct {
    uint8_t ql[QK_K / 2];     /* low 4 bits: 2 halves of 64 bytes (see dequant) */
    uint8_t qh[QK_K / 4];     /* high 2 bits: 2 halves of 32 bytes */
    int8_t scales[QK_K / 16]; /* one 8-bit scale per 16 values */
    dt_f16 d;                 /* super-block scale */
} block_q6_K;                 /* 210 bytes; x = (d*scale) * (q - 32) */

/* The 2- and 3-bit K-quants: value v of a block is bits 2s, 2s+1 of
 * qs[32 * (v / 128) + v % 32] with s = v % 128 / 32 (four 32-value groups
 * share 32 bytes), and each 16 values have their own scale. */
typedef struct {
    uint8_t scales[QK_K / 16]; /* per 16 values: scale (low 4 bits), min (high 4 bits) */
    uint8_t qs[QK_K / 4];      /* 2-bit q */
    dt_f16 d;                  /* super-block scale for the scales */
    dt_f16 dmin;               /* super-block scale for the mins */
} block_q2_K;                  /* 84 bytes; x = (d*sc) * q - (dmin*m) */

typedef struct {
    uint8_t hmask[QK_K / 8];      /* 3rd bit: bit v / 32 of hmask[v % 32]; clear means q - 4 */
    uint8_t qs[QK_K / 4];         /* low 2 bits, as q2_K */
    uint8_t scales[K_SCALE_SIZE]; /* 16 scales of 6 bits, packed (dt_q3_K_scales) */
    dt_f16 d;                     /* super-block scale */
} block_q3_K;                     /* 110 bytes; x = (d*(sc-32)) * q, q in -4..3 */

/* The non-linear 4-bit types: a nibble indexes dt_kvalues_iq4nl. */
typedef struct {
    dt_f16 d;               /* scale */
    uint8_t qs[QK4_NL / 2]; /* nibbles as q4_0; x = d * kvalues[q] */
} block_iq4_nl;             /* 18 bytes */

typedef struct {
    dt_f16 d;                    /* super-block scale */
    uint16_t scales_h;           /* high 2 bits of the 8 sub-block scales */
    uint8_t scales_l[QK_K / 64]; /* low 4 bits of the scales, two per byte */
    uint8_t qs[QK_K / 2];        /* 8 sub-blocks of 32, nibbles as iq4_nl */
} block_iq4_xs;                  /* 136 bytes; x = (d*(ls-32)) * kvalues[q] per 32 values */

_Static_assert(sizeof(block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(block_q2_K) == 84, "q2_K layout");
_Static_assert(sizeof(block_q3_K) == 110, "q3_K layout");
_Static_assert(sizeof(block_iq4_nl) == 18, "iq4_nl layout");
_Static_assert(sizeof(block_iq4_xs) == 136, "iq4_xs layout");
_Static_assert(sizeof(block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K layout");

/* ---- half / bfloat conversions (exact; NaNs come out quiet, as F16C) ---- */
static inline float dt_f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t dt_bits_from_f32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static inline float dt_f16_to_f32(dt_f16 h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0);
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal half: normal float */
            uint32_t e = 113;
            while (!(man & 0x400)) { man <<= 1; e--; }
            bits = sign | (e << 23) | ((man & 0x3ff) << 13);
        }
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    return dt_f32_from_bits(bits);
}
static inline float dt_bf16_to_f32(dt_bf16 h) { return dt_f32_from_bits((uint32_t)h << 16); }

static inline dt_f16 dt_load_f16(const void *p) { dt_f16 h; memcpy(&h, p, 2); return h; }

/* Unpacks the j-th (scale, min) pair of a q4_K / q5_K block (ggml's get_scale_min_k4). */
static inline void dt_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

/* The 16 scales of a q3_K block, minus 32: low 4 bits from byte i % 8 (low
 * or high nibble), high 2 from byte 8 + i % 4 (bits 2 * (i / 4)). Done four
 * at a time in 32-bit words, as ggml's aux / kmask unpacking. */
static inline void dt_q3_K_scales(const uint8_t *s, int8_t out[16]) {
    uint32_t a[3], w[4];
    memcpy(a, s, sizeof a);
    for (int g = 0; g < 4; g++)
        w[g] = ((a[g % 2] >> (4 * (g / 2))) & 0x0F0F0F0Fu) | (((a[2] >> (2 * g)) & 0x03030303u) << 4);
    uint8_t u[16];
    memcpy(u, w, sizeof u);
    for (int i = 0; i < 16; i++) out[i] = (int8_t)(u[i] - 32);
}

/* The 6-bit scale of sub-block ib of an iq4_xs block, minus 32. */
static inline int dt_iq4_xs_scale(const block_iq4_xs *b, int ib) {
    uint16_t h;
    memcpy(&h, &b->scales_h, sizeof h);
    return (((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((h >> (2 * ib)) & 3) << 4)) - 32;
}

/* IQ4_NL / IQ4_XS codebook (ggml's kvalues_iq4nl). */
extern const int8_t dt_kvalues_iq4nl[16];

/* ---- type table --------------------------------------------------------- */
#define DT_TYPE_MAX 31 /* tables below are indexed by the GGML type number */

typedef struct {
    const char *name;
    int block_size; /* values per block */
    int type_size;  /* bytes per block */
} dt_type_info;

/* NULL name: a type ditto cannot run. */
extern const dt_type_info dt_types[DT_TYPE_MAX];

/* ---- kernel table (one per ISA) ---------------------------------------- */
/* Dequantizes `nb` whole blocks of one type from src into dst. */
typedef void (*dt_dequant_fn)(const void *src, float *dst, int64_t nb);
/* dot(a, b) over n values: lanes across n, a fixed reduction. */
typedef float (*dt_dot_fn)(const float *a, const float *b, int64_t n);
/* Tile kernel: y[t*ldy + r] = dot(w + r*ldw, x + t*ldx, k) for r < n_rows,
 * t < n_tok, each output with exactly the operations of dot(). */
typedef void (*dt_gemm_fn)(const float *w, int64_t ldw, int64_t n_rows,
                           const float *x, int64_t ldx, int64_t n_tok,
                           float *y, int64_t ldy, int64_t k);

/* Optional fused path for a few tokens (decode): dequantizes blocks in
 * registers and feeds them to the same fma chains as gemm(), so outputs are
 * bit for bit those of dequant + gemm. w points at the first row (row_bytes
 * apart); y[t*ldy + r] for r < n_rows, t < n_tok <= fused_max_tok. */
typedef void (*dt_fused_fn)(const void *w, int64_t row_bytes, int64_t n_rows,
                            const float *x, int64_t ldx, int64_t n_tok,
                            float *y, int64_t ldy, int64_t k);

/* ---- q16 path (precision = DT_PRECISION_Q16) ----------------------------
 * Activations per token and block of 32: amax = max|x|, dx = amax / 32639,
 * xq = round-to-even(x / dx) clamped to [-32639, 32639] (0 when dx is 0; a
 * NaN becomes -32639), split xq = 256 * xh + xl with xl the signed low byte
 * and xh = (xq - xl) >> 8 (both in [-128, 127]); S = sum of xq, S0 = sum of
 * its first 16, sx = dx * S.
 * Weights as unsigned codes u with offset c: Q4_0 / Q4_1 / Q4_K: the nibble
 * (c = 8, 0, 0); Q5_0: the 5-bit q (c = 16); Q8_0: q + 128 (c = 128); Q6_K:
 * the 6-bit q (c = 32). Per (row, block of 32), exact in int32:
 *   isum = 256 * sum(u * xh) + sum(u * xl) - c * S
 * and per (row, token), over blocks in order, one float lane:
 *   acc = fma(dw * dx, (float)isum, acc)
 *   Q4_1, Q4_K: then acc = fma(mw, sx, acc)
 * with dw the row-block's scale and mw its min (Q4_1: m; Q4_K: -(dmin * m),
 * and dw = d * sc: products exact in f32). Q6_K has a scale per 16 values,
 * so its block has two sums, isum0 over values 0..15 (with S0) and isum1
 * over 16..31 (with S - S0), and two fmas: acc = fma(dw0 * dx, (float)isum0,
 * acc), then acc = fma(dw1 * dx, (float)isum1, acc), dw0/1 = d * sc (exact).
 * y = acc: no horizontal sum, so nothing depends on tiling, batch or ISA.
 *
 * Weights are repacked once (dt_q16_repack) into tiles of 16 rows (the last
 * padded with zero rows), each tile dt_q16_tile_bytes apart, in three parts:
 *   codes: nb blocks of (Q4_0, Q4_1, Q4_K) 256, Q5_0 320, Q6_K 384, Q8_0 512
 *          bytes. Byte 4 * r + i of 64-byte vector j is row r's value
 *          4 * g + i: Q8_0: g = j (u8); the others: low nibble g = j, high
 *          nibble g = j + 4 (j < 4), then their high bits in planes after the
 *          256 nibble bytes: Q5_0: one 64-byte vector, bit g of byte 4r + i
 *          the 5th bit of that value of group g; Q6_K: two vectors, bits
 *          2(g % 4), 2(g % 4) + 1 of vector g / 4 its 5th and 6th bits.
 *   per block 32 bytes: dw of the 16 rows as f16 (Q4_0, Q4_1, Q5_0, Q8_0);
 *          Q4_K: sc of the 16 rows, then m (u8, 6 bits); Q6_K: sc (i8) of
 *          values 0..15 of the 16 rows, then of values 16..31.
 *   then Q4_1: mw as f16 per block (32 bytes); Q4_K: per 8 blocks (a GGUF
 *          super-block) d, then dmin of the 16 rows as f16 (64 bytes);
 *          Q6_K: per 8 blocks d as f16 (32 bytes).
 * So one vpdpbusd with 4 broadcast activation bytes multiplies all 16 rows,
 * and a tile streams once, in GGUF's bytes per weight (Q4_K: 4.625 against
 * GGUF's 4.5, its 6-bit scales stored as bytes). */
typedef struct {
    int8_t xh[32], xl[32]; /* xq = 256 * xh + xl */
    float dx;              /* amax / 32639 */
    float sx;              /* dx * (float)s */
    int32_t s;             /* sum of the block's xq */
    int32_t s0;            /* sum of its first 16 xq (Q6_K's first sub-block) */
} dt_xq16;                 /* 80 bytes */
_Static_assert(sizeof(dt_xq16) == 80, "xq16 layout");

#define DT_Q16_ROWS 16
/* Where the parts of a tile of nb blocks lie (the layout above). */
static inline int64_t dt_q16_code_bytes(int type) { /* one block's codes for the 16 rows */
    return type == DT_Q8_0 ? 512 : type == DT_Q6_K ? 384 : type == DT_Q5_0 ? 320 : 256;
}
static inline int32_t dt_q16_code_offset(int type) { /* c: the signed weight is u - c */
    return type == DT_Q4_0 ? 8 : type == DT_Q5_0 ? 16 : type == DT_Q6_K ? 32 : type == DT_Q8_0 ? 128 : 0;
}
static inline int64_t dt_q16_scales_at(int type, int64_t nb, int64_t b) { /* block b's 32 bytes of scales */
    return nb * dt_q16_code_bytes(type) + 32 * b;
}
static inline int64_t dt_q16_extra_at(int type, int64_t nb, int64_t b) { /* Q4_1's mins, the K types' d */
    return nb * (dt_q16_code_bytes(type) + 32) + (type == DT_Q4_K ? 64 * (b / 8) : type == DT_Q6_K ? 32 * (b / 8) : 32 * b);
}
/* 1 for the types q16 covers (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K). */
int dt_q16_type(int type);
/* Bytes of one repacked tile of `cols` values (a multiple of the type's
 * block size; whole 64-byte lines), or 0 for a type q16 does not cover. */
int64_t dt_q16_tile_bytes(int type, int64_t cols);
/* Bytes of a repacked (rows, cols) matrix. */
int64_t dt_q16_bytes(int type, int64_t rows, int64_t cols);
/* Repacks tiles [tile_begin, tile_end) of the GGUF rows at src into dst (the
 * whole repacked matrix). */
void dt_q16_repack(int type, const void *src, int64_t rows, int64_t cols, void *dst, int64_t tile_begin,
                   int64_t tile_end);
/* The GGUF bytes of row r back from a repacked matrix (dt_row_bytes bytes). */
void dt_q16_unpack_row(int type, const void *packed, int64_t cols, int64_t r, void *dst);
/* Quantizes one token (k values, a multiple of 32) into k / 32 blocks
 * (the reference; every ISA's version gives the same bytes). */
typedef void (*dt_q16_prep_fn)(const float *x, int64_t k, dt_xq16 *out);
/* One block of 32 activations to integers in [-qmax, qmax] (q16: 32639,
 * fast: 127): d = amax / qmax (NaNs do not count), q = round-to-nearest-
 * even(x / d) clamped (0 when d is 0; a NaN becomes -qmax). Returns d. */
float dt_block32_quantize(const float *xb, float qmax, int32_t q[32]);
void dt_q16_prep(const float *x, int64_t k, dt_xq16 *out);
void dt_q16_prep_avx512(const float *x, int64_t k, dt_xq16 *out);
/* Tile kernel: y[t * ldy + l] for lanes (rows of the tile) l in [lane0, lane1)
 * and t < n_tok; token t's blocks at xq + t * ldxq. */
typedef void (*dt_q16_fn)(const uint8_t *tile, int64_t nb, const dt_xq16 *xq, int64_t ldxq, int64_t n_tok,
                          float *y, int64_t ldy, int lane0, int lane1);
#define DT_Q16_DECL(ISA)                                                                                      \
    void dt_q16_##ISA##_q4_0(const uint8_t *, int64_t, const dt_xq16 *, int64_t, int64_t, float *, int64_t, int, int); \
    void dt_q16_##ISA##_q4_1(const uint8_t *, int64_t, const dt_xq16 *, int64_t, int64_t, float *, int64_t, int, int); \
    void dt_q16_##ISA##_q5_0(const uint8_t *, int64_t, const dt_xq16 *, int64_t, int64_t, float *, int64_t, int, int); \
    void dt_q16_##ISA##_q8_0(const uint8_t *, int64_t, const dt_xq16 *, int64_t, int64_t, float *, int64_t, int, int); \
    void dt_q16_##ISA##_q4_K(const uint8_t *, int64_t, const dt_xq16 *, int64_t, int64_t, float *, int64_t, int, int); \
    void dt_q16_##ISA##_q6_K(const uint8_t *, int64_t, const dt_xq16 *, int64_t, int64_t, float *, int64_t, int, int);
DT_Q16_DECL(ref)
DT_Q16_DECL(avx512)
/* The q16 entries of a kernel table. */
#define DT_Q16_TABLE(ISA)                                                                          \
    {[DT_Q4_0] = dt_q16_##ISA##_q4_0, [DT_Q4_1] = dt_q16_##ISA##_q4_1, [DT_Q5_0] = dt_q16_##ISA##_q5_0, \
     [DT_Q8_0] = dt_q16_##ISA##_q8_0, [DT_Q4_K] = dt_q16_##ISA##_q4_K, [DT_Q6_K] = dt_q16_##ISA##_q6_K}

/* Whether the type adds the min term mw * sx (Q4_1, Q4_K): shared by the
 * references and kernels on q16's tiles. */
static inline int dt_q16_has_min(int type) { return type == DT_Q4_1 || type == DT_Q4_K; }
/* Row r of block b of a repacked tile (nb blocks): its 32 unsigned codes,
 * dw and mw (the min, Q4_1 and Q4_K; Q6_K's second scale; else 0), for the
 * references of kernels that read q16's tiles. */
void dt_q16_tile_row(int type, const uint8_t *tile, int64_t nb, int64_t b, int r, int32_t u[32], float *dw,
                     float *mw);

/* An exported scalar kernel NAME on one tile type: FN(type, ...) with the
 * type fixed (the references of quant_q16.c and quant_fast.c). */
#define DT_TILE_REF(NAME, FN, XQ, TYPE)                                                                \
    void NAME(const uint8_t *tile, int64_t nb, const XQ *xq, int64_t ldxq, int64_t n_tok, float *y,    \
              int64_t ldy, int lane0, int lane1) {                                                      \
        FN(TYPE, tile, nb, xq, ldxq, n_tok, y, ldy, lane0, lane1);                                      \
    }

/* ---- fast path (precision = DT_PRECISION_FAST) --------------------------
 * q16's definition with one int8 half, on q16's repacked tiles (w->q16).
 * Activations per token and block of 32: amax = max|x|, dx = amax / 127,
 * xq = round-to-even(x / dx) clamped to [-127, 127] (0 when dx is 0; a NaN
 * becomes -127), s = sum of xq, sx = dx * (float)s. Per (row, block), exact
 * in int32:
 *   isum = sum(u * xq) - c * s
 * and per (row, token), over blocks in order, one float lane:
 *   acc = fma(dw * dx, (float)isum, acc);  with mins: acc = fma(mw, sx, acc)
 * y = acc. One vpdpbusd per 64 multiply-adds (q16: two). The prepared
 * activations carry -c * s for the matrix's offset c, so the kernel seeds
 * its integer sum with it. */
typedef struct {
    int8_t xq[32];
    float dx;    /* amax / 127 */
    float sx;    /* dx * (float)s */
    int32_t ncs; /* -c * s */
    int32_t pad;
} dt_xq8;        /* 48 bytes */
_Static_assert(sizeof(dt_xq8) == 48, "xq8 layout");

/* Quantizes one token (k values, a multiple of 32) into k / 32 blocks for
 * weights of code offset c (the reference; every ISA's gives the same bytes). */
typedef void (*dt_fast_prep_fn)(const float *x, int64_t k, int32_t c, dt_xq8 *out);
void dt_fast_prep(const float *x, int64_t k, int32_t c, dt_xq8 *out);
void dt_fast_prep_avx512(const float *x, int64_t k, int32_t c, dt_xq8 *out);
/* Tile kernel, as dt_q16_fn: y[t * ldy + l] for lanes l in [lane0, lane1)
 * and t < n_tok; token t's blocks at xq + t * ldxq. */
typedef void (*dt_fast_fn)(const uint8_t *tile, int64_t nb, const dt_xq8 *xq, int64_t ldxq, int64_t n_tok,
                           float *y, int64_t ldy, int lane0, int lane1);
/* Every q16 type but Q6_K (its two scales per block would need q16's
 * half sums; it runs q16 under fast: matmul.c). */
#define DT_FAST_DECL(ISA)                                                                                   \
    void dt_fast_##ISA##_q4_0(const uint8_t *, int64_t, const dt_xq8 *, int64_t, int64_t, float *, int64_t, int, int); \
    void dt_fast_##ISA##_q4_1(const uint8_t *, int64_t, const dt_xq8 *, int64_t, int64_t, float *, int64_t, int, int); \
    void dt_fast_##ISA##_q5_0(const uint8_t *, int64_t, const dt_xq8 *, int64_t, int64_t, float *, int64_t, int, int); \
    void dt_fast_##ISA##_q8_0(const uint8_t *, int64_t, const dt_xq8 *, int64_t, int64_t, float *, int64_t, int, int); \
    void dt_fast_##ISA##_q4_K(const uint8_t *, int64_t, const dt_xq8 *, int64_t, int64_t, float *, int64_t, int, int);
DT_FAST_DECL(ref)
DT_FAST_DECL(avx512)
/* The fast entries of a kernel table. */
#define DT_FAST_TABLE(ISA)                                                                                \
    {[DT_Q4_0] = dt_fast_##ISA##_q4_0, [DT_Q4_1] = dt_fast_##ISA##_q4_1, [DT_Q5_0] = dt_fast_##ISA##_q5_0, \
     [DT_Q8_0] = dt_fast_##ISA##_q8_0, [DT_Q4_K] = dt_fast_##ISA##_q4_K}

typedef struct {
    const char *name;
    dt_dequant_fn dequant[DT_TYPE_MAX]; /* NULL for unsupported types */
    dt_dot_fn dot;
    dt_gemm_fn gemm;
    dt_fused_fn fused[DT_TYPE_MAX];     /* NULL: dequant + gemm */
    int fused_max_tok;
    dt_fast_fn fast[DT_TYPE_MAX];       /* NULL: the exact path */
    dt_fast_prep_fn fast_prep;          /* NULL: dt_fast_prep */
    dt_q16_fn q16[DT_TYPE_MAX];         /* NULL: the exact path */
    dt_q16_prep_fn q16_prep;            /* NULL: dt_q16_prep */
} dt_kernels;

extern const dt_kernels dt_kernels_scalar; /* quant.c */
extern const dt_kernels dt_kernels_avx2;   /* quant_avx2.c */
extern const dt_kernels dt_kernels_avx512; /* quant_avx512.c */

/* The table of the current ISA (cpu.c). */
const dt_kernels *dt_kernels_current(void);

/* Scalar reference kernels, also the fallback of the SIMD tables. */
void dt_dequant_f32_ref(const void *src, float *dst, int64_t nb);
void dt_dequant_f16_ref(const void *src, float *dst, int64_t nb);
void dt_dequant_bf16_ref(const void *src, float *dst, int64_t nb);
void dt_dequant_q4_0_ref(const void *src, float *dst, int64_t nb);
void dt_dequant_q4_1_ref(const void *src, float *dst, int64_t nb);
void dt_dequant_q5_0_ref(const void *src, float *dst, int64_t nb);
void dt_dequant_q8_0_ref(const void *src, float *dst, int64_t nb);
void dt_dequant_q5_1_ref(const void *src, float *dst, int64_t nb); /* quant_lowbit.c */
void dt_dequant_q2_K_ref(const void *src, float *dst, int64_t nb);
void dt_dequant_q3_K_ref(const void *src, float *dst, int64_t nb);
void dt_dequant_iq4_nl_ref(const void *src, float *dst, int64_t nb); /* quant_iq4.c */
void dt_dequant_iq4_xs_ref(const void *src, float *dst, int64_t nb);
void dt_dequant_q4_K_ref(const void *src, float *dst, int64_t nb);
void dt_dequant_q5_K_ref(const void *src, float *dst, int64_t nb);
void dt_dequant_q6_K_ref(const void *src, float *dst, int64_t nb);
/* quant_lowbit_x86.c and quant_iq4_x86.c are compiled once per x86 ISA;
 * their dequantizers are NAME_avx2 and NAME_avx512. */
#define DT_X86_TYPES_DECL(ISA)                                            \
    void dt_dequant_q5_1_##ISA(const void *src, float *dst, int64_t nb);   \
    void dt_dequant_q2_K_##ISA(const void *src, float *dst, int64_t nb);   \
    void dt_dequant_q3_K_##ISA(const void *src, float *dst, int64_t nb);   \
    void dt_dequant_iq4_nl_##ISA(const void *src, float *dst, int64_t nb); \
    void dt_dequant_iq4_xs_##ISA(const void *src, float *dst, int64_t nb);
DT_X86_TYPES_DECL(avx2)
DT_X86_TYPES_DECL(avx512)
float dt_dot_f32_ref(const float *a, const float *b, int64_t n);
void dt_gemm_ref(const float *w, int64_t ldw, int64_t n_rows, const float *x, int64_t ldx,
                 int64_t n_tok, float *y, int64_t ldy, int64_t k);

#endif
