/* ditto native layer: AVX2 kernels (compiled with -mavx2 -mfma -mf16c;
 * used only when cpu.c finds them).
 *
 * Dequantizers give the scalar reference's floats bit for bit: the same
 * exact products, then one separate add / subtract (no fma; the project
 * builds with -ffp-contract=off). The dot and the tile kernel give every
 * (row, token) output its own 8-lane accumulator over k, one fma per 8
 * values, a masked fma for the tail, then the fixed tree of hsum8(); so an
 * output never depends on the tile shape, the batch or the row range.
 */
#include <immintrin.h>

#include "quant.h"

/* ---- dequantization ------------------------------------------------------ */
/* F16C conversion: exact, quiets NaNs like dt_f16_to_f32. */
static inline float h2f(dt_f16 h) { return _cvtsh_ss(h); }
/* low 8 bytes of v, unsigned / signed, to 8 floats */
static inline __m256 u8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
static inline __m256 i8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

static void dequant_f16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i))));
    if (i < n) dt_dequant_f16_ref(p + 2 * i, dst + i, n - i);
}

static void dequant_bf16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
    if (i < n) dt_dequant_bf16_ref(p + 2 * i, dst + i, n - i);
}

static void dequant_q4_0(const void *src, float *dst, int64_t nb) {
    const block_q4_0 *b = src;
    const __m128i lo4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        const __m256 d = _mm256_set1_ps(h2f(b[i].d));
        const __m128i q = _mm_loadu_si128((const __m128i *)b[i].qs);
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, lo4), eight);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), lo4), eight);
        _mm256_storeu_ps(dst, _mm256_mul_ps(d, i8x8_to_ps(lo)));
        _mm256_storeu_ps(dst + 8, _mm256_mul_ps(d, i8x8_to_ps(_mm_srli_si128(lo, 8))));
        _mm256_storeu_ps(dst + 16, _mm256_mul_ps(d, i8x8_to_ps(hi)));
        _mm256_storeu_ps(dst + 24, _mm256_mul_ps(d, i8x8_to_ps(_mm_srli_si128(hi, 8))));
    }
}

static void dequant_q4_1(const void *src, float *dst, int64_t nb) {
    const block_q4_1 *b = src;
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        const __m256 d = _mm256_set1_ps(h2f(b[i].d));
        const __m256 m = _mm256_set1_ps(h2f(b[i].m));
        const __m128i q = _mm_loadu_si128((const __m128i *)b[i].qs);
        const __m128i lo = _mm_and_si128(q, lo4);
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), lo4);
        _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(lo)), m));
        _mm256_storeu_ps(dst + 8, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(_mm_srli_si128(lo, 8))), m));
        _mm256_storeu_ps(dst + 16, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(hi)), m));
        _mm256_storeu_ps(dst + 24, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(_mm_srli_si128(hi, 8))), m));
    }
}

static void dequant_q8_0(const void *src, float *dst, int64_t nb) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        const __m256 d = _mm256_set1_ps(h2f(b[i].d));
        for (int l = 0; l < 32; l += 8) {
            const __m128i q = _mm_loadl_epi64((const __m128i *)(b[i].qs + l));
            _mm256_storeu_ps(dst + l, _mm256_mul_ps(i8x8_to_ps(q), d));
        }
    }
}

/* 32 values q (bytes 0..31 of v, each < 64) -> dst[0..31] = d*q - m */
static inline void store32_dq_m(float *dst, __m256i v, float d, float m) {
    const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
    const __m128i a = _mm256_castsi256_si128(v), c = _mm256_extracti128_si256(v, 1);
    _mm256_storeu_ps(dst, _mm256_sub_ps(_mm256_mul_ps(vd, u8x8_to_ps(a)), vm));
    _mm256_storeu_ps(dst + 8, _mm256_sub_ps(_mm256_mul_ps(vd, u8x8_to_ps(_mm_srli_si128(a, 8))), vm));
    _mm256_storeu_ps(dst + 16, _mm256_sub_ps(_mm256_mul_ps(vd, u8x8_to_ps(c)), vm));
    _mm256_storeu_ps(dst + 24, _mm256_sub_ps(_mm256_mul_ps(vd, u8x8_to_ps(_mm_srli_si128(c, 8))), vm));
}

