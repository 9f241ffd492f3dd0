/* ditto native layer: the attention tile of the x86 files, written once.
 *
 * Included by attention_avx2.c (8-lane dt_vf) and attention_avx512.c
 * (16-lane), which define before including it:
 *   SCORE_ROWS  rows per score chunk (bounded by the register file)
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
 * 2. Softmax, per row over exactly its positions [first, pos] (masked
 *    lanes at both ends): max, p = vf_exp(s - max), the sum per lane in
 *    position order, then the fixed tree of vf_hsum.
 * 3. Values: acc[row][d] += p_j * v[j][d] for j ascending over the row's
 *    own positions, one fma chain per (row, d); rows that share a range run
 *    together (up to PV_ROWS rows x 4 vectors), the ragged ends of a tile's
 *    ranges one row at a time. out = acc / sum.
 *
 * None of these orders depends on the tile, the thread, or on positions
 * outside a row's range, so results are batch invariant (attention.h).
 */
#ifndef DITTO_ATTENTION_X86_H
#define DITTO_ATTENTION_X86_H

#include <math.h>

#include "attention.h"
#include "x86.h"

#define BLOCK 16          /* positions per key block */
#define BLOCK_VECS (BLOCK / DT_VW)
#define BLOCK_GROUP 8     /* key blocks kept in L1 across row chunks */
#define SCORE_ACCS 8      /* accumulators a score kernel keeps in flight */
#define PV_VECS 4         /* vectors of head_dim per value chunk */

/* ---- 1. scores ---------------------------------------------------------------- */

/* s[r][b * 16 + lane] = scale * dot(q[r], keys of block b) for NR rows, NB
 * blocks starting at kb (blocks hd * 16 floats apart). */
DT_INLINE void score_kernel(const float *kb, int hd, const float *const *q, float *const *s, float scale,
                            const int NR, const int NB) {
    dt_vf acc[SCORE_ROWS][SCORE_ACCS];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 8
        for (int h = 0; h < NB * BLOCK_VECS; h++) acc[r][h] = vf_zero();
    for (int d = 0; d < hd; d++) {
        dt_vf kv[SCORE_ACCS];
#pragma GCC unroll 8
        for (int h = 0; h < NB * BLOCK_VECS; h++)
            kv[h] = vf_load(kb + ((int64_t)(h / BLOCK_VECS) * hd + d) * BLOCK + (h % BLOCK_VECS) * DT_VW);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            const dt_vf qd = vf_set1(q[r][d]);
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

/* Blocks per call for NR rows: enough fma chains to hide the latency. */
#define SCORE_NB(NR) (SCORE_ACCS / ((NR) * BLOCK_VECS) > 1 ? SCORE_ACCS / ((NR) * BLOCK_VECS) : 1)

typedef void (*score_fn)(const float *, int, const float *const *, float *const *, float);
#define SCORE_FN(NR)                                                                                \
    static void score_##NR##_many(const float *kb, int hd, const float *const *q, float *const *s,   \
                                  float scale) {                                                    \
        score_kernel(kb, hd, q, s, scale, NR, SCORE_NB(NR));                                        \
    }                                                                                               \
    static void score_##NR##_one(const float *kb, int hd, const float *const *q, float *const *s,    \
                                 float scale) {                                                     \
        score_kernel(kb, hd, q, s, scale, NR, 1);                                                   \
    }
#define SCORE_ENTRY(NR) [NR] = {score_##NR##_many, score_##NR##_one, SCORE_NB(NR)}
SCORE_FN(1) SCORE_FN(2) SCORE_FN(3) SCORE_FN(4) SCORE_FN(5) SCORE_FN(6)
#if SCORE_ROWS > 6
SCORE_FN(7) SCORE_FN(8)
#endif

/* Kernels for NR rows: nb blocks at a time, and one block for the rest. */
static const struct { score_fn many, one; int nb; } score_kernels[SCORE_ROWS + 1] = {
    SCORE_ENTRY(1), SCORE_ENTRY(2), SCORE_ENTRY(3), SCORE_ENTRY(4), SCORE_ENTRY(5), SCORE_ENTRY(6),
#if SCORE_ROWS > 6
    SCORE_ENTRY(7), SCORE_ENTRY(8),
#endif
};

/* ---- 3. values ------------------------------------------------------------------ */

/* acc[r][c * DT_VW ..] += p[r][j] * v[j][c * DT_VW ..] for j in [ja, jb], NR
 * rows, NC vectors (the last one masked by `tail`); p[r] is indexed by
 * position. */
