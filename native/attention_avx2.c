/* ditto native layer: AVX2 attention (placeholder: the scalar reference). */
#include "attention.h"

void dt_attention_avx2(const dt_attn_tile *a, float *scratch) { dt_attention_scalar(a, scratch); }
