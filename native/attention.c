/* ditto native layer: attention, the scalar reference (cpu.c picks the ISA)
 * and the combine step every ISA shares.
 *
 * The reference takes one query row and one chunk at a time: scores in
 * position order (each a plain multiply-add chain over head_dim, then
 * * scale), the max m_c, p = expf(s - m_c) with the sum in double (stored
 * as l_c, rounded to float), then o_c = sum_j p_j v_j accumulated in
 * ascending position order. The SIMD files (attention_x86.h for
 * attention_avx2.c and attention_avx512.c) load every key / value row once
 * for all rows of the tile; their order of operations is fixed too (see
 * attention.h).
 */
#include <math.h>

#include "attention.h"
#include "quant.h"

#define BLOCK 16 /* positions per key block (DT_KV_BLOCK) */
#define CHUNK DT_ATTN_CHUNK

static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

int64_t dt_attention_part_floats(int n_rows, int n_pos, int head_dim) {
    if (n_rows < 1) n_rows = 1;
    if (n_pos < 1) n_pos = 1;
    return (int64_t)n_rows * (n_pos / CHUNK + 2) * dt_attn_part_floats(head_dim);
}

/* The kernels' own scratch (scores of every row over the call's key
 * blocks, and room for the SIMD files' alignment; for a bf16 cache p as
 * bf16 and the rows' query pairs, each 64-byte aligned), then the
 * partials. */
static int64_t kernel_floats(int n_rows, int n_pos, int head_dim) {
    if (n_rows < 1) n_rows = 1;
    if (n_pos < 1) n_pos = 1;
    const int64_t scores = (int64_t)n_rows * (round16(n_pos) + round16(head_dim) + 16) + 64;
    const int64_t pairs = (int64_t)n_rows * (round16(n_pos) / 2 + head_dim / 2) + 32;
    return scores + pairs;
}

int64_t dt_attention_scratch_floats(int n_rows, int n_pos, int head_dim) {
    return round16(kernel_floats(n_rows, n_pos, head_dim)) + dt_attention_part_floats(n_rows, n_pos, head_dim);
}

void dt_attention(const dt_attn_tile *a, float *scratch) {
    const int n_pos = a->pos0 + a->n_tok;
    float *part = scratch + round16(kernel_floats(a->n_tok * a->group, n_pos, a->head_dim));
    const int c0 = dt_attn_chunk0(a);
    dt_attention_chunks(a, c0, c0 + dt_attn_chunks(a) - 1, part, scratch);
    dt_attention_combine(a, part);
}

void dt_attention_combine_scalar(const dt_attn_tile *a, const float *part) { dt_attn_combine(a, part); }

/* Element i of a cache region of kv_type, as f32. */
static inline float kv_elem(const void *base, int kv_type, int64_t i) {
    if (kv_type == DT_F32) return ((const float *)base)[i];
    const uint16_t h = ((const uint16_t *)base)[i];
    return kv_type == DT_F16 ? dt_f16_to_f32(h) : dt_bf16_to_f32(h);
}

static inline float key(const dt_attn_tile *a, int pos, int d) {
    return kv_elem(a->k, a->kv_type, dt_attn_k_index(a->kv_type, a->head_dim, pos, d));
}

static inline float value(const dt_attn_tile *a, int pos, int d) {
    return kv_elem(a->v, a->kv_type, dt_attn_v_index(a->kv_type, a->head_dim, pos, d));
}

/* The partial of query row q over positions [L, H]: o into pc[0, hd),
 * m into pc[hd], l into pc[hd + 1]. */
static void chunk_scalar(const dt_attn_tile *a, const float *q, int L, int H, float *pc, float *score) {
    const int hd = a->head_dim, n = H - L + 1;
    float max = -INFINITY;
    for (int j = 0; j < n; j++) {
        float s = 0.0f;
        for (int d = 0; d < hd; d++) s += q[d] * key(a, L + j, d);
        score[j] = s * a->scale;
        if (score[j] > max) max = score[j];
    }
    double sum = 0.0;
    for (int j = 0; j < n; j++) {
        score[j] = expf(score[j] - max);
        sum += score[j];
    }
    for (int d = 0; d < hd; d++) pc[d] = 0.0f;
    for (int j = 0; j < n; j++) {
        const float p = score[j];
        for (int d = 0; d < hd; d++) pc[d] += p * value(a, L + j, d);
    }
    pc[hd] = max;
    pc[hd + 1] = (float)sum;
}