DT_INLINE void pv_kernel(const float *v, int hd, int ja, int jb, const float *const *p, float *const *acc,
                         dt_vmask tail, const int NR, const int NC) {
    dt_vf a[PV_ROWS][PV_VECS];
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) a[r][c] = vf_load(acc[r] + c * DT_VW);
    for (int j = ja; j <= jb; j++) {
        const float *vj = v + (int64_t)j * hd;
        dt_vf vv[PV_VECS];
#pragma GCC unroll 4
        for (int c = 0; c < NC - 1; c++) vv[c] = vf_load(vj + c * DT_VW);
        vv[NC - 1] = vf_maskz_load(tail, vj + (NC - 1) * DT_VW);
#pragma GCC unroll 8
        for (int r = 0; r < NR; r++) {
            const dt_vf pj = vf_set1(p[r][j]);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) a[r][c] = vf_fma(pj, vv[c], a[r][c]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) vf_store(acc[r] + c * DT_VW, a[r][c]);
}

typedef void (*pv_fn)(const float *, int, int, int, const float *const *, float *const *, dt_vmask);
#define PV_FN(NR, NC)                                                                                 \
    static void pv_##NR##_##NC(const float *v, int hd, int ja, int jb, const float *const *p,          \
                               float *const *acc, dt_vmask tail) {                                     \
        pv_kernel(v, hd, ja, jb, p, acc, tail, NR, NC);                                                \
    }
#define PV_ROW(NR) PV_FN(NR, 1) PV_FN(NR, 2) PV_FN(NR, 3) PV_FN(NR, 4)
#define PV_ENTRY(NR) [NR] = {pv_##NR##_1, pv_##NR##_2, pv_##NR##_3, pv_##NR##_4}
PV_ROW(1) PV_ROW(2) PV_ROW(3)
#if PV_ROWS > 3
PV_ROW(4) PV_ROW(5) PV_ROW(6)
#endif
static const pv_fn pv_kernels[PV_ROWS + 1][PV_VECS] = {
    PV_ENTRY(1), PV_ENTRY(2), PV_ENTRY(3),
#if PV_ROWS > 3
    PV_ENTRY(4), PV_ENTRY(5), PV_ENTRY(6),
#endif
};

/* Runs rows[0..nr) over positions [ja, jb] for every vector of head_dim. */
static void pv_rows(const float *v, int hd, int ja, int jb, const float *const *p, float *const *acc, int nr) {
    if (ja > jb) return;
    const int nvec = (hd + DT_VW - 1) / DT_VW;
    for (int c0 = 0; c0 < nvec; c0 += PV_VECS) {
        const int nc = nvec - c0 < PV_VECS ? nvec - c0 : PV_VECS;
        const dt_vmask tail = vm_below(hd - (c0 + nc - 1) * DT_VW);
        float *ac[PV_ROWS];
        for (int r = 0; r < nr; r++) ac[r] = acc[r] + c0 * DT_VW;
        pv_kernels[nr][nc - 1](v + c0 * DT_VW, hd, ja, jb, p, ac, tail);
    }
}

/* ---- the tile ---------------------------------------------------------------------- */

