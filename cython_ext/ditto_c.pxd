# Declarations of native/ditto.h for Cython (nogil externs, numpy.random style).
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

cdef extern from "ditto.h" nogil:
    enum:
        DT_OK
        DT_ERR_INVALID
        DT_ERR_NOMEM
        DT_ERR_UNSUPPORTED
        DT_ERR_CAPACITY
        DT_ERR_STATE
        DT_ERR_EVICTED
        DT_RING_SLACK
        DT_ISA_SCALAR
        DT_ISA_AVX2
        DT_ISA_AVX512
        DT_PRECISION_EXACT
        DT_PRECISION_FAST
        DT_PRECISION_Q16
        DT_F32
        DT_F16
        DT_BF16

    int dt_type_layout(int type, int *block_size, int *type_size)
    int64_t dt_row_bytes(int type, int64_t n)

    int dt_isa_best()
    int dt_isa_get()
    int dt_isa_set(int isa)
    int dt_bf16_hw()
    int dt_bf16_hw_set(int on)

    int dt_dequantize_row(int type, const void *src, float *dst, int64_t n)

    ctypedef struct dt_tensor:
        const void *data
        int type
        int64_t rows
        int64_t cols
        const void *q16

    int dt_matmul_rows(const dt_tensor *w, const float *x, int64_t ldx, int64_t n_tok,
                       float *y, int64_t ldy, int64_t row_begin, int64_t row_end,
                       float *scratch)
    int dt_matmul_rows_p(int precision, const dt_tensor *w, const float *x, int64_t ldx, int64_t n_tok,
                         float *y, int64_t ldy, int64_t row_begin, int64_t row_end, float *scratch)
    int64_t dt_matmul_scratch_floats(int64_t cols)
    float dt_dot_f32(const float *a, const float *b, int64_t n)

    ctypedef struct dt_pool:
        pass
    int dt_pool_new(int n_threads, dt_pool **out)
    void dt_pool_free(dt_pool *pool)
    int dt_matmul_p(dt_pool *pool, int precision, const dt_tensor *w, const float *x, int64_t ldx,
                    int64_t n_tok, float *y, int64_t ldy)
    int dt_matmul_group(dt_pool *pool, int precision, int n, const dt_tensor *const *w, const float *x,
                        int64_t ldx, int64_t n_tok, float *const *y, const int64_t *ldy)
    ctypedef struct dt_act_format:
        int precision
        int32_t offset
        int64_t cols, tok_bytes
    int dt_act_format_of(int precision, int n, const dt_tensor *const *w, dt_act_format *f)
    void dt_act_prep(const dt_act_format *f, const float *x, void *out)
    int dt_matmul_group_prepared(dt_pool *pool, int precision, int n, const dt_tensor *const *w,
                                 const dt_act_format *f, const void *xq, int64_t n_tok, float *const *y,
                                 const int64_t *ldy)
    int64_t dt_q16_repacked_bytes(const dt_tensor *w)
    int dt_q16_repack_tensor(dt_pool *pool, const dt_tensor *w, void *dst)
    int dt_q16_unpack(const dt_tensor *w, int64_t r, void *dst)

    ctypedef struct dt_layer:
        const float *attn_norm
        dt_tensor wq, wk, wv, wo
        const float *bq
        const float *bk
        const float *bv
        const float *q_norm
        const float *k_norm
        const float *post_attn_norm
        const float *ffn_norm
        dt_tensor w_gate, w_up, w_down
        const float *post_ffn_norm
        int slides

    ctypedef struct dt_model:
        uint64_t id
        unsigned flags
        int n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff
        int n_ctx_train
        int sliding_window
        float rms_eps, rope_base
        float rope_base_swa
        float embd_scale
        float attn_scale
        dt_tensor tok_embd
        const float *output_norm
        dt_tensor output
        dt_layer *layers

    int dt_model_validate(const dt_model *model)
    int dt_model_q16_prepare(dt_model *model, int n_threads, int drop_mapped)
    void dt_model_q16_release(dt_model *model)

    ctypedef struct dt_context:
        pass

    int dt_context_new(const dt_model *model, int n_seq, int n_ctx, int max_batch,
                       int n_threads, dt_context **out)
    ctypedef struct dt_context_params:
        int n_seq, n_ctx, max_batch, n_threads
        int ring_slots
        int kv_type
    int dt_context_new_params(const dt_model *model, const dt_context_params *params, dt_context **out)
    int dt_context_kv_type(const dt_context *ctx)
    int64_t dt_context_kv_bytes(const dt_context *ctx)
    int dt_context_ring_slots(const dt_context *ctx)
    void dt_context_free(dt_context *ctx)
    int dt_decode(dt_context *ctx, int n_tok, const int32_t *tokens, const int32_t *pos,
                  const int32_t *seq, const uint8_t *want, float *logits)
    int dt_context_set_precision(dt_context *ctx, int precision)
    int dt_seq_len(const dt_context *ctx, int seq)
    int dt_seq_held_from(const dt_context *ctx, int seq)
    int dt_seq_can_truncate(const dt_context *ctx, int seq, int n_keep)
    int dt_seq_truncate(dt_context *ctx, int seq, int n_keep)
    int64_t dt_seq_checkpoint_size(const dt_context *ctx, int seq, int n_next)
    int dt_seq_checkpoint(const dt_context *ctx, int seq, int n_next, void *buf, int64_t cap, int64_t *written)
    int dt_seq_restore(dt_context *ctx, int seq, const void *buf, int64_t len)
    int dt_seq_copy(dt_context *ctx, int src, int dst, int n)
    int64_t dt_seq_state_size(const dt_context *ctx, int seq)
    int dt_seq_state_save(const dt_context *ctx, int seq, void *buf, int64_t cap, int64_t *written)
    int dt_seq_state_load(dt_context *ctx, int seq, const void *buf, int64_t len)
