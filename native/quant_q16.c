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

/* A block's 32 codes move between a GGUF row and a tile through u[32], the
 * unsigned codes in value order: gguf_codes / gguf_set_codes and
 * tile_codes / tile_set_codes, each pair the other's inverse. */
static inline void gguf_codes(int type, const uint8_t *row, int64_t b, uint8_t u[32]) {
    const int64_t s = b % 8; /* the K types' sub-block */
    if (type == DT_Q8_0) {
        const uint8_t *q = row + b * (int64_t)sizeof(block_q8_0) + 2;
        for (int v = 0; v < 32; v++) u[v] = q[v] ^ 0x80;
    } else if (type == DT_Q4_K || type == DT_Q6_K) {
        /* Q4_K: nibble s % 2 of 32 bytes per two sub-blocks; Q6_K: per half of
         * the super-block, 64 bytes of nibbles (sub-block s % 4: bytes
         * 32 (s % 2), nibble s % 4 / 2) and 32 of 2-bit pairs (ggml's
         * dequantize_row_q6_K) */
        const uint8_t *sb = row + b / 8 * dt_types[type].type_size;
        const uint8_t *ql = type == DT_Q4_K ? sb + 16 + 32 * (s / 2) : sb + 64 * (s / 4) + 32 * (s % 2);
        const int sh = type == DT_Q4_K ? 4 * (int)(s % 2) : 4 * (int)(s % 4 / 2);
        for (int v = 0; v < 32; v++) u[v] = (ql[v] >> sh) & 0xF;
        if (type == DT_Q6_K)
            for (int v = 0; v < 32; v++) u[v] |= ((sb[128 + 32 * (s / 4) + v] >> (2 * (s % 4))) & 3) << 4;
    } else { /* Q4-style bytes: value v low nibble, v + 16 high */
        const uint8_t *blk = row + b * dt_types[type].type_size;
        const uint8_t *qs = blk + (type == DT_Q4_1 ? 4 : type == DT_Q5_0 ? 6 : 2);
        for (int v = 0; v < 16; v++) {
            u[v] = qs[v] & 0xF;
            u[v + 16] = qs[v] >> 4;
        }
        if (type == DT_Q5_0) {
            uint32_t qh;
            memcpy(&qh, blk + 2, 4); /* little-endian hosts, as GGUF */
            for (int v = 0; v < 32; v++) u[v] |= ((qh >> v) & 1) << 4;
        }
    }
}

/* Sets block b's codes in a GGUF row whose bytes are still zero. */
static void gguf_set_codes(int type, uint8_t *row, int64_t b, const uint8_t u[32]) {
    const int64_t s = b % 8;
    if (type == DT_Q8_0) {
        uint8_t *q = row + b * (int64_t)sizeof(block_q8_0) + 2;
        for (int v = 0; v < 32; v++) q[v] = u[v] ^ 0x80;
    } else if (type == DT_Q4_K || type == DT_Q6_K) {
        uint8_t *sb = row + b / 8 * dt_types[type].type_size;
        uint8_t *ql = type == DT_Q4_K ? sb + 16 + 32 * (s / 2) : sb + 64 * (s / 4) + 32 * (s % 2);
        const int sh = type == DT_Q4_K ? 4 * (int)(s % 2) : 4 * (int)(s % 4 / 2);
        for (int v = 0; v < 32; v++) ql[v] |= (uint8_t)((u[v] & 0xF) << sh);
        if (type == DT_Q6_K)
            for (int v = 0; v < 32; v++) sb[128 + 32 * (s / 4) + v] |= (uint8_t)(((u[v] >> 4) & 3) << (2 * (s % 4)));
    } else {
        uint8_t *blk = row + b * dt_types[type].type_size;
        uint8_t *qs = blk + (type == DT_Q4_1 ? 4 : type == DT_Q5_0 ? 6 : 2);
        for (int v = 0; v < 16; v++) qs[v] = (uint8_t)((u[v] & 0xF) | ((u[v + 16] & 0xF) << 4));
        if (type == DT_Q5_0) {
            uint32_t qh = 0;
            for (int v = 0; v < 32; v++) qh |= (uint32_t)((u[v] >> 4) & 1) << v;
            memcpy(blk + 2, &qh, 4);
        }
    }
}

/* Lane r's codes in a tile-block's codes (quant.h's layout). */
static void tile_codes(int type, const uint8_t *codes, int r, uint8_t u[32]) {
    const uint8_t *c = codes + 4 * r;
    for (int j = 0; j < (type == DT_Q8_0 ? 8 : 4); j++)
        for (int i = 0; i < 4; i++) {
            if (type == DT_Q8_0) {
                u[4 * j + i] = c[64 * j + i];
            } else {
                u[4 * j + i] = c[64 * j + i] & 0xF;
                u[16 + 4 * j + i] = c[64 * j + i] >> 4;
            }
        }
    for (int g = 0; g < 8; g++)
        for (int i = 0; i < 4; i++) {
            if (type == DT_Q5_0) u[4 * g + i] |= ((c[256 + i] >> g) & 1) << 4;
            if (type == DT_Q6_K) u[4 * g + i] |= ((c[256 + 64 * (g / 4) + i] >> (2 * (g % 4))) & 3) << 4;
        }
}