static void dequant_q4_K(const void *src, float *dst, int64_t nb) {
    const block_q4_K *b = src;
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int j = 0; j < QK_K / 64; j++, dst += 64) {
            uint8_t sc1, m1, sc2, m2;
            dt_scale_min_k4(2 * j, b[i].scales, &sc1, &m1);
            dt_scale_min_k4(2 * j + 1, b[i].scales, &sc2, &m2);
            const __m256i q = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * j));
            store32_dq_m(dst, _mm256_and_si256(q, lo4), d * sc1, dmin * m1);
            store32_dq_m(dst + 32, _mm256_and_si256(_mm256_srli_epi16(q, 4), lo4), d * sc2, dmin * m2);
        }
    }
}

static void dequant_q5_K(const void *src, float *dst, int64_t nb) {
    const block_q5_K *b = src;
    const __m256i lo4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        const __m256i qh = _mm256_loadu_si256((const __m256i *)b[i].qh);
        for (int j = 0; j < QK_K / 64; j++, dst += 64) {
            uint8_t sc1, m1, sc2, m2;
            dt_scale_min_k4(2 * j, b[i].scales, &sc1, &m1);
            dt_scale_min_k4(2 * j + 1, b[i].scales, &sc2, &m2);
            const __m256i q = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * j));
            /* bit 2j / 2j+1 of each qh byte; 16-bit shifts are fine after the byte mask */
            const __m256i h1 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j)), one);
            const __m256i h2 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j + 1)), one);
            const __m256i v1 = _mm256_or_si256(_mm256_and_si256(q, lo4), _mm256_slli_epi16(h1, 4));
            const __m256i v2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), lo4),
                                               _mm256_slli_epi16(h2, 4));
            store32_dq_m(dst, v1, d * sc1, dmin * m1);
            store32_dq_m(dst + 32, v2, d * sc2, dmin * m2);
        }
    }
}

static void dequant_q6_K(const void *src, float *dst, int64_t nb) {
    const block_q6_K *b = src;
    const __m256i lo4 = _mm256_set1_epi8(0x0F), three = _mm256_set1_epi8(3), k32 = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(b[i].d);
        for (int h = 0; h < 2; h++, dst += 128) {
            const uint8_t *ql = b[i].ql + 64 * h;
            const int8_t *sc = b[i].scales + 8 * h;
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(b[i].qh + 32 * h));
            __m256i q[4];
            q[0] = _mm256_and_si256(l0, lo4);
            q[1] = _mm256_and_si256(l1, lo4);
            q[2] = _mm256_and_si256(_mm256_srli_epi16(l0, 4), lo4);
            q[3] = _mm256_and_si256(_mm256_srli_epi16(l1, 4), lo4);
            for (int g = 0; g < 4; g++) {
                const __m256i hb = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * g)), three);
                const __m256i v = _mm256_sub_epi8(_mm256_or_si256(q[g], _mm256_slli_epi16(hb, 4)), k32);
                const __m128i a = _mm256_castsi256_si128(v), c = _mm256_extracti128_si256(v, 1);
                const __m256 s1 = _mm256_set1_ps(d * (float)sc[2 * g]);
                const __m256 s2 = _mm256_set1_ps(d * (float)sc[2 * g + 1]);
                float *o = dst + 32 * g;
                _mm256_storeu_ps(o, _mm256_mul_ps(s1, i8x8_to_ps(a)));
                _mm256_storeu_ps(o + 8, _mm256_mul_ps(s1, i8x8_to_ps(_mm_srli_si128(a, 8))));
                _mm256_storeu_ps(o + 16, _mm256_mul_ps(s2, i8x8_to_ps(c)));
                _mm256_storeu_ps(o + 24, _mm256_mul_ps(s2, i8x8_to_ps(_mm_srli_si128(c, 8))));
            }
        }
    }
}

