/* ditto native layer: AVX-512 kernels (compiled with -mavx512f/bw/vl/dq,
 * -mfma, -mf16c; used only when cpu.c finds them).
 *
 * Dequantizers give the scalar reference's floats bit for bit; the K-quant
 * ones, the tile kernel and dot() are quant_x86.h's with 16-lane vectors.
 * Every gemm output is one tile accumulator with exactly the operations of
 * dot(), so it never depends on the tile shape, the batch or the row range.
 */
#include "quant_x86.h"

/* ---- dequantization ------------------------------------------------------ */

static void dequant_f16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 2 * i))));
    if (i < n) dt_dequant_f16_ref(p + 2 * i, dst + i, n - i);
}

static void dequant_bf16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p + 2 * i)));
        _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
    }
    if (i < n) dt_dequant_bf16_ref(p + 2 * i, dst + i, n - i);
}

static void dequant_q4_0(const void *src, float *dst, int64_t nb) {
    const block_q4_0 *b = src;
    const __m128i lo4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        const __m512 d = _mm512_set1_ps(h2f(b[i].d));
        const __m128i q = _mm_loadu_si128((const __m128i *)b[i].qs);
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, lo4), eight);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), lo4), eight);
        _mm512_storeu_ps(dst, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo))));
        _mm512_storeu_ps(dst + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi))));
    }
}

static void dequant_q4_1(const void *src, float *dst, int64_t nb) {
    const block_q4_1 *b = src;
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        const __m512 d = _mm512_set1_ps(h2f(b[i].d));
        const __m512 m = _mm512_set1_ps(h2f(b[i].m));
        const __m128i q = _mm_loadu_si128((const __m128i *)b[i].qs);
        const __m512 lo = u8x16_to_ps(_mm_and_si128(q, lo4));
        const __m512 hi = u8x16_to_ps(_mm_and_si128(_mm_srli_epi16(q, 4), lo4));
        _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_mul_ps(d, lo), m));
        _mm512_storeu_ps(dst + 16, _mm512_add_ps(_mm512_mul_ps(d, hi), m));
    }
}

static void dequant_q5_0(const void *src, float *dst, int64_t nb) {
    const block_q5_0 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        const __m512 d = _mm512_set1_ps(h2f(b[i].d));
        _mm512_storeu_ps(dst, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q5_0_values(&b[i], 0)))));
        _mm512_storeu_ps(dst + 16, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q5_0_values(&b[i], 1)))));
    }
}

static void dequant_q8_0(const void *src, float *dst, int64_t nb) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        const __m512 d = _mm512_set1_ps(h2f(b[i].d));
        const __m128i q0 = _mm_loadu_si128((const __m128i *)b[i].qs);
        const __m128i q1 = _mm_loadu_si128((const __m128i *)(b[i].qs + 16));
        _mm512_storeu_ps(dst, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), d));
        _mm512_storeu_ps(dst + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), d));
    }
}

/* ---- gemm: tiles of the ISA's shapes ------------------------------------ */
TILE(1, 2) TILE(1, 3) TILE(1, 4) TILE(1, 5) TILE(1, 6)
TILE(2, 1) TILE(2, 2) TILE(2, 3) TILE(2, 4) TILE(2, 5) TILE(2, 6)
TILE(3, 1) TILE(3, 2) TILE(3, 3) TILE(3, 4) TILE(3, 5) TILE(3, 6)
TILE(4, 1) TILE(4, 2) TILE(4, 3) TILE(4, 4) TILE(4, 5) TILE(4, 6)
TILE(8, 1) TILE(8, 2) TILE(8, 3)
/* tiles[R-1][T-1] for R <= 4, T <= 6 */
static const tile_fn tiles[4][6] = {
    {tile_1x1, tile_1x2, tile_1x3, tile_1x4, tile_1x5, tile_1x6},
    {tile_2x1, tile_2x2, tile_2x3, tile_2x4, tile_2x5, tile_2x6},
    {tile_3x1, tile_3x2, tile_3x3, tile_3x4, tile_3x5, tile_3x6},
    {tile_4x1, tile_4x2, tile_4x3, tile_4x4, tile_4x5, tile_4x6},
};
static const tile_fn tiles8[3] = {tile_8x1, tile_8x2, tile_8x3};

