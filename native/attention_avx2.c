/* ditto native layer: AVX2 attention (compiled with -mavx2 -mfma; used
 * only when cpu.c finds them).
 *
 * The structure of attention_avx512.c with 8-lane vectors: a key block of
 * 16 positions is two ymm per head_dim element; scores are one fma chain
 * over d per (row, 8 positions), then * scale; softmax per row over exactly
 * its positions (exp by the same polynomial, 2^n built in the exponent
 * bits, results below e^-87.3 flushed to 0), lane sums in block order then
 * a fixed tree; values accumulate in ascending position order per (row, d).
 * Orders never depend on the tile or on positions past a row's range.
 */
#include <immintrin.h>
#include <math.h>

#include "attention.h"

#define BLOCK 16
#define SCORE_ROWS 6
#define BLOCK_GROUP 8
#define PV_ROWS 3
#define PV_VECS 4 /* 8-float vectors per value chunk */

#define INLINE static inline __attribute__((always_inline))

/* ---- exp ------------------------------------------------------------------ */

/* e^x for x <= 88; x < -87.3 (and -inf) gives 0. */
INLINE __m256 exp256(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.3f);
    const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.42860682030941723212e-6f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    /* 2^n for n in [-126, 127]: exponent bits */
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

INLINE float hsum8(__m256 v) {
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

INLINE float hmax8(__m256 v) {
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    b = _mm_max_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

/* ---- 1. scores ---------------------------------------------------------------- */

INLINE void score_kernel(const float *kb, int hd, const float *const *q, float *const *s, float scale,
                         const int NR, const int NB) {
    __m256 acc[SCORE_ROWS][8];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 8
        for (int h = 0; h < 2 * NB; h++) acc[r][h] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d++) {
        __m256 kv[8];
#pragma GCC unroll 8
        for (int h = 0; h < 2 * NB; h++)
            kv[h] = _mm256_loadu_ps(kb + ((int64_t)(h / 2) * hd + d) * BLOCK + (h % 2) * 8);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            const __m256 qd = _mm256_broadcast_ss(q[r] + d);
#pragma GCC unroll 8
            for (int h = 0; h < 2 * NB; h++) acc[r][h] = _mm256_fmadd_ps(qd, kv[h], acc[r][h]);
        }
    }
    const __m256 vs = _mm256_set1_ps(scale);
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 8
        for (int h = 0; h < 2 * NB; h++) _mm256_storeu_ps(s[r] + h * 8, _mm256_mul_ps(acc[r][h], vs));
}

typedef void (*score_fn)(const float *, int, const float *const *, float *const *, float);
#define SCORE_FN(NR, NB)                                                                          \
    static void score_##NR##_##NB(const float *kb, int hd, const float *const *q, float *const *s, \
                                  float scale) {                                                   \
        score_kernel(kb, hd, q, s, scale, NR, NB);                                                 \
    }
SCORE_FN(1, 1) SCORE_FN(2, 1) SCORE_FN(3, 1) SCORE_FN(4, 1) SCORE_FN(5, 1) SCORE_FN(6, 1)
SCORE_FN(1, 4) SCORE_FN(2, 2)

static const struct { score_fn many, one; int nb; } score_kernels[SCORE_ROWS + 1] = {
    [1] = {score_1_4, score_1_1, 4}, [2] = {score_2_2, score_2_1, 2},
    [3] = {score_3_1, score_3_1, 1}, [4] = {score_4_1, score_4_1, 1},
    [5] = {score_5_1, score_5_1, 1}, [6] = {score_6_1, score_6_1, 1},
};

/* ---- 3. values ------------------------------------------------------------------ */

INLINE void pv_kernel(const float *v, int hd, int ja, int jb, const float *const *p, float *const *acc,
                      __m256i tail, const int NR, const int NC) {
    __m256 a[PV_ROWS][PV_VECS];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) a[r][c] = _mm256_loadu_ps(acc[r] + c * 8);
    for (int j = ja; j <= jb; j++) {
        const float *vj = v + (int64_t)j * hd;
        __m256 vv[PV_VECS];
#pragma GCC unroll 4
        for (int c = 0; c < NC - 1; c++) vv[c] = _mm256_loadu_ps(vj + c * 8);
        vv[NC - 1] = _mm256_maskload_ps(vj + (NC - 1) * 8, tail);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            const __m256 pj = _mm256_broadcast_ss(p[r] + j);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) a[r][c] = _mm256_fmadd_ps(pj, vv[c], a[r][c]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) _mm256_storeu_ps(acc[r] + c * 8, a[r][c]);
}

typedef void (*pv_fn)(const float *, int, int, int, const float *const *, float *const *, __m256i);
#define PV_FN(NR, NC)                                                                                 \
    static void pv_##NR##_##NC(const float *v, int hd, int ja, int jb, const float *const *p,          \
                               float *const *acc, __m256i tail) {                                      \
        pv_kernel(v, hd, ja, jb, p, acc, tail, NR, NC);                                                \
    }
