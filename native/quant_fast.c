/* ditto native layer: the fast path's definition (see quant.h): activation
 * quantization to one int8 per value and the scalar reference tile kernel
 * on q16's repacked tiles. Every SIMD fast kernel gives these floats bit
 * for bit: the integer sums are exact, the float operations below are the
 * definition. */
#include <math.h>

#include "quant.h"

void dt_fast_prep(const float *x, int64_t k, int32_t c, dt_xq8 *out) {
    for (int64_t b = 0; b < k / 32; b++) {
        dt_xq8 *o = out + b;
        int32_t q[32], s = 0;
        const float d = dt_block32_quantize(x + 32 * b, 127.0f, q);
        for (int v = 0; v < 32; v++) {
            o->xq[v] = (int8_t)q[v];
            s += q[v];
        }
        o->dx = d;
        o->sx = d * (float)s;
        o->ncs = -c * s;
        o->pad = 0;
    }
}

static void fast_ref(int type, const uint8_t *tile, int64_t nb, const dt_xq8 *xq, int64_t ldxq, int64_t n_tok,
                     float *y, int64_t ldy, int lane0, int lane1) {
    for (int64_t t = 0; t < n_tok; t++)
        for (int r = lane0; r < lane1; r++) {
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const dt_xq8 *x = xq + t * ldxq + b;
                int32_t u[32], isum = x->ncs;
                float dw, mw;
                dt_q16_tile_row(type, tile, nb, b, r, u, &dw, &mw);
                for (int v = 0; v < 32; v++) isum += u[v] * x->xq[v];
                acc = fmaf(dw * x->dx, (float)isum, acc);
                if (dt_q16_has_min(type)) acc = fmaf(mw, x->sx, acc);
            }
            y[t * ldy + r] = acc;
        }
}

#define FAST_REF(NAME, TYPE) DT_TILE_REF(dt_fast_ref_##NAME, fast_ref, dt_xq8, TYPE)
FAST_REF(q4_0, DT_Q4_0)
FAST_REF(q4_1, DT_Q4_1)
FAST_REF(q5_0, DT_Q5_0)
FAST_REF(q8_0, DT_Q8_0)
FAST_REF(q4_K, DT_Q4_K)
