/* Transformer forward pass for a batch of tokens from several sequences.
 *
 * One function, dt_decode, in the spirit of llama2.c's forward(): embed
 * (times embd_scale), then per layer RMSNorm -> q/k/v (+ biases) -> [per-head
 * q/k RMSNorm] -> RoPE -> KV cache -> attention (all positions, or the
 * window in sliding layers) -> wo -> [RMSNorm] -> residual -> RMSNorm ->
 * gated FFN (SiLU or GELU) -> [RMSNorm] -> residual, then the output head
 * for the tokens whose logits are wanted. Brackets: capability flags
 * (enum dt_model_flag). Everything is f32 with exact
 * (non-fused) rounding, and every per-token computation is independent of
 * the rest of the batch, so a token's logits are bit-identical whatever it
 * is batched with.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "activation.h"
#include "attention.h"
#include "norm.h"
#include "context_internal.h"
#include "ditto.h"
#include "pool_internal.h"
#include "quant.h"

/* ---- validation ------------------------------------------------------ */

static int check_matrix(const dt_tensor *t, int64_t rows, int64_t cols) {
    if (!t->data || t->rows != rows || t->cols != cols) return DT_ERR_INVALID;
    if (dt_row_bytes(t->type, cols) < 0) return DT_ERR_UNSUPPORTED;
    return DT_OK;
}

enum { KNOWN_FLAGS = DT_ROPE_NEOX | DT_QKV_BIAS | DT_QK_NORM | DT_POST_NORMS | DT_GELU };

static int positive_finite(float v) { return v > 0 && v < INFINITY; }

/* The per-layer tensors the flags call for are present. */
static int check_layer_vectors(const dt_model *m, const dt_layer *L) {
    if (!L->attn_norm || !L->ffn_norm) return DT_ERR_INVALID;
    if ((m->flags & DT_QKV_BIAS) && (!L->bq || !L->bk || !L->bv)) return DT_ERR_INVALID;
    if ((m->flags & DT_QK_NORM) && (!L->q_norm || !L->k_norm)) return DT_ERR_INVALID;
    if ((m->flags & DT_POST_NORMS) && (!L->post_attn_norm || !L->post_ffn_norm)) return DT_ERR_INVALID;
    if (L->slides != 0 && L->slides != 1) return DT_ERR_INVALID;
    return DT_OK;
}

int dt_model_validate(const dt_model *m) {
    if (!m || !m->layers) return DT_ERR_INVALID;
    if (m->flags & ~(unsigned)KNOWN_FLAGS) return DT_ERR_UNSUPPORTED;
    if (m->n_vocab <= 0 || m->n_embd <= 0 || m->n_layer <= 0 || m->n_head <= 0 ||
        m->n_head_kv <= 0 || m->head_dim <= 0 || m->n_ff <= 0)
        return DT_ERR_INVALID;
    if (m->n_head % m->n_head_kv != 0 || m->head_dim % 2 != 0) return DT_ERR_INVALID;
    if (m->sliding_window < 0 || !(m->rms_eps >= 0) || !(m->rope_base > 0)) return DT_ERR_INVALID;
    if (!(m->rope_base_swa >= 0) || !positive_finite(m->embd_scale) || !positive_finite(m->attn_scale))
        return DT_ERR_INVALID;
    if (!m->output_norm) return DT_ERR_INVALID;
    int64_t qd = (int64_t)m->n_head * m->head_dim, kvd = (int64_t)m->n_head_kv * m->head_dim;
    int rc;
    if ((rc = check_matrix(&m->tok_embd, m->n_vocab, m->n_embd))) return rc;
    if ((rc = check_matrix(&m->output, m->n_vocab, m->n_embd))) return rc;
    for (int l = 0; l < m->n_layer; l++) {
        const dt_layer *L = &m->layers[l];
        if ((rc = check_layer_vectors(m, L))) return rc;
        if ((rc = check_matrix(&L->wq, qd, m->n_embd))) return rc;
        if ((rc = check_matrix(&L->wk, kvd, m->n_embd))) return rc;
        if ((rc = check_matrix(&L->wv, kvd, m->n_embd))) return rc;
        if ((rc = check_matrix(&L->wo, m->n_embd, qd))) return rc;
        if ((rc = check_matrix(&L->w_gate, m->n_ff, m->n_embd))) return rc;
        if ((rc = check_matrix(&L->w_up, m->n_ff, m->n_embd))) return rc;
        if ((rc = check_matrix(&L->w_down, m->n_embd, m->n_ff))) return rc;
    }
    return DT_OK;
}

/* ---- q16 repacked weights ----------------------------------------------- */

/* The matrices a forward pass multiplies (the token embedding is only read by rows). */
static int weight_matrices(dt_model *m, dt_tensor **out) {
    int n = 0;
    out[n++] = &m->output;
    for (int l = 0; l < m->n_layer; l++) {
        dt_layer *L = &m->layers[l];
        dt_tensor *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) out[n++] = ws[i];
    }
    return n;
}

enum { LAYER_MATRICES = 7 };

