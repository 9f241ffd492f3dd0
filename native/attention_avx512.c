/* ditto native layer: AVX-512 attention (compiled with -mavx512f/bw/vl/dq,
 * -mfma; used only when cpu.c finds them).
 *
 * A tile's R = n_tok * group query rows share every key / value load:
 *
 * 1. Scores. Keys are blocked [pos / 16][head_dim][16], so one zmm holds a
 *    key element for 16 positions: s[lanes] = sum_d q[d] * k[b][d][lanes],
 *    one fma chain over d = 0 .. head_dim - 1 per (row, block), then
 *    * scale. Up to 8 rows (x up to 8 blocks) run at once; a block group
 *    stays in L1 while every row chunk passes over it.
 * 2. Softmax, per row over exactly its positions [first, pos] (masked
 *    lanes at both ends): max, p = exp(s - max) by a polynomial (Cephes'
 *    expf coefficients, ~1 ulp, scalef for 2^n), the sum per lane in block
 *    order, then a fixed tree over the 16 lanes.
 * 3. Values: acc[row][d] += p_j * v[j][d] for j ascending over the row's
 *    own positions, one fma chain per (row, d); rows that share a range run
 *    together (up to 6 rows x 4 vectors of 16 values), the ragged ends of a
 *    tile's ranges one row at a time. out = acc / sum.
 *
 * None of these orders depends on the tile, the thread, or on positions
 * outside a row's range, so results are batch invariant (attention.h).
 */
#include <immintrin.h>
#include <math.h>

#include "attention.h"

#define BLOCK 16        /* positions per key block */
#define SCORE_ROWS 8    /* rows per score chunk */
#define BLOCK_GROUP 8   /* key blocks kept in L1 across row chunks */
#define PV_ROWS 6       /* rows per value chunk */
#define PV_VECS 4       /* 16-float vectors of head_dim per value chunk */

#define INLINE static inline __attribute__((always_inline))

/* ---- exp ------------------------------------------------------------------ */

/* e^x for x <= 88 (the softmax feeds x <= 0); x < -104 (and -inf) gives 0. */
INLINE __m512 exp512(__m512 x) {
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693145751953125f);
    const __m512 ln2_lo = _mm512_set1_ps(1.42860682030941723212e-6f);
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Fixed tree: halves, then quarters, then pairs. */
INLINE float hsum16(__m512 v) {
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

INLINE float hmax16(__m512 v) {
    __m256 a = _mm256_max_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    b = _mm_max_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

/* ---- 1. scores ---------------------------------------------------------------- */

/* s[r][b * 16 + lane] = scale * dot(q[r], keys of block b) for NR rows, NB
 * blocks starting at kb (blocks hd * 16 floats apart). */
INLINE void score_kernel(const float *kb, int hd, const float *const *q, float *const *s, float scale,
                         const int NR, const int NB) {
    __m512 acc[SCORE_ROWS][8];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 8
        for (int b = 0; b < NB; b++) acc[r][b] = _mm512_setzero_ps();
    for (int d = 0; d < hd; d++) {
        __m512 kv[8];
#pragma GCC unroll 8
        for (int b = 0; b < NB; b++) kv[b] = _mm512_loadu_ps(kb + ((int64_t)b * hd + d) * BLOCK);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            const __m512 qd = _mm512_set1_ps(q[r][d]);
#pragma GCC unroll 8
            for (int b = 0; b < NB; b++) acc[r][b] = _mm512_fmadd_ps(qd, kv[b], acc[r][b]);
        }
    }
    const __m512 vs = _mm512_set1_ps(scale);
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 8
        for (int b = 0; b < NB; b++) _mm512_storeu_ps(s[r] + b * BLOCK, _mm512_mul_ps(acc[r][b], vs));
}

typedef void (*score_fn)(const float *, int, const float *const *, float *const *, float);
#define SCORE_FN(NR, NB)                                                                          \
    static void score_##NR##_##NB(const float *kb, int hd, const float *const *q, float *const *s, \
                                  float scale) {                                                   \
        score_kernel(kb, hd, q, s, scale, NR, NB);                                                 \
    }
SCORE_FN(1, 1) SCORE_FN(2, 1) SCORE_FN(3, 1) SCORE_FN(4, 1)
SCORE_FN(5, 1) SCORE_FN(6, 1) SCORE_FN(7, 1) SCORE_FN(8, 1)
SCORE_FN(1, 8) SCORE_FN(2, 4) SCORE_FN(3, 3) SCORE_FN(4, 2)

/* Kernels for NR rows: blocks at a time (enough fma chains to hide the
 * latency) and the one-block kernel for the rest. */
static const struct { score_fn many, one; int nb; } score_kernels[SCORE_ROWS + 1] = {
    [1] = {score_1_8, score_1_1, 8}, [2] = {score_2_4, score_2_1, 4},
    [3] = {score_3_3, score_3_1, 3}, [4] = {score_4_2, score_4_1, 2},
    [5] = {score_5_1, score_5_1, 1}, [6] = {score_6_1, score_6_1, 1},
    [7] = {score_7_1, score_7_1, 1}, [8] = {score_8_1, score_8_1, 1},
};

