/* ditto native layer: the attention tile of the x86 files, written once.
 *
 * Included by attention_avx2.c (8-lane dt_vf) and attention_avx512.c
 * (16-lane), which define before including it:
 *   SCORE_ROWS  rows per score chunk (bounded by the register file)
 *   SCORE_ACCS  accumulators a score kernel keeps in flight
 *   PV_ROWS     rows per value chunk
 *   vf_exp()    e^x of their ISA
 * A tile's R = n_tok * group query rows share every key / value load:
 *
 * 1. Scores. Keys are blocked [pos / 16][head_dim][16], so a block holds a
 *    key element for 16 positions in 16 / DT_VW vectors:
 *    s[lanes] = sum_d q[d] * k[b][d][lanes], one fma chain over
 *    d = 0 .. head_dim - 1 per (row, vector), then * scale. Several rows
 *    and blocks run at once; a block group stays in L1 while every row
 *    chunk passes over it.
 * 2. Softmax, per row and chunk (attention.h) over exactly the row's
 *    positions in it (masked lanes at both ends): max m_c, p = vf_exp(s -
 *    m_c), the sum per lane in position order, then the fixed tree of
 *    vf_hsum: l_c.
 * 3. Values: o_c[row][d] += p_j * v[j][d] for j ascending over the row's
 *    positions in the chunk, one fma chain per (row, d); rows that share a
 *    range run together (up to PV_ROWS rows x 4 vectors), the ragged ends of
 *    a tile's ranges one row at a time. dt_attn_combine (attention.h)
 *    combines the chunks.
 *
 * A call computes the chunks [c0, c1] it is given: scores only over their
 * key blocks, so the chunks of one long row can run on several threads.
 * Keys and values stream from memory once per tile: both loops prefetch
 * (x86.h's prefetch_ahead; one thread's decode attention at 2048 f16
 * positions went from ~10.5 to 13-17 GB/s, which the distance, 4-32 KB,
 * hardly changed).
 * None of these orders depends on the tile, the thread, or on positions
 * outside a row's range, so results are batch invariant (attention.h).
 *
 * An f16 cache (kv_type DT_F16) runs the same kernels with every key and
 * value load widened by vcvtph2ps: half the bytes stream from memory, and
 * the arithmetic is the f32 kernel's on the widened values. Each kernel is
 * instantiated for every element type it reads (the T argument, a
 * constant).
 *
 * A bf16 cache (attention.h) runs the same loops on pairs (T = KV_PAIRS):
 * a key vector holds one pair of head dims for DT_VW positions, a value
 * vector one pair of positions for DT_VW head dims; per call the rows' q
 * become bf16 pairs of head dims, and the softmax stores p as bf16 (zero
 * outside each row's positions). One vdpbf16ps then does what two fmas do
 * on f32 (built with AVX512_BF16: attention_avx512bf16.c; else vp_dot's
 * two fmas). The value pair at either end of the call's positions has its
 * outside half zeroed: that slot may hold anything (a later token's value,
 * a stale or never written one), and 0 * NaN would not be 0.
 */
#ifndef DITTO_ATTENTION_X86_H
#define DITTO_ATTENTION_X86_H

#include <math.h>

#include "attention.h"
#include "x86.h"

#define BLOCK 16          /* positions per key block */
#define BLOCK_VECS (BLOCK / DT_VW)
#define BLOCK_GROUP 8     /* key blocks kept in L1 across row chunks */
#define PV_VECS 4         /* vectors of head_dim per value chunk */

/* ---- f16 elements ------------------------------------------------------------ */

