/* ditto native layer: the gated FFN's activation for AVX2 / AVX-512 (one
 * source, built once per ISA): activation.c's operations DT_VW lanes at a
 * time, e^x in double as dt_expf (the 32-entry table by permutes on
 * AVX-512, by a gather on AVX2); the tail runs masked. */
#include <math.h>

#include "activation.h"
#include "quant_x86_store.h" /* DT_X86_NAME */

#ifdef __AVX512F__
typedef __m512d dt_vd;  /* 8 doubles: half a dt_vf */
typedef __m256 dt_vh;   /* 8 floats */
DT_INLINE dt_vd vd_set1(double x) { return _mm512_set1_pd(x); }
DT_INLINE dt_vd vd_fma(dt_vd a, dt_vd b, dt_vd c) { return _mm512_fmadd_pd(a, b, c); }
DT_INLINE dt_vd vd_fms(dt_vd a, dt_vd b, dt_vd c) { return _mm512_fmsub_pd(a, b, c); }
DT_INLINE dt_vd vd_mul(dt_vd a, dt_vd b) { return _mm512_mul_pd(a, b); }
DT_INLINE dt_vd vd_sub(dt_vd a, dt_vd b) { return _mm512_sub_pd(a, b); }
DT_INLINE dt_vd vd_from(dt_vh x) { return _mm512_cvtps_pd(x); }
DT_INLINE dt_vh vd_to(dt_vd x) { return _mm512_cvtpd_ps(x); }
/* 2^(k/32) for the k in the low bits of ki: dt_expf_tab[k % 32] + (k << 47) */
DT_INLINE dt_vd vd_pow2(__m512i ki) {
    const __m512i *tab = (const __m512i *)dt_expf_tab;
    const __m512i lo = _mm512_permutex2var_epi64(_mm512_loadu_si512(tab), ki, _mm512_loadu_si512(tab + 1));
    const __m512i hi = _mm512_permutex2var_epi64(_mm512_loadu_si512(tab + 2), ki, _mm512_loadu_si512(tab + 3));
    const __m512i t = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(ki, _mm512_set1_epi64(16)), lo, hi);
    return _mm512_castsi512_pd(_mm512_add_epi64(t, _mm512_slli_epi64(ki, 47)));
}
DT_INLINE dt_vh vf_half(dt_vf x, int i) { return i ? _mm512_extractf32x8_ps(x, 1) : _mm512_castps512_ps256(x); }
DT_INLINE dt_vf vf_join(dt_vh a, dt_vh b) { return _mm512_insertf32x8(_mm512_castps256_ps512(a), b, 1); }
DT_INLINE dt_vf vf_where_gt(dt_vf x, float limit, dt_vf v, float value) {
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(x, _mm512_set1_ps(limit), _CMP_GT_OQ), _mm512_set1_ps(value));
}
DT_INLINE dt_vf vf_where_lt(dt_vf x, float limit, dt_vf v, float value) {
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(x, _mm512_set1_ps(limit), _CMP_LT_OQ), _mm512_set1_ps(value));
}
#define VD_KI(kd) _mm512_castpd_si512(kd)
#else
typedef __m256d dt_vd;  /* 4 doubles */
typedef __m128 dt_vh;   /* 4 floats */
DT_INLINE dt_vd vd_set1(double x) { return _mm256_set1_pd(x); }
DT_INLINE dt_vd vd_fma(dt_vd a, dt_vd b, dt_vd c) { return _mm256_fmadd_pd(a, b, c); }
DT_INLINE dt_vd vd_fms(dt_vd a, dt_vd b, dt_vd c) { return _mm256_fmsub_pd(a, b, c); }
DT_INLINE dt_vd vd_mul(dt_vd a, dt_vd b) { return _mm256_mul_pd(a, b); }
DT_INLINE dt_vd vd_sub(dt_vd a, dt_vd b) { return _mm256_sub_pd(a, b); }
DT_INLINE dt_vd vd_from(dt_vh x) { return _mm256_cvtps_pd(x); }
DT_INLINE dt_vh vd_to(dt_vd x) { return _mm256_cvtpd_ps(x); }
DT_INLINE dt_vd vd_pow2(__m256i ki) {
    const __m256i k = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
    const __m256i t = _mm256_i64gather_epi64((const long long *)dt_expf_tab, k, 8);
    return _mm256_castsi256_pd(_mm256_add_epi64(t, _mm256_slli_epi64(ki, 47)));
}
DT_INLINE dt_vh vf_half(dt_vf x, int i) { return i ? _mm256_extractf128_ps(x, 1) : _mm256_castps256_ps128(x); }
DT_INLINE dt_vf vf_join(dt_vh a, dt_vh b) { return _mm256_insertf128_ps(_mm256_castps128_ps256(a), b, 1); }
DT_INLINE dt_vf vf_where_gt(dt_vf x, float limit, dt_vf v, float value) {
    return _mm256_blendv_ps(v, _mm256_set1_ps(value), _mm256_cmp_ps(x, _mm256_set1_ps(limit), _CMP_GT_OQ));
}
DT_INLINE dt_vf vf_where_lt(dt_vf x, float limit, dt_vf v, float value) {
    return _mm256_blendv_ps(v, _mm256_set1_ps(value), _mm256_cmp_ps(x, _mm256_set1_ps(limit), _CMP_LT_OQ));
}
#define VD_KI(kd) _mm256_castpd_si256(kd)
#endif