/* Sets lane r's codes in a tile-block's codes that are still zero. */
static inline void tile_set_codes(int type, uint8_t *codes, int r, const uint8_t u[32]) {
    uint8_t *c = codes + 4 * r;
    for (int j = 0; j < (type == DT_Q8_0 ? 8 : 4); j++)
        for (int i = 0; i < 4; i++)
            c[64 * j + i] = type == DT_Q8_0 ? u[4 * j + i] : (uint8_t)((u[4 * j + i] & 0xF) | ((u[16 + 4 * j + i] & 0xF) << 4));
    for (int g = 0; g < 8; g++)
        for (int i = 0; i < 4; i++) {
            if (type == DT_Q5_0) c[256 + i] |= (uint8_t)(((u[4 * g + i] >> 4) & 1) << g);
            if (type == DT_Q6_K) c[256 + 64 * (g / 4) + i] |= (uint8_t)(((u[4 * g + i] >> 4) & 3) << (2 * (g % 4)));
        }
}

/* A block's scales move as items: bytes, or Q4_K's 6-bit scales and mins.
 * An item is a bit field of up to 8 bits, in two parts where its high bits
 * live apart: `bits` bits at bit `shift` of byte `at`, then `hi_bits` at
 * bit `hi_shift` of byte `hi_at`. The same positions serve both directions. */
typedef struct {
    int64_t at, hi_at;
    int shift, bits, hi_shift, hi_bits;
} field;

static inline field byte_at(int64_t at) { return (field){at, at, 0, 8, 0, 0}; }

static inline int get_field(const uint8_t *p, field f) {
    const int lo = (p[f.at] >> f.shift) & ((1 << f.bits) - 1);
    return lo | (((p[f.hi_at] >> f.hi_shift) & ((1 << f.hi_bits) - 1)) << f.bits);
}

/* Sets a field whose bits are still zero. */
static inline void put_field(uint8_t *p, field f, int v) {
    p[f.at] |= (uint8_t)((v & ((1 << f.bits) - 1)) << f.shift);
    p[f.hi_at] |= (uint8_t)(((v >> f.bits) & ((1 << f.hi_bits) - 1)) << f.hi_shift);
}

/* Scale items per block. */
static inline int scale_items(int type) { return type == DT_Q4_K ? 6 : type == DT_Q4_1 || type == DT_Q6_K ? 4 : 2; }

/* Scale item j of block b in a GGUF row. */
static inline field gguf_scale(int type, int64_t b, int j) {
    const int64_t sb = b / 8 * dt_types[type].type_size, s = b % 8;
    if (type == DT_Q4_K) {
        if (j >= 2) return byte_at(sb + j - 2); /* d, dmin */
        const int64_t sc = sb + 4;              /* sc (j = 0) or m (1) of sub-block s: dt_scale_min_k4's bits */
        if (s < 4) return (field){sc + s + 4 * j, sc, 0, 6, 0, 0};
        return (field){sc + s + 4, sc + s - 4 + 4 * j, 4 * j, 4, 6, 2};
    }
    if (type == DT_Q6_K) return byte_at(sb + (j < 2 ? 192 + 2 * s + j : 208 + j - 2)); /* sc of its 16s, d */
    return byte_at(b * dt_types[type].type_size + j);                                 /* d (and m) */
}

/* Scale item j of block b of lane r in a tile of nb blocks. */
static inline field tile_scale(int type, int64_t nb, int64_t b, int r, int j) {
    const int64_t scales = dt_q16_scales_at(type, nb, b), extra = dt_q16_extra_at(type, nb, b);
    if (type == DT_Q4_K || type == DT_Q6_K) /* sc / m bytes per block, f16 d (dmin) per super-block */
        return byte_at(j < 2 ? scales + 16 * j + r : extra + 32 * ((j - 2) / 2) + 2 * r + j % 2);
    return byte_at(j < 2 ? scales + 2 * r + j : extra + 2 * r + j - 2); /* f16 dw, Q4_1's f16 mw */
}