#ifdef __AVX512F__
typedef __mmask16 vh_mask;
DT_INLINE vh_mask vh_below(int n) { return vm_below(n); }
DT_INLINE dt_vf vh_load(const dt_f16 *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
DT_INLINE dt_vf vh_maskz_load(vh_mask m, const dt_f16 *p) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
DT_INLINE void vh_store(dt_f16 *p, dt_vf v) {
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
#else
typedef __m128i vh_mask; /* 32-bit lanes, each a pair of halves: n is even (head_dim is) */
DT_INLINE vh_mask vh_below(int n) { return _mm_cmpgt_epi32(_mm_set1_epi32(n / 2), _mm_setr_epi32(0, 1, 2, 3)); }
DT_INLINE dt_vf vh_load(const dt_f16 *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
DT_INLINE dt_vf vh_maskz_load(vh_mask m, const dt_f16 *p) {
    return _mm256_cvtph_ps(_mm_maskload_epi32((const int *)p, m));
}
DT_INLINE void vh_store(dt_f16 *p, dt_vf v) {
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
#endif

/* What a kernel reads: the cache's f32 or f16 elements, or bf16 pairs. */
enum { KV_F32 = 0, KV_F16 = 1, KV_PAIRS = 2 };
DT_INLINE int kv_kind(int kv_type) { return kv_type == DT_BF16 ? KV_PAIRS : kv_type == DT_F16 ? KV_F16 : KV_F32; }

/* DT_VW elements of a cache region from element i on, as f32. */
DT_INLINE dt_vf kv_load(const void *base, int64_t i, const int F16) {
    return F16 ? vh_load((const dt_f16 *)base + i) : vf_load((const float *)base + i);
}

/* The f16 conversion of the ISA (attention.h: dt_f16_from_f32). */
static void f16_from_f32(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + DT_VW <= n; i += DT_VW) vh_store(y + i, vf_load(x + i));
    for (; i < n; i++) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

/* ---- bf16 pairs ------------------------------------------------------------------ */

/* DT_VW pairs of bf16, one per 32-bit lane (element 2i in the low half),
 * carried in float registers. */
#ifdef __AVX512F__
typedef __m512i dt_vi;
DT_INLINE dt_vi vi_set1(uint32_t x) { return _mm512_set1_epi32((int)x); }
DT_INLINE dt_vi vi_and(dt_vi a, dt_vi b) { return _mm512_and_si512(a, b); }
DT_INLINE dt_vi vi_or(dt_vi a, dt_vi b) { return _mm512_or_si512(a, b); }
DT_INLINE dt_vi vi_srl16(dt_vi a) { return _mm512_srli_epi32(a, 16); }
DT_INLINE dt_vi vi_sll16(dt_vi a) { return _mm512_slli_epi32(a, 16); }
DT_INLINE dt_vi vf_bits(dt_vf x) { return _mm512_castps_si512(x); }
DT_INLINE dt_vf vf_from_bits(dt_vi x) { return _mm512_castsi512_ps(x); }
#else
typedef __m256i dt_vi;
DT_INLINE dt_vi vi_set1(uint32_t x) { return _mm256_set1_epi32((int)x); }
DT_INLINE dt_vi vi_and(dt_vi a, dt_vi b) { return _mm256_and_si256(a, b); }
DT_INLINE dt_vi vi_or(dt_vi a, dt_vi b) { return _mm256_or_si256(a, b); }
DT_INLINE dt_vi vi_srl16(dt_vi a) { return _mm256_srli_epi32(a, 16); }
DT_INLINE dt_vi vi_sll16(dt_vi a) { return _mm256_slli_epi32(a, 16); }
DT_INLINE dt_vi vf_bits(dt_vf x) { return _mm256_castps_si256(x); }
DT_INLINE dt_vf vf_from_bits(dt_vi x) { return _mm256_castsi256_ps(x); }
#endif

/* DT_VW lanes rounded as dt_bf16_of, stored as bf16 at p; returns the
 * rounded values. */
DT_INLINE dt_vf vb_round_store(uint16_t *p, dt_vf x) {
#if defined(__AVX512BF16__)
    const __m256i h = (__m256i)_mm512_cvtneps_pbh(x);
    _mm256_storeu_si256((__m256i *)p, h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
#else
    const dt_vi u = vf_bits(x);
    const dt_vi a = vi_and(u, vi_set1(0x7fffffffu));
    const dt_vi odd = vi_and(vi_srl16(u), vi_set1(1));
#ifdef __AVX512F__
    dt_vi r = _mm512_add_epi32(u, _mm512_add_epi32(vi_set1(0x7fff), odd));
    r = _mm512_mask_mov_epi32(r, _mm512_cmpgt_epi32_mask(a, vi_set1(0x7f800000u)), vi_or(u, vi_set1(0x400000u)));
    r = _mm512_mask_mov_epi32(r, _mm512_cmplt_epi32_mask(a, vi_set1(0x800000u)), vi_and(u, vi_set1(0x80000000u)));
    r = vi_and(r, vi_set1(0xffff0000u));
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(vi_srl16(r)));
#else
    dt_vi r = _mm256_add_epi32(u, _mm256_add_epi32(vi_set1(0x7fff), odd));
    r = _mm256_blendv_epi8(r, vi_or(u, vi_set1(0x400000u)), _mm256_cmpgt_epi32(a, vi_set1(0x7f800000u)));
    r = _mm256_blendv_epi8(r, vi_and(u, vi_set1(0x80000000u)), _mm256_cmpgt_epi32(vi_set1(0x800000u), a));
    r = vi_and(r, vi_set1(0xffff0000u));
    const __m256i s = vi_srl16(r);
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(s, s), 0x08)));
#endif
    return vf_from_bits(r);
#endif
}

/* acc + x.hi * y.hi, then + x.lo * y.lo, per lane (vdpbf16ps). */
DT_INLINE dt_vf vp_dot(dt_vf acc, dt_vf x, dt_vf y) {
#if defined(__AVX512BF16__)
    return _mm512_dpbf16_ps(acc, (__m512bh)x, (__m512bh)y);
#else
    const dt_vi hi = vi_set1(0xffff0000u), xi = vf_bits(x), yi = vf_bits(y);
    acc = vf_fma(vf_from_bits(vi_and(xi, hi)), vf_from_bits(vi_and(yi, hi)), acc);
    return vf_fma(vf_from_bits(vi_sll16(xi)), vf_from_bits(vi_sll16(yi)), acc);
#endif
}

/* vp_dot with y = the pair at p in every lane (an embedded broadcast). */
DT_INLINE dt_vf vp_dot_bcast(dt_vf acc, dt_vf x, const uint32_t *p) {
#if defined(__AVX512BF16__)
    __asm__("vdpbf16ps %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(x), "m"(*p));
    return acc;
#else
    return vp_dot(acc, x, vf_from_bits(vi_set1(*p)));
#endif
}

/* The bf16 conversion of the ISA (attention.h: dt_bf16_from_f32). */
static void bf16_from_f32(const float *x, uint16_t *y, int64_t n) {
    int64_t i = 0;
    for (; i + DT_VW <= n; i += DT_VW) vb_round_store(y + i, vf_load(x + i));
    for (; i < n; i++) y[i] = dt_bf16_of(x[i]);
}

/* q of rows [0, R) as bf16 pairs of head dims: row r at qp + r * hd / 2
 * (its bf16 elements in order are its pairs). */
static void queries_to_pairs(const dt_attn_tile *a, uint32_t *qp) {
    const int hd = a->head_dim, G = a->group;
    for (int r = 0; r < a->n_tok * G; r++)
        bf16_from_f32(a->q + (int64_t)(r / G) * a->ldq + (int64_t)(r % G) * hd, (uint16_t *)(qp + (int64_t)r * hd / 2), hd);
}

/* ---- 1. scores ---------------------------------------------------------------- */

/* s[r][b * 16 + lane] = scale * dot(q[r], keys of block b) for NR rows, NB
 * blocks starting at kb (blocks hd * 16 elements apart): q[r] is a float
 * row, or for T = KV_PAIRS a row of hd / 2 pairs. */
DT_INLINE void score_kernel(const void *kb, int hd, const void *const *q, float *const *s, float scale, const int NR,
                            const int NB, const int T) {
    const int steps = T == KV_PAIRS ? hd / 2 : hd; /* per step: a head dim, or a pair of them */
    dt_vf acc[SCORE_ROWS][SCORE_ACCS];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 8
        for (int h = 0; h < NB * BLOCK_VECS; h++) acc[r][h] = vf_zero();
    for (int d = 0; d < steps; d++) {
        dt_vf kv[SCORE_ACCS];
#pragma GCC unroll 8
        for (int h = 0; h < NB * BLOCK_VECS; h++) {
            const int64_t i = ((int64_t)(h / BLOCK_VECS) * steps + d) * BLOCK + (h % BLOCK_VECS) * DT_VW;
            if (h % BLOCK_VECS == 0) prefetch_ahead((const char *)kb + i * (T == KV_F16 ? sizeof(dt_f16) : sizeof(float)));
            kv[h] = kv_load(kb, i, T == KV_F16); /* a pair of bf16 per 32-bit lane */
        }
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            if (T == KV_PAIRS) {
#pragma GCC unroll 8
                for (int h = 0; h < NB * BLOCK_VECS; h++) acc[r][h] = vp_dot_bcast(acc[r][h], kv[h], (const uint32_t *)q[r] + d);
                continue;
            }
            const dt_vf qd = vf_set1(((const float *)q[r])[d]);
#pragma GCC unroll 8
            for (int h = 0; h < NB * BLOCK_VECS; h++) acc[r][h] = vf_fma(qd, kv[h], acc[r][h]);
        }
    }
    const dt_vf vs = vf_set1(scale);
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 8
        for (int h = 0; h < NB * BLOCK_VECS; h++) vf_store(s[r] + h * DT_VW, vf_mul(acc[r][h], vs));
}

/* Blocks per call for NR rows: enough fma chains to hide the latency, a
 * power of 2 so that calls tile a BLOCK_GROUP. */
#define SCORE_POW2(x) ((x) >= BLOCK_GROUP ? BLOCK_GROUP : (x) >= 4 ? 4 : (x) >= 2 ? 2 : 1)
#define SCORE_NB(NR) SCORE_POW2(SCORE_ACCS / ((NR) * BLOCK_VECS))

typedef void (*score_fn)(const void *, int, const void *const *, float *const *, float);
#define SCORE_FN(NR, T)                                                                              \
    static void score_##NR##_many_##T(const void *kb, int hd, const void *const *q, float *const *s,  \
                                      float scale) {                                                 \
        score_kernel(kb, hd, q, s, scale, NR, SCORE_NB(NR), T);                                      \
    }                                                                                                \
    static void score_##NR##_one_##T(const void *kb, int hd, const void *const *q, float *const *s,   \
                                     float scale) {                                                  \
        score_kernel(kb, hd, q, s, scale, NR, 1, T);                                                 \
    }
