/* matmul_avx2.c: AVX2 + FMA + F16C kernels (x86-64 since Haswell / Zen). Compiled with
 * -mavx2 -mfma -mf16c and called only after rc_cpu() has found all three (and OS support for YMM).
 *
 *   f32, f16   8-wide FMA on float X (f16 widened with vcvtph2ps)
 *   q8         per block: int8 weights widened to int16 times the prepared int16 activations (vpmaddwd),
 *              then one FMA by d_w * d_x
 *   q4         4-bit codes -> codebook values + 64 (unsigned, <= 120) with one vpshufb, times the prepared
 *              int8 activations with vpmaddubsw (120 * 127 * 2 < 2^15: no saturation) and vpmaddwd; the
 *              group packing (quant.h) puts 4 weights of block k in 32-bit lane k, so 8 blocks accumulate
 *              in one register and take one FMA by their d_w * d_x per 256 weights. sum (v+64) x =
 *              sum v x + 64 sum x: the block sums start at the prepared -64 * sum xq (z), so they end exact
 *              (one vector, the short last group: 64 d_w[b] s[b] is taken off at the end instead, s[b] =
 *              d_x * sum of the block's xq). Starting at z, not a float correction per half group, measured
 *              +5-8% in cache and 1.5-2% on a whole Eagle-7B q4 decode on an AMD Zen 3 (PERFORMANCE.md).
 *
 * The same file is compiled a second time as the avx2-vnni family (matmul_avx2_vnni.c, with -mavxvnni and
 * RC_AVX_VNNI): the CPUs with AVX-VNNI but no AVX-512 (Alder Lake and later laptops and desktops) have the
 * VEX-encoded vpdpbusd / vpdpwssd on 256-bit registers, and rc_dp4 / rc_dp2 below become one instruction
 * each instead of two or three. Nothing else changes: the sums are exact in both (no vpmaddubsw pair can
 * saturate), so the two families give bit-identical results. */
#include <immintrin.h>

#include "kernels/gemm.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"

#include "kernels/prefetch_x86.h" /* RC_PF, the measured distances */

#if defined(RC_AVX_VNNI) && defined(RC_AVX_VNNI_EMU) /* tests on CPUs without AVX-VNNI: tests/c/vnni_emu.h */
#include "vnni_emu.h"
#define RC_VPDPBUSD rc_emu_dpbusd
#define RC_VPDPWSSD rc_emu_dpwssd
#elif defined(RC_AVX_VNNI)
#define RC_VPDPBUSD _mm256_dpbusd_avx_epi32
#define RC_VPDPWSSD _mm256_dpwssd_avx_epi32
#endif

/* RC_KEEP(v): v is in a register here (an empty asm that GCC must assume reads and changes it). Without it GCC
 * reassociates a run of AVX2 integer accumulations (s += madd(maddubs(w, x)); ...) into a tree: every product is
 * computed first and parked on the stack, then summed; the q4 GEMM lost ~20% of its time to those stores and
 * reloads, the small-batch rows function ~17% (docs/PERFORMANCE.md, seventh session). Only those two loops
 * (many independent sums, each a long run) take it: the single-vector functions (one short sum per half group)
 * gain from the tree, and single-token decode ran 16% slower with the barrier there. vpdpbusd carries its
 * accumulator, so the avx2-vnni copy needs no barrier (and ran ~4% slower with it). The sums are exact integers
 * either way. */
#if !defined(RC_AVX_VNNI)
#define RC_KEEP(v) __asm__("" : "+x"(v))
#else
#define RC_KEEP(v) (void)0
#endif

/* acc + the 4-byte sums of u8 x s8 products per int32 lane (u <= 120, so a vpmaddubsw pair, 120 * 127 * 2,
 * never saturates int16: the AVX2 form is exact too) */
static inline __m256i rc_dp4(__m256i acc, __m256i u, __m256i x) {
#if defined(RC_AVX_VNNI)
    return RC_VPDPBUSD(acc, u, x);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)));
#endif
}

/* acc + the 2-pair sums of s16 x s16 products per int32 lane */
static inline __m256i rc_dp2(__m256i acc, __m256i w, __m256i x) {
#if defined(RC_AVX_VNNI)
    return RC_VPDPWSSD(acc, w, x);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(w, x));
#endif
}

