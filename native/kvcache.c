/* KV cache storage and sequence state: length, truncate (restore to a
 * checkpoint), copy, checkpoints, and save / load to bytes.
 *
 * Keys and values are kept in the context's kv_type (f32, or f16 / bf16
 * rounded once when stored), and saved, checkpointed and copied in it, so a
 * restored or loaded sequence continues bit-exactly. With a full cache, truncation is all a restore
 * needs: positions past a sequence's length never reach a result
 * (attention masks them). A ring (dt_context_params.ring_slots) in the
 * sliding layers overwrites the slot of position p - R when it stores p,
 * so those layers hold only [lo, len) (the global layers keep [0, len)):
 * truncation is refused when the kept length's window reaches below lo,
 * and a checkpoint copies the ring slots the next pass will overwrite.
 * Keys live in blocks of 16 slots (context_internal.h); saved states and
 * checkpoints hold them row by row, [pos][head_dim], like the values, so
 * their bytes depend only on the sequence's contents, not on the layout.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "attention.h"
#include "context_internal.h"
#include "ditto.h"

/* ---- reservation ---------------------------------------------------------- */

static void *reserve_bytes(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return NULL;
#ifdef MADV_NOHUGEPAGE
    /* Where transparent huge pages are on for every mapping, the first
     * position written in a region would commit 2 MB, i.e. several whole
     * (layer, seq, head) regions: the cache would stop growing with the
     * tokens held. Advice only; an error changes nothing. */
    madvise(p, n, MADV_NOHUGEPAGE);
#endif
    return p;
}

int dt_kv_reserve(struct dt_context *ctx) {
    const dt_model *m = ctx->model;
    ctx->n_ctx_pad = (ctx->n_ctx + DT_KV_BLOCK - 1) / DT_KV_BLOCK * DT_KV_BLOCK;
    ctx->layer_off = malloc((size_t)m->n_layer * sizeof *ctx->layer_off);
    if (!ctx->layer_off) return DT_ERR_NOMEM;
    /* Checked: the dimensions come from a model file, and a wrapped size
     * would map less than the offsets (dt_kv_head_offset) reach. */
    size_t total = 0;
    for (int l = 0; l < m->n_layer; l++) {
        size_t n = 1;
        const int64_t dims[] = {ctx->n_seq, m->n_head_kv, dt_kv_layer_slots(ctx, l), m->head_dim};
        for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
            if (dims[i] <= 0 || __builtin_mul_overflow(n, (size_t)dims[i], &n)) return DT_ERR_NOMEM;
        ctx->layer_off[l] = total;
        if (__builtin_add_overflow(total, n, &total)) return DT_ERR_NOMEM;
    }
    size_t bytes;
    if (__builtin_mul_overflow(total, ctx->kv_esize, &bytes)) return DT_ERR_NOMEM;
    ctx->kv_elems = total;
    ctx->k = reserve_bytes(bytes);
    ctx->v = reserve_bytes(bytes);
    return ctx->k && ctx->v ? DT_OK : DT_ERR_NOMEM;
}

void dt_kv_release(struct dt_context *ctx) {
    if (ctx->k) munmap(ctx->k, ctx->kv_elems * ctx->kv_esize);
    if (ctx->v) munmap(ctx->v, ctx->kv_elems * ctx->kv_esize);
    ctx->k = ctx->v = NULL;
    free(ctx->layer_off);
    ctx->layer_off = NULL;
}

int64_t dt_context_kv_bytes(const dt_context *ctx) {
    return ctx ? (int64_t)(2 * ctx->kv_elems * ctx->kv_esize) : DT_ERR_INVALID;
}

/* Elements per conversion call when storing f16 / bf16 keys and values (a
 * stack buffer). */
enum { STORE_CHUNK = 64 };