/* ---- 3. values ------------------------------------------------------------------ */

/* acc[r][c * 16 ..] += p[r][j] * v[j][c * 16 ..] for j in [ja, jb], NR rows,
 * NC vectors (the last one masked by `tail`); p[r] is indexed by position. */
INLINE void pv_kernel(const float *v, int hd, int ja, int jb, const float *const *p, float *const *acc,
                      __mmask16 tail, const int NR, const int NC) {
    __m512 a[PV_ROWS][PV_VECS];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) a[r][c] = _mm512_loadu_ps(acc[r] + c * 16);
    for (int j = ja; j <= jb; j++) {
        const float *vj = v + (int64_t)j * hd;
        __m512 vv[PV_VECS];
#pragma GCC unroll 4
        for (int c = 0; c < NC - 1; c++) vv[c] = _mm512_loadu_ps(vj + c * 16);
        vv[NC - 1] = _mm512_maskz_loadu_ps(tail, vj + (NC - 1) * 16);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            const __m512 pj = _mm512_set1_ps(p[r][j]);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) a[r][c] = _mm512_fmadd_ps(pj, vv[c], a[r][c]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) _mm512_storeu_ps(acc[r] + c * 16, a[r][c]);
}

typedef void (*pv_fn)(const float *, int, int, int, const float *const *, float *const *, __mmask16);
#define PV_FN(NR, NC)                                                                                 \
    static void pv_##NR##_##NC(const float *v, int hd, int ja, int jb, const float *const *p,          \
                               float *const *acc, __mmask16 tail) {                                    \
        pv_kernel(v, hd, ja, jb, p, acc, tail, NR, NC);                                                \
    }
#define PV_ROW(NR) PV_FN(NR, 1) PV_FN(NR, 2) PV_FN(NR, 3) PV_FN(NR, 4)
PV_ROW(1) PV_ROW(2) PV_ROW(3) PV_ROW(4) PV_ROW(5) PV_ROW(6)
#define PV_ENTRY(NR) {pv_##NR##_1, pv_##NR##_2, pv_##NR##_3, pv_##NR##_4}
static const pv_fn pv_kernels[PV_ROWS + 1][PV_VECS] = {
    [1] = PV_ENTRY(1), [2] = PV_ENTRY(2), [3] = PV_ENTRY(3),
    [4] = PV_ENTRY(4), [5] = PV_ENTRY(5), [6] = PV_ENTRY(6),
};

/* Runs rows[0..nr) over positions [ja, jb] for every vector of head_dim. */
static void pv_rows(const float *v, int hd, int ja, int jb, const float *const *p, float *const *acc, int nr) {
    if (ja > jb) return;
    const int nvec = (hd + 15) / 16;
    for (int c0 = 0; c0 < nvec; c0 += PV_VECS) {
        const int nc = nvec - c0 < PV_VECS ? nvec - c0 : PV_VECS;
        const int last = c0 + nc - 1;
        const __mmask16 tail = (hd - last * 16) >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (hd - last * 16)) - 1);
        float *ac[PV_ROWS];
        for (int r = 0; r < nr; r++) ac[r] = acc[r] + c0 * 16;
        pv_kernels[nr][nc - 1](v + c0 * 16, hd, ja, jb, p, ac, tail);
    }
}

/* ---- the tile ---------------------------------------------------------------------- */

static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

