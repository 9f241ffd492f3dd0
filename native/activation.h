/* ditto native layer: the gated FFN's activation (internal header).
 *
 * h[i] = act(g[i]) * u[i], act SiLU, g / (1 + e^-g), or GELU in its tanh
 * form written as a sigmoid, g / (1 + e^(-2 sqrt(2/pi) (g + 0.044715 g^3)))
 * (0.5 (1 + tanh y) = 1 / (1 + e^-2y), without tanh's cancellation near 0).
 * e^x is Cephes' expf polynomial on x clamped to [-104, 88] (x86.h's
 * vf_exp_parts), 2^n applied as ldexpf: every ISA gives the scalar
 * reference's floats bit for bit (AVX2's exp flushes x < -87.3 to 0, where
 * 1 + e^x is already 1). Elementwise, so batch-invariant.
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

/* -2 sqrt(2 / pi): GELU's argument scale, as a sigmoid. */
#define DT_GELU_K (-1.5957691216057308f)

#endif
