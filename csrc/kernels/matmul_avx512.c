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
#if defined(RC_SIMDE)
#include "simde_avx512.h"
#else
#include <immintrin.h>
#endif

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
#ifndef RC_PREFETCH
#define RC_PREFETCH 1024 /* bytes ahead in the weight stream (rows are contiguous: past a row is the next) */
#endif

/* Four accumulators: the FMA latency (4 cycles) times two FMA ports wants at least 8 in flight for the cache
 * speed, 4 keep the loop well ahead of memory. */
static float rc_dot_f32(const float *w, const float *x, uint64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    uint64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        for (int l = 0; l < 4; l++) _mm_prefetch((const char *)(w + i) + RC_PREFETCH + 64 * l, _MM_HINT_T0);
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
        for (int l = 0; l < 2; l++) _mm_prefetch((const char *)(w + i) + RC_PREFETCH + 64 * l, _MM_HINT_T0);
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

static void rc_rows_f32(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out) {
    for (uint64_t o = r0; o < r1; o++)
        for (uint64_t t = 0; t < T; t++)
            Y[t * out + o] = rc_dot_f32((const float *)W + o * in, (const float *)X + t * in, in);
}

static void rc_rows_f16(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out) {
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
        for (int l = 0; l < 8; l++) _mm_prefetch((const char *)(wq + b * RC_QK) + RC_PREFETCH + 64 * l, _MM_HINT_T0);
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
/* rc_q4_scale with the hardware f16 conversion (the same exact value) */
static inline float rc_q4_scale_hw(const rc_q4_row *r, uint64_t b) {
    return _cvtsh_ss(r->D[b / RC_Q4_SUPER]) * (float)r->s[b] * 0.0078125f;
}

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

/* One row: sum over blocks of d_w d_x (dot of codebook values + 64 with x) - 64 d_w s_x. */
static float rc_row_q4(const rc_q4_row *r, uint64_t nb, const void *qx) {
    const float *dx = rc_qx_d(qx), *sx = rc_qx_s(qx, nb);
    const int8_t *xq = rc_qx_q(qx, nb);
    __m512 acc = _mm512_setzero_ps(), corr = acc; /* corr: sum_b d_w[b] * s[b] */
    uint64_t b = 0;
    for (; b + RC_Q4_GROUP <= nb; b += RC_Q4_GROUP) { /* whole groups: 512 weights, 256 bytes of codes */
        const uint8_t *p = r->codes + 16 * b;
        for (int l = 0; l < 4; l++) _mm_prefetch((const char *)p + RC_PREFETCH + 64 * l, _MM_HINT_T0);
        const __m512i dot = rc_q4_group_dot(p, xq + 32 * b, RC_Q4_GROUP, 1, ~(__mmask64)0);
        const __m512 dw = rc_q4_scales16(r, b);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, _mm512_loadu_ps(dx + b)), acc);
        corr = _mm512_fmadd_ps(dw, _mm512_loadu_ps(sx + b), corr);
    }
    if (b < nb) { /* the short last group */
        const uint64_t n = nb - b;
        float dw[RC_Q4_GROUP] = {0};
        for (uint64_t k = 0; k < n; k++) dw[k] = rc_q4_scale_hw(r, b + k);
        const __mmask16 lanes = (__mmask16)((1u << n) - 1);
        const __m512i dot = rc_q4_group_dot(r->codes + 16 * b, xq + 32 * b, n, 0, (__mmask64)((1ull << (4 * n)) - 1));
        const __m512 w = _mm512_loadu_ps(dw);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(w, _mm512_maskz_loadu_ps(lanes, dx + b)), acc);
        corr = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(lanes, sx + b), corr);
    }
    return rc_hsum512(_mm512_fnmadd_ps(_mm512_set1_ps(64.0f), corr, acc));
}

static void rc_rows_q8(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out) {
    const uint64_t nb = in / RC_QK, rb = nb * RC_Q8_BLOCK_BYTES, xs = rc_qx_stride(RWKV_DTYPE_Q8_0, in);
    for (uint64_t o = r0; o < r1; o++)
        for (uint64_t t = 0; t < T; t++)
            Y[t * out + o] = rc_row_q8((const uint8_t *)W + o * rb, nb, (const uint8_t *)X + t * xs);
}

static void rc_rows_q4(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out) {
    const uint64_t nb = in / RC_QK, xs = rc_qx_stride(RWKV_DTYPE_Q4, in);
    for (uint64_t o = r0; o < r1; o++) {
        const rc_q4_row r = rc_q4_row_at(W, out, nb, o);
        for (uint64_t t = 0; t < T; t++) Y[t * out + o] = rc_row_q4(&r, nb, (const uint8_t *)X + t * xs);
    }
}

const rc_kernel_set rc_kernels_avx512 = {
    .name = "avx512",
    .rows = {[RWKV_DTYPE_F32] = rc_rows_f32, [RWKV_DTYPE_F16] = rc_rows_f16, [RWKV_DTYPE_Q8_0] = rc_rows_q8,
             [RWKV_DTYPE_Q4] = rc_rows_q4},
};