/* dt_expf on half a vector, inside [DT_EXPF_LO, DT_EXPF_HI] */
DT_INLINE dt_vh expf_half(dt_vh x) {
    const dt_vd xd = vd_from(x), inv = vd_set1(DT_EXPF_INVLN2N), shift = vd_set1(DT_EXPF_SHIFT);
    dt_vd kd = vd_fma(inv, xd, shift);
    const dt_vd s = vd_pow2(VD_KI(kd));
    kd = vd_sub(kd, shift);
    const dt_vd r = vd_fms(inv, xd, kd);
    const dt_vd z = vd_fma(vd_set1(DT_EXPF_C0), r, vd_set1(DT_EXPF_C1)), y = vd_fma(vd_set1(DT_EXPF_C2), r, vd_set1(1.0));
    return vd_to(vd_mul(vd_fma(z, vd_mul(r, r), y), s));
}

DT_INLINE dt_vf vexpf(dt_vf x) {
    const dt_vf e = vf_join(expf_half(vf_half(x, 0)), expf_half(vf_half(x, 1)));
    return vf_where_lt(x, DT_EXPF_LO, vf_where_gt(x, DT_EXPF_HI, e, INFINITY), 0.0f);
}

DT_INLINE dt_vf silu(dt_vf g) { return vf_div(g, vf_add(vf_set1(1.0f), vexpf(vf_sub(vf_zero(), g)))); }

DT_INLINE dt_vf gelu(dt_vf g) {
    const dt_vf y = vf_mul(vf_fma(vf_mul(g, g), vf_set1(0.044715f), vf_set1(1.0f)), g);
    return vf_div(g, vf_add(vf_set1(1.0f), vexpf(vf_mul(y, vf_set1(DT_GELU_K)))));
}

#define GATED(NAME, ACT)                                                                                  \
    void DT_X86_NAME(NAME)(const float *g, const float *u, float *h, int64_t n) {                         \
        int64_t i = 0;                                                                                    \
        for (; i + DT_VW <= n; i += DT_VW) vf_store(h + i, vf_mul(ACT(vf_load(g + i)), vf_load(u + i)));  \
        if (i < n) {                                                                                      \
            const dt_vmask m = vm_below((int)(n - i));                                                    \
            vf_mask_store(h + i, m, vf_mul(ACT(vf_maskz_load(m, g + i)), vf_maskz_load(m, u + i)));       \
        }                                                                                                 \
    }
GATED(dt_silu_mul, silu)
GATED(dt_gelu_mul, gelu)
