/* ditto native layer: the q16 path's definition (see quant.h): activation
 * quantization, the repacked weight layout and the scalar reference tile
 * kernel. Every SIMD q16 kernel gives these floats bit for bit: the integer
 * sums are exact, the float operations below are the definition. */
#include <math.h>
#include <string.h>

#include "quant.h"

int dt_q16_type(int type) { return type == DT_Q4_0 || type == DT_Q4_1 || type == DT_Q8_0; }

/* bytes of one block's codes for 16 rows */
static int64_t code_bytes(int type) { return type == DT_Q8_0 ? 512 : 256; }
/* bytes of one block's f16 scales for 16 rows: dw, plus mw for Q4_1 */
static int64_t scale_bytes(int type) { return type == DT_Q4_1 ? 64 : 32; }

int64_t dt_q16_tile_bytes(int type, int64_t cols) {
    if (!dt_q16_type(type) || cols <= 0 || cols % 32) return 0;
    return (cols / 32 * (code_bytes(type) + scale_bytes(type)) + 63) & ~(int64_t)63;
}

int64_t dt_q16_bytes(int type, int64_t rows, int64_t cols) {
    return (rows + DT_Q16_ROWS - 1) / DT_Q16_ROWS * dt_q16_tile_bytes(type, cols);
}

/* Offset, inside a tile-block's codes, of the byte holding value v of row r,
 * and the shift of its nibble (Q4). */
static int64_t code_at(int type, int r, int v, int *shift) {
    const int g = v / 4, i = v % 4;
    *shift = type == DT_Q8_0 || g < 4 ? 0 : 4;
    return 64 * (type == DT_Q8_0 ? g : g % 4) + 4 * r + i;
}

/* The unsigned code of value v of lane r in a tile-block's codes. */
static int tile_code(int type, const uint8_t *codes, int r, int v) {
    int shift;
    const int64_t at = code_at(type, r, v, &shift);
    return (codes[at] >> shift) & (type == DT_Q8_0 ? 0xFF : 0xF);
}

/* Where a block's quants start in a GGUF block. */
static int quant_offset(int type) { return type == DT_Q4_1 ? 4 : 2; }

void dt_q16_repack(int type, const void *src, int64_t rows, int64_t cols, void *dst, int64_t tile_begin,
                   int64_t tile_end) {
    const int64_t nb = cols / 32, ts = dt_types[type].type_size, rb = nb * ts;
    const int64_t cb = code_bytes(type), tb = dt_q16_tile_bytes(type, cols);
    const int64_t used = nb * (cb + scale_bytes(type));
    for (int64_t t = tile_begin; t < tile_end; t++) {
        uint8_t *tile = (uint8_t *)dst + t * tb;
        if ((t + 1) * DT_Q16_ROWS > rows) /* zero rows pad the last tile */
            memset(tile, 0, (size_t)tb);
        else /* every other byte is written below */
            memset(tile + used, 0, (size_t)(tb - used));
        uint8_t *dw = tile + nb * cb, *mw = dw + nb * 32;
        for (int r = 0; r < DT_Q16_ROWS && t * DT_Q16_ROWS + r < rows; r++) {
            const uint8_t *row = (const uint8_t *)src + (t * DT_Q16_ROWS + r) * rb;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = row + b * ts;
                uint8_t *codes = tile + b * cb;
                /* GGUF's Q4 byte v holds values v and v + 16: exactly the tile's byte
                 * for group v / 4 (low nibble) and v / 4 + 4 (high), so groups of 4
                 * bytes move whole; Q8_0's 4 values of a group become q + 128 */
                if (type == DT_Q8_0) {
                    for (int g = 0; g < 8; g++)
                        for (int i = 0; i < 4; i++) codes[64 * g + 4 * r + i] = (uint8_t)(blk[2 + 4 * g + i] ^ 0x80);
                } else {
                    for (int g = 0; g < 4; g++) memcpy(codes + 64 * g + 4 * r, blk + quant_offset(type) + 4 * g, 4);
                }
                memcpy(dw + b * 32 + 2 * r, blk, 2);
                if (type == DT_Q4_1) memcpy(mw + b * 32 + 2 * r, blk + 2, 2);
            }
        }
    }
}

void dt_q16_unpack_row(int type, const void *packed, int64_t cols, int64_t r, void *dst) {
    const int64_t nb = cols / 32, ts = dt_types[type].type_size, cb = code_bytes(type);
    const uint8_t *tile = (const uint8_t *)packed + r / DT_Q16_ROWS * dt_q16_tile_bytes(type, cols);
    const uint8_t *dw = tile + nb * cb, *mw = dw + nb * 32;
    const int lane = (int)(r % DT_Q16_ROWS);
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *blk = (uint8_t *)dst + b * ts, *qs = blk + quant_offset(type);
        memcpy(blk, dw + b * 32 + 2 * lane, 2);
        if (type == DT_Q4_1) memcpy(blk + 2, mw + b * 32 + 2 * lane, 2);
        if (type != DT_Q8_0) memset(qs, 0, 16);
        for (int v = 0; v < 32; v++) {
            const int u = tile_code(type, tile + b * cb, lane, v);
            if (type == DT_Q8_0)
                qs[v] = (uint8_t)(u - 128);
            else
                qs[v % 16] |= (uint8_t)(u << (v < 16 ? 0 : 4));
        }
    }
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
        int32_t q[32], s = 0;
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
        }
        o->dx = d;
        o->s = s;
        o->sx = d * (float)s;
        o->pad = 0;
    }
}

static void q16_ref(int type, const uint8_t *tile, int64_t nb, const dt_xq16 *xq, int64_t ldxq, int64_t n_tok,
                    float *y, int64_t ldy, int lane0, int lane1) {
    const int64_t cb = code_bytes(type);
    const int32_t c = dt_q16_code_offset(type);
    const uint8_t *dw = tile + nb * cb, *mw = dw + nb * 32;
    for (int64_t t = 0; t < n_tok; t++)
        for (int r = lane0; r < lane1; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const dt_xq16 *x = xq + t * ldxq + b;
                int32_t h = 0, l = 0;
                for (int v = 0; v < 32; v++) {
                    const int u = tile_code(type, tile + b * cb, r, v);
                    h += u * x->xh[v];
                    l += u * x->xl[v];
                }
                const int32_t isum = 256 * h + l - c * x->s;
                acc = fmaf(dt_f16_to_f32(dt_load_f16(dw + b * 32 + 2 * r)) * x->dx, (float)isum, acc);
                if (type == DT_Q4_1) acc = fmaf(dt_f16_to_f32(dt_load_f16(mw + b * 32 + 2 * r)), x->sx, acc);
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
Q16_REF(q8_0, DT_Q8_0)

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

/* ---- tile access for the fast path's reference (quant_fast.c) --------- */

void dt_q16_tile_row(int type, const uint8_t *tile, int64_t nb, int64_t b, int r, int32_t u[32], float *dw,
                     float *mw) {
    const int64_t cb = code_bytes(type);
    const uint8_t *dws = tile + nb * cb, *mws = dws + nb * 32;
    for (int v = 0; v < 32; v++) u[v] = tile_code(type, tile + b * cb, r, v);
    *dw = dt_f16_to_f32(dt_load_f16(dws + b * 32 + 2 * r));
    *mw = dt_q16_has_min(type) ? dt_f16_to_f32(dt_load_f16(mws + b * 32 + 2 * r)) : 0.0f;
}