/* Drops the process's pages of the whole pages inside [begin, end). */
static void drop_pages(uintptr_t begin, uintptr_t end) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
    if (last > first) madvise((void *)first, last - first, MADV_DONTNEED);
}

enum { REPACK_SLICE_BYTES = 8 << 20 }; /* original bytes repacked between two page drops */

/* Repacks w into dst slice by slice (whole tiles); with drop_mapped, the
 * original's pages are dropped behind each slice, so the process never
 * holds much more than one copy of a large matrix (Gemma 3's 178 MB head). */
static int repack_matrix(dt_pool *pool, const dt_tensor *w, uint8_t *dst, int drop_mapped) {
    const int64_t rb = dt_row_bytes(w->type, w->cols), tile_bytes = dt_q16_tile_bytes(w->type, w->cols);
    int64_t slice_rows = REPACK_SLICE_BYTES / rb / DT_Q16_ROWS * DT_Q16_ROWS;
    if (slice_rows < DT_Q16_ROWS) slice_rows = DT_Q16_ROWS;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t dropped = (uintptr_t)w->data; /* pages before it are dropped */
    for (int64_t r0 = 0; r0 < w->rows; r0 += slice_rows) {
        dt_tensor slice = *w;
        slice.data = (const uint8_t *)w->data + r0 * rb;
        slice.rows = w->rows - r0 < slice_rows ? w->rows - r0 : slice_rows;
        const int rc = dt_q16_repack_tensor(pool, &slice, dst + r0 / DT_Q16_ROWS * tile_bytes);
        if (rc != DT_OK) return rc;
        if (drop_mapped) { /* a page straddling two slices goes with the later one */
            const uintptr_t end = (uintptr_t)slice.data + (uintptr_t)(slice.rows * rb);
            drop_pages(dropped, end);
            dropped = end / page * page > dropped ? end / page * page : dropped;
        }
    }
    return DT_OK;
}

