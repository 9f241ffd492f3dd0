/* ditto native layer: the single-threaded row-range matmul.
 *
 * Y[t, r] = dot(W[r, :], X[t, :]). Rows are taken in panels of P: a panel is
 * dequantized to f32 in `scratch` (bit for bit the scalar reference), then
 * the ISA's tile kernel multiplies it with every token. Each (row, token)
 * output gets its own accumulator and exactly the operations of
 * dt_dot_f32 on that ISA, so results never depend on n_tok, the row range
 * or the panel boundaries (batch invariance).
 */
#include <stdlib.h>

#include "pool_internal.h"
#include "quant.h"

#define DT_PANEL_BYTES (32 * 1024)     /* a panel of f32 rows stays in L1 */
#define DT_XBLOCK_BYTES (768 * 1024)   /* a block of tokens' x rows stays in L2 */

/* f32 stride of a dequantized row: whole 64-byte lines. */
static int64_t panel_ld(int64_t cols) { return (cols + 15) & ~(int64_t)15; }

static int64_t panel_rows(int64_t cols) {
    int64_t p = DT_PANEL_BYTES / (4 * panel_ld(cols));
    if (p > 16) p = 16;
    p &= ~(int64_t)3;
    return p < 4 ? 4 : p;
}

/* The integer-activation paths (fast, q16) quantize up to FAST_TOK tokens
 * at a time into scratch. */
#define FAST_TOK 4

/* Bytes of one token's activations in the format of an integer path. */
static int64_t tok_bytes(int precision, int64_t cols) {
    const int64_t k = (cols + 31) / 32 * 32;
    return k / 32 * (int64_t)(precision == DT_PRECISION_Q16 ? sizeof(dt_xq16) : sizeof(dt_xq8));
}

int64_t dt_matmul_scratch_floats(int64_t cols) {
    if (cols <= 0) return 0;
    const int64_t fast = FAST_TOK * tok_bytes(DT_PRECISION_FAST, cols) / 4;
    const int64_t q16 = FAST_TOK * tok_bytes(DT_PRECISION_Q16, cols) / 4;
    int64_t need = panel_rows(cols) * panel_ld(cols);
    if (fast > need) need = fast;
    if (q16 > need) need = q16;
    return need + 16; /* + room to align to 64 bytes */
}

float dt_dot_f32(const float *a, const float *b, int64_t n) {
    if (n <= 0) return 0.0f;
    return dt_kernels_current()->dot(a, b, n);
}

/* An integer-activation kernel for one matrix's repacked tiles (w->q16):
 * the fast path's or q16's (exactly one set), or neither (the exact path).
 * Under fast, a tile type fast has no kernel for (Q6_K) runs q16: more
 * exact than fast, and on the same repacked copy (exact would read the
 * mapped original back in). */
typedef struct {
    int precision; /* of the kernel: the activations' format */
    int32_t offset; /* fast: the code offset c the tokens are prepared for */
    dt_fast_fn fast;
    dt_q16_fn q16;
} int_kernel;

static int_kernel int_kernel_of(int precision, const dt_tensor *w) {
    int_kernel k = {precision, 0, NULL, NULL};
    if (w->type < 0 || w->type >= DT_TYPE_MAX || !w->q16 || !dt_q16_type(w->type)) return k;
    const dt_kernels *cur = dt_kernels_current();
    if (precision == DT_PRECISION_FAST && cur->fast[w->type]) {
        k.fast = cur->fast[w->type];
        k.offset = dt_q16_code_offset(w->type);
    } else if (precision != DT_PRECISION_EXACT) {
        k.precision = DT_PRECISION_Q16;
        k.q16 = cur->q16[w->type];
    }
    return k;
}
static int int_covered(const int_kernel *k) { return k->fast || k->q16; }

/* Quantizes one token for an integer path. */
static void int_prep(const int_kernel *k, const float *x, int64_t cols, void *out) {
    const dt_kernels *cur = dt_kernels_current();
    if (k->precision == DT_PRECISION_Q16)
        (cur->q16_prep ? cur->q16_prep : dt_q16_prep)(x, cols, out);
    else
        (cur->fast_prep ? cur->fast_prep : dt_fast_prep)(x, cols, k->offset, out);
}

/* Rows [row_begin, row_end) of an integer path for tokens already prepared
 * (xp: n_tok tokens, tok_bytes apart), tile by tile: a tile stays in L1
 * while the tokens stream past. */
