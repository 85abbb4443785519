/* matmul_avx512.c: AVX-512 kernels with VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later). Compiled with
 * -mavx512f -mavx512bw -mavx512vl -mavx512vnni (and AVX2/FMA/F16C) and called only after rc_cpu() has found
 * all of them and OS support for the ZMM state.
 *
 *   f32, f16   16-wide FMA on float X
 *   q8         int8 weights widened to int16 (vpmovsxbw) times the prepared int16 activations with VNNI
 *              vpdpwssd: one block of 32 is one instruction; then one FMA by d_w * d_x per block
 *   q4         a chunk of a group of 16 blocks (quant.h) is one 64-byte load; AND / shift + vpshufb into
 *              the codebook stored +64 (unsigned), then VNNI vpdpbusd (u8 x s8) against the prepared int8
 *              activations: lane k sums block k, so a group's 16 dot products end in one register and take
 *              one conversion and one FMA by their scales per 512 weights. sum (v+64) x = sum v x + 64 sum x,
 *              so 64 d_w[b] s[b] is taken off at the end (s[b] = d_x * sum of the block's xq comes with the
 *              prepared vector). A row's short last group uses masked loads.
 *
 * This machine's CI cannot execute AVX-512: tests/c builds this file a second time against SIMDe (portable
 * implementations of the same intrinsics, tests/c/simde_avx512.h) and checks it against the scalar
 * reference. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#if defined(RC_SIMDE)
#include "simde_avx512.h"
#else
#include <immintrin.h>
#endif

#include "kernels/gemm.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"

static inline float rc_hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float rc_hsum512(__m512 v) {
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    return rc_hsum256(_mm256_add_ps(lo, hi));
}

/* ---- f32 / f16 -------------------------------------------------------------------------------------- */
#include "kernels/prefetch_x86.h" /* RC_PF, the measured distances */

/* Four accumulators: the FMA latency (4 cycles) times two FMA ports wants at least 8 in flight for the cache
 * speed, 4 keep the loop well ahead of memory. */
static float rc_dot_f32(const float *w, const float *x, uint64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    uint64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        for (int l = 0; l < 4; l++) RC_PF((const char *)(w + i) + 64 * l, RC_PF_F32);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
    if (i < n) { /* the last n % 16: masked loads read nothing beyond the row */
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, w + i), _mm512_maskz_loadu_ps(k, x + i), a1);
    }
    return rc_hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static float rc_dot_f16(const uint16_t *w, const float *x, uint64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    uint64_t i = 0;
#define RC_H(k) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i + (k))))
    for (; i + 64 <= n; i += 64) {
        for (int l = 0; l < 2; l++) RC_PF((const char *)(w + i) + 64 * l, RC_PF_F16);
        a0 = _mm512_fmadd_ps(RC_H(0), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(RC_H(16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(RC_H(32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(RC_H(48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(RC_H(0), _mm512_loadu_ps(x + i), a0);
#undef RC_H
    float s = rc_hsum512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < n; i++) s += _cvtsh_ss(w[i]) * x[i];
    return s;
}

/* ---- short rows (in <= RC_SHORT_IN): 16 rows per reduction ---------------------------------------------
 * The second products of RWKV-7's LoRAs are [2048, 32..128] f32 matrices: rows of 128-512 bytes, 2-8 FMAs
 * each. One rc_dot_f32 per row would pay a horizontal reduction (rc_hsum512, 7 instructions and a chain of
 * 4 adds) and the loop set-up per row, more than the row's FMAs. Here 16 rows take one accumulator each
 * (lane j: the sum of the row's inputs j, j+16, ...), and rc_sum16x16 folds the 16 accumulators into one
 * vector of the 16 row sums with a transpose-add tree (15 adds, 30 shuffles, 1 permute): one store per 16
 * rows. Each row's sum is added up in the same order wherever it sits in the group, so the split of the
 * rows over threads does not change the results. */
#define RC_SHORT_IN 256
#ifndef RC_PF_SHORT
#define RC_PF_SHORT 2048
#endif

static inline __mmask16 rc_first_lanes(uint64_t n) { return n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1); }

/* acc[16] -> lane r = the sum of acc[r]'s 16 lanes */
static inline __m512 rc_sum16x16(const __m512 acc[16]) {
    __m512 c[8], d[4], e[2];
    for (int i = 0; i < 8; i++) /* c[i]: lanes 0-7 row 2i, lanes 8-15 row 2i + 1 (8 partial sums each) */
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(acc[2 * i], acc[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(acc[2 * i], acc[2 * i + 1], 0xee));
    for (int i = 0; i < 4; i++) /* d[i]: 128-bit block k = row 4i + k (4 partial sums) */
        d[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0xdd));
    for (int i = 0; i < 2; i++) /* e[i]: block k = row 8i + k (2 lanes), row 8i + 4 + k (2 lanes) */
        e[i] = _mm512_add_ps(_mm512_shuffle_ps(d[2 * i], d[2 * i + 1], 0x88),
                             _mm512_shuffle_ps(d[2 * i], d[2 * i + 1], 0xdd));
    /* f: lane 4k + q = row 4q + k; the permute puts row r in lane r */
    const __m512 f = _mm512_add_ps(_mm512_shuffle_ps(e[0], e[1], 0x88), _mm512_shuffle_ps(e[0], e[1], 0xdd));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), f);
}

/* 16 weights of a row at i (f32 or f16 widened); `k`: the lanes to read (the rest are 0, not read) */
static inline __attribute__((always_inline)) __m512 rc_short_w(int f16, const void *w, uint64_t i, __mmask16 k) {
    if (f16) {
        const uint16_t *p = (const uint16_t *)w + i;
        return _mm512_cvtph_ps(k == 0xffff ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskz_loadu_epi16(k, p));
    }
    const float *p = (const float *)w + i;
    return k == 0xffff ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(k, p);
}

/* acc[r] += 16 weights of row r at i times x[i..i+16) for the 16 rows of a group (rows past the group's
 * end read its last row again: their lanes are not stored); `k`: the lanes to read. The x chunk is loaded
 * once, the 16 FMAs are independent. */
static inline __attribute__((always_inline)) void rc_short_step(int f16, const char *w, uint64_t row_bytes,
                                                                uint64_t nr, const float *x, uint64_t i,
                                                                __mmask16 k, __m512 acc[16]) {
    const __m512 xv = k == 0xffff ? _mm512_loadu_ps(x + i) : _mm512_maskz_loadu_ps(k, x + i);
    for (uint64_t r = 0; r < 16; r++) {
        const char *row = w + (r < nr ? r : nr - 1) * row_bytes;
        if (k == 0xffff && (!f16 || i % 32 == 0)) RC_PF(row + i * (f16 ? 2 : 4), RC_PF_SHORT); /* per 64 bytes */
        acc[r] = _mm512_fmadd_ps(rc_short_w(f16, row, i, k), xv, acc[r]);
    }
}

/* rows [r0, r1) of W [out, in] (in <= RC_SHORT_IN) times T vectors, 16 rows at a time: acc[r] lane j = the
 * sum over i = j (mod 16) of row r's w[i] x[i]; a last group of fewer rows stores only its own lanes */
static inline __attribute__((always_inline)) void rc_rows_short(int f16, const void *W, uint64_t in, uint64_t r0,
                                                                 uint64_t r1, const float *X, uint64_t T, float *Y,
                                                                 uint64_t out) {
    const uint64_t row_bytes = in * (f16 ? 2 : 4);
    const __mmask16 tail = rc_first_lanes(in % 16);
    for (uint64_t o = r0; o < r1; o += 16) {
        const uint64_t nr = r1 - o < 16 ? r1 - o : 16;
        const char *w = (const char *)W + o * row_bytes;
        for (uint64_t t = 0; t < T; t++) {
            __m512 acc[16];
            for (int r = 0; r < 16; r++) acc[r] = _mm512_setzero_ps();
            uint64_t i = 0;
            for (; i + 16 <= in; i += 16) rc_short_step(f16, w, row_bytes, nr, X + t * in, i, 0xffff, acc);
            if (tail) rc_short_step(f16, w, row_bytes, nr, X + t * in, i, tail, acc);
            _mm512_mask_storeu_ps(Y + t * out + o, rc_first_lanes(nr), rc_sum16x16(acc));
        }
    }
}

/* f32 / f16, small batches. The activations of 8 vectors are 128 KB at 4096 inputs: read for every row they
 * would come from L2 (64 bytes per FMA). So the rows are taken in tiles of RC_F_TILE, and each tile's inputs
 * in slices of RC_F_KC: a slice of the 8 vectors' activations (32 KB) stays in L1 while the tile's rows pass
 * over it, two rows at a time (each activation load then serves two FMAs). Each row's 16-lane partial sums for
 * its vectors live in part[] between slices and are added across lanes at the end. */
#define RC_F_TILE 16
#define RC_F_KC 1024

/* acc[r][t] += 16 weights of row r at i (the lanes in k) times vector t's activations there, for R rows and
 * nt vectors: each row's weights loaded (f16: converted) once for all vectors, each activation once for both
 * rows (16 accumulators + 2 weights + 1 activation = 19 registers) */
static inline __attribute__((always_inline)) void rc_float_batch_step(const int f16, const char *const w[2],
                                                                      const int R, uint64_t i, __mmask16 k,
                                                                      const float *X, uint64_t ldx, const int nt,
                                                                      __m512 acc[2][8]) {
    const uint64_t pf = f16 ? RC_PF_F16 : RC_PF_F32; /* prefetch distance (prefetch_x86.h) */
    __m512 wv[2];
    for (int r = 0; r < R; r++) {
        if (k == 0xffff && (!f16 || i % 32 == 0)) { /* per 64 bytes */
            if (f16) RC_PF_BUSY(w[r] + i * 2, pf);
            else RC_PF(w[r] + i * 4, pf);
        }
        wv[r] = rc_short_w(f16, w[r], i, k);
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        const float *x = X + (uint64_t)t * ldx + i;
        __m512 xv = k == 0xffff ? _mm512_loadu_ps(x) : _mm512_maskz_loadu_ps(k, x);
#ifndef RC_SIMDE
        if (R == 2) __asm__("" : "+v"(xv)); /* one load for both rows, not one folded into each FMA */
#endif
        for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
}

/* Inputs [0, n) of R (1 or 2) rows (w0, w1) against nt <= 8 vectors (vector t at X + t * ldx), added to the
 * 16-lane partial sums part[r][t] (set instead when `first`); the last n % 16 through masked loads. */
static inline __attribute__((always_inline)) void rc_float_batch(const int f16, const char *w0, const char *w1,
                                                                 const int R, uint64_t n, const float *X, uint64_t ldx,
                                                                 const int nt, __m512 part[2][8], int first) {
    const char *const w[2] = {w0, w1};
    __m512 acc[2][8];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < R; r++) acc[r][t] = first ? _mm512_setzero_ps() : part[r][t];
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) rc_float_batch_step(f16, w, R, i, 0xffff, X, ldx, nt, acc);
    if (i < n) rc_float_batch_step(f16, w, R, i, rc_first_lanes(n - i), X, ldx, nt, acc);
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < R; r++) part[r][t] = acc[r][t];
}

#ifndef RC_F_GEMM_MIN_T
#define RC_F_GEMM_MIN_T 9
#endif
#ifndef RC_F_BATCH_MIN_T
#define RC_F_BATCH_MIN_T 3
#endif
static void rc_float_batch_n(int f16, const char *w0, const char *w1, int R, uint64_t n, const float *X, uint64_t ldx,
                             uint64_t nt, __m512 part[2][8], int first) {
    switch (nt * 4 + (uint64_t)(R - 1) * 2 + (uint64_t)f16) {
#define RC_CASE(m)                                                                                                     \
    case 4 * m: rc_float_batch(0, w0, w1, 1, n, X, ldx, m, part, first); break;                                      \
    case 4 * m + 1: rc_float_batch(1, w0, w1, 1, n, X, ldx, m, part, first); break;                                  \
    case 4 * m + 2: rc_float_batch(0, w0, w1, 2, n, X, ldx, m, part, first); break;                                  \
    case 4 * m + 3: rc_float_batch(1, w0, w1, 2, n, X, ldx, m, part, first); break;
        RC_CASE(1) RC_CASE(2) RC_CASE(3) RC_CASE(4) RC_CASE(5) RC_CASE(6) RC_CASE(7) RC_CASE(8)
#undef RC_CASE
    default: break;
    }
}

/* rows [r0, r1) of an f32 / f16 W (in > RC_SHORT_IN) times T >= RC_F_BATCH_MIN_T vectors: tiles of RC_F_TILE
 * rows x slices of RC_F_KC inputs x groups of 8 vectors (above). A function of its own, so that the 8 KB of
 * partial sums are no part of the single-vector path's frame. */
static __attribute__((noinline)) void rc_rows_float_batch(int f16, const void *W, uint64_t in, uint64_t r0,
                                                          uint64_t r1, const float *X, uint64_t T, float *Y,
                                                          uint64_t out) {
    const uint64_t row_bytes = in * (f16 ? 2 : 4), esize = f16 ? 2 : 4;
    const char *w = (const char *)W;
    __m512 part[RC_F_TILE / 2][2][8]; /* [row pair][row][vector]: 16-lane partial sums, 8 KB */
    for (uint64_t t0 = 0; t0 < T; t0 += 8) {
        const uint64_t nt = T - t0 < 8 ? T - t0 : 8;
        for (uint64_t o0 = r0; o0 < r1; o0 += RC_F_TILE) {
            const uint64_t o1 = r1 - o0 < RC_F_TILE ? r1 : o0 + RC_F_TILE;
            for (uint64_t k0 = 0; k0 < in; k0 += RC_F_KC) {
                const uint64_t n = in - k0 < RC_F_KC ? in - k0 : RC_F_KC;
                for (uint64_t o = o0; o < o1; o += 2) {
                    const int R = o1 - o >= 2 ? 2 : 1;
                    rc_float_batch_n(f16, w + o * row_bytes + k0 * esize, w + (o + R - 1) * row_bytes + k0 * esize, R,
                                     n, X + t0 * in + k0, in, nt, part[(o - o0) / 2], k0 == 0);
                }
            }
            for (uint64_t o = o0; o < o1; o++)
                for (uint64_t t = 0; t < nt; t++) Y[(t0 + t) * out + o] = rc_hsum512(part[(o - o0) / 2][(o - o0) % 2][t]);
        }
    }
}

/* f32 / f16 rows: short rows 16 at a time; one or two vectors row by row (the second finds the row in L1);
 * from RC_F_BATCH_MIN_T vectors rc_rows_float_batch; the GEMM takes over from RC_F_GEMM_MIN_T (gemm_min_t) */
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

/* d_w * d_x of blocks [b, b + 16) (all present) into sc[16] */
static inline void rc_scales16(const uint16_t *dw, const float *dx, uint64_t b, float *sc) {
    _mm512_storeu_ps(sc, _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dw + b))),
                                       _mm512_loadu_ps(dx + b)));
}

