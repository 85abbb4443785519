/* simde_avx512.h: build csrc/kernels/matmul_avx512.c on a CPU without AVX-512, for its tests.
 *
 * SIMDe (SIMD Everywhere, Debian's libsimde-dev, header-only) implements the AVX-512 intrinsics in portable
 * code; with native aliases the kernel source compiles unchanged. SIMDe 0.7.4 (Debian bookworm) lacks six
 * intrinsics the kernel uses; they are supplied below, element by element, as Intel's guide defines them. */
#ifndef RC_SIMDE_AVX512_H
#define RC_SIMDE_AVX512_H

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

static inline simde__m512 rc_shim_maskz_loadu_ps(uint16_t k, const float *p) {
    float f[16];
    for (int i = 0; i < 16; i++) f[i] = (k >> i) & 1 ? p[i] : 0.0f;
    return simde_mm512_loadu_ps(f);
}

static inline simde__m512i rc_shim_setzero_si512(void) { return simde_mm512_set1_epi32(0); }

#define _mm512_cvtepi32_ps rc_shim_cvtepi32_ps
#define _mm512_cvtph_ps rc_shim_cvtph_ps
#define _mm512_cvtepi8_epi32 rc_shim_cvtepi8_epi32
#define _mm512_maskz_loadu_epi8 rc_shim_maskz_loadu_epi8
#define _mm512_maskz_loadu_ps rc_shim_maskz_loadu_ps
#ifndef _mm512_setzero_si512
#define _mm512_setzero_si512 rc_shim_setzero_si512
#endif

#endif
