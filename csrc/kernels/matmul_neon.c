/* matmul_neon.c: AArch64 Advanced SIMD (NEON) kernels, baseline armv8-a (every 64-bit ARM CPU).
 *
 *   f32, f16   4-wide FMA (f16 widened with fcvtl, part of armv8.0)
 *   q8         int8 weights times the prepared int16 activations with smlal (widening multiply-add)
 *   q4         4-bit codes -> codebook values with one tbl, times the prepared int8 activations with
 *              smull, a pairwise add (addp) and sadalp: one int32 lane per block of the group packing
 *              (quant.h), 4 blocks per 16 bytes
 * matmul_neon_dotprod.c replaces the q4 product with sdot where the CPU has the dot-product extension. */
#include <arm_neon.h>

#include "kernels/matmul.h"
#include "kernels/matmul_neon.h"
#include "kernels/quant.h"

static float rc_dot_f32(const float *w, const float *x, uint64_t n) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vld1q_f32(w + i + 4), vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(w + i + 8), vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(w + i + 12), vld1q_f32(x + i + 12));
    }
    for (; i + 4 <= n; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(x + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static float rc_dot_f16(const uint16_t *w, const float *x, uint64_t n) {
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0; /* four chains: FMA latency x 2 pipes */
    uint64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const float16x8_t h0 = vreinterpretq_f16_u16(vld1q_u16(w + i)), h1 = vreinterpretq_f16_u16(vld1q_u16(w + i + 8));
        a0 = vfmaq_f32(a0, vcvt_f32_f16(vget_low_f16(h0)), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vcvt_high_f32_f16(h0), vld1q_f32(x + i + 4));
        a2 = vfmaq_f32(a2, vcvt_f32_f16(vget_low_f16(h1)), vld1q_f32(x + i + 8));
        a3 = vfmaq_f32(a3, vcvt_high_f32_f16(h1), vld1q_f32(x + i + 12));
    }
    for (; i + 8 <= n; i += 8) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(w + i));
        a0 = vfmaq_f32(a0, vcvt_f32_f16(vget_low_f16(h)), vld1q_f32(x + i));
        a1 = vfmaq_f32(a1, vcvt_high_f32_f16(h), vld1q_f32(x + i + 4));
    }
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) s += rc_f16_to_f32(w[i]) * x[i];
    return s;
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

void rc_neon_rows_f32(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out) {
    if (in <= RC_SHORT_IN) {
        rc_rows_short(0, W, in, r0, r1, (const float *)X, T, Y, out);
        return;
    }
    for (uint64_t o = r0; o < r1; o++)
        for (uint64_t t = 0; t < T; t++)
            Y[t * out + o] = rc_dot_f32((const float *)W + o * in, (const float *)X + t * in, in);
}

void rc_neon_rows_f16(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out) {
    if (in <= RC_SHORT_IN) {
        rc_rows_short(1, W, in, r0, r1, (const float *)X, T, Y, out);
        return;
    }
    for (uint64_t o = r0; o < r1; o++)
        for (uint64_t t = 0; t < T; t++)
            Y[t * out + o] = rc_dot_f16((const uint16_t *)W + o * in, (const float *)X + t * in, in);
}

/* q8: one block = 32 int8 x int16 products */
static inline int32x4_t rc_block_q8(const int8_t *w, const int16_t *x) {
    const int8x16_t w0 = vld1q_s8(w), w1 = vld1q_s8(w + 16);
    int32x4_t a = vmull_s16(vget_low_s16(vmovl_s8(vget_low_s8(w0))), vld1_s16(x));
    a = vmlal_high_s16(a, vmovl_s8(vget_low_s8(w0)), vld1q_s16(x));
    a = vmlal_s16(a, vget_low_s16(vmovl_high_s8(w0)), vld1_s16(x + 8));
    a = vmlal_high_s16(a, vmovl_high_s8(w0), vld1q_s16(x + 8));
    a = vmlal_s16(a, vget_low_s16(vmovl_s8(vget_low_s8(w1))), vld1_s16(x + 16));
    a = vmlal_high_s16(a, vmovl_s8(vget_low_s8(w1)), vld1q_s16(x + 16));
    a = vmlal_s16(a, vget_low_s16(vmovl_high_s8(w1)), vld1_s16(x + 24));
    a = vmlal_high_s16(a, vmovl_high_s8(w1), vld1q_s16(x + 24));
    return a;
}

static float rc_row_q8(const uint8_t *row, uint64_t nb, const void *qx) {
    const uint16_t *dw = rc_q_scales(row);
    const int8_t *wq = (const int8_t *)rc_q_quants(row, nb);
    const float *dx = rc_qx_d(qx);
    const int16_t *xq = rc_qx_q16(qx, nb);
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    uint64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        a0 = vfmaq_n_f32(a0, vcvtq_f32_s32(rc_block_q8(wq + b * RC_QK, xq + b * RC_QK)), rc_f16_to_f32(dw[b]) * dx[b]);
        a1 = vfmaq_n_f32(a1, vcvtq_f32_s32(rc_block_q8(wq + (b + 1) * RC_QK, xq + (b + 1) * RC_QK)),
                         rc_f16_to_f32(dw[b + 1]) * dx[b + 1]);
    }
    if (b < nb)
        a0 = vfmaq_n_f32(a0, vcvtq_f32_s32(rc_block_q8(wq + b * RC_QK, xq + b * RC_QK)), rc_f16_to_f32(dw[b]) * dx[b]);
    return vaddvq_f32(vaddq_f32(a0, a1));
}