/* ---- q8 ------------------------------------------------------------------------------------------------ */
static float rc_row_q8(const uint8_t *row, uint64_t nb, const void *qx) {
    const uint16_t *dw = rc_q_scales(row);
    const int8_t *wq = (const int8_t *)rc_q_quants(row, nb);
    const float *dx = rc_qx_d(qx);
    const int16_t *xq = rc_qx_q16(qx, nb);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    float sc[16];
    uint64_t b = 0;
#define RC_DOT(blk) _mm512_dpwssd_epi32(_mm512_setzero_si512(), \
        _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(wq + (blk) * RC_QK))), \
        _mm512_loadu_si512((const void *)(xq + (blk) * RC_QK)))
    for (; b + 16 <= nb; b += 16) {
        for (int l = 0; l < 8; l++) RC_PF((const char *)(wq + b * RC_QK) + 64 * l, RC_PF_Q8);
        rc_scales16(dw, dx, b, sc);
        for (uint64_t k = 0; k < 16; k += 2) {
            a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(RC_DOT(b + k)), _mm512_set1_ps(sc[k]), a0);
            a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(RC_DOT(b + k + 1)), _mm512_set1_ps(sc[k + 1]), a1);
        }
    }
    for (; b < nb; b++)
        a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(RC_DOT(b)), _mm512_set1_ps(_cvtsh_ss(dw[b]) * dx[b]), a0);
#undef RC_DOT
    return rc_hsum512(_mm512_add_ps(a0, a1));
}

/* ---- q4 ------------------------------------------------------------------------------------------------ */
/* the scales of blocks [b, b + 16) = two whole super-blocks (b a multiple of 16): exact, as rc_q4_scale */
static inline __m512 rc_q4_scales16(const rc_q4_row *r, uint64_t b) {
    const __m512 s = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(r->s + b))));
    const __m256 d0 = _mm256_set1_ps(_cvtsh_ss(r->D[b / RC_Q4_SUPER]) * 0.0078125f);
    const __m256 d1 = _mm256_set1_ps(_cvtsh_ss(r->D[b / RC_Q4_SUPER + 1]) * 0.0078125f);
    const __m512 D = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(d0)),
                                                         _mm256_castps_pd(d1), 1));
    return _mm512_mul_ps(s, D);
}

/* 64 bytes at p, or the `live` ones of them (the others zero and not read) when not whole */
static inline __m512i rc_q4_load(const void *p, int whole, __mmask64 live) {
    return whole ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(live, p);
}

/* int32 lane k = the dot product of block k of a group (quant.h): chunk m of the codes, 4n bytes (one load for
 * a whole group, n = 16), meets 8n activations; lanes >= n are masked to zero in a short group. */
static inline __m512i rc_q4_group_dot(const uint8_t *p, const int8_t *x, uint64_t n, int whole, __mmask64 live) {
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)rc_q4_values_u8));
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i lo = _mm512_setzero_si512(), hi = lo;
    for (uint64_t m = 0; m < 4; m++) {
        const __m512i q = rc_q4_load(p + 4 * n * m, whole, live);
        const __m512i xl = rc_q4_load(x + 8 * n * m, whole, live);
        const __m512i xh = rc_q4_load(x + 8 * n * m + 4 * n, whole, live);
        lo = _mm512_dpbusd_epi32(lo, _mm512_shuffle_epi8(table, _mm512_and_si512(q, m4)), xl);
        hi = _mm512_dpbusd_epi32(hi, _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4)), xh);
    }
    return _mm512_add_epi32(lo, hi);
}

/* The scales of the n < 16 blocks of a row's short last group (b a multiple of 16), lanes >= n zero. */
static inline __m512 rc_q4_scales_short(const rc_q4_row *r, uint64_t b, uint64_t n, __mmask16 lanes) {
    const __m512 s = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(lanes, r->s + b)));
    const __m256 d0 = _mm256_set1_ps(_cvtsh_ss(r->D[b / RC_Q4_SUPER]) * 0.0078125f);
    const __m256 d1 = _mm256_set1_ps(n > 8 ? _cvtsh_ss(r->D[b / RC_Q4_SUPER + 1]) * 0.0078125f : 0.0f);
    const __m512 D = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(d0)),
                                                         _mm256_castps_pd(d1), 1));
    return _mm512_mul_ps(s, D);
}

/* The dot products of a short group's n blocks in lanes 0..n-1: up to 8 blocks fit 256-bit registers (each
 * chunk is 4n <= 32 bytes), half the work of the 512-bit form. */
static inline __m512i rc_q4_short_dot(const uint8_t *p, const int8_t *x, uint64_t n) {
    if (n > 8) return rc_q4_group_dot(p, x, n, 0, (__mmask64)((1ull << (4 * n)) - 1));
    const __mmask32 live = (__mmask32)((1ull << (4 * n)) - 1);
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)rc_q4_values_u8));
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_setzero_si256(), hi = lo;
    for (uint64_t m = 0; m < 4; m++) {
        const __m256i q = _mm256_maskz_loadu_epi8(live, p + 4 * n * m);
        const __m256i xl = _mm256_maskz_loadu_epi8(live, x + 8 * n * m);
        const __m256i xh = _mm256_maskz_loadu_epi8(live, x + 8 * n * m + 4 * n);
        lo = _mm256_dpbusd_epi32(lo, _mm256_shuffle_epi8(table, _mm256_and_si256(q, m4)), xl);
        hi = _mm256_dpbusd_epi32(hi, _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4)), xh);
    }
    return _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_add_epi32(lo, hi), 0);
}

