/* ditto native layer: AVX2 / AVX-512 dequantization of Q5_1, Q2_K and
 * Q3_K (one source, built once per ISA: see quant_x86_store.h). Integer
 * unpacking to bytes is SSE / AVX2 on both; the floats are quant_lowbit.c's
 * bit for bit.
 */
#include "quant_x86_store.h"

void DT_X86_NAME(dt_dequant_q5_1)(const void *src, float *dst, int64_t nb) {
    const block_q5_1 *b = src;
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; i++, dst += QK5_1) {
        const float d = h2f(b[i].d), m = h2f(b[i].m);
        uint32_t qh;
        memcpy(&qh, b[i].qh, sizeof qh);
        const __m128i q = _mm_loadu_si128((const __m128i *)b[i].qs);
        /* the 5th bit: 0 or 1 per byte, shifted to 16 (16-bit shifts cannot carry across bytes) */
        const __m128i lo = _mm_or_si128(_mm_and_si128(q, lo4), _mm_slli_epi16(bits16_to_bytes(qh & 0xFFFF), 4));
        const __m128i hi = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(q, 4), lo4),
                                        _mm_slli_epi16(bits16_to_bytes(qh >> 16), 4));
        store16(dst, lo, d, m, STORE_MUL_ADD);
        store16(dst + 16, hi, d, m, STORE_MUL_ADD);
    }
}

/* Bits 2s, 2s+1 of each of 32 bytes: 32-value group s of a 128-value half. */
DT_INLINE __m256i q2_bits(__m256i q, int s) {
    return _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * s)), _mm256_set1_epi8(3));
}

/* Per 16 values a scale dl[j] and a min ml[j] (Q2_K) or a scale only
 * (Q3_K): converted for the whole block in one go (store16 does the
 * reference's d * (float)sc), then broadcast from memory. */
void DT_X86_NAME(dt_dequant_q2_K)(const void *src, float *dst, int64_t nb) {
    const block_q2_K *b = src;
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; i++, dst += QK_K) {
        float dl[16], ml[16];
        const __m128i sc = _mm_loadu_si128((const __m128i *)b[i].scales);
        store16(dl, _mm_and_si128(sc, lo4), h2f(b[i].d), 0.0f, STORE_MUL);
        store16(ml, _mm_and_si128(_mm_srli_epi16(sc, 4), lo4), h2f(b[i].dmin), 0.0f, STORE_MUL);
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * h));
            for (int s = 0; s < 4; s++) {
                const int j = 8 * h + 2 * s; /* groups j, j+1 of 16 values */
                const __m256i v = q2_bits(q, s);
                store16(dst + 16 * j, lo128(v), dl[j], ml[j], STORE_MUL_SUB);
                store16(dst + 16 * j + 16, hi128(v), dl[j + 1], ml[j + 1], STORE_MUL_SUB);
            }
        }
    }
}

void DT_X86_NAME(dt_dequant_q3_K)(const void *src, float *dst, int64_t nb) {
    const block_q3_K *b = src;
    const __m256i one = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
    for (int64_t i = 0; i < nb; i++, dst += QK_K) {
        int8_t sc[16];
        float dl[16];
        dt_q3_K_scales(b[i].scales, sc);
        store16(dl, _mm_loadu_si128((const __m128i *)sc), h2f(b[i].d), 0.0f, STORE_MUL);
        const __m256i hm = _mm256_loadu_si256((const __m256i *)b[i].hmask);
        for (int h = 0; h < 2; h++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * h));
            for (int s = 0; s < 4; s++) {
                const int j = 8 * h + 2 * s;
                /* q | 4 * hbit, minus 4: a clear bit means q - 4 */
                const __m256i hb = _mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128(4 * h + s)), one);
                const __m256i v = _mm256_sub_epi8(_mm256_or_si256(q2_bits(q, s), _mm256_slli_epi16(hb, 2)), four);
                store16(dst + 16 * j, lo128(v), dl[j], 0.0f, STORE_MUL);
                store16(dst + 16 * j + 16, hi128(v), dl[j + 1], 0.0f, STORE_MUL);
            }
        }
    }
}