#define SCORE_FNS(NR) SCORE_FN(NR, KV_F32) SCORE_FN(NR, KV_F16) SCORE_FN(NR, KV_PAIRS)
#define SCORE_ENTRY(NR, T) [NR] = {score_##NR##_many_##T, score_##NR##_one_##T, SCORE_NB(NR)}
SCORE_FNS(1) SCORE_FNS(2) SCORE_FNS(3) SCORE_FNS(4) SCORE_FNS(5) SCORE_FNS(6)
#if SCORE_ROWS > 6
SCORE_FNS(7) SCORE_FNS(8)
#define SCORE_MORE(T) SCORE_ENTRY(7, T), SCORE_ENTRY(8, T),
#else
#define SCORE_MORE(T)
#endif
#define SCORE_TABLE(T)                                                                                \
    {SCORE_ENTRY(1, T), SCORE_ENTRY(2, T), SCORE_ENTRY(3, T), SCORE_ENTRY(4, T), SCORE_ENTRY(5, T),   \
     SCORE_ENTRY(6, T), SCORE_MORE(T)}

/* Kernels for NR rows of each element type [T]: nb blocks at a time, and
 * one block for the rest. */
static const struct { score_fn many, one; int nb; } score_kernels[3][SCORE_ROWS + 1] = {
    SCORE_TABLE(KV_F32), SCORE_TABLE(KV_F16), SCORE_TABLE(KV_PAIRS)};