/* One row: sum over blocks of d_w d_x (dot of codebook values + 64 with x) - 64 d_w s_x. */
static float rc_row_q4(const rc_q4_row *r, uint64_t nb, const void *qx) {
    const float *dx = rc_qx_d(qx), *sx = rc_qx_s(qx, nb);
    const int8_t *xq = rc_qx_q(qx, nb);
    __m512 acc = _mm512_setzero_ps(), corr = acc; /* corr: sum_b d_w[b] * s[b] */
    uint64_t b = 0;
    for (; b + RC_Q4_GROUP <= nb; b += RC_Q4_GROUP) { /* whole groups: 512 weights, 256 bytes of codes */
        const uint8_t *p = r->codes + 16 * b;
        for (int l = 0; l < 4; l++) RC_PF((const char *)p + 64 * l, RC_PF_Q4);
        const __m512i dot = rc_q4_group_dot(p, xq + 32 * b, RC_Q4_GROUP, 1, ~(__mmask64)0);
        const __m512 dw = rc_q4_scales16(r, b);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, _mm512_loadu_ps(dx + b)), acc);
        corr = _mm512_fmadd_ps(dw, _mm512_loadu_ps(sx + b), corr);
    }
    if (b < nb) { /* the short last group: lanes >= n masked off */
        const uint64_t n = nb - b;
        const __mmask16 lanes = (__mmask16)((1u << n) - 1);
        const __m512 w = rc_q4_scales_short(r, b, n, lanes);
        const __m512i dot = rc_q4_short_dot(r->codes + 16 * b, xq + 32 * b, n);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(w, _mm512_maskz_loadu_ps(lanes, dx + b)), acc);
        corr = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(lanes, sx + b), corr);
    }
    return rc_hsum512(_mm512_fnmadd_ps(_mm512_set1_ps(64.0f), corr, acc));
}

/* q8, small batches: one row against nt <= 8 prepared vectors (vector t at qx + t * xs). Each block of the row is
 * widened to int16 once (vpmovsxbw) and serves every vector: per vector and block one vpdpwssd, one conversion
 * and one FMA by d_w d_x, as in rc_row_q8 (a block's 16 lanes are summed only at the end). The scales d_w d_x of
 * 16 blocks are made once per vector (sc). Two rows at a time, sharing each activation load, were slower
 * (1.5b q8 B = 8 47.5 against 57 tok/s: 16 accumulators and the two rows' scales do not fit the registers). */
static inline __attribute__((always_inline)) void rc_rows_q8_batch(const uint8_t *row, uint64_t nb, const uint8_t *qx,
                                                                   uint64_t xs, const int nt, float *y, uint64_t ldy) {
    const uint16_t *dw = rc_q_scales(row);
    const int8_t *wq = (const int8_t *)rc_q_quants(row, nb);
    __m512 acc[8];
    float sc[8][16];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = _mm512_setzero_ps();
    for (uint64_t b0 = 0; b0 < nb; b0 += 16) {
        const uint64_t n = nb - b0 < 16 ? nb - b0 : 16;
        const __mmask16 lanes = (__mmask16)((1u << n) - 1);
        const __m512 d = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes, dw + b0));
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++)
            _mm512_storeu_ps(sc[t], _mm512_mul_ps(d, _mm512_maskz_loadu_ps(lanes, rc_qx_d(qx + t * xs) + b0)));
        for (uint64_t k = 0; k < n; k++) {
            const uint64_t b = b0 + k;
            if (k % 2 == 0) RC_PF((const char *)(wq + b * RC_QK), RC_PF_Q8);
            const __m512i w = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(wq + b * RC_QK)));
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const __m512i x = _mm512_loadu_si512((const void *)(rc_qx_q16(qx + t * xs, nb) + b * RC_QK));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpwssd_epi32(_mm512_setzero_si512(), w, x)),
                                         _mm512_set1_ps(sc[t][k]), acc[t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) y[t * ldy] = rc_hsum512(acc[t]);
}

/* From 3 vectors (1.5b q8, tok/s, one vector at a time against this function: B = 3 34.1 / 38.7, B = 4 36.7 /
 * 44.2; B = 2 was faster one at a time); from 9 the GEMM (gemm_min_t). */
#ifndef RC_Q8_BATCH_MIN_T
#define RC_Q8_BATCH_MIN_T 3
#endif
static void rc_rows_q8_batch_n(const uint8_t *row, uint64_t nb, const uint8_t *qx, uint64_t xs, uint64_t nt,
                               float *y, uint64_t ldy) {
    switch (nt) {
#define RC_CASE(n) case n: rc_rows_q8_batch(row, nb, qx, xs, n, y, ldy); break;
        RC_CASE(1) RC_CASE(2) RC_CASE(3) RC_CASE(4) RC_CASE(5) RC_CASE(6) RC_CASE(7) RC_CASE(8)
#undef RC_CASE
    default: break;
    }
}

static void rc_rows_q8(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out) {
    const uint64_t nb = in / RC_QK, rb = nb * RC_Q8_BLOCK_BYTES, xs = rc_qx_stride(RWKV_DTYPE_Q8_0, in);
    if (T < RC_Q8_BATCH_MIN_T) { /* one vector at a time: the second finds the row in L1 */
        for (uint64_t o = r0; o < r1; o++)
            for (uint64_t t = 0; t < T; t++)
                Y[t * out + o] = rc_row_q8((const uint8_t *)W + o * rb, nb, (const uint8_t *)X + t * xs);
        return;
    }
    for (uint64_t o = r0; o < r1; o++) /* vectors 8 at a time */
        for (uint64_t t0 = 0; t0 < T; t0 += 8)
            rc_rows_q8_batch_n((const uint8_t *)W + o * rb, nb, (const uint8_t *)X + t0 * xs, xs,
                               T - t0 < 8 ? T - t0 : 8, Y + t0 * out + o, out);
}

/* The codebook values + 64 of one 64-byte chunk of codes: c[0] faces the chunk's 64 activations of low nibbles,
 * c[1] those of high nibbles (quant.h, "groups"). */
static inline void rc_q4_unpack(__m512i q, __m512i table, __m512i m4, __m512i c[2]) {
    c[0] = _mm512_shuffle_epi8(table, _mm512_and_si512(q, m4));
    c[1] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
}

/* R (1 or 2) rows against nt <= 8 prepared vectors (vector t at qx + t * xs): small batches. Each 16-block group
 * of a row's codes is read and looked up once; its 8 registers c[r][i] (the values + 64 of the weights facing
 * the i-th 64 bytes of the group's activations) then serve every vector, and with R = 2 each 64-byte load of
 * activations serves both rows: a load per two vpdpbusd, not one (measured: the loads, ~1.3 per cycle, bound
 * the one-row form). Per row, vector and group: 8 vpdpbusd on one int32 register that starts at the prepared
 * -64 * sum xq of each block (quant.h, z), so it ends as the exact block sums of v x; then one conversion and
 * one FMA by d_w d_x. Activations are addressed from one base pointer per array, t * xs apart (t constant once
 * unrolled), so the loop needs few general registers; acc[1] lives partly in memory (the 32 vector registers
 * hold c and acc[0]). Measured (one core, 8 vectors, cycles per row and group): 4096 inputs 91 (one row: 99),
 * 14336 inputs 97 (one row: 129, its activations no longer fit the L1 cache).
 * The empty asm on each shared load (activations, z, d_x): without it GCC folds the load into both rows'
 * instructions as a memory operand, two loads where one was meant (bench_kernels "rows function alone", 64 x
 * 4096, 8 vectors: 23.5 -> 27.0 G weights/s per core with it). */
/* One group (blocks [b, b + n), n = 16 when whole) of R rows against nt vectors, added to acc[r][t]. */
static inline __attribute__((always_inline)) void rc_q4_batch_group(const rc_q4_row *rw, const int R, uint64_t nb,
                                                                    uint64_t b, const int whole, uint64_t n,
                                                                    const uint8_t *xq, const uint8_t *xd,
                                                                    const uint8_t *xz, uint64_t xs, const int nt,
                                                                    int64_t pf, __m512 acc[2][8]) {
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)rc_q4_values_u8));
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __mmask64 live = whole ? ~(__mmask64)0 : (((__mmask64)1 << (4 * n)) - 1); /* bytes of a chunk */
    const __mmask16 lanes = whole ? 0xffff : (__mmask16)((1u << n) - 1);            /* blocks */
    __m512i c[2][8];
    __m512 dw[2];
    for (int r = 0; r < R; r++) {
        const uint8_t *p = rw[r].codes + 16 * b;
        if (whole && rc_x86_sw_prefetch >= 1) /* as RC_PF_BUSY (prefetch_x86.h): AMD CPUs included */
            for (int l = 0; l < 4; l++) _mm_prefetch((const char *)p + 64 * l + pf, RC_PF_HINT);
        for (int m = 0; m < 4; m++) rc_q4_unpack(rc_q4_load(p + 4 * n * m, whole, live), table, m4, c[r] + 2 * m);
        dw[r] = whole ? rc_q4_scales16(&rw[r], b) : rc_q4_scales_short(&rw[r], b, n, lanes);
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        const uint8_t *x = xq + t * xs + 32 * b;
        __m512i z = whole ? _mm512_loadu_si512(xz + t * xs + 4 * b)
                          : _mm512_castps_si512(_mm512_maskz_loadu_ps(lanes, (const float *)(xz + t * xs + 4 * b)));
#ifndef RC_SIMDE
        if (R == 2) __asm__("" : "+v"(z));
#endif
        __m512i dot[2] = {z, z};
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            __m512i xv = rc_q4_load(x + 4 * n * i, whole, live);
#ifndef RC_SIMDE
            if (R == 2) __asm__("" : "+v"(xv)); /* one load for both rows, not one folded into each vpdpbusd */
#endif
            for (int r = 0; r < R; r++) dot[r] = _mm512_dpbusd_epi32(dot[r], c[r][i], xv);
        }
        __m512 dx = whole ? _mm512_loadu_ps((const float *)(xd + t * xs + 4 * b))
                          : _mm512_maskz_loadu_ps(lanes, (const float *)(xd + t * xs + 4 * b));
#ifndef RC_SIMDE
        if (R == 2) __asm__("" : "+v"(dx));
#endif
        for (int r = 0; r < R; r++)
            acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r]), _mm512_mul_ps(dw[r], dx), acc[r][t]);
    }
}

/* Blocks [b0, b1) of R rows against nt vectors (b0 a multiple of 16; the short last group only when b1 = nb).
 * part == NULL: the whole row, its sums go to y. Otherwise an input slice: the sums start from part (or zero
 * when b0 = 0) and go back to part, or to y when b1 = nb. pf: bytes from a group's codes to the ones prefetched. */
