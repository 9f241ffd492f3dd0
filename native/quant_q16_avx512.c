/* ditto native layer: q16 tile kernels for AVX-512 VNNI (compiled with the
 * AVX-512 flags; used only when cpu.c finds them). They compute exactly the
 * definition in quant.h (scalar reference: quant_q16.c). A tile-block's
 * codes are 16 rows x 4 values per 64-byte vector, so one vpdpbusd with 4
 * activation bytes broadcast to every lane does 64 multiply-adds for all 16
 * rows; the codes are unpacked once per block (quant_q16_x86.h) and reused
 * by up to 8 tokens.
 * Per token and block: 16 vpdpbusd (xh and xl parts, each in two chains),
 * a shift and adds, one cvt, one mul and one fma (two for Q4_1 and Q4_K;
 * Q6_K keeps its two 16-value halves apart: two cvt, mul and fma), 16 rows
 * at a time with one float lane per row. */
#include <stddef.h>

#include "quant_q16_x86.h"

DT_INLINE void q16_tile(const uint8_t *tile, int64_t nb, const dt_xq16 *xq, int64_t ldxq, float *y, int64_t ldy,
                        __mmask16 mask, const int type, const int T) {
    const int32_t c = tile_code_offset(type);
    __m512 acc[8];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512i u[8];
        __m512 dw, mw;
        tile_block(tile, nb, b, type, u, &dw, &mw);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const dt_xq16 *x = xq + t * ldxq + b;
            /* chains 0 over values 0..15 (u[0..3]), 1 over 16..31: Q6_K's two sums */
            const int32_t c0 = type == DT_Q6_K ? c * x->s0 : c * x->s, c1 = type == DT_Q6_K ? c * (x->s - x->s0) : 0;
            __m512i h0 = _mm512_setzero_si512(), h1 = _mm512_setzero_si512();
            __m512i l0 = _mm512_set1_epi32(-c0), l1 = _mm512_set1_epi32(-c1);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                h0 = dpbusd_bcast4(h0, u[j], x->xh + 4 * j);
                h1 = dpbusd_bcast4(h1, u[j + 4], x->xh + 4 * j + 16);
                l0 = dpbusd_bcast4(l0, u[j], x->xl + 4 * j);
                l1 = dpbusd_bcast4(l1, u[j + 4], x->xl + 4 * j + 16);
            }
            const __m512 dx = _mm512_set1_ps(x->dx);
            if (type == DT_Q6_K) {
                const __m512i isum0 = _mm512_add_epi32(_mm512_slli_epi32(h0, 8), l0);
                const __m512i isum1 = _mm512_add_epi32(_mm512_slli_epi32(h1, 8), l1);
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(isum0), acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(mw, dx), _mm512_cvtepi32_ps(isum1), acc[t]);
                continue;
            }
            const __m512i isum =
                _mm512_add_epi32(_mm512_slli_epi32(_mm512_add_epi32(h0, h1), 8), _mm512_add_epi32(l0, l1));
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(isum), acc[t]);
            if (type == DT_Q4_1 || type == DT_Q4_K) acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(x->sx), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(y + t * ldy, mask, acc[t]);
}

#define Q16(NAME, TYPE) DT_TILE_KERNEL(dt_q16_avx512_##NAME, q16_tile, dt_xq16, TYPE)
Q16(q4_0, DT_Q4_0)
Q16(q4_1, DT_Q4_1)
Q16(q5_0, DT_Q5_0)
Q16(q8_0, DT_Q8_0)
Q16(q4_K, DT_Q4_K)
Q16(q6_K, DT_Q6_K)

/* dt_q16_prep with the same operations 16 lanes at a time, 16 blocks at a
 * time (quantize_blocks16), the per-block fields 16 at a time. The clamp
 * keeps cvtps2dq's round-to-even within [-32639, 32639]. */
static void store_xq16(void *out, int i, const __m512i q[2]) {
    dt_xq16 *o = (dt_xq16 *)out + i;
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m512i l = _mm512_srai_epi32(_mm512_slli_epi32(q[h], 24), 24);
        _mm_storeu_si128((__m128i *)(o->xl + 16 * h), _mm512_cvtepi32_epi8(l));
        _mm_storeu_si128((__m128i *)(o->xh + 16 * h), _mm512_cvtepi32_epi8(_mm512_srai_epi32(_mm512_sub_epi32(q[h], l), 8)));
    }
}

_Static_assert(offsetof(dt_xq16, sx) == offsetof(dt_xq16, dx) + 4 && offsetof(dt_xq16, s) == offsetof(dt_xq16, dx) + 8 &&
                   offsetof(dt_xq16, s0) == offsetof(dt_xq16, dx) + 12, "xq16 tail order");
void dt_q16_prep_avx512(const float *x, int64_t k, dt_xq16 *out) {
    const int64_t nb = k / 32;
    for (int64_t b0 = 0; b0 < nb; b0 += 16) {
        const int n = nb - b0 < 16 ? (int)(nb - b0) : 16;
        __m512 s, s0;
        const __m512 dv = quantize_blocks16(x + 32 * b0, n, 32639.0f, store_xq16, out + b0, &s, &s0);
        const __m512 tails[4] = {dv, _mm512_mul_ps(dv, _mm512_cvtepi32_ps(_mm512_castps_si512(s))), s, s0};
        store_block_tails((uint8_t *)&out[b0].dx, sizeof(dt_xq16), n, tails); /* dx, sx, s, s0 */
    }
}
