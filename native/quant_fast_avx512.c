/* ditto native layer: the fast path's kernels for AVX-512 VNNI (compiled
 * with the AVX-512 flags; used only when cpu.c finds them). They compute
 * exactly the definition in quant.h (scalar reference: quant_fast.c) on
 * q16's tiles, read by quant_q16_x86.h's tile_block, so every type that
 * reader covers works here too. Per token and block: 8 vpdpbusd seeded with
 * the prepared -c * s, one cvt, one mul and one fma (two with mins), 16 rows
 * at a time with one float lane per row; the codes are unpacked once per
 * tile-block and reused by up to 8 tokens. */
#include <stddef.h>

#include "quant_q16_x86.h"

DT_INLINE void fast_tile(const uint8_t *tile, int64_t nb, const dt_xq8 *xq, int64_t ldxq, float *y, int64_t ldy,
                         __mmask16 mask, const int type, const int T) {
    __m512 acc[8];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512i u[8];
        __m512 dw, mw;
        tile_block(tile, nb, b, type, u, &dw, &mw);
        const dt_xq8 *x = xq + b;
        __m512i isum[8];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            isum[t] = tile_code_offset(type) ? _mm512_set1_epi32(x[t * ldxq].ncs) : _mm512_setzero_si512();
        /* code vector by code vector, so the tokens' chains interleave */
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) isum[t] = dpbusd_bcast4(isum[t], u[j], x[t * ldxq].xq + 4 * j);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(dw, _mm512_set1_ps(x[t * ldxq].dx)), _mm512_cvtepi32_ps(isum[t]),
                                     acc[t]);
            if (dt_q16_has_min(type)) acc[t] = _mm512_fmadd_ps(mw, _mm512_set1_ps(x[t * ldxq].sx), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_mask_storeu_ps(y + t * ldy, mask, acc[t]);
}

#define FAST(NAME, TYPE) DT_TILE_KERNEL(dt_fast_avx512_##NAME, fast_tile, dt_xq8, TYPE)
FAST(q4_0, DT_Q4_0)
FAST(q4_1, DT_Q4_1)
FAST(q5_0, DT_Q5_0)
FAST(q8_0, DT_Q8_0)
FAST(q4_K, DT_Q4_K)

/* dt_fast_prep with the same operations 16 lanes at a time, 16 blocks at a
 * time (quantize_blocks16), the per-block fields 16 at a time. */
static void store_xq8(void *out, int i, const __m512i q[2]) {
    dt_xq8 *o = (dt_xq8 *)out + i;
    _mm_storeu_si128((__m128i *)o->xq, _mm512_cvtepi32_epi8(q[0]));
    _mm_storeu_si128((__m128i *)(o->xq + 16), _mm512_cvtepi32_epi8(q[1]));
}

_Static_assert(offsetof(dt_xq8, sx) == offsetof(dt_xq8, dx) + 4 && offsetof(dt_xq8, ncs) == offsetof(dt_xq8, dx) + 8 &&
                   offsetof(dt_xq8, pad) == offsetof(dt_xq8, dx) + 12, "xq8 tail order");
void dt_fast_prep_avx512(const float *x, int64_t k, int32_t c, dt_xq8 *out) {
    const int64_t nb = k / 32;
    for (int64_t b0 = 0; b0 < nb; b0 += 16) {
        const int n = nb - b0 < 16 ? (int)(nb - b0) : 16;
        __m512 sum;
        const __m512 dv = quantize_blocks16(x + 32 * b0, n, 127.0f, store_xq8, out + b0, &sum, NULL);
        const __m512i s = _mm512_castps_si512(sum);
        const __m512 tails[4] = {dv, _mm512_mul_ps(dv, _mm512_cvtepi32_ps(s)),
                                 _mm512_castsi512_ps(_mm512_mullo_epi32(s, _mm512_set1_epi32(-c))), _mm512_setzero_ps()};
        store_block_tails((uint8_t *)&out[b0].dx, sizeof(dt_xq8), n, tails); /* dx, sx, ncs, pad */
    }
}
