/* ditto native layer: x86 SIMD helpers shared by the AVX2 and AVX-512 files.
 *
 * Internal header, included only by files compiled with at least -mavx2
 * -mfma -mf16c (ggml's x86 quants keep their helpers the same way). The
 * `dt_vf` vector and its operations are 16 lanes in files compiled with
 * AVX-512 and 8 lanes otherwise, so one source serves both widths; every
 * operation is a single instruction (or a fixed tree, for the reductions),
 * so a kernel written with them has a fixed order of float operations.
 */
#ifndef DITTO_X86_H
#define DITTO_X86_H

#include <immintrin.h>

#include "quant.h"

#define DT_INLINE static inline __attribute__((always_inline))

/* F16C conversion: exact, quiets NaNs like dt_f16_to_f32. */
DT_INLINE float h2f(dt_f16 h) { return _cvtsh_ss(h); }

/* low 8 bytes of v, unsigned / signed, to 8 floats */
DT_INLINE __m256 u8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
DT_INLINE __m256 i8x8_to_ps(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

/* The 8-lane reductions: lanes i + i+4, then + i+2, + i+1. */
DT_INLINE float hsum8(__m256 v) {
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}
DT_INLINE float hmax8(__m256 v) {
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    b = _mm_max_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

#ifdef __AVX512F__
/* 16 bytes of v, unsigned / signed, to 16 floats */
DT_INLINE __m512 u8x16_to_ps(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v)); }
DT_INLINE __m512 i8x16_to_ps(__m128i v) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)); }

/* The 16-lane reductions: lanes i + i+8, then the 8-lane tree. */
DT_INLINE float hsum16(__m512 v) {
    return hsum8(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}
DT_INLINE float hmax16(__m512 v) {
    return hmax8(_mm256_max_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
}

/* Lane i: op folded over the 16 lanes of v[i], for 16 vectors at once (4
 * levels of shuffles and ops, a transpose folded into the tree: 15 ops
 * where 16 separate reductions take 64). For order-free operations only
 * (max of non-NaN floats, integer add). The inputs go in the order that
 * leaves v[i]'s result in lane i: the tree transposes 128-bit lanes 4x4. */
typedef __m512 (*dt_vop16)(__m512, __m512);
DT_INLINE __m512 transpose_reduce16(const __m512 v[16], dt_vop16 op) {
    static const int order[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
    __m512 a[8], b[4], c[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        const __m512 x = v[order[2 * i]], y = v[order[2 * i + 1]];
        a[i] = op(_mm512_shuffle_f32x4(x, y, 0x44), _mm512_shuffle_f32x4(x, y, 0xee));
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
        b[i] = op(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x88), _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xdd));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++)
        c[i] = op(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0x44), _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], 0xee));
    return op(_mm512_shuffle_ps(c[0], c[1], 0x88), _mm512_shuffle_ps(c[0], c[1], 0xdd));
}
DT_INLINE __m512 vop_max(__m512 a, __m512 b) { return _mm512_max_ps(a, b); }
DT_INLINE __m512 vop_add_epi32(__m512 a, __m512 b) {
    return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
}

/* Block scales of a row (blocks ts bytes apart) converted for nb blocks,
 * one F16C conversion per block (cheaper than a gather for the short rows
 * of decode), then 4 zero floats so a pair's 4-float read past the last
 * block sees zeros. */

/* dm[2j], dm[2j+1] = d, m of block j (the f16 pair at offset 0, as Q4_1). */
DT_INLINE void scales_pair(const uint8_t *p, int64_t ts, int64_t nb, float *dm) {
    for (int64_t j = 0; j < nb; j++) {
        uint32_t v;
        memcpy(&v, p + j * ts, sizeof v);
        _mm_storel_pi((__m64 *)(dm + 2 * j), _mm_cvtph_ps(_mm_cvtsi32_si128((int)v)));
    }
    _mm_storeu_ps(dm + 2 * nb, _mm_setzero_ps());
}

/* d[j] = scale of block j (the f16 at offset 0, as Q4_0 / Q8_0). */
DT_INLINE void scales_one(const uint8_t *p, int64_t ts, int64_t nb, float *d) {
    for (int64_t j = 0; j < nb; j++) d[j] = h2f(dt_load_f16(p + j * ts));
    _mm_storeu_ps(d + nb, _mm_setzero_ps());
}
#endif

