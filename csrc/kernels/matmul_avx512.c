/* matmul_avx512.c: AVX-512 kernels with VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later). Compiled with
 * -mavx512f -mavx512bw -mavx512vl -mavx512vnni (and AVX2/FMA/F16C) and called only after rc_cpu() has found
 * all of them and OS support for the ZMM state.
 *
 *   f32, f16   16-wide FMA on float X
 *   q8         int8 weights widened to int16 (vpmovsxbw) times the prepared int16 activations with VNNI
 *              vpdpwssd: one block of 32 is one instruction; then one FMA by d_w * d_x per block
 *   q4         a 4-block unit of codes is one 64-byte load; AND / shift + vpshufb into the codebook stored
 *              +64 (unsigned), then VNNI vpdpbusd (u8 x s8) against the prepared int8 activations: two
 *              blocks per instruction. sum (v+64) x = sum v x + 64 sum x, so 64 d_w[b] s[b] is taken off
 *              per block at the end (s[b] = d_x * sum of the block's xq comes with the prepared vector).
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
static float rc_dot_f32(const float *w, const float *x, uint64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    uint64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
    float s = rc_hsum512(_mm512_add_ps(a0, a1));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static float rc_dot_f16(const uint16_t *w, const float *x, uint64_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    uint64_t i = 0;
#define RC_H(k) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i + (k))))
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(RC_H(0), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(RC_H(16), _mm512_loadu_ps(x + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(RC_H(0), _mm512_loadu_ps(x + i), a0);
#undef RC_H
    float s = rc_hsum512(_mm512_add_ps(a0, a1));
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

/* [sc[k] x 8, sc[k+1] x 8] */
static inline __m512 rc_scale_pair(const float *sc, uint64_t k) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(_mm256_set1_ps(sc[k]))),
                                               _mm256_castps_pd(_mm256_set1_ps(sc[k + 1])), 1));
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
/* The 32 codes of block b, in input order, for the blocks outside whole 16-block groups. */
static inline __m256i rc_q4_codes(const uint8_t *qs, uint64_t nb, uint64_t b) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    uint64_t first, blocks, offset;
    rc_q4_unit_of(nb, b, &first, &blocks, &offset);
    const uint64_t pos = b - first;
    if (blocks == 1) {
        const __m128i q = _mm_loadu_si128((const __m128i *)(qs + offset));
        return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
    }
    /* unit of 4: bytes [0, 32) hold blocks 0 (low) and 2 (high), bytes [32, 64) blocks 1 and 3;
     * unit of 2: bytes [0, 32) hold blocks 0 (low) and 1 (high) */
    const uint64_t sub = blocks == 4 ? (pos & 1) : 0, high = blocks == 4 ? (pos >> 1) : pos;
    const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + offset + 32 * sub));
    return _mm256_and_si256(high ? _mm256_srli_epi16(q, 4) : q, m4);
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

static float rc_row_q4(const rc_q4_row *r, uint64_t nb, const void *qx) {
    const uint8_t *qs = r->codes;
    const float *dx = rc_qx_d(qx), *sx = rc_qx_s(qx, nb);
    const int8_t *xq = rc_qx_q(qx, nb);
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)rc_q4_values_u8));
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    __m512 corr = _mm512_setzero_ps(); /* sum_b d_w[b] * s[b] */
    float sc[16];
    uint64_t b = 0;
    for (; b + 16 <= nb; b += 16) { /* four 4-block units */
        const __m512 dw16 = rc_q4_scales16(r, b);
        _mm512_storeu_ps(sc, _mm512_mul_ps(dw16, _mm512_loadu_ps(dx + b)));
        corr = _mm512_fmadd_ps(dw16, _mm512_loadu_ps(sx + b), corr);
        for (uint64_t u = 0; u < 16; u += 4) {
            const __m512i q = _mm512_loadu_si512((const void *)(qs + (b + u) * 16));
            const __m512i v01 = _mm512_shuffle_epi8(table, _mm512_and_si512(q, m4));
            const __m512i v23 = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(q, 4), m4));
            const __m512i x01 = _mm512_loadu_si512((const void *)(xq + (b + u) * RC_QK));
            const __m512i x23 = _mm512_loadu_si512((const void *)(xq + (b + u + 2) * RC_QK));
            const __m512i d01 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v01, x01);
            const __m512i d23 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v23, x23);
            a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d01), rc_scale_pair(sc, u), a0);
            a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d23), rc_scale_pair(sc, u + 2), a1);
        }
    }
    const __m256i table256 = _mm512_castsi512_si256(table);
    __m256 t0 = _mm256_setzero_ps();
    float tail_corr = 0;
    for (; b < nb; b++) {
        const float d = rc_q4_scale(r, b);
        const __m256i v = _mm256_shuffle_epi8(table256, rc_q4_codes(qs, nb, b));
        const __m256i dot = _mm256_dpbusd_epi32(_mm256_setzero_si256(), v,
                                                _mm256_loadu_si256((const __m256i *)(xq + b * RC_QK)));
        t0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(d * dx[b]), t0);
        tail_corr += d * sx[b];
    }
    return rc_hsum512(_mm512_add_ps(a0, a1)) + rc_hsum256(t0) - 64.0f * (rc_hsum512(corr) + tail_corr);
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