int dt_model_q16_prepare(dt_model *m, int n_threads, int drop_mapped) {
    if (!m || !m->layers || m->n_layer <= 0 || n_threads < 1) return DT_ERR_INVALID;
    dt_tensor **ws = malloc(sizeof *ws * (1 + (size_t)m->n_layer * LAYER_MATRICES));
    dt_pool *pool = NULL;
    int rc = ws ? dt_pool_new(n_threads, &pool) : DT_ERR_NOMEM;
    const int n = ws ? weight_matrices(m, ws) : 0;
    for (int i = 0; i < n && rc == DT_OK; i++) {
        const int64_t bytes = dt_q16_repacked_bytes(ws[i]);
        if (ws[i]->q16 || bytes <= 0) continue;
        /* anonymous pages (64-byte aligned), populated in one go: freed whole when released */
        void *p = mmap(NULL, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (p == MAP_FAILED) {
            rc = DT_ERR_NOMEM;
            break;
        }
        if ((rc = repack_matrix(pool, ws[i], p, drop_mapped)) != DT_OK) {
            munmap(p, (size_t)bytes);
            break;
        }
        ws[i]->q16 = p;
    }
    if (pool) dt_pool_free(pool);
    free(ws);
    return rc;
}

void dt_model_q16_release(dt_model *m) {
    if (!m || !m->layers) return;
    dt_tensor **ws = malloc(sizeof *ws * (1 + (size_t)m->n_layer * LAYER_MATRICES));
    if (!ws) return;
    const int n = weight_matrices(m, ws);
    for (int i = 0; i < n; i++)
        if (ws[i]->q16) {
            munmap((void *)ws[i]->q16, (size_t)dt_q16_repacked_bytes(ws[i]));
            ws[i]->q16 = NULL;
        }
    free(ws);
}

/* ---- context ------------------------------------------------------------ */

enum {
    ATT_ROWS = 36,             /* query rows per attention tile (24 -> 36: fast's pp512 with the bf16
                                * cache +1.7%, best of 4 over 6 alternations; q16's unchanged) */
    ATT_SCRATCH = 1 << 21,     /* floats of scores per tile, at most (unless one token needs more) */
    SPLIT_TASKS = 4,           /* (tile, kv head) pairs per thread below which attention splits by chunk */
};

static float *alloc_floats(int64_t n) { return malloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t pad16(int64_t n) { return (n + 15) & ~(int64_t)15; } /* whole 64-byte lines */

void dt_context_free(dt_context *ctx) {
    if (!ctx) return;
    dt_kv_release(ctx);
    dt_pool_free(ctx->pool);
    free(ctx->seq_len);
    free(ctx->seq_lo);
    free(ctx->work);
    free(ctx->att_part); free(ctx->att_pending);
    free(ctx->rope_cos); free(ctx->rope_sin); free(ctx->inv_freq);
    free(ctx);
}

int dt_context_new(const dt_model *m, int n_seq, int n_ctx, int max_batch, int n_threads,
                   dt_context **out) {
    const dt_context_params p = {n_seq, n_ctx, max_batch, n_threads, 0, DT_F32};
    return dt_context_new_params(m, &p, out);
}

int dt_context_new_params(const dt_model *m, const dt_context_params *params, dt_context **out) {
    int rc = dt_model_validate(m);
    if (rc != DT_OK) return rc;
    if (!params) return DT_ERR_INVALID;
    const int n_seq = params->n_seq, n_ctx = params->n_ctx, max_batch = params->max_batch;
    const int n_threads = params->n_threads, ring_slots = params->ring_slots;
    if (params->kv_type != DT_F32 && params->kv_type != DT_F16 && params->kv_type != DT_BF16) return DT_ERR_INVALID;
    if (!out || n_seq < 1 || n_seq > 4096 || n_ctx < 1 || n_ctx > (1 << 24) || max_batch < 1 ||
        max_batch > (1 << 16) || n_threads < 1 || ring_slots < 0 || ring_slots > (1 << 24))
        return DT_ERR_INVALID;
    if (ring_slots > 0 && (m->sliding_window <= 0 || m->sliding_window > (1 << 24))) return DT_ERR_INVALID;
    dt_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return DT_ERR_NOMEM;
    ctx->model = m;
    ctx->n_seq = n_seq;
    ctx->n_ctx = n_ctx;
    ctx->max_batch = max_batch;
    ctx->kv_type = params->kv_type;
    ctx->kv_esize = params->kv_type == DT_F32 ? sizeof(float) : sizeof(uint16_t);
    if (ring_slots > 0) {
        int r = ring_slots > m->sliding_window ? ring_slots : m->sliding_window;
        ctx->ring = (r + DT_KV_BLOCK - 1) / DT_KV_BLOCK * DT_KV_BLOCK;
    }
    int64_t B = max_batch, E = m->n_embd, F = m->n_ff;
    int64_t qd = (int64_t)m->n_head * m->head_dim, kvd = (int64_t)m->n_head_kv * m->head_dim;
    int64_t half = m->head_dim / 2;
    ctx->seq_len = calloc((size_t)n_seq, sizeof(int));
    ctx->seq_lo = calloc((size_t)n_seq, sizeof(int));
    /* One block; buffers that are never live at once share memory (a
     * layer: xn -> q,kb,vb -> att -> proj -> xn -> gate,up -> xn -> proj):
     * att lives in xn (xn is dead from the qkv matmul until the ffn norm),
     * gate and up in q, kb, vb's place (dead after attention). */
    const int64_t n_xn = pad16(B * max64(max64(E, F), qd));
    const int64_t n_phase = max64(pad16(B * qd) + 2 * pad16(B * kvd), 2 * pad16(B * F));
    ctx->work = alloc_floats(2 * pad16(B * E) + n_xn + n_phase);
    if (ctx->work) {
        ctx->x = ctx->work;
        ctx->proj = ctx->x + pad16(B * E);
        ctx->xn = ctx->att = ctx->proj + pad16(B * E);
        ctx->q = ctx->xn + n_xn;
        ctx->kb = ctx->q + pad16(B * qd);
        ctx->vb = ctx->kb + pad16(B * kvd);
        ctx->gate = ctx->q;
        ctx->up = ctx->gate + pad16(B * F);
    }
    ctx->rope_cos = alloc_floats(2 * B * half);
    ctx->rope_sin = alloc_floats(2 * B * half);
    ctx->inv_freq = malloc((size_t)(2 * half) * sizeof(double));
    if (!ctx->seq_len || !ctx->seq_lo || !ctx->work || !ctx->rope_cos || !ctx->rope_sin || !ctx->inv_freq) {
        dt_context_free(ctx);
        return DT_ERR_NOMEM;
    }
    /* Two rope tables: the global layers' base and the sliding layers'. */
    const double bases[2] = {m->rope_base, m->rope_base_swa > 0 ? m->rope_base_swa : m->rope_base};
    for (int set = 0; set < 2; set++)
        for (int64_t i = 0; i < half; i++)
            ctx->inv_freq[set * half + i] = pow(bases[set], -2.0 * (double)i / (double)m->head_dim);
    if ((rc = dt_pool_new(n_threads, &ctx->pool)) != DT_OK || (rc = dt_kv_reserve(ctx)) != DT_OK) {
        dt_context_free(ctx);
        return rc;
    }
    /* Attention tiles: up to ATT_ROWS query rows (tokens x group), fewer
     * when the scores of a long context would not fit in ATT_SCRATCH. A
     * ring tile sees positions shifted to its first key block, at most
     * ring + 16 of them (attention_task), which it may gather into scratch;
     * a layer without a ring sees every position. */
    int group = m->n_head / m->n_head_kv;
    const int ring_span = ctx->ring ? ctx->ring + DT_KV_BLOCK : 0;
    int span = ring_span;
    for (int l = 0; l < m->n_layer; l++)
        if (!dt_kv_layer_ring(ctx, l) && span < ctx->n_ctx_pad) span = ctx->n_ctx_pad;
    int rows = (ATT_ROWS / group > 1 ? ATT_ROWS / group : 1) * group;
    while (rows > group && (int64_t)rows * span > ATT_SCRATCH) rows -= group;
    ctx->att_rows = rows;
    int64_t att_floats = (dt_attention_scratch_floats(rows, span, m->head_dim) + 15) & ~(int64_t)15;
    ctx->gather_off = att_floats;
    ctx->gather_floats = (int64_t)ring_span * m->head_dim;
    if ((rc = dt_pool_reserve_scratch(ctx->pool, att_floats + 2 * ctx->gather_floats)) != DT_OK) {
        dt_context_free(ctx);
        return rc;
    }
    /* Split attention (attention()): the partials of fewer than
     * SPLIT_TASKS * threads (tile, kv head) pairs over every position. */
    const int pairs = SPLIT_TASKS * dt_pool_threads(ctx->pool);
    ctx->att_part = alloc_floats(pairs * dt_attention_part_floats(rows, ctx->n_ctx_pad, m->head_dim));
    ctx->att_pending = calloc((size_t)pairs, sizeof *ctx->att_pending);
    if (!ctx->att_part || !ctx->att_pending) {
        dt_context_free(ctx);
        return DT_ERR_NOMEM;
    }
    *out = ctx;
    return DT_OK;
}

/* ---- per-token kernels --------------------------------------------------- */

/* Rotates each head of `v` (n_heads heads of head_dim) by the token's angles. */
static void rope(float *v, int n_heads, int head_dim, int neox, const float *c, const float *s) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            float x0 = x[a], x1 = x[b];
            x[a] = x0 * c[i] - x1 * s[i];
            x[b] = x0 * s[i] + x1 * c[i];
        }
    }
}

