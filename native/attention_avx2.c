/* ditto native layer: AVX2 attention (compiled with -mavx2 -mfma; used
 * only when cpu.c picks it). The tile is attention_x86.h's with 8-lane
 * vectors; this file gives its register budget and its exp.
 */
#include "x86.h"

#define SCORE_ROWS 6 /* 6 rows x 2 vectors of accumulators + keys fit 16 ymm */
#define PV_ROWS 3
#define SCORE_ACCS 8

/* e^x for x <= 88; x < -87.3 (and -inf) gives 0; 2^n from exponent bits. */
DT_INLINE __m256 vf_exp(__m256 x) {
    const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_GE_OQ);
    __m256 n;
    const __m256 p = vf_exp_parts(vf_clamp(x, -87.3f, 88.0f), &n);
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

#include "attention_x86.h"

void dt_attention_chunks_avx2(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch) {
    attention_chunks(a, c0, c1, part, scratch);
}

void dt_f16_from_f32_avx2(const float *x, uint16_t *y, int64_t n) { f16_from_f32(x, y, n); }