static inline float rc_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* ---- f32 / f16 -------------------------------------------------------------------------------------- */
static float rc_dot_f32(const float *w, const float *x, uint64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    uint64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        RC_PF(w + i, RC_PF_F32);
        RC_PF((const char *)(w + i) + 64, RC_PF_F32);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = rc_hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static float rc_dot_f16(const uint16_t *w, const float *x, uint64_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    uint64_t i = 0;
#define RC_H(k) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + (k))))
    for (; i + 32 <= n; i += 32) {
        RC_PF(w + i, RC_PF_F16);
        a0 = _mm256_fmadd_ps(RC_H(0), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(RC_H(8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(RC_H(16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(RC_H(24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(RC_H(0), _mm256_loadu_ps(x + i), a0);
#undef RC_H
    float s = rc_hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += _cvtsh_ss(w[i]) * x[i];
    return s;
}

/* ---- short rows (in <= RC_SHORT_IN): 8 rows per reduction (matmul_avx512.c has the 16-row version and
 * the reasons). Each row's sum is added up in the same order wherever it sits in the group. */
#define RC_SHORT_IN 256

/* acc[8] -> lane r = the sum of acc[r]'s 8 lanes */
static inline __m256 rc_sum8x8(const __m256 acc[8]) {
    /* h: per 128-bit half, pair sums of two rows; g: per half, the half-sums of four rows */
    const __m256 h0 = _mm256_hadd_ps(acc[0], acc[1]), h1 = _mm256_hadd_ps(acc[2], acc[3]);
    const __m256 h2 = _mm256_hadd_ps(acc[4], acc[5]), h3 = _mm256_hadd_ps(acc[6], acc[7]);
    const __m256 g0 = _mm256_hadd_ps(h0, h1), g1 = _mm256_hadd_ps(h2, h3); /* rows 0-3 | 0-3, rows 4-7 | 4-7 */
    return _mm256_add_ps(_mm256_permute2f128_ps(g0, g1, 0x20), _mm256_permute2f128_ps(g0, g1, 0x31));
}

/* 8 weights of a row at i (f32 or f16 widened); `n` < 8: only the first n, the rest 0, through a zero-padded
 * copy (nothing read beyond the row) */
static inline __attribute__((always_inline)) __m256 rc_short_w8(int f16, const char *w, uint64_t i, uint64_t n) {
    if (n == 8) {
        if (f16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)));
        return _mm256_loadu_ps((const float *)w + i);
    }
    float t[8] = {0};
    for (uint64_t k = 0; k < n; k++) t[k] = f16 ? _cvtsh_ss(((const uint16_t *)w)[i + k]) : ((const float *)w)[i + k];
    return _mm256_loadu_ps(t);
}

/* acc[r] += 8 weights of row r at i times x[i..i+8) for the 8 rows of a group (rows past the group's end
 * read its last row again: their lanes are not stored); n: the inputs present (8, or the row's last few) */
static inline __attribute__((always_inline)) void rc_short_step8(int f16, const char *w, uint64_t row_bytes,
                                                                 uint64_t nr, const float *x, uint64_t i,
                                                                 uint64_t n, __m256 acc[8]) {
    float xt[8] = {0};
    if (n < 8) for (uint64_t k = 0; k < n; k++) xt[k] = x[i + k];
    const __m256 xv = _mm256_loadu_ps(n == 8 ? x + i : xt);
    for (uint64_t r = 0; r < 8; r++) {
        const char *row = w + (r < nr ? r : nr - 1) * row_bytes;
        if (n == 8 && i % (f16 ? 32 : 16) == 0) RC_PF(row + i * (f16 ? 2 : 4), RC_PF_F32); /* per 64 bytes */
        acc[r] = _mm256_fmadd_ps(rc_short_w8(f16, row, i, n), xv, acc[r]);
    }
}

/* rows [r0, r1) of W [out, in] (in <= RC_SHORT_IN) times T vectors, 8 rows at a time: acc[r] lane j = the sum
 * over i = j (mod 8) of row r's w[i] x[i] */
static inline __attribute__((always_inline)) void rc_rows_short(int f16, const void *W, uint64_t in, uint64_t r0,
                                                                 uint64_t r1, const float *X, uint64_t T, float *Y,
                                                                 uint64_t out) {
    const uint64_t row_bytes = in * (f16 ? 2 : 4);
    for (uint64_t o = r0; o < r1; o += 8) {
        const uint64_t nr = r1 - o < 8 ? r1 - o : 8;
        const char *w = (const char *)W + o * row_bytes;
        for (uint64_t t = 0; t < T; t++) {
            __m256 acc[8];
            for (int r = 0; r < 8; r++) acc[r] = _mm256_setzero_ps();
            uint64_t i = 0;
            for (; i + 8 <= in; i += 8) rc_short_step8(f16, w, row_bytes, nr, X + t * in, i, 8, acc);
            if (i < in) rc_short_step8(f16, w, row_bytes, nr, X + t * in, i, in - i, acc);
            const __m256 sums = rc_sum8x8(acc);
            if (nr == 8) {
                _mm256_storeu_ps(Y + t * out + o, sums);
            } else {
                float s[8];
                _mm256_storeu_ps(s, sums);
                for (uint64_t r = 0; r < nr; r++) Y[t * out + o + r] = s[r];
            }
        }
    }
}

/* f32 / f16, small batches (matmul_avx512.c has the 8-vector form and the reasons): tiles of RC_F_TILE rows x
 * groups of RC_F_NT vectors x slices of RC_F_KC inputs (a tile is 32-256 KB at Eagle's widths: L2). Per 8 inputs, each of two rows' weights is loaded (f16:
 * converted) once for the group and each vector's activations once for both rows: 8 accumulators + 2 weights +
 * 1 activation = 11 of the 16 registers (8 vectors would spill them). */
#define RC_F_TILE 16
#define RC_F_KC 1024
#define RC_F_NT 4
#ifndef RC_F_BATCH_MIN_T
#define RC_F_BATCH_MIN_T 3
#endif
/* From this many vectors the GEMM. With the tile outermost (rc_rows_float_batch) the passes after the first
 * read the tile's rows from L2, not DRAM, and this function beat or matched the GEMM up to 16 vectors on Zen 3
 * (bench_kernels, 2 threads, ms, GEMM / this function: f16 14336x4096 T = 8 14.1 / 10.1, T = 16 19.1 / 16.1,
 * T = 24 31.0 / 36.3; 4096x14336 T = 16 20.2 / 17.6; 2048x2048 T = 8 1.09 / 0.87; f32 within the noise at
 * 8-16 vectors, the GEMM ahead from 24). Whole 0.1b-shaped f16 model, B = 8: 196-214 -> 306-313 tokens/s. */
#ifndef RC_AVX2_F_GEMM_MIN_T
#define RC_AVX2_F_GEMM_MIN_T 17
#endif

/* acc[r][t] += 8 weights of row r at i (k: all 8 present; else the first n, nothing read past them) times vector
 * t's activations there */
static inline __attribute__((always_inline)) void rc_float_batch_step(const int f16, const char *const w[2],
                                                                      const int R, uint64_t i, uint64_t n,
                                                                      const float *X, uint64_t ldx, const int nt,
                                                                      __m256 acc[2][RC_F_NT]) {
    const uint64_t pf = f16 ? RC_PF_F16 : RC_PF_F32; /* prefetch distance (prefetch_x86.h) */
    __m256 wv[2];
    for (int r = 0; r < R; r++) {
        if (n == 8 && i % (f16 ? 32 : 16) == 0) { /* per 64 bytes */
            if (f16) RC_PF_BUSY(w[r] + i * 2, pf);
            else RC_PF(w[r] + i * 4, pf);
        }
        wv[r] = rc_short_w8(f16, w[r], i, n);
    }
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) {
        const float *x = X + (uint64_t)t * ldx + i;
        __m256 xv;
        if (n == 8) {
            xv = _mm256_loadu_ps(x);
        } else {
            float xt[8] = {0};
            for (uint64_t j = 0; j < n; j++) xt[j] = x[j];
            xv = _mm256_loadu_ps(xt);
        }
        if (R == 2) __asm__("" : "+x"(xv)); /* one load for both rows, not one folded into each FMA */
        for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
}

/* Inputs [0, n) of R (1 or 2) rows (w0, w1) against nt <= RC_F_NT vectors (vector t at X + t * ldx), added to
 * the 8-lane partial sums part[r][t] (set instead when `first`) */
static inline __attribute__((always_inline)) void rc_float_batch(const int f16, const char *w0, const char *w1,
                                                                 const int R, uint64_t n, const float *X, uint64_t ldx,
                                                                 const int nt, __m256 part[2][RC_F_NT], int first) {
    const char *const w[2] = {w0, w1};
    __m256 acc[2][RC_F_NT];
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < R; r++) acc[r][t] = first ? _mm256_setzero_ps() : part[r][t];
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8) rc_float_batch_step(f16, w, R, i, 8, X, ldx, nt, acc);
    if (i < n) rc_float_batch_step(f16, w, R, i, n - i, X, ldx, nt, acc);
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < R; r++) part[r][t] = acc[r][t];
}

static void rc_float_batch_n(int f16, const char *w0, const char *w1, int R, uint64_t n, const float *X, uint64_t ldx,
                             uint64_t nt, __m256 part[2][RC_F_NT], int first) {
    switch (nt * 4 + (uint64_t)(R - 1) * 2 + (uint64_t)f16) {
#define RC_CASE(m)                                                                                                     \
    case 4 * m: rc_float_batch(0, w0, w1, 1, n, X, ldx, m, part, first); break;                                      \
    case 4 * m + 1: rc_float_batch(1, w0, w1, 1, n, X, ldx, m, part, first); break;                                  \
    case 4 * m + 2: rc_float_batch(0, w0, w1, 2, n, X, ldx, m, part, first); break;                                  \
    case 4 * m + 3: rc_float_batch(1, w0, w1, 2, n, X, ldx, m, part, first); break;
        RC_CASE(1) RC_CASE(2) RC_CASE(3) RC_CASE(4)
#undef RC_CASE
    default: break;
    }
}

/* rows [r0, r1) of an f32 / f16 W (in > RC_SHORT_IN) times T >= RC_F_BATCH_MIN_T vectors, tiles x groups x
 * slices (above); out of line, so its 4 KB of partial sums stay off the single-vector path's frame */
static __attribute__((noinline)) void rc_rows_float_batch(int f16, const void *W, uint64_t in, uint64_t r0,
                                                          uint64_t r1, const float *X, uint64_t T, float *Y,
                                                          uint64_t out) {
    const uint64_t row_bytes = in * (f16 ? 2 : 4), esize = f16 ? 2 : 4;
    const char *w = (const char *)W;
    __m256 part[RC_F_TILE / 2][2][RC_F_NT]; /* [row pair][row][vector]: 8-lane partial sums */
    for (uint64_t o0 = r0; o0 < r1; o0 += RC_F_TILE) {
        const uint64_t o1 = r1 - o0 < RC_F_TILE ? r1 : o0 + RC_F_TILE;
        for (uint64_t t0 = 0; t0 < T; t0 += RC_F_NT) { /* later groups find the tile's rows in L2 */
            const uint64_t nt = T - t0 < RC_F_NT ? T - t0 : RC_F_NT;
            for (uint64_t k0 = 0; k0 < in; k0 += RC_F_KC) {
                const uint64_t n = in - k0 < RC_F_KC ? in - k0 : RC_F_KC;
                for (uint64_t o = o0; o < o1; o += 2) {
                    const int R = o1 - o >= 2 ? 2 : 1;
                    rc_float_batch_n(f16, w + o * row_bytes + k0 * esize, w + (o + R - 1) * row_bytes + k0 * esize, R,
                                     n, X + t0 * in + k0, in, nt, part[(o - o0) / 2], k0 == 0);
                }
            }
            for (uint64_t o = o0; o < o1; o++)
                for (uint64_t t = 0; t < nt; t++) Y[(t0 + t) * out + o] = rc_hsum(part[(o - o0) / 2][(o - o0) % 2][t]);
        }
    }
}

/* f32 / f16 rows: short rows 8 at a time; one or two vectors row by row (the second finds the row in L1); from
 * RC_F_BATCH_MIN_T vectors rc_rows_float_batch; the GEMM from gemm_min_t */
static void rc_rows_f32(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out) {
    if (in <= RC_SHORT_IN) {
        rc_rows_short(0, W, in, r0, r1, (const float *)X, T, Y, out);
        return;
    }
    if (T >= RC_F_BATCH_MIN_T) {
        rc_rows_float_batch(0, W, in, r0, r1, (const float *)X, T, Y, out);
        return;
    }
    for (uint64_t o = r0; o < r1; o++)
        for (uint64_t t = 0; t < T; t++)
            Y[t * out + o] = rc_dot_f32((const float *)W + o * in, (const float *)X + t * in, in);
}

static void rc_rows_f16(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out) {
    if (in <= RC_SHORT_IN) {
        rc_rows_short(1, W, in, r0, r1, (const float *)X, T, Y, out);
        return;
    }
    if (T >= RC_F_BATCH_MIN_T) {
        rc_rows_float_batch(1, W, in, r0, r1, (const float *)X, T, Y, out);
        return;
    }
    for (uint64_t o = r0; o < r1; o++)
        for (uint64_t t = 0; t < T; t++)
            Y[t * out + o] = rc_dot_f16((const uint16_t *)W + o * in, (const float *)X + t * in, in);
}

/* ---- q8 / q4 ------------------------------------------------------------------------------------------ */
#define RC_X(blk) _mm256_loadu_si256((const __m256i *)(xq + (uint64_t)(blk) * RC_QK))

/* d_w * d_x for blocks [b, b + n), n <= 8, into sc */
static inline void rc_scales(const uint16_t *dw, const float *dx, uint64_t b, uint64_t n, float *sc) {
    if (n == 8) {
        __m256 s = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(dw + b))), _mm256_loadu_ps(dx + b));
        _mm256_storeu_ps(sc, s);
    } else {
        for (uint64_t k = 0; k < n; k++) sc[k] = _cvtsh_ss(dw[b + k]) * dx[b + k];
    }
}

/* q8: int8 weights widened to int16 (vpmovsxbw) times int16 activations with vpmaddwd: 32 weights are two
 * widen + multiply-add pairs, exact in int32. */
static inline __m256i rc_block_dot16(const int8_t *w, const int16_t *x) {
    const __m256i lo = rc_dp2(_mm256_setzero_si256(), _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w)),
                              _mm256_loadu_si256((const __m256i *)x));
    return rc_dp2(lo, _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 16))),
                  _mm256_loadu_si256((const __m256i *)(x + 16)));
}

