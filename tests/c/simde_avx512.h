/* simde_avx512.h: build csrc/kernels/matmul_avx512.c on a CPU without AVX-512, for its tests.
 *
 * SIMDe (SIMD Everywhere, Debian's libsimde-dev, header-only) implements the AVX-512 intrinsics in portable
 * code; with native aliases the kernel source compiles unchanged. SIMDe 0.7.4 (Debian bookworm) lacks eight
 * intrinsics the kernel uses; they are supplied below, element by element, as Intel's guide defines them
 * (and one native alias SIMDe leaves out). */
#ifndef RC_SIMDE_AVX512_H
#define RC_SIMDE_AVX512_H

#include <math.h>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <immintrin.h> /* the AVX2 / FMA / F16C parts run natively (built with -mavx2 -mfma -mf16c) */
#include <simde/x86/avx512.h>

#include "core/common.h"

static inline simde__m512 rc_shim_cvtepi32_ps(simde__m512i v) {
    int32_t a[16];
    float f[16];
    simde_mm512_storeu_si512(a, v);
    for (int i = 0; i < 16; i++) f[i] = (float)a[i];
    return simde_mm512_loadu_ps(f);
}

static inline simde__m512 rc_shim_cvtph_ps(simde__m256i v) {
    uint16_t h[16];
    float f[16];
    simde_mm256_storeu_si256((simde__m256i *)h, v);
    for (int i = 0; i < 16; i++) f[i] = rc_f16_to_f32(h[i]);
    return simde_mm512_loadu_ps(f);
}

static inline simde__m512i rc_shim_cvtepi8_epi32(simde__m128i v) {
    int8_t b[16];
    int32_t a[16];
    simde_mm_storeu_si128((simde__m128i *)b, v);
    for (int i = 0; i < 16; i++) a[i] = b[i];
    return simde_mm512_loadu_si512(a);
}

/* masked loads: masked-out bytes are not read (as the real instruction, which never faults on them) */
static inline simde__m512i rc_shim_maskz_loadu_epi8(uint64_t k, const void *p) {
    int8_t b[64];
    for (int i = 0; i < 64; i++) b[i] = (k >> i) & 1 ? ((const int8_t *)p)[i] : 0;
    return simde_mm512_loadu_si512(b);
}

static inline simde__m128i rc_shim_mm_maskz_loadu_epi8(uint16_t k, const void *p) {
    int8_t b[16];
    for (int i = 0; i < 16; i++) b[i] = (k >> i) & 1 ? ((const int8_t *)p)[i] : 0;
    return simde_mm_loadu_si128((const simde__m128i *)b);
}

static inline simde__m256i rc_shim_mm256_maskz_loadu_epi8(uint32_t k, const void *p) {
    int8_t b[32];
    for (int i = 0; i < 32; i++) b[i] = (k >> i) & 1 ? ((const int8_t *)p)[i] : 0;
    return simde_mm256_loadu_si256((const simde__m256i *)b);
}

static inline simde__m512 rc_shim_maskz_loadu_ps(uint16_t k, const float *p) {
    float f[16];
    for (int i = 0; i < 16; i++) f[i] = (k >> i) & 1 ? p[i] : 0.0f;
    return simde_mm512_loadu_ps(f);
}

static inline simde__m512i rc_shim_setzero_si512(void) { return simde_mm512_set1_epi32(0); }

/* used by the GEMM kernels */
static inline void rc_shim_mask_storeu_ps(void *p, uint16_t m, simde__m512 v) {
    float f[16];
    simde_mm512_storeu_ps(f, v);
    for (int i = 0; i < 16; i++)
        if ((m >> i) & 1) ((float *)p)[i] = f[i];
}

static inline float rc_shim_reduce_max_ps(simde__m512 v) {
    float f[16], m;
    simde_mm512_storeu_ps(f, v);
    m = f[0];
    for (int i = 1; i < 16; i++) m = f[i] > m ? f[i] : m;
    return m;
}

static inline int32_t rc_shim_reduce_add_epi32(simde__m512i v) {
    int32_t a[16], s = 0;
    simde_mm512_storeu_si512(a, v);
    for (int i = 0; i < 16; i++) s += a[i];
    return s;
}

/* float -> int32, round to nearest even (the default MXCSR mode; the kernels convert integral values only) */
static inline simde__m512i rc_shim_cvtps_epi32(simde__m512 v) {
    float f[16];
    int32_t a[16];
    simde_mm512_storeu_ps(f, v);
    for (int i = 0; i < 16; i++) a[i] = (int32_t)nearbyintf(f[i]);
    return simde_mm512_loadu_si512(a);
}

static inline simde__m256i rc_shim_maskz_loadu_epi16_256(uint16_t k, const void *p) {
    int16_t h[16];
    for (int i = 0; i < 16; i++) h[i] = (k >> i) & 1 ? ((const int16_t *)p)[i] : 0;
    return simde_mm256_loadu_si256((const simde__m256i *)h);
}

#define _mm512_maskz_loadu_ps rc_shim_maskz_loadu_ps
#define _mm512_mask_storeu_ps rc_shim_mask_storeu_ps
#define _mm512_reduce_max_ps rc_shim_reduce_max_ps
#define _mm512_reduce_add_epi32 rc_shim_reduce_add_epi32
#define _mm512_cvtps_epi32 rc_shim_cvtps_epi32
#define _mm_maskz_loadu_epi8 rc_shim_mm_maskz_loadu_epi8
#define _mm256_maskz_loadu_epi16 rc_shim_maskz_loadu_epi16_256
#define _mm512_cvtepi32_ps rc_shim_cvtepi32_ps
#define _mm512_cvtph_ps rc_shim_cvtph_ps
#define _mm512_cvtepi8_epi32 rc_shim_cvtepi8_epi32
#define _mm512_maskz_loadu_epi8 rc_shim_maskz_loadu_epi8
#define _mm256_maskz_loadu_epi8 rc_shim_mm256_maskz_loadu_epi8
/* simde_mm512_shuffle_f32x4 exists, without its native alias (used by rc_sum16x16) */
#define _mm512_shuffle_f32x4(a, b, imm8) simde_mm512_shuffle_f32x4(a, b, imm8)
#ifndef _mm512_setzero_si512
#define _mm512_setzero_si512 rc_shim_setzero_si512
#endif

#endif