void dt_kv_store(struct dt_context *ctx, int layer, int seq, int pos, const float *k, const float *v) {
    const int hd = ctx->model->head_dim, slot = dt_kv_slot(ctx, layer, pos);
    for (int h = 0; h < ctx->model->n_head_kv; h++) {
        const size_t off = dt_kv_head_offset(ctx, layer, seq, h);
        const float *kh = k + (size_t)h * hd, *vh = v + (size_t)h * hd;
        if (ctx->kv_type == DT_F32) {
            float *kc = dt_kv_at(ctx, ctx->k, off), *vc = dt_kv_at(ctx, ctx->v, off);
            for (int d = 0; d < hd; d++) kc[dt_k_index(ctx, slot, d)] = kh[d];
            memcpy(vc + dt_v_index(ctx, slot, 0), vh, (size_t)hd * sizeof(float));
            continue;
        }
        /* f16 / bf16: converted in chunks, then spread over the layout. */
        uint16_t *kc = dt_kv_at(ctx, ctx->k, off), *vc = dt_kv_at(ctx, ctx->v, off), half[STORE_CHUNK];
        for (int i = 0; i < 2; i++) {
            const float *x = i ? vh : kh;
            for (int d0 = 0; d0 < hd; d0 += STORE_CHUNK) {
                const int n = hd - d0 < STORE_CHUNK ? hd - d0 : STORE_CHUNK;
                (ctx->kv_type == DT_F16 ? dt_f16_from_f32 : dt_bf16_from_f32)(x + d0, half, n);
                for (int d = 0; d < n; d++) {
                    if (i)
                        vc[dt_v_index(ctx, slot, d0 + d)] = half[d];
                    else
                        kc[dt_k_index(ctx, slot, d0 + d)] = half[d];
                }
            }
        }
    }
}

int dt_context_set_precision(dt_context *ctx, int precision) {
    if (!ctx || precision < DT_PRECISION_EXACT || precision > DT_PRECISION_Q16) return DT_ERR_INVALID;
    ctx->precision = precision;
    return DT_OK;
}

/* ---- sequence operations ---------------------------------------------------- */

int dt_context_ring_slots(const dt_context *ctx) { return ctx ? ctx->ring : DT_ERR_INVALID; }

int dt_context_kv_type(const dt_context *ctx) { return ctx ? ctx->kv_type : DT_ERR_INVALID; }

int dt_seq_len(const dt_context *ctx, int seq) {
    if (!ctx || seq < 0 || seq >= ctx->n_seq) return DT_ERR_INVALID;
    return ctx->seq_len[seq];
}

int dt_seq_held_from(const dt_context *ctx, int seq) {
    if (!ctx || seq < 0 || seq >= ctx->n_seq) return DT_ERR_INVALID;
    return ctx->seq_lo[seq];
}

/* Whether positions [lo, n) serve a sequence of length n: the window of its
 * next position, [n - window + 1, n), is all held. */
static int window_held(const dt_context *ctx, int lo, int n) {
    int w = ctx->model->sliding_window;
    int need = (w > 0 && n >= w) ? n - w + 1 : 0;
    return n == 0 || lo <= need;
}

int dt_seq_can_truncate(const dt_context *ctx, int seq, int n_keep) {
    if (!ctx || seq < 0 || seq >= ctx->n_seq || n_keep < 0) return DT_ERR_INVALID;
    if (n_keep >= ctx->seq_len[seq]) return 1;
    return window_held(ctx, ctx->seq_lo[seq], n_keep);
}

int dt_seq_truncate(dt_context *ctx, int seq, int n_keep) {
    int ok = dt_seq_can_truncate(ctx, seq, n_keep);
    if (ok < 0) return ok;
    if (!ok) return DT_ERR_EVICTED;
    if (n_keep < ctx->seq_len[seq]) ctx->seq_len[seq] = n_keep;
    if (n_keep == 0) ctx->seq_lo[seq] = 0;
    return DT_OK;
}

