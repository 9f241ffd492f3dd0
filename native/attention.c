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

#define BLOCK 16 /* positions per key block (DT_KV_BLOCK) */

static int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

int64_t dt_attention_scratch_floats(int n_rows, int n_pos, int head_dim) {
    if (n_rows < 1) n_rows = 1;
    if (n_pos < 1) n_pos = 1;
    return (int64_t)n_rows * (round16(n_pos) + round16(head_dim) + 16) + 64;
}

static inline float key(const float *k, int hd, int pos, int d) {
    return k[((int64_t)(pos / BLOCK) * hd + d) * BLOCK + pos % BLOCK];
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
                for (int d = 0; d < hd; d++) s += q[d] * key(a->k, hd, first + j, d);
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
                const float p = score[j], *vj = a->v + (int64_t)(first + j) * hd;
                for (int d = 0; d < hd; d++) acc[d] += p * vj[d];
            }
            const float fsum = (float)sum;
            for (int d = 0; d < hd; d++) out[d] = acc[d] / fsum;
        }
    }
}
