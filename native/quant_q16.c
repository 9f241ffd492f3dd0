/* ditto native layer: the q16 path's definition (see quant.h): activation
 * quantization, the repacked weight layout and the scalar reference tile
 * kernel. Every SIMD q16 kernel gives these floats bit for bit: the integer
 * sums are exact, the float operations below are the definition. */
#include <math.h>
#include <string.h>

#include "quant.h"

int dt_q16_type(int type) {
    return type == DT_Q4_0 || type == DT_Q4_1 || type == DT_Q5_0 || type == DT_Q8_0 || type == DT_Q4_K ||
           type == DT_Q6_K;
}

/* Q4_1's mins and the K types' super-block scales follow the per-block scales. */
static int has_extra(int type) { return type == DT_Q4_1 || type == DT_Q4_K || type == DT_Q6_K; }

int64_t dt_q16_tile_bytes(int type, int64_t cols) {
    if (!dt_q16_type(type) || cols <= 0 || cols % dt_types[type].block_size) return 0;
    const int64_t nb = cols / 32;
    const int64_t used = has_extra(type) ? dt_q16_extra_at(type, nb, nb) : dt_q16_scales_at(type, nb, nb);
    return (used + 63) & ~(int64_t)63;
}

int64_t dt_q16_bytes(int type, int64_t rows, int64_t cols) {
    return (rows + DT_Q16_ROWS - 1) / DT_Q16_ROWS * dt_q16_tile_bytes(type, cols);
}

/* Repacking moves "items" between a GGUF row and a tile: per block of 32,
 * the 32 codes, then the bytes (or 6-bit fields) of its scales. An item is
 * a bit field of up to 8 bits, in two parts where a value's high bits live
 * apart: `bits` bits at bit `shift` of byte `at`, then `hi_bits` at bit
 * `hi_shift` of byte `hi_at`; `flip` is xored into a whole-byte field
 * (Q8_0's code is q + 128). The same positions serve both directions, so
 * unpack is the exact inverse of repack. */
typedef struct {
    int64_t at, hi_at;
    int shift, bits, hi_shift, hi_bits, flip;
} field;

static field byte_at(int64_t at) { return (field){at, at, 0, 8, 0, 0, 0}; }

static int get_field(const uint8_t *p, field f) {
    const int lo = ((p[f.at] ^ f.flip) >> f.shift) & ((1 << f.bits) - 1);
    return lo | (((p[f.hi_at] >> f.hi_shift) & ((1 << f.hi_bits) - 1)) << f.bits);
}

/* Sets a field whose bits are still zero. */
static void put_field(uint8_t *p, field f, int v) {
    p[f.at] |= (uint8_t)(((v & ((1 << f.bits) - 1)) << f.shift) ^ f.flip);
    p[f.hi_at] |= (uint8_t)(((v >> f.bits) & ((1 << f.hi_bits) - 1)) << f.hi_shift);
}

/* Items per block: 32 codes, then the scale bytes / fields. */
static int block_items(int type) {
    return 32 + (type == DT_Q4_K ? 6 : type == DT_Q4_1 || type == DT_Q6_K ? 4 : 2);
}