/* Rope tables: set 1 (sliding layers) exists when its base differs. */
static int rope_sets(const dt_model *m) {
    return m->rope_base_swa > 0 && m->rope_base_swa != m->rope_base ? 2 : 1;
}

static int layer_rope_set(const dt_model *m, const dt_layer *L) { return L->slides && rope_sets(m) == 2; }

static void add_bias(float *y, const float *b, int64_t n_tok, int64_t n) {
    if (!b) return;
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t i = 0; i < n; i++) y[t * n + i] += b[i];
}

/* ---- parallel stages -------------------------------------------------------- */

struct tile {
    int t0, n_tok; /* batch tokens t0 .. t0 + n_tok - 1 */
    int64_t task0; /* split attention: the tile's first chunk task (per kv head) */
};

struct batch {
    dt_context *ctx;
    int layer;
    int n_tok;
    const int32_t *tokens, *pos, *seq;
    struct tile *tiles;       /* attention tiles */
    int n_tiles;
    int64_t split_tasks;      /* split attention: chunk tasks per kv head */
    const dt_act_format *act; /* the next matmul's tokens: quantized into xq as they are made, or NULL */
    uint8_t *xq;
};

/* Token chunk size for the cheap elementwise stages. */
enum { TOKEN_CHUNK = 8 };

static int64_t n_chunks(int n_tok) { return (n_tok + TOKEN_CHUNK - 1) / TOKEN_CHUNK; }

/* Token t's input row of the next matmul, just written: quantized while it
 * is in L1, when that matmul takes prepared tokens (plan_prep). */
static void prep_row(const struct batch *b, int t, const float *row) {
    if (b->act) dt_act_prep(b->act, row, b->xq + (int64_t)t * b->act->tok_bytes);
}

/* Whether the next matmul, on matrices w[0..n), takes tokens prepared by
 * the task that writes its input (prep_row): where an integer path covers
 * the group with one activation format. */
static void plan_prep(struct batch *b, dt_act_format *f, int n, const dt_tensor *const *w) {
    const dt_context *ctx = b->ctx;
    b->act = NULL;
    if (dt_act_format_of(ctx->precision, n, w, f) &&
        (b->xq = dt_pool_token_buffer(ctx->pool, (int64_t)b->n_tok * f->tok_bytes)))
        b->act = f;
}

/* y[i] = w[i] x for the batch, on the tokens plan_prep arranged, else on x. */
static int layer_matmul(struct batch *b, int n, const dt_tensor *const *w, const float *x, int64_t ldx,
                        float *const *y, const int64_t *ldy) {
    dt_context *ctx = b->ctx;
    const int rc = b->act ? dt_matmul_group_prepared(ctx->pool, ctx->precision, n, w, b->act, b->xq, b->n_tok, y, ldy)
                          : dt_matmul_group(ctx->pool, ctx->precision, n, w, x, ldx, b->n_tok, y, ldy);
    b->act = NULL;
    return rc;
}