/* ---- 3. values ------------------------------------------------------------------ */

/* acc[r][c * DT_VW ..] += p[r][j] * v[j][c * DT_VW ..] for j in [ja, jb], NR
 * rows, NC vectors (of the last one only the first `tail` lanes); p[r]
 * indexed by j. T = KV_PAIRS: j counts pairs of positions, v's rows and
 * p's elements are pairs, and pair `drop_even` (`drop_odd`) has its even
 * (odd) position's values zeroed: positions outside the call. */
DT_INLINE void pv_kernel(const void *v, int hd, int ja, int jb, const void *const *p, float *const *acc, int tail,
                         int drop_even, int drop_odd, const int NR, const int NC, const int T) {
    const dt_vmask tail_f = vm_below(tail);
    const vh_mask tail_h = vh_below(tail);
    const size_t esize = T == KV_F16 ? sizeof(dt_f16) : sizeof(float);
    dt_vf a[PV_ROWS][PV_VECS];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) a[r][c] = vf_load(acc[r] + c * DT_VW);
    for (int j = ja; j <= jb; j++) {
        const int64_t vj = (int64_t)j * hd, last = vj + (NC - 1) * DT_VW;
        for (size_t b = 0; b < NC * DT_VW * esize; b += 64) prefetch_ahead((const char *)v + vj * esize + b);
        dt_vf vv[PV_VECS];
#pragma GCC unroll 4
        for (int c = 0; c < NC - 1; c++) vv[c] = kv_load(v, vj + c * DT_VW, T == KV_F16);
        vv[NC - 1] = T == KV_F16 ? vh_maskz_load(tail_h, (const dt_f16 *)v + last)
                                 : vf_maskz_load(tail_f, (const float *)v + last);
        if (T == KV_PAIRS && (j == drop_even || j == drop_odd)) {
            const dt_vi keep = vi_set1(j == drop_even ? 0xffff0000u : 0x0000ffffu);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) vv[c] = vf_from_bits(vi_and(vf_bits(vv[c]), keep));
        }
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            if (T == KV_PAIRS) {
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) a[r][c] = vp_dot_bcast(a[r][c], vv[c], (const uint32_t *)p[r] + j);
                continue;
            }
            const dt_vf pj = vf_set1(((const float *)p[r])[j]);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) a[r][c] = vf_fma(pj, vv[c], a[r][c]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) vf_store(acc[r] + c * DT_VW, a[r][c]);
}

