/* gemm.h: the GEMM path of the matrix products (T >= RC_GEMM_MIN_T vectors: prompt processing, batched
 * decode). Every family's gemm function (matmul_<isa>.c) works the same way:
 *
 *   for each panel of MR rows of W (MR = 32 on AVX-512, 16 on AVX2) and each slice of KC inputs:
 *       pack the panel once into a buffer laid out for the registers (inputs outermost, MR rows innermost):
 *           f32 / f16    float  P[k][MR]                              (f16 widened while packing)
 *           q8 / q4      uint8  P[k / 4][MR][4] = weight + offset     (q4 codes looked up in the codebook)
 *                        float  D[block][MR]    = the rows' block scales d_w
 *       for each group of NR vectors: Y[t, panel] += P x X[t, slice], as MR x NR outer products of one
 *           panel column with NR broadcast inputs, all accumulators in registers
 *
 * so each weight is read from memory once per call and packed once, then used NR times from registers and
 * T times from cache. q4: one VNNI instruction (vpdpbusd, u8 x s8, 4 inputs per lane) per MR/16 x NR x 4
 * multiply-adds; q8: int16 x int16 (vpdpwssd, 2 inputs per lane) on the decode path's int16 activations
 * (quant.h: int8 ones would double q8's error; its GEMM path stays as exact as its decode path). Each
 * block's int32 sums are scaled in float by d_w[o, b] * d_x[t, b]:
 *     Y[t, o] = sum_b d_w[o, b] d_x[t, b] (sum_j q_w[o, b, j] q_x[t, b, j])
 * with the unsigned weights q_w + 128, the 128 * sum_j q_x[t, b, j] is taken off by starting each block's
 * integer accumulator at corr[t, b] = -128 * that sum (stored with the vector), so the block sums are exact.
 * AVX2 turns this around (rc_kernel_set.gx_u8): unsigned activations q_x + 128 (rc_gx_prepare_u8) times the
 * signed codebook values, the accumulator starting at the panel's -128 * sum_j q_w[o, b, j], one load per block
 * for every vector (matmul_avx2.c says why).
 *
 * The q4 GEMM activation vector (rc_gx_prepare): every vector quantized to int8 per block of 32, exactly as
 * the q4 decode path's (dx = max|x| / 127, xq = round-to-nearest-even(x / dx)), so the GEMM and decode
 * paths multiply the same integers, but kept in input order (the decode path's follows the q4 code
 * packing; the GEMM packs the weights into input order instead). Layout of one vector, 64-byte aligned,
 * vectors rc_gx_stride(in) bytes apart:
 *     d[nb]    float    dx per block
 *     corr[nb] int32    -128 * (sum of the block's xq)
 *     q[in]    int8     xq, input order (rc_gx_prepare_u8: uint8 xq + 128)                              */
#ifndef RC_GEMM_H
#define RC_GEMM_H

#include "core/common.h"
#include "kernels/quant.h"

#define RC_GX_OFFSET 128 /* what the SIMD gemm kernels add to signed weights to make them unsigned */

/* The f32 / f16 GEMM reads its vectors (X [T, in] floats) from a copy whose rows are rc_fx_stride(in) floats apart:
 * `in` rounded up to a 64-byte line, plus one line where that is a multiple of 8 lines. A microkernel broadcasts
 * from NR = 12 of those rows at once, and rows a multiple of 4 KB apart (in = 4096 or 14336: Eagle's) fall in one
 * set of a 32 KB 8-way L1 cache: AVX2 on Zen 3, 64x4096 in cache, 256 vectors, one thread, ran at 16.7 G
 * multiply-adds/s against 39.6 at in = 4064. With an odd number of lines apart the rows are in different sets. */
static inline uint64_t rc_fx_stride(uint64_t in) {
    const uint64_t s = (in + 15) / 16 * 16;
    return (s / 16) % 8 == 0 ? s + 16 : s;
}

uint64_t rc_gx_stride(uint64_t in);
static inline const float *rc_gx_d(const void *gx) { return (const float *)gx; }
static inline const int32_t *rc_gx_corr(const void *gx, uint64_t nb) { return (const int32_t *)gx + nb; }
static inline const int8_t *rc_gx_q(const void *gx, uint64_t nb) { return (const int8_t *)((const int32_t *)gx + 2 * nb); }
/* Prepare vectors [t0, t1) of X [T, in] (in a multiple of 32) into out (vector t at t * rc_gx_stride),
 * each x[cs->cols[i]] multiplied by cs->scales[i] first (the matrix's column scales; cs NULL or n = 0: none),
 * exactly as rc_qx_prepare does. */
void rc_gx_prepare(const float *X, uint64_t in, uint64_t t0, uint64_t t1, const rc_colscale *cs, void *out);
/* The same with q stored as the unsigned bytes xq + 128 (1..255), for the families whose GEMM multiplies unsigned
 * activations by signed weights (rc_kernel_set.gx_u8: AVX2, see matmul_avx2.c); d and corr are the same. */
void rc_gx_prepare_u8(const float *X, uint64_t in, uint64_t t0, uint64_t t1, const rc_colscale *cs, void *out);

#endif