/* Tokens in tiles of 6; few tokens use 8-row tiles so enough fma chains
 * are in flight. Short rows: token tile outer, its x rows stay in L1 across
 * the panel. Long rows (the x tile would not fit in L1): row group outer,
 * its 4 rows stay in L1 while the tokens stream past. */
static void gemm(const float *w, int64_t ldw, int64_t n_rows, const float *x, int64_t ldx,
                 int64_t n_tok, float *y, int64_t ldy, int64_t k) {
    if (k > 768 && n_tok > 6) {
        for (int64_t r0 = 0; r0 < n_rows; r0 += 4) {
            const int nr = n_rows - r0 < 4 ? (int)(n_rows - r0) : 4;
            for (int64_t t0 = 0; t0 < n_tok; t0 += 6) {
                const int nt = n_tok - t0 < 6 ? (int)(n_tok - t0) : 6;
                tiles[nr - 1][nt - 1](w + r0 * ldw, ldw, x + t0 * ldx, ldx, y + t0 * ldy + r0, ldy, k);
            }
        }
        return;
    }
    for (int64_t t0 = 0; t0 < n_tok; t0 += 6) {
        const int nt = n_tok - t0 < 6 ? (int)(n_tok - t0) : 6;
        const float *xt = x + t0 * ldx;
        float *yt = y + t0 * ldy;
        int64_t r0 = 0;
        if (nt <= 3)
            for (; r0 + 8 <= n_rows; r0 += 8) tiles8[nt - 1](w + r0 * ldw, ldw, xt, ldx, yt + r0, ldy, k);
        for (; r0 < n_rows; r0 += 4) {
            const int nr = n_rows - r0 < 4 ? (int)(n_rows - r0) : 4;
            tiles[nr - 1][nt - 1](w + r0 * ldw, ldw, xt, ldx, yt + r0, ldy, k);
        }
    }
}

/* ---- fused dequant + dot for a few tokens ---------------------------------- */
/* Decode reads each weight once per token, so the per-block work has to be
 * small. The f16 scales of a chunk of blocks are converted once per row
 * (one gather, one vcvtph2ps for 8 or 16 blocks) into a small f32 buffer, so
 * a block's scale is a broadcast load. A Q4 block is then dequantized by
 * table lookup: T[j] = d*j + m (one fma; d*j is exact, so it rounds as the
 * reference's multiply-then-add) and vpermps(nibble, T) gives 16 weights in
 * one instruction (vpermps reads only the low 4 bits of each index lane, so
 * the high nibble needs a shift but no mask). The weights are the
 * dequantizers' floats bit for bit and feed the fma chains of gemm() in the
 * same order, so outputs equal dequant + gemm exactly. */
#define FUSED_CHUNK 32 /* blocks whose scales are converted at once */

/* One 32-value block (scales already converted) as two vectors of weights,
 * the same floats as dequant_*. */