static void embed_task(void *arg, int64_t task, int thread) {
    (void)thread;
    struct batch *b = arg;
    const dt_model *m = b->ctx->model;
    int64_t row_bytes = dt_row_bytes(m->tok_embd.type, m->n_embd);
    /* q16 and fast with a tied head read rows from the head's repacked copy
     * (the mapped original's pages may have been dropped); xn row t is free now */
    const int on_tiles = b->ctx->precision == DT_PRECISION_Q16 || b->ctx->precision == DT_PRECISION_FAST;
    const int from_q16 = on_tiles && m->output.q16 && m->output.data == m->tok_embd.data;
    for (int t = (int)task * TOKEN_CHUNK; t < b->n_tok && t < (task + 1) * TOKEN_CHUNK; t++) {
        const uint8_t *row = (const uint8_t *)m->tok_embd.data + (int64_t)b->tokens[t] * row_bytes;
        float *x = b->ctx->x + (int64_t)t * m->n_embd;
        if (from_q16) {
            uint8_t *buf = (uint8_t *)(b->ctx->xn + (int64_t)t * m->n_embd);
            dt_q16_unpack(&m->output, b->tokens[t], buf);
            row = buf;
        }
        dt_dequantize_row(m->tok_embd.type, row, x, m->n_embd);
        if (m->embd_scale != 1.0f)
            for (int i = 0; i < m->n_embd; i++) x[i] *= m->embd_scale;
        const int half = m->head_dim / 2;
        for (int set = 0; set < rope_sets(m); set++) {
            const double *inv = b->ctx->inv_freq + set * half;
            const int64_t at = ((int64_t)set * b->ctx->max_batch + t) * half;
            float *c = b->ctx->rope_cos + at, *s = b->ctx->rope_sin + at;
            for (int i = 0; i < half; i++) {
                double theta = (double)b->pos[t] * inv[i];
                c[i] = (float)cos(theta);
                s[i] = (float)sin(theta);
            }
        }
    }
}

static void attn_norm_task(void *arg, int64_t task, int thread) {
    (void)thread;
    struct batch *b = arg;
    const dt_model *m = b->ctx->model;
    const float *w = m->layers[b->layer].attn_norm;
    for (int t = (int)task * TOKEN_CHUNK; t < b->n_tok && t < (task + 1) * TOKEN_CHUNK; t++) {
        float *xn = b->ctx->xn + (int64_t)t * m->n_embd;
        dt_rmsnorm(xn, b->ctx->x + (int64_t)t * m->n_embd, w, m->n_embd, m->rms_eps);
        prep_row(b, t, xn);
    }
}

/* Adds biases, norms q and k per head (DT_QK_NORM), applies RoPE to them,
 * and stores k and v in the cache. */
static void qkv_post_task(void *arg, int64_t task, int thread) {
    (void)thread;
    struct batch *b = arg;
    dt_context *ctx = b->ctx;
    const dt_model *m = ctx->model;
    const dt_layer *L = &m->layers[b->layer];
    int hd = m->head_dim, half = hd / 2;
    int64_t qd = (int64_t)m->n_head * hd, kvd = (int64_t)m->n_head_kv * hd;
    for (int t = (int)task * TOKEN_CHUNK; t < b->n_tok && t < (task + 1) * TOKEN_CHUNK; t++) {
        float *q = ctx->q + t * qd, *k = ctx->kb + t * kvd, *v = ctx->vb + t * kvd;
        add_bias(q, L->bq, 1, qd);
        add_bias(k, L->bk, 1, kvd);
        add_bias(v, L->bv, 1, kvd);
        if (m->flags & DT_QK_NORM) {
            for (int h = 0; h < m->n_head; h++) dt_rmsnorm(q + h * hd, q + h * hd, L->q_norm, hd, m->rms_eps);
            for (int h = 0; h < m->n_head_kv; h++) dt_rmsnorm(k + h * hd, k + h * hd, L->k_norm, hd, m->rms_eps);
        }
        const int64_t at = ((int64_t)layer_rope_set(m, L) * ctx->max_batch + t) * half;
        const float *c = ctx->rope_cos + at, *s = ctx->rope_sin + at;
        const int neox = (m->flags & DT_ROPE_NEOX) != 0;
        rope(q, m->n_head, hd, neox, c, s);
        rope(k, m->n_head_kv, hd, neox, c, s);
        dt_kv_store(ctx, b->layer, b->seq[t], b->pos[t], k, v);
    }
}

/* The attention tile of (tile, kv head) as the kernel sees it. A ring
 * layer's tile reads positions [lo, hi]; seen from their first key block
 * `base` (the tile's origin) they are positions lo - base .. hi - base of
 * slots starting at base % R (a multiple of 16): used in place, or gathered
 * into the thread's scratch when they wrap around the ring's end. Shifting
 * by whole blocks changes no operation of the kernel, and chunks stay at
 * absolute positions, so results equal the full cache's. Slots before lo
 * (in the first block) may hold other positions: the kernel masks them. */
