/* ditto native layer: public C ABI.
 *
 * Conventions: every function that can fail returns an int error code
 * (DT_OK == 0, negative on failure); nothing here exits, prints or touches
 * Python. Weight matrices are stored as in GGUF: (rows = out, cols = in),
 * row-major, each row a whole number of quant blocks; y = W x.
 */
#ifndef DITTO_H
#define DITTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- error codes ------------------------------------------------------ */
enum {
    DT_OK = 0,
    DT_ERR_INVALID = -1,     /* bad argument (shape, type, position, id) */
    DT_ERR_NOMEM = -2,       /* allocation failed */
    DT_ERR_UNSUPPORTED = -3, /* tensor type / ISA not supported */
    DT_ERR_CAPACITY = -4,    /* sequence or batch longer than the context */
    DT_ERR_STATE = -5,       /* saved state does not match this context */
    DT_ERR_EVICTED = -6,     /* ring KV: positions the request needs were overwritten */
};

/* ---- tensor types (GGML numbering, as in GGUF) ------------------------- */
enum dt_type {
    DT_F32 = 0,
    DT_F16 = 1,
    DT_Q4_0 = 2,
    DT_Q4_1 = 3,
    DT_Q5_0 = 6,
    DT_Q5_1 = 7,
    DT_Q8_0 = 8,
    DT_Q2_K = 10,
    DT_Q3_K = 11,
    DT_Q4_K = 12,
    DT_Q5_K = 13,
    DT_Q6_K = 14,
    DT_IQ4_NL = 20,
    DT_IQ4_XS = 23,
    DT_BF16 = 30,
};

/* Block layout of a type: `block_size` values are stored in `type_size`
 * bytes. Returns DT_ERR_UNSUPPORTED for a type ditto cannot run. */
int dt_type_layout(int type, int *block_size, int *type_size);
/* Bytes of one row of `n` values (n a multiple of the block size), or -1. */
int64_t dt_row_bytes(int type, int64_t n);

/* ---- instruction-set selection ---------------------------------------- */
enum dt_isa { DT_ISA_SCALAR = 0, DT_ISA_AVX2 = 1, DT_ISA_AVX512 = 2 };
/* The best ISA this CPU supports. */
int dt_isa_best(void);
/* The ISA the kernels use now (starts at dt_isa_best()). */
int dt_isa_get(void);
/* Force an ISA (tests compare every path with the scalar reference).
 * Returns DT_ERR_UNSUPPORTED if the CPU lacks it. Not thread-safe: call
 * before any decode. */
int dt_isa_set(int isa);
/* Whether attention on a bf16 KV cache runs AVX512_BF16's instructions
 * (on the AVX-512 ISA, where the CPU has them); else the same steps as
 * fmas. dt_bf16_hw_set(0) forces the fmas (tests compare both); 1 gives
 * DT_ERR_UNSUPPORTED without the instructions. */
int dt_bf16_hw(void);
int dt_bf16_hw_set(int on);

/* ---- kernels ----------------------------------------------------------- */
/* Dequantize `n` values (a multiple of the block size) of `type` to f32. */
int dt_dequantize_row(int type, const void *src, float *dst, int64_t n);

/* One weight matrix as it lies in the mapped file. */
typedef struct {
    const void *data; /* rows * dt_row_bytes(type, cols) bytes */
    int type;
    int64_t rows;     /* output features */
    int64_t cols;     /* input features */
    const void *q16;  /* the weights repacked for DT_PRECISION_Q16 (dt_q16_repack_tensor),
                       * 64-byte aligned, or NULL: that precision then runs exact */
} dt_tensor;

/* Y[t, r] = sum_k W[r, k] * X[t, k] for t < n_tok and row_begin <= r < row_end.
 * X is (n_tok, ldx) f32, Y is (n_tok, ldy) f32. `scratch` holds at least
 * dt_matmul_scratch_floats(w->cols) floats, private to the caller.
 *
 * Batch invariance: Y[t, r] is computed by the same sequence of float
 * operations whatever n_tok, the row range, the thread or the other rows of
 * X are, so a token's result never depends on what else is in the batch. */
int dt_matmul_rows(const dt_tensor *w, const float *x, int64_t ldx, int64_t n_tok,
                   float *y, int64_t ldy, int64_t row_begin, int64_t row_end,
                   float *scratch);
int64_t dt_matmul_scratch_floats(int64_t cols);