typedef void (*pv_fn)(const void *, int, int, int, const void *const *, float *const *, int, int, int);
#define PV_FN(NR, NC, T)                                                                               \
    static void pv_##NR##_##NC##_##T(const void *v, int hd, int ja, int jb, const void *const *p,       \
                                     float *const *acc, int tail, int drop_even, int drop_odd) {       \
        pv_kernel(v, hd, ja, jb, p, acc, tail, drop_even, drop_odd, NR, NC, T);                        \
    }
#define PV_ROW(NR, T) PV_FN(NR, 1, T) PV_FN(NR, 2, T) PV_FN(NR, 3, T) PV_FN(NR, 4, T)
#define PV_ROWS_OF(NR) PV_ROW(NR, KV_F32) PV_ROW(NR, KV_F16) PV_ROW(NR, KV_PAIRS)
#define PV_ENTRY(NR, T) [NR] = {pv_##NR##_1_##T, pv_##NR##_2_##T, pv_##NR##_3_##T, pv_##NR##_4_##T}
PV_ROWS_OF(1) PV_ROWS_OF(2) PV_ROWS_OF(3)
#if PV_ROWS > 3
PV_ROWS_OF(4) PV_ROWS_OF(5) PV_ROWS_OF(6)
#define PV_MORE(T) PV_ENTRY(4, T), PV_ENTRY(5, T), PV_ENTRY(6, T),
#else
#define PV_MORE(T)
#endif
#define PV_TABLE(T) {PV_ENTRY(1, T), PV_ENTRY(2, T), PV_ENTRY(3, T), PV_MORE(T)}
/* [T][rows][vectors - 1] */
static const pv_fn pv_kernels[3][PV_ROWS + 1][PV_VECS] = {PV_TABLE(KV_F32), PV_TABLE(KV_F16), PV_TABLE(KV_PAIRS)};

/* The values of a call: its tile's, read as T, and for pairs the pairs
 * whose even / odd position lies outside the call's positions (or -1). */
typedef struct {
    const void *v;
    int T, drop_even, drop_odd;
} value_rows;

/* Runs rows[0..nr) over rows [ja, jb] of vr (positions, or pairs of them)
 * for every vector of head_dim. */
static void pv_rows(const value_rows *vr, int hd, int ja, int jb, const void *const *p, float *const *acc, int nr) {
    if (ja > jb) return;
    const int nvec = (hd + DT_VW - 1) / DT_VW;
    const size_t esize = vr->T == KV_F16 ? sizeof(dt_f16) : sizeof(float);
    for (int c0 = 0; c0 < nvec; c0 += PV_VECS) {
        const int nc = nvec - c0 < PV_VECS ? nvec - c0 : PV_VECS;
        float *ac[PV_ROWS];
        for (int r = 0; r < nr; r++) ac[r] = acc[r] + c0 * DT_VW;
        pv_kernels[vr->T][nr][nc - 1]((const char *)vr->v + (size_t)c0 * DT_VW * esize, hd, ja, jb, p, ac,
                                      hd - (c0 + nc - 1) * DT_VW, vr->drop_even, vr->drop_odd);
    }
}

