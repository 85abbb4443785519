/* matmul_neon_q4.h: the NEON q4 products, compiled once into each NEON family (aarch64 only).
 *
 * Each family file defines RC_NEON_DOT4(acc, v, x) -- lane k of acc += the sum of the 4 products of bytes
 * 4k..4k+3 of v and x (int8) -- and then includes this file, so the dot product is inlined in every loop:
 *   matmul_neon.c           smull + smull2, addp, sadalp (baseline armv8-a)
 *   matmul_neon_dotprod.c   sdot (armv8.2-a+dotprod)
 * (Before, the row function lived in matmul_neon.c and took the dot product as a function pointer, so the
 * dotprod family made an indirect call per sdot.)
 *
 * Layout (quant.h): a row's codes are packed in groups of n <= 16 blocks; chunk m (m = 0..3) of a group holds
 * 4 n code bytes, 4 per block, whose low nibbles face activations [8 n m, 8 n m + 4 n) of the group and whose
 * high nibbles face the next 4 n. The kernels take a group 4 blocks (16 bytes of each chunk) at a time, so
 * lane k of every int32x4 is block k of the four: 8 dot products give the four blocks' exact integer sums,
 * then one conversion and one FMA by d_w d_x. Codebook values are signed (tbl), so no offset correction.
 *
 * Several vectors (small batches, prompts): rc_neon_q4_batch looks the 8 registers of codebook values of
 * 4 blocks up once and multiplies them with up to 8 vectors (8 float accumulators, 8 code registers and the
 * constants: 20 of the 32 vector registers). rc_neon_rows_q4 runs it over tiles of RC_NEON_Q4_TILE rows times
 * groups of 8 vectors: a tile's codes (16 rows x in / 2 bytes, 32 KB at in = 4096) stay in cache while every
 * group of vectors passes, so each weight comes from memory once per call, however many vectors there are. */
#ifndef RC_MATMUL_NEON_Q4_H
#define RC_MATMUL_NEON_Q4_H

#include <arm_neon.h>
#include <string.h>

#include "kernels/matmul.h"
#include "kernels/quant.h"

#ifndef RC_NEON_DOT4
#error "define RC_NEON_DOT4(acc, v, x) before including matmul_neon_q4.h"
#endif

#define RC_NEON_Q4_TILE 16 /* rows of W per tile (rc_neon_rows_q4) */
#define RC_NEON_Q4_NT 8    /* vectors per pass over a tile */

/* 16 bytes at p, of which the first 4 nk are read (nk < 4: the rest is zero) */
static inline uint8x16_t rc_neon_load16(const void *p, uint64_t nk) {
    if (nk == 4) return vld1q_u8((const uint8_t *)p);
    uint8_t buf[16] = {0};
    memcpy(buf, p, 4 * nk);
    return vld1q_u8(buf);
}

/* 4 floats at p, of which the first nk are read (the rest zero) */
static inline float32x4_t rc_neon_load4f(const float *p, uint64_t nk) {
    if (nk == 4) return vld1q_f32(p);
    float buf[4] = {0, 0, 0, 0};
    memcpy(buf, p, 4 * nk);
    return vld1q_f32(buf);
}

/* d_w of blocks [b, b + nk) of row r (b a multiple of 4, so one super-block and one D; nk <= 4; lanes >= nk
 * zero): D * s * 2^-7 with the f16 D converted by the hardware (fcvtl) and s widened, exact as rc_q4_scale. */
static inline float32x4_t rc_neon_q4_dw4(const rc_q4_row *r, uint64_t b, uint64_t nk) {
    const float D = vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(r->D[b / RC_Q4_SUPER]))), 0);
    int32_t s4 = 0;
    memcpy(&s4, r->s + b, nk); /* nk int8 scales, no read past them */
    const int32x4_t s = vmovl_s16(vget_low_s16(vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(s4)))));
    return vmulq_n_f32(vcvtq_f32_s32(s), D * 0.0078125f);
}

/* The codebook values of 4 blocks of a group of n (first block k0 of the group at codes p; nk <= 4 of them
 * present): c[2m] faces the group's activations at 8 n m + 4 k0, c[2m + 1] those at 8 n m + 4 n + 4 k0. */
static inline __attribute__((always_inline)) void rc_neon_q4_values(const uint8_t *p, uint64_t n, uint64_t k0,
                                                                     uint64_t nk, int8x16_t c[8]) {
    const int8x16_t table = vld1q_s8(rc_q4_values);
    const uint8x16_t m4 = vdupq_n_u8(0x0f);
#pragma GCC unroll 4
    for (uint64_t m = 0; m < 4; m++) {
        const uint8x16_t q = rc_neon_load16(p + 4 * n * m + 4 * k0, nk);
        c[2 * m] = vqtbl1q_s8(table, vandq_u8(q, m4));
        c[2 * m + 1] = vqtbl1q_s8(table, vshrq_n_u8(q, 4));
    }
}

