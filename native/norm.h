/* ditto native layer: RMS normalization of one row (internal header).
 *
 * out[i] = (x[i] * scale) * w[i], scale = (float)(1 / sqrt(ss / n + eps)),
 * ss the sum of x[i]^2 in double (each square exact) over 8 lanes: lane j
 * adds the x[i] with i % 8 == j in order, then lanes j and j + 4, then the
 * pairs j and j + 2, then the last two. Eight short chains instead of one
 * long one, and every ISA adds in that order: each kernel gives the scalar
 * reference's floats bit for bit. Per row, so batch-invariant.
 */
#ifndef DITTO_NORM_H
#define DITTO_NORM_H

typedef void (*dt_rmsnorm_fn)(float *out, const float *x, const float *w, int n, float eps);

void dt_rmsnorm_scalar(float *out, const float *x, const float *w, int n, float eps);
void dt_rmsnorm_avx2(float *out, const float *x, const float *w, int n, float eps);
void dt_rmsnorm_avx512(float *out, const float *x, const float *w, int n, float eps);

/* The current ISA's (cpu.c); out may be x. */
void dt_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

#endif