/* ---- the tile ---------------------------------------------------------------------- */

static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

/* The call's working memory in `scratch` (attention.c sizes it): scores
 * S (rows ls apart), and for a bf16 cache p as bf16 (same layout) and the
 * query pairs. */
typedef struct {
    float *S;
    uint16_t *p16;
    uint32_t *qp;
} call_memory;

static call_memory carve(float *scratch, int R, int64_t ls) {
    call_memory m = {.S = align64(scratch)};
    m.p16 = (uint16_t *)align64(m.S + R * ls);
    m.qp = (uint32_t *)align64((float *)(m.p16 + R * ls));
    return m;
}

/* 1. s[r][p] for every row over key blocks [b0, b1] (S: rows ls apart, from
 * block b0 on). */
static void scores(const dt_attn_tile *a, int b0, int b1, const call_memory *m, int64_t ls) {
    const int hd = a->head_dim, G = a->group, R = a->n_tok * G;
    const int T = kv_kind(a->kv_type);
    const int64_t block_bytes = (int64_t)hd * BLOCK * (T == KV_F32 ? sizeof(float) : sizeof(dt_f16));
    const char *keys = a->k;
    const void *qrow[SCORE_ROWS];
    float *srow[SCORE_ROWS];
    if (T == KV_PAIRS) queries_to_pairs(a, m->qp);
    for (int bg = b0; bg <= b1; bg += BLOCK_GROUP) {
        const int bge = bg + BLOCK_GROUP - 1 < b1 ? bg + BLOCK_GROUP - 1 : b1;
        for (int r0 = 0; r0 < R; r0 += SCORE_ROWS) {
            const int nr = R - r0 < SCORE_ROWS ? R - r0 : SCORE_ROWS;
            for (int r = 0; r < nr; r++) {
                const int t = (r0 + r) / G, g = (r0 + r) % G;
                qrow[r] = T == KV_PAIRS ? (const void *)(m->qp + (int64_t)(r0 + r) * hd / 2)
                                        : (const void *)(a->q + (int64_t)t * a->ldq + (int64_t)g * hd);
            }
            int b = bg;
            for (; b + score_kernels[T][nr].nb - 1 <= bge; b += score_kernels[T][nr].nb) {
                for (int r = 0; r < nr; r++) srow[r] = m->S + (int64_t)(r0 + r) * ls + (int64_t)(b - b0) * BLOCK;
                score_kernels[T][nr].many(keys + b * block_bytes, hd, qrow, srow, a->scale);
            }
            for (; b <= bge; b++) {
                for (int r = 0; r < nr; r++) srow[r] = m->S + (int64_t)(r0 + r) * ls + (int64_t)(b - b0) * BLOCK;
                score_kernels[T][nr].one(keys + b * block_bytes, hd, qrow, srow, a->scale);
            }
        }
    }
}

/* 2. Softmax of one row's chunk over positions [L, H] of s (indexed by
 * position): p = vf_exp(s - m) replaces s, or with p16 (a bf16 tile) is
 * rounded to bf16 and stored there; m and l (the sum of the p stored) into
 * pc, o zeroed. */
static void chunk_softmax(float *s, uint16_t *p16, int L, int H, float *pc, int hd) {
    const int cf = L / DT_VW, cl = H / DT_VW; /* vector chunks of positions */
    dt_vf vmax = vf_set1(-INFINITY);
    for (int c = cf; c <= cl; c++) vmax = vf_mask_max(vmax, vm_range(c * DT_VW, L, H), vf_load_aligned(s + c * DT_VW));
    const float m = vf_hmax(vmax);
    const dt_vf mx = vf_set1(m);
    dt_vf vsum = vf_zero();
    for (int c = cf; c <= cl; c++) {
        dt_vf e = vf_maskz(vm_range(c * DT_VW, L, H), vf_exp(vf_sub(vf_load_aligned(s + c * DT_VW), mx)));
        if (p16) {
            e = vb_round_store(p16 + c * DT_VW, e);
        } else {
            vf_store_aligned(s + c * DT_VW, e);
        }
        vsum = vf_add(vsum, e);
    }
    for (int d = 0; d < hd; d += DT_VW) vf_store(pc + d, vf_zero());
    pc[hd] = m;
    pc[hd + 1] = vf_hsum(vsum);
}

