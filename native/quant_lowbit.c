/* ditto native layer: scalar reference dequantization of Q5_1, Q2_K and
 * Q3_K, the types Q2_K .. Q5_K_M files mix into some tensors.
 *
 * As in quant.c, every product is exact in f32 (an f16 scale times small
 * integers), so the only rounding is Q5_1's add of m and Q2_K's subtract of
 * (dmin * min), done as a separate operation (-ffp-contract=off); the SIMD
 * paths in quant_lowbit_x86.c reproduce these floats bit for bit.
 */
#include "quant.h"

void dt_dequant_q5_1_ref(const void *src, float *dst, int64_t nb) {
    const block_q5_1 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += QK5_1) {
        const float d = dt_f16_to_f32(b[i].d), m = dt_f16_to_f32(b[i].m);
        uint32_t qh;
        memcpy(&qh, b[i].qh, sizeof qh);
        for (int v = 0; v < QK5_1; v++) {
            const int q = ((b[i].qs[v % 16] >> (4 * (v / 16))) & 0xF) | (int)(((qh >> v) & 1) << 4);
            dst[v] = d * (float)q + m;
        }
    }
}

/* Low 2 bits of the 16 values of group j (of 16): bytes and shift in qs. */
static const uint8_t *q2_group(const uint8_t *qs, int j, int *shift) {
    *shift = 2 * ((j % 8) / 2);
    return qs + 32 * (j / 8) + 16 * (j % 2);
}

void dt_dequant_q2_K_ref(const void *src, float *dst, int64_t nb) {
    const block_q2_K *b = src;
    for (int64_t i = 0; i < nb; i++) {
        const float d = dt_f16_to_f32(b[i].d), dmin = dt_f16_to_f32(b[i].dmin);
        for (int j = 0; j < QK_K / 16; j++, dst += 16) {
            const float dl = d * (float)(b[i].scales[j] & 0xF), ml = dmin * (float)(b[i].scales[j] >> 4);
            int shift;
            const uint8_t *q = q2_group(b[i].qs, j, &shift);
            for (int l = 0; l < 16; l++) dst[l] = dl * (float)((q[l] >> shift) & 3) - ml;
        }
    }
}

void dt_dequant_q3_K_ref(const void *src, float *dst, int64_t nb) {
    const block_q3_K *b = src;
    for (int64_t i = 0; i < nb; i++) {
        const float d = dt_f16_to_f32(b[i].d);
        int8_t sc[16];
        dt_q3_K_scales(b[i].scales, sc);
        for (int j = 0; j < QK_K / 16; j++, dst += 16) {
            const float dl = d * (float)sc[j];
            int shift;
            const uint8_t *q = q2_group(b[i].qs, j, &shift);
            const uint8_t *hm = b[i].hmask + 16 * (j % 2);
            const int hbit = j / 2; /* 32-value group: bit of hmask */
            for (int l = 0; l < 16; l++) {
                const int v = ((q[l] >> shift) & 3) - (((hm[l] >> hbit) & 1) ? 0 : 4);
                dst[l] = dl * (float)v;
            }
        }
    }
}
