/* ditto native layer: AVX2 / AVX-512 dequantization of IQ4_NL and IQ4_XS
 * (one source, built once per ISA: see quant_x86_store.h). The codebook
 * lookup is one byte shuffle per 16 nibbles; the floats are quant_iq4.c's
 * bit for bit (all exact).
 */
#include "quant_x86_store.h"

/* 32 values from 16 nibble bytes (low nibbles first) times d. */
DT_INLINE void iq4_block32(const uint8_t *qs, float d, float *dst) {
    const __m128i kv = _mm_loadu_si128((const __m128i *)dt_kvalues_iq4nl), lo4 = _mm_set1_epi8(0x0F);
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    store16(dst, _mm_shuffle_epi8(kv, _mm_and_si128(q, lo4)), d, 0.0f, STORE_MUL);
    store16(dst + 16, _mm_shuffle_epi8(kv, _mm_and_si128(_mm_srli_epi16(q, 4), lo4)), d, 0.0f, STORE_MUL);
}

void DT_X86_NAME(dt_dequant_iq4_nl)(const void *src, float *dst, int64_t nb) {
    const block_iq4_nl *b = src;
    for (int64_t i = 0; i < nb; i++, dst += QK4_NL) iq4_block32(b[i].qs, h2f(b[i].d), dst);
}

void DT_X86_NAME(dt_dequant_iq4_xs)(const void *src, float *dst, int64_t nb) {
    const block_iq4_xs *b = src;
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(b[i].d);
        for (int ib = 0; ib < QK_K / 32; ib++, dst += 32)
            iq4_block32(b[i].qs + 16 * ib, d * (float)dt_iq4_xs_scale(&b[i], ib), dst);
    }
}