static dt_attn_tile attention_tile(struct batch *b, const struct tile *tl, int kvh, int thread) {
    dt_context *ctx = b->ctx;
    const dt_model *m = ctx->model;
    int hd = m->head_dim, group = m->n_head / m->n_head_kv;
    int64_t qd = (int64_t)m->n_head * hd;
    size_t off = dt_kv_head_offset(ctx, b->layer, b->seq[tl->t0], kvh);
    const char *k = dt_kv_at(ctx, ctx->k, off), *v = dt_kv_at(ctx, ctx->v, off);
    const size_t row = (size_t)hd * ctx->kv_esize; /* bytes per position */
    int pos0 = b->pos[tl->t0], base = 0;
    if (dt_kv_layer_ring(ctx, b->layer)) {
        const int R = ctx->ring, W = m->sliding_window;
        const int lo = pos0 >= W ? pos0 - W + 1 : 0;
        base = lo / DT_KV_BLOCK * DT_KV_BLOCK;
        const int span = pos0 + tl->n_tok - base, s0 = base % R, n1 = R - s0;
        if (span <= n1) {
            k += s0 * row;
            v += s0 * row;
        } else {
            char *gk = (char *)(ctx->pool->scratch[thread] + ctx->gather_off);
            char *gv = (char *)(ctx->pool->scratch[thread] + ctx->gather_off + ctx->gather_floats);
            const int nk = (span + DT_KV_BLOCK - 1) / DT_KV_BLOCK * DT_KV_BLOCK;
            memcpy(gk, k + s0 * row, n1 * row);
            memcpy(gk + n1 * row, k, (size_t)(nk - n1) * row);
            memcpy(gv, v + s0 * row, n1 * row);
            memcpy(gv + n1 * row, v, (size_t)((span - n1 + 1) & ~1) * row); /* whole bf16 pairs */
            k = gk;
            v = gv;
        }
    }
    return (dt_attn_tile){
        .k = k,
        .v = v,
        .kv_type = ctx->kv_type,
        .q = ctx->q + (int64_t)tl->t0 * qd + (int64_t)kvh * group * hd,
        .ldq = qd,
        .out = ctx->att + (int64_t)tl->t0 * qd + (int64_t)kvh * group * hd,
        .ldo = qd,
        .head_dim = hd,
        .group = group,
        .n_tok = tl->n_tok,
        .pos0 = pos0 - base,
        .window = m->layers[b->layer].slides ? m->sliding_window : 0,
        .origin = base,
        .scale = m->attn_scale,
    };
}

/* One (tile, kv head), tasks kv-head-major so a thread's consecutive tasks
 * reuse the same keys and values. A tile is a run of consecutive tokens of
 * one sequence (built by make_tiles); every token's result is independent
 * of its tile (attention.h). */
static void attention_task(void *arg, int64_t task, int thread) {
    struct batch *b = arg;
    const dt_attn_tile a = attention_tile(b, &b->tiles[task % b->n_tiles], (int)(task / b->n_tiles), thread);
    dt_attention(&a, b->ctx->pool->scratch[thread]);
}

/* One chunk of one (tile, kv head) of a split batch: its partials, and the
 * combine by whichever task of the pair finishes last (the acq_rel count
 * makes the other tasks' partials visible to it). Tasks (kv head, tile,
 * chunk) in that order, so a thread's run streams consecutive positions. */
static void attention_chunk_task(void *arg, int64_t task, int thread) {
    struct batch *b = arg;
    dt_context *ctx = b->ctx;
    const int kvh = (int)(task / b->split_tasks);
    const int64_t t = task % b->split_tasks;
    int i = 0;
    while (i + 1 < b->n_tiles && b->tiles[i + 1].task0 <= t) i++;
    const struct tile *tl = &b->tiles[i];
    const dt_attn_tile a = attention_tile(b, tl, kvh, thread);
    const int pair = kvh * b->n_tiles + i, c = dt_attn_chunk0(&a) + (int)(t - tl->task0);
    float *part = ctx->att_part + ((int64_t)kvh * b->split_tasks + tl->task0) * ctx->att_rows *
                                      dt_attn_part_floats(a.head_dim);
    dt_attention_chunks(&a, c, c, part, ctx->pool->scratch[thread]);
    if (atomic_fetch_sub_explicit(&ctx->att_pending[pair], 1, memory_order_acq_rel) == 1)
        dt_attention_combine(&a, part);
}

/* Attention of a layer. Few (tile, kv head) pairs (decode, short verify
 * tiles) would leave threads idle: then every pair splits into one task per
 * chunk (the chunked definition makes the split invisible in the results).
 * Ring layers gather wrapped windows per task, so they do not split.
 * Measured on the 2-core EPYC host at 2048 f16 positions (SmolLM2): split
 * and per-head dispatch took the same time (~2.0 ms a token for 47 MB: both
 * threads together saturated the ~23 GB/s the shared machine gave), so the
 * gain is where one thread cannot saturate memory alone. */
static void attention(struct batch *b) {
    dt_context *ctx = b->ctx;
    const int n_kv = ctx->model->n_head_kv;
    const int pairs = b->n_tiles * n_kv;
    const int threads = dt_pool_threads(ctx->pool);
    if (dt_kv_layer_ring(ctx, b->layer) || threads == 1 || pairs >= SPLIT_TASKS * threads) {
        dt_pool_run(ctx->pool, attention_task, b, pairs);
        return;
    }
    int64_t n = 0;
    for (int i = 0; i < b->n_tiles; i++) {
        const dt_attn_tile a = attention_tile(b, &b->tiles[i], 0, 0);
        b->tiles[i].task0 = n;
        n += dt_attn_chunks(&a);
        for (int kvh = 0; kvh < n_kv; kvh++) atomic_store(&ctx->att_pending[kvh * b->n_tiles + i], dt_attn_chunks(&a));
    }
    b->split_tasks = n;
    dt_pool_run(ctx->pool, attention_chunk_task, b, n * n_kv);
}

