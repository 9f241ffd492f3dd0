/* ditto native layer: AVX2 attention (compiled with -mavx2 -mfma; used
 * only when cpu.c picks it). The tile is attention_x86.h's with 8-lane
 * vectors; this file gives its register budget (its exp is x86.h's).
 */
#include "x86.h"

#define SCORE_ROWS 6 /* 6 rows x 2 vectors of accumulators + keys fit 16 ymm */
#define PV_ROWS 3
#define SCORE_ACCS 8

#include "attention_x86.h"

void dt_attention_chunks_avx2(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch) {
    attention_chunks(a, c0, c1, part, scratch);
}

void dt_attention_combine_avx2(const dt_attn_tile *a, const float *part) { dt_attn_combine(a, part); }

void dt_f16_from_f32_avx2(const float *x, uint16_t *y, int64_t n) { f16_from_f32(x, y, n); }

void dt_bf16_from_f32_avx2(const float *x, uint16_t *y, int64_t n) { bf16_from_f32(x, y, n); }
