/* matmul_neon.c: AArch64 Advanced SIMD (NEON) kernels, baseline armv8-a (every 64-bit ARM CPU).
 *
 *   f32, f16   4-wide FMA (f16 widened with fcvtl, part of armv8.0)
 *   q8         int8 weights times the prepared int16 activations with smlal (widening multiply-add)
 *   q4         4-bit codes -> codebook values with one tbl, times the prepared int8 activations with
 *              smull, a pairwise add (addp) and sadalp: one int32 lane per block of the group packing
 *              (quant.h), 4 blocks per 16 bytes (matmul_neon_q4.h, shared with the dotprod family)
 * matmul_neon_dotprod.c compiles the same q4 kernels with sdot where the CPU has the dot-product extension. */
#include <arm_neon.h>

#include "kernels/matmul.h"
#include "kernels/matmul_neon.h"
#include "kernels/quant.h"

/* 16 weights of a row at i as 4 float32x4 (f16 widened with fcvtl) */
static inline __attribute__((always_inline)) void rc_w16(int f16, const void *w, uint64_t i, float32x4_t v[4]) {
    if (f16) {
        const float16x8_t h0 = vreinterpretq_f16_u16(vld1q_u16((const uint16_t *)w + i));
        const float16x8_t h1 = vreinterpretq_f16_u16(vld1q_u16((const uint16_t *)w + i + 8));
        v[0] = vcvt_f32_f16(vget_low_f16(h0)), v[1] = vcvt_high_f32_f16(h0);
        v[2] = vcvt_f32_f16(vget_low_f16(h1)), v[3] = vcvt_high_f32_f16(h1);
    } else {
        for (int k = 0; k < 4; k++) v[k] = vld1q_f32((const float *)w + i + 4 * k);
    }
}

static inline __attribute__((always_inline)) float rc_w1(int f16, const void *w, uint64_t i) {
    return f16 ? rc_f16_to_f32(((const uint16_t *)w)[i]) : ((const float *)w)[i];
}

/* One row w of n weights (f32 or f16) against nt <= 4 vectors (vector t at x + t * xs floats): y[t * ldy] = the
 * dot product. Per vector four chains (FMA latency x 2 pipes) over 16 weights at a time, then 4 at a time into
 * the first chain, then one at a time; each 16 weights are loaded (and widened) once for all nt vectors. The
 * same operations in the same order for every nt. */
static inline __attribute__((always_inline)) void rc_dot_float(int f16, const void *w, uint64_t n, const float *x,
                                                               uint64_t xs, const int nt, float *y, uint64_t ldy) {
    float32x4_t a[4][4];
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) a[t][0] = a[t][1] = a[t][2] = a[t][3] = vdupq_n_f32(0);
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float32x4_t v[4];
        rc_w16(f16, w, i, v);
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++)
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) a[t][k] = vfmaq_f32(a[t][k], v[k], vld1q_f32(x + t * xs + i + 4 * k));
    }
    for (; i + 4 <= n; i += 4) {
        const float32x4_t v = f16 ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)w + i)))
                                  : vld1q_f32((const float *)w + i);
#pragma GCC unroll 4
        for (int t = 0; t < nt; t++) a[t][0] = vfmaq_f32(a[t][0], v, vld1q_f32(x + t * xs + i));
    }
#pragma GCC unroll 4
    for (int t = 0; t < nt; t++) {
        float s = vaddvq_f32(vaddq_f32(vaddq_f32(a[t][0], a[t][1]), vaddq_f32(a[t][2], a[t][3])));
        for (uint64_t j = i; j < n; j++) s += rc_w1(f16, w, j) * x[t * xs + j];
        y[(uint64_t)t * ldy] = s;
    }
}

static void rc_dot_float_n(int f16, const void *w, uint64_t n, const float *x, uint64_t xs, uint64_t nt, float *y,
                           uint64_t ldy) {
    switch (nt) {
#define RC_CASE(k) case k: rc_dot_float(f16, w, n, x, xs, k, y, ldy); break;
        RC_CASE(1) RC_CASE(2) RC_CASE(3) RC_CASE(4)
#undef RC_CASE
    default: break;
    }
}

/* ---- short rows (in <= RC_SHORT_IN): 4 rows per reduction (matmul_avx512.c has the 16-row version and the
 * reasons): two pairwise adds fold 4 accumulators into the 4 row sums. Each row's sum is added up in the same
 * order wherever it sits in the group. */
#define RC_SHORT_IN 256

/* 4 weights of a row at i (f32 or f16 widened); `n` < 4: only the first n, the rest 0, through a zero-padded
 * copy (nothing read beyond the row) */
static inline __attribute__((always_inline)) float32x4_t rc_short_w4(int f16, const char *w, uint64_t i, uint64_t n) {
    if (n == 4) {
        if (f16) return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)w + i)));
        return vld1q_f32((const float *)w + i);
    }
    float t[4] = {0};
    for (uint64_t k = 0; k < n; k++) t[k] = f16 ? rc_f16_to_f32(((const uint16_t *)w)[i + k]) : ((const float *)w)[i + k];
    return vld1q_f32(t);
}

