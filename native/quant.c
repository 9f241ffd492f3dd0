/* ditto native layer: type table and scalar reference kernels.
 *
 * The reference dequantizers follow gguf.quants (and ggml-quants.c) to the
 * operation: every product below is exact in f32 (an f16 scale times a small
 * integer), so the only rounding is the final add / subtract of a min, done
 * as a separate multiply then add (the project builds with
 * -ffp-contract=off). The SIMD paths must reproduce these floats bit for bit.
 */
#include "quant.h"

const dt_type_info dt_types[DT_TYPE_MAX] = {
    [DT_F32] = {"F32", 1, 4},
    [DT_F16] = {"F16", 1, 2},
    [DT_Q4_0] = {"Q4_0", QK4_0, sizeof(block_q4_0)},
    [DT_Q4_1] = {"Q4_1", QK4_1, sizeof(block_q4_1)},
    [DT_Q5_0] = {"Q5_0", QK5_0, sizeof(block_q5_0)},
    [DT_Q5_1] = {"Q5_1", QK5_1, sizeof(block_q5_1)},
    [DT_Q8_0] = {"Q8_0", QK8_0, sizeof(block_q8_0)},
    [DT_Q2_K] = {"Q2_K", QK_K, sizeof(block_q2_K)},
    [DT_Q3_K] = {"Q3_K", QK_K, sizeof(block_q3_K)},
    [DT_Q4_K] = {"Q4_K", QK_K, sizeof(block_q4_K)},
    [DT_Q5_K] = {"Q5_K", QK_K, sizeof(block_q5_K)},
    [DT_Q6_K] = {"Q6_K", QK_K, sizeof(block_q6_K)},
    [DT_IQ4_NL] = {"IQ4_NL", QK4_NL, sizeof(block_iq4_nl)},
    [DT_IQ4_XS] = {"IQ4_XS", QK_K, sizeof(block_iq4_xs)},
    [DT_BF16] = {"BF16", 1, 2},
};

int dt_type_layout(int type, int *block_size, int *type_size) {
    if (type < 0 || type >= DT_TYPE_MAX || !dt_types[type].name) return DT_ERR_UNSUPPORTED;
    if (block_size) *block_size = dt_types[type].block_size;
    if (type_size) *type_size = dt_types[type].type_size;
    return DT_OK;
}

int64_t dt_row_bytes(int type, int64_t n) {
    int bs, ts;
    if (dt_type_layout(type, &bs, &ts) != DT_OK || n < 0 || n % bs) return -1;
    return n / bs * ts;
}

/* ---- scalar reference dequantization ----------------------------------- */
void dt_dequant_f32_ref(const void *src, float *dst, int64_t nb) {
    memcpy(dst, src, (size_t)nb * sizeof(float));
}

void dt_dequant_f16_ref(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < nb; i++) dst[i] = dt_f16_to_f32(dt_load_f16(p + 2 * i));
}

void dt_dequant_bf16_ref(const void *src, float *dst, int64_t nb) {
    const uint8_t *p = src;
    for (int64_t i = 0; i < nb; i++) dst[i] = dt_bf16_to_f32(dt_load_f16(p + 2 * i));
}

void dt_dequant_q4_0_ref(const void *src, float *dst, int64_t nb) {
    const block_q4_0 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += QK4_0) {
        const float d = dt_f16_to_f32(b[i].d);
        for (int l = 0; l < QK4_0 / 2; l++) {
            dst[l] = d * (float)((b[i].qs[l] & 0xF) - 8);
            dst[l + QK4_0 / 2] = d * (float)((b[i].qs[l] >> 4) - 8);
        }
    }
}

void dt_dequant_q4_1_ref(const void *src, float *dst, int64_t nb) {
    const block_q4_1 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += QK4_1) {
        const float d = dt_f16_to_f32(b[i].d), m = dt_f16_to_f32(b[i].m);
        for (int l = 0; l < QK4_1 / 2; l++) {
            dst[l] = d * (float)(b[i].qs[l] & 0xF) + m;
            dst[l + QK4_1 / 2] = d * (float)(b[i].qs[l] >> 4) + m;
        }
    }
}

void dt_dequant_q5_0_ref(const void *src, float *dst, int64_t nb) {
    const block_q5_0 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += QK5_0) {
        const float d = dt_f16_to_f32(b[i].d);
        uint32_t qh;
        memcpy(&qh, b[i].qh, sizeof qh);
        for (int l = 0; l < QK5_0 / 2; l++) {
            const int x0 = (b[i].qs[l] & 0xF) | (int)(((qh >> l) << 4) & 0x10);
            const int x1 = (b[i].qs[l] >> 4) | (int)((qh >> (l + 12)) & 0x10);
            dst[l] = d * (float)(x0 - 16);
            dst[l + QK5_0 / 2] = d * (float)(x1 - 16);
        }
    }
}

