/* ditto native layer: AVX2 kernels (compiled with -mavx2 -mfma -mf16c;
 * used only when cpu.c finds them).
 *
 * Dequantizers give the scalar reference's floats bit for bit; the K-quant
 * ones, the tile kernel and dot() are quant_x86.h's with 8-lane vectors.
 * Every gemm output is one tile accumulator with exactly the operations of
 * dot(), so it never depends on the tile shape, the batch or the row range.
 */
#include "quant_x86.h"

/* ---- dequantization ------------------------------------------------------ */

static void dequant_f16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i))));
    if (i < n) dt_dequant_f16_ref(p + 2 * i, dst + i, n - i);
}

static void dequant_bf16(const void *src, float *dst, int64_t n) {
    const uint8_t *p = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * i)));
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
    }
    if (i < n) dt_dequant_bf16_ref(p + 2 * i, dst + i, n - i);
}

static void dequant_q4_0(const void *src, float *dst, int64_t nb) {
    const block_q4_0 *b = src;
    const __m128i lo4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        const __m256 d = _mm256_set1_ps(h2f(b[i].d));
        const __m128i q = _mm_loadu_si128((const __m128i *)b[i].qs);
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, lo4), eight);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), lo4), eight);
        _mm256_storeu_ps(dst, _mm256_mul_ps(d, i8x8_to_ps(lo)));
        _mm256_storeu_ps(dst + 8, _mm256_mul_ps(d, i8x8_to_ps(_mm_srli_si128(lo, 8))));
        _mm256_storeu_ps(dst + 16, _mm256_mul_ps(d, i8x8_to_ps(hi)));
        _mm256_storeu_ps(dst + 24, _mm256_mul_ps(d, i8x8_to_ps(_mm_srli_si128(hi, 8))));
    }
}

static void dequant_q4_1(const void *src, float *dst, int64_t nb) {
    const block_q4_1 *b = src;
    const __m128i lo4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        const __m256 d = _mm256_set1_ps(h2f(b[i].d));
        const __m256 m = _mm256_set1_ps(h2f(b[i].m));
        const __m128i q = _mm_loadu_si128((const __m128i *)b[i].qs);
        const __m128i lo = _mm_and_si128(q, lo4);
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), lo4);
        _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(lo)), m));
        _mm256_storeu_ps(dst + 8, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(_mm_srli_si128(lo, 8))), m));
        _mm256_storeu_ps(dst + 16, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(hi)), m));
        _mm256_storeu_ps(dst + 24, _mm256_add_ps(_mm256_mul_ps(d, u8x8_to_ps(_mm_srli_si128(hi, 8))), m));
    }
}

static void dequant_q5_0(const void *src, float *dst, int64_t nb) {
    const block_q5_0 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        const __m256 d = _mm256_set1_ps(h2f(b[i].d));
        const __m128i lo = q5_0_values(&b[i], 0), hi = q5_0_values(&b[i], 1);
        _mm256_storeu_ps(dst, _mm256_mul_ps(d, i8x8_to_ps(lo)));
        _mm256_storeu_ps(dst + 8, _mm256_mul_ps(d, i8x8_to_ps(_mm_srli_si128(lo, 8))));
        _mm256_storeu_ps(dst + 16, _mm256_mul_ps(d, i8x8_to_ps(hi)));
        _mm256_storeu_ps(dst + 24, _mm256_mul_ps(d, i8x8_to_ps(_mm_srli_si128(hi, 8))));
    }
}

static void dequant_q8_0(const void *src, float *dst, int64_t nb) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < nb; i++, dst += 32) {
        const __m256 d = _mm256_set1_ps(h2f(b[i].d));
        for (int l = 0; l < 32; l += 8) {
            const __m128i q = _mm_loadl_epi64((const __m128i *)(b[i].qs + l));
            _mm256_storeu_ps(dst + l, _mm256_mul_ps(i8x8_to_ps(q), d));
        }
    }
}

/* ---- gemm: tiles of the ISA's shapes ------------------------------------ */
TILE(1, 2) TILE(1, 3) TILE(1, 4)
TILE(2, 1) TILE(2, 2) TILE(2, 3) TILE(2, 4)
TILE(3, 1) TILE(3, 2) TILE(3, 3) TILE(3, 4)
TILE(6, 1) TILE(6, 2)
/* tiles[R-1][T-1] for R <= 3, T <= 4 */
static const tile_fn tiles[3][4] = {
    {tile_1x1, tile_1x2, tile_1x3, tile_1x4},
    {tile_2x1, tile_2x2, tile_2x3, tile_2x4},
    {tile_3x1, tile_3x2, tile_3x3, tile_3x4},
};
static const tile_fn tiles6[2] = {tile_6x1, tile_6x2};

static void gemm(const float *w, int64_t ldw, int64_t n_rows, const float *x, int64_t ldx,
                 int64_t n_tok, float *y, int64_t ldy, int64_t k) {
    for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {
        const int nt = n_tok - t0 < 4 ? (int)(n_tok - t0) : 4;
        const float *xt = x + t0 * ldx;
        float *yt = y + t0 * ldy;
        int64_t r0 = 0;
        if (nt <= 2)
            for (; r0 + 6 <= n_rows; r0 += 6) tiles6[nt - 1](w + r0 * ldw, ldw, xt, ldx, yt + r0, ldy, k);
        for (; r0 < n_rows; r0 += 3) {
            const int nr = n_rows - r0 < 3 ? (int)(n_rows - r0) : 3;
            tiles[nr - 1][nt - 1](w + r0 * ldw, ldw, xt, ldx, yt + r0, ldy, k);
        }
    }
}

const dt_kernels dt_kernels_avx2 = {
    .name = "avx2",
    .dequant = DT_X86_DEQUANT,
    .dot = dot,
    .gemm = gemm,
};
