/* ditto native layer: attention over the KV cache (internal header).
 *
 * One call handles a tile: n_tok consecutive tokens of one sequence
 * (positions pos0 .. pos0 + n_tok - 1) and the `group` query heads of each
 * that share one kv head (GQA). Query row (t, g) attends to positions
 * [first(t), pos0 + t], first(t) = pos - window + 1 with a sliding window,
 * else 0: scores = scale * q.k, softmax, weighted sum of values.
 *
 * The chunked definition. A row's positions split into chunks at fixed
 * absolute boundaries: chunk c holds positions [c * DT_ATTN_CHUNK,
 * (c + 1) * DT_ATTN_CHUNK - 1]. Per chunk the row has m_c = max score,
 * l_c = sum of exp(s - m_c) and o_c[d] = sum of exp(s - m_c) * v[d] over
 * its positions in the chunk, both sums in ascending position order (the
 * partials, dt_attention_chunks). Then, in chunk order (dt_attention_combine,
 * shared by every ISA): M = max m_c, w_c = expf(m_c - M), l = w_first * l_first,
 * then l += w_c * l_c, o likewise, and out = o / l. With one chunk w = 1 and
 * out = o_c / l_c exactly: the unchunked softmax. Chunks let one row's
 * positions be computed by several threads (model.c splits long decode rows
 * over chunk ranges) with results that do not depend on the split.
 *
 * Batch invariance: a row's output is computed by the same float
 * operations whatever the tile is (its other rows, n_tok, the thread, the
 * chunk ranges the call is split into) and whatever the cache holds beyond
 * the row's own range: every score comes from its own accumulator, the
 * softmax of a chunk visits exactly the row's positions in it in a fixed
 * order, and the weighted sum of values runs over them in ascending order.
 * Each ISA has its own (fixed) order for the partials; the ISAs agree within
 * float rounding, not bit for bit. With f16 keys and values each element is
 * widened exactly to f32 where it is loaded, so a kernel gives the same bits
 * as on the f32 cache holding the same values.
 *
 * A bf16 cache (kv_type DT_BF16) has bf16 dot products: keys and values
 * are stored rounded to bfloat16 (dt_bf16_of), and q and p are rounded
 * the same way where they enter a product. Each dot product runs over
 * pairs in ascending order, one pair as one vdpbf16ps step: acc + x[2i+1] *
 * y[2i+1], then + x[2i] * y[2i], each rounded once (the product of two
 * bf16 is exact in f32; dt_bf16_fma). Scores pair head dims (d, d + 1), so
 * keys are stored [pos / 16][head_dim / 2][16][2]; o_c pairs positions
 * (2i, 2i + 1), absolute, so values are stored [pos / 2][head_dim][2] and
 * a pair never straddles a chunk or a key block; a position outside the
 * row's range contributes p = 0 (and a value outside the call's positions,
 * which may be anything, 0). l_c sums the rounded p. vdpbf16ps does twice
 * the multiply-adds of an f32 fma per instruction; where AVX512_BF16 is
 * missing the SIMD files run each step as an fma, which differs from the
 * instruction only where a result is subnormal (the instruction, and the
 * scalar reference, flush it).
 */
#ifndef DITTO_ATTENTION_H
#define DITTO_ATTENTION_H

#include <math.h>
#include <stdint.h>

#include "ditto.h"

typedef struct {
    const void *k;      /* keys of one (layer, seq, kv head): [pos / 16][head_dim][16] (bf16: above) */
    const void *v;      /* values: [pos][head_dim] (bf16: above) */
    int kv_type;        /* element type of k and v: DT_F32, DT_F16 (widened when read) or DT_BF16 */
    const float *q;     /* row (t, g) at q + t * ldq + g * head_dim */
    int64_t ldq;
    float *out;         /* row (t, g) at out + t * ldo + g * head_dim */
    int64_t ldo;
    int head_dim;       /* any positive even number */
    int group;          /* query heads per token */
    int n_tok;          /* tokens in the tile */
    int pos0;           /* position of the tile's first token */
    int window;         /* sliding window (0: full attention) */
    int origin;         /* absolute position of the tile's position 0, a multiple of 16 (a ring's
                         * window seen from its first key block; else 0): chunk boundaries are
                         * absolute */
    float scale;        /* usually 1 / sqrt(head_dim) */
} dt_attn_tile;

