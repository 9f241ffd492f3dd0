/* ditto native layer: the x86 dequantizers and tile kernel written once
 * (included by quant_avx2.c and quant_avx512.c).
 *
 * The K-quant formats unpack to 32-byte vectors of small integers the same
 * way on both ISAs; only the widening to floats differs, in the two store
 * helpers below (8 or 16 floats per instruction). Every float is the scalar
 * reference's bit for bit: the same exact products, then one separate
 * add / subtract (no fma; the project builds with -ffp-contract=off).
 */
#ifndef DITTO_QUANT_X86_H
#define DITTO_QUANT_X86_H

#include "quant_x86_store.h" /* DT_X86_NAME of the types built per ISA */
#include "x86.h"

/* Q5_0: values 16*half .. 16*half + 15 of a block as int8 q - 16, from the
 * low nibbles (half 0) or high nibbles (half 1) of qs and bits of qh. */
DT_INLINE __m128i q5_0_values(const block_q5_0 *b, int half) {
    uint32_t qh;
    memcpy(&qh, b->qh, sizeof qh);
    const __m128i q = _mm_loadu_si128((const __m128i *)b->qs);
    const __m128i nib = _mm_and_si128(half ? _mm_srli_epi16(q, 4) : q, _mm_set1_epi8(0x0F));
    /* byte j gets bit j of the 16 bits: broadcast their two bytes, test one bit each */
    const __m128i bits = _mm_shuffle_epi8(_mm_set1_epi16((short)(qh >> (16 * half))),
                                          _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    const __m128i mask = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
    const __m128i high = _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(bits, mask), mask), _mm_set1_epi8(0x10));
    return _mm_sub_epi8(_mm_or_si128(nib, high), _mm_set1_epi8(16));
}

#ifdef __AVX512F__
/* 32 values q (bytes of v, unsigned) -> dst[0..31] = d*q - m */
DT_INLINE void store32_dq_m(float *dst, __m256i v, float d, float m) {
    const __m512 vd = _mm512_set1_ps(d), vm = _mm512_set1_ps(m);
    _mm512_storeu_ps(dst, _mm512_sub_ps(_mm512_mul_ps(vd, u8x16_to_ps(_mm256_castsi256_si128(v))), vm));
    _mm512_storeu_ps(dst + 16, _mm512_sub_ps(_mm512_mul_ps(vd, u8x16_to_ps(_mm256_extracti128_si256(v, 1))), vm));
}
/* 32 values q (bytes of v, signed) -> dst[0..15] = s1*q, dst[16..31] = s2*q */
DT_INLINE void store32_scaled(float *dst, __m256i v, float s1, float s2) {
    _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_set1_ps(s1), i8x16_to_ps(_mm256_castsi256_si128(v))));
    _mm512_storeu_ps(dst + 16, _mm512_mul_ps(_mm512_set1_ps(s2), i8x16_to_ps(_mm256_extracti128_si256(v, 1))));
}
#else
DT_INLINE void store32_dq_m(float *dst, __m256i v, float d, float m) {
    const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
    const __m128i a = _mm256_castsi256_si128(v), c = _mm256_extracti128_si256(v, 1);
    _mm256_storeu_ps(dst, _mm256_sub_ps(_mm256_mul_ps(vd, u8x8_to_ps(a)), vm));
    _mm256_storeu_ps(dst + 8, _mm256_sub_ps(_mm256_mul_ps(vd, u8x8_to_ps(_mm_srli_si128(a, 8))), vm));
    _mm256_storeu_ps(dst + 16, _mm256_sub_ps(_mm256_mul_ps(vd, u8x8_to_ps(c)), vm));
    _mm256_storeu_ps(dst + 24, _mm256_sub_ps(_mm256_mul_ps(vd, u8x8_to_ps(_mm_srli_si128(c, 8))), vm));
}
DT_INLINE void store32_scaled(float *dst, __m256i v, float s1, float s2) {
    const __m256 vs1 = _mm256_set1_ps(s1), vs2 = _mm256_set1_ps(s2);
    const __m128i a = _mm256_castsi256_si128(v), c = _mm256_extracti128_si256(v, 1);
    _mm256_storeu_ps(dst, _mm256_mul_ps(vs1, i8x8_to_ps(a)));
    _mm256_storeu_ps(dst + 8, _mm256_mul_ps(vs1, i8x8_to_ps(_mm_srli_si128(a, 8))));
    _mm256_storeu_ps(dst + 16, _mm256_mul_ps(vs2, i8x8_to_ps(c)));
    _mm256_storeu_ps(dst + 24, _mm256_mul_ps(vs2, i8x8_to_ps(_mm_srli_si128(c, 8))));
}
#endif

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
                store32_scaled(dst + 32 * g, v, d * (float)sc[2 * g], d * (float)sc[2 * g + 1]);
            }
        }
    }
}

