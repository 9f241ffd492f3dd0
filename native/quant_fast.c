/* ditto native layer: the fast path's activation quantization and scalar
 * reference (see the layout comment in quant.h). Every SIMD fast kernel
 * must give these floats bit for bit: the integer sums are exact, the float
 * operations below are the definition. */
#include <math.h>
#include <string.h>

#include "quant.h"

int dt_fast_type(int type) { return type == DT_Q4_0 || type == DT_Q4_1 || type == DT_Q8_0; }

/* byte position of value v of block p (0 / 1) of a pair */
static inline int pos_of(int type, int p, int v) {
    return type == DT_Q8_0 ? p * 32 + v : (v / 16) * 32 + p * 16 + v % 16;
}

void dt_fast_prep(int type, const float *x, int64_t k, dt_xpair *out) {
    const int64_t nb = k / 32;
    for (int64_t pr = 0; pr < dt_xpairs(k); pr++) {
        dt_xpair *o = out + pr;
        int8_t q[64] = {0};
        float dxb[2] = {0.0f, 0.0f};
        for (int p = 0; p < 2; p++) {
            const int64_t b = 2 * pr + p;
            if (b >= nb) break;
            const float *xb = x + 32 * b;
            float amax = 0.0f;
            for (int v = 0; v < 32; v++) amax = fmaxf(amax, fabsf(xb[v]));
            const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            dxb[p] = d;
            for (int v = 0; v < 32; v++) {
                float r = nearbyintf(xb[v] * id);
                r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r;
                q[pos_of(type, p, v)] = (int8_t)r;
            }
        }
        for (int L = 0; L < 16; L++) {
            const int p = type == DT_Q8_0 ? L / 8 : (L / 4) % 2;
            int s = 0;
            for (int j = 0; j < 4; j++) s += q[4 * L + j];
            o->dx[L] = dxb[p];
            o->sx[L] = dxb[p] * (float)s;
            o->xoff[L] = (type == DT_Q8_0 ? -128 : type == DT_Q4_0 ? -8 : 0) * s;
        }
        memcpy(o->xq, q, sizeof q);
    }
}

static float hsum16_ref(const float *acc) {
    float a[8], b[4];
    for (int i = 0; i < 8; i++) a[i] = acc[i] + acc[i + 8];
    for (int i = 0; i < 4; i++) b[i] = a[i] + a[i + 4];
    return (b[0] + b[2]) + (b[1] + b[3]);
}

static float dot_fast_ref(int type, const uint8_t *w, const dt_xpair *xp, int64_t k) {
    const int64_t nb = k / 32;
    const int ts = dt_types[type].type_size;
    float acc[16] = {0};
    for (int64_t pr = 0; pr < dt_xpairs(k); pr++) {
        int wq[64] = {0};           /* weights in pair byte order (Q4: raw q 0..15) */
        float dw[2] = {0, 0}, mw[2] = {0, 0};
        for (int p = 0; p < 2; p++) {
            const int64_t b = 2 * pr + p;
            if (b >= nb) break;
            const uint8_t *blk = w + b * ts;
            dw[p] = dt_f16_to_f32(dt_load_f16(blk));
            if (type == DT_Q8_0) {
                for (int v = 0; v < 32; v++) wq[pos_of(type, p, v)] = (int8_t)blk[2 + v];
            } else {
                const uint8_t *qs = blk + (type == DT_Q4_1 ? 4 : 2);
                if (type == DT_Q4_1) mw[p] = dt_f16_to_f32(dt_load_f16(blk + 2));
                for (int v = 0; v < 16; v++) {
                    wq[pos_of(type, p, v)] = qs[v] & 0xF;
                    wq[pos_of(type, p, v + 16)] = qs[v] >> 4;
                }
            }
        }
        const dt_xpair *o = xp + pr;
        for (int L = 0; L < 16; L++) {
            const int p = type == DT_Q8_0 ? L / 8 : (L / 4) % 2;
            int32_t s = 0;
            for (int j = 0; j < 4; j++) s += wq[4 * L + j] * o->xq[4 * L + j];
            if (type == DT_Q4_0) s -= 8 * (o->xq[4 * L] + o->xq[4 * L + 1] + o->xq[4 * L + 2] + o->xq[4 * L + 3]);
            acc[L] = fmaf(dw[p] * o->dx[L], (float)s, acc[L]);
            if (type == DT_Q4_1) acc[L] = fmaf(mw[p], o->sx[L], acc[L]);
        }
    }
    return hsum16_ref(acc);
}

void dt_fast_ref(int type, const void *w, int64_t row_bytes, int64_t n_rows, const dt_xpair *xp,
                 int64_t ldxp, int64_t n_tok, float *y, int64_t ldy, int64_t k) {
    for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < n_rows; r++)
            y[t * ldy + r] = dot_fast_ref(type, (const uint8_t *)w + r * row_bytes, xp + t * ldxp, k);
}

#define FAST_REF(NAME, TYPE)                                                                          \
    void dt_fast_ref_##NAME(const void *w, int64_t rb, int64_t n_rows, const dt_xpair *xp,           \
                            int64_t ldxp, int64_t n_tok, float *y, int64_t ldy, int64_t k) {         \
        dt_fast_ref(TYPE, w, rb, n_rows, xp, ldxp, n_tok, y, ldy, k);                                 \
    }
FAST_REF(q4_0, DT_Q4_0)
FAST_REF(q4_1, DT_Q4_1)
FAST_REF(q8_0, DT_Q8_0)