static void int_rows(const int_kernel *k, const dt_tensor *w, const void *xp, int64_t n_tok, float *y,
                     int64_t ldy, int64_t row_begin, int64_t row_end) {
    const int64_t tb = tok_bytes(k->precision, w->cols);
    const int64_t nb = w->cols / 32, tile_bytes = dt_q16_tile_bytes(w->type, w->cols);
    for (int64_t t = row_begin / DT_Q16_ROWS; t * DT_Q16_ROWS < row_end; t++) {
        const int64_t r0 = t * DT_Q16_ROWS;
        const int lane0 = row_begin > r0 ? (int)(row_begin - r0) : 0;
        const int lane1 = row_end - r0 < DT_Q16_ROWS ? (int)(row_end - r0) : DT_Q16_ROWS;
        const uint8_t *tile = (const uint8_t *)w->q16 + t * tile_bytes;
        if (k->q16)
            k->q16(tile, nb, xp, tb / (int64_t)sizeof(dt_xq16), n_tok, y + r0, ldy, lane0, lane1);
        else
            k->fast(tile, nb, xp, tb / (int64_t)sizeof(dt_xq8), n_tok, y + r0, ldy, lane0, lane1);
    }
}

static int valid_precision(int precision) {
    return precision == DT_PRECISION_EXACT || precision == DT_PRECISION_FAST || precision == DT_PRECISION_Q16;
}

int dt_matmul_rows(const dt_tensor *w, const float *x, int64_t ldx, int64_t n_tok,
                   float *y, int64_t ldy, int64_t row_begin, int64_t row_end,
                   float *scratch) {
    return dt_matmul_rows_p(DT_PRECISION_EXACT, w, x, ldx, n_tok, y, ldy, row_begin, row_end, scratch);
}

int dt_matmul_rows_p(int precision, const dt_tensor *w, const float *x, int64_t ldx, int64_t n_tok,
                     float *y, int64_t ldy, int64_t row_begin, int64_t row_end, float *scratch) {
    if (!valid_precision(precision)) return DT_ERR_INVALID;
    if (!w || !w->data || w->cols <= 0 || w->rows < 0) return DT_ERR_INVALID;
    int bs, ts;
    if (dt_type_layout(w->type, &bs, &ts) != DT_OK) return DT_ERR_UNSUPPORTED;
    const int64_t cols = w->cols;
    if (cols % bs || row_begin < 0 || row_end > w->rows || row_begin > row_end || n_tok < 0)
        return DT_ERR_INVALID;
    if (n_tok == 0 || row_begin == row_end) return DT_OK;
    if (!x || !y || ldx < cols || (n_tok > 1 && ldy < row_end)) return DT_ERR_INVALID;

    const int_kernel ik = int_kernel_of(precision, w);
    if (int_covered(&ik)) { /* quantize FAST_TOK tokens at a time into scratch */
        if (!scratch) return DT_ERR_INVALID;
        uint8_t *xp = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
        const int64_t tb = tok_bytes(ik.precision, cols);
        for (int64_t t0 = 0; t0 < n_tok; t0 += FAST_TOK) {
            const int64_t nt = n_tok - t0 < FAST_TOK ? n_tok - t0 : FAST_TOK;
            for (int64_t t = 0; t < nt; t++) int_prep(&ik, x + (t0 + t) * ldx, cols, xp + t * tb);
            int_rows(&ik, w, xp, nt, y + t0 * ldy, ldy, row_begin, row_end);
        }
        return DT_OK;
    }

    const dt_kernels *k = dt_kernels_current();
    const int64_t row_bytes = cols / bs * ts;
    const uint8_t *base = (const uint8_t *)w->data;

    /* Big batches go in blocks of tokens whose x fits in L2; each block
     * dequantizes the panels again (a few percent), which beats streaming
     * x from L3 for every panel. */
    int64_t tb = DT_XBLOCK_BYTES / (4 * cols);
    tb = tb < 6 ? 6 : tb - tb % 6;
    const int64_t p = panel_rows(cols);

    if (w->type == DT_F32) { /* rows are used in place */
        for (int64_t t0 = 0; t0 < n_tok; t0 += tb) {
            const int64_t nt = n_tok - t0 < tb ? n_tok - t0 : tb;
            for (int64_t r0 = row_begin; r0 < row_end; r0 += p) {
                const int64_t nr = row_end - r0 < p ? row_end - r0 : p;
                k->gemm((const float *)(base + r0 * row_bytes), cols, nr, x + t0 * ldx, ldx, nt,
                        y + t0 * ldy + r0, ldy, cols);
            }
        }
        return DT_OK;
    }

    if (n_tok <= k->fused_max_tok && k->fused[w->type]) { /* decode: no round trip through scratch */
        k->fused[w->type](base + row_begin * row_bytes, row_bytes, row_end - row_begin, x, ldx, n_tok,
                          y + row_begin, ldy, cols);
        return DT_OK;
    }
    if (!scratch) return DT_ERR_INVALID;
    dt_dequant_fn deq = k->dequant[w->type] ? k->dequant[w->type] : dt_kernels_scalar.dequant[w->type];
    float *panel = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    const int64_t ld = panel_ld(cols), nb = cols / bs;
    for (int64_t t0 = 0; t0 < n_tok; t0 += tb) {
        const int64_t nt = n_tok - t0 < tb ? n_tok - t0 : tb;
        for (int64_t r0 = row_begin; r0 < row_end; r0 += p) {
            const int64_t nr = row_end - r0 < p ? row_end - r0 : p;
            for (int64_t r = 0; r < nr; r++) deq(base + (r0 + r) * row_bytes, panel + r * ld, nb);
            k->gemm(panel, ld, nr, x + t0 * ldx, ldx, nt, y + t0 * ldy + r0, ldy, cols);
        }
    }
    return DT_OK;
}