/* Decode streams each weight row from memory once: prefetch the bytes this
 * far ahead into L2 (measured on the AMD EPYC host: a Q8_0 matrix-vector
 * product from DRAM went from 4.5 to 8-9.5 GB/s on one thread, against
 * T0 prefetches 4 row groups ahead; L1 has too few miss buffers to hold a
 * stream's worth of lines in flight). */
#define DT_PREFETCH_BYTES 16384
DT_INLINE void prefetch_ahead(const void *p) { _mm_prefetch((const char *)p + DT_PREFETCH_BYTES, _MM_HINT_T1); }

/* ---- dt_vf: the widest float vector of the file's ISA ---------------------- */
#ifdef __AVX512F__
#define DT_VW 16
typedef __m512 dt_vf;
typedef __mmask16 dt_vmask;
DT_INLINE dt_vf vf_zero(void) { return _mm512_setzero_ps(); }
DT_INLINE dt_vf vf_set1(float x) { return _mm512_set1_ps(x); }
DT_INLINE dt_vf vf_load(const float *p) { return _mm512_loadu_ps(p); }
DT_INLINE dt_vf vf_load_aligned(const float *p) { return _mm512_load_ps(p); }
DT_INLINE void vf_store(float *p, dt_vf v) { _mm512_storeu_ps(p, v); }
DT_INLINE void vf_store_aligned(float *p, dt_vf v) { _mm512_store_ps(p, v); }
DT_INLINE dt_vf vf_mul(dt_vf a, dt_vf b) { return _mm512_mul_ps(a, b); }
DT_INLINE dt_vf vf_add(dt_vf a, dt_vf b) { return _mm512_add_ps(a, b); }
DT_INLINE dt_vf vf_sub(dt_vf a, dt_vf b) { return _mm512_sub_ps(a, b); }
DT_INLINE dt_vf vf_div(dt_vf a, dt_vf b) { return _mm512_div_ps(a, b); }
DT_INLINE dt_vf vf_fma(dt_vf a, dt_vf b, dt_vf c) { return _mm512_fmadd_ps(a, b, c); }
DT_INLINE dt_vf vf_fnma(dt_vf a, dt_vf b, dt_vf c) { return _mm512_fnmadd_ps(a, b, c); }
DT_INLINE dt_vf vf_clamp(dt_vf x, float lo, float hi) {
    return _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(lo)), _mm512_set1_ps(hi));
}
DT_INLINE dt_vf vf_round(dt_vf x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
DT_INLINE float vf_hsum(dt_vf v) { return hsum16(v); }
DT_INLINE float vf_hmax(dt_vf v) { return hmax16(v); }
/* Lanes i < n (n in 0 .. DT_VW). */
DT_INLINE dt_vmask vm_below(int n) { return n >= 16 ? (dt_vmask)0xFFFF : (dt_vmask)((1u << n) - 1); }
/* Lanes i with lo <= base + i <= hi, for a chunk that meets [lo, hi]. */
DT_INLINE dt_vmask vm_range(int base, int lo, int hi) {
    dt_vmask m = 0xFFFF;
    if (lo > base) m &= (dt_vmask)(0xFFFFu << (lo - base));
    if (hi < base + 15) m &= (dt_vmask)(0xFFFFu >> (15 - (hi - base)));
    return m;
}
DT_INLINE dt_vf vf_maskz_load(dt_vmask m, const float *p) { return _mm512_maskz_loadu_ps(m, p); }
DT_INLINE void vf_mask_store(float *p, dt_vmask m, dt_vf v) { _mm512_mask_storeu_ps(p, m, v); }
DT_INLINE dt_vf vf_maskz(dt_vmask m, dt_vf v) { return _mm512_maskz_mov_ps(m, v); }
/* max(acc, x) in the lanes of m, acc elsewhere */
DT_INLINE dt_vf vf_mask_max(dt_vf acc, dt_vmask m, dt_vf x) { return _mm512_mask_max_ps(acc, m, acc, x); }
#else
#define DT_VW 8
typedef __m256 dt_vf;
typedef __m256i dt_vmask;
DT_INLINE dt_vf vf_zero(void) { return _mm256_setzero_ps(); }
DT_INLINE dt_vf vf_set1(float x) { return _mm256_set1_ps(x); }
DT_INLINE dt_vf vf_load(const float *p) { return _mm256_loadu_ps(p); }
DT_INLINE dt_vf vf_load_aligned(const float *p) { return _mm256_load_ps(p); }
DT_INLINE void vf_store(float *p, dt_vf v) { _mm256_storeu_ps(p, v); }
DT_INLINE void vf_store_aligned(float *p, dt_vf v) { _mm256_store_ps(p, v); }
DT_INLINE dt_vf vf_mul(dt_vf a, dt_vf b) { return _mm256_mul_ps(a, b); }
DT_INLINE dt_vf vf_add(dt_vf a, dt_vf b) { return _mm256_add_ps(a, b); }
DT_INLINE dt_vf vf_sub(dt_vf a, dt_vf b) { return _mm256_sub_ps(a, b); }
DT_INLINE dt_vf vf_div(dt_vf a, dt_vf b) { return _mm256_div_ps(a, b); }
DT_INLINE dt_vf vf_fma(dt_vf a, dt_vf b, dt_vf c) { return _mm256_fmadd_ps(a, b, c); }
DT_INLINE dt_vf vf_fnma(dt_vf a, dt_vf b, dt_vf c) { return _mm256_fnmadd_ps(a, b, c); }
DT_INLINE dt_vf vf_clamp(dt_vf x, float lo, float hi) {
    return _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
}
DT_INLINE dt_vf vf_round(dt_vf x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
DT_INLINE float vf_hsum(dt_vf v) { return hsum8(v); }
DT_INLINE float vf_hmax(dt_vf v) { return hmax8(v); }
DT_INLINE dt_vmask vm_below(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
DT_INLINE dt_vmask vm_range(int base, int lo, int hi) {
    const __m256i lane = _mm256_add_epi32(_mm256_set1_epi32(base), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_and_si256(_mm256_cmpgt_epi32(lane, _mm256_set1_epi32(lo - 1)),
                            _mm256_cmpgt_epi32(_mm256_set1_epi32(hi + 1), lane));
}
DT_INLINE dt_vf vf_maskz_load(dt_vmask m, const float *p) { return _mm256_maskload_ps(p, m); }
DT_INLINE void vf_mask_store(float *p, dt_vmask m, dt_vf v) { _mm256_maskstore_ps(p, m, v); }
DT_INLINE dt_vf vf_maskz(dt_vmask m, dt_vf v) { return _mm256_and_ps(v, _mm256_castsi256_ps(m)); }
DT_INLINE dt_vf vf_mask_max(dt_vf acc, dt_vmask m, dt_vf x) {
    return _mm256_blendv_ps(acc, _mm256_max_ps(acc, x), _mm256_castsi256_ps(m));
}
#endif

/* e^x = 2^n * p for x already clamped to [-104, 88]: n = round(x / ln 2),
 * p = e^r on r = x - n ln 2 (ln 2 in two parts) by Cephes' expf
 * polynomial (~1 ulp). The caller builds 2^n as its ISA allows. */
DT_INLINE dt_vf vf_exp_parts(dt_vf x, dt_vf *n) {
    *n = vf_round(vf_mul(x, vf_set1(1.44269504088896341f)));
    dt_vf r = vf_fnma(*n, vf_set1(0.693145751953125f), x);
    r = vf_fnma(*n, vf_set1(1.42860682030941723212e-6f), r);
    dt_vf p = vf_set1(1.9875691500e-4f);
    p = vf_fma(p, r, vf_set1(1.3981999507e-3f));
    p = vf_fma(p, r, vf_set1(8.3334519073e-3f));
    p = vf_fma(p, r, vf_set1(4.1665795894e-2f));
    p = vf_fma(p, r, vf_set1(1.6666665459e-1f));
    p = vf_fma(p, r, vf_set1(5.0000001201e-1f));
    p = vf_fma(p, vf_mul(r, r), r);
    return vf_add(p, vf_set1(1.0f));
}

#ifdef __AVX512F__
/* e^x for x <= 88; x < -104 (and -inf) gives 0 (scalef rounds 2^n * p to
 * a subnormal as ldexpf does). */
DT_INLINE __m512 vf_exp(__m512 x) {
    __m512 n;
    const __m512 p = vf_exp_parts(vf_clamp(x, -104.0f, 88.0f), &n);
    return _mm512_scalef_ps(p, n);
}
#else
/* e^x for x <= 88; x < -87.3 (and -inf) gives 0; 2^n from exponent bits. */
DT_INLINE __m256 vf_exp(__m256 x) {
    const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_GE_OQ);
    __m256 n;
    const __m256 p = vf_exp_parts(vf_clamp(x, -87.3f, 88.0f), &n);
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}
#endif

#endif