static float rc_row_q8(const uint8_t *row, uint64_t nb, const void *qx) {
    const uint16_t *dw = rc_q_scales(row);
    const int8_t *wq = (const int8_t *)rc_q_quants(row, nb);
    const float *dx = rc_qx_d(qx);
    const int16_t *xq = rc_qx_q16(qx, nb);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    float sc[8];
#define RC_ACC16(acc, blk, scale) acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(rc_block_dot16(wq + (blk) * RC_QK, \
                                                          xq + (blk) * RC_QK)), _mm256_broadcast_ss(scale), acc)
    for (uint64_t b = 0; b < nb; b += 8) {
        uint64_t n = nb - b < 8 ? nb - b : 8;
        rc_scales(dw, dx, b, n, sc);
        for (int l = 0; l < 4; l++) RC_PF((const char *)(wq + b * RC_QK) + 64 * l, RC_PF_Q8);
        uint64_t k = 0;
        for (; k + 4 <= n; k += 4) {
            RC_ACC16(a0, b + k, &sc[k]);
            RC_ACC16(a1, b + k + 1, &sc[k + 1]);
            RC_ACC16(a2, b + k + 2, &sc[k + 2]);
            RC_ACC16(a3, b + k + 3, &sc[k + 3]);
        }
        for (; k < n; k++) RC_ACC16(a0, b + k, &sc[k]);
    }
#undef RC_ACC16
    return rc_hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

/* ---- q4 --------------------------------------------------------------------------------------------- */
/* rc_q4_scale with the hardware f16 conversion (the same exact value) */
static inline float rc_q4_scale_hw(const rc_q4_row *r, uint64_t b) {
    return _cvtsh_ss(r->D[b / RC_Q4_SUPER]) * (float)r->s[b] * 0.0078125f;
}

/* the scales of the 8 blocks of super-block b / 8 (b a multiple of 8, all 8 present): exact, as rc_q4_scale */
static inline __m256 rc_q4_scales8(const rc_q4_row *r, uint64_t b) {
    const __m256 s = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(r->s + b))));
    return _mm256_mul_ps(s, _mm256_set1_ps(_cvtsh_ss(r->D[b / RC_Q4_SUPER]) * 0.0078125f));
}

/* int32 lane k = the dot product of block 8h + k of a group of n blocks (quant.h), h = 0 or 1: each of the 4
 * chunks (4n code bytes facing 8n activations) gives 32 bytes from 32h on; `live` masks the lanes (dwords)
 * that exist in a short group (whole = 1: no masking, plain loads). */
static inline __m256i rc_q4_load(const void *p, int whole, __m256i live) {
    return whole ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskload_epi32((const int *)p, live);
}

static inline __m256i rc_q4_half_dot(const uint8_t *p, const int8_t *x, uint64_t n, uint64_t h, int whole,
                                     __m256i live, __m256i acc) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)rc_q4_values_u8));
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (uint64_t m = 0; m < 4; m++) {
        const __m256i q = rc_q4_load(p + 4 * n * m + 32 * h, whole, live);
        const __m256i xl = rc_q4_load(x + 8 * n * m + 32 * h, whole, live);
        const __m256i xh = rc_q4_load(x + 8 * n * m + 4 * n + 32 * h, whole, live);
        acc = rc_dp4(acc, _mm256_shuffle_epi8(table, _mm256_and_si256(q, m4)), xl);
        acc = rc_dp4(acc, _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4)), xh);
    }
    return acc;
}

/* One row: sum over blocks of d_w d_x (dot of codebook values + 64 with x) - 64 d_w s_x. */
static float rc_row_q4(const rc_q4_row *r, uint64_t nb, const void *qx) {
    const float *dx = rc_qx_d(qx), *sx = rc_qx_s(qx, nb);
    const int32_t *xz = rc_qx_z(qx, nb);
    const int8_t *xq = rc_qx_q(qx, nb);
    const __m256i all = _mm256_set1_epi32(-1);
    __m256 acc = _mm256_setzero_ps(), corr = acc; /* corr: sum_b d_w[b] * s[b] */
    uint64_t b = 0;
    for (; b + RC_Q4_GROUP <= nb; b += RC_Q4_GROUP) { /* whole groups: 512 weights, 256 bytes of codes */
        const uint8_t *p = r->codes + 16 * b;
        for (int l = 0; l < 4; l++) RC_PF((const char *)p + 64 * l, RC_PF_Q4);
        for (uint64_t h = 0; h < 2; h++) {
            const __m256i dot = rc_q4_half_dot(p, xq + 32 * b, RC_Q4_GROUP, h, 1, all,
                                               _mm256_loadu_si256((const __m256i *)(xz + b + 8 * h)));
            const __m256 dw = rc_q4_scales8(r, b + 8 * h);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dw, _mm256_loadu_ps(dx + b + 8 * h)), acc);
        }
    }
    if (b < nb) { /* the short last group: lanes beyond its n blocks are masked off */
        const uint64_t n = nb - b;
        for (uint64_t h = 0; h * 8 < n; h++) {
            const uint64_t k0 = 8 * h, nk = n - k0 < 8 ? n - k0 : 8;
            float dw[8] = {0}, dxv[8] = {0}, sxv[8] = {0};
            for (uint64_t k = 0; k < nk; k++) {
                dw[k] = rc_q4_scale_hw(r, b + k0 + k);
                dxv[k] = dx[b + k0 + k];
                sxv[k] = sx[b + k0 + k];
            }
            const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nk), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            const __m256i dot = rc_q4_half_dot(r->codes + 16 * b, xq + 32 * b, n, h, 0, live, _mm256_setzero_si256());
            const __m256 w = _mm256_loadu_ps(dw);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(w, _mm256_loadu_ps(dxv)), acc);
            corr = _mm256_fmadd_ps(w, _mm256_loadu_ps(sxv), corr);
        }
    }
    return rc_hsum(_mm256_fnmadd_ps(_mm256_set1_ps(64.0f), corr, acc));
}
#undef RC_X

static void rc_rows_q8(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out) {
    const uint64_t nb = in / RC_QK, rb = nb * RC_Q8_BLOCK_BYTES, xs = rc_qx_stride(RWKV_DTYPE_Q8_0, in);
    for (uint64_t o = r0; o < r1; o++)
        for (uint64_t t = 0; t < T; t++)
            Y[t * out + o] = rc_row_q8((const uint8_t *)W + o * rb, nb, (const uint8_t *)X + t * xs);
}