int dt_seq_copy(dt_context *ctx, int src, int dst, int n) {
    if (!ctx || src < 0 || src >= ctx->n_seq || dst < 0 || dst >= ctx->n_seq) return DT_ERR_INVALID;
    if (n < 0 || n > ctx->seq_len[src]) return DT_ERR_INVALID;
    if (!window_held(ctx, ctx->seq_lo[src], n)) return DT_ERR_EVICTED;
    int lo = n == 0 ? 0 : ctx->seq_lo[src];
    if (src == dst) {
        ctx->seq_len[dst] = n;
        ctx->seq_lo[dst] = lo;
        return DT_OK;
    }
    const dt_model *m = ctx->model;
    for (int l = 0; l < m->n_layer; l++) {
        /* Whole key blocks (and value pairs): the last one may hold stale
         * positions >= n, which are never used. A ring is copied whole. */
        const int r = dt_kv_layer_ring(ctx, l);
        const int n_k = r ? r : (n + DT_KV_BLOCK - 1) / DT_KV_BLOCK * DT_KV_BLOCK;
        const int n_v = r ? r : ctx->kv_type == DT_BF16 ? (n + 1) / 2 * 2 : n; /* bf16: whole pairs */
        const size_t k_span = (size_t)n_k * m->head_dim * ctx->kv_esize;
        const size_t v_span = (size_t)n_v * m->head_dim * ctx->kv_esize;
        for (int h = 0; h < m->n_head_kv; h++) {
            size_t d = dt_kv_head_offset(ctx, l, dst, h), s = dt_kv_head_offset(ctx, l, src, h);
            memcpy(dt_kv_at(ctx, ctx->k, d), dt_kv_at(ctx, ctx->k, s), k_span);
            memcpy(dt_kv_at(ctx, ctx->v, d), dt_kv_at(ctx, ctx->v, s), v_span);
        }
    }
    ctx->seq_len[dst] = n;
    ctx->seq_lo[dst] = lo;
    return DT_OK;
}

/* ---- rows <-> cache ---------------------------------------------------------------- */

/* The positions a transfer covers: [p0, p1) in the ring layers, [f0, f1)
 * in the others (all layers of a full cache). */
struct span {
    int p0, p1, f0, f1;
};

static void layer_range(const dt_context *ctx, int layer, const struct span *s, int *a, int *b) {
    const int ring = dt_kv_layer_ring(ctx, layer) != 0;
    *a = ring ? s->p0 : s->f0;
    *b = ring ? s->p1 : s->f1;
}

/* Copies the keys (i = 0) or values (i = 1) of one slot of the region at
 * off to row[head_dim] (out = 1) or from it (out = 0): values of f32 /
 * f16 are a row already; keys, and bf16 pairs, go element by element. */
static void slot_row(const dt_context *ctx, int i, size_t off, int slot, uint8_t *row, int out) {
    const int hd = ctx->model->head_dim;
    const size_t es = ctx->kv_esize;
    char *base = i ? ctx->v : ctx->k;
    if (i && ctx->kv_type != DT_BF16) {
        char *at = dt_kv_at(ctx, base, off + dt_v_index(ctx, slot, 0));
        memcpy(out ? (void *)row : at, out ? at : (void *)row, hd * es);
        return;
    }
    for (int d = 0; d < hd; d++) {
        char *at = dt_kv_at(ctx, base, off + (i ? dt_v_index(ctx, slot, d) : dt_k_index(ctx, slot, d)));
        memcpy(out ? (void *)(row + d * es) : at, out ? at : (void *)(row + d * es), es);
    }
}

/* The span's positions of every (layer, kv head) of seq to bytes: per
 * (layer, kv head) the keys [pos][head_dim], then the values. `out` may be
 * unaligned (it points into a caller's buffer): memcpy. Returns the end. */
static uint8_t *rows_out(const dt_context *ctx, int seq, const struct span *sp, uint8_t *out) {
    const dt_model *m = ctx->model;
    const int hd = m->head_dim;
    const size_t row = (size_t)hd * ctx->kv_esize;
    for (int l = 0; l < m->n_layer; l++) {
        int p0, p1;
        layer_range(ctx, l, sp, &p0, &p1);
        for (int h = 0; h < m->n_head_kv; h++) {
            size_t off = dt_kv_head_offset(ctx, l, seq, h);
            for (int i = 0; i < 2; i++)
                for (int p = p0; p < p1; p++, out += row) slot_row(ctx, i, off, dt_kv_slot(ctx, l, p), out, 1);
        }
    }
    return out;
}

/* The inverse of rows_out; positions below `from` are skipped in the ring
 * layers (a ring loading a longer state keeps the last ones). */
static void rows_in(dt_context *ctx, int seq, const struct span *sp, int from, const uint8_t *in) {
    const dt_model *m = ctx->model;
    const int hd = m->head_dim;
    const size_t row = (size_t)hd * ctx->kv_esize;
    for (int l = 0; l < m->n_layer; l++) {
        int p0, p1;
        layer_range(ctx, l, sp, &p0, &p1);
        const int keep = dt_kv_layer_ring(ctx, l) ? from : p0;
        for (int h = 0; h < m->n_head_kv; h++) {
            size_t off = dt_kv_head_offset(ctx, l, seq, h);
            for (int i = 0; i < 2; i++)
                for (int p = p0; p < p1; p++, in += row)
                    if (p >= keep) slot_row(ctx, i, off, dt_kv_slot(ctx, l, p), (uint8_t *)in, 0);
        }
    }
}

