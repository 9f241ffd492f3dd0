/* ditto native layer: reading the repacked 16-row tiles (quant.h's q16
 * layout) in AVX-512. Internal header for the integer-activation kernels
 * that share that layout: a tile-block's codes as 8 vectors of unsigned
 * bytes (u[j]: values 4j..4j+3 of each of the 16 rows) and its per-row
 * scales as floats, every line prefetched ahead of use. */
#ifndef DITTO_QUANT_Q16_X86_H
#define DITTO_QUANT_Q16_X86_H

#include "x86.h"

/* Bytes of one tile-block's codes (16 rows x 32 values). */
DT_INLINE int64_t tile_code_bytes(int type) { return dt_q16_code_bytes(type); }

/* The constant subtracted from every unsigned code: the signed weight is
 * u - c (Q4_1 and Q4_K have a min instead). */
DT_INLINE int32_t tile_code_offset(int type) { return dt_q16_code_offset(type); }

/* acc + u . (4 activation bytes at p, broadcast to every lane): vpdpbusd
 * with an embedded {1to16} broadcast, which compilers do not fold from
 * _mm512_set1_epi32 (a separate broadcast per product costs a uop). */
DT_INLINE __m512i dpbusd_bcast4(__m512i acc, __m512i u, const int8_t *p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*(const int32_t *)p));
    return acc;
}

/* Bits of a high-bit plane moved to where they join the nibble (plane
 * shifted left by s, or right by -s, then masked): 16-bit shifts do for
 * bytes, as no bit the mask keeps crossed a byte boundary. */
DT_INLINE __m512i plane_bits(__m512i plane, const int s, __m512i mask) {
    const __m512i p = s > 0 ? _mm512_slli_epi16(plane, s) : s < 0 ? _mm512_srli_epi16(plane, -s) : plane;
    return _mm512_and_si512(p, mask);
}

/* 16 bytes at p, unsigned or signed, as floats. */
DT_INLINE __m512 u8x16_ps(const uint8_t *p) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p))); }
DT_INLINE __m512 i8x16_ps(const uint8_t *p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p))); }
DT_INLINE __m512 f16x16_ps(const uint8_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }

/* Block b of a tile (nb blocks): its 8 code vectors in u and its two
 * scales, one float lane per row: dw and mw (Q4_1: m; Q4_K: -(dmin * m);
 * others 0), or for Q6_K the scales dw0 of values 0..15 (u[0..3]) in dw and
 * dw1 of values 16..31 (u[4..7]) in mw. Every line of the stream is
 * prefetched DT_PREFETCH_BYTES ahead into L2 (x86.h): this host's hardware
 * prefetch alone leaves decode waiting on memory. */
DT_INLINE void tile_block(const uint8_t *tile, int64_t nb, int64_t b, const int type, __m512i u[8], __m512 *dw,
                          __m512 *mw) {
    const int64_t cb = tile_code_bytes(type);
    const uint8_t *codes = tile + b * cb, *scales = tile + dt_q16_scales_at(type, nb, b);
    const uint8_t *extra = tile + dt_q16_extra_at(type, nb, b);
    const int k_type = type == DT_Q4_K || type == DT_Q6_K;
#pragma GCC unroll 8
    for (int64_t l = 0; l < cb; l += 64) prefetch_ahead(codes + l);
    prefetch_ahead(scales);
    if (type == DT_Q4_1 || (k_type && b % 8 == 0)) prefetch_ahead(extra);
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
        if (type == DT_Q5_0) { /* bit g of the plane is group g's 5th bit */
            const __m512i plane = _mm512_load_si512(codes + 256), bit4 = _mm512_set1_epi8(0x10);
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) u[g] = _mm512_or_si512(u[g], plane_bits(plane, 4 - g, bit4));
        }
        if (type == DT_Q6_K) { /* bits 2(g % 4), +1 of plane g / 4 are group g's 5th and 6th */
            const __m512i planes[2] = {_mm512_load_si512(codes + 256), _mm512_load_si512(codes + 320)};
            const __m512i bits45 = _mm512_set1_epi8(0x30);
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) u[g] = _mm512_or_si512(u[g], plane_bits(planes[g / 4], 4 - 2 * (g % 4), bits45));
        }
    }
    if (type == DT_Q4_K) { /* d * sc and -(dmin) * m: exact */
        const __m512 neg = _mm512_castsi512_ps(_mm512_set1_epi32((int)0x80000000u));
        *dw = _mm512_mul_ps(u8x16_ps(scales), f16x16_ps(extra));
        *mw = _mm512_mul_ps(u8x16_ps(scales + 16), _mm512_xor_ps(f16x16_ps(extra + 32), neg));
    } else if (type == DT_Q6_K) {
        const __m512 d = f16x16_ps(extra);
        *dw = _mm512_mul_ps(i8x16_ps(scales), d);
        *mw = _mm512_mul_ps(i8x16_ps(scales + 16), d);
    } else {
        *dw = f16x16_ps(scales);
        *mw = type == DT_Q4_1 ? f16x16_ps(extra) : _mm512_setzero_ps();
    }
}

/* The activation side (the preps, quant.h's dt_block32_quantize 16 blocks
 * at a time). Lane i: block i's largest |x| (32 floats at x + 32 i) for
 * i < n, 0 past n. max_ps returns its second operand for a NaN, so NaNs do
 * not count; the maximum is exact in any order. */