/* One row against nt <= RC_Q4_BATCH prepared vectors (vector t at qx + t * xs): small batches. Each 32-byte chunk
 * of a half group's codes (8 blocks, quant.h) is loaded and looked up once and then serves every vector (the
 * one-vector form above re-read and re-looked it up per vector: a batch of 4 took longer than 4 single tokens).
 * Per vector and half group: 4 x 2 (vpmaddubsw + vpmaddwd) into one int32 register that starts at the prepared
 * -64 * sum xq of each block (z), so it ends as the exact block sums of v x (the +64 of the u8 codebook taken
 * off in integers, as rc_rows_q4_batch in matmul_avx512.c); then one conversion and one FMA by d_w d_x. The
 * vectors go RC_Q4_BATCH at a time (the int32 and float sums of 4 vectors, the codes and the constants fill the 16
 * AVX2 registers; with 8 they spill), later passes finding the row's codes in L1. */
#ifndef RC_Q4_BATCH
#define RC_Q4_BATCH 4 /* 8 spilled: 14336x4096 x 8 vectors, 2 threads, 10.8 G weights/s against 13.1 in two passes of 4 */
#endif
/* Fewer vectors than this go one at a time (rc_row_q4): measured (14336x4096, 2 threads, from DRAM, G weights/s,
 * batch / one at a time) 2 vectors 25.6-30.1 / 30.9-34.8 (the second pass finds the row in L1 and the first streams
 * it faster), 3: 22.1-25.5 / 22.2-23.5, 4: 21.4 / 18.4, 8: 12.1-13.3 / 11.2. */
#define RC_Q4_BATCH_MIN_T 3
/* ...where the one-vector loop prefetches (rc_x86_sw_prefetch >= 2, RC_PF). Where it does not (AMD's default,
 * core/cpu.h), 2 vectors go through the batch function, which keeps its prefetches (RC_PF_BUSY): on the Zen 3
 * VM, 2 threads, ms, one at a time / batch: 4096x4096 0.557 / 0.415 and 0.519 / 0.607, 14336x4096 1.86 / 1.42
 * and 1.97 / 1.46, 4096x14336 2.07 / 1.56 and 2.12 / 1.43. */
static inline uint64_t rc_q4_batch_min_t(void) { return rc_x86_sw_prefetch >= 2 ? RC_Q4_BATCH_MIN_T : 2; }
/* More vectors than RC_Q4_BATCH take several passes; each pass then runs over a tile of this many rows before the
 * next pass starts, so that the later passes find the tile's codes in the L1 / L2 cache, not just the last row's.
 * Measured (AMD EPYC Zen 3, 14336x4096 from DRAM, 8 vectors, 2 threads, G weights/s): one row at a time (the
 * earlier order) 12.1-13.1, tiles of 4 rows 15.0-15.4, 8: 15.8-16.0, 16: 15.8-16.5, 64: 16.3-16.4; 4096x14336
 * (4 vectors' activations no longer fit the L1 cache) 13.4-13.7 either way. Whole Eagle-7B q4 steps of 8:
 * 13.3-13.6 -> 15.3-15.7 tokens/s. */
#ifndef RC_Q4_TILE_ROWS
#define RC_Q4_TILE_ROWS 16
#endif
/* From this many vectors the q4 GEMM (measured 14336x4096, 2 threads, G weights/s, GEMM / rows: 4 vectors 9.8 /
 * 25.0, 8: 7.4 / 13.1, 16: 4.9 / 6.5, 24: 3.6 / 4.1, 32: 3.0 / 3.0, 64: 1.6 / 1.5) */
#ifndef RC_AVX2_Q4_GEMM_MIN_T
#define RC_AVX2_Q4_GEMM_MIN_T 32
#endif
/* One group (blocks [b, b + n), whole: n = 16) of the row against nt vectors, added to acc[t]. */
static inline __attribute__((always_inline)) void rc_q4_batch_group(const rc_q4_row *r, uint64_t b, const int whole,
                                                                    uint64_t n, const uint8_t *xq, const uint8_t *xd,
                                                                    const uint8_t *xz, uint64_t xs, const int nt,
                                                                    __m256 *acc) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)rc_q4_values_u8));
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const uint8_t *p = r->codes + 16 * b;
    if (whole)
        for (int l = 0; l < 4; l++) RC_PF_BUSY((const char *)p + 64 * l, RC_PF_Q4);
    for (uint64_t h = 0; 8 * h < n; h++) {
        const uint64_t nk = n - 8 * h < 8 ? n - 8 * h : 8; /* live blocks (lanes) of this half */
        const __m256i live = whole ? _mm256_set1_epi32(-1)
                                   : _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nk), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256i dot[RC_Q4_BATCH];
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) dot[t] = rc_q4_load(xz + t * xs + 4 * (b + 8 * h), whole, live);
#pragma GCC unroll 4
        for (uint64_t m = 0; m < 4; m++) {
            const __m256i q = rc_q4_load(p + 4 * n * m + 32 * h, whole, live);
            const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(q, m4));
            const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
            const uint64_t ox = 32 * b + 8 * n * m + 32 * h;
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const __m256i xl = rc_q4_load(xq + t * xs + ox, whole, live);
                const __m256i xh = rc_q4_load(xq + t * xs + ox + 4 * n, whole, live);
                /* each vpmaddubsw pair sum fits int16 (120 * 127 * 2), two of them would not: widen each */
                dot[t] = rc_dp4(rc_dp4(dot[t], lo, xl), hi, xh);
                RC_KEEP(dot[t]);
            }
        }
        __m256 dw;
        if (whole) {
            dw = rc_q4_scales8(r, b + 8 * h);
        } else {
            float d[8] = {0};
            for (uint64_t k = 0; k < nk; k++) d[k] = rc_q4_scale_hw(r, b + 8 * h + k);
            dw = _mm256_loadu_ps(d);
        }
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const __m256 dx = whole ? _mm256_loadu_ps((const float *)(xd + t * xs) + b + 8 * h)
                                    : _mm256_maskload_ps((const float *)(xd + t * xs) + b + 8 * h, live);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[t]), _mm256_mul_ps(dw, dx), acc[t]);
        }
    }
}

static inline __attribute__((always_inline)) void rc_rows_q4_batch(const rc_q4_row *r, uint64_t nb, const uint8_t *qx,
                                                                   uint64_t xs, const int nt, float *y, uint64_t ldy) {
    const uint8_t *xq = (const uint8_t *)rc_qx_q(qx, nb); /* vector 0's int8 activations, group order */
    const uint8_t *xd = (const uint8_t *)rc_qx_d(qx);     /* its dx per block (float) */
    const uint8_t *xz = (const uint8_t *)rc_qx_z(qx, nb); /* its -64 sum xq per block (int32) */
    __m256 acc[RC_Q4_BATCH];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
    uint64_t b = 0;
    for (; b + RC_Q4_GROUP <= nb; b += RC_Q4_GROUP) rc_q4_batch_group(r, b, 1, RC_Q4_GROUP, xq, xd, xz, xs, nt, acc);
    if (b < nb) rc_q4_batch_group(r, b, 0, nb - b, xq, xd, xz, xs, nt, acc); /* the short last group */
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) y[t * ldy] = rc_hsum(acc[t]);
}

static void rc_rows_q4_batch_n(const rc_q4_row *r, uint64_t nb, const uint8_t *qx, uint64_t xs, uint64_t nt, float *y,
                               uint64_t ldy) {
    switch (nt) {
#define RC_CASE(n) case n: rc_rows_q4_batch(r, nb, qx, xs, n < RC_Q4_BATCH ? n : RC_Q4_BATCH, y, ldy); break;
        RC_CASE(2) RC_CASE(3) RC_CASE(4) RC_CASE(5) RC_CASE(6) RC_CASE(7) RC_CASE(8)
#undef RC_CASE
    default: break;
    }
}

static void rc_rows_q4(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out) {
    const uint64_t nb = in / RC_QK, xs = rc_qx_stride(RWKV_DTYPE_Q4, in);
    /* rows in tiles of RC_Q4_TILE_ROWS when the vectors take more than one pass (T > RC_Q4_BATCH), else 1 */
    const uint64_t tile = T > RC_Q4_BATCH ? RC_Q4_TILE_ROWS : 1;
    for (uint64_t o0 = r0; o0 < r1; o0 += tile) {
        const uint64_t o1 = r1 - o0 < tile ? r1 : o0 + tile;
        uint64_t t0 = 0;
        while (T >= rc_q4_batch_min_t() && T - t0 >= 2) { /* 2 .. RC_Q4_BATCH at a time; a last single one alone */
            const uint64_t nt = T - t0 < RC_Q4_BATCH ? T - t0 : RC_Q4_BATCH;
            for (uint64_t o = o0; o < o1; o++) {
                const rc_q4_row r = rc_q4_row_at(W, out, nb, o);
                rc_rows_q4_batch_n(&r, nb, (const uint8_t *)X + t0 * xs, xs, nt, Y + t0 * out + o, out);
            }
            t0 += nt;
        }
        for (; t0 < T; t0++)
            for (uint64_t o = o0; o < o1; o++) {
                const rc_q4_row r = rc_q4_row_at(W, out, nb, o);
                Y[t0 * out + o] = rc_row_q4(&r, nb, (const uint8_t *)X + t0 * xs);
            }
    }
}