/* Bytes of rows_out for a span. */
static int64_t rows_bytes(const dt_context *ctx, const struct span *sp) {
    const dt_model *m = ctx->model;
    int64_t positions = 0;
    for (int l = 0; l < m->n_layer; l++) {
        int p0, p1;
        layer_range(ctx, l, sp, &p0, &p1);
        positions += p1 - p0;
    }
    return 2 * positions * m->n_head_kv * m->head_dim * (int64_t)ctx->kv_esize;
}

/* ---- checkpoints ----------------------------------------------------------------- */

enum { CHECKPOINT_MAGIC = 0x4b435444 /* "DTCK" */ };

struct checkpoint_header {
    uint32_t magic;
    int32_t seq, len, lo, n_next;
    int32_t p0, p1;          /* saved positions [p0, p1) */
    int32_t reserved;
};

/* Of the held positions [lo, len), those whose ring slots the next n_next
 * positions overwrite. 64-bit: a forged header may hold any n_next. */
static void checkpoint_range(const dt_context *ctx, int len, int lo, int n_next, int *p0, int *p1) {
    *p0 = *p1 = len;
    if (!ctx->ring || n_next <= 0) return;
    int64_t a = (int64_t)len - ctx->ring, b = a + n_next;
    *p0 = a > lo ? (int)a : lo;
    *p1 = b < len ? (int)b : len;
    if (*p1 < *p0) *p1 = *p0;
}

int64_t dt_seq_checkpoint_size(const dt_context *ctx, int seq, int n_next) {
    if (!ctx || seq < 0 || seq >= ctx->n_seq || n_next < 0) return DT_ERR_INVALID;
    int p0, p1;
    checkpoint_range(ctx, ctx->seq_len[seq], ctx->seq_lo[seq], n_next, &p0, &p1);
    const struct span sp = {p0, p1, 0, 0}; /* the global layers are truncated instead */
    return (int64_t)sizeof(struct checkpoint_header) + rows_bytes(ctx, &sp);
}

int dt_seq_checkpoint(const dt_context *ctx, int seq, int n_next, void *buf, int64_t cap, int64_t *written) {
    int64_t size = dt_seq_checkpoint_size(ctx, seq, n_next);
    if (size < 0 || !buf || !written) return size < 0 ? (int)size : DT_ERR_INVALID;
    if (cap < size) return DT_ERR_CAPACITY;
    struct checkpoint_header h = {CHECKPOINT_MAGIC, seq, ctx->seq_len[seq], ctx->seq_lo[seq], n_next, 0, 0, 0};
    checkpoint_range(ctx, h.len, h.lo, n_next, &h.p0, &h.p1);
    memcpy(buf, &h, sizeof h);
    const struct span sp = {h.p0, h.p1, 0, 0};
    rows_out(ctx, seq, &sp, (uint8_t *)buf + sizeof h);
    *written = size;
    return DT_OK;
}

/* Whether a checkpoint header could have been written by dt_seq_checkpoint
 * for seq in this context, and still applies to the sequence as it is now.
 * The bytes come from the caller: every field is checked before it is used
 * as a position, a length or a slot. */
static int checkpoint_fits(const dt_context *ctx, int seq, const struct checkpoint_header *h, int64_t len) {
    if (h->magic != CHECKPOINT_MAGIC || h->seq != seq || h->reserved != 0 || h->n_next < 0) return 0;
    /* What the sequence held: [lo, len) inside the context, at most a ring. */
    if (h->len < 0 || h->len > ctx->n_ctx || h->lo < 0 || h->lo > h->len) return 0;
    if (ctx->ring ? h->len - h->lo > ctx->ring : h->lo != 0) return 0;
    /* The saved rows are exactly the ones dt_seq_checkpoint saves. */
    int p0, p1;
    checkpoint_range(ctx, h->len, h->lo, h->n_next, &p0, &p1);
    const struct span sp = {p0, p1, 0, 0};
    if (h->p0 != p0 || h->p1 != p1 || len != (int64_t)sizeof *h + rows_bytes(ctx, &sp)) return 0;
    /* The sequence moved on by at most n_next positions since. */
    int cur = ctx->seq_len[seq];
    return cur >= h->len && cur <= (int64_t)h->len + h->n_next;
}

