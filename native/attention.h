/* ditto native layer: attention over the KV cache (internal header).
 *
 * One call handles a tile: n_tok consecutive tokens of one sequence
 * (positions pos0 .. pos0 + n_tok - 1) and the `group` query heads of each
 * that share one kv head (GQA). Query row (t, g) attends to positions
 * [first(t), pos0 + t], first(t) = pos - window + 1 with a sliding window,
 * else 0: scores = scale * q.k, softmax, weighted sum of values.
 *
 * Batch invariance: a row's output is computed by the same float
 * operations whatever the tile is (its other rows, n_tok, the thread) and
 * whatever the cache holds beyond the row's own range: every score comes
 * from its own accumulator, the softmax of a row visits exactly its own
 * positions in a fixed order, and the weighted sum of values runs over its
 * own positions in ascending order. Each ISA has its own (fixed) order;
 * the ISAs agree within float rounding, not bit for bit. With f16 keys and
 * values each element is widened exactly to f32 where it is loaded, so a
 * kernel gives the same bits as on the f32 cache holding the same values.
 */
#ifndef DITTO_ATTENTION_H
#define DITTO_ATTENTION_H

#include <stdint.h>

#include "ditto.h"

typedef struct {
    const void *k;      /* keys of one (layer, seq, kv head): [pos / 16][head_dim][16] */
    const void *v;      /* values: [pos][head_dim] */
    int kv_type;        /* element type of k and v: DT_F32, or DT_F16 (widened when read) */
    const float *q;     /* row (t, g) at q + t * ldq + g * head_dim */
    int64_t ldq;
    float *out;         /* row (t, g) at out + t * ldo + g * head_dim */
    int64_t ldo;
    int head_dim;       /* any positive even number */
    int group;          /* query heads per token */
    int n_tok;          /* tokens in the tile */
    int pos0;           /* position of the tile's first token */
    int window;         /* sliding window (0: full attention) */
    float scale;        /* usually 1 / sqrt(head_dim) */
} dt_attn_tile;

/* Scratch floats one call needs for n_tok * group rows reaching position
 * n_pos - 1. */
int64_t dt_attention_scratch_floats(int n_rows, int n_pos, int head_dim);

/* Runs the tile with the current ISA's kernel (picked in cpu.c). */
void dt_attention(const dt_attn_tile *a, float *scratch);

/* Per-ISA kernels (same contract). The scalar one is the reference and the
 * fallback for anything a SIMD file does not cover. */
void dt_attention_scalar(const dt_attn_tile *a, float *scratch);
void dt_attention_avx2(const dt_attn_tile *a, float *scratch);
void dt_attention_avx512(const dt_attn_tile *a, float *scratch);

/* y[i] = x[i] rounded to IEEE half, to nearest even (overflow gives inf;
 * NaNs stay NaN, quieted, payload truncated): what F16C's vcvtps2ph does,
 * bit for bit, on every ISA. Stores keys and values in an f16 cache. */
void dt_f16_from_f32(const float *x, uint16_t *y, int64_t n);
void dt_f16_from_f32_scalar(const float *x, uint16_t *y, int64_t n);
void dt_f16_from_f32_avx2(const float *x, uint16_t *y, int64_t n);
void dt_f16_from_f32_avx512(const float *x, uint16_t *y, int64_t n);

/* First position row t attends to. */
static inline int dt_attn_first(const dt_attn_tile *a, int t) {
    int pos = a->pos0 + t;
    return (a->window > 0 && pos >= a->window) ? pos - a->window + 1 : 0;
}

#endif