/* ---- threaded matmul: split rows into panels, never the reduction ---- */

enum { MATMUL_PANEL_ROWS = 32 };

struct matmul_job {
    dt_pool *pool;
    int precision;
    const dt_tensor *w;
    const float *x;
    int64_t ldx, n_tok;
    float *y;
    int64_t ldy;
    int64_t panel_rows;
    int_kernel ik;         /* integer path: tokens prepared once in xp, shared by all panels */
    const void *xp;
};

static void matmul_task(void *arg, int64_t task, int thread) {
    struct matmul_job *job = arg;
    int64_t begin = task * job->panel_rows;
    int64_t end = begin + job->panel_rows;
    if (end > job->w->rows) end = job->w->rows;
    if (int_covered(&job->ik))
        int_rows(&job->ik, job->w, job->xp, job->n_tok, job->y, job->ldy, begin, end);
    else
        dt_matmul_rows_p(job->precision, job->w, job->x, job->ldx, job->n_tok, job->y, job->ldy, begin, end,
                         job->pool->scratch[thread]);
}

struct prep_job {
    const int_kernel *ik;
    const float *x;
    int64_t ldx, cols, tb;
    uint8_t *xp;
};

static void prep_task(void *arg, int64_t t, int thread) {
    (void)thread;
    struct prep_job *job = arg;
    int_prep(job->ik, job->x + t * job->ldx, job->cols, job->xp + t * job->tb);
}

int dt_matmul(dt_pool *pool, const dt_tensor *w, const float *x, int64_t ldx,
              int64_t n_tok, float *y, int64_t ldy) {
    return dt_matmul_p(pool, DT_PRECISION_EXACT, w, x, ldx, n_tok, y, ldy);
}

/* An integer path's tokens, quantized once for all panels (and matrices)
 * of a dispatch: n_tok rows of tok_bytes in the pool's token buffer. NULL if
 * out of memory. */
static void *prep_tokens(dt_pool *pool, const int_kernel *ik, const float *x, int64_t ldx, int64_t cols,
                         int64_t n_tok) {
    const int64_t tb = tok_bytes(ik->precision, cols);
    uint8_t *buf = dt_pool_token_buffer(pool, n_tok * tb);
    if (!buf) return NULL;
    struct prep_job pj = {ik, x, ldx, cols, tb, buf};
    if (n_tok <= FAST_TOK) /* decode: a few microseconds, less than a dispatch */
        for (int64_t t = 0; t < n_tok; t++) prep_task(&pj, t, 0);
    else
        dt_pool_run(pool, prep_task, &pj, n_tok);
    return buf;
}