/* Item j of block b in a GGUF row. */
static field gguf_field(int type, int64_t b, int j) {
    const int64_t sb = b / 8, s = b % 8; /* the K types' super-block and sub-block */
    switch (type) {
    case DT_Q4_0:
    case DT_Q4_1: {
        const int64_t blk = b * dt_types[type].type_size, qs = blk + (type == DT_Q4_1 ? 4 : 2);
        if (j < 32) return (field){qs + j % 16, 0, 4 * (j / 16), 4, 0, 0, 0};
        return byte_at(blk + j - 32); /* d (and m) */
    }
    case DT_Q5_0: {
        const int64_t blk = b * (int64_t)sizeof(block_q5_0);
        if (j < 32) return (field){blk + 6 + j % 16, blk + 2 + j / 8, 4 * (j / 16), 4, j % 8, 1, 0};
        return byte_at(blk + j - 32);
    }
    case DT_Q8_0: {
        const int64_t blk = b * (int64_t)sizeof(block_q8_0);
        if (j < 32) return (field){blk + 2 + j, 0, 0, 8, 0, 0, 0x80};
        return byte_at(blk + j - 32);
    }
    case DT_Q4_K: {
        const int64_t sbk = sb * (int64_t)sizeof(block_q4_K), sc = sbk + 4;
        if (j < 32) return (field){sbk + 16 + 32 * (s / 2) + j, 0, 4 * (s % 2), 4, 0, 0, 0};
        if (j < 34) { /* sc (32) or m (33) of sub-block s: dt_scale_min_k4's bits */
            const int64_t m = j - 32;
            if (s < 4) return (field){sc + s + 4 * m, 0, 0, 6, 0, 0, 0};
            return (field){sc + s + 4, sc + s - 4 + 4 * m, 4 * m, 4, 6, 2, 0};
        }
        return byte_at(sbk + j - 34); /* d, dmin */
    }
    default: { /* DT_Q6_K: values 32s..32s+31 of the super-block (ggml's dequantize_row_q6_K) */
        const int64_t sbk = sb * (int64_t)sizeof(block_q6_K), n = s / 4, q = s % 4;
        if (j < 32) return (field){sbk + 64 * n + 32 * (q % 2) + j, sbk + 128 + 32 * n + j, 4 * (q / 2), 4, 2 * q, 2, 0};
        if (j < 34) return byte_at(sbk + 192 + 2 * s + j - 32); /* the scales of its two 16s */
        return byte_at(sbk + 208 + j - 34); /* d */
    }
    }
}

/* Item j of block b of lane r in a tile of nb blocks. */
static field tile_field(int type, int64_t nb, int64_t b, int r, int j) {
    if (j < 32) {
        const int64_t codes = b * dt_q16_code_bytes(type), g = j / 4, at = 4 * r + j % 4;
        if (type == DT_Q8_0) return (field){codes + 64 * g + at, 0, 0, 8, 0, 0, 0};
        const int64_t nib = codes + 64 * (g % 4) + at;
        if (type == DT_Q5_0) return (field){nib, codes + 256 + at, 4 * (int)(g / 4), 4, (int)g, 1, 0};
        if (type == DT_Q6_K)
            return (field){nib, codes + 256 + 64 * (g / 4) + at, 4 * (int)(g / 4), 4, 2 * (int)(g % 4), 2, 0};
        return (field){nib, 0, 4 * (int)(g / 4), 4, 0, 0, 0};
    }
    const int64_t scales = dt_q16_scales_at(type, nb, b), extra = dt_q16_extra_at(type, nb, b);
    if (type == DT_Q4_K || type == DT_Q6_K) { /* sc / m bytes per block, f16 d (dmin) per super-block */
        if (j < 34) return byte_at(scales + 16 * (j - 32) + r);
        return byte_at(extra + 32 * ((j - 34) / 2) + 2 * r + (j - 34) % 2);
    }
    if (j < 34) return byte_at(scales + 2 * r + j - 32); /* f16 dw */
    return byte_at(extra + 2 * r + j - 34);              /* Q4_1's f16 mw */
}

/* One type's repack; inlined per type so the field arithmetic folds. */
static inline __attribute__((always_inline)) void repack_tiles(const int type, const uint8_t *src, int64_t rows,
                                                               int64_t cols, uint8_t *dst, int64_t tile_begin,
                                                               int64_t tile_end) {
    const int64_t nb = cols / 32, rb = dt_row_bytes(type, cols), tb = dt_q16_tile_bytes(type, cols);
    for (int64_t t = tile_begin; t < tile_end; t++) {
        uint8_t *tile = dst + t * tb;
        memset(tile, 0, (size_t)tb); /* zero rows pad the last tile */
        for (int r = 0; r < DT_Q16_ROWS && t * DT_Q16_ROWS + r < rows; r++) {
            const uint8_t *row = src + (t * DT_Q16_ROWS + r) * rb;
            for (int64_t b = 0; b < nb; b++)
                for (int j = 0; j < block_items(type); j++)
                    put_field(tile, tile_field(type, nb, b, r, j), get_field(row, gguf_field(type, b, j)));
        }
    }
}