DT_INLINE __m512 block_amax16(const float *x, int n) {
    const __m512 zero = _mm512_setzero_ps();
    __m512 m[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
        m[i] = i < n ? _mm512_max_ps(_mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 32 * i)), zero),
                                     _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 32 * i + 16)), zero))
                     : zero;
    return transpose_reduce16(m, vop_max);
}

/* A block's codes, values 0..15 in q[0] and 16..31 in q[1]: x / d rounded
 * to even and clamped to [-qmax, qmax] (a NaN quotient clamps to -qmax
 * first, as the reference's comparisons do); 0 when d is 0. */
DT_INLINE void block_codes(const float *x, float d, float qmax, __m512i q[2]) {
    q[0] = q[1] = _mm512_setzero_si512();
    if (d == 0.0f) return;
    const __m512 dv = _mm512_set1_ps(d), lo = _mm512_set1_ps(-qmax), hi = _mm512_set1_ps(qmax);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++)
        q[h] = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_div_ps(_mm512_loadu_ps(x + 16 * h), dv), lo), hi));
}

/* Up to 16 blocks (n) of 32 floats at x quantized as dt_block32_quantize
 * does: returns the scales (lane i: block i's d = amax / qmax), hands each
 * block's codes to store(out, i, q) and gives in lane i of *sum the sum of
 * block i's codes, of *sum0 (when not NULL) that of its first 16. The
 * maxima and sums are transposing reductions (exact in any order), the
 * scales one vector division. */
typedef void (*dt_code_store)(void *out, int i, const __m512i q[2]);
DT_INLINE __m512 quantize_blocks16(const float *x, int n, float qmax, dt_code_store store, void *out, __m512 *sum,
                                   __m512 *sum0) {
    float d[16] __attribute__((aligned(64)));
    const __m512 dv = _mm512_div_ps(block_amax16(x, n), _mm512_set1_ps(qmax));
    _mm512_store_ps(d, dv);
    __m512 sums[16], sums0[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) {
        sums[i] = sums0[i] = _mm512_setzero_ps();
        if (i >= n) continue;
        __m512i q[2];
        block_codes(x + 32 * i, d[i], qmax, q);
        store(out, i, q);
        sums0[i] = _mm512_castsi512_ps(q[0]);
        sums[i] = _mm512_castsi512_ps(_mm512_add_epi32(q[0], q[1]));
    }
    *sum = transpose_reduce16(sums, vop_add_epi32);
    if (sum0) *sum0 = transpose_reduce16(sums0, vop_add_epi32);
    return dv;
}

/* The 16 bytes after each block's codes (four 32-bit fields, lane i of f[k]
 * is field k of block i) for blocks i < n, `stride` bytes apart from
 * `tail`: a 4x4 transpose within each 128-bit lane, then one 16-byte store
 * per block (extracting 64 fields one by one took ~10 instructions a
 * block). */
DT_INLINE void store_block_tails(uint8_t *tail, int64_t stride, int n, const __m512 f[4]) {
    const __m512 t0 = _mm512_unpacklo_ps(f[0], f[1]), t1 = _mm512_unpackhi_ps(f[0], f[1]);
    const __m512 t2 = _mm512_unpacklo_ps(f[2], f[3]), t3 = _mm512_unpackhi_ps(f[2], f[3]);
    const __m512 r[4] = {
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2))),
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2))),
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3))),
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)))};
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) /* block i: lane i / 4 of r[i % 4] */
        if (i < n) _mm_storeu_ps((float *)(tail + i * stride), _mm512_extractf32x4_ps(r[i % 4], i / 4));
}

/* The exported kernel NAME on one tile type (quant.h's dt_q16_fn /
 * dt_fast_fn): lanes [lane0, lane1) as a mask, the tokens in tiles of 8 and
 * one tile of the rest, each tile size a compile-time constant of
 * TILE(tile, nb, xq, ldxq, y, ldy, mask, type, T). */
#define DT_TILE_KERNEL(NAME, TILE, XQ, TYPE)                                                            \
    void NAME(const uint8_t *tile, int64_t nb, const XQ *xq, int64_t ldxq, int64_t n_tok, float *y,    \
              int64_t ldy, int lane0, int lane1) {                                                      \
        const __mmask16 mask = (__mmask16)(((1u << lane1) - 1) & ~((1u << lane0) - 1));                 \
        for (int64_t t0 = 0; t0 < n_tok; t0 += 8) {                                                     \
            const XQ *x = xq + t0 * ldxq;                                                               \
            float *yt = y + t0 * ldy;                                                                   \
            switch (n_tok - t0 < 8 ? n_tok - t0 : 8) {                                                  \
            case 1: TILE(tile, nb, x, ldxq, yt, ldy, mask, TYPE, 1); break;                             \
            case 2: TILE(tile, nb, x, ldxq, yt, ldy, mask, TYPE, 2); break;                             \
            case 3: TILE(tile, nb, x, ldxq, yt, ldy, mask, TYPE, 3); break;                             \
            case 4: TILE(tile, nb, x, ldxq, yt, ldy, mask, TYPE, 4); break;                             \
            case 5: TILE(tile, nb, x, ldxq, yt, ldy, mask, TYPE, 5); break;                             \
            case 6: TILE(tile, nb, x, ldxq, yt, ldy, mask, TYPE, 6); break;                             \
            case 7: TILE(tile, nb, x, ldxq, yt, ldy, mask, TYPE, 7); break;                             \
            default: TILE(tile, nb, x, ldxq, yt, ldy, mask, TYPE, 8); break;                            \
            }                                                                                           \
        }                                                                                               \
    }

#endif
