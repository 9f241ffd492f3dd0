/* ditto native layer: RMS normalization, scalar reference (the definition
 * is in norm.h; the x86 kernels add in the same order). */
#include <math.h>

#include "norm.h"

void dt_rmsnorm_scalar(float *out, const float *x, const float *w, int n, float eps) {
    double lane[8] = {0};
    for (int i = 0; i < n; i++) lane[i % 8] = fma((double)x[i], (double)x[i], lane[i % 8]);
    for (int j = 0; j < 4; j++) lane[j] += lane[j + 4];
    for (int j = 0; j < 2; j++) lane[j] += lane[j + 2];
    const double ss = lane[0] + lane[1];
    const float scale = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
}