int dt_matmul_p(dt_pool *pool, int precision, const dt_tensor *w, const float *x, int64_t ldx,
                int64_t n_tok, float *y, int64_t ldy) {
    if (!pool || !w || !x || !y || n_tok < 0 || ldx < w->cols || ldy < w->rows) return DT_ERR_INVALID;
    if (!valid_precision(precision)) return DT_ERR_INVALID;
    int rc = dt_pool_reserve_scratch(pool, dt_matmul_scratch_floats(w->cols));
    if (rc != DT_OK) return rc;
    struct matmul_job job = {pool, precision, w, x, ldx, n_tok, y, ldy, MATMUL_PANEL_ROWS, {precision, 0, NULL, NULL}, NULL};
    int64_t n_panels = (w->rows + job.panel_rows - 1) / job.panel_rows;
    if (n_tok == 0 || n_panels == 0) return DT_OK;
    job.ik = int_kernel_of(precision, w);
    if (int_covered(&job.ik)) { /* validate as dt_matmul_rows_p would, then quantize every token once */
        int bs;
        if (dt_type_layout(w->type, &bs, NULL) != DT_OK || w->cols <= 0 || w->cols % bs || !w->data)
            return DT_ERR_INVALID;
        if (!(job.xp = prep_tokens(pool, &job.ik, x, ldx, w->cols, n_tok))) return DT_ERR_NOMEM;
    }
    dt_pool_run(pool, matmul_task, &job, n_panels);
    return DT_OK;
}

/* ---- several matrices over the same input in one dispatch ------------------- */

enum { GROUP_MAX = 4 };

struct group_job {
    dt_pool *pool;
    int n;
    const dt_tensor *w[GROUP_MAX];
    float *y[GROUP_MAX];
    int64_t ldy[GROUP_MAX];
    int64_t first_panel[GROUP_MAX + 1];   /* panels of matrices before i */
    const float *x;
    int64_t ldx, n_tok;
    int_kernel ik[GROUP_MAX]; /* integer path: every matrix's kernel, tokens prepared once in xp */
    const void *xp;
};

static void group_task(void *arg, int64_t task, int thread) {
    struct group_job *job = arg;
    int i = 0;
    while (task >= job->first_panel[i + 1]) i++;
    int64_t begin = (task - job->first_panel[i]) * MATMUL_PANEL_ROWS;
    int64_t end = begin + MATMUL_PANEL_ROWS;
    if (end > job->w[i]->rows) end = job->w[i]->rows;
    if (int_covered(&job->ik[i]))
        int_rows(&job->ik[i], job->w[i], job->xp, job->n_tok, job->y[i], job->ldy[i], begin, end);
    else
        dt_matmul_rows_p(DT_PRECISION_EXACT, job->w[i], job->x, job->ldx, job->n_tok, job->y[i], job->ldy[i],
                         begin, end, job->pool->scratch[thread]);
}

/* 1 if the integer path covers every matrix of the group with one
 * activation format (same width; the fast path: same code offset too), so the
 * tokens are quantized once; 0 if it covers none (the group runs exact); -1
 * otherwise. */
static int group_int(int precision, int n, const dt_tensor *const *w) {
    int covered = 0;
    for (int i = 0; i < n; i++) {
        const int_kernel ik = int_kernel_of(precision, w[i]);
        covered += int_covered(&ik);
    }
    if (covered == 0) return 0;
    if (covered < n) return -1;
    const int_kernel first = int_kernel_of(precision, w[0]);
    for (int i = 1; i < n; i++) {
        const int_kernel ik = int_kernel_of(precision, w[i]);
        if (ik.precision != first.precision || ik.offset != first.offset || w[i]->cols != w[0]->cols) return -1;
    }
    return 1;
}

/* The group's job (n matrices, y, ldy) after checking every argument but
 * the input; DT_OK or an error. */
static int group_job_of(dt_pool *pool, int n, const dt_tensor *const *w, int64_t n_tok, float *const *y,
                        const int64_t *ldy, struct group_job *job) {
    *job = (struct group_job){.pool = pool, .n = n, .n_tok = n_tok};
    int64_t max_cols = 0;
    for (int i = 0; i < n; i++) {
        if (!y[i] || n_tok < 0 || ldy[i] < w[i]->rows) return DT_ERR_INVALID;
        job->w[i] = w[i];
        job->y[i] = y[i];
        job->ldy[i] = ldy[i];
        job->first_panel[i + 1] = job->first_panel[i] + (w[i]->rows + MATMUL_PANEL_ROWS - 1) / MATMUL_PANEL_ROWS;
        if (w[i]->cols > max_cols) max_cols = w[i]->cols;
    }
    return dt_pool_reserve_scratch(pool, dt_matmul_scratch_floats(max_cols));
}

