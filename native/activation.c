/* ditto native layer: the gated FFN's activation, scalar reference (the
 * definition is in activation.h; the x86 kernels mirror each operation). */
#include <math.h>

#include "activation.h"

/* x86.h's vf_exp_parts, one lane: n = round(x / ln 2), r = x - n ln 2,
 * Cephes' polynomial, then 2^n * p. */
static float exp_ref(float x) {
    x = x >= -104.0f ? x : -104.0f; /* a NaN becomes -104, as vf_clamp's max_ps */
    x = x <= 88.0f ? x : 88.0f;
    const float n = rintf(x * 1.44269504088896341f);
    float r = fmaf(-n, 0.693145751953125f, x);
    r = fmaf(-n, 1.42860682030941723212e-6f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r);
    return ldexpf(p + 1.0f, (int)n);
}

void dt_silu_mul_scalar(const float *g, const float *u, float *h, int64_t n) {
    for (int64_t i = 0; i < n; i++) h[i] = g[i] / (1.0f + exp_ref(-g[i])) * u[i];
}

void dt_gelu_mul_scalar(const float *g, const float *u, float *h, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float y = fmaf(g[i] * g[i], 0.044715f, 1.0f) * g[i];
        h[i] = g[i] / (1.0f + exp_ref(y * DT_GELU_K)) * u[i];
    }
}
