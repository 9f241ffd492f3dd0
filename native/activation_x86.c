/* ditto native layer: the gated FFN's activation for AVX2 / AVX-512 (one
 * source, built once per ISA), the scalar reference's operations DT_VW
 * lanes at a time; the tail runs masked. */
#include "activation.h"
#include "quant_x86_store.h" /* DT_X86_NAME */

DT_INLINE dt_vf silu(dt_vf g) { return vf_div(g, vf_add(vf_set1(1.0f), vf_exp(vf_sub(vf_zero(), g)))); }

DT_INLINE dt_vf gelu(dt_vf g) {
    const dt_vf y = vf_mul(vf_fma(vf_mul(g, g), vf_set1(0.044715f), vf_set1(1.0f)), g);
    return vf_div(g, vf_add(vf_set1(1.0f), vf_exp(vf_mul(y, vf_set1(DT_GELU_K)))));
}

#define GATED(NAME, ACT)                                                                      \
    void DT_X86_NAME(NAME)(const float *g, const float *u, float *h, int64_t n) {             \
        int64_t i = 0;                                                                        \
        for (; i + DT_VW <= n; i += DT_VW) vf_store(h + i, vf_mul(ACT(vf_load(g + i)), vf_load(u + i))); \
        if (i < n) {                                                                          \
            const dt_vmask m = vm_below((int)(n - i));                                        \
            vf_mask_store(h + i, m, vf_mul(ACT(vf_maskz_load(m, g + i)), vf_maskz_load(m, u + i))); \
        }                                                                                     \
    }
GATED(dt_silu_mul, silu)
GATED(dt_gelu_mul, gelu)