/* Every matrix's integer kernel, after checking its layout. */
static int group_kernels(int precision, int n, const dt_tensor *const *w, struct group_job *job) {
    for (int i = 0; i < n; i++) {
        int bs;
        if (dt_type_layout(w[i]->type, &bs, NULL) != DT_OK || w[i]->cols % bs || !w[i]->data) return DT_ERR_INVALID;
        job->ik[i] = int_kernel_of(precision, w[i]);
    }
    return DT_OK;
}

static int group_args_ok(dt_pool *pool, int precision, int n, const dt_tensor *const *w, float *const *y,
                         const int64_t *ldy) {
    if (!pool || n < 1 || n > GROUP_MAX || !w || !y || !ldy || !valid_precision(precision)) return 0;
    for (int i = 0; i < n; i++)
        if (!w[i]) return 0;
    return 1;
}

int dt_matmul_group(dt_pool *pool, int precision, int n, const dt_tensor *const *w, const float *x,
                    int64_t ldx, int64_t n_tok, float *const *y, const int64_t *ldy) {
    if (!group_args_ok(pool, precision, n, w, y, ldy)) return DT_ERR_INVALID;
    const int ints = group_int(precision, n, w);
    if (ints < 0) {
        /* activations quantized per matrix type: one dispatch each */
        for (int i = 0; i < n; i++) {
            int rc = dt_matmul_p(pool, precision, w[i], x, ldx, n_tok, y[i], ldy[i]);
            if (rc != DT_OK) return rc;
        }
        return DT_OK;
    }
    struct group_job job;
    int rc = group_job_of(pool, n, w, n_tok, y, ldy, &job);
    if (rc != DT_OK) return rc;
    for (int i = 0; i < n; i++)
        if (!x || ldx < w[i]->cols) return DT_ERR_INVALID;
    job.x = x;
    job.ldx = ldx;
    if (n_tok == 0) return DT_OK;
    if (ints) {
        if ((rc = group_kernels(precision, n, w, &job)) != DT_OK) return rc;
        if (!(job.xp = prep_tokens(pool, &job.ik[0], x, ldx, w[0]->cols, n_tok))) return DT_ERR_NOMEM;
    }
    dt_pool_run(pool, group_task, &job, job.first_panel[n]);
    return DT_OK;
}

/* ---- tokens quantized by the caller ------------------------------------------- */

int dt_act_format_of(int precision, int n, const dt_tensor *const *w, dt_act_format *f) {
    if (n < 1 || n > GROUP_MAX || !w || !valid_precision(precision)) return 0;
    for (int i = 0; i < n; i++)
        if (!w[i]) return 0;
    if (group_int(precision, n, w) != 1) return 0;
    const int_kernel ik = int_kernel_of(precision, w[0]);
    *f = (dt_act_format){ik.precision, ik.offset, w[0]->cols, tok_bytes(ik.precision, w[0]->cols)};
    return 1;
}

void dt_act_prep(const dt_act_format *f, const float *x, void *out) {
    const int_kernel ik = {f->precision, f->offset, NULL, NULL};
    int_prep(&ik, x, f->cols, out);
}

int dt_matmul_group_prepared(dt_pool *pool, int precision, int n, const dt_tensor *const *w,
                             const dt_act_format *f, const void *xq, int64_t n_tok, float *const *y,
                             const int64_t *ldy) {
    dt_act_format own;
    if (!group_args_ok(pool, precision, n, w, y, ldy) || !f || !dt_act_format_of(precision, n, w, &own) ||
        own.precision != f->precision || own.offset != f->offset || own.cols != f->cols || (n_tok > 0 && !xq))
        return DT_ERR_INVALID;
    struct group_job job;
    int rc = group_job_of(pool, n, w, n_tok, y, ldy, &job);
    if (rc != DT_OK || n_tok == 0) return rc;
    if ((rc = group_kernels(precision, n, w, &job)) != DT_OK) return rc;
    job.xp = xq;
    dt_pool_run(pool, group_task, &job, job.first_panel[n]);
    return DT_OK;
}
