/* ditto native layer: instruction-set detection and the one place that
 * picks per-ISA kernels (quant kernels, attention, the f16 / bf16 KV conversions, the
 * FFN activations and RMS normalization).
 *
 * The scalar kernels always exist; the AVX2 and AVX-512 ones are compiled
 * with their own flags and chosen at run time, only when both the CPU and
 * the OS (saved register state, via XGETBV) support them. Attention's bf16
 * cache uses AVX512_BF16 where the CPU has it on top of AVX-512.
 */
#include <stdatomic.h>

#include "activation.h"
#include "attention.h"
#include "norm.h"
#include "quant.h"

#if defined(__x86_64__) || defined(__i386__)
#define DT_X86 1
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
static int osxsave(void) {
    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    return (c >> 27) & 1;
}
#endif

static int detect(void) {
#ifdef DT_X86
    __builtin_cpu_init();
    if (!osxsave()) return DT_ISA_SCALAR;
    const uint64_t xcr0 = xgetbv0();
    const int ymm_ok = (xcr0 & 0x6) == 0x6;     /* SSE + AVX state */
    const int zmm_ok = (xcr0 & 0xe6) == 0xe6;   /* + opmask, ZMM_Hi256, Hi16_ZMM */
    const int avx2 = ymm_ok && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                     __builtin_cpu_supports("f16c");
    if (avx2 && zmm_ok && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vnni"))
        return DT_ISA_AVX512;
    if (avx2) return DT_ISA_AVX2;
#endif
    return DT_ISA_SCALAR;
}

static const struct {
    const dt_kernels *quant;
    void (*attention_chunks)(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch);
    void (*attention_combine)(const dt_attn_tile *a, const float *part);
    void (*f16_from_f32)(const float *x, uint16_t *y, int64_t n);
    void (*bf16_from_f32)(const float *x, uint16_t *y, int64_t n);
    dt_gated_fn silu_mul, gelu_mul;
    dt_rmsnorm_fn rmsnorm;
} tables[] = {
    [DT_ISA_SCALAR] = {&dt_kernels_scalar, dt_attention_chunks_scalar, dt_attention_combine_scalar,
                       dt_f16_from_f32_scalar, dt_bf16_from_f32_scalar,
                       dt_silu_mul_scalar, dt_gelu_mul_scalar, dt_rmsnorm_scalar},
    [DT_ISA_AVX2] = {&dt_kernels_avx2, dt_attention_chunks_avx2, dt_attention_combine_avx2,
                     dt_f16_from_f32_avx2, dt_bf16_from_f32_avx2,
                     dt_silu_mul_avx2, dt_gelu_mul_avx2, dt_rmsnorm_avx2},
    [DT_ISA_AVX512] = {&dt_kernels_avx512, dt_attention_chunks_avx512, dt_attention_combine_avx512,
                       dt_f16_from_f32_avx512, dt_bf16_from_f32_avx512,
                       dt_silu_mul_avx512, dt_gelu_mul_avx512, dt_rmsnorm_avx512},
};

static atomic_int best_isa = -1;
static atomic_int cur_isa = -1;
static atomic_int bf16_hw = -1; /* a bf16 cache's attention on AVX-512 runs vdpbf16ps (dt_bf16_hw_set) */

/* AVX512_BF16 on top of the AVX-512 ISA. */
static int detect_bf16(void) {
#ifdef DT_X86
    return dt_isa_best() == DT_ISA_AVX512 && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

/* *v, set to first() on first use (-1: not yet). */
static int cached(atomic_int *v, int (*first)(void)) {
    int x = atomic_load_explicit(v, memory_order_relaxed);
    if (x < 0) {
        x = first();
        atomic_store_explicit(v, x, memory_order_relaxed);
    }
    return x;
}

int dt_isa_best(void) { return cached(&best_isa, detect); }

int dt_isa_get(void) { return cached(&cur_isa, dt_isa_best); }

int dt_isa_set(int isa) {
    if (isa < DT_ISA_SCALAR || isa > DT_ISA_AVX512) return DT_ERR_INVALID;
    if (isa > dt_isa_best()) return DT_ERR_UNSUPPORTED;
    atomic_store_explicit(&cur_isa, isa, memory_order_relaxed);
    return DT_OK;
}

const dt_kernels *dt_kernels_current(void) { return tables[dt_isa_get()].quant; }

int dt_bf16_hw(void) { return cached(&bf16_hw, detect_bf16); }

int dt_bf16_hw_set(int on) {
    if (on && !detect_bf16()) return DT_ERR_UNSUPPORTED;
    atomic_store_explicit(&bf16_hw, on != 0, memory_order_relaxed);
    return DT_OK;
}

void dt_attention_chunks(const dt_attn_tile *a, int c0, int c1, float *part, float *scratch) {
    if (a->kv_type == DT_BF16 && dt_isa_get() == DT_ISA_AVX512 && dt_bf16_hw())
        dt_attention_chunks_avx512bf16(a, c0, c1, part, scratch);
    else
        tables[dt_isa_get()].attention_chunks(a, c0, c1, part, scratch);
}

void dt_attention_combine(const dt_attn_tile *a, const float *part) { tables[dt_isa_get()].attention_combine(a, part); }

void dt_f16_from_f32(const float *x, uint16_t *y, int64_t n) { tables[dt_isa_get()].f16_from_f32(x, y, n); }

void dt_bf16_from_f32(const float *x, uint16_t *y, int64_t n) { tables[dt_isa_get()].bf16_from_f32(x, y, n); }

void dt_silu_mul(const float *g, const float *u, float *h, int64_t n) { tables[dt_isa_get()].silu_mul(g, u, h, n); }

void dt_gelu_mul(const float *g, const float *u, float *h, int64_t n) { tables[dt_isa_get()].gelu_mul(g, u, h, n); }

void dt_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    tables[dt_isa_get()].rmsnorm(out, x, w, n, eps);
}