#define PV_ROW(NR) PV_FN(NR, 1) PV_FN(NR, 2) PV_FN(NR, 3) PV_FN(NR, 4)
PV_ROW(1) PV_ROW(2) PV_ROW(3)
#define PV_ENTRY(NR) {pv_##NR##_1, pv_##NR##_2, pv_##NR##_3, pv_##NR##_4}
static const pv_fn pv_kernels[PV_ROWS + 1][PV_VECS] = {
    [1] = PV_ENTRY(1), [2] = PV_ENTRY(2), [3] = PV_ENTRY(3),
};

/* Lanes i < n set (n in 0..8). */
INLINE __m256i lanes_below(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static void pv_rows(const float *v, int hd, int ja, int jb, const float *const *p, float *const *acc, int nr) {
    if (ja > jb) return;
    const int nvec = (hd + 7) / 8;
    for (int c0 = 0; c0 < nvec; c0 += PV_VECS) {
        const int nc = nvec - c0 < PV_VECS ? nvec - c0 : PV_VECS;
        const int rem = hd - (c0 + nc - 1) * 8;
        const __m256i tail = lanes_below(rem < 8 ? rem : 8);
        float *ac[PV_ROWS];
        for (int r = 0; r < nr; r++) ac[r] = acc[r] + c0 * 8;
        pv_kernels[nr][nc - 1](v + c0 * 8, hd, ja, jb, p, ac, tail);
    }
}

/* ---- the tile ---------------------------------------------------------------------- */

static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

void dt_attention_avx2(const dt_attn_tile *a, float *scratch) {
    const int hd = a->head_dim, G = a->group, R = a->n_tok * G;
    const int lo = dt_attn_first(a, 0), hi = a->pos0 + a->n_tok - 1;
    const int b0 = lo / BLOCK, b1 = hi / BLOCK, nb = b1 - b0 + 1;
    const int64_t ls = (int64_t)nb * BLOCK;
    const int64_t la = ((int64_t)hd + 15) & ~(int64_t)15;
    float *S = align64(scratch);
    float *A = S + (int64_t)R * ls;
    float *sums = A + (int64_t)R * la;
    const float *qrow[SCORE_ROWS];
    float *srow[SCORE_ROWS];

    /* 1. scores */
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

    /* 2. softmax of each row over its own positions */
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int r = 0; r < R; r++) {
        const int t = r / G, first = dt_attn_first(a, t), pos = a->pos0 + t;
        const int hf = first / 8, hl = pos / 8; /* 8-position halves */
        float *s = S + (int64_t)r * ls - (int64_t)b0 * BLOCK;
        const __m256i vfirst = _mm256_set1_epi32(first - 1), vlast = _mm256_set1_epi32(pos + 1);
        __m256 vmax = _mm256_set1_ps(-INFINITY);
        for (int h = hf; h <= hl; h++) {
            const __m256i lp = _mm256_add_epi32(_mm256_set1_epi32(h * 8), iota);
            const __m256 m = _mm256_castsi256_ps(
                _mm256_and_si256(_mm256_cmpgt_epi32(lp, vfirst), _mm256_cmpgt_epi32(vlast, lp)));
            vmax = _mm256_blendv_ps(vmax, _mm256_max_ps(vmax, _mm256_load_ps(s + h * 8)), m);
        }
        const __m256 mx = _mm256_set1_ps(hmax8(vmax));
        __m256 vsum = _mm256_setzero_ps();
        for (int h = hf; h <= hl; h++) {
            const __m256i lp = _mm256_add_epi32(_mm256_set1_epi32(h * 8), iota);
            const __m256 m = _mm256_castsi256_ps(
                _mm256_and_si256(_mm256_cmpgt_epi32(lp, vfirst), _mm256_cmpgt_epi32(vlast, lp)));
            const __m256 e = _mm256_and_ps(exp256(_mm256_sub_ps(_mm256_load_ps(s + h * 8), mx)), m);
            _mm256_store_ps(s + h * 8, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        sums[r] = hsum8(vsum);
        float *ac = A + (int64_t)r * la;
        for (int64_t d = 0; d < la; d += 8) _mm256_storeu_ps(ac + d, _mm256_setzero_ps());
    }

    /* 3. values */
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
        if (c0 > c1) {
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
    const int nvec = (hd + 7) / 8;
    for (int r = 0; r < R; r++) {
        const int t = r / G, g = r % G;
        float *out = a->out + (int64_t)t * a->ldo + (int64_t)g * hd;
        const float *ac = A + (int64_t)r * la;
        const __m256 sum = _mm256_set1_ps(sums[r]);
        for (int c = 0; c < nvec; c++) {
            const int rem = hd - c * 8;
            _mm256_maskstore_ps(out + c * 8, lanes_below(rem < 8 ? rem : 8),
                                _mm256_div_ps(_mm256_loadu_ps(ac + c * 8), sum));
        }
    }
}
