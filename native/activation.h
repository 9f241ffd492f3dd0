/* ditto native layer: the gated FFN's activation (internal header).
 *
 * h[i] = act(g[i]) * u[i], act SiLU, g / (1 + e^-g), or GELU in its tanh
 * form written as a sigmoid, g / (1 + e^(-2 sqrt(2/pi) (g + 0.044715 g^3)))
 * (0.5 (1 + tanh y) = 1 / (1 + e^-2y), without tanh's cancellation near 0).
 *
 * e^x is glibc's expf (Arm's optimized-routines algorithm, built with FMA:
 * x 32 / ln 2 = k + r, e^x = 2^(k/32) * (cubic in r), in double, rounded
 * once to float: within 0.502 ulp), ported so that every ISA computes it
 * operation for operation: each kernel gives the scalar reference's floats
 * bit for bit, and on glibc x86-64 these are libm's expf's (tested over
 * every float in range). Elementwise, so batch-invariant.
 */
#ifndef DITTO_ACTIVATION_H
#define DITTO_ACTIVATION_H

#include <stdint.h>

typedef void (*dt_gated_fn)(const float *g, const float *u, float *h, int64_t n);

void dt_silu_mul_scalar(const float *g, const float *u, float *h, int64_t n);
void dt_gelu_mul_scalar(const float *g, const float *u, float *h, int64_t n);
void dt_silu_mul_avx2(const float *g, const float *u, float *h, int64_t n);
void dt_gelu_mul_avx2(const float *g, const float *u, float *h, int64_t n);
void dt_silu_mul_avx512(const float *g, const float *u, float *h, int64_t n);
void dt_gelu_mul_avx512(const float *g, const float *u, float *h, int64_t n);

/* The current ISA's (cpu.c). */
void dt_silu_mul(const float *g, const float *u, float *h, int64_t n);
void dt_gelu_mul(const float *g, const float *u, float *h, int64_t n);

/* The scalar e^x above. */
float dt_expf(float x);

/* -2 sqrt(2 / pi): GELU's argument scale, as a sigmoid. */
#define DT_GELU_K (-1.5957691216057308f)

/* expf's constants: tab[i] = bits(2^(i/32)) - (i << 47), so that
 * double(tab[k % 32] + (k << 47)) = 2^(k/32); the cubic's coefficients
 * scaled by 1/32 per power; 32 / ln 2; 1.5 * 2^52 rounds to an integer. */
#define DT_EXPF_C0 (0x1.c6af84b912394p-5 / 32 / 32 / 32)
#define DT_EXPF_C1 (0x1.ebfce50fac4f3p-3 / 32 / 32)
#define DT_EXPF_C2 (0x1.62e42ff0c52d6p-1 / 32)
#define DT_EXPF_INVLN2N (0x1.71547652b82fep+0 * 32)
#define DT_EXPF_SHIFT 0x1.8p+52
/* Outside [LO, HI] e^x is 0 / inf in float (NaN stays NaN). */
#define DT_EXPF_LO (-0x1.9fe368p6f)
#define DT_EXPF_HI 0x1.62e42ep6f
extern const uint64_t dt_expf_tab[32];

#endif