/* 3. o += p_j v_j of rows r0 .. r0 + nr - 1 (prow, indexed by position, or
 * by pair for a bf16 tile) in chunk c, ascending: the range [c0, c1] every
 * row covers together, the ragged ends row by row (in pairs for a bf16
 * tile: a pair two rows share is common, each row's p zero outside it). */
static void chunk_values(const dt_attn_tile *a, const value_rows *vr, int r0, int nr, int c, const void *const *prow,
                         float *part) {
    const int hd = a->head_dim, G = a->group, u = vr->T == KV_PAIRS; /* position >> u: row of vr */
    const int ta = r0 / G, tb = (r0 + nr - 1) / G;
    /* The rows of chunk c every row covers: from the last row's first to the first row's last. */
    int c0, c1, unused;
    dt_attn_row_range(a, tb, c, c, &c0, &unused);
    dt_attn_row_range(a, ta, c, c, &unused, &c1);
    c0 >>= u;
    c1 >>= u;
    const int common = c0 <= c1;
    float *arow[PV_ROWS];
    for (int r = 0; r < nr; r++) {
        int L, H;
        arow[r] = dt_attn_row_range(a, (r0 + r) / G, c, c, &L, &H) ? dt_attn_part(a, part, r0 + r, c) : NULL;
        if (arow[r]) pv_rows(vr, hd, L >> u, common ? c0 - 1 : H >> u, &prow[r], &arow[r], 1);
    }
    if (!common) return;
    pv_rows(vr, hd, c0, c1, prow, arow, nr);
    for (int r = 0; r < nr; r++) {
        int L, H;
        dt_attn_row_range(a, (r0 + r) / G, c, c, &L, &H);
        pv_rows(vr, hd, c1 + 1, H >> u, &prow[r], &arow[r], 1);
    }
}

static void attention_chunks(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch) {
    const int hd = a->head_dim, G = a->group, R = a->n_tok * G;
    int lo, hi, unused; /* positions of the call: from row 0's first to the last row's last */
    dt_attn_row_range(a, 0, c0, c1, &lo, &unused);
    dt_attn_row_range(a, a->n_tok - 1, c0, c1, &unused, &hi);
    if (lo > hi) return;
    const int b0 = lo / BLOCK, b1 = hi / BLOCK;
    const int64_t ls = (int64_t)(b1 - b0 + 1) * BLOCK; /* score row stride */
    const call_memory m = carve(scratch, R, ls);
    scores(a, b0, b1, &m, ls);

    /* 2. softmax of each row's chunks; p replaces s (or goes to p16). */
    for (int r = 0; r < R; r++) {
        float *s = m.S + (int64_t)r * ls - (int64_t)b0 * BLOCK; /* indexed by position */
        uint16_t *p16 = a->kv_type == DT_BF16 ? m.p16 + (int64_t)r * ls - (int64_t)b0 * BLOCK : NULL;
        for (int c = c0; c <= c1; c++) {
            int L, H;
            if (dt_attn_row_range(a, r / G, c, c, &L, &H))
                chunk_softmax(s, p16, L, H, dt_attn_part(a, part, r, c), hd);
        }
    }

    /* 3. values: rows in groups of PV_ROWS, chunk by chunk. */
    const value_rows vr = {a->v, kv_kind(a->kv_type), lo % 2 ? lo / 2 : -1, hi % 2 ? -1 : hi / 2};
    const void *prow[PV_ROWS];
    for (int r0 = 0; r0 < R; r0 += PV_ROWS) {
        const int nr = R - r0 < PV_ROWS ? R - r0 : PV_ROWS;
        for (int r = 0; r < nr; r++)
            prow[r] = vr.T == KV_PAIRS ? (const void *)(m.p16 + (int64_t)(r0 + r) * ls - (int64_t)b0 * BLOCK)
                                       : (const void *)(m.S + (int64_t)(r0 + r) * ls - (int64_t)b0 * BLOCK);
        for (int c = c0; c <= c1; c++) chunk_values(a, &vr, r0, nr, c, prow, part);
    }
}

#endif