void dt_attention_avx512(const dt_attn_tile *a, float *scratch) {
    const int hd = a->head_dim, G = a->group, R = a->n_tok * G;
    const int lo = dt_attn_first(a, 0), hi = a->pos0 + a->n_tok - 1;
    const int b0 = lo / BLOCK, b1 = hi / BLOCK, nb = b1 - b0 + 1;
    const int64_t ls = (int64_t)nb * BLOCK;            /* score row stride */
    const int64_t la = ((int64_t)hd + 15) & ~(int64_t)15; /* accumulator row stride */
    float *S = align64(scratch);
    float *A = S + (int64_t)R * ls;
    float *sums = A + (int64_t)R * la;
    const float *qrow[SCORE_ROWS];
    float *srow[SCORE_ROWS];

    /* 1. scores for every row over the tile's blocks [b0, b1]. */
    for (int bg = b0; bg <= b1; bg += BLOCK_GROUP) {
        const int bge = bg + BLOCK_GROUP - 1 < b1 ? bg + BLOCK_GROUP - 1 : b1;
        for (int r0 = 0; r0 < R; r0 += SCORE_ROWS) {
            const int nr = R - r0 < SCORE_ROWS ? R - r0 : SCORE_ROWS;
            for (int r = 0; r < nr; r++) {
                const int t = (r0 + r) / G, g = (r0 + r) % G;
                qrow[r] = a->q + (int64_t)t * a->ldq + (int64_t)g * hd;
            }
            int b = bg;
            for (; b + score_kernels[nr].nb - 1 <= bge; b += score_kernels[nr].nb) {
                for (int r = 0; r < nr; r++) srow[r] = S + (int64_t)(r0 + r) * ls + (int64_t)(b - b0) * BLOCK;
                score_kernels[nr].many(a->k + (int64_t)b * hd * BLOCK, hd, qrow, srow, a->scale);
            }
            for (; b <= bge; b++) {
                for (int r = 0; r < nr; r++) srow[r] = S + (int64_t)(r0 + r) * ls + (int64_t)(b - b0) * BLOCK;
                score_kernels[nr].one(a->k + (int64_t)b * hd * BLOCK, hd, qrow, srow, a->scale);
            }
        }
    }

    /* 2. softmax of each row over its own positions; p replaces s. */
    for (int r = 0; r < R; r++) {
        const int t = r / G, first = dt_attn_first(a, t), pos = a->pos0 + t;
        const int bf = first / BLOCK, bl = pos / BLOCK;
        float *s = S + (int64_t)r * ls - (int64_t)b0 * BLOCK; /* indexed by position */
        __m512 vmax = _mm512_set1_ps(-INFINITY);
        for (int b = bf; b <= bl; b++) {
            __mmask16 m = 0xFFFF;
            if (b == bf) m &= (__mmask16)(0xFFFFu << (first % BLOCK));
            if (b == bl) m &= (__mmask16)(0xFFFFu >> (BLOCK - 1 - pos % BLOCK));
            vmax = _mm512_mask_max_ps(vmax, m, vmax, _mm512_load_ps(s + b * BLOCK));
        }
        const __m512 mx = _mm512_set1_ps(hmax16(vmax));
        __m512 vsum = _mm512_setzero_ps();
        for (int b = bf; b <= bl; b++) {
            __mmask16 m = 0xFFFF;
            if (b == bf) m &= (__mmask16)(0xFFFFu << (first % BLOCK));
            if (b == bl) m &= (__mmask16)(0xFFFFu >> (BLOCK - 1 - pos % BLOCK));
            const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_load_ps(s + b * BLOCK), mx)));
            _mm512_store_ps(s + b * BLOCK, e);
            vsum = _mm512_add_ps(vsum, e);
        }
        sums[r] = hsum16(vsum);
        float *ac = A + (int64_t)r * la;
        for (int64_t d = 0; d < la; d += 16) _mm512_storeu_ps(ac + d, _mm512_setzero_ps());
    }

    /* 3. values: rows in chunks of PV_ROWS. Each chunk's positions split
     * into a common range [c0, c1] that every row of the chunk covers, and
     * the ragged ends done row by row, in ascending position order. */
    const float *prow[PV_ROWS];
    float *arow[PV_ROWS];
    for (int r0 = 0; r0 < R; r0 += PV_ROWS) {
        const int nr = R - r0 < PV_ROWS ? R - r0 : PV_ROWS;
        const int ta = r0 / G, tb = (r0 + nr - 1) / G;
        const int c0 = dt_attn_first(a, tb), c1 = a->pos0 + ta;
        for (int r = 0; r < nr; r++) {
            prow[r] = S + (int64_t)(r0 + r) * ls - (int64_t)b0 * BLOCK;
            arow[r] = A + (int64_t)(r0 + r) * la;
        }
        if (c0 > c1) { /* no common range: one row at a time */
            for (int r = 0; r < nr; r++) {
                const int t = (r0 + r) / G;
                pv_rows(a->v, hd, dt_attn_first(a, t), a->pos0 + t, &prow[r], &arow[r], 1);
            }
            continue;
        }
        for (int r = 0; r < nr; r++) {
            const int t = (r0 + r) / G;
            pv_rows(a->v, hd, dt_attn_first(a, t), c0 - 1, &prow[r], &arow[r], 1);
        }
        pv_rows(a->v, hd, c0, c1, prow, arow, nr);
        for (int r = 0; r < nr; r++) {
            const int t = (r0 + r) / G;
            pv_rows(a->v, hd, c1 + 1, a->pos0 + t, &prow[r], &arow[r], 1);
        }
    }

    /* out = acc / sum */
    const int nvec = (hd + 15) / 16;
    for (int r = 0; r < R; r++) {
        const int t = r / G, g = r % G;
        float *out = a->out + (int64_t)t * a->ldo + (int64_t)g * hd;
        const float *ac = A + (int64_t)r * la;
        const __m512 sum = _mm512_set1_ps(sums[r]);
        for (int c = 0; c < nvec; c++) {
            const int rem = hd - c * 16;
            const __mmask16 m = rem >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << rem) - 1);
            _mm512_mask_storeu_ps(out + c * 16, m, _mm512_div_ps(_mm512_loadu_ps(ac + c * 16), sum));
        }
    }
}