static inline __attribute__((always_inline)) void rc_rows_q4_batch(const rc_q4_row *rw, const int R, uint64_t nb,
                                                                   uint64_t b0, uint64_t b1, const uint8_t *qx,
                                                                   uint64_t xs, const int nt, float *y, uint64_t ldy,
                                                                   __m512 *part, int64_t pf) {
    const uint8_t *xq = (const uint8_t *)rc_qx_q(qx, nb); /* vector 0's int8 activations */
    const uint8_t *xd = (const uint8_t *)rc_qx_d(qx);     /* its block scales d_x (float) */
    const uint8_t *xz = (const uint8_t *)rc_qx_z(qx, nb); /* its -64 sum xq (int32) */
    __m512 acc[2][8];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < 2; r++) acc[r][t] = part && b0 && r < R ? part[r * 8 + t] : _mm512_setzero_ps();
    uint64_t b = b0;
    for (; b + RC_Q4_GROUP <= b1; b += RC_Q4_GROUP)
        rc_q4_batch_group(rw, R, nb, b, 1, RC_Q4_GROUP, xq, xd, xz, xs, nt, pf, acc);
    if (b < b1) rc_q4_batch_group(rw, R, nb, b, 0, b1 - b, xq, xd, xz, xs, nt, pf, acc); /* the short last group */
    if (part && b1 < nb) {
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++)
            for (int r = 0; r < R; r++) part[r * 8 + t] = acc[r][t];
        return;
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < R; r++) y[t * ldy + r] = rc_hsum512(acc[r][t]);
}

static void rc_rows_q4_batch_n(const rc_q4_row *rw, int R, uint64_t nb, uint64_t b0, uint64_t b1, const uint8_t *qx,
                               uint64_t xs, uint64_t nt, float *y, uint64_t ldy, __m512 *part, int64_t pf) {
    switch (nt * 2 + (uint64_t)(R - 1)) {
#define RC_CASE(n)                                                                                                     \
    case 2 * n: rc_rows_q4_batch(rw, 1, nb, b0, b1, qx, xs, n, y, ldy, part, pf); break;                              \
    case 2 * n + 1: rc_rows_q4_batch(rw, 2, nb, b0, b1, qx, xs, n, y, ldy, part, pf); break;
        RC_CASE(1) RC_CASE(2) RC_CASE(3) RC_CASE(4) RC_CASE(5) RC_CASE(6) RC_CASE(7) RC_CASE(8)
#undef RC_CASE
    default: break;
    }
}

/* Long rows (more than RC_Q4_KC blocks) against several vectors: tiles of RC_Q4_TILE rows, and within a tile the
 * inputs in slices of RC_Q4_KC blocks (4096 inputs), every row pair of the tile through one slice before the
 * next. 8 vectors' activations for a whole 14336-wide row (~115 KB) do not fit the L1 cache, one slice's (~40 KB)
 * do; the partial sums wait in part between slices (8 KB). The prefetch goes to the codes this pass will read
 * RC_PF_Q4B bytes of codes later: RC_Q4_PF_ROWS rows on in the same slice, or past the tile's end, in the next
 * slice (or the next tile's first). Measured in whole Eagle-7B q4 batches of 8 (2 threads, 14336-wide FFN value
 * products), while another tenant loaded the memory: 298-304 ms per step against 314-322 without the slices;
 * 96-block slices: 350; 8- or 32-row tiles: the same as 16. In a kernel harness (one 4096 x 14336 product, from
 * DRAM) the slices changed nothing (33 G weights/s either way; 64- and 32-block slices: 31, 28). */
#ifndef RC_Q4_KC
#define RC_Q4_KC 128
#endif
#ifndef RC_Q4_TILE
#define RC_Q4_TILE 16
#endif
#ifndef RC_PF_Q4B /* the small batches' prefetch distance: 4, 12 and 16 KB measured the same as 8 (PERFORMANCE.md) */
#define RC_PF_Q4B RC_PF_Q4
#endif
#define RC_Q4_PF_ROWS (RC_PF_Q4B / (16 * RC_Q4_KC))
static __attribute__((noinline)) void rc_rows_q4_sliced(const void *W, uint64_t nb, uint64_t r0, uint64_t r1,
                                                        const uint8_t *X, uint64_t xs, uint64_t T, float *Y,
                                                        uint64_t out) {
    __m512 part[RC_Q4_TILE / 2][16]; /* per row pair: [row][vector] 16-lane partial sums */
    const int64_t rc = (int64_t)(nb * 16);  /* code bytes per row */
    for (uint64_t o = r0; o < r1; o += RC_Q4_TILE) {
        const int64_t rows = (int64_t)(r1 - o < RC_Q4_TILE ? r1 - o : RC_Q4_TILE);
        for (uint64_t t0 = 0; t0 < T; t0 += 8)
            for (uint64_t b0 = 0; b0 < nb; b0 += RC_Q4_KC) {
                const uint64_t b1 = nb - b0 > RC_Q4_KC ? b0 + RC_Q4_KC : nb;
                for (int64_t k = 0; k < rows; k += 2) {
                    const int R = rows - k >= 2 ? 2 : 1;
                    const rc_q4_row rw[2] = {rc_q4_row_at(W, out, nb, o + k), rc_q4_row_at(W, out, nb, o + k + R - 1)};
                    const int64_t ahead = k + RC_Q4_PF_ROWS; /* the row, in this tile's order, prefetched for */
                    const int64_t pf = ahead < rows ? RC_Q4_PF_ROWS * rc
                                       : b1 < nb    ? (RC_Q4_PF_ROWS - rows) * rc + (int64_t)(b1 - b0) * 16
                                                    : RC_Q4_PF_ROWS * rc - (int64_t)b0 * 16;
                    rc_rows_q4_batch_n(rw, R, nb, b0, b1, X + t0 * xs, xs, T - t0 < 8 ? T - t0 : 8,
                                       Y + t0 * out + o + (uint64_t)k, out, part[k / 2], pf);
                }
            }
    }
}

static void rc_rows_q4(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out) {
    const uint64_t nb = in / RC_QK, xs = rc_qx_stride(RWKV_DTYPE_Q4, in);
    if (T == 1) {
        for (uint64_t o = r0; o < r1; o++) {
            const rc_q4_row r = rc_q4_row_at(W, out, nb, o);
            Y[o] = rc_row_q4(&r, nb, X);
        }
        return;
    }
    if (nb > RC_Q4_KC) {
        rc_rows_q4_sliced(W, nb, r0, r1, (const uint8_t *)X, xs, T, Y, out);
        return;
    }
    for (uint64_t o = r0; o < r1; o += 2) { /* rows in pairs (the last alone), vectors 8 at a time */
        const int R = r1 - o >= 2 ? 2 : 1;
        const rc_q4_row rw[2] = {rc_q4_row_at(W, out, nb, o), rc_q4_row_at(W, out, nb, R == 2 ? o + 1 : o)};
        for (uint64_t t0 = 0; t0 < T; t0 += 8)
            rc_rows_q4_batch_n(rw, R, nb, 0, nb, (const uint8_t *)X + t0 * xs, xs, T - t0 < 8 ? T - t0 : 8,
                               Y + t0 * out + o, out, NULL, RC_PF_Q4B);
    }
}

/* ---- GEMM (gemm.h): panels of RC_MR = 32 rows (two ZMM of outputs) times NR vectors ----------------------- */
#define RC_MR 32
#define RC_NR_F 12     /* float: 2 x 12 accumulators */
#define RC_NR_Q 6      /* integer: 2 x 6 int32 block sums + 2 x 6 float accumulators */
#define RC_KC_F 512    /* inputs per float panel (a multiple of 16): 64 KB packed */
#define RC_KC_Q 2048   /* inputs per integer panel: 64 KB packed + 64 KB unpacked rows + 8 KB scales */
#define RC_ALWAYS_INLINE inline __attribute__((always_inline))

/* r[i] lane j <-> r[j] lane i: a 16 x 16 dword transpose in 64 shuffles. After the 32- and 64-bit unpacks,
 * u[4b + c] holds in its 128-bit lane L the dwords (rows 4b .. 4b+3, column 4L + c); the 128-bit lanes are
 * then transposed 4 x 4 among u[c], u[4 + c], u[8 + c], u[12 + c]. */
static inline void rc_transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int a = 0; a < 8; a++) {
        t[2 * a] = _mm512_unpacklo_epi32(r[2 * a], r[2 * a + 1]);
        t[2 * a + 1] = _mm512_unpackhi_epi32(r[2 * a], r[2 * a + 1]);
    }
    for (int b = 0; b < 4; b++) {
        u[4 * b] = _mm512_unpacklo_epi64(t[4 * b], t[4 * b + 2]);
        u[4 * b + 1] = _mm512_unpackhi_epi64(t[4 * b], t[4 * b + 2]);
        u[4 * b + 2] = _mm512_unpacklo_epi64(t[4 * b + 1], t[4 * b + 3]);
        u[4 * b + 3] = _mm512_unpackhi_epi64(t[4 * b + 1], t[4 * b + 3]);
    }
    for (int c = 0; c < 4; c++) {
        const __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44), v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xee);
        const __m512i v2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44);
        const __m512i v3 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xee);
        r[c] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(v0, v2, 0xdd);
        r[8 + c] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(v1, v3, 0xdd);
    }
}

/* Row i of a panel of nr rows (rows past nr repeat the last; their outputs are never stored). */
static inline uint64_t rc_panel_row(uint64_t i, uint64_t nr) { return i < nr ? i : nr - 1; }

static inline __mmask16 rc_mask_lo(uint64_t nr) { return nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1); }
static inline __mmask16 rc_mask_hi(uint64_t nr) { return nr <= 16 ? 0 : rc_mask_lo(nr - 16); }

/* Y[0..nr) of one vector = acc (add: += acc) */
static RC_ALWAYS_INLINE void rc_store_pair(float *y, __m512 a0, __m512 a1, __mmask16 m0, __mmask16 m1, int add) {
    if (add) {
        a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(m0, y));
        a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(m1, y + 16));
    }
    _mm512_mask_storeu_ps(y, m0, a0);
    _mm512_mask_storeu_ps(y + 16, m1, a1);
}