/* ---- GEMM (gemm.h): panels of RC_MR = 8 rows (one YMM of outputs) times NR vectors -------------------------
 * As matmul_avx512.c's, at half the width: float panels P [kc][8]; integer panels P [block][dword group][8
 * rows][4 bytes]. AVX2 has no VNNI: q8 multiplies int16 pairs with vpmaddwd; q4 multiplies u8 by s8 with
 * vpmaddubsw and sums pairs with vpmaddwd, the other way round from the decode path: the activations are the
 * unsigned side (xq + 128 <= 255, rc_gx_prepare_u8) and the panel holds the signed codebook values (|v| <= 63:
 * 255 * 63 * 2 < 2^15, no saturation). So the +128 is taken off by starting each block's sums at the panel's
 * Cw = -128 * sum v, which serves every vector, where the decode path's -64 * sum xq had to be broadcast and
 * added per vector and block. Panels go two at a time (rc_kernel_x2): each broadcast activation meets two
 * weight registers. The last 1-8 rows take the one-panel kernels.
 * Measured (64x4096 in cache, 256 vectors, one thread, AMD Zen 3, G multiply-adds/s, best of 3 x 25):
 * - q4: 70.0 before, 74.6 with Cw, 81.6 with two panels and 4 vectors (3: 80.5, 2: 80.3; one panel and
 *   4 / 5 / 6 / 7 vectors: 69.7 / 73.1 / 74.6 / 74.4). A vpmaddubsw + vpmaddwd pair per 32 multiply-adds caps
 *   this at 32 per cycle (Zen 3 runs both on the same two pipes); the block's float step (conversion, two
 *   products) takes about a fifth.
 * - q8: 59.4-60.7 with one panel, 67.2-68.7 with two and 4 vectors (3: 66.5, 5: 67.4-68.6; panels of 1024
 *   inputs: 62.9-66.3). q8 pays a vpaddd per vpmaddwd, where q4 pays one per two multiplies. */
#define RC_MR 8
#define RC_NR_F 12     /* float, one panel (the last 1-8 rows): 12 accumulators */
#define RC_NR_Q 6      /* integer: 6 int32 block sums + 6 float accumulators */
#define RC_KC_F 1024   /* inputs per float panel (a multiple of 8): 32 KB packed */
#define RC_KC_Q 2048   /* inputs per integer panel (whole 16-block groups) */
#define RC_ALWAYS_INLINE inline __attribute__((always_inline))

/* r[i] lane j <-> r[j] lane i, 8 x 8 dwords. */
static inline void rc_transpose8(__m256i r[8]) {
    __m256i t[8], u[8];
    for (int a = 0; a < 4; a++) {
        t[2 * a] = _mm256_unpacklo_epi32(r[2 * a], r[2 * a + 1]);
        t[2 * a + 1] = _mm256_unpackhi_epi32(r[2 * a], r[2 * a + 1]);
    }
    for (int b = 0; b < 2; b++) { /* u[4b + c]: column c (lane 0) and c + 4 (lane 1) of rows 4b .. 4b+3 */
        u[4 * b] = _mm256_unpacklo_epi64(t[4 * b], t[4 * b + 2]);
        u[4 * b + 1] = _mm256_unpackhi_epi64(t[4 * b], t[4 * b + 2]);
        u[4 * b + 2] = _mm256_unpacklo_epi64(t[4 * b + 1], t[4 * b + 3]);
        u[4 * b + 3] = _mm256_unpackhi_epi64(t[4 * b + 1], t[4 * b + 3]);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x31);
    }
}

static inline uint64_t rc_panel_row(uint64_t i, uint64_t nr) { return i < nr ? i : nr - 1; }

/* Y[0..nr) of one vector = acc (add: += acc) */
static RC_ALWAYS_INLINE void rc_store8(float *y, __m256 a, uint64_t nr, int add) {
    if (nr == RC_MR) {
        if (add) a = _mm256_add_ps(a, _mm256_loadu_ps(y));
        _mm256_storeu_ps(y, a);
        return;
    }
    float v[8];
    _mm256_storeu_ps(v, a);
    for (uint64_t i = 0; i < nr; i++) y[i] = add ? y[i] + v[i] : v[i];
}

/* f32 panel P [kc][8] from rows [0, nr) of W (W0 = row 0 at input k0, rows `in` values apart, f32 or f16). */
static void rc_pack_float(int f16, const void *W0, uint64_t in, uint64_t nr, uint64_t kc, float *P) {
    const float *w32 = (const float *)W0;
    const uint16_t *w16 = (const uint16_t *)W0;
    uint64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256i r[8];
        for (int i = 0; i < 8; i++) {
            const uint64_t at = rc_panel_row((uint64_t)i, nr) * in + k;
            r[i] = f16 ? _mm256_castps_si256(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w16 + at))))
                       : _mm256_loadu_si256((const __m256i *)(w32 + at));
        }
        rc_transpose8(r);
        for (int j = 0; j < 8; j++) _mm256_store_si256((__m256i *)(P + (k + j) * RC_MR), r[j]);
    }
    for (; k < kc; k++)
        for (uint64_t i = 0; i < RC_MR; i++) {
            const uint64_t at = rc_panel_row(i, nr) * in + k;
            P[k * RC_MR + i] = f16 ? _cvtsh_ss(w16[at]) : w32[at];
        }
}

static RC_ALWAYS_INLINE void rc_kernel_f32(const float *P, uint64_t kc, const float *X, uint64_t ldx, const int nt,
                                           float *Y, uint64_t ldy, uint64_t nr, int add) {
    __m256 a[RC_NR_F];
#pragma GCC unroll 12
    for (int t = 0; t < nt; t++) a[t] = _mm256_setzero_ps();
    for (uint64_t k = 0; k < kc; k++) {
        const __m256 w = _mm256_load_ps(P + k * RC_MR);
#pragma GCC unroll 12
        for (int t = 0; t < nt; t++) a[t] = _mm256_fmadd_ps(w, _mm256_broadcast_ss(X + t * ldx + k), a[t]);
    }
#pragma GCC unroll 12
    for (int t = 0; t < nt; t++) rc_store8(Y + t * ldy, a[t], nr, add);
}

static void rc_kernel_f32_n(const float *P, uint64_t kc, const float *X, uint64_t ldx, uint64_t nt, float *Y,
                            uint64_t ldy, uint64_t nr, int add) {
    switch (nt) {
#define RC_CASE(n) case n: rc_kernel_f32(P, kc, X, ldx, n, Y, ldy, nr, add); break;
        RC_CASE(1) RC_CASE(2) RC_CASE(3) RC_CASE(4) RC_CASE(5) RC_CASE(6)
        RC_CASE(7) RC_CASE(8) RC_CASE(9) RC_CASE(10) RC_CASE(11) RC_CASE(12)
#undef RC_CASE
    default: break;
    }
}

/* Two panels at once (16 rows: panel 1 lies RC_KC_F * 8 floats after panel 0) x nt <= RC_NR_F2 vectors: per
 * input 2 weight loads and nt broadcasts feed 2 nt FMAs, where one panel needed 12 + 1 loads for 12. Zen 3,
 * 64x4096 in cache, 256 vectors, one thread, best of 4 x 25, G multiply-adds/s: f32 36.5 -> 45.1, f16 36.4 ->
 * 45.2. */
