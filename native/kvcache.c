/* KV cache storage and sequence state: length, truncate (restore to a
 * checkpoint), copy, and save / load to bytes.
 *
 * Keys and values are kept in f32, so a restored or loaded sequence
 * continues bit-exactly. Truncation is all a restore needs: positions past
 * a sequence's length never reach a result (attention masks them).
 * Keys live in blocks of 16 positions (context_internal.h); the saved
 * state holds them row by row, [pos][head_dim], like the values, so its
 * bytes depend only on the sequence's contents, not on the block layout.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "context_internal.h"
#include "ditto.h"

/* ---- reservation ---------------------------------------------------------- */

static float *reserve_floats(size_t n) {
    void *p = mmap(NULL, n * sizeof(float), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int dt_kv_reserve(struct dt_context *ctx) {
    const dt_model *m = ctx->model;
    ctx->n_ctx_pad = (ctx->n_ctx + DT_KV_BLOCK - 1) / DT_KV_BLOCK * DT_KV_BLOCK;
    ctx->kv_floats = (size_t)m->n_layer * ctx->n_seq * m->n_head_kv * ctx->n_ctx_pad * m->head_dim;
    ctx->k = reserve_floats(ctx->kv_floats);
    ctx->v = reserve_floats(ctx->kv_floats);
    return ctx->k && ctx->v ? DT_OK : DT_ERR_NOMEM;
}

void dt_kv_release(struct dt_context *ctx) {
    if (ctx->k) munmap(ctx->k, ctx->kv_floats * sizeof(float));
    if (ctx->v) munmap(ctx->v, ctx->kv_floats * sizeof(float));
    ctx->k = ctx->v = NULL;
}

int dt_context_set_precision(dt_context *ctx, int precision) {
    if (!ctx || (precision != DT_PRECISION_EXACT && precision != DT_PRECISION_FAST)) return DT_ERR_INVALID;
    ctx->precision = precision;
    return DT_OK;
}

/* ---- sequence operations ---------------------------------------------------- */

int dt_seq_len(const dt_context *ctx, int seq) {
    if (!ctx || seq < 0 || seq >= ctx->n_seq) return DT_ERR_INVALID;
    return ctx->seq_len[seq];
}

int dt_seq_truncate(dt_context *ctx, int seq, int n_keep) {
    if (!ctx || seq < 0 || seq >= ctx->n_seq || n_keep < 0) return DT_ERR_INVALID;
    if (n_keep < ctx->seq_len[seq]) ctx->seq_len[seq] = n_keep;
    return DT_OK;
}

int dt_seq_copy(dt_context *ctx, int src, int dst, int n) {
    if (!ctx || src < 0 || src >= ctx->n_seq || dst < 0 || dst >= ctx->n_seq) return DT_ERR_INVALID;
    if (n < 0 || n > ctx->seq_len[src]) return DT_ERR_INVALID;
    if (src == dst) {
        ctx->seq_len[dst] = n;
        return DT_OK;
    }
    const dt_model *m = ctx->model;
    /* Whole key blocks: the last one may hold stale positions >= n, which
     * are never used. */
    size_t k_span = (size_t)((n + DT_KV_BLOCK - 1) / DT_KV_BLOCK) * DT_KV_BLOCK * m->head_dim * sizeof(float);
    size_t v_span = (size_t)n * m->head_dim * sizeof(float);
    for (int l = 0; l < m->n_layer; l++)
        for (int h = 0; h < m->n_head_kv; h++) {
            size_t d = dt_kv_head_offset(ctx, l, dst, h), s = dt_kv_head_offset(ctx, l, src, h);
            memcpy(ctx->k + d, ctx->k + s, k_span);
            memcpy(ctx->v + d, ctx->v + s, v_span);
        }
    ctx->seq_len[dst] = n;
    return DT_OK;
}

/* ---- save / load ---------------------------------------------------------------- */

enum { STATE_MAGIC = 0x564b5444 /* "DTKV" */, STATE_VERSION = 2 };

/* Fixed-size header in front of the payload (K then V of each layer and kv
 * head, positions [0, n_pos)). The checksum covers the payload. */
struct state_header {
    uint32_t magic, version;
    uint64_t model_id;      /* dt_model.id: which model file wrote it */
    uint32_t n_layer, n_head_kv, head_dim, n_embd, n_vocab;
    uint32_t n_pos;
    uint64_t checksum;
};

static uint64_t checksum(const void *data, size_t len) {
    /* FNV-1a over 64-bit words: fast enough for megabytes, catches any
     * flipped or truncated word. len is a multiple of 4; pad the tail. */
    const uint8_t *p = data;
    uint64_t h = 1469598103934665603ull;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 1099511628211ull;
    }
    for (; i < len; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Blocked keys of one region -> rows [pos][head_dim] for pos < n, and back.
 * `rows` may be unaligned (it points into a caller's buffer): memcpy. */
static void keys_to_rows(const float *k, int hd, int n, float *rows) {
    uint8_t *out = (uint8_t *)rows;
    for (int j = 0; j < n; j++)
        for (int d = 0; d < hd; d++)
            memcpy(out + ((size_t)j * hd + d) * sizeof(float), k + dt_k_index(hd, j, d), sizeof(float));
}

static void rows_to_keys(const float *rows, int hd, int n, float *k) {
    const uint8_t *in = (const uint8_t *)rows;
    for (int j = 0; j < n; j++)
        for (int d = 0; d < hd; d++)
            memcpy(k + dt_k_index(hd, j, d), in + ((size_t)j * hd + d) * sizeof(float), sizeof(float));
}

int64_t dt_seq_state_size(const dt_context *ctx, int seq) {
    if (!ctx || seq < 0 || seq >= ctx->n_seq) return DT_ERR_INVALID;
    const dt_model *m = ctx->model;
    return (int64_t)sizeof(struct state_header) +
           2 * (int64_t)m->n_layer * m->n_head_kv * ctx->seq_len[seq] * m->head_dim * (int64_t)sizeof(float);
}

static void fill_header(const dt_context *ctx, int n_pos, struct state_header *h) {
    const dt_model *m = ctx->model;
    memset(h, 0, sizeof *h);
    h->magic = STATE_MAGIC;
    h->version = STATE_VERSION;
    h->model_id = m->id;
    h->n_layer = (uint32_t)m->n_layer;
    h->n_head_kv = (uint32_t)m->n_head_kv;
    h->head_dim = (uint32_t)m->head_dim;
    h->n_embd = (uint32_t)m->n_embd;
    h->n_vocab = (uint32_t)m->n_vocab;
    h->n_pos = (uint32_t)n_pos;
}

int dt_seq_state_save(const dt_context *ctx, int seq, void *buf, int64_t cap, int64_t *written) {
    int64_t size = dt_seq_state_size(ctx, seq);
    if (size < 0 || !buf || !written) return DT_ERR_INVALID;
    if (cap < size) return DT_ERR_CAPACITY;
    const dt_model *m = ctx->model;
    int n = ctx->seq_len[seq];
    size_t span = (size_t)n * m->head_dim * sizeof(float);
    uint8_t *payload = (uint8_t *)buf + sizeof(struct state_header), *p = payload;
    for (int l = 0; l < m->n_layer; l++)
        for (int h = 0; h < m->n_head_kv; h++) {
            size_t off = dt_kv_head_offset(ctx, l, seq, h);
            keys_to_rows(ctx->k + off, m->head_dim, n, (float *)p);
            p += span;
            memcpy(p, ctx->v + off, span);
            p += span;
        }
    struct state_header hdr;
    fill_header(ctx, n, &hdr);
    hdr.checksum = checksum(payload, (size_t)(p - payload));
    memcpy(buf, &hdr, sizeof hdr);
    *written = size;
    return DT_OK;
}

int dt_seq_state_load(dt_context *ctx, int seq, const void *buf, int64_t len) {
    if (!ctx || seq < 0 || seq >= ctx->n_seq || !buf) return DT_ERR_INVALID;
    struct state_header hdr, want;
    if (len < (int64_t)sizeof hdr) return DT_ERR_STATE;
    memcpy(&hdr, buf, sizeof hdr);
    if (hdr.n_pos > (uint32_t)ctx->n_ctx) return DT_ERR_CAPACITY;
    fill_header(ctx, (int)hdr.n_pos, &want);
    want.checksum = hdr.checksum;
    if (memcmp(&hdr, &want, sizeof hdr) != 0) return DT_ERR_STATE;
    const dt_model *m = ctx->model;
    size_t span = (size_t)hdr.n_pos * m->head_dim * sizeof(float);
    size_t payload_len = 2 * span * m->n_layer * m->n_head_kv;
    if ((uint64_t)len != sizeof hdr + payload_len) return DT_ERR_STATE;
    const uint8_t *payload = (const uint8_t *)buf + sizeof hdr, *p = payload;
    if (checksum(payload, payload_len) != hdr.checksum) return DT_ERR_STATE;
    for (int l = 0; l < m->n_layer; l++)
        for (int h = 0; h < m->n_head_kv; h++) {
            size_t off = dt_kv_head_offset(ctx, l, seq, h);
            rows_to_keys((const float *)p, m->head_dim, (int)hdr.n_pos, ctx->k + off);
            p += span;
            memcpy(ctx->v + off, p, span);
            p += span;
        }
    ctx->seq_len[seq] = (int)hdr.n_pos;
    return DT_OK;
}
