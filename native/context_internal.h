/* The decode context: KV cache for several sequences and batch buffers.
 * Shared by model.c (forward pass) and kvcache.c (sequence state). */
#ifndef DITTO_CONTEXT_INTERNAL_H
#define DITTO_CONTEXT_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "attention.h"
#include "ditto.h"

struct dt_context {
    const dt_model *model;
    int n_seq;          /* sequences */
    int n_ctx;          /* positions per sequence */
    int max_batch;      /* tokens per dt_decode */
    dt_pool *pool;
    int precision;      /* enum dt_precision of the weight matmuls */

    /* KV cache, one mapping each, of kv_type elements (f32, f16 or bf16).
     * Every (layer, seq, kv head) owns a region of slots * head_dim
     * elements (dt_kv_head_offset), in (layer, seq, kv head) order. Inside
     * it, keys are blocked and transposed, [pos / 16][head_dim][16]
     * (dt_k_index), so attention accumulates 16 scores in one vector;
     * values stay [pos][head_dim] (dt_v_index); bf16 pairs both
     * (attention.h).
     * Reserved, not committed: the OS backs pages only as sequences grow.
     * A region has n_ctx_pad slots, one per position; with a ring
     * (dt_context_params.ring_slots) a sliding layer's regions have `ring`
     * slots instead and position p lives in slot p % ring, while global
     * layers keep every position (dt_kv_layer_ring). */
    void *k, *v;
    size_t kv_elems;    /* elements in each of k and v */
    int kv_type;        /* DT_F32, DT_F16 or DT_BF16 */
    size_t kv_esize;    /* bytes per element: 4 or 2 */
    int n_ctx_pad;      /* n_ctx rounded up to whole key blocks */
    int ring;           /* ring slots R of the sliding layers (a multiple of 16), or 0: full cache */
    size_t *layer_off;  /* (n_layer) offset (in elements) of each layer's first region */
    int att_rows;       /* query rows (tokens x group) per attention task */
    int64_t gather_off, gather_floats; /* ring: where in each thread's scratch a
                                        * wrapped window's K, then V, are gathered */
    float *att_part;    /* split attention: partials of each (tile, kv head) (model.c) */
    _Atomic int *att_pending; /* split attention: chunk tasks of each (tile, kv head) still running */
    int *seq_len;       /* (n_seq) sequence lengths */
    int *seq_lo;        /* (n_seq) the ring layers hold positions [seq_lo, seq_len) (0 without a ring);
                         * the others hold [0, seq_len) */

    /* batch buffers, max_batch rows each, carved from `work`; some share
     * memory (dt_context_new_params says which) */
    float *work;
    float *x;           /* (max_batch, n_embd) residual stream */
    float *xn;          /* (max_batch, max(n_embd, n_ff)) normed input / ffn hidden */
    float *q;           /* (max_batch, n_head * head_dim) */
    float *kb, *vb;     /* (max_batch, n_head_kv * head_dim) new keys / values */
    float *att;         /* (max_batch, n_head * head_dim) attention output */
    float *gate, *up;   /* (max_batch, n_ff) */
    float *proj;        /* (max_batch, n_embd) output of wo / w_down */
    float *rope_cos, *rope_sin; /* (max_batch, head_dim / 2) */
    double *inv_freq;   /* (head_dim / 2) */
};

/* Positions per key block. */
#define DT_KV_BLOCK 16

/* Ring slots of a layer's regions, or 0 when the layer keeps every position. */
static inline int dt_kv_layer_ring(const struct dt_context *ctx, int layer) {
    return ctx->model->layers[layer].slides ? ctx->ring : 0;
}
/* Slots per region of a layer. */
static inline int dt_kv_layer_slots(const struct dt_context *ctx, int layer) {
    const int r = dt_kv_layer_ring(ctx, layer);
    return r ? r : ctx->n_ctx_pad;
}
/* Offset (in elements) of the (layer, seq, kv head) region in ctx->k / ctx->v. */
static inline size_t dt_kv_head_offset(const struct dt_context *ctx, int layer, int seq, int kvh) {
    const dt_model *m = ctx->model;
    return ctx->layer_off[layer] +
           ((size_t)seq * m->n_head_kv + kvh) * dt_kv_layer_slots(ctx, layer) * m->head_dim;
}
/* Slot of a position inside a region of a layer. */
static inline int dt_kv_slot(const struct dt_context *ctx, int layer, int pos) {
    const int r = dt_kv_layer_ring(ctx, layer);
    return r ? pos % r : pos;
}
/* Index of key element (slot, d) inside a region (the position itself
 * without a ring), in the cache's layout (attention.h). */
static inline size_t dt_k_index(const struct dt_context *ctx, int slot, int d) {
    return (size_t)dt_attn_k_index(ctx->kv_type, ctx->model->head_dim, slot, d);
}
/* Index of value element (slot, d) inside a region. */
static inline size_t dt_v_index(const struct dt_context *ctx, int slot, int d) {
    return (size_t)dt_attn_v_index(ctx->kv_type, ctx->model->head_dim, slot, d);
}

/* Address of element i of a KV mapping (ctx->k or ctx->v). */
static inline void *dt_kv_at(const struct dt_context *ctx, void *base, size_t i) {
    return (char *)base + i * ctx->kv_esize;
}

/* Reserve / release the KV mappings (kvcache.c). */
int dt_kv_reserve(struct dt_context *ctx);
void dt_kv_release(struct dt_context *ctx);
/* Stores one token's keys and values (n_head_kv * head_dim f32 each) of a
 * layer at position pos of seq, converted to the cache's kv_type. */
void dt_kv_store(struct dt_context *ctx, int layer, int seq, int pos, const float *k, const float *v);

#endif