/* acc[r] += 4 weights of row r at i times x[i..i+4) for the 4 rows of a group (rows past the group's end
 * read its last row again: their lanes are not stored); n: the inputs present (4, or the row's last few) */
static inline __attribute__((always_inline)) void rc_short_step4(int f16, const char *w, uint64_t row_bytes,
                                                                 uint64_t nr, const float *x, uint64_t i,
                                                                 uint64_t n, float32x4_t acc[4]) {
    float xt[4] = {0};
    if (n < 4) for (uint64_t k = 0; k < n; k++) xt[k] = x[i + k];
    const float32x4_t xv = vld1q_f32(n == 4 ? x + i : xt);
    for (uint64_t r = 0; r < 4; r++) {
        const char *row = w + (r < nr ? r : nr - 1) * row_bytes;
        acc[r] = vfmaq_f32(acc[r], rc_short_w4(f16, row, i, n), xv);
    }
}

/* rows [r0, r1) of W [out, in] (in <= RC_SHORT_IN) times T vectors, 4 rows at a time: acc[r] lane j = the sum
 * over i = j (mod 4) of row r's w[i] x[i] */
static inline __attribute__((always_inline)) void rc_rows_short(int f16, const void *W, uint64_t in, uint64_t r0,
                                                                 uint64_t r1, const float *X, uint64_t T, float *Y,
                                                                 uint64_t out) {
    const uint64_t row_bytes = in * (f16 ? 2 : 4);
    for (uint64_t o = r0; o < r1; o += 4) {
        const uint64_t nr = r1 - o < 4 ? r1 - o : 4;
        const char *w = (const char *)W + o * row_bytes;
        for (uint64_t t = 0; t < T; t++) {
            float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
            uint64_t i = 0;
            for (; i + 4 <= in; i += 4) rc_short_step4(f16, w, row_bytes, nr, X + t * in, i, 4, acc);
            if (i < in) rc_short_step4(f16, w, row_bytes, nr, X + t * in, i, in - i, acc);
            /* [r0 01, r0 23, r1 01, r1 23], [r2 .., r3 ..] -> [r0, r1, r2, r3] */
            const float32x4_t sums = vpaddq_f32(vpaddq_f32(acc[0], acc[1]), vpaddq_f32(acc[2], acc[3]));
            if (nr == 4) {
                vst1q_f32(Y + t * out + o, sums);
            } else {
                float s[4];
                vst1q_f32(s, sums);
                for (uint64_t r = 0; r < nr; r++) Y[t * out + o + r] = s[r];
            }
        }
    }
}

/* rows [r0, r1) of W (f32 or f16) times T vectors: one vector row by row; several as tiles of 16 rows x groups
 * of up to 4 vectors (a tile, 16 x in floats or halves, stays in cache while every group passes) */
static void rc_rows_float(int f16, const void *W, uint64_t in, uint64_t r0, uint64_t r1, const float *X, uint64_t T,
                          float *Y, uint64_t out) {
    const uint64_t row_bytes = in * (f16 ? 2 : 4);
    const char *w = (const char *)W;
    if (T == 1) {
        for (uint64_t o = r0; o < r1; o++) rc_dot_float(f16, w + o * row_bytes, in, X, 0, 1, Y + o, 0);
        return;
    }
    for (uint64_t o0 = r0; o0 < r1; o0 += 16)
        for (uint64_t t0 = 0; t0 < T; t0 += 4)
            for (uint64_t o = o0; o < r1 && o < o0 + 16; o++)
                rc_dot_float_n(f16, w + o * row_bytes, in, X + t0 * in, in, T - t0 < 4 ? T - t0 : 4, Y + t0 * out + o, out);
}

void rc_neon_rows_f32(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out) {
    if (in <= RC_SHORT_IN) rc_rows_short(0, W, in, r0, r1, (const float *)X, T, Y, out);
    else rc_rows_float(0, W, in, r0, r1, (const float *)X, T, Y, out);
}

void rc_neon_rows_f16(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out) {
    if (in <= RC_SHORT_IN) rc_rows_short(1, W, in, r0, r1, (const float *)X, T, Y, out);
    else rc_rows_float(1, W, in, r0, r1, (const float *)X, T, Y, out);
}

/* q8: one block = 32 int8 weights widened to int16 once (w[4], 8 each), times one vector's 32 int16 activations */
typedef struct {
    int16x8_t w[4];
} rc_q8_wide;

static inline __attribute__((always_inline)) rc_q8_wide rc_widen_q8(const int8_t *w) {
    const int8x16_t w0 = vld1q_s8(w), w1 = vld1q_s8(w + 16);
    return (rc_q8_wide){{vmovl_s8(vget_low_s8(w0)), vmovl_high_s8(w0), vmovl_s8(vget_low_s8(w1)), vmovl_high_s8(w1)}};
}

