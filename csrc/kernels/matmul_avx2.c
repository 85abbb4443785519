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
 *              sum v x + 64 sum x, so 64 d_w[b] s[b] is taken off at the end (s[b] = d_x * sum of the
 *              block's xq, from the prepared vector). */
#include <immintrin.h>

#include "kernels/matmul.h"
#include "kernels/quant.h"

/* Software prefetch distance in the weight stream (rows are contiguous, so past a row's end is the next
 * row's start; a prefetch never faults). */
#define RC_PREFETCH 2048

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
        _mm_prefetch((const char *)(w + i) + RC_PREFETCH, _MM_HINT_T0);
        _mm_prefetch((const char *)(w + i) + RC_PREFETCH + 64, _MM_HINT_T0);
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
        _mm_prefetch((const char *)(w + i) + RC_PREFETCH, _MM_HINT_T0);
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
    const __m256i lo = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w)),
                                         _mm256_loadu_si256((const __m256i *)x));
    const __m256i hi = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 16))),
                                         _mm256_loadu_si256((const __m256i *)(x + 16)));
    return _mm256_add_epi32(lo, hi);
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
        for (int l = 0; l < 4; l++) _mm_prefetch((const char *)(wq + b * RC_QK) + RC_PREFETCH + 64 * l, _MM_HINT_T0);
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

/* int32 lanes: 4-byte sums of codebook values + 64 (u8, <= 120) times int8 activations (vpmaddubsw pairs
 * cannot saturate: 120 * 127 * 2 < 2^15) */
static inline __m256i rc_dot4_u8(__m256i u, __m256i x) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
}

/* int32 lane k = the dot product of block 8h + k of a group of n blocks (quant.h), h = 0 or 1: each of the 4
 * chunks (4n code bytes facing 8n activations) gives 32 bytes from 32h on; `live` masks the lanes (dwords)
 * that exist in a short group (whole = 1: no masking, plain loads). */
static inline __m256i rc_q4_load(const void *p, int whole, __m256i live) {
    return whole ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskload_epi32((const int *)p, live);
}

static inline __m256i rc_q4_half_dot(const uint8_t *p, const int8_t *x, uint64_t n, uint64_t h, int whole,
                                     __m256i live) {
    const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)rc_q4_values_u8));
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i acc = _mm256_setzero_si256();
    for (uint64_t m = 0; m < 4; m++) {
        const __m256i q = rc_q4_load(p + 4 * n * m + 32 * h, whole, live);
        const __m256i xl = rc_q4_load(x + 8 * n * m + 32 * h, whole, live);
        const __m256i xh = rc_q4_load(x + 8 * n * m + 4 * n + 32 * h, whole, live);
        acc = _mm256_add_epi32(acc, rc_dot4_u8(_mm256_shuffle_epi8(table, _mm256_and_si256(q, m4)), xl));
        acc = _mm256_add_epi32(acc, rc_dot4_u8(_mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4)), xh));
    }
    return acc;
}

/* One row: sum over blocks of d_w d_x (dot of codebook values + 64 with x) - 64 d_w s_x. */
static float rc_row_q4(const rc_q4_row *r, uint64_t nb, const void *qx) {
    const float *dx = rc_qx_d(qx), *sx = rc_qx_s(qx, nb);
    const int8_t *xq = rc_qx_q(qx, nb);
    const __m256i all = _mm256_set1_epi32(-1);
    __m256 acc = _mm256_setzero_ps(), corr = acc; /* corr: sum_b d_w[b] * s[b] */
    uint64_t b = 0;
    for (; b + RC_Q4_GROUP <= nb; b += RC_Q4_GROUP) { /* whole groups: 512 weights, 256 bytes of codes */
        const uint8_t *p = r->codes + 16 * b;
        for (int l = 0; l < 4; l++) _mm_prefetch((const char *)p + RC_PREFETCH + 64 * l, _MM_HINT_T0);
        for (uint64_t h = 0; h < 2; h++) {
            const __m256i dot = rc_q4_half_dot(p, xq + 32 * b, RC_Q4_GROUP, h, 1, all);
            const __m256 dw = rc_q4_scales8(r, b + 8 * h);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dw, _mm256_loadu_ps(dx + b + 8 * h)), acc);
            corr = _mm256_fmadd_ps(dw, _mm256_loadu_ps(sx + b + 8 * h), corr);
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
            const __m256i dot = rc_q4_half_dot(r->codes + 16 * b, xq + 32 * b, n, h, 0, live);
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

static void rc_rows_q4(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out) {
    const uint64_t nb = in / RC_QK, xs = rc_qx_stride(RWKV_DTYPE_Q4, in);
    for (uint64_t o = r0; o < r1; o++) {
        const rc_q4_row r = rc_q4_row_at(W, out, nb, o);
        for (uint64_t t = 0; t < T; t++) Y[t * out + o] = rc_row_q4(&r, nb, (const uint8_t *)X + t * xs);
    }
}

const rc_kernel_set rc_kernels_avx2 = {
    .name = "avx2",
    .rows = {[RWKV_DTYPE_F32] = rc_rows_f32, [RWKV_DTYPE_F16] = rc_rows_f16, [RWKV_DTYPE_Q8_0] = rc_rows_q8,
             [RWKV_DTYPE_Q4] = rc_rows_q4},
};