/* Positions per chunk (a multiple of 16). One thread's kernel costs the same
 * per position for chunks of 128 to 1024 (within 2%); 256 splits a decode
 * step at 2048 positions into 8 tasks per kv head, and contexts of a few
 * hundred positions already into several. */
#define DT_ATTN_CHUNK 256


/* Index of key element (pos, d) in a region of kv_type elements (pos a
 * slot of the region, or a tile position: regions start at a key block). */
static inline int64_t dt_attn_k_index(int kv_type, int head_dim, int pos, int d) {
    const int64_t block = (int64_t)(pos / 16) * head_dim * 16;
    return kv_type == DT_BF16 ? block + ((int64_t)(d / 2) * 16 + pos % 16) * 2 + d % 2 : block + (int64_t)d * 16 + pos % 16;
}
/* Index of value element (pos, d). */
static inline int64_t dt_attn_v_index(int kv_type, int head_dim, int pos, int d) {
    return kv_type == DT_BF16 ? ((int64_t)(pos / 2) * head_dim + d) * 2 + pos % 2 : (int64_t)pos * head_dim + d;
}

/* Absolute chunk of tile position p. */
static inline int dt_attn_chunk(const dt_attn_tile *a, int p) { return (p + a->origin) / DT_ATTN_CHUNK; }

/* Floats of one partial (o_c, then m_c, l_c), a 64-byte multiple. */
static inline int64_t dt_attn_part_floats(int head_dim) { return ((int64_t)head_dim + 15) / 16 * 16 + 16; }

/* First position row t attends to. */
static inline int dt_attn_first(const dt_attn_tile *a, int t) {
    int pos = a->pos0 + t;
    return (a->window > 0 && pos >= a->window) ? pos - a->window + 1 : 0;
}

/* Tile positions [*L, *H] that row t attends to in chunks [c0, c1]; false
 * when there are none. */
static inline int dt_attn_row_range(const dt_attn_tile *a, int t, int c0, int c1, int *L, int *H) {
    const int first = dt_attn_first(a, t), lo = c0 * DT_ATTN_CHUNK - a->origin;
    const int pos = a->pos0 + t, hi = (c1 + 1) * DT_ATTN_CHUNK - 1 - a->origin;
    *L = first > lo ? first : lo;
    *H = pos < hi ? pos : hi;
    return *L <= *H;
}

/* The tile's chunks: [dt_attn_chunk0, + dt_attn_chunks). */
static inline int dt_attn_chunk0(const dt_attn_tile *a) { return dt_attn_chunk(a, dt_attn_first(a, 0)); }
static inline int dt_attn_chunks(const dt_attn_tile *a) {
    return dt_attn_chunk(a, a->pos0 + a->n_tok - 1) - dt_attn_chunk0(a) + 1;
}

/* The partial of row r = t * group + g, chunk c, in a tile's partials
 * `part`: o at [0, head_dim), m at [head_dim], l at [head_dim + 1]. */
static inline float *dt_attn_part(const dt_attn_tile *a, const float *part, int r, int c) {
    return (float *)part + ((int64_t)r * dt_attn_chunks(a) + c - dt_attn_chunk0(a)) * dt_attn_part_floats(a->head_dim);
}

/* Floats of a tile's partials, n_rows rows spanning n_pos positions. */
int64_t dt_attention_part_floats(int n_rows, int n_pos, int head_dim);
/* Scratch floats dt_attention and dt_attention_chunks need for n_rows rows
 * spanning n_pos positions (tile coordinates: up to the last row's position
 * + 1). */
int64_t dt_attention_scratch_floats(int n_rows, int n_pos, int head_dim);

/* The partials of the tile's chunks [c0, c1] (absolute; each row computes
 * those its range meets) with the current ISA's kernel (picked in cpu.c). */
void dt_attention_chunks(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch);
/* out of every row of the tile from all its partials (the current ISA's
 * build of dt_attn_combine). */
void dt_attention_combine(const dt_attn_tile *a, const float *part);

