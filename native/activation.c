/* ditto native layer: the gated FFN's activation, scalar reference (the
 * definition is in activation.h; the x86 kernels mirror each operation). */
#include <math.h>
#include <string.h>

#include "activation.h"

const uint64_t dt_expf_tab[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51,
    0x3fef72b83c7d517b, 0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715, 0x3feef1a7373aa9cb, 0x3feedea64c123422, 0x3feece086061892d,
    0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429, 0x3feea47eb03a5585,
    0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d,
    0x3feee89f995ad3ad, 0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069,
    0x3fef5818dcfba487, 0x3fef7c97337b9b5f, 0x3fefa4afa2a490da, 0x3fefd0765b6e4540};

float dt_expf(float x) {
    if (!(x >= DT_EXPF_LO)) return x != x ? x : 0.0f;
    if (x > DT_EXPF_HI) return INFINITY;
    const double xd = x;
    double kd = fma(DT_EXPF_INVLN2N, xd, DT_EXPF_SHIFT); /* k in the low bits */
    uint64_t ki, t;
    memcpy(&ki, &kd, sizeof ki);
    kd -= DT_EXPF_SHIFT;
    const double r = fma(DT_EXPF_INVLN2N, xd, -kd);
    t = dt_expf_tab[ki % 32] + (ki << 47);
    double s;
    memcpy(&s, &t, sizeof s);
    const double z = fma(DT_EXPF_C0, r, DT_EXPF_C1), y = fma(DT_EXPF_C2, r, 1.0);
    return (float)(fma(z, r * r, y) * s);
}

void dt_silu_mul_scalar(const float *g, const float *u, float *h, int64_t n) {
    for (int64_t i = 0; i < n; i++) h[i] = g[i] / (1.0f + dt_expf(-g[i])) * u[i];
}

void dt_gelu_mul_scalar(const float *g, const float *u, float *h, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float y = fmaf(g[i] * g[i], 0.044715f, 1.0f) * g[i];
        h[i] = g[i] / (1.0f + dt_expf(y * DT_GELU_K)) * u[i];
    }
}