/* Splits the batch into tiles: runs of consecutive tokens of one sequence
 * at consecutive positions, at most `max_tok` each. Returns the count. */
static int make_tiles(const int32_t *pos, const int32_t *seq, int n_tok, int max_tok, struct tile *tiles) {
    int n = 0;
    for (int t = 0; t < n_tok; t++) {
        struct tile *last = n ? &tiles[n - 1] : NULL;
        if (last && last->n_tok < max_tok && seq[t] == seq[last->t0] &&
            pos[t] == pos[last->t0] + last->n_tok)
            last->n_tok++;
        else
            tiles[n++] = (struct tile){t, 1, 0};
    }
    return n;
}

static void residual_ffn_norm_task(void *arg, int64_t task, int thread) {
    (void)thread;
    struct batch *b = arg;
    dt_context *ctx = b->ctx;
    const dt_model *m = ctx->model;
    int64_t E = m->n_embd;
    const dt_layer *L = &m->layers[b->layer];
    for (int t = (int)task * TOKEN_CHUNK; t < b->n_tok && t < (task + 1) * TOKEN_CHUNK; t++) {
        float *x = ctx->x + t * E, *p = ctx->proj + t * E;
        if (m->flags & DT_POST_NORMS) dt_rmsnorm(p, p, L->post_attn_norm, (int)E, m->rms_eps);
        for (int64_t i = 0; i < E; i++) x[i] += p[i];
        dt_rmsnorm(ctx->xn + t * E, x, L->ffn_norm, (int)E, m->rms_eps);
        prep_row(b, t, ctx->xn + t * E);
    }
}

/* h = act(gate) * up, act SiLU or GELU (DT_GELU). */
static void gated_ffn_task(void *arg, int64_t task, int thread) {
    (void)thread;
    struct batch *b = arg;
    dt_context *ctx = b->ctx;
    int64_t F = ctx->model->n_ff;
    const int gelu = (ctx->model->flags & DT_GELU) != 0;
    for (int t = (int)task * TOKEN_CHUNK; t < b->n_tok && t < (task + 1) * TOKEN_CHUNK; t++) {
        const float *g = ctx->gate + t * F, *u = ctx->up + t * F;
        (gelu ? dt_gelu_mul : dt_silu_mul)(g, u, ctx->xn + t * F, F);
        prep_row(b, t, ctx->xn + t * F);
    }
}

static void residual_task(void *arg, int64_t task, int thread) {
    (void)thread;
    struct batch *b = arg;
    dt_context *ctx = b->ctx;
    const dt_model *m = ctx->model;
    int64_t E = m->n_embd;
    for (int t = (int)task * TOKEN_CHUNK; t < b->n_tok && t < (task + 1) * TOKEN_CHUNK; t++) {
        float *p = ctx->proj + t * E;
        if (m->flags & DT_POST_NORMS) dt_rmsnorm(p, p, m->layers[b->layer].post_ffn_norm, (int)E, m->rms_eps);
        for (int64_t i = 0; i < E; i++) ctx->x[t * E + i] += p[i];
    }
}

/* ---- decode --------------------------------------------------------------------- */

/* Checks ids and that each sequence's tokens continue it in order; fills
 * new_len with the lengths after the batch. */
static int check_batch(const dt_context *ctx, int n_tok, const int32_t *tokens, const int32_t *pos,
                       const int32_t *seq, int *new_len) {
    memcpy(new_len, ctx->seq_len, (size_t)ctx->n_seq * sizeof(int));
    for (int i = 0; i < n_tok; i++) {
        if (tokens[i] < 0 || tokens[i] >= ctx->model->n_vocab) return DT_ERR_INVALID;
        if (seq[i] < 0 || seq[i] >= ctx->n_seq) return DT_ERR_INVALID;
        if (pos[i] != new_len[seq[i]]) return DT_ERR_INVALID;
        if (pos[i] >= ctx->n_ctx) return DT_ERR_CAPACITY;
        int w = ctx->model->sliding_window, need = w > 0 && pos[i] >= w ? pos[i] - w + 1 : 0;
        if (ctx->seq_lo[seq[i]] > need) return DT_ERR_EVICTED; /* the window lost positions */
        new_len[seq[i]]++;
    }
    return DT_OK;
}

/* The forward pass over tokens [0, n_tok) of a checked batch; `tiles`
 * has room for n_tok tiles. */