/* f32 panel P [kc][32] from rows [0, nr) of W (W0 = row 0 at input k0, rows `in` values apart, f32 or f16):
 * 16 rows x 16 inputs at a time, transposed in registers; the last kc % 16 inputs one by one. */
static void rc_pack_float(int f16, const void *W0, uint64_t in, uint64_t nr, uint64_t kc, float *P) {
    const float *w32 = (const float *)W0;
    const uint16_t *w16 = (const uint16_t *)W0;
    uint64_t k = 0;
    for (; k + 16 <= kc; k += 16) {
        for (int half = 0; half < 2; half++) {
            __m512i r[16];
            for (int i = 0; i < 16; i++) {
                const uint64_t row = rc_panel_row((uint64_t)(16 * half + i), nr) * in + k;
                r[i] = f16 ? _mm512_castps_si512(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w16 + row))))
                           : _mm512_loadu_si512((const void *)(w32 + row));
            }
            rc_transpose16(r);
            for (int j = 0; j < 16; j++) _mm512_store_si512((void *)(P + (k + j) * RC_MR + 16 * half), r[j]);
        }
    }
    for (; k < kc; k++)
        for (uint64_t i = 0; i < RC_MR; i++) {
            const uint64_t at = rc_panel_row(i, nr) * in + k;
            P[k * RC_MR + i] = f16 ? _cvtsh_ss(w16[at]) : w32[at];
        }
}

/* Y[t, 0..nr) (+)= P x X[t] for nt <= RC_NR_F vectors: 2 x nt accumulators, one broadcast per vector
 * and input. X: vector t at X + t * ldx; Y: vector t at Y + t * ldy. */
static RC_ALWAYS_INLINE void rc_kernel_f32(const float *P, uint64_t kc, const float *X, uint64_t ldx, const int nt,
                                           float *Y, uint64_t ldy, __mmask16 m0, __mmask16 m1, int add) {
    __m512 a[RC_NR_F][2];
#pragma GCC unroll 12
    for (int t = 0; t < nt; t++) a[t][0] = a[t][1] = _mm512_setzero_ps();
    for (uint64_t k = 0; k < kc; k++) {
        const __m512 w0 = _mm512_load_ps(P + k * RC_MR), w1 = _mm512_load_ps(P + k * RC_MR + 16);
#pragma GCC unroll 12
        for (int t = 0; t < nt; t++) {
            const __m512 x = _mm512_set1_ps(X[t * ldx + k]);
            a[t][0] = _mm512_fmadd_ps(w0, x, a[t][0]);
            a[t][1] = _mm512_fmadd_ps(w1, x, a[t][1]);
        }
    }
#pragma GCC unroll 12
    for (int t = 0; t < nt; t++) rc_store_pair(Y + t * ldy, a[t][0], a[t][1], m0, m1, add);
}

static void rc_kernel_f32_n(const float *P, uint64_t kc, const float *X, uint64_t ldx, uint64_t nt, float *Y,
                            uint64_t ldy, __mmask16 m0, __mmask16 m1, int add) {
    switch (nt) {
#define RC_CASE(n) case n: rc_kernel_f32(P, kc, X, ldx, n, Y, ldy, m0, m1, add); break;
        RC_CASE(1) RC_CASE(2) RC_CASE(3) RC_CASE(4) RC_CASE(5) RC_CASE(6)
        RC_CASE(7) RC_CASE(8) RC_CASE(9) RC_CASE(10) RC_CASE(11) RC_CASE(12)
#undef RC_CASE
    default: break;
    }
}

/* Both float types: pack each 32-row panel slice once, then run it against every group of vectors. */
static void rc_gemm_float(uint32_t dtype, const void *W, uint64_t in, uint64_t r0, uint64_t r1, const float *X,
                          uint64_t T, float *Y, uint64_t out, float *P) {
    for (uint64_t p = r0; p < r1; p += RC_MR) {
        const uint64_t nr = r1 - p < RC_MR ? r1 - p : RC_MR;
        const __mmask16 m0 = rc_mask_lo(nr), m1 = rc_mask_hi(nr);
        for (uint64_t k0 = 0; k0 < in; k0 += RC_KC_F) {
            const uint64_t kc = in - k0 < RC_KC_F ? in - k0 : RC_KC_F;
            if (dtype == RWKV_DTYPE_F32)
                rc_pack_float(0, (const float *)W + p * in + k0, in, nr, kc, P);
            else
                rc_pack_float(1, (const uint16_t *)W + p * in + k0, in, nr, kc, P);
            for (uint64_t t0 = 0; t0 < T; t0 += RC_NR_F) {
                const uint64_t nt = T - t0 < RC_NR_F ? T - t0 : RC_NR_F;
                rc_kernel_f32_n(P, kc, X + t0 * rc_fx_stride(in) + k0, rc_fx_stride(in), nt, Y + t0 * out + p, out, m0,
                                m1, k0 > 0);
            }
        }
    }
}

static void rc_gemm_f32(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out, void *scratch) {
    rc_gemm_float(RWKV_DTYPE_F32, W, in, r0, r1, (const float *)X, T, Y, out, (float *)scratch);
}

static void rc_gemm_f16(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out, void *scratch) {
    rc_gemm_float(RWKV_DTYPE_F16, W, in, r0, r1, (const float *)X, T, Y, out, (float *)scratch);
}

/* ---- integer GEMM: q4 (u8 x s8, vpdpbusd) and q8 (s16 x s16, vpdpwssd) ----------------------------------
 * A panel slice of nbk blocks is unpacked row by row into U, then transposed 16 x 16 dwords into P, the
 * operand order of the dot instructions; D [nbk][32] holds the rows' block scales:
 *     q4  U per row: [nbk / 16 groups][8 dword groups g][16 blocks k][4 u8]   codebook value + 128 of
 *                    weights 4g .. 4g+3 of block k (the code packing, quant.h, gives one g for 16 blocks
 *                    per 64-byte load, or 4 n bytes for a last group of n blocks)
 *         P [nbk][8][32][4]    block, dword group, row, 4 inputs in input order
 *     q8  U per row: int16 weights in input order
 *         P [nbk][16][32][2]   block, dword group, row, 2 int16 inputs
 * A block is 1024 bytes of P for q4, 2048 for q8. The slices start at whole 16-block groups. */
#define RC_P_BLOCK_Q4 1024
#define RC_P_BLOCK_Q8 2048
#define RC_U_GROUP 512 /* bytes of U per 16-block q4 group */

/* q8: the stored int8 values widened to int16. */
static void rc_unpack_q8(const uint8_t *row, uint64_t nb, uint64_t b0, uint64_t nbk, uint8_t *u) {
    const int8_t *q = (const int8_t *)rc_q_quants(row, nb) + b0 * RC_QK;
    int16_t *u16 = (int16_t *)(void *)u;
    for (uint64_t i = 0; i < nbk * RC_QK; i += 32)
        _mm512_storeu_si512((void *)(u16 + i), _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(q + i))));
}

/* q4: codebook values + 128 of blocks [b0, b0 + nbk) of one row (b0 a multiple of 16). A group of n blocks
 * is 4 chunks of 4 n bytes; chunk m's low nibbles are dword group 2m of its n blocks, the high ones 2m + 1. */
static void rc_unpack_q4(const uint8_t *codes, uint64_t nb, uint64_t b0, uint64_t nbk, uint8_t *u) {
    int8_t table_s[16];
    for (int c = 0; c < 16; c++) table_s[c] = (int8_t)(rc_q4_values[c] + RC_GX_OFFSET);
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)table_s));
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (uint64_t bl = 0; bl < nbk; bl += RC_Q4_GROUP) {
        const uint64_t b = b0 + bl, n = rc_q4_group_blocks(nb, b);
        uint8_t *ug = u + bl / RC_Q4_GROUP * RC_U_GROUP;
        /* chunk m: 4 n bytes, dword k = block k (a shorter last group: lanes >= n are left as they are) */
        const __mmask64 live = n == RC_Q4_GROUP ? ~(__mmask64)0 : (((__mmask64)1 << (4 * n)) - 1);
        for (uint64_t m = 0; m < 4; m++) {
            const __m512i q = _mm512_maskz_loadu_epi8(live, (const void *)(codes + b * 16 + m * 4 * n));
            _mm512_storeu_si512((void *)(ug + 2 * m * 64), _mm512_shuffle_epi8(table, _mm512_and_si512(q, m4)));
            _mm512_storeu_si512((void *)(ug + (2 * m + 1) * 64),
                                _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4)));
        }
    }
}

/* Bytes of U per row for a slice of nbk blocks. */
static inline uint64_t rc_u_stride(int q8, uint64_t nbk) {
    return q8 ? nbk * RC_QK * 2 : (nbk + RC_Q4_GROUP - 1) / RC_Q4_GROUP * RC_U_GROUP;
}

/* The scales of blocks [b, b + min(n, 16)) of row o (lanes past them: 0): q8 its f16 scales, q4
 * D[b / 8] * s[b] / 128, exactly rc_q4_scale (an f16 times an int8 times 2^-7 rounds nowhere). */
static inline __m512 rc_row_scales16(int q8, const uint8_t *W, uint64_t out, uint64_t nb, uint64_t o, uint64_t b, uint64_t n) {
    const __mmask16 live = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
    if (q8) {
        const uint16_t *dw = rc_q_scales(W + o * nb * RC_Q8_BLOCK_BYTES) + b;
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, (const void *)dw));
    }
    const rc_q4_row row = rc_q4_row_at(W, out, nb, o);
    const __m512 sb = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(live, (const void *)(row.s + b))));
    /* the super-block scales of the 16 blocks: D[b / 8] for lanes 0-7, D[b / 8 + 1] for lanes 8-15 */
    const uint64_t sb0 = b / RC_Q4_SUPER, nsb = rc_q4_supers(nb);
    const __mmask16 dlive = sb0 + 1 < nsb ? 0x3 : 0x1;
    const __m512 d2 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(dlive, (const void *)(row.D + sb0)));
    const __m512 D = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), d2);
    return _mm512_mul_ps(_mm512_mul_ps(D, sb), _mm512_set1_ps(0.0078125f));
}