/* Arithmetic of a matmul. EXACT: f32 products of the dequantized weights
 * with X, f32 accumulation. Q16: X quantized per block of 32 to 16 bits
 * (scale amax / 32639) and split in two int8 halves, integer dot products
 * with the weights, one f32 fma per block and row (no horizontal sum); for
 * Q4_0, Q4_1, Q5_0, Q8_0, Q4_K and Q6_K weights whose tensor carries its
 * repacked copy (w->q16), on AVX-512 VNNI or the scalar ISA (AVX2, other
 * types and tensors without the copy run EXACT). FAST: as Q16 with X
 * quantized to int8 (scale amax / 127), one half: half Q16's integer work,
 * coarser; Q6_K runs Q16. All
 * are batch-invariant: a (row, token) output never depends on the batch. */
enum dt_precision { DT_PRECISION_EXACT = 0, DT_PRECISION_FAST = 1, DT_PRECISION_Q16 = 2 };
/* dt_matmul_rows with a precision; `scratch` as dt_matmul_scratch_floats
 * (which covers both precisions). */
int dt_matmul_rows_p(int precision, const dt_tensor *w, const float *x, int64_t ldx, int64_t n_tok,
                     float *y, int64_t ldy, int64_t row_begin, int64_t row_end, float *scratch);
/* The dot product of two f32 vectors with the same operation order the
 * matmul uses for each output (exported for tests and attention). */
float dt_dot_f32(const float *a, const float *b, int64_t n);

/* ---- thread pool -------------------------------------------------------- */
typedef struct dt_pool dt_pool;
/* n_threads >= 1 counts the calling thread. */
int dt_pool_new(int n_threads, dt_pool **out);
void dt_pool_free(dt_pool *pool);
int dt_pool_threads(const dt_pool *pool);
/* Runs fn(arg, task, thread) for task in [0, n_tasks) on all threads and
 * returns when every task is done. `thread` is in [0, dt_pool_threads). */
typedef void (*dt_task_fn)(void *arg, int64_t task, int thread);
void dt_pool_run(dt_pool *pool, dt_task_fn fn, void *arg, int64_t n_tasks);
/* Threaded matmul over all rows (splits rows, never the reduction). */
int dt_matmul(dt_pool *pool, const dt_tensor *w, const float *x, int64_t ldx,
              int64_t n_tok, float *y, int64_t ldy);
/* dt_matmul with a precision (dt_matmul is DT_PRECISION_EXACT). */
int dt_matmul_p(dt_pool *pool, int precision, const dt_tensor *w, const float *x, int64_t ldx,
                int64_t n_tok, float *y, int64_t ldy);

/* Several matrices with the same input in one dispatch (q/k/v, gate/up):
 * y[i] = w[i] x for i < n (n <= 4). Results equal n separate dt_matmul_p. */
int dt_matmul_group(dt_pool *pool, int precision, int n, const dt_tensor *const *w, const float *x,
                    int64_t ldx, int64_t n_tok, float *const *y, const int64_t *ldy);

/* Tokens quantized by the caller, as they are produced (model.c does it in
 * the norm and activation tasks, while each row is still in L1, and saves
 * the matmul's own pass over them). dt_act_format_of: 1 and *f when
 * precision's integer path covers every matrix of w[0..n) with one
 * activation format (dt_matmul_group's rule), else 0. dt_act_prep: one
 * token (f->cols floats) into f->tok_bytes at out. dt_matmul_group_prepared:
 * dt_matmul_group on n_tok such tokens at xq, tok_bytes apart; the same
 * results. */
typedef struct {
    int precision;   /* of the activations: DT_PRECISION_FAST or _Q16 */
    int32_t offset;  /* fast: the weights' code offset */
    int64_t cols, tok_bytes;
} dt_act_format;
int dt_act_format_of(int precision, int n, const dt_tensor *const *w, dt_act_format *f);
void dt_act_prep(const dt_act_format *f, const float *x, void *out);
int dt_matmul_group_prepared(dt_pool *pool, int precision, int n, const dt_tensor *const *w,
                             const dt_act_format *f, const void *xq, int64_t n_tok, float *const *y,
                             const int64_t *ldy);

/* Bytes of w's repacked copy for Q16 (0: q16 does not cover its type). */
int64_t dt_q16_repacked_bytes(const dt_tensor *w);
/* Repacks w's weights into dst (dt_q16_repacked_bytes, 64-byte aligned) on
 * the pool's threads; the caller then sets w->q16 = dst and owns dst. */
int dt_q16_repack_tensor(dt_pool *pool, const dt_tensor *w, void *dst);
/* Row r of w's repacked copy (w->q16) back as GGUF bytes (dt_row_bytes(w->type, w->cols)). */
int dt_q16_unpack(const dt_tensor *w, int64_t r, void *dst);

/* ---- model -------------------------------------------------------------- */
/* What an architecture computes, as capability flags (engine/architectures.py
 * holds the table that sets them; nothing here knows a model's name). */