static inline __attribute__((always_inline)) void block32_fast(const uint8_t *p, const float *sc, int type,
                                                               int high, __m512 *v0, __m512 *v1) {
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    if (type == DT_Q4_1) {
        const __m512 t = _mm512_fmadd_ps(iota, _mm512_set1_ps(sc[0]), _mm512_set1_ps(sc[1]));
        const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 4)));
        *v0 = _mm512_permutexvar_ps(q, t);
        *v1 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), t);
    } else if (type == DT_Q4_0) {
        const __m512 iota8 = _mm512_sub_ps(iota, _mm512_set1_ps(8.0f));
        const __m512 t = _mm512_mul_ps(_mm512_set1_ps(sc[0]), iota8);
        const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 2)));
        *v0 = _mm512_permutexvar_ps(q, t);
        *v1 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), t);
    } else if (type == DT_Q4_K) {
        /* a sub-block of 32: 32 bytes, their low (even sub-block) or high
         * nibbles; x = d1 * q - m1 */
        const __m512 t = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(sc[0]), iota), _mm512_set1_ps(sc[1]));
        __m512i q0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
        __m512i q1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 16)));
        if (high) q0 = _mm512_srli_epi32(q0, 4), q1 = _mm512_srli_epi32(q1, 4);
        *v0 = _mm512_permutexvar_ps(q0, t);
        *v1 = _mm512_permutexvar_ps(q1, t);
    } else if (type == DT_Q5_0 || type == DT_Q5_1) {
        /* 32-entry table in two vectors, indexed by the 5-bit value: the low
         * nibble from qs, the fifth bit from qh (bit v for value v). */
        const int qh_at = type == DT_Q5_0 ? 2 : 4; /* after d (and m) */
        const __m512 j1 = _mm512_add_ps(iota, _mm512_set1_ps(16.0f));
        __m512 t0, t1;
        if (type == DT_Q5_0) { /* d * (q - 16) */
            t0 = _mm512_mul_ps(_mm512_set1_ps(sc[0]), _mm512_sub_ps(iota, _mm512_set1_ps(16.0f)));
            t1 = _mm512_mul_ps(_mm512_set1_ps(sc[0]), iota);
        } else {               /* d * q + m, d * q exact as for Q4_1 */
            t0 = _mm512_fmadd_ps(iota, _mm512_set1_ps(sc[0]), _mm512_set1_ps(sc[1]));
            t1 = _mm512_fmadd_ps(j1, _mm512_set1_ps(sc[0]), _mm512_set1_ps(sc[1]));
        }
        uint32_t qh;
        memcpy(&qh, p + qh_at, sizeof qh);
        const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + qh_at + 4)));
        const __m512i fifth = _mm512_set1_epi32(16);
        const __m512i lo = _mm512_and_si512(q, _mm512_set1_epi32(0xF)), hi = _mm512_srli_epi32(q, 4);
        *v0 = _mm512_permutex2var_ps(t0, _mm512_mask_or_epi32(lo, (__mmask16)qh, lo, fifth), t1);
        *v1 = _mm512_permutex2var_ps(t0, _mm512_mask_or_epi32(hi, (__mmask16)(qh >> 16), hi, fifth), t1);
    } else { /* DT_Q8_0 */
        const __m512 d = _mm512_set1_ps(sc[0]);
        *v0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 2)))), d);
        *v1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 18)))), d);
    }
}

/* (d1, m1) of the nb sub-blocks of 32 from the super-block at p on, as the
 * Q4_K reference computes them: d * sc, dmin * m. */
static inline __attribute__((always_inline)) void scales_q4_K(const uint8_t *p, int64_t ts, int64_t nb, float *dm) {
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = p + (b / 8) * ts;
        uint8_t sc, m;
        dt_scale_min_k4((int)(b % 8), blk + 4, &sc, &m);
        dm[2 * b] = h2f(dt_load_f16(blk)) * sc;
        dm[2 * b + 1] = h2f(dt_load_f16(blk + 2)) * m;
    }
}

/* Where sub-block ib of a row starts: Q4_K's 32 values live in the nibbles
 * of 32 bytes shared with its neighbour (after the super-block's 16-byte
 * header); every other type's block is ts bytes of its own. */
static inline __attribute__((always_inline)) const uint8_t *block_at(const uint8_t *row, int64_t ib, int type,
                                                                     int ts) {
    if (type == DT_Q4_K) return row + (ib / 8) * ts + 16 + 32 * ((ib % 8) / 2);
    return row + ib * ts;
}