/* Pack rows [p, p + nr) of W [out, nb * 32], blocks [b0, b0 + nbk), into P and D (U: the unpacked rows). */
static void rc_pack_q(int q8, const uint8_t *W, uint64_t out, uint64_t nb, uint64_t p, uint64_t nr, uint64_t b0,
                      uint64_t nbk, uint8_t *U, uint8_t *P, float *D) {
    const uint64_t ustride = rc_u_stride(q8, nbk);
    for (uint64_t r = 0; r < nr; r++) {
        if (q8)
            rc_unpack_q8(W + (p + r) * nb * RC_Q8_BLOCK_BYTES, nb, b0, nbk, U + r * ustride);
        else
            rc_unpack_q4(rc_q4_row_at(W, out, nb, p + r).codes, nb, b0, nbk, U + r * ustride);
    }
    /* the block scales: 16 rows x 16 blocks at a time, transposed into D [block][row] */
    for (uint64_t bl = 0; bl < nbk; bl += 16) {
        for (int half = 0; half < 2; half++) {
            __m512i r[16];
            for (int i = 0; i < 16; i++)
                r[i] = _mm512_castps_si512(rc_row_scales16(q8, W, out, nb, p + rc_panel_row((uint64_t)(16 * half + i), nr),
                                                       b0 + bl, nbk - bl));
            rc_transpose16(r);
            for (uint64_t j = 0; j < 16 && bl + j < nbk; j++)
                _mm512_store_si512((void *)(D + (bl + j) * RC_MR + 16 * half), r[j]);
        }
    }
    /* transpose 16 rows x 16 dwords at a time: q8 the 16 dword groups of one block, q4 one dword group of
     * the 16 blocks of a code group */
    const uint64_t groups = q8 ? 16 : 8; /* dword groups per block */
    const uint64_t steps = q8 ? nbk : (nbk + RC_Q4_GROUP - 1) / RC_Q4_GROUP * 8;
    for (uint64_t st = 0; st < steps; st++) {
        const uint64_t off = q8 ? st * 64 : st / 8 * RC_U_GROUP + st % 8 * 64; /* in each U row */
        for (int half = 0; half < 2; half++) {
            __m512i r[16];
            for (int i = 0; i < 16; i++)
                r[i] = _mm512_loadu_si512((const void *)(U + rc_panel_row((uint64_t)(16 * half + i), nr) * ustride + off));
            rc_transpose16(r);
            for (uint64_t j = 0; j < 16; j++) {
                /* r[j]: q8 dword group j of block st; q4 dword group st % 8 of block 16 (st / 8) + j */
                const uint64_t bl = q8 ? st : st / 8 * RC_Q4_GROUP + j, g = q8 ? j : st % 8;
                if (bl < nbk) _mm512_store_si512((void *)(P + (bl * groups + g) * 128 + 64 * half), r[j]);
            }
        }
    }
}

static inline int32_t rc_load_i32(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Y[t, 0..nr) (+)= sum over the slice's blocks [b0, b0 + nbk) of D[b] d_x[t, b] (P[b] . xq[t, b]) for
 * nt <= RC_NR_Q prepared vectors (vector t at X + t * xs): q4 on GEMM vectors (gemm.h: int8, with the
 * -128 * sum correction as each block's starting value), q8 on the decode path's int16 vectors (quant.h). */
static RC_ALWAYS_INLINE void rc_kernel_q(const int q8, const uint8_t *P, const float *D, uint64_t b0, uint64_t nbk,
                                         uint64_t nb, const uint8_t *X, uint64_t xs, const int nt, float *Y,
                                         uint64_t ldy, __mmask16 m0, __mmask16 m1, int add) {
    const uint8_t *xq[RC_NR_Q];
    const float *dx[RC_NR_Q];
    const int32_t *cx[RC_NR_Q];
#pragma GCC unroll 6
    for (int t = 0; t < nt; t++) {
        dx[t] = q8 ? rc_qx_d(X + t * xs) : rc_gx_d(X + t * xs);
        xq[t] = q8 ? (const uint8_t *)rc_qx_q16(X + t * xs, nb) : (const uint8_t *)rc_gx_q(X + t * xs, nb);
        cx[t] = q8 ? NULL : rc_gx_corr(X + t * xs, nb);
    }
    const int groups = q8 ? 16 : 8;           /* dword groups per block */
    const uint64_t xblock = q8 ? 64 : 32;     /* bytes of one block of activations */
    __m512 a[RC_NR_Q][2];
#pragma GCC unroll 6
    for (int t = 0; t < nt; t++) a[t][0] = a[t][1] = _mm512_setzero_ps();
    for (uint64_t bl = 0; bl < nbk; bl++) {
        const uint64_t b = b0 + bl;
        const uint8_t *pb = P + bl * (q8 ? RC_P_BLOCK_Q8 : RC_P_BLOCK_Q4);
        __m512i s[RC_NR_Q][2];
#pragma GCC unroll 6
        for (int t = 0; t < nt; t++) s[t][0] = s[t][1] = q8 ? _mm512_setzero_si512() : _mm512_set1_epi32(cx[t][b]);
#pragma GCC unroll 16
        for (int g = 0; g < groups; g++) {
            const __m512i w0 = _mm512_load_si512((const void *)(pb + g * 128));
            const __m512i w1 = _mm512_load_si512((const void *)(pb + g * 128 + 64));
#pragma GCC unroll 6
            for (int t = 0; t < nt; t++) {
                const __m512i x = _mm512_set1_epi32(rc_load_i32(xq[t] + b * xblock + 4 * g));
                if (q8) {
                    s[t][0] = _mm512_dpwssd_epi32(s[t][0], w0, x);
                    s[t][1] = _mm512_dpwssd_epi32(s[t][1], w1, x);
                } else {
                    s[t][0] = _mm512_dpbusd_epi32(s[t][0], w0, x);
                    s[t][1] = _mm512_dpbusd_epi32(s[t][1], w1, x);
                }
            }
        }
        const __m512 d0 = _mm512_load_ps(D + bl * RC_MR), d1 = _mm512_load_ps(D + bl * RC_MR + 16);
#pragma GCC unroll 6
        for (int t = 0; t < nt; t++) {
            const __m512 x = _mm512_set1_ps(dx[t][b]);
            a[t][0] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s[t][0]), x), d0, a[t][0]);
            a[t][1] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(s[t][1]), x), d1, a[t][1]);
        }
    }
#pragma GCC unroll 6
    for (int t = 0; t < nt; t++) rc_store_pair(Y + t * ldy, a[t][0], a[t][1], m0, m1, add);
}

#define RC_KERNEL_Q_N(name, q8)                                                                                 \
    static void name(const uint8_t *P, const float *D, uint64_t b0, uint64_t nbk, uint64_t nb, const uint8_t *X, \
                     uint64_t xs, uint64_t nt, float *Y, uint64_t ldy, __mmask16 m0, __mmask16 m1, int add) {   \
        switch (nt) {                                                                                           \
        case 1: rc_kernel_q(q8, P, D, b0, nbk, nb, X, xs, 1, Y, ldy, m0, m1, add); break;                       \
        case 2: rc_kernel_q(q8, P, D, b0, nbk, nb, X, xs, 2, Y, ldy, m0, m1, add); break;                       \
        case 3: rc_kernel_q(q8, P, D, b0, nbk, nb, X, xs, 3, Y, ldy, m0, m1, add); break;                       \
        case 4: rc_kernel_q(q8, P, D, b0, nbk, nb, X, xs, 4, Y, ldy, m0, m1, add); break;                       \
        case 5: rc_kernel_q(q8, P, D, b0, nbk, nb, X, xs, 5, Y, ldy, m0, m1, add); break;                       \
        case 6: rc_kernel_q(q8, P, D, b0, nbk, nb, X, xs, 6, Y, ldy, m0, m1, add); break;                       \
        default: break;                                                                                         \
        }                                                                                                       \
    }
RC_KERNEL_Q_N(rc_kernel_q4_n, 0)
RC_KERNEL_Q_N(rc_kernel_q8_n, 1)
#undef RC_KERNEL_Q_N

static void rc_gemm_int(uint32_t dtype, const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X,
                        uint64_t T, float *Y, uint64_t out, void *scratch) {
    const int q8 = dtype == RWKV_DTYPE_Q8_0;
    const uint64_t nb = in / RC_QK, xs = q8 ? rc_qx_stride(dtype, in) : rc_gx_stride(in);
    const uint64_t kcb = (q8 ? RC_KC_Q / 2 : RC_KC_Q) / RC_QK;  /* blocks per slice (a multiple of 16): 64 KB of P */
    const uint64_t pbytes = kcb * (q8 ? RC_P_BLOCK_Q8 : RC_P_BLOCK_Q4);
    uint8_t *P = (uint8_t *)scratch;                              /* pbytes */
    uint8_t *U = P + pbytes;                                      /* pbytes */
    float *D = (float *)(void *)(U + pbytes);                     /* [kcb][32] */
    for (uint64_t p = r0; p < r1; p += RC_MR) {
        const uint64_t nr = r1 - p < RC_MR ? r1 - p : RC_MR;
        const __mmask16 m0 = rc_mask_lo(nr), m1 = rc_mask_hi(nr);
        for (uint64_t b0 = 0; b0 < nb; b0 += kcb) {
            const uint64_t nbk = nb - b0 < kcb ? nb - b0 : kcb;
            rc_pack_q(q8, (const uint8_t *)W, out, nb, p, nr, b0, nbk, U, P, D);
            for (uint64_t t0 = 0; t0 < T; t0 += RC_NR_Q) {
                const uint64_t nt = T - t0 < RC_NR_Q ? T - t0 : RC_NR_Q;
                const uint8_t *x = (const uint8_t *)X + t0 * xs;
                if (q8)
                    rc_kernel_q8_n(P, D, b0, nbk, nb, x, xs, nt, Y + t0 * out + p, out, m0, m1, b0 > 0);
                else
                    rc_kernel_q4_n(P, D, b0, nbk, nb, x, xs, nt, Y + t0 * out + p, out, m0, m1, b0 > 0);
            }
        }
    }
}

static void rc_gemm_q8(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out, void *scratch) {
    rc_gemm_int(RWKV_DTYPE_Q8_0, W, in, r0, r1, X, T, Y, out, scratch);
}

static void rc_gemm_q4(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out, void *scratch) {
    rc_gemm_int(RWKV_DTYPE_Q4, W, in, r0, r1, X, T, Y, out, scratch);
}

/* ---- the q4 GEMM activations (gemm.h), 32 values at a time: bit for bit rc_gx_prepare (the same IEEE
 * divisions, products and sums; no fused multiply-add) ----------------------------------------------------- */
