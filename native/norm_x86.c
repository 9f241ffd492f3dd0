/* ditto native layer: RMS normalization for AVX2 / AVX-512 (one source,
 * built once per ISA): norm.c's lanes as one vector of 8 doubles (AVX-512)
 * or two of 4 (AVX2), the tail masked; the scaling DT_VW floats at a time. */
#include <math.h>

#include "norm.h"
#include "quant_x86_store.h" /* DT_X86_NAME */

/* The 8 lane sums of x[i]^2 folded as norm.h says. */
static double sum_squares(const float *x, int n) {
#ifdef __AVX512F__
    __m512d lane = _mm512_setzero_pd();
    for (int i = 0; i < n; i += 8) {
        const __m512d v = _mm512_cvtps_pd(_mm256_maskz_loadu_ps((__mmask8)(n - i >= 8 ? 0xFF : (1u << (n - i)) - 1), x + i));
        lane = _mm512_fmadd_pd(v, v, lane);
    }
    const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(lane), _mm512_extractf64x4_pd(lane, 1));
#else
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    for (int i = 0; i < n; i += 8) {
        const __m256 f = _mm256_maskload_ps(x + i, vm_below(n - i));
        const __m256d a = _mm256_cvtps_pd(_mm256_castps256_ps128(f)), b = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
        lo = _mm256_fmadd_pd(a, a, lo);
        hi = _mm256_fmadd_pd(b, b, hi);
    }
    const __m256d h = _mm256_add_pd(lo, hi);
#endif
    const __m128d q = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
}

void DT_X86_NAME(dt_rmsnorm)(float *out, const float *x, const float *w, int n, float eps) {
    const dt_vf scale = vf_set1((float)(1.0 / sqrt(sum_squares(x, n) / n + (double)eps)));
    int i = 0;
    for (; i + DT_VW <= n; i += DT_VW) vf_store(out + i, vf_mul(vf_mul(vf_load(x + i), scale), vf_load(w + i)));
    if (i < n) {
        const dt_vmask m = vm_below(n - i);
        vf_mask_store(out + i, m, vf_mul(vf_mul(vf_maskz_load(m, x + i), scale), vf_maskz_load(m, w + i)));
    }
}