/* The 4 blocks' integer sums of c (rc_neon_q4_values) with one vector's activations x (its group's start). */
static inline __attribute__((always_inline)) int32x4_t rc_neon_q4_dot(const int8x16_t c[8], const int8_t *x,
                                                                      uint64_t n, uint64_t k0, uint64_t nk) {
    int32x4_t d = vdupq_n_s32(0);
#pragma GCC unroll 4
    for (uint64_t m = 0; m < 4; m++) {
        d = RC_NEON_DOT4(d, c[2 * m], vreinterpretq_s8_u8(rc_neon_load16(x + 8 * n * m + 4 * k0, nk)));
        d = RC_NEON_DOT4(d, c[2 * m + 1], vreinterpretq_s8_u8(rc_neon_load16(x + 8 * n * m + 4 * n + 4 * k0, nk)));
    }
    return d;
}

/* Blocks [b + k0, b + k0 + nk) of a group of n (nk <= 4; 4 blocks: the loads are whole) of row r against nt
 * prepared vectors (vector t at qx + t * xs): acc[t] += their d_w d_x (dot of codebook values and xq). The
 * codebook values are looked up once for all nt vectors. */
static inline __attribute__((always_inline)) void rc_neon_q4_step(const rc_q4_row *r, uint64_t nb, uint64_t b,
                                                                  uint64_t n, uint64_t k0, uint64_t nk,
                                                                  const uint8_t *qx, uint64_t xs, const int nt,
                                                                  float32x4_t acc[]) {
    int8x16_t c[8];
    rc_neon_q4_values(r->codes + 16 * b, n, k0, nk, c);
    const float32x4_t dw = rc_neon_q4_dw4(r, b + k0, nk);
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        const uint8_t *v = qx + (uint64_t)t * xs;
        const int32x4_t d = rc_neon_q4_dot(c, rc_qx_q(v, nb) + 32 * b, n, k0, nk);
        const float32x4_t sc = vmulq_f32(dw, rc_neon_load4f(rc_qx_d(v) + b + k0, nk));
        acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(d), sc);
    }
}

/* One row against nt <= 8 prepared vectors: y[t * ldy] = the row's product with vector t: the sum over blocks
 * of d_w d_x (dot of codebook values and xq). The same operations in the same order for every nt, so a
 * vector's result does not depend on the batch it is in. */
static inline __attribute__((always_inline)) void rc_neon_q4_batch(const rc_q4_row *r, uint64_t nb, const uint8_t *qx,
                                                                   uint64_t xs, const int nt, float *y, uint64_t ldy) {
    float32x4_t acc[RC_NEON_Q4_NT];
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) acc[t] = vdupq_n_f32(0);
    for (uint64_t b = 0; b < nb; b += RC_Q4_GROUP) {
        const uint64_t n = rc_q4_group_blocks(nb, b);
        uint64_t k0 = 0;
        for (; k0 + 4 <= n; k0 += 4) rc_neon_q4_step(r, nb, b, n, k0, 4, qx, xs, nt, acc);
        if (k0 < n) rc_neon_q4_step(r, nb, b, n, k0, n - k0, qx, xs, nt, acc); /* a short group's last 1-3 */
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) y[(uint64_t)t * ldy] = vaddvq_f32(acc[t]);
}

static void rc_neon_q4_batch_n(const rc_q4_row *r, uint64_t nb, const uint8_t *qx, uint64_t xs, uint64_t nt,
                               float *y, uint64_t ldy) {
    switch (nt) {
#define RC_CASE(k) case k: rc_neon_q4_batch(r, nb, qx, xs, k, y, ldy); break;
        RC_CASE(1) RC_CASE(2) RC_CASE(3) RC_CASE(4) RC_CASE(5) RC_CASE(6) RC_CASE(7) RC_CASE(8)
#undef RC_CASE
    default: break;
    }
}

/* Rows [r0, r1) of W times T prepared vectors (the family's rows function for q4). */
static void rc_neon_rows_q4(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T,
                            float *Y, uint64_t out) {
    const uint64_t nb = in / RC_QK, xs = rc_qx_stride(RWKV_DTYPE_Q4, in);
    if (T == 1) {
        for (uint64_t o = r0; o < r1; o++) {
            const rc_q4_row r = rc_q4_row_at(W, out, nb, o);
            rc_neon_q4_batch(&r, nb, (const uint8_t *)X, 0, 1, Y + o, 0);
        }
        return;
    }
    for (uint64_t o0 = r0; o0 < r1; o0 += RC_NEON_Q4_TILE) { /* a tile of rows, then every group of vectors */
        const uint64_t o1 = r1 - o0 < RC_NEON_Q4_TILE ? r1 : o0 + RC_NEON_Q4_TILE;
        for (uint64_t t0 = 0; t0 < T; t0 += RC_NEON_Q4_NT) {
            const uint64_t nt = T - t0 < RC_NEON_Q4_NT ? T - t0 : RC_NEON_Q4_NT;
            for (uint64_t o = o0; o < o1; o++) {
                const rc_q4_row r = rc_q4_row_at(W, out, nb, o);
                rc_neon_q4_batch_n(&r, nb, (const uint8_t *)X + t0 * xs, xs, nt, Y + t0 * out + o, out);
            }
        }
    }
}

#endif