static void rc_gx_prepare_avx512(const float *X, uint64_t in, uint64_t t0, uint64_t t1, const void *csv,
                                 void *out) {
    const rc_colscale *cs = (const rc_colscale *)csv;
    if (cs && cs->n) { /* column scales: a few matrices; the portable step applies them */
        rc_gx_prepare(X, in, t0, t1, cs, out);
        return;
    }
    const uint64_t nb = in / RC_QK, stride = rc_gx_stride(in);
    const __m512 big = _mm512_set1_ps(12582912.0f), lim = _mm512_set1_ps(127.0f), nlim = _mm512_set1_ps(-127.0f);
    const __m512 fmax = _mm512_set1_ps(3.0e38f);
    const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
    for (uint64_t t = t0; t < t1; t++) {
        uint8_t *base = (uint8_t *)out + t * stride;
        float *d = (float *)(void *)base;
        int32_t *corr = (int32_t *)(void *)(d + nb);
        int8_t *q = (int8_t *)(corr + nb);
        for (uint64_t b = 0; b < nb; b++) {
            const float *xb = X + t * in + b * RC_QK;
            const __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
            const __m512 a0 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x0), absmask));
            const __m512 a1 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x1), absmask));
            const int finite = _mm512_cmp_ps_mask(a0, fmax, _CMP_LE_OQ) == 0xffff &&
                               _mm512_cmp_ps_mask(a1, fmax, _CMP_LE_OQ) == 0xffff;
            if (!finite) { /* NaN scale, values 0 (rc_gx_block) */
                _mm256_storeu_si256((__m256i *)(q + b * RC_QK), _mm256_setzero_si256());
                d[b] = NAN;
                corr[b] = 0;
                continue;
            }
            const float db = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1)) / 127.0f;
            const __m512 id = _mm512_set1_ps(db > 0 ? 1.0f / db : 0.0f);
            /* rounded; NaN (0 * an infinite id, when max|x| is so small that 1 / db overflows) -> 0, as rc_q8_block */
            __m512 r0 = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x0, id), big), big);
            __m512 r1 = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x1, id), big), big);
            r0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r0, r0, _CMP_ORD_Q), r0);
            r1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(r1, r1, _CMP_ORD_Q), r1);
            const __m512 v0 = _mm512_min_ps(_mm512_max_ps(r0, nlim), lim);
            const __m512 v1 = _mm512_min_ps(_mm512_max_ps(r1, nlim), lim);
            const __m512i i0 = _mm512_cvtps_epi32(v0), i1 = _mm512_cvtps_epi32(v1);
            _mm_storeu_si128((__m128i *)(q + b * RC_QK), _mm512_cvtsepi32_epi8(i0));
            _mm_storeu_si128((__m128i *)(q + b * RC_QK + 16), _mm512_cvtsepi32_epi8(i1));
            d[b] = db;
            corr[b] = -RC_GX_OFFSET * _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
        }
    }
}

/* ---- AMX: q4 products of 2 or more vectors on the tile unit (family avx512-amx) ---------------------------
 * Sapphire Rapids and later multiply int8 tiles (TDPBSSD: C[16 x N] int32 += A[16 x K] s8 . B[K/4 x N x 4] s8)
 * at 16x the VNNI rate, so a batch's products cost the unpacking of the codes and the block scales, not the
 * multiply-adds. A tile product sums over K within one block only (each block has its own two scales):
 *   A   16 rows of W x one block (32 signed codebook values), from WA: a panel's 16-block group of codes
 *       unpacked per row (4 x 4 dword transposes of the 4 code chunks, then the table lookup: a block's
 *       32 weights in the dword order 0 2 4 6 1 3 5 7 of input order, rows 512 bytes apart)
 *   B   the vectors' int8 activations of that block in the same dword order, 8 rows of RC_AMX_NB = 16 dwords
 *       (XB, rearranged once per call from the decode path's prepared vectors; vectors past T are zero)
 *   C   16 rows x 16 exact int32 block sums, then one conversion and one FMA per row by d_w[row, b] d_x[t, b]
 *       (a zmm holds the 16 vectors of a row), in registers for the panel.
 * No offset: both operands are signed. The integers equal the scalar reference's block sums; only the
 * float summation order differs. Tile state: configured per call, released before returning (so a context
 * switch between calls saves none). */
#if defined(RC_HAVE_AMX) && !defined(RC_SIMDE)
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) rc_tilecfg;

/* tile registers (literal numbers: the intrinsics paste them into the instruction) */
#define RC_T_C0 0
#define RC_T_C1 1
#define RC_T_A0 2
#define RC_T_A1 3
#define RC_T_B0 4
#define RC_T_B1 5
#define RC_AMX_NB 16 /* vectors per pass over the weights (B's and C's columns) */

/* The per-thread buffer of the rearranged activations (grown as needed, freed when the thread ends). */
static pthread_key_t rc_amx_key;
static pthread_once_t rc_amx_key_once = PTHREAD_ONCE_INIT;
typedef struct { uint8_t *p; size_t cap; } rc_amx_buf;
static void rc_amx_buf_free(void *v) {
    rc_amx_buf *b = (rc_amx_buf *)v;
    if (b) { rc_free(b->p); free(b); }
}
static void rc_amx_key_make(void) {
    if (pthread_key_create(&rc_amx_key, rc_amx_buf_free) != 0) rc_amx_key = (pthread_key_t)-1;
}
static uint8_t *rc_amx_scratch(size_t bytes) {
    pthread_once(&rc_amx_key_once, rc_amx_key_make);
    if (rc_amx_key == (pthread_key_t)-1) return NULL;
    rc_amx_buf *b = (rc_amx_buf *)pthread_getspecific(rc_amx_key);
    if (!b) {
        b = (rc_amx_buf *)calloc(1, sizeof *b);
        if (!b || pthread_setspecific(rc_amx_key, b) != 0) { free(b); return NULL; }
    }
    if (b->cap < bytes) {
        rc_free(b->p);
        b->cap = 0;
        b->p = (uint8_t *)rc_alloc(bytes);
        if (!b->p) return NULL;
        b->cap = bytes;
    }
    return b->p;
}

/* dword k' of a block in the tile order -> its dword in input order (weights 4 g .. 4 g + 3) */
static const uint8_t rc_amx_kg[8] = {0, 2, 4, 6, 1, 3, 5, 7};

/* Block k of a 16-block group sits at slot rc_amx_slot(k) of a row of WA (the 4 x 4 transposes' order). */
static inline uint64_t rc_amx_block_of_slot(uint64_t s) { return 4 * (s % 4) + s / 4; }

/* Row `row`'s group of n blocks at code byte p -> 16 slots x 32 bytes at wa (signed codebook values), and
 * its 16 block scales at dw (lanes >= n: 0). */
static inline void rc_amx_unpack_row(const rc_q4_row *r, uint64_t b0, uint64_t n, __m512i table, uint8_t *wa,
                                     float *dw) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const uint8_t *p = r->codes + 16 * b0;
    const int whole = n == RC_Q4_GROUP;
    const __mmask64 live = whole ? ~(__mmask64)0 : (((__mmask64)1 << (4 * n)) - 1);
    const __m512i q0 = rc_q4_load(p, whole, live), q1 = rc_q4_load(p + 4 * n, whole, live);
    const __m512i q2 = rc_q4_load(p + 8 * n, whole, live), q3 = rc_q4_load(p + 12 * n, whole, live);
    const __m512i t0 = _mm512_unpacklo_epi32(q0, q1), t1 = _mm512_unpackhi_epi32(q0, q1);
    const __m512i t2 = _mm512_unpacklo_epi32(q2, q3), t3 = _mm512_unpackhi_epi32(q2, q3);
    __m512i u[4];
    u[0] = _mm512_unpacklo_epi64(t0, t2); /* 128-bit lane L: the 16 code bytes of block 4 L + 0 */
    u[1] = _mm512_unpackhi_epi64(t0, t2);
    u[2] = _mm512_unpacklo_epi64(t1, t3);
    u[3] = _mm512_unpackhi_epi64(t1, t3);
    const __m512i i0 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), i1 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
    for (int c = 0; c < 4; c++) {
        const __m512i lo = _mm512_shuffle_epi8(table, _mm512_and_si512(u[c], m4));
        const __m512i hi = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(u[c], 4), m4));
        _mm512_store_si512((void *)(wa + 128 * c), _mm512_permutex2var_epi64(lo, i0, hi));      /* slots 4c, 4c+1 */
        _mm512_store_si512((void *)(wa + 128 * c + 64), _mm512_permutex2var_epi64(lo, i1, hi)); /* 4c+2, 4c+3 */
    }
    _mm512_store_ps(dw, whole ? rc_q4_scales16(r, b0) : rc_q4_scales_short(r, b0, n, (__mmask16)((1u << n) - 1)));
}

/* Rows [p, p + nr) (nr <= 16) against one tile of RC_AMX_NB vectors (XB / DX, already rearranged): Y[t0 + t, p + i]
 * for t < nt. */