static inline __attribute__((always_inline)) int32x4_t rc_block_q8(const rc_q8_wide *w, const int16_t *x) {
    int32x4_t a = vdupq_n_s32(0);
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const int16x8_t xv = vld1q_s16(x + 8 * i);
        a = vmlal_s16(a, vget_low_s16(w->w[i]), vget_low_s16(xv));
        a = vmlal_high_s16(a, w->w[i], xv);
    }
    return a;
}

/* Block b of a row (scales dw, quants wq) against nt prepared vectors (vector t at qx + t * xs): acc[t] +=
 * d_w d_x (block's integer sum), the block widened once for all nt. */
static inline __attribute__((always_inline)) void rc_q8_step(const uint16_t *dw, const int8_t *wq, uint64_t nb,
                                                             uint64_t b, const uint8_t *qx, uint64_t xs, const int nt,
                                                             float32x4_t acc[]) {
    const rc_q8_wide w = rc_widen_q8(wq + b * RC_QK);
    const float d = rc_f16_to_f32(dw[b]);
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        const uint8_t *v = qx + (uint64_t)t * xs;
        acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(rc_block_q8(&w, rc_qx_q16(v, nb) + b * RC_QK)), d * rc_qx_d(v)[b]);
    }
}

/* One row against nt <= 8 prepared vectors: y[t * ldy] = the row's product with vector t. Even blocks add up in
 * a0, odd ones in a1 (two chains); the same operations in the same order for every nt. */
static inline __attribute__((always_inline)) void rc_q8_batch(const uint8_t *row, uint64_t nb, const uint8_t *qx,
                                                              uint64_t xs, const int nt, float *y, uint64_t ldy) {
    const uint16_t *dw = rc_q_scales(row);
    const int8_t *wq = (const int8_t *)rc_q_quants(row, nb);
    float32x4_t a0[8], a1[8];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) a0[t] = a1[t] = vdupq_n_f32(0);
    uint64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        rc_q8_step(dw, wq, nb, b, qx, xs, nt, a0);
        rc_q8_step(dw, wq, nb, b + 1, qx, xs, nt, a1);
    }
    if (b < nb) rc_q8_step(dw, wq, nb, b, qx, xs, nt, a0);
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) y[(uint64_t)t * ldy] = vaddvq_f32(vaddq_f32(a0[t], a1[t]));
}

static void rc_q8_batch_n(const uint8_t *row, uint64_t nb, const uint8_t *qx, uint64_t xs, uint64_t nt, float *y,
                          uint64_t ldy) {
    switch (nt) {
#define RC_CASE(k) case k: rc_q8_batch(row, nb, qx, xs, k, y, ldy); break;
        RC_CASE(1) RC_CASE(2) RC_CASE(3) RC_CASE(4) RC_CASE(5) RC_CASE(6) RC_CASE(7) RC_CASE(8)
#undef RC_CASE
    default: break;
    }
}

/* q8 rows: one vector row by row; several as tiles of 16 rows times groups of up to 8 vectors (the tile's rows,
 * 16 x 34 in / 32 bytes, stay in cache while every group passes: each weight comes from memory once a call). */
void rc_neon_rows_q8(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                     uint64_t out) {
    const uint64_t nb = in / RC_QK, rb = nb * RC_Q8_BLOCK_BYTES, xs = rc_qx_stride(RWKV_DTYPE_Q8_0, in);
    const uint8_t *w = (const uint8_t *)W, *x = (const uint8_t *)X;
    if (T == 1) {
        for (uint64_t o = r0; o < r1; o++) rc_q8_batch(w + o * rb, nb, x, 0, 1, Y + o, 0);
        return;
    }
    for (uint64_t o0 = r0; o0 < r1; o0 += 16)
        for (uint64_t t0 = 0; t0 < T; t0 += 8)
            for (uint64_t o = o0; o < r1 && o < o0 + 16; o++)
                rc_q8_batch_n(w + o * rb, nb, x + t0 * xs, xs, T - t0 < 8 ? T - t0 : 8, Y + t0 * out + o, out);
}

/* q4 (no dot-product extension): lane k of acc += the sum of the 4 products of bytes 4k..4k+3 of v and x.
 * Pair sums of int8 products fit int16 (2 * 63 * 127), then one widening pairwise add. */
static inline __attribute__((always_inline)) int32x4_t rc_dot4_neon(int32x4_t acc, int8x16_t v, int8x16_t x) {
    const int16x8_t pairs = vpaddq_s16(vmull_s8(vget_low_s8(v), vget_low_s8(x)), vmull_high_s8(v, x));
    return vpadalq_s16(acc, pairs);
}
#define RC_NEON_DOT4(acc, v, x) rc_dot4_neon(acc, v, x)
#include "kernels/matmul_neon_q4.h"

const rc_kernel_set rc_kernels_neon = {
    .name = "neon",
    .rows = {[RWKV_DTYPE_F32] = rc_neon_rows_f32, [RWKV_DTYPE_F16] = rc_neon_rows_f16, [RWKV_DTYPE_Q8_0] = rc_neon_rows_q8,
             [RWKV_DTYPE_Q4] = rc_neon_rows_q4},
};
