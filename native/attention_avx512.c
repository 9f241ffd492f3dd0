/* ditto native layer: AVX-512 attention (compiled with -mavx512f/bw/vl/dq;
 * used only when cpu.c picks it). The tile is attention_x86.h's with
 * 16-lane vectors; this file gives its register budget (its exp is x86.h's).
 */
#include "x86.h"

#define SCORE_ROWS 8 /* rows per score chunk */
#define PV_ROWS 6    /* rows per value chunk */
#define SCORE_ACCS 12 /* 8 -> 12: a decode tile's 3 rows score 4 blocks a call, 6% faster */

#include "attention_x86.h"

#ifdef __AVX512BF16__ /* built a second time as attention_avx512bf16.c */
void dt_attention_chunks_avx512bf16(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch) {
    attention_chunks(a, c0, c1, part, scratch);
}
#else
void dt_attention_chunks_avx512(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch) {
    attention_chunks(a, c0, c1, part, scratch);
}

void dt_attention_combine_avx512(const dt_attn_tile *a, const float *part) { dt_attn_combine(a, part); }

void dt_f16_from_f32_avx512(const float *x, uint16_t *y, int64_t n) { f16_from_f32(x, y, n); }

void dt_bf16_from_f32_avx512(const float *x, uint16_t *y, int64_t n) { bf16_from_f32(x, y, n); }
#endif