enum dt_model_flag {
    DT_ROPE_NEOX = 1 << 0,   /* rope pairs (x[i], x[i + hd/2]); else (x[2i], x[2i+1]) */
    DT_QKV_BIAS = 1 << 1,    /* q/k/v biases required (else used when present) */
    DT_QK_NORM = 1 << 2,     /* per-head RMSNorm of q and k (q_norm, k_norm) before rope */
    DT_POST_NORMS = 1 << 3,  /* RMSNorm of the attention and FFN outputs before each residual add */
    DT_GELU = 1 << 4,        /* FFN gate activation GELU (tanh form); else SiLU */
};

typedef struct {
    const float *attn_norm;              /* (n_embd) */
    dt_tensor wq, wk, wv, wo;            /* (n_head*hd, n_embd) (n_kv*hd, n_embd) x2, (n_embd, n_head*hd) */
    const float *bq, *bk, *bv;           /* q/k/v biases or NULL */
    const float *q_norm, *k_norm;        /* (hd) with DT_QK_NORM, else NULL */
    const float *post_attn_norm;         /* (n_embd) with DT_POST_NORMS, else NULL */
    const float *ffn_norm;               /* (n_embd) */
    dt_tensor w_gate, w_up, w_down;      /* (n_ff, n_embd) x2, (n_embd, n_ff) */
    const float *post_ffn_norm;          /* (n_embd) with DT_POST_NORMS, else NULL */
    int slides;                          /* 1: attends to the last sliding_window positions */
} dt_layer;

typedef struct {
    uint64_t id;          /* identity of the model file (saved states name it) */
    unsigned flags;       /* enum dt_model_flag */
    int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    int n_ctx_train;
    int sliding_window;   /* window of the layers with `slides` (0: none slide) */
    float rms_eps, rope_base;
    float rope_base_swa;  /* rope base of sliding layers (0: rope_base) */
    float embd_scale;     /* embeddings are multiplied by it (1: unscaled) */
    float attn_scale;     /* q.k multiplier, usually 1/sqrt(head_dim) */
    dt_tensor tok_embd;   /* (n_vocab, n_embd) */
    const float *output_norm; /* (n_embd) */
    dt_tensor output;     /* (n_vocab, n_embd); may alias tok_embd */
    dt_layer *layers;     /* n_layer entries, owned by the caller */
} dt_model;

/* Checks shapes and types of every tensor against the hyperparameters. */
int dt_model_validate(const dt_model *model);
/* Gives every layer matrix and the output head that DT_PRECISION_Q16
 * covers its repacked copy (tensor.q16, anonymous memory the model then
 * owns), repacking on n_threads threads; matrices that have one are kept.
 * drop_mapped: the weights lie on a read-only file mapping, so each
 * matrix's whole pages are dropped from the process (madvise DONTNEED) once
 * it is repacked, and the weights are held once; the file's bytes are read
 * in again if an exact context touches them. Never set it for weights in
 * ordinary memory, whose contents that would discard. Under q16 and fast
 * (which use the same copies) a tied output head's rows are embedded from
 * its repacked copy.
 * DT_ERR_NOMEM leaves the copies made so far (dt_model_q16_release frees them). */
int dt_model_q16_prepare(dt_model *model, int n_threads, int drop_mapped);
/* Frees the repacked copies and sets tensor.q16 back to NULL. */
void dt_model_q16_release(dt_model *model);

/* ---- context: KV cache for several sequences, decode ----------------- */
typedef struct dt_context dt_context;

/* n_seq sequences, each up to n_ctx positions; batches up to max_batch
 * tokens. KV memory is reserved lazily: pages are touched only as
 * sequences grow. The model must outlive the context. */
int dt_context_new(const dt_model *model, int n_seq, int n_ctx, int max_batch,
                   int n_threads, dt_context **out);
void dt_context_free(dt_context *ctx);

/* A context's shape and KV cache. ring_slots > 0 keeps a ring KV cache
 * in the sliding layers of a sliding-window model (0: the full cache; the
 * global-attention layers always keep every position). Each (sliding
 * layer, sequence, kv head) keeps R slots, R = max(ring_slots, window) rounded up to a
 * multiple of 16; position p lives in slot p % R. dt_decode splits a batch
 * so that no token overwrites a slot a token of the same pass still reads
 * (at most R - window + 1 tokens of a sequence per pass); results are
 * bit-identical to the full cache's. A ring sequence holds positions
 * [lo, len) (dt_seq_held_from): it cannot be truncated to a length whose
 * window reaches below lo (up to R - window + 1 positions of the last pass
 * can always be dropped); dt_seq_checkpoint / dt_seq_restore undo a pass
 * whatever its length. DT_RING_SLACK: slots beyond the window for a default
 * ring (window + DT_RING_SLACK - 1).
 *
 * kv_type: the element type keys and values are stored in. DT_F32, or
 * DT_F16: each element rounded to half (to nearest even) when stored and
 * widened exactly when attention reads it, so the cache and the bytes a
 * decode step streams are halved; logits then differ from the f32 cache's
 * by that rounding, and are as batch-invariant. DT_BF16: each element
 * rounded to bfloat16, in pairs, and attention's dot products take q and p
 * rounded to bf16 too (attention.h): the f16 cache's size, twice the
 * multiply-adds per instruction (vdpbf16ps), coarser. */