#ifndef RC_NR_F2
#define RC_NR_F2 6 /* 12 accumulators + 2 weights + 1 broadcast */
#endif
static RC_ALWAYS_INLINE void rc_kernel_f32x2(const float *P, uint64_t kc, const float *X, uint64_t ldx, const int nt,
                                             float *Y, uint64_t ldy, uint64_t nr1, int add) {
    __m256 a[RC_NR_F2][2];
#pragma GCC unroll 6
    for (int t = 0; t < nt; t++) a[t][0] = a[t][1] = _mm256_setzero_ps();
    for (uint64_t k = 0; k < kc; k++) {
        const __m256 w0 = _mm256_load_ps(P + k * RC_MR), w1 = _mm256_load_ps(P + RC_KC_F * RC_MR + k * RC_MR);
#pragma GCC unroll 6
        for (int t = 0; t < nt; t++) {
            const __m256 x = _mm256_broadcast_ss(X + t * ldx + k);
            a[t][0] = _mm256_fmadd_ps(w0, x, a[t][0]);
            a[t][1] = _mm256_fmadd_ps(w1, x, a[t][1]);
        }
    }
#pragma GCC unroll 6
    for (int t = 0; t < nt; t++) {
        rc_store8(Y + t * ldy, a[t][0], RC_MR, add);
        rc_store8(Y + t * ldy + RC_MR, a[t][1], nr1, add);
    }
}

static void rc_kernel_f32x2_n(const float *P, uint64_t kc, const float *X, uint64_t ldx, uint64_t nt, float *Y,
                              uint64_t ldy, uint64_t nr1, int add) {
    switch (nt) {
#define RC_CASE(n) case n: rc_kernel_f32x2(P, kc, X, ldx, n, Y, ldy, nr1, add); break;
        RC_CASE(1) RC_CASE(2) RC_CASE(3) RC_CASE(4) RC_CASE(5) RC_CASE(6)
#undef RC_CASE
    default: break;
    }
}

static void rc_gemm_float(int f16, const void *W, uint64_t in, uint64_t r0, uint64_t r1, const float *X, uint64_t T,
                          float *Y, uint64_t out, float *P) {
    const uint64_t ldx = rc_fx_stride(in);
    for (uint64_t p = r0; p < r1; p += 2 * RC_MR) { /* two panels, the last 1-8 rows one */
        const uint64_t nr = r1 - p < 2 * RC_MR ? r1 - p : 2 * RC_MR;
        for (uint64_t k0 = 0; k0 < in; k0 += RC_KC_F) {
            const uint64_t kc = in - k0 < RC_KC_F ? in - k0 : RC_KC_F;
            for (uint64_t h = 0; h * RC_MR < nr; h++) {
                const uint64_t o = p + h * RC_MR, hr = nr - h * RC_MR < RC_MR ? nr - h * RC_MR : RC_MR;
                rc_pack_float(f16, f16 ? (const void *)((const uint16_t *)W + o * in + k0)
                                       : (const void *)((const float *)W + o * in + k0), in, hr, kc,
                              P + h * RC_KC_F * RC_MR);
            }
            if (nr > RC_MR) {
                for (uint64_t t0 = 0; t0 < T; t0 += RC_NR_F2) {
                    const uint64_t nt = T - t0 < RC_NR_F2 ? T - t0 : RC_NR_F2;
                    rc_kernel_f32x2_n(P, kc, X + t0 * ldx + k0, ldx, nt, Y + t0 * out + p, out, nr - RC_MR, k0 > 0);
                }
            } else {
                for (uint64_t t0 = 0; t0 < T; t0 += RC_NR_F) {
                    const uint64_t nt = T - t0 < RC_NR_F ? T - t0 : RC_NR_F;
                    rc_kernel_f32_n(P, kc, X + t0 * ldx + k0, ldx, nt, Y + t0 * out + p, out, nr, k0 > 0);
                }
            }
        }
    }
}

static void rc_gemm_f32(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out, void *scratch) {
    rc_gemm_float(0, W, in, r0, r1, (const float *)X, T, Y, out, (float *)scratch);
}

static void rc_gemm_f16(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out, void *scratch) {
    rc_gemm_float(1, W, in, r0, r1, (const float *)X, T, Y, out, (float *)scratch);
}

/* ---- integer GEMM ---------------------------------------------------------------------------------------
 * U per row as in matmul_avx512.c (q4: [group][8 dword groups][16 blocks][4 u8], here value + 64; q8:
 * int16 in input order); P [block][dword group][8 rows][4 bytes]: 256 bytes per block for q4, 512 for q8. */
#define RC_U_GROUP 512

static void rc_unpack_q8(const uint8_t *row, uint64_t nb, uint64_t b0, uint64_t nbk, uint8_t *u) {
    const int8_t *q = (const int8_t *)rc_q_quants(row, nb) + b0 * RC_QK;
    for (uint64_t i = 0; i < nbk * RC_QK; i += 16)
        _mm256_storeu_si256((__m256i *)(u + 2 * i), _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(q + i))));
}

static void rc_unpack_q4(const uint8_t *codes, uint64_t nb, uint64_t b0, uint64_t nbk, uint8_t *u) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)rc_q4_values));
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (uint64_t bl = 0; bl < nbk; bl += RC_Q4_GROUP) {
        const uint64_t b = b0 + bl, n = rc_q4_group_blocks(nb, b);
        uint8_t *ug = u + bl / RC_Q4_GROUP * RC_U_GROUP;
        for (uint64_t m = 0; m < 4; m++) {
            uint8_t chunk[64] = {0}; /* 4 n bytes: dword k = block k */
            const uint8_t *c = codes + b * 16 + m * 4 * n;
            if (n == RC_Q4_GROUP) c = codes + b * 16 + m * 64;
            else { memcpy(chunk, c, 4 * n); c = chunk; }
            for (int h = 0; h < 2; h++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(c + 32 * h));
                _mm256_storeu_si256((__m256i *)(ug + 2 * m * 64 + 32 * h), _mm256_shuffle_epi8(table, _mm256_and_si256(q, m4)));
                _mm256_storeu_si256((__m256i *)(ug + (2 * m + 1) * 64 + 32 * h),
                                    _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4)));
            }
        }
    }
}

static inline uint64_t rc_u_stride(int q8, uint64_t nbk) {
    return q8 ? nbk * RC_QK * 2 : (nbk + RC_Q4_GROUP - 1) / RC_Q4_GROUP * RC_U_GROUP;
}

static void rc_pack_q(int q8, const uint8_t *W, uint64_t out, uint64_t nb, uint64_t p, uint64_t nr, uint64_t b0,
                      uint64_t nbk, uint8_t *U, uint8_t *P, float *D, int32_t *Cw) {
    const uint64_t ustride = rc_u_stride(q8, nbk);
    for (uint64_t r = 0; r < RC_MR; r++) {
        const uint64_t o = p + rc_panel_row(r, nr);
        if (q8) {
            const uint8_t *row = W + o * nb * RC_Q8_BLOCK_BYTES;
            if (r < nr) rc_unpack_q8(row, nb, b0, nbk, U + r * ustride);
            for (uint64_t bl = 0; bl < nbk; bl++) D[bl * RC_MR + r] = _cvtsh_ss(rc_q_scales(row)[b0 + bl]);
        } else {
            const rc_q4_row row = rc_q4_row_at(W, out, nb, o);
            if (r < nr) rc_unpack_q4(row.codes, nb, b0, nbk, U + r * ustride);
        }
    }
    if (!q8) { /* D [bl][8 rows]: whole super-blocks 8 rows at a time through a transpose, the rest one by one */
        uint64_t bl = 0;
        for (; bl + RC_Q4_SUPER <= nbk && (b0 + bl) % RC_Q4_SUPER == 0; bl += RC_Q4_SUPER) {
            __m256i v[8];
            for (uint64_t r = 0; r < RC_MR; r++) {
                const rc_q4_row row = rc_q4_row_at(W, out, nb, p + rc_panel_row(r, nr));
                v[r] = _mm256_castps_si256(rc_q4_scales8(&row, b0 + bl));
            }
            rc_transpose8(v);
            for (int k = 0; k < 8; k++) _mm256_store_si256((__m256i *)(D + (bl + (uint64_t)k) * RC_MR), v[k]);
        }
        for (uint64_t r = 0; r < RC_MR; r++) {
            const rc_q4_row row = rc_q4_row_at(W, out, nb, p + rc_panel_row(r, nr));
            for (uint64_t k = bl; k < nbk; k++) D[k * RC_MR + r] = rc_q4_scale_hw(&row, b0 + k);
        }
    }
    const uint64_t groups = q8 ? 16 : 8;
    /* q8: 8 dword groups of one block at a time; q4: one dword group of 8 blocks of a code group */
    const uint64_t steps = q8 ? nbk * 2 : (nbk + RC_Q4_GROUP - 1) / RC_Q4_GROUP * 16;
    for (uint64_t st = 0; st < steps; st++) {
        const uint64_t off = q8 ? st * 32 : st / 16 * RC_U_GROUP + (st % 16) / 2 * 64 + (st % 2) * 32;
        __m256i r[8];
        for (int i = 0; i < 8; i++)
            r[i] = _mm256_loadu_si256((const __m256i *)(U + rc_panel_row((uint64_t)i, nr) * ustride + off));
        rc_transpose8(r);
        for (uint64_t j = 0; j < 8; j++) {
            const uint64_t bl = q8 ? st / 2 : st / 16 * RC_Q4_GROUP + (st % 2) * 8 + j;
            const uint64_t g = q8 ? (st % 2) * 8 + j : (st % 16) / 2;
            if (bl < nbk) _mm256_store_si256((__m256i *)(P + (bl * groups + g) * 32), r[j]);
        }
    }
    if (q8) return;
    /* q4: Cw[bl][r] = -128 * (sum of row r's 32 values in block bl): pair sums of at most 126 in int16, 8 dword
     * groups of them (<= 1008), then summed to int32 per row */
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (uint64_t bl = 0; bl < nbk; bl++) {
        __m256i acc = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++)
            acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(ones8, _mm256_load_si256((const __m256i *)(P + (bl * 8 + g) * 32))));
        _mm256_store_si256((__m256i *)(Cw + bl * RC_MR), _mm256_slli_epi32(_mm256_sub_epi32(_mm256_setzero_si256(),
                                                                                           _mm256_madd_epi16(acc, ones16)), 7));
    }
}

