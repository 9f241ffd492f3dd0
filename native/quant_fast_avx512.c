/* ditto native layer: fast-path kernels for AVX-512 VNNI (compiled with the
 * AVX-512 flags; used only when cpu.c finds them). They compute exactly the
 * lane-wise definition of quant.h (the scalar reference is quant_fast.c):
 * a pair of blocks is one zmm of 64 bytes, vpdpbusd gives each lane's
 * integer sum, then one cvt and one or two fma per lane and pair.
 *
 * Per (row group, pair): Q4 nibbles are put in pair order by two 16-byte
 * loads, one 256-bit broadcast and a masked 16-bit shift; Q8_0 weights are two 32-byte
 * loads. vpdpbusd multiplies unsigned weights (Q8_0's flipped to q + 128 by
 * one xor) with signed activations, and its accumulator starts at the
 * token's per-lane offset term (xoff), so the integer sums need no
 * correction afterwards. A pair's f16 scales are converted together by one
 * vcvtph2ps and spread to their lanes by one permute each (a separate pass
 * over a row's scales cost more than it saved on the short rows of
 * decode), and the rows ahead are prefetched (x86.h). */
#include "x86.h"

/* The f16 scales of a pair's blocks at p (ts bytes apart) as floats:
 * (d0, m0, d1, m1) for Q4_1, (d0, d1, 0, 0) otherwise; zeros for a missing
 * second block. */
static inline __attribute__((always_inline)) __m128 pair_scales(const uint8_t *p, int ts, int type, int full) {
    if (type == DT_Q4_1) {
        uint32_t a, c = 0;
        memcpy(&a, p, sizeof a);
        if (full) memcpy(&c, p + ts, sizeof c);
        return _mm_cvtph_ps(_mm_insert_epi32(_mm_cvtsi32_si128((int)a), (int)c, 1));
    }
    const uint32_t a = dt_load_f16(p), c = full ? dt_load_f16(p + ts) : 0;
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)(a | c << 16)));
}

static inline __attribute__((always_inline)) void fast_tile(const uint8_t *w, int64_t rb, const dt_xpair *xp,
                                                            int64_t ldxp, float *y, int64_t ldy, int64_t k,
                                                            const int type, const int ts, const int R,
                                                            const int T) {
    const int qoff = type == DT_Q4_1 ? 4 : 2; /* offset of the quants in a block */
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm512_setzero_ps();
    const __m512i lo4 = _mm512_set1_epi8(0x0F), k80 = _mm512_set1_epi8((char)0x80);
    /* index into pair_scales per lane: Q4 lanes 0-3, 8-11 = block 0 of the pair; Q8_0 lanes 0-7 */
    const __m512i sel_d = type == DT_Q4_1   ? _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 0, 0, 0, 0, 2, 2, 2, 2)
                          : type == DT_Q4_0 ? _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1)
                                            : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i sel_m = _mm512_setr_epi32(1, 1, 1, 1, 3, 3, 3, 3, 1, 1, 1, 1, 3, 3, 3, 3);
    const int64_t nb = k / 32;
    for (int64_t b = 0; b < nb; b += 2) {
        const int full = b + 1 < nb;
        const int64_t pr = b / 2;
        __m512i wq[4];
        __m512 dw[4], mw[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *p = w + r * rb + b * ts;
            prefetch_ahead(p);
            if (2 * ts > 64) prefetch_ahead(p + 64); /* a Q8_0 pair spans more than a line */
            const __m512 s = _mm512_castps128_ps512(pair_scales(p, ts, type, full));
            dw[r] = _mm512_permutexvar_ps(sel_d, s);
            if (type == DT_Q4_1) mw[r] = _mm512_permutexvar_ps(sel_m, s);
            if (type == DT_Q8_0) {
                const __m256i w1 = full ? _mm256_loadu_si256((const __m256i *)(p + ts + 2)) : _mm256_setzero_si256();
                wq[r] = _mm512_xor_si512(
                    _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2))), w1, 1), k80);
            } else {
                const __m128i q1 = full ? _mm_loadu_si128((const __m128i *)(p + ts + qoff)) : _mm_setzero_si128();
                const __m256i q01 = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + qoff))), q1, 1);
                const __m512i raw = _mm512_broadcast_i64x4(q01);
                wq[r] = _mm512_and_si512(_mm512_mask_srli_epi16(raw, 0xFFFF0000u, raw, 4), lo4);
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const dt_xpair *xt = xp + t * ldxp + pr;
            const __m512i xq = _mm512_load_si512(xt->xq);
            const __m512i off = type == DT_Q4_1 ? _mm512_setzero_si512() : _mm512_load_si512(xt->xoff);
            const __m512 dx = _mm512_load_ps(xt->dx);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const __m512i is = _mm512_dpbusd_epi32(off, wq[r], xq);
                acc[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(dw[r], dx), _mm512_cvtepi32_ps(is), acc[r][t]);
                if (type == DT_Q4_1) acc[r][t] = _mm512_fmadd_ps(mw[r], _mm512_load_ps(xt->sx), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const __m512 v = acc[r][t];
            __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
            __m128 c = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            c = _mm_add_ps(c, _mm_movehl_ps(c, c));
            c = _mm_add_ss(c, _mm_movehdup_ps(c));
            y[t * ldy + r] = _mm_cvtss_f32(c);
        }
}