enum { DT_RING_SLACK = 64 };
typedef struct {
    int n_seq, n_ctx, max_batch, n_threads; /* as dt_context_new */
    int ring_slots;                         /* 0: full cache */
    int kv_type;                            /* DT_F32, DT_F16 or DT_BF16 */
} dt_context_params;
int dt_context_new_params(const dt_model *model, const dt_context_params *params, dt_context **out);
/* Element type of the KV cache (DT_F32, DT_F16 or DT_BF16). */
int dt_context_kv_type(const dt_context *ctx);
/* Bytes of keys and values when every sequence is full (reserved at
 * creation, committed as sequences grow). */
int64_t dt_context_kv_bytes(const dt_context *ctx);
/* Slots per ring (R), or 0 for a full cache. */
int dt_context_ring_slots(const dt_context *ctx);

/* Evaluates n_tok tokens. Token i belongs to sequence seq[i] at position
 * pos[i]; within a sequence the tokens of a batch must be consecutive
 * positions starting at the sequence's current length. For each i with
 * want[i] != 0, in order, one row of n_vocab logits is written to `logits`
 * (so `logits` holds count(want) * n_vocab floats). */
int dt_decode(dt_context *ctx, int n_tok, const int32_t *tokens, const int32_t *pos,
              const int32_t *seq, const uint8_t *want, float *logits);

/* Precision of the weight matmuls (enum dt_precision; default exact). */
int dt_context_set_precision(dt_context *ctx, int precision);

/* Number of positions a sequence holds. */
int dt_seq_len(const dt_context *ctx, int seq);
/* Lowest position whose keys and values the sequence still holds (0 for a
 * full cache; a ring holds at most R positions). */
int dt_seq_held_from(const dt_context *ctx, int seq);
/* 1 if the sequence can be truncated to n_keep (n_keep == 0, or every
 * position the window of position n_keep reads is held), else 0. */
int dt_seq_can_truncate(const dt_context *ctx, int seq, int n_keep);
/* Drops positions >= n_keep (restore to a checkpoint). DT_ERR_EVICTED if
 * !dt_seq_can_truncate (nothing changes). */
int dt_seq_truncate(dt_context *ctx, int seq, int n_keep);
/* Copies the first n positions of src into dst (dst's old state is dropped).
 * DT_ERR_EVICTED as for truncating src to n. */
int dt_seq_copy(dt_context *ctx, int src, int dst, int n);

/* Checkpoints: what a restore needs after at most n_next more tokens of the
 * sequence are decoded: its length and, in a ring, the held positions whose
 * slots those tokens overwrite (at most n_next slots; none for a full
 * cache, where a restore is a truncation). dt_seq_restore puts the slots
 * back and sets the length: the sequence is then exactly as it was. The
 * buffer is a transient handle for this context (no model identity). */
int64_t dt_seq_checkpoint_size(const dt_context *ctx, int seq, int n_next);
int dt_seq_checkpoint(const dt_context *ctx, int seq, int n_next, void *buf, int64_t cap, int64_t *written);
/* DT_ERR_STATE if buf is not a checkpoint dt_seq_checkpoint wrote for seq
 * (every header field is checked against the context) or the sequence moved
 * more than n_next positions past it (or below it) since; nothing changes. */
int dt_seq_restore(dt_context *ctx, int seq, const void *buf, int64_t len);

/* Bytes needed to save a sequence's state (header + KV of the held
 * positions). A state loads into a ring or a full context alike, except
 * that a full context refuses a state that lacks early positions. */
int64_t dt_seq_state_size(const dt_context *ctx, int seq);
/* Writes the state to buf (cap bytes). */
int dt_seq_state_save(const dt_context *ctx, int seq, void *buf, int64_t cap, int64_t *written);
/* Loads a saved state into seq; the header is validated (layout, length). */
int dt_seq_state_load(dt_context *ctx, int seq, const void *buf, int64_t len);

#ifdef __cplusplus
}
#endif
#endif
