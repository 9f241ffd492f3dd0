/* ditto native layer: scalar reference dequantization of IQ4_NL and IQ4_XS
 * (4-bit indices into a fixed non-linear codebook).
 *
 * d (f16) times a 6-bit scale times a codebook value (|k| <= 127) needs at
 * most 24 significant bits, so every float here is exact in f32 and the
 * SIMD paths (quant_iq4_x86.c) give the same bits whatever their order.
 */
#include "quant.h"

const int8_t dt_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

/* 32 values from 16 nibble bytes: low nibbles first, then high ones. */
static void iq4_block32(const uint8_t *qs, float d, float *dst) {
    for (int l = 0; l < 16; l++) {
        dst[l] = d * (float)dt_kvalues_iq4nl[qs[l] & 0xF];
        dst[l + 16] = d * (float)dt_kvalues_iq4nl[qs[l] >> 4];
    }
}

void dt_dequant_iq4_nl_ref(const void *src, float *dst, int64_t nb) {
    const block_iq4_nl *b = src;
    for (int64_t i = 0; i < nb; i++, dst += QK4_NL) iq4_block32(b[i].qs, dt_f16_to_f32(b[i].d), dst);
}

void dt_dequant_iq4_xs_ref(const void *src, float *dst, int64_t nb) {
    const block_iq4_xs *b = src;
    for (int64_t i = 0; i < nb; i++) {
        const float d = dt_f16_to_f32(b[i].d);
        for (int ib = 0; ib < QK_K / 32; ib++, dst += 32)
            iq4_block32(b[i].qs + 16 * ib, d * (float)dt_iq4_xs_scale(&b[i], ib), dst);
    }
}