static inline int32_t rc_load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* q8: nt <= RC_NR_Q vectors (the decode path's int16 activations) against one panel, vpmaddwd pairs. */
static RC_ALWAYS_INLINE void rc_kernel_q8(const uint8_t *P, const float *D, uint64_t b0, uint64_t nbk, uint64_t nb,
                                          const uint8_t *X, uint64_t xs, const int nt, float *Y, uint64_t ldy,
                                          uint64_t nr, int add) {
    const uint8_t *xq[RC_NR_Q];
    const float *dx[RC_NR_Q];
#pragma GCC unroll 6
    for (int t = 0; t < nt; t++) {
        dx[t] = rc_qx_d(X + t * xs);
        xq[t] = (const uint8_t *)rc_qx_q16(X + t * xs, nb);
    }
    __m256 a[RC_NR_Q];
#pragma GCC unroll 6
    for (int t = 0; t < nt; t++) a[t] = _mm256_setzero_ps();
    for (uint64_t bl = 0; bl < nbk; bl++) {
        const uint64_t b = b0 + bl;
        const uint8_t *pb = P + bl * 512;
        __m256i s[RC_NR_Q];
#pragma GCC unroll 6
        for (int t = 0; t < nt; t++) s[t] = _mm256_setzero_si256();
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            const __m256i w = _mm256_load_si256((const __m256i *)(pb + g * 32));
#pragma GCC unroll 6
            for (int t = 0; t < nt; t++) {
                const __m256i x = _mm256_set1_epi32(rc_load_i32(xq[t] + b * 64 + 4 * g));
                s[t] = rc_dp2(s[t], w, x);
                RC_KEEP(s[t]);
            }
        }
        const __m256 d = _mm256_load_ps(D + bl * RC_MR);
#pragma GCC unroll 6
        for (int t = 0; t < nt; t++)
            a[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s[t]), _mm256_set1_ps(dx[t][b])), d, a[t]);
    }
#pragma GCC unroll 6
    for (int t = 0; t < nt; t++) rc_store8(Y + t * ldy, a[t], nr, add);
}

/* q4 (the prompt's hot loop): nt <= RC_NR_Q4 vectors against one panel. The activations are unsigned (xq + 128,
 * rc_gx_prepare_u8) and the panel holds the signed codebook values v, so the block sums start at the panel's
 * Cw = -128 * sum v (one load per block, shared by every vector) instead of a per-vector correction. */
#ifndef RC_NR_Q4
#define RC_NR_Q4 6
#endif
static RC_ALWAYS_INLINE void rc_kernel_q4(const uint8_t *P, const float *D, const int32_t *Cw, uint64_t b0,
                                          uint64_t nbk, uint64_t nb, const uint8_t *X, uint64_t xs, const int nt,
                                          float *Y, uint64_t ldy, uint64_t nr, int add) {
    __m256 a[RC_NR_Q4];
    const uint8_t *xq[RC_NR_Q4]; /* vector t's activations (u8) of the current block */
    const float *xd[RC_NR_Q4];   /* its d_x */
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        a[t] = _mm256_setzero_ps();
        xq[t] = (const uint8_t *)rc_gx_q(X + t * xs, nb) + b0 * RC_QK;
        xd[t] = rc_gx_d(X + t * xs) + b0;
    }
    for (uint64_t bl = 0; bl < nbk; bl++) {
        const uint8_t *pb = P + bl * 256;
        const __m256i c = _mm256_load_si256((const __m256i *)(Cw + bl * RC_MR));
        __m256i s[RC_NR_Q4];
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m256i w = _mm256_load_si256((const __m256i *)(pb + g * 32));
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const __m256i x = _mm256_set1_epi32(rc_load_i32(xq[t] + 4 * g));
                s[t] = rc_dp4(g == 0 ? c : s[t], x, w);
                RC_KEEP(s[t]);
            }
        }
        const __m256 d = _mm256_load_ps(D + bl * RC_MR);
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            a[t] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s[t]), _mm256_broadcast_ss(xd[t])), d, a[t]);
            xq[t] += RC_QK;
            xd[t] += 1;
            __asm__("" : "+r"(xq[t]), "+r"(xd[t])); /* keeps GCC from making 8 nt pointers of these nt */
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) rc_store8(Y + t * ldy, a[t], nr, add);
}

static void rc_kernel_q4_n(const uint8_t *P, const float *D, const int32_t *Cw, uint64_t b0, uint64_t nbk, uint64_t nb,
                            const uint8_t *X, uint64_t xs, uint64_t nt, float *Y, uint64_t ldy, uint64_t nr, int add) {
    switch (nt) {
#define RC_CASE(n) case n: rc_kernel_q4(P, D, Cw, b0, nbk, nb, X, xs, n < RC_NR_Q4 ? n : RC_NR_Q4, Y, ldy, nr, add); break;
        RC_CASE(1) RC_CASE(2) RC_CASE(3) RC_CASE(4) RC_CASE(5) RC_CASE(6) RC_CASE(7) RC_CASE(8)
#undef RC_CASE
    default: break;
    }
}

/* Both integer types, two panels at once (16 rows: panel 1's P, D and Cw lie RC_Q4/Q8_PANEL_BYTES, RC_KC_Q / 32
 * * 8 floats and as many int32 after panel 0's), so that each broadcast activation serves two weight registers.
 * q4: 8 dword groups per block of u8 activations x codebook values (vpmaddubsw + vpmaddwd), sums from Cw; q8: 16
 * of int16 pairs (vpmaddwd), sums from 0. */