static inline __attribute__((always_inline)) void rc_amx_panel(const void *W, uint64_t out, uint64_t nb, uint64_t p,
                                                               uint64_t nr, const uint8_t *XB,
                                                               const float *DX, uint64_t nt, float *Y, uint64_t ldy,
                                                               const uint8_t *pf, uint64_t pf_bytes) {
    _Alignas(64) uint8_t wa[16 * 512];
    _Alignas(64) float dw[16 * 16];
    _Alignas(64) int32_t cb[2][16 * 16];
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)rc_q4_values));
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_ps();
    rc_q4_row rows[16];
    for (uint64_t i = 0; i < 16; i++) rows[i] = rc_q4_row_at(W, out, nb, p + (i < nr ? i : nr - 1));
    const uint64_t ngroups = (nb + RC_Q4_GROUP - 1) / RC_Q4_GROUP;
    const uint64_t pf_step = (pf_bytes / ngroups + 63) / 64 * 64;
    for (uint64_t g = 0; g < ngroups; g++) {
        const uint64_t b0 = g * RC_Q4_GROUP, n = nb - b0 < RC_Q4_GROUP ? nb - b0 : RC_Q4_GROUP;
        /* the next panel's codes, a slice per group spread over the rows' unpacking (a burst of prefetches
         * would stall on the line fill buffers) */
        const uint64_t pf0 = g * pf_step, pf1 = pf0 + pf_step < pf_bytes ? pf0 + pf_step : pf_bytes;
        const uint64_t per_row = (pf_step / 16 + 63) / 64 * 64;
        for (uint64_t i = 0; i < 16; i++) {
            if (pf)
                for (uint64_t o = pf0 + i * per_row; o < pf0 + (i + 1) * per_row && o < pf1; o += 64)
                    _mm_prefetch((const char *)pf + o, _MM_HINT_T1);
            rc_amx_unpack_row(&rows[i], b0, n, table, wa + 512 * i, dw + 16 * i);
        }
        /* the group's blocks, in slot order; tile products two at a time, the next pair's issued before
         * this pair's scaling so the tile unit works while the vector units scale */
        uint64_t list[16];
        int m = 0;
        for (uint64_t sl = 0; sl < 16; sl++)
            if (rc_amx_block_of_slot(sl) < n) list[m++] = sl;
#define RC_AMX_ISSUE(j)                                                                                  \
        do {                                                                                             \
            _tile_loadd(RC_T_A0, wa + 32 * list[j], 512);                                                \
            _tile_loadd(RC_T_B0, XB + (b0 + rc_amx_block_of_slot(list[j])) * 32 * RC_AMX_NB, 4 * RC_AMX_NB);           \
            _tile_zero(RC_T_C0);                                                                         \
            _tile_dpbssd(RC_T_C0, RC_T_A0, RC_T_B0);                                                     \
            if ((j) + 1 < m) {                                                                           \
                _tile_loadd(RC_T_A1, wa + 32 * list[(j) + 1], 512);                                      \
                _tile_loadd(RC_T_B1, XB + (b0 + rc_amx_block_of_slot(list[(j) + 1])) * 32 * RC_AMX_NB, 4 * RC_AMX_NB); \
                _tile_zero(RC_T_C1);                                                                     \
                _tile_dpbssd(RC_T_C1, RC_T_A1, RC_T_B1);                                                 \
            }                                                                                            \
        } while (0)
        RC_AMX_ISSUE(0);
        for (int j = 0; j < m; j += 2) {
            const int two = j + 1 < m;
            _tile_stored(RC_T_C0, cb[0], 4 * RC_AMX_NB);
            if (two) _tile_stored(RC_T_C1, cb[1], 4 * RC_AMX_NB);
            if (j + 2 < m) RC_AMX_ISSUE(j + 2);
            for (int h = 0; h <= two; h++) {
                const uint64_t k = rc_amx_block_of_slot(list[j + h]);
                const float *dwk = dw + k;
                const __m512 dx = _mm512_load_ps(DX + (b0 + k) * 16);
#pragma GCC unroll 16
                for (int i = 0; i < 16; i++) {
                    const __m512 c = _mm512_cvtepi32_ps(_mm512_load_si512((const void *)(cb[h] + 16 * i)));
                    acc[i] = _mm512_fmadd_ps(_mm512_mul_ps(c, dx), _mm512_set1_ps(dwk[16 * i]), acc[i]);
                }
            }
        }
#undef RC_AMX_ISSUE
    }
    _Alignas(64) float res[16 * 16]; /* [row][vector] */
    for (int i = 0; i < 16; i++) _mm512_store_ps(res + 16 * i, acc[i]);
    for (uint64_t t = 0; t < nt; t++)
        for (uint64_t i = 0; i < nr; i++) Y[t * ldy + p + i] = res[i * RC_AMX_NB + t];
}

/* The activations of vectors [t0, t0 + nt) (the decode path's prepared q4 vectors, quant.h: group order)
 * -> XB [nb][8 dwords, tile order][RC_AMX_NB] int8 x 4 and DX [nb][RC_AMX_NB] (vectors past nt: zero). */
static void rc_amx_rearrange_qx(const uint8_t *X, uint64_t xs, uint64_t nb, uint64_t t0, uint64_t nt, uint8_t *XB,
                                float *DX) {
    int32_t *xb = (int32_t *)(void *)XB;
    memset(XB, 0, nb * 32 * (uint64_t)RC_AMX_NB);
    memset(DX, 0, nb * 4 * (uint64_t)RC_AMX_NB);
    for (uint64_t t = 0; t < nt; t++) {
        const uint8_t *v = X + (t0 + t) * xs;
        const int8_t *q = rc_qx_q(v, nb);
        const float *d = rc_qx_d(v);
        for (uint64_t b = 0; b < nb; b++) {
            const uint64_t g0 = b / RC_Q4_GROUP * RC_Q4_GROUP, n = rc_q4_group_blocks(nb, b), k = b - g0;
            for (int kp = 0; kp < 8; kp++)
                xb[(b * 8 + (uint64_t)kp) * (uint64_t)RC_AMX_NB + t] = rc_load_i32(q + 32 * g0 + 4 * n * rc_amx_kg[kp] + 4 * k);
            DX[b * (uint64_t)RC_AMX_NB + t] = d[b];
        }
    }
}

static void rc_amx_config(void) {
    _Alignas(64) rc_tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int c = RC_T_C0; c <= RC_T_C1; c++) { cfg.rows[c] = 16; cfg.colsb[c] = (uint16_t)(4 * RC_AMX_NB); }
    for (int a = RC_T_A0; a <= RC_T_A1; a++) { cfg.rows[a] = 16; cfg.colsb[a] = 32; }
    for (int b = RC_T_B0; b <= RC_T_B1; b++) { cfg.rows[b] = 8; cfg.colsb[b] = (uint16_t)(4 * RC_AMX_NB); }
    _tile_loadconfig(&cfg);
}

/* Fewer vectors than this take the avx512 family's rows function. Measured (Eagle-7B q4, 2 threads, whole
 * batched-decode steps, docs/PERFORMANCE.md): at 8 vectors the tiles' step took about 1.3x the VNNI one (each
 * 16-row panel's unpacking, tile stores and per-block scaling do not shrink with the vectors), at 16 vectors
 * about 0.8x (16 vectors in one tile pass, against two passes of 8). */
#define RC_AMX_MIN_T 9

/* rows[q4] of the avx512-amx family: up to 8 vectors as avx512; 9 or more on the tiles, 16 at a time (an
 * 8-vector form, two blocks per tile product, measured no faster in whole batches: docs/PERFORMANCE.md). */
static void rc_rows_q4_amx(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                           uint64_t out) {
    const uint64_t nb = in / RC_QK, xs = rc_qx_stride(RWKV_DTYPE_Q4, in);
    uint8_t *buf = T >= RC_AMX_MIN_T ? rc_amx_scratch(nb * 36 * (uint64_t)RC_AMX_NB + 64) : NULL;
    if (!buf) { /* few vectors, or no memory for the rearranged activations */
        rc_rows_q4(W, in, r0, r1, X, T, Y, out);
        return;
    }
    uint8_t *XB = buf;
    float *DX = (float *)(void *)(buf + nb * 32 * (uint64_t)RC_AMX_NB);
    rc_amx_config();
    for (uint64_t t0 = 0; t0 < T; t0 += RC_AMX_NB) {
        const uint64_t nt = T - t0 < RC_AMX_NB ? T - t0 : RC_AMX_NB;
        rc_amx_rearrange_qx((const uint8_t *)X, xs, nb, t0, nt, XB, DX);
        for (uint64_t p = r0; p < r1; p += 16) {
            const uint64_t nr = r1 - p < 16 ? r1 - p : 16;
            const uint8_t *pf = p + 16 < r1 ? (const uint8_t *)W + (p + 16) * nb * 16 : NULL;
            const uint64_t pfb = pf ? (r1 - p - 16 < 16 ? r1 - p - 16 : 16) * nb * 16 : 0;
            rc_amx_panel(W, out, nb, p, nr, XB, DX, nt, Y + t0 * out, out, pf, pfb);
        }
    }
    _tile_release();
}
#endif /* RC_HAVE_AMX && !RC_SIMDE */

const rc_kernel_set rc_kernels_avx512 = {
    .name = "avx512",
    .rows = {[RWKV_DTYPE_F32] = rc_rows_f32, [RWKV_DTYPE_F16] = rc_rows_f16, [RWKV_DTYPE_Q8_0] = rc_rows_q8,
             [RWKV_DTYPE_Q4] = rc_rows_q4},
    .gemm = {[RWKV_DTYPE_F32] = rc_gemm_f32, [RWKV_DTYPE_F16] = rc_gemm_f16, [RWKV_DTYPE_Q8_0] = rc_gemm_q8,
             [RWKV_DTYPE_Q4] = rc_gemm_q4},
    .gx_prepare = rc_gx_prepare_avx512,
    /* q4: rc_rows_q4 keeps two rows' codes in registers for up to 8 vectors; measured (14336x4096, one
     * core, in L3) 3.3 ms against 7.3 for the GEMM at 8 vectors, 8.3 / 9.5 at 16, 12.5 / 11.7 at 24 */
    .gemm_min_t = {[RWKV_DTYPE_Q4] = 24, [RWKV_DTYPE_Q8_0] = 9, [RWKV_DTYPE_F32] = RC_F_GEMM_MIN_T, [RWKV_DTYPE_F16] = RC_F_GEMM_MIN_T},
    .isa = RC_ISA_AVX512,
};

#if defined(RC_HAVE_AMX) && !defined(RC_SIMDE)
/* avx512 with the q4 products of 2 or more vectors on the AMX tiles (rc_rows_q4_amx; up to 16 vectors per
 * pass over the weights). Used when the CPU has AMX-INT8 and the OS gave this process the tile state. */
const rc_kernel_set rc_kernels_avx512_amx = {
    .name = "avx512-amx",
    .rows = {[RWKV_DTYPE_F32] = rc_rows_f32, [RWKV_DTYPE_F16] = rc_rows_f16, [RWKV_DTYPE_Q8_0] = rc_rows_q8,
             [RWKV_DTYPE_Q4] = rc_rows_q4_amx},
    .gemm = {[RWKV_DTYPE_F32] = rc_gemm_f32, [RWKV_DTYPE_F16] = rc_gemm_f16, [RWKV_DTYPE_Q8_0] = rc_gemm_q8,
             [RWKV_DTYPE_Q4] = rc_gemm_q4},
    .gx_prepare = rc_gx_prepare_avx512,
    .gemm_min_t = {[RWKV_DTYPE_Q4] = 17, [RWKV_DTYPE_Q8_0] = 9, [RWKV_DTYPE_F32] = RC_F_GEMM_MIN_T, [RWKV_DTYPE_F16] = RC_F_GEMM_MIN_T},
    .isa = RC_ISA_AVX512,
};
#endif
