/* placeholder: scalar kernels until the avx512 paths land */
#include "quant.h"
const dt_kernels dt_kernels_avx512 = {
    .name = "avx512",
    .dequant = {
        [DT_F32] = dt_dequant_f32_ref, [DT_F16] = dt_dequant_f16_ref, [DT_BF16] = dt_dequant_bf16_ref,
        [DT_Q4_0] = dt_dequant_q4_0_ref, [DT_Q4_1] = dt_dequant_q4_1_ref, [DT_Q8_0] = dt_dequant_q8_0_ref,
        [DT_Q4_K] = dt_dequant_q4_K_ref, [DT_Q5_K] = dt_dequant_q5_K_ref, [DT_Q6_K] = dt_dequant_q6_K_ref,
    },
    .dot = dt_dot_f32_ref,
    .gemm = dt_gemm_ref,
};