#define FAST_T(NAME, TYPE, TS, R)                                                                         \
    static void fast_##NAME##_r##R(const uint8_t *p, int64_t rb, const dt_xpair *xp, int64_t ldxp,       \
                                   int64_t n_tok, float *y, int64_t ldy, int64_t k) {                   \
        switch (n_tok) {                                                                                  \
        case 1: fast_tile(p, rb, xp, ldxp, y, ldy, k, TYPE, TS, R, 1); break;                             \
        case 2: fast_tile(p, rb, xp, ldxp, y, ldy, k, TYPE, TS, R, 2); break;                             \
        case 3: fast_tile(p, rb, xp, ldxp, y, ldy, k, TYPE, TS, R, 3); break;                             \
        default: fast_tile(p, rb, xp, ldxp, y, ldy, k, TYPE, TS, R, 4); break;                            \
        }                                                                                                 \
    }
#define FAST(NAME, TYPE, TS)                                                                              \
    FAST_T(NAME, TYPE, TS, 1) FAST_T(NAME, TYPE, TS, 2) FAST_T(NAME, TYPE, TS, 3) FAST_T(NAME, TYPE, TS, 4) \
    void dt_fast_avx512_##NAME(const void *w, int64_t rb, int64_t n_rows, const dt_xpair *xp, int64_t ldxp, \
                               int64_t n_tok, float *y, int64_t ldy, int64_t k) {                      \
        const uint8_t *p = w;                                                                             \
        for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {                                                       \
            const int64_t nt = n_tok - t0 < 4 ? n_tok - t0 : 4;                                           \
            const dt_xpair *xt = xp + t0 * ldxp;                                                          \
            float *yt = y + t0 * ldy;                                                                     \
            int64_t r = 0;                                                                                \
            for (; r + 4 <= n_rows; r += 4) fast_##NAME##_r4(p + r * rb, rb, xt, ldxp, nt, yt + r, ldy, k); \
            switch (n_rows - r) {                                                                         \
            case 1: fast_##NAME##_r1(p + r * rb, rb, xt, ldxp, nt, yt + r, ldy, k); break;                \
            case 2: fast_##NAME##_r2(p + r * rb, rb, xt, ldxp, nt, yt + r, ldy, k); break;                \
            case 3: fast_##NAME##_r3(p + r * rb, rb, xt, ldxp, nt, yt + r, ldy, k); break;                \
            default: break;                                                                               \
            }                                                                                             \
        }                                                                                                 \
    }
FAST(q4_0, DT_Q4_0, 18)
FAST(q4_1, DT_Q4_1, 20)
FAST(q8_0, DT_Q8_0, 34)
