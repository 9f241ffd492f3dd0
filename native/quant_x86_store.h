/* ditto native layer: helpers of the x86 dequantizers that are written once
 * and compiled per ISA (quant_lowbit_x86.c, quant_iq4_x86.c; meson builds
 * each into both the AVX2 and the AVX-512 library).
 *
 * DT_X86_NAME(f) is f_avx512 or f_avx2 for the file's ISA (the names
 * quant.h declares). store16() widens 16 small integers to floats DT_VW at
 * a time and scales them with one multiply, then at most one add / subtract:
 * the reference's operations, so its floats bit for bit.
 */
#ifndef DITTO_QUANT_X86_STORE_H
#define DITTO_QUANT_X86_STORE_H

#include "x86.h"

#ifdef __AVX512F__
#define DT_X86_NAME(f) f##_avx512
#else
#define DT_X86_NAME(f) f##_avx2
#endif

/* Part p (of 16 / DT_VW) of the 16 signed bytes of q as floats. */
DT_INLINE dt_vf vf_from_i8(__m128i q, int p) {
#ifdef __AVX512F__
    (void)p;
    return i8x16_to_ps(q);
#else
    return i8x8_to_ps(p ? _mm_srli_si128(q, 8) : q);
#endif
}

enum { STORE_MUL, STORE_MUL_ADD, STORE_MUL_SUB };
/* dst[0..15] = s * q (then + m or - m) for the 16 signed bytes of q. */
DT_INLINE void store16(float *dst, __m128i q, float s, float m, const int op) {
    for (int p = 0; p < 16 / DT_VW; p++) {
        dt_vf v = vf_mul(vf_set1(s), vf_from_i8(q, p));
        if (op == STORE_MUL_ADD) v = vf_add(v, vf_set1(m));
        if (op == STORE_MUL_SUB) v = vf_sub(v, vf_set1(m));
        vf_store(dst + p * DT_VW, v);
    }
}

/* Byte j (0..15) = bit j of `bits`, as 0 or 1. */
#ifdef __AVX512F__
DT_INLINE __m128i bits16_to_bytes(uint32_t bits) { return _mm_maskz_mov_epi8((__mmask16)bits, _mm_set1_epi8(1)); }
#else
DT_INLINE __m128i bits16_to_bytes(uint32_t bits) {
    const __m128i b = _mm_shuffle_epi8(_mm_cvtsi32_si128((int)bits),
                                       _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
    const __m128i bit = _mm_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm_min_epu8(_mm_and_si128(b, bit), _mm_set1_epi8(1));
}
#endif

DT_INLINE __m128i lo128(__m256i v) { return _mm256_castsi256_si128(v); }
DT_INLINE __m128i hi128(__m256i v) { return _mm256_extracti128_si256(v, 1); }

#endif