void dt_q16_repack(int type, const void *src, int64_t rows, int64_t cols, void *dst, int64_t tile_begin,
                   int64_t tile_end) {
    switch (type) {
#define REPACK(T) \
    case T: repack_tiles(T, src, rows, cols, dst, tile_begin, tile_end); break;
        REPACK(DT_Q4_0)
        REPACK(DT_Q4_1)
        REPACK(DT_Q5_0)
        REPACK(DT_Q8_0)
        REPACK(DT_Q4_K)
        REPACK(DT_Q6_K)
#undef REPACK
    }
}

void dt_q16_unpack_row(int type, const void *packed, int64_t cols, int64_t r, void *dst) {
    const int64_t nb = cols / 32;
    const uint8_t *tile = (const uint8_t *)packed + r / DT_Q16_ROWS * dt_q16_tile_bytes(type, cols);
    const int lane = (int)(r % DT_Q16_ROWS);
    memset(dst, 0, (size_t)dt_row_bytes(type, cols));
    for (int64_t b = 0; b < nb; b++) /* a super-block's d is set by each of its blocks: the same bits */
        for (int j = 0; j < block_items(type); j++)
            put_field(dst, gguf_field(type, b, j), get_field(tile, tile_field(type, nb, b, lane, j)));
}

/* Written without libm calls so the compiler vectorizes it: comparisons
 * that skip NaNs (as fmaxf), the clamp before the rounding (same result:
 * rounding keeps [-32639, 32639]), and round-to-nearest-even by adding and
 * subtracting 1.5 * 2^23 (exact for |v| <= 2^22). */
void dt_q16_prep(const float *x, int64_t k, dt_xq16 *out) {
    const float magic = 12582912.0f;
    for (int64_t b = 0; b < k / 32; b++) {
        const float *xb = x + 32 * b;
        dt_xq16 *o = out + b;
        float amax = 0.0f;
        for (int v = 0; v < 32; v++) {
            const float a = fabsf(xb[v]);
            amax = a > amax ? a : amax; /* a NaN does not count */
        }
        const float d = amax / 32639.0f;
        int32_t q[32], s = 0, s0 = 0;
        for (int v = 0; v < 32; v++) {
            float r = d != 0.0f ? xb[v] / d : 0.0f;
            r = r > 32639.0f ? 32639.0f : r;
            r = r >= -32639.0f ? r : -32639.0f; /* a NaN becomes -32639 */
            q[v] = (int32_t)((r + magic) - magic);
        }
        for (int v = 0; v < 32; v++) {
            const int32_t lo = (int8_t)(q[v] & 0xFF);
            o->xl[v] = (int8_t)lo;
            o->xh[v] = (int8_t)((q[v] - lo) >> 8);
            s += q[v];
            if (v == 15) s0 = s;
        }
        o->dx = d;
        o->s = s;
        o->sx = d * (float)s;
        o->s0 = s0;
    }
}

/* Lane r's two float scales of block b: dw and mw (Q4_1, Q4_K), or Q6_K's
 * dw0 and dw1; exact products for the K types. */
static void ref_scales(int type, const uint8_t *tile, int64_t nb, int64_t b, int r, float *s1, float *s2) {
    const uint8_t *scales = tile + dt_q16_scales_at(type, nb, b), *extra = tile + dt_q16_extra_at(type, nb, b);
    *s2 = 0.0f;
    if (type == DT_Q4_K) {
        const float d = dt_f16_to_f32(dt_load_f16(extra + 2 * r)), dmin = dt_f16_to_f32(dt_load_f16(extra + 32 + 2 * r));
        *s1 = (float)scales[r] * d;
        *s2 = (float)scales[16 + r] * -dmin;
    } else if (type == DT_Q6_K) {
        const float d = dt_f16_to_f32(dt_load_f16(extra + 2 * r));
        *s1 = (float)(int8_t)scales[r] * d;
        *s2 = (float)(int8_t)scales[16 + r] * d;
    } else {
        *s1 = dt_f16_to_f32(dt_load_f16(scales + 2 * r));
        if (type == DT_Q4_1) *s2 = dt_f16_to_f32(dt_load_f16(extra + 2 * r));
    }
}