static float *align64(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

static void attention_tile(const dt_attn_tile *a, float *scratch) {
    const int hd = a->head_dim, G = a->group, R = a->n_tok * G;
    const int lo = dt_attn_first(a, 0), hi = a->pos0 + a->n_tok - 1;
    const int b0 = lo / BLOCK, b1 = hi / BLOCK, nb = b1 - b0 + 1;
    const int64_t ls = (int64_t)nb * BLOCK;               /* score row stride */
    const int64_t la = ((int64_t)hd + 15) & ~(int64_t)15; /* accumulator row stride */
    float *S = align64(scratch);
    float *A = S + (int64_t)R * ls;
    float *sums = A + (int64_t)R * la;
    const float *qrow[SCORE_ROWS];
    float *srow[SCORE_ROWS];

    /* 1. scores for every row over the tile's blocks [b0, b1]. */
    for (int bg = b0; bg <= b1; bg += BLOCK_GROUP) {
        const int bge = bg + BLOCK_GROUP - 1 < b1 ? bg + BLOCK_GROUP - 1 : b1;
        for (int r0 = 0; r0 < R; r0 += SCORE_ROWS) {
            const int nr = R - r0 < SCORE_ROWS ? R - r0 : SCORE_ROWS;
            for (int r = 0; r < nr; r++) {
                const int t = (r0 + r) / G, g = (r0 + r) % G;
                qrow[r] = a->q + (int64_t)t * a->ldq + (int64_t)g * hd;
            }
            int b = bg;
            for (; b + score_kernels[nr].nb - 1 <= bge; b += score_kernels[nr].nb) {
                for (int r = 0; r < nr; r++) srow[r] = S + (int64_t)(r0 + r) * ls + (int64_t)(b - b0) * BLOCK;
                score_kernels[nr].many(a->k + (int64_t)b * hd * BLOCK, hd, qrow, srow, a->scale);
            }
            for (; b <= bge; b++) {
                for (int r = 0; r < nr; r++) srow[r] = S + (int64_t)(r0 + r) * ls + (int64_t)(b - b0) * BLOCK;
                score_kernels[nr].one(a->k + (int64_t)b * hd * BLOCK, hd, qrow, srow, a->scale);
            }
        }
    }

    /* 2. softmax of each row over its own positions; p replaces s. */
    for (int r = 0; r < R; r++) {
        const int t = r / G, first = dt_attn_first(a, t), pos = a->pos0 + t;
        const int cf = first / DT_VW, cl = pos / DT_VW; /* vector chunks of positions */
        float *s = S + (int64_t)r * ls - (int64_t)b0 * BLOCK; /* indexed by position */
        dt_vf vmax = vf_set1(-INFINITY);
        for (int c = cf; c <= cl; c++)
            vmax = vf_mask_max(vmax, vm_range(c * DT_VW, first, pos), vf_load_aligned(s + c * DT_VW));
        const dt_vf mx = vf_set1(vf_hmax(vmax));
        dt_vf vsum = vf_zero();
        for (int c = cf; c <= cl; c++) {
            const dt_vf e = vf_maskz(vm_range(c * DT_VW, first, pos),
                                     vf_exp(vf_sub(vf_load_aligned(s + c * DT_VW), mx)));
            vf_store_aligned(s + c * DT_VW, e);
            vsum = vf_add(vsum, e);
        }
        sums[r] = vf_hsum(vsum);
        float *ac = A + (int64_t)r * la;
        for (int64_t d = 0; d < la; d += DT_VW) vf_store(ac + d, vf_zero());
    }

    /* 3. values: rows in chunks of PV_ROWS. Each chunk's positions split
     * into a common range [c0, c1] that every row of the chunk covers, and
     * the ragged ends done row by row, in ascending position order. */
    const float *prow[PV_ROWS];
    float *arow[PV_ROWS];
    for (int r0 = 0; r0 < R; r0 += PV_ROWS) {
        const int nr = R - r0 < PV_ROWS ? R - r0 : PV_ROWS;
        const int ta = r0 / G, tb = (r0 + nr - 1) / G;
        const int c0 = dt_attn_first(a, tb), c1 = a->pos0 + ta;
        for (int r = 0; r < nr; r++) {
            prow[r] = S + (int64_t)(r0 + r) * ls - (int64_t)b0 * BLOCK;
            arow[r] = A + (int64_t)(r0 + r) * la;
        }
        if (c0 > c1) { /* no common range: one row at a time */
            for (int r = 0; r < nr; r++) {
                const int t = (r0 + r) / G;
                pv_rows(a->v, hd, dt_attn_first(a, t), a->pos0 + t, &prow[r], &arow[r], 1);
            }
            continue;
        }
        for (int r = 0; r < nr; r++) {
            const int t = (r0 + r) / G;
            pv_rows(a->v, hd, dt_attn_first(a, t), c0 - 1, &prow[r], &arow[r], 1);
        }
        pv_rows(a->v, hd, c0, c1, prow, arow, nr);
        for (int r = 0; r < nr; r++) {
            const int t = (r0 + r) / G;
            pv_rows(a->v, hd, c1 + 1, a->pos0 + t, &prow[r], &arow[r], 1);
        }
    }

    /* out = acc / sum */
    const int nvec = (hd + DT_VW - 1) / DT_VW;
    for (int r = 0; r < R; r++) {
        const int t = r / G, g = r % G;
        float *out = a->out + (int64_t)t * a->ldo + (int64_t)g * hd;
        const float *ac = A + (int64_t)r * la;
        const dt_vf sum = vf_set1(sums[r]);
        for (int c = 0; c < nvec; c++)
            vf_mask_store(out + c * DT_VW, vm_below(hd - c * DT_VW), vf_div(vf_load(ac + c * DT_VW), sum));
    }
}

#endif