/* One type's repack, inlined per type so its branches and loops fold. */
static inline __attribute__((always_inline)) void repack_tiles(const int type, const uint8_t *src, int64_t rows,
                                                               int64_t cols, uint8_t *dst, int64_t tile_begin,
                                                               int64_t tile_end) {
    const int64_t nb = cols / 32, rb = dt_row_bytes(type, cols), tb = dt_q16_tile_bytes(type, cols);
    const int64_t cb = dt_q16_code_bytes(type);
    for (int64_t t = tile_begin; t < tile_end; t++) {
        uint8_t *tile = dst + t * tb;
        memset(tile, 0, (size_t)tb); /* zero rows pad the last tile */
        for (int r = 0; r < DT_Q16_ROWS && t * DT_Q16_ROWS + r < rows; r++) {
            const uint8_t *row = src + (t * DT_Q16_ROWS + r) * rb;
            for (int64_t b = 0; b < nb; b++) {
                uint8_t u[32];
                gguf_codes(type, row, b, u);
                tile_set_codes(type, tile + b * cb, r, u);
                for (int j = 0; j < scale_items(type); j++)
                    put_field(tile, tile_scale(type, nb, b, r, j), get_field(row, gguf_scale(type, b, j)));
            }
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
    const int64_t nb = cols / 32, cb = dt_q16_code_bytes(type);
    const uint8_t *tile = (const uint8_t *)packed + r / DT_Q16_ROWS * dt_q16_tile_bytes(type, cols);
    const int lane = (int)(r % DT_Q16_ROWS);
    memset(dst, 0, (size_t)dt_row_bytes(type, cols));
    for (int64_t b = 0; b < nb; b++) {
        uint8_t u[32];
        tile_codes(type, tile + b * cb, lane, u);
        gguf_set_codes(type, dst, b, u);
        for (int j = 0; j < scale_items(type); j++) /* a super-block's d is set by each of its blocks: the same bits */
            put_field(dst, gguf_scale(type, b, j), get_field(tile, tile_scale(type, nb, b, lane, j)));
    }
}

/* Written without libm calls so the compiler vectorizes it: comparisons
 * that skip NaNs (as fmaxf), the clamp before the rounding (same result:
 * rounding keeps [-qmax, qmax]), and round-to-nearest-even by adding and
 * subtracting 1.5 * 2^23 (exact for |v| <= 2^22). */
float dt_block32_quantize(const float *xb, float qmax, int32_t q[32]) {
    const float magic = 12582912.0f;
    float amax = 0.0f;
    for (int v = 0; v < 32; v++) {
        const float a = fabsf(xb[v]);
        amax = a > amax ? a : amax; /* a NaN does not count */
    }
    const float d = amax / qmax;
    for (int v = 0; v < 32; v++) {
        float r = d != 0.0f ? xb[v] / d : 0.0f;
        r = r > qmax ? qmax : r;
        r = r >= -qmax ? r : -qmax; /* a NaN becomes -qmax */
        q[v] = (int32_t)((r + magic) - magic);
    }
    return d;
}

void dt_q16_prep(const float *x, int64_t k, dt_xq16 *out) {
    for (int64_t b = 0; b < k / 32; b++) {
        dt_xq16 *o = out + b;
        int32_t q[32], s = 0, s0 = 0;
        const float d = dt_block32_quantize(x + 32 * b, 32639.0f, q);
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
                int32_t u[32], h[2] = {0, 0}, l[2] = {0, 0}; /* per 16 values */
                float s1, s2;
                dt_q16_tile_row(type, tile, nb, b, r, u, &s1, &s2);
                for (int v = 0; v < 32; v++) {
                    h[v / 16] += u[v] * x->xh[v];
                    l[v / 16] += u[v] * x->xl[v];
                }
                if (type == DT_Q6_K) {
                    const int32_t isum0 = 256 * h[0] + l[0] - c * x->s0, isum1 = 256 * h[1] + l[1] - c * (x->s - x->s0);
                    acc = fmaf(s1 * x->dx, (float)isum0, acc);
                    acc = fmaf(s2 * x->dx, (float)isum1, acc);
                } else {
                    const int32_t isum = 256 * (h[0] + h[1]) + l[0] + l[1] - c * x->s;
                    acc = fmaf(s1 * x->dx, (float)isum, acc);
                    if (dt_q16_has_min(type)) acc = fmaf(s2, x->sx, acc);
                }
            }
            y[t * ldy + r] = acc;
        }
}

#define Q16_REF(NAME, TYPE) DT_TILE_REF(dt_q16_ref_##NAME, q16_ref, dt_xq16, TYPE)
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

/* ---- tile access for the references (q16_ref above, quant_fast.c) ----- */

void dt_q16_tile_row(int type, const uint8_t *tile, int64_t nb, int64_t b, int r, int32_t u[32], float *dw,
                     float *mw) {
    uint8_t codes[32];
    tile_codes(type, tile + b * dt_q16_code_bytes(type), r, codes);
    for (int v = 0; v < 32; v++) u[v] = codes[v];
    ref_scales(type, tile, nb, b, r, dw, mw);
}
