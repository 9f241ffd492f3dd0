/* ditto native layer: the single-threaded row-range matmul.
 *
 * Y[t, r] = dot(W[r, :], X[t, :]). Rows are taken in panels of P: a panel is
 * dequantized to f32 in `scratch` (bit for bit the scalar reference), then
 * the ISA's tile kernel multiplies it with every token. Each (row, token)
 * output gets its own accumulator and exactly the operations of
 * dt_dot_f32 on that ISA, so results never depend on n_tok, the row range
 * or the panel boundaries (batch invariance).
 */
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

int64_t dt_matmul_scratch_floats(int64_t cols) {
    if (cols <= 0) return 0;
    return panel_rows(cols) * panel_ld(cols) + 16; /* + room to align to 64 bytes */
}

float dt_dot_f32(const float *a, const float *b, int64_t n) {
    if (n <= 0) return 0.0f;
    return dt_kernels_current()->dot(a, b, n);
}

int dt_matmul_rows(const dt_tensor *w, const float *x, int64_t ldx, int64_t n_tok,
                   float *y, int64_t ldy, int64_t row_begin, int64_t row_end,
                   float *scratch) {
    if (!w || !w->data || w->cols <= 0 || w->rows < 0) return DT_ERR_INVALID;
    int bs, ts;
    if (dt_type_layout(w->type, &bs, &ts) != DT_OK) return DT_ERR_UNSUPPORTED;
    const int64_t cols = w->cols;
    if (cols % bs || row_begin < 0 || row_end > w->rows || row_begin > row_end || n_tok < 0)
        return DT_ERR_INVALID;
    if (n_tok == 0 || row_begin == row_end) return DT_OK;
    if (!x || !y || ldx < cols || (n_tok > 1 && ldy < row_end)) return DT_ERR_INVALID;

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