#ifndef RC_NR_X2
#define RC_NR_X2 4 /* vectors per pass: 8 int32 sums + 8 float sums (measured above) */
#endif
#define RC_Q4_PANEL_BYTES (RC_KC_Q / RC_QK * 256)
#define RC_Q8_PANEL_BYTES (RC_KC_Q / RC_QK * 512)
static RC_ALWAYS_INLINE void rc_kernel_x2(const int q8, const uint8_t *P, const float *D, const int32_t *Cw,
                                          uint64_t b0, uint64_t nbk, uint64_t nb, const uint8_t *X, uint64_t xs,
                                          const int nt, float *Y, uint64_t ldy, uint64_t nr1, int add) {
    const uint64_t dk = RC_KC_Q / RC_QK * RC_MR; /* panel 1's D and Cw, in elements after panel 0's */
    const uint64_t pbytes = q8 ? RC_Q8_PANEL_BYTES : RC_Q4_PANEL_BYTES, bbytes = q8 ? 512 : 256;
    const uint64_t xbytes = q8 ? 64 : RC_QK; /* one block of a vector's activations: int16 or u8 */
    __m256 a[RC_NR_X2][2];
    const uint8_t *xq[RC_NR_X2]; /* vector t's activations of the current block */
    const float *xd[RC_NR_X2];   /* its d_x */
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        a[t][0] = a[t][1] = _mm256_setzero_ps();
        xq[t] = (q8 ? (const uint8_t *)rc_qx_q16(X + t * xs, nb) : (const uint8_t *)rc_gx_q(X + t * xs, nb)) +
                b0 * xbytes;
        xd[t] = (q8 ? rc_qx_d(X + t * xs) : rc_gx_d(X + t * xs)) + b0;
    }
    for (uint64_t bl = 0; bl < nbk; bl++) {
        const uint8_t *pb = P + bl * bbytes;
        __m256i s[RC_NR_X2][2];
#pragma GCC unroll 16
        for (int g = 0; g < 16; g++) {
            if (!q8 && g == 8) break; /* q4: 8 dword groups */
            const __m256i w0 = _mm256_load_si256((const __m256i *)(pb + g * 32));
            const __m256i w1 = _mm256_load_si256((const __m256i *)(pb + pbytes + g * 32));
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const __m256i x = _mm256_set1_epi32(rc_load_i32(xq[t] + 4 * g));
                if (q8) {
                    s[t][0] = rc_dp2(g == 0 ? _mm256_setzero_si256() : s[t][0], w0, x);
                    s[t][1] = rc_dp2(g == 0 ? _mm256_setzero_si256() : s[t][1], w1, x);
                } else {
                    s[t][0] = rc_dp4(g == 0 ? _mm256_load_si256((const __m256i *)(Cw + bl * RC_MR)) : s[t][0], x, w0);
                    s[t][1] = rc_dp4(g == 0 ? _mm256_load_si256((const __m256i *)(Cw + dk + bl * RC_MR)) : s[t][1], x,
                                     w1);
                }
                RC_KEEP(s[t][0]);
                RC_KEEP(s[t][1]);
            }
        }
        const __m256 d0 = _mm256_load_ps(D + bl * RC_MR), d1 = _mm256_load_ps(D + dk + bl * RC_MR);
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            const __m256 dx = _mm256_broadcast_ss(xd[t]);
            a[t][0] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s[t][0]), dx), d0, a[t][0]);
            a[t][1] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s[t][1]), dx), d1, a[t][1]);
            xq[t] += xbytes;
            xd[t] += 1;
            __asm__("" : "+r"(xq[t]), "+r"(xd[t])); /* keeps GCC from making 8 nt pointers of these nt */
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        rc_store8(Y + t * ldy, a[t][0], RC_MR, add);
        rc_store8(Y + t * ldy + RC_MR, a[t][1], nr1, add);
    }
}

static void rc_kernel_x2_n(int q8, const uint8_t *P, const float *D, const int32_t *Cw, uint64_t b0, uint64_t nbk,
                           uint64_t nb, const uint8_t *X, uint64_t xs, uint64_t nt, float *Y, uint64_t ldy,
                           uint64_t nr1, int add) {
    switch (nt * 2 + (uint64_t)q8) {
#define RC_CASE(n)                                                                                                     \
    case 2 * n: rc_kernel_x2(0, P, D, Cw, b0, nbk, nb, X, xs, n < RC_NR_X2 ? n : RC_NR_X2, Y, ldy, nr1, add); break;  \
    case 2 * n + 1: rc_kernel_x2(1, P, D, Cw, b0, nbk, nb, X, xs, n < RC_NR_X2 ? n : RC_NR_X2, Y, ldy, nr1, add); break;
        RC_CASE(1) RC_CASE(2) RC_CASE(3) RC_CASE(4)
#undef RC_CASE
    default: break;
    }
}

static void rc_kernel_q8_n(const uint8_t *P, const float *D, uint64_t b0, uint64_t nbk, uint64_t nb, const uint8_t *X,
                           uint64_t xs, uint64_t nt, float *Y, uint64_t ldy, uint64_t nr, int add) {
    switch (nt) {
#define RC_CASE(n) case n: rc_kernel_q8(P, D, b0, nbk, nb, X, xs, n, Y, ldy, nr, add); break;
        RC_CASE(1) RC_CASE(2) RC_CASE(3) RC_CASE(4) RC_CASE(5) RC_CASE(6)
#undef RC_CASE
    default: break;
    }
}

/* Two panels (16 rows) at a time, the last 1-8 rows as one panel. */
static void rc_gemm_int(int q8, const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T,
                        float *Y, uint64_t out, void *scratch) {
    const uint64_t nb = in / RC_QK, xs = q8 ? rc_qx_stride(RWKV_DTYPE_Q8_0, in) : rc_gx_stride(in);
    const uint64_t kcb = RC_KC_Q / RC_QK, pbytes = q8 ? RC_Q8_PANEL_BYTES : RC_Q4_PANEL_BYTES;
    uint8_t *P = (uint8_t *)scratch;                                /* [2][pbytes] */
    uint8_t *U = P + 2 * pbytes;                                    /* 8 rows x rc_u_stride */
    float *D = (float *)(void *)(U + RC_MR * rc_u_stride(q8, kcb)); /* [2][kcb][8] */
    int32_t *Cw = (int32_t *)(void *)(D + 2 * kcb * RC_MR);         /* [2][kcb][8], q4 */
    for (uint64_t p = r0; p < r1; p += 2 * RC_MR) {
        const uint64_t nr = r1 - p < 2 * RC_MR ? r1 - p : 2 * RC_MR;
        for (uint64_t b0 = 0; b0 < nb; b0 += kcb) {
            const uint64_t nbk = nb - b0 < kcb ? nb - b0 : kcb;
            rc_pack_q(q8, (const uint8_t *)W, out, nb, p, nr < RC_MR ? nr : RC_MR, b0, nbk, U, P, D, Cw);
            if (nr > RC_MR) {
                rc_pack_q(q8, (const uint8_t *)W, out, nb, p + RC_MR, nr - RC_MR, b0, nbk, U, P + pbytes,
                          D + kcb * RC_MR, Cw + kcb * RC_MR);
                for (uint64_t t0 = 0; t0 < T; t0 += RC_NR_X2) {
                    const uint64_t nt = T - t0 < RC_NR_X2 ? T - t0 : RC_NR_X2;
                    rc_kernel_x2_n(q8, P, D, Cw, b0, nbk, nb, (const uint8_t *)X + t0 * xs, xs, nt, Y + t0 * out + p,
                                   out, nr - RC_MR, b0 > 0);
                }
            } else {
                const uint64_t nrq = q8 ? RC_NR_Q : RC_NR_Q4;
                for (uint64_t t0 = 0; t0 < T; t0 += nrq) {
                    const uint64_t nt = T - t0 < nrq ? T - t0 : nrq;
                    const uint8_t *x = (const uint8_t *)X + t0 * xs;
                    if (q8)
                        rc_kernel_q8_n(P, D, b0, nbk, nb, x, xs, nt, Y + t0 * out + p, out, nr, b0 > 0);
                    else
                        rc_kernel_q4_n(P, D, Cw, b0, nbk, nb, x, xs, nt, Y + t0 * out + p, out, nr, b0 > 0);
                }
            }
        }
    }
}

static void rc_gemm_q8(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out, void *scratch) {
    rc_gemm_int(1, W, in, r0, r1, X, T, Y, out, scratch);
}

static void rc_gemm_q4(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out, void *scratch) {
    rc_gemm_int(0, W, in, r0, r1, X, T, Y, out, scratch);
}

#if defined(RC_AVX_VNNI)
const rc_kernel_set rc_kernels_avx2_vnni = {
    .name = "avx2-vnni",
#else
const rc_kernel_set rc_kernels_avx2 = {
    .name = "avx2",
#endif
    .rows = {[RWKV_DTYPE_F32] = rc_rows_f32, [RWKV_DTYPE_F16] = rc_rows_f16, [RWKV_DTYPE_Q8_0] = rc_rows_q8,
             [RWKV_DTYPE_Q4] = rc_rows_q4},
    .gemm = {[RWKV_DTYPE_F32] = rc_gemm_f32, [RWKV_DTYPE_F16] = rc_gemm_f16, [RWKV_DTYPE_Q8_0] = rc_gemm_q8,
             [RWKV_DTYPE_Q4] = rc_gemm_q4},
    /* the rows functions up to 8 q8 / 4 f16 vectors: 14336x4096, 2 threads, ms, GEMM against rows: q8 T = 4
     * 7.5 / 4.7, 8 9.5 / 8.2, 12 11.4 / 11.6, 16 13.1 / 14.5; f16 T = 4 9.4 / 7.5, 5 8.9 / 9.2, 6 8.5 / 10.5 */
    .gemm_min_t = {[RWKV_DTYPE_Q4] = RC_AVX2_Q4_GEMM_MIN_T, [RWKV_DTYPE_Q8_0] = 9, [RWKV_DTYPE_F16] = RC_AVX2_F_GEMM_MIN_T,
                   [RWKV_DTYPE_F32] = RC_AVX2_F_GEMM_MIN_T},
    .gx_u8 = 1,
    .isa = RC_ISA_AVX2,
};