/* ---- dot and tile kernel ------------------------------------------------- */
/* The one reduction: lanes i + i+4, then + i+2, + i+1. */
static inline float hsum8(__m256 v) {
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

static const int32_t tail_mask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

/* R rows x T tokens (R*T <= 12: 16 ymm registers), one accumulator each. */
static inline __attribute__((always_inline)) void tile(const float *w, int64_t ldw, const float *x,
                                                       int64_t ldx, float *y, int64_t ldy, int64_t k,
                                                       const int R, const int T) {
    __m256 acc[6][4];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        __m256 wv[6];
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) wv[r] = _mm256_loadu_ps(w + r * ldw + i);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const __m256 xv = _mm256_loadu_ps(x + t * ldx + i);
#pragma GCC unroll 6
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    if (i < k) {
        const __m256i m = _mm256_loadu_si256((const __m256i *)(tail_mask + 8 - (k - i)));
        __m256 wv[6];
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) wv[r] = _mm256_maskload_ps(w + r * ldw + i, m);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const __m256 xv = _mm256_maskload_ps(x + t * ldx + i, m);
#pragma GCC unroll 6
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = hsum8(acc[r][t]);
}

typedef void (*tile_fn)(const float *, int64_t, const float *, int64_t, float *, int64_t, int64_t);
#define TILE(R, T)                                                                                   \
    static void tile_##R##x##T(const float *w, int64_t ldw, const float *x, int64_t ldx, float *y, \
                               int64_t ldy, int64_t k) {                                           \
        tile(w, ldw, x, ldx, y, ldy, k, R, T);                                                     \
    }
TILE(1, 1) TILE(1, 2) TILE(1, 3) TILE(1, 4)
TILE(2, 1) TILE(2, 2) TILE(2, 3) TILE(2, 4)
TILE(3, 1) TILE(3, 2) TILE(3, 3) TILE(3, 4)
TILE(6, 1) TILE(6, 2)
/* tiles[R-1][T-1] for R <= 3, T <= 4 */
static const tile_fn tiles[3][4] = {
    {tile_1x1, tile_1x2, tile_1x3, tile_1x4},
    {tile_2x1, tile_2x2, tile_2x3, tile_2x4},
    {tile_3x1, tile_3x2, tile_3x3, tile_3x4},
};
static const tile_fn tiles6[2] = {tile_6x1, tile_6x2};

static float dot(const float *a, const float *b, int64_t n) {
    float y;
    tile_1x1(a, 0, b, 0, &y, 0, n);
    return y;
}

static void gemm(const float *w, int64_t ldw, int64_t n_rows, const float *x, int64_t ldx,
                 int64_t n_tok, float *y, int64_t ldy, int64_t k) {
    for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {
        const int nt = n_tok - t0 < 4 ? (int)(n_tok - t0) : 4;
        const float *xt = x + t0 * ldx;
        float *yt = y + t0 * ldy;
        int64_t r0 = 0;
        if (nt <= 2)
            for (; r0 + 6 <= n_rows; r0 += 6) tiles6[nt - 1](w + r0 * ldw, ldw, xt, ldx, yt + r0, ldy, k);
        for (; r0 < n_rows; r0 += 3) {
            const int nr = n_rows - r0 < 3 ? (int)(n_rows - r0) : 3;
            tiles[nr - 1][nt - 1](w + r0 * ldw, ldw, xt, ldx, yt + r0, ldy, k);
        }
    }
}

const dt_kernels dt_kernels_avx2 = {
    .name = "avx2",
    .dequant = {
        [DT_F32] = dt_dequant_f32_ref,
        [DT_F16] = dequant_f16,
        [DT_BF16] = dequant_bf16,
        [DT_Q4_0] = dequant_q4_0,
        [DT_Q4_1] = dequant_q4_1,
        [DT_Q8_0] = dequant_q8_0,
        [DT_Q4_K] = dequant_q4_K,
        [DT_Q5_K] = dequant_q5_K,
        [DT_Q6_K] = dequant_q6_K,
    },
    .dot = dot,
    .gemm = gemm,
};
