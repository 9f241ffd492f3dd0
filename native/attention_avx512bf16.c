/* ditto native layer: the AVX-512 attention built with AVX512_BF16
 * (-mavx512bf16), so that bf16 tiles run vdpbf16ps (attention_x86.h's
 * vp_* primitives). cpu.c runs it for bf16 tiles only, where the CPU has
 * the instructions. */
#include "attention_avx512.c"