static void q16_ref(int type, const uint8_t *tile, int64_t nb, const dt_xq16 *xq, int64_t ldxq, int64_t n_tok,
                    float *y, int64_t ldy, int lane0, int lane1) {
    const int32_t c = dt_q16_code_offset(type);
    for (int64_t t = 0; t < n_tok; t++)
        for (int r = lane0; r < lane1; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const dt_xq16 *x = xq + t * ldxq + b;
                int32_t h[2] = {0, 0}, l[2] = {0, 0}; /* per 16 values */
                for (int v = 0; v < 32; v++) {
                    const int u = get_field(tile, tile_field(type, nb, b, r, v));
                    h[v / 16] += u * x->xh[v];
                    l[v / 16] += u * x->xl[v];
                }
                float s1, s2;
                ref_scales(type, tile, nb, b, r, &s1, &s2);
                if (type == DT_Q6_K) {
                    const int32_t isum0 = 256 * h[0] + l[0] - c * x->s0, isum1 = 256 * h[1] + l[1] - c * (x->s - x->s0);
                    acc = fmaf(s1 * x->dx, (float)isum0, acc);
                    acc = fmaf(s2 * x->dx, (float)isum1, acc);
                } else {
                    const int32_t isum = 256 * (h[0] + h[1]) + l[0] + l[1] - c * x->s;
                    acc = fmaf(s1 * x->dx, (float)isum, acc);
                    if (type == DT_Q4_1 || type == DT_Q4_K) acc = fmaf(s2, x->sx, acc);
                }
            }
            y[t * ldy + r] = acc;
        }
}

#define Q16_REF(NAME, TYPE)                                                                                  \
    void dt_q16_ref_##NAME(const uint8_t *tile, int64_t nb, const dt_xq16 *xq, int64_t ldxq, int64_t n_tok, \
                           float *y, int64_t ldy, int lane0, int lane1) {                                    \
        q16_ref(TYPE, tile, nb, xq, ldxq, n_tok, y, ldy, lane0, lane1);                                      \
    }
Q16_REF(q4_0, DT_Q4_0)
Q16_REF(q4_1, DT_Q4_1)
Q16_REF(q5_0, DT_Q5_0)
Q16_REF(q8_0, DT_Q8_0)
Q16_REF(q4_K, DT_Q4_K)
Q16_REF(q6_K, DT_Q6_K)

/* ---- the public repack API (ditto.h) ---------------------------------- */

int64_t dt_q16_repacked_bytes(const dt_tensor *w) {
    if (!w || w->rows < 0) return 0;
    return dt_q16_bytes(w->type, w->rows, w->cols);
}

struct repack_job {
    const dt_tensor *w;
    void *dst;
    int64_t tiles_per_task, n_tiles;
};

static void repack_task(void *arg, int64_t task, int thread) {
    (void)thread;
    const struct repack_job *job = arg;
    const int64_t t0 = task * job->tiles_per_task;
    const int64_t t1 = t0 + job->tiles_per_task < job->n_tiles ? t0 + job->tiles_per_task : job->n_tiles;
    dt_q16_repack(job->w->type, job->w->data, job->w->rows, job->w->cols, job->dst, t0, t1);
}

int dt_q16_repack_tensor(dt_pool *pool, const dt_tensor *w, void *dst) {
    if (!pool || !w || !w->data || !dst || ((uintptr_t)dst & 63)) return DT_ERR_INVALID;
    if (dt_q16_repacked_bytes(w) <= 0) return DT_ERR_UNSUPPORTED;
    struct repack_job job = {w, dst, 16, (w->rows + DT_Q16_ROWS - 1) / DT_Q16_ROWS};
    dt_pool_run(pool, repack_task, &job, (job.n_tiles + job.tiles_per_task - 1) / job.tiles_per_task);
    return DT_OK;
}

int dt_q16_unpack(const dt_tensor *w, int64_t r, void *dst) {
    if (!w || !w->q16 || !dst || r < 0 || r >= w->rows) return DT_ERR_INVALID;
    if (dt_q16_repacked_bytes(w) <= 0) return DT_ERR_UNSUPPORTED;
    dt_q16_unpack_row(w->type, w->q16, w->cols, r, dst);
    return DT_OK;
}
