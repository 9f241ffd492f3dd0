/* ditto native layer: attention, the scalar reference (cpu.c picks the ISA).
 *
 * The reference takes one query row at a time: scores in position order
 * (each a plain multiply-add chain over head_dim, then * scale), the max,
 * p = expf(s - max) with the sum in double, then out = (sum_j p_j v_j) / sum
 * accumulated in ascending position order. The SIMD files (attention_x86.h
 * for attention_avx2.c and attention_avx512.c) load every key / value row once for all rows of the
 * tile; their order of operations is fixed too (see attention.h).
 */
#include <math.h>

#include "attention.h"
#include "quant.h"

#define BLOCK 16 /* positions per key block (DT_KV_BLOCK) */

static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

int64_t dt_attention_scratch_floats(int n_rows, int n_pos, int head_dim) {
    if (n_rows < 1) n_rows = 1;
    if (n_pos < 1) n_pos = 1;
    return (int64_t)n_rows * (round16(n_pos) + round16(head_dim) + 16) + 64;
}

/* Element i of a cache region of kv_type, as f32. */
static inline float kv_elem(const void *base, int kv_type, int64_t i) {
    return kv_type == DT_F16 ? dt_f16_to_f32(((const dt_f16 *)base)[i]) : ((const float *)base)[i];
}

static inline float key(const dt_attn_tile *a, int pos, int d) {
    return kv_elem(a->k, a->kv_type, ((int64_t)(pos / BLOCK) * a->head_dim + d) * BLOCK + pos % BLOCK);
}

static inline float value(const dt_attn_tile *a, int pos, int d) {
    return kv_elem(a->v, a->kv_type, (int64_t)pos * a->head_dim + d);
}

void dt_attention_scalar(const dt_attn_tile *a, float *scratch) {
    const int hd = a->head_dim;
    float *score = scratch;
    float *acc = scratch + round16(a->pos0 + a->n_tok);
    for (int t = 0; t < a->n_tok; t++) {
        const int pos = a->pos0 + t, first = dt_attn_first(a, t), n = pos - first + 1;
        for (int g = 0; g < a->group; g++) {
            const float *q = a->q + (int64_t)t * a->ldq + (int64_t)g * hd;
            float *out = a->out + (int64_t)t * a->ldo + (int64_t)g * hd;
            float max = -INFINITY;
            for (int j = 0; j < n; j++) {
                float s = 0.0f;
                for (int d = 0; d < hd; d++) s += q[d] * key(a, first + j, d);
                score[j] = s * a->scale;
                if (score[j] > max) max = score[j];
            }
            double sum = 0.0;
            for (int j = 0; j < n; j++) {
                score[j] = expf(score[j] - max);
                sum += score[j];
            }
            for (int d = 0; d < hd; d++) acc[d] = 0.0f;
            for (int j = 0; j < n; j++) {
                const float p = score[j];
                for (int d = 0; d < hd; d++) acc[d] += p * value(a, first + j, d);
            }
            const float fsum = (float)sum;
            for (int d = 0; d < hd; d++) out[d] = acc[d] / fsum;
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