int dt_seq_restore(dt_context *ctx, int seq, const void *buf, int64_t len) {
    if (!ctx || seq < 0 || seq >= ctx->n_seq || !buf) return DT_ERR_INVALID;
    struct checkpoint_header h;
    if (len < (int64_t)sizeof h) return DT_ERR_STATE;
    memcpy(&h, buf, sizeof h);
    if (!checkpoint_fits(ctx, seq, &h, len)) return DT_ERR_STATE;
    const struct span sp = {h.p0, h.p1, 0, 0};
    rows_in(ctx, seq, &sp, h.p0, (const uint8_t *)buf + sizeof h);
    ctx->seq_len[seq] = h.len;
    ctx->seq_lo[seq] = h.lo;
    return DT_OK;
}

/* ---- save / load ---------------------------------------------------------------- */

enum { STATE_MAGIC = 0x564b5444 /* "DTKV" */, STATE_VERSION = 3 };

/* Fixed-size header in front of the payload (rows_out of the held
 * positions: [first, n_pos) in the ring layers, [0, n_pos) in the others;
 * first > 0 only from a ring). The checksum covers the payload. */
struct state_header {
    uint32_t magic, version;
    uint64_t model_id;      /* dt_model.id: which model file wrote it */
    uint32_t n_layer, n_head_kv, head_dim, n_embd, n_vocab;
    uint32_t n_pos;
    uint32_t first;         /* first position held (> 0 only from a ring) */
    uint32_t kv_type;       /* element type of the payload: DT_F32 (0), DT_F16 or DT_BF16 */
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

int64_t dt_seq_state_size(const dt_context *ctx, int seq) {
    if (!ctx || seq < 0 || seq >= ctx->n_seq) return DT_ERR_INVALID;
    const struct span sp = {ctx->seq_lo[seq], ctx->seq_len[seq], 0, ctx->seq_len[seq]};
    return (int64_t)sizeof(struct state_header) + rows_bytes(ctx, &sp);
}

static void fill_header(const dt_context *ctx, int first, int n_pos, struct state_header *h) {
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
    h->first = (uint32_t)first;
    h->kv_type = (uint32_t)ctx->kv_type;
}

int dt_seq_state_save(const dt_context *ctx, int seq, void *buf, int64_t cap, int64_t *written) {
    int64_t size = dt_seq_state_size(ctx, seq);
    if (size < 0 || !buf || !written) return DT_ERR_INVALID;
    if (cap < size) return DT_ERR_CAPACITY;
    int first = ctx->seq_lo[seq], n = ctx->seq_len[seq];
    uint8_t *payload = (uint8_t *)buf + sizeof(struct state_header);
    const struct span sp = {first, n, 0, n};
    uint8_t *end = rows_out(ctx, seq, &sp, payload);
    struct state_header hdr;
    fill_header(ctx, first, n, &hdr);
    hdr.checksum = checksum(payload, (size_t)(end - payload));
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
    if (hdr.first > hdr.n_pos) return DT_ERR_STATE;
    fill_header(ctx, (int)hdr.first, (int)hdr.n_pos, &want);
    want.checksum = hdr.checksum;
    if (memcmp(&hdr, &want, sizeof hdr) != 0) return DT_ERR_STATE;
    int first = (int)hdr.first, n = (int)hdr.n_pos;
    /* A full cache needs every position (and only a ring state lacks some:
     * its payload has the ring layers' layout); a ring keeps at most its
     * last R. */
    if (!window_held(ctx, first, n) || (!ctx->ring && first > 0)) return DT_ERR_EVICTED;
    const struct span sp = {first, n, 0, n};
    int64_t payload_len = rows_bytes(ctx, &sp);
    if ((uint64_t)len != sizeof hdr + (uint64_t)payload_len) return DT_ERR_STATE;
    const uint8_t *payload = (const uint8_t *)buf + sizeof hdr;
    if (checksum(payload, (size_t)payload_len) != hdr.checksum) return DT_ERR_STATE;
    int from = ctx->ring && n - ctx->ring > first ? n - ctx->ring : first;
    rows_in(ctx, seq, &sp, from, payload);
    ctx->seq_len[seq] = n;
    ctx->seq_lo[seq] = n == 0 ? 0 : from;
    return DT_OK;
}