void dt_dequant_q8_0_ref(const void *src, float *dst, int64_t nb) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += QK8_0) {
        const float d = dt_f16_to_f32(b[i].d);
        for (int l = 0; l < QK8_0; l++) dst[l] = (float)b[i].qs[l] * d;
    }
}

void dt_dequant_q4_K_ref(const void *src, float *dst, int64_t nb) {
    const block_q4_K *b = src;
    for (int64_t i = 0; i < nb; i++) {
        const float d = dt_f16_to_f32(b[i].d), dmin = dt_f16_to_f32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int j = 0; j < QK_K / 64; j++, q += 32) {
            uint8_t sc, m;
            dt_scale_min_k4(2 * j, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            dt_scale_min_k4(2 * j + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void dt_dequant_q5_K_ref(const void *src, float *dst, int64_t nb) {
    const block_q5_K *b = src;
    for (int64_t i = 0; i < nb; i++) {
        const float d = dt_f16_to_f32(b[i].d), dmin = dt_f16_to_f32(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        for (int j = 0; j < QK_K / 64; j++, ql += 32) {
            uint8_t sc, m;
            dt_scale_min_k4(2 * j, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            dt_scale_min_k4(2 * j + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++)
                *dst++ = d1 * (float)((ql[l] & 0xF) | (((qh[l] >> (2 * j)) & 1) << 4)) - m1;
            for (int l = 0; l < 32; l++)
                *dst++ = d2 * (float)((ql[l] >> 4) | (((qh[l] >> (2 * j + 1)) & 1) << 4)) - m2;
        }
    }
}

void dt_dequant_q6_K_ref(const void *src, float *dst, int64_t nb) {
    const block_q6_K *b = src;
    for (int64_t i = 0; i < nb; i++) {
        const float d = dt_f16_to_f32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int n = 0; n < QK_K; n += 128, dst += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                dst[l + 0] = (d * (float)sc[is + 0]) * (float)q1;
                dst[l + 32] = (d * (float)sc[is + 2]) * (float)q2;
                dst[l + 64] = (d * (float)sc[is + 4]) * (float)q3;
                dst[l + 96] = (d * (float)sc[is + 6]) * (float)q4;
            }
        }
    }
}

/* ---- scalar reference dot ---------------------------------------------- */
/* Eight lanes across n (lane = i % 8, multiply then add), then a fixed
 * pairwise tree; independent of anything but a, b and n. */
float dt_dot_f32_ref(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] = acc[l] + a[i + l] * b[i + l];
    for (int l = 0; i + l < n; l++) acc[l] = acc[l] + a[i + l] * b[i + l];
    for (int l = 0; l < 4; l++) acc[l] = acc[l] + acc[l + 4];
    for (int l = 0; l < 2; l++) acc[l] = acc[l] + acc[l + 2];
    return acc[0] + acc[1];
}

void dt_gemm_ref(const float *w, int64_t ldw, int64_t n_rows, const float *x, int64_t ldx,
                 int64_t n_tok, float *y, int64_t ldy, int64_t k) {
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < n_rows; r++)
            y[t * ldy + r] = dt_dot_f32_ref(w + r * ldw, x + t * ldx, k);
}

const dt_kernels dt_kernels_scalar = {
    .name = "scalar",
    .dequant = {
        [DT_F32] = dt_dequant_f32_ref,
        [DT_F16] = dt_dequant_f16_ref,
        [DT_BF16] = dt_dequant_bf16_ref,
        [DT_Q4_0] = dt_dequant_q4_0_ref,
        [DT_Q4_1] = dt_dequant_q4_1_ref,
        [DT_Q5_0] = dt_dequant_q5_0_ref,
        [DT_Q8_0] = dt_dequant_q8_0_ref,
        [DT_Q4_K] = dt_dequant_q4_K_ref,
        [DT_Q5_K] = dt_dequant_q5_K_ref,
        [DT_Q6_K] = dt_dequant_q6_K_ref,
        [DT_Q5_1] = dt_dequant_q5_1_ref,
        [DT_Q2_K] = dt_dequant_q2_K_ref,
        [DT_Q3_K] = dt_dequant_q3_K_ref,
        [DT_IQ4_NL] = dt_dequant_iq4_nl_ref,
        [DT_IQ4_XS] = dt_dequant_iq4_xs_ref,
    },
    .dot = dt_dot_f32_ref,
    .gemm = dt_gemm_ref,
    .fast = DT_FAST_TABLE(ref),
    .q16 = DT_Q16_TABLE(ref),
    .q16_prep = dt_q16_prep,
    .fast_prep = dt_fast_prep,
};

int dt_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    int bs, ts;
    if (dt_type_layout(type, &bs, &ts) != DT_OK) return DT_ERR_UNSUPPORTED;
    if (!src || !dst || n < 0 || n % bs) return DT_ERR_INVALID;
    const dt_kernels *k = dt_kernels_current();
    dt_dequant_fn fn = k->dequant[type] ? k->dequant[type] : dt_kernels_scalar.dequant[type];
    fn(src, dst, n / bs);
    return DT_OK;
}