static inline __attribute__((always_inline)) void fused_tile(const uint8_t *w, int64_t rb, const float *x,
                                                             int64_t ldx, float *y, int64_t ldy, int64_t k,
                                                             const int type, const int ts, const int R,
                                                             const int T) {
    const int per = type == DT_Q4_1 || type == DT_Q5_1 || type == DT_Q4_K ? 2 : 1; /* scale floats per block */
    float sc[4][2 * FUSED_CHUNK + 4] __attribute__((aligned(64))); /* + the zeros of scales_* */
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    const int64_t nb = k / 32;
    for (int64_t c0 = 0; c0 < nb; c0 += FUSED_CHUNK) {
        const int64_t nc = nb - c0 < FUSED_CHUNK ? nb - c0 : FUSED_CHUNK;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            if (type == DT_Q4_K) scales_q4_K(w + r * rb + c0 / 8 * ts, ts, nc, sc[r]); /* c0: whole super-blocks */
            else if (per == 2) scales_pair(w + r * rb + c0 * ts, ts, nc, sc[r]);
            else scales_one(w + r * rb + c0 * ts, ts, nc, sc[r]);
        }
        for (int64_t b = 0; b < nc; b++) {
            const int64_t ib = c0 + b, i = 32 * ib;
            __m512 w0[4], w1[4];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const uint8_t *p = block_at(w + r * rb, ib, type, ts);
                prefetch_ahead(p);
                block32_fast(p, sc[r] + per * b, type, (int)(ib & 1), &w0[r], &w1[r]);
            }
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                const __m512 x0 = _mm512_loadu_ps(x + t * ldx + i), x1 = _mm512_loadu_ps(x + t * ldx + i + 16);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(w0[r], x0, acc[r][t]);
#pragma GCC unroll 4
                for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(w1[r], x1, acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[t * ldy + r] = hsum16(acc[r][t]);
}

#define FUSED_T(NAME, TYPE, TS, R)                                                                        \
    static void fused_##NAME##_r##R(const uint8_t *p, int64_t rb, const float *x, int64_t ldx,           \
                                    int64_t n_tok, float *y, int64_t ldy, int64_t k) {                  \
        switch (n_tok) {                                                                                  \
        case 1: fused_tile(p, rb, x, ldx, y, ldy, k, TYPE, TS, R, 1); break;                              \
        case 2: fused_tile(p, rb, x, ldx, y, ldy, k, TYPE, TS, R, 2); break;                              \
        case 3: fused_tile(p, rb, x, ldx, y, ldy, k, TYPE, TS, R, 3); break;                              \
        default: fused_tile(p, rb, x, ldx, y, ldy, k, TYPE, TS, R, 4); break;                             \
        }                                                                                                 \
    }
#define FUSED(NAME, TYPE, TS)                                                                          \
    FUSED_T(NAME, TYPE, TS, 1) FUSED_T(NAME, TYPE, TS, 2) FUSED_T(NAME, TYPE, TS, 3)                   \
    FUSED_T(NAME, TYPE, TS, 4)                                                                         \
    static void fused_##NAME(const void *w, int64_t rb, int64_t n_rows, const float *x, int64_t ldx, \
                             int64_t n_tok, float *y, int64_t ldy, int64_t k) {                       \
        const uint8_t *p = w;                                                                          \
        for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {                                                    \
            const int64_t nt = n_tok - t0 < 4 ? n_tok - t0 : 4;                                        \
            const float *xt = x + t0 * ldx;                                                            \
            float *yt = y + t0 * ldy;                                                                  \
            int64_t r = 0;                                                                             \
            for (; r + 4 <= n_rows; r += 4) fused_##NAME##_r4(p + r * rb, rb, xt, ldx, nt, yt + r, ldy, k); \
            switch (n_rows - r) {                                                                      \
            case 1: fused_##NAME##_r1(p + r * rb, rb, xt, ldx, nt, yt + r, ldy, k); break;             \
            case 2: fused_##NAME##_r2(p + r * rb, rb, xt, ldx, nt, yt + r, ldy, k); break;             \
            case 3: fused_##NAME##_r3(p + r * rb, rb, xt, ldx, nt, yt + r, ldy, k); break;             \
            default: break;                                                                            \
            }                                                                                          \
        }                                                                                              \
    }
FUSED(q4_0, DT_Q4_0, 18)
FUSED(q4_1, DT_Q4_1, 20)
FUSED(q8_0, DT_Q8_0, 34)
FUSED(q5_0, DT_Q5_0, 22)
FUSED(q5_1, DT_Q5_1, 24)
FUSED(q4_K, DT_Q4_K, 144)

const dt_kernels dt_kernels_avx512 = {
    .name = "avx512",
    .dequant = DT_X86_DEQUANT,
    .dot = dot,
    .gemm = gemm,
    .fused = {[DT_Q4_0] = fused_q4_0, [DT_Q4_1] = fused_q4_1, [DT_Q8_0] = fused_q8_0,
              [DT_Q5_0] = fused_q5_0, [DT_Q5_1] = fused_q5_1, [DT_Q4_K] = fused_q4_K},
    .fused_max_tok = 4,
    .fast = DT_FAST_TABLE(avx512),
    .q16 = DT_Q16_TABLE(avx512),
    .q16_prep = dt_q16_prep_avx512,
    .fast_prep = dt_fast_prep_avx512,
};
