/* ditto native layer: reading the repacked 16-row tiles (quant.h's q16
 * layout) in AVX-512. Internal header for the integer-activation kernels
 * that share that layout: a tile-block's codes as 8 vectors of unsigned
 * bytes (u[j]: values 4j..4j+3 of each of the 16 rows) and its per-row
 * scales as floats, every line prefetched ahead of use. */
#ifndef DITTO_QUANT_Q16_X86_H
#define DITTO_QUANT_Q16_X86_H

#include "x86.h"

/* Bytes of one tile-block's codes (16 rows x 32 values). */
DT_INLINE int64_t tile_code_bytes(int type) { return type == DT_Q8_0 ? 512 : 256; }

/* The constant subtracted from every unsigned code: the signed weight is
 * u - c (Q4_1 has a min instead). */
DT_INLINE int32_t tile_code_offset(int type) { return dt_q16_code_offset(type); }

/* acc + u . (4 activation bytes at p, broadcast to every lane): vpdpbusd
 * with an embedded {1to16} broadcast, which compilers do not fold from
 * _mm512_set1_epi32 (a separate broadcast per product costs a uop). */
DT_INLINE __m512i dpbusd_bcast4(__m512i acc, __m512i u, const int8_t *p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*(const int32_t *)p));
    return acc;
}

/* Block b of a tile (nb blocks): its 8 code vectors in u, its scales in dw
 * and (Q4_1) mins in mw, one float lane per row. Every line of the stream
 * is prefetched DT_PREFETCH_BYTES ahead into L2 (x86.h): this host's
 * hardware prefetch alone leaves decode waiting on memory. */
DT_INLINE void tile_block(const uint8_t *tile, int64_t nb, int64_t b, const int type, __m512i u[8], __m512 *dw,
                          __m512 *mw) {
    const int64_t cb = tile_code_bytes(type);
    const uint8_t *codes = tile + b * cb, *dws = tile + nb * cb + b * 32, *mws = dws + nb * 32;
#pragma GCC unroll 8
    for (int64_t l = 0; l < cb; l += 64) prefetch_ahead(codes + l);
    prefetch_ahead(dws);
    if (type == DT_Q4_1) prefetch_ahead(mws);
    if (type == DT_Q8_0) {
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) u[j] = _mm512_load_si512(codes + 64 * j);
    } else {
        const __m512i lo4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m512i v = _mm512_load_si512(codes + 64 * j);
            u[j] = _mm512_and_si512(v, lo4);
            u[j + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
        }
    }
    *dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)dws));
    *mw = type == DT_Q4_1 ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)mws)) : _mm512_setzero_ps();
}

#endif