/* The partial of query row q over positions [L, H] on a bf16 cache
 * (attention.h): q and keys paired by head dim, p and values by absolute
 * position, each pair's odd element first. */
static float bf16_round(float x) { return dt_bf16_to_f32(dt_bf16_of(x)); }

static void chunk_scalar_bf16(const dt_attn_tile *a, const float *q, int L, int H, float *pc, float *score) {
    const int hd = a->head_dim, n = H - L + 1;
    float max = -INFINITY;
    for (int j = 0; j < n; j++) {
        float s = 0.0f;
        for (int d = 0; d < hd; d += 2) {
            s = dt_bf16_fma(bf16_round(q[d + 1]), key(a, L + j, d + 1), s);
            s = dt_bf16_fma(bf16_round(q[d]), key(a, L + j, d), s);
        }
        score[j] = s * a->scale;
        if (score[j] > max) max = score[j];
    }
    double sum = 0.0;
    for (int j = 0; j < n; j++) {
        score[j] = bf16_round(expf(score[j] - max));
        sum += score[j];
    }
    for (int d = 0; d < hd; d++) {
        float o = 0.0f;
        for (int j = (L & ~1) - L; j < n; j += 2) { /* the pair (L + j, L + j + 1) */
            const int in0 = j >= 0, in1 = j + 1 < n;
            o = dt_bf16_fma(in1 ? score[j + 1] : 0.0f, in1 ? value(a, L + j + 1, d) : 0.0f, o);
            o = dt_bf16_fma(in0 ? score[j] : 0.0f, in0 ? value(a, L + j, d) : 0.0f, o);
        }
        pc[d] = o;
    }
    pc[hd] = max;
    pc[hd + 1] = (float)sum;
}

void dt_attention_chunks_scalar(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch) {
    const int hd = a->head_dim;
    for (int t = 0; t < a->n_tok; t++) {
        for (int g = 0; g < a->group; g++) {
            const float *q = a->q + (int64_t)t * a->ldq + (int64_t)g * hd;
            for (int c = c0; c <= c1; c++) {
                int L, H;
                if (dt_attn_row_range(a, t, c, c, &L, &H))
                    (a->kv_type == DT_BF16 ? chunk_scalar_bf16 : chunk_scalar)(a, q, L, H, dt_attn_part(a, part, t * a->group + g, c),
                                                                 scratch);
            }
        }
    }
}

/* One float to half, to nearest even; integer arithmetic only, so it is
 * the reference the F16C paths are checked against. */
static dt_f16 f16_from_f32(float f) {
    const uint32_t x = dt_bits_from_f32(f), sign = (x >> 16) & 0x8000, ax = x & 0x7fffffff;
    if (ax > 0x7f800000) return (dt_f16)(sign | 0x7e00 | ((ax >> 13) & 0x3ff)); /* NaN: quieted */
    if (ax >= 0x477ff000) return (dt_f16)(sign | 0x7c00);             /* >= 65520 rounds to inf */
    if (ax >= 0x38800000) {                                           /* normal half */
        const uint32_t r = ax - 0x38000000;                           /* exponent rebiased 127 -> 15 */
        return (dt_f16)(sign | ((r + 0xfff + ((r >> 13) & 1)) >> 13)); /* a carry bumps the exponent */
    }
    /* Subnormal half: the value in units of 2^-24, rounded to nearest even. */
    const int e = (int)(ax >> 23), shift = 126 - e;
    if (e == 0 || shift > 24) return (dt_f16)sign;                    /* below 2^-25: zero */
    const uint32_t man = (ax & 0x7fffff) | 0x800000, half = 1u << (shift - 1);
    const uint32_t q = man >> shift, rem = man & ((half << 1) - 1);
    return (dt_f16)(sign | (q + (rem > half || (rem == half && (q & 1)))));
}

void dt_f16_from_f32_scalar(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = f16_from_f32(x[i]);
}

void dt_bf16_from_f32_scalar(const float *x, uint16_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = dt_bf16_of(x[i]);
}