/* ---- the tile kernel ------------------------------------------------------- */
/* R rows x T tokens (R <= 8, T <= 6, within the ISA's register file), every
 * (row, token) with its own accumulator: one fma per DT_VW values, a masked
 * fma for the tail, then the fixed tree of vf_hsum. R, T are constants
 * after inlining, so acc[][] lives in registers. */
DT_INLINE void tile(const float *w, int64_t ldw, const float *x, int64_t ldx, float *y, int64_t ldy,
                    int64_t k, const int R, const int T) {
    dt_vf acc[8][6];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) acc[r][t] = vf_zero();
    int64_t i = 0;
    for (; i + DT_VW <= k; i += DT_VW) {
        dt_vf wv[8];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) wv[r] = vf_load(w + r * ldw + i);
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) {
            const dt_vf xv = vf_load(x + t * ldx + i);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) acc[r][t] = vf_fma(wv[r], xv, acc[r][t]);
        }
    }
    if (i < k) {
        const dt_vmask m = vm_below((int)(k - i));
        dt_vf wv[8];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) wv[r] = vf_maskz_load(m, w + r * ldw + i);
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) {
            const dt_vf xv = vf_maskz_load(m, x + t * ldx + i);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) acc[r][t] = vf_fma(wv[r], xv, acc[r][t]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) y[t * ldy + r] = vf_hsum(acc[r][t]);
}

typedef void (*tile_fn)(const float *, int64_t, const float *, int64_t, float *, int64_t, int64_t);
#define TILE(R, T)                                                                                   \
    static void tile_##R##x##T(const float *w, int64_t ldw, const float *x, int64_t ldx, float *y, \
                               int64_t ldy, int64_t k) {                                           \
        tile(w, ldw, x, ldx, y, ldy, k, R, T);                                                     \
    }
TILE(1, 1)

/* dot(a, b): the 1 x 1 tile, so a matmul output equals it bit for bit. */
static float dot(const float *a, const float *b, int64_t n) {
    float y;
    tile_1x1(a, 0, b, 0, &y, 0, n);
    return y;
}

/* The dequantizer entries of an x86 kernel table; the including file
 * defines dequant_f16 / bf16 / q4_0 / q4_1 / q8_0 for its width (the types
 * of quant_lowbit_x86.c / quant_iq4_x86.c are built per ISA by meson). */
#define DT_X86_DEQUANT                     \
    {                                      \
        [DT_F32] = dt_dequant_f32_ref,     \
        [DT_F16] = dequant_f16,            \
        [DT_BF16] = dequant_bf16,          \
        [DT_Q4_0] = dequant_q4_0,          \
        [DT_Q4_1] = dequant_q4_1,          \
        [DT_Q5_0] = dequant_q5_0,          \
        [DT_Q8_0] = dequant_q8_0,          \
        [DT_Q4_K] = dequant_q4_K,          \
        [DT_Q5_K] = dequant_q5_K,          \
        [DT_Q6_K] = dequant_q6_K,          \
        [DT_Q5_1] = DT_X86_NAME(dt_dequant_q5_1),     \
        [DT_Q2_K] = DT_X86_NAME(dt_dequant_q2_K),     \
        [DT_Q3_K] = DT_X86_NAME(dt_dequant_q3_K),     \
        [DT_IQ4_NL] = DT_X86_NAME(dt_dequant_iq4_nl), \
        [DT_IQ4_XS] = DT_X86_NAME(dt_dequant_iq4_xs), \
    }

#endif