static int forward(dt_context *ctx, int n_tok, const int32_t *tokens, const int32_t *pos, const int32_t *seq,
                   const uint8_t *want, float *logits, struct tile *tiles) {
    const dt_model *m = ctx->model;
    dt_pool *pool = ctx->pool;
    int rc = DT_OK;
    int group = m->n_head / m->n_head_kv;
    int n_tiles = make_tiles(pos, seq, n_tok, ctx->att_rows / group, tiles);
    struct batch b = {ctx, 0, n_tok, tokens, pos, seq, tiles, n_tiles, 0};
    int64_t E = m->n_embd, F = m->n_ff;
    int64_t qd = (int64_t)m->n_head * m->head_dim, kvd = (int64_t)m->n_head_kv * m->head_dim;
    int64_t chunks = n_chunks(n_tok);

    dt_pool_run(pool, embed_task, &b, chunks);
    for (int l = 0; l < m->n_layer && rc == DT_OK; l++) {
        const dt_layer *L = &m->layers[l];
        b.layer = l;
        dt_act_format act;
        const dt_tensor *qkv_w[3] = {&L->wq, &L->wk, &L->wv};
        float *qkv_y[3] = {ctx->q, ctx->kb, ctx->vb};
        const int64_t qkv_ld[3] = {qd, kvd, kvd};
        plan_prep(&b, &act, 3, qkv_w);
        dt_pool_run(pool, attn_norm_task, &b, chunks);
        if ((rc = layer_matmul(&b, 3, qkv_w, ctx->xn, E, qkv_y, qkv_ld))) break;
        dt_pool_run(pool, qkv_post_task, &b, chunks);
        attention(&b);
        if ((rc = dt_matmul_p(pool, ctx->precision, &L->wo, ctx->att, qd, n_tok, ctx->proj, E))) break;
        const dt_tensor *ffn_w[2] = {&L->w_gate, &L->w_up};
        float *ffn_y[2] = {ctx->gate, ctx->up};
        const int64_t ffn_ld[2] = {F, F};
        plan_prep(&b, &act, 2, ffn_w);
        dt_pool_run(pool, residual_ffn_norm_task, &b, chunks);
        if ((rc = layer_matmul(&b, 2, ffn_w, ctx->xn, E, ffn_y, ffn_ld))) break;
        const dt_tensor *down_w[1] = {&L->w_down};
        float *down_y[1] = {ctx->proj};
        const int64_t down_ld[1] = {E};
        plan_prep(&b, &act, 1, down_w);
        dt_pool_run(pool, gated_ffn_task, &b, chunks);
        if ((rc = layer_matmul(&b, 1, down_w, ctx->xn, F, down_y, down_ld))) break;
        dt_pool_run(pool, residual_task, &b, chunks);
    }
    if (rc == DT_OK && want && logits) {
        /* Gather the wanted tokens' final normed states, then one matmul. */
        int n_want = 0;
        for (int t = 0; t < n_tok; t++) {
            if (!want[t]) continue;
            dt_rmsnorm(ctx->xn + (int64_t)n_want * E, ctx->x + (int64_t)t * E, m->output_norm, (int)E,
                    m->rms_eps);
            n_want++;
        }
        rc = dt_matmul_p(pool, ctx->precision, &m->output, ctx->xn, E, n_want, logits, m->n_vocab);
    }
    return rc;
}

int dt_decode(dt_context *ctx, int n_tok, const int32_t *tokens, const int32_t *pos,
              const int32_t *seq, const uint8_t *want, float *logits) {
    if (!ctx || !tokens || !pos || !seq || n_tok < 0) return DT_ERR_INVALID;
    if (n_tok == 0) return DT_OK;
    if (n_tok > ctx->max_batch) return DT_ERR_CAPACITY;
    int *new_len = malloc((size_t)ctx->n_seq * sizeof(int));
    int *count = calloc((size_t)ctx->n_seq, sizeof(int));
    struct tile *tiles = malloc((size_t)n_tok * sizeof *tiles);
    int rc = new_len && count && tiles ? check_batch(ctx, n_tok, tokens, pos, seq, new_len) : DT_ERR_NOMEM;
    /* A ring pass takes at most R - window + 1 tokens of a sequence: its
     * last token then overwrites the slot of a position just below the
     * window of its first (and of every earlier token of the batch, which
     * a previous pass has already evaluated). Batch invariance makes the
     * split invisible in the results. */
    const int per_seq = ctx->ring ? ctx->ring - ctx->model->sliding_window + 1 : n_tok;
    int start = 0, rows = 0;
    while (rc == DT_OK && start < n_tok) {
        int end = start;
        while (end < n_tok && count[seq[end]] < per_seq) count[seq[end++]]++;
        int n_want = 0;
        for (int t = start; t < end; t++) {
            count[seq[t]] = 0;
            n_want += want && want[t] ? 1 : 0;
        }
        rc = forward(ctx, end - start, tokens + start, pos + start, seq + start, want ? want + start : NULL,
                     logits ? logits + (int64_t)rows * ctx->model->n_vocab : NULL, tiles);
        rows += n_want;
        start = end;
    }
    if (rc == DT_OK) {
        for (int s = 0; s < ctx->n_seq; s++) {
            ctx->seq_len[s] = new_len[s];
            if (ctx->ring && new_len[s] - ctx->ring > ctx->seq_lo[s]) ctx->seq_lo[s] = new_len[s] - ctx->ring;
        }
    }
    free(new_len);
    free(count);
    free(tiles);
    return rc;
}
