/* vnni_emu.h: build the avx2-vnni family (csrc/kernels/matmul_avx2_vnni.c) on a CPU without AVX-VNNI, for its
 * tests: the two AVX-VNNI instructions written with AVX2 only, exactly as Intel's guide defines them (each
 * int32 lane + the sum of its 4 u8 x s8 byte products, or of its 2 s16 x s16 word products, wrapping, no
 * saturation). matmul_avx2.c takes these when RC_AVX_VNNI_EMU is defined (tests/c/CMakeLists.txt). The real
 * instructions are checked where the CPU has them: test_kernels runs the native family there. */
#ifndef RC_VNNI_EMU_H
#define RC_VNNI_EMU_H

#include <immintrin.h>

/* acc[i] + sum_{k<4} u8(u[4i+k]) * s8(x[4i+k]): widened to int16 so nothing saturates */
static inline __m256i rc_emu_dpbusd(__m256i acc, __m256i u, __m256i x) {
    const __m256i plo = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(u)),
                                          _mm256_cvtepi8_epi16(_mm256_castsi256_si128(x))); /* bytes 0-15 in pairs */
    const __m256i phi = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(u, 1)),
                                          _mm256_cvtepi8_epi16(_mm256_extracti128_si256(x, 1))); /* 16-31 */
    /* hadd: lane 0 = groups 0 1 4 5, lane 1 = groups 2 3 6 7; then 64-bit units 0 2 1 3 */
    const __m256i g = _mm256_permute4x64_epi64(_mm256_hadd_epi32(plo, phi), 0xd8);
    return _mm256_add_epi32(acc, g);
}

/* acc[i] + w[2i] x[2i] + w[2i+1] x[2i+1] (s16): vpmaddwd is that sum (its one wrapping case, all four
 * operands -32768, wraps in vpdpwssd too) */
static inline __m256i rc_emu_dpwssd(__m256i acc, __m256i w, __m256i x) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(w, x));
}

#endif