/* q4 (no dot-product extension): lane k of acc += the sum of the 4 products of bytes 4k..4k+3 of v and x.
 * Pair sums of int8 products fit int16 (2 * 63 * 127), then one widening pairwise add. */
static int32x4_t rc_dot4_neon(int32x4_t acc, int8x16_t v, int8x16_t x) {
    const int16x8_t pairs = vpaddq_s16(vmull_s8(vget_low_s8(v), vget_low_s8(x)), vmull_high_s8(v, x));
    return vpadalq_s16(acc, pairs);
}

/* 16 bytes at p, of which the first 4 nk are read (nk < 4: the rest is zero) */
static inline uint8x16_t rc_load16(const void *p, uint64_t nk) {
    if (nk == 4) return vld1q_u8((const uint8_t *)p);
    uint8_t buf[16] = {0};
    memcpy(buf, p, 4 * nk);
    return vld1q_u8(buf);
}

/* d_w * d_x of blocks [b, b + nk), b a multiple of 4 (so one super-block, one D), nk <= 4; lanes >= nk zero.
 * The f16 D converted by the hardware (fcvtl), s widened: exact, as rc_q4_scale. */
static inline float32x4_t rc_q4_scales4(const rc_q4_row *r, uint64_t b, uint64_t nk, const float *dx) {
    const float D = vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(r->D[b / RC_Q4_SUPER]))), 0);
    if (nk < 4) {
        float sc[4] = {0, 0, 0, 0};
        for (uint64_t k = 0; k < nk; k++) sc[k] = D * (float)r->s[b + k] * 0.0078125f * dx[b + k];
        return vld1q_f32(sc);
    }
    int32_t s4;
    memcpy(&s4, r->s + b, 4); /* 4 int8 scales, no read past them */
    const int32x4_t s = vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(s4)))));
    return vmulq_f32(vmulq_n_f32(vcvtq_f32_s32(s), D * 0.0078125f), vld1q_f32(dx + b));
}

/* One q4 row: groups of n blocks (quant.h) taken 4 blocks (16 bytes of each chunk) at a time; lane k of the
 * int32 sums is block k of the four. Codebook values signed (tbl), so no +64 correction. */
float rc_neon_row_q4(const rc_q4_row *r, uint64_t nb, const void *qx, rc_neon_dot4_fn dot4) {
    const float *dx = rc_qx_d(qx);
    const int8_t *xq = rc_qx_q(qx, nb);
    const int8x16_t table = vld1q_s8(rc_q4_values);
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
    float32x4_t acc = vdupq_n_f32(0);
    for (uint64_t b = 0; b < nb; b += RC_Q4_GROUP) {
        const uint64_t n = rc_q4_group_blocks(nb, b);
        const uint8_t *p = r->codes + 16 * b;
        const int8_t *x = xq + 32 * b;
        for (uint64_t k0 = 0; k0 < n; k0 += 4) {
            const uint64_t nk = n - k0 < 4 ? n - k0 : 4;
            int32x4_t d = vdupq_n_s32(0);
            for (uint64_t m = 0; m < 4; m++) {
                const uint8x16_t q = rc_load16(p + 4 * n * m + 4 * k0, nk);
                const int8x16_t xl = vreinterpretq_s8_u8(rc_load16(x + 8 * n * m + 4 * k0, nk));
                const int8x16_t xh = vreinterpretq_s8_u8(rc_load16(x + 8 * n * m + 4 * n + 4 * k0, nk));
                d = dot4(d, vqtbl1q_s8(table, vandq_u8(q, m4)), xl);
                d = dot4(d, vqtbl1q_s8(table, vshrq_n_u8(q, 4)), xh);
            }
            acc = vfmaq_f32(acc, vcvtq_f32_s32(d), rc_q4_scales4(r, b + k0, nk, dx));
        }
    }
    return vaddvq_f32(acc);
}

void rc_neon_rows_q8(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
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
        for (uint64_t t = 0; t < T; t++)
            Y[t * out + o] = rc_neon_row_q4(&r, nb, (const uint8_t *)X + t * xs, rc_dot4_neon);
    }
}

const rc_kernel_set rc_kernels_neon = {
    .name = "neon",
    .rows = {[RWKV_DTYPE_F32] = rc_neon_rows_f32, [RWKV_DTYPE_F16] = rc_neon_rows_f16, [RWKV_DTYPE_Q8_0] = rc_neon_rows_q8,
             [RWKV_DTYPE_Q4] = rc_rows_q4},
};