/* The combine, written once for every ISA: attention.c builds it as the
 * reference, the x86 files with their flags, where the loops over head_dim
 * vectorize. Element-wise IEEE operations (and the C library's expf), so
 * every build gives the same floats. */
static inline void dt_attn_combine(const dt_attn_tile *a, const float *part) {
    const int hd = a->head_dim;
    for (int t = 0; t < a->n_tok; t++) {
        const int cf = dt_attn_chunk(a, dt_attn_first(a, t)), cl = dt_attn_chunk(a, a->pos0 + t);
        for (int g = 0; g < a->group; g++) {
            const int r = t * a->group + g;
            float *out = a->out + (int64_t)t * a->ldo + (int64_t)g * hd;
            float M = -INFINITY;
            for (int c = cf; c <= cl; c++) M = fmaxf(M, dt_attn_part(a, part, r, c)[hd]);
            float l = 0.0f;
            for (int c = cf; c <= cl; c++) {
                const float *pc = dt_attn_part(a, part, r, c);
                const float w = expf(pc[hd] - M);
                if (c == cf) { /* w * o_c, not 0 + w * o_c: one chunk gives o_c / l_c exactly */
                    l = w * pc[hd + 1];
                    for (int d = 0; d < hd; d++) out[d] = w * pc[d];
                } else {
                    l += w * pc[hd + 1];
                    for (int d = 0; d < hd; d++) out[d] += w * pc[d];
                }
            }
            for (int d = 0; d < hd; d++) out[d] /= l;
        }
    }
}
void dt_attention_combine_scalar(const dt_attn_tile *a, const float *part);
void dt_attention_combine_avx2(const dt_attn_tile *a, const float *part);
void dt_attention_combine_avx512(const dt_attn_tile *a, const float *part);

/* The whole tile: dt_attention_chunks over every chunk, then the combine. */
void dt_attention(const dt_attn_tile *a, float *scratch);

/* Per-ISA partials (same contract). The scalar one is the reference and the
 * fallback for anything a SIMD file does not cover. */
void dt_attention_chunks_scalar(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch);
void dt_attention_chunks_avx2(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch);
void dt_attention_chunks_avx512(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch);
/* The AVX-512 kernel built with AVX512_BF16 (cpu.c runs it for a bf16
 * cache where the CPU has the instructions). */
void dt_attention_chunks_avx512bf16(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch);

/* x rounded to bfloat16 as vcvtneps2bf16 does: to nearest even, a
 * subnormal to signed zero, a NaN quieted (payload truncated). */
static inline uint16_t dt_bf16_of(float x) {
    uint32_t u;
    __builtin_memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}
/* acc + a * b as one step of vdpbf16ps (a, b bf16 values): rounded once, a
 * subnormal result flushed to signed zero. */
static inline float dt_bf16_fma(float a, float b, float acc) {
    const float r = __builtin_fmaf(a, b, acc);
    return __builtin_fabsf(r) < 0x1p-126f ? __builtin_copysignf(0.0f, r) : r;
}

/* y[i] = x[i] rounded to IEEE half, to nearest even (overflow gives inf;
 * NaNs stay NaN, quieted, payload truncated): what F16C's vcvtps2ph does,
 * bit for bit, on every ISA. Stores keys and values in an f16 cache. */
void dt_f16_from_f32(const float *x, uint16_t *y, int64_t n);
void dt_f16_from_f32_scalar(const float *x, uint16_t *y, int64_t n);
void dt_f16_from_f32_avx2(const float *x, uint16_t *y, int64_t n);
void dt_f16_from_f32_avx512(const float *x, uint16_t *y, int64_t n);
/* y[i] = dt_bf16_of(x[i]), every ISA bit for bit: stores a bf16 cache. */
void dt_bf16_from_f32(const float *x, uint16_t *y, int64_t n);
void dt_bf16_from_f32_scalar(const float *x, uint16_t *y, int64_t n);
void dt_bf16_from_f32_avx2(const float *x, uint16_t *y, int64_t n);
void dt_bf16_from_f32_avx512(const float *x, uint16_t *y, int64_t n);

#endif
