/* quant.h: the quantized weight types q8 and q4, and the int8 activation vectors their kernels read.
 *
 * Both types cut each row of W [out, in] into blocks of RC_QK = 32 weights along the input dimension
 * (in must be a multiple of 32) and give each block an f16 scale d. A row is stored as
 *
 *     [ d: nb x f16 ][ quants of the nb blocks ]                         nb = in / 32
 *
 *   q8: quants are int8, 32 bytes per block, in input order; weight = d * q, q in [-127, 127].
 *       34 bytes per 32 weights (8.5 bits per weight).
 *   q4: quants are 4-bit codes c into a fixed non-uniform codebook, weight = d * rc_q4_values[c]:
 *       16 integers in [-63, 56], denser near zero as trained weights are: the shape of llama.cpp's IQ4_NL
 *       table (MIT) at half its range, with a zero level (0.74 of absmax 4-bit's squared error on Gaussian
 *       blocks; IQ4_NL 0.73). Half range so that a value stored +64 is an unsigned byte <= 120 and u8 x s8
 *       pair sums (vpmaddubsw) cannot saturate: 120 * 127 * 2 < 2^15. (IQ4_NL's own [-127, 113] table
 *       measured 4% lower KL on the tiny model but needs the |w| / sign(x, w) trick on AVX2, measured
 *       20-30% slower there.)
 *       18 bytes per 32 weights (4.5 bits per weight). Codes are packed two per byte in "units" so that
 *       a SIMD kernel gets whole blocks in input order from one AND and one shift:
 *         the row's blocks are grouped into units of 4 blocks while 4 remain, then one unit of 2 if 2
 *         remain, then one unit of 1; a unit of n = 32k weights w[0..n) is 16k bytes, byte i holding
 *         w[i] in its low nibble and w[i + n/2] in its high nibble.
 *       (A 4-block unit is one 64-byte AVX-512 load, or two AVX2 loads whose low nibbles are blocks 0
 *       and 1 and high nibbles blocks 2 and 3.)
 *
 * Matrix-vector products with these types first quantize the activation vector x in the same 32-blocks
 * (rc_qx_*: dx = max|x| / qmax, xq = round-to-nearest-even(x / dx)), once per call, then each row sums
 *     d_w[b] * dx[b] * (sum_j q_w[b][j] * xq[b][j])
 * with exact integer block dot products. q4 uses int8 activations (qmax 127: their error is invisible next
 * to 4-bit weights); q8 uses int16 activations (qmax 32767): int8 ones would double q8's error (measured on
 * the tiny model: KL 5.8e-4 instead of 3.1e-4, top-1 agreement 98.3% instead of 99.1%). Every kernel
 * family reads the same prepared vector, so SIMD and scalar results differ only in float summation order.
 *
 * NaN policy: a non-finite value in x gives its block dx = NaN, so every output of that product is NaN
 * (as a float product would be); weights are finite by construction (the converter refuses NaN/inf). */
#ifndef RC_QUANT_H
#define RC_QUANT_H

#include "core/common.h"

#define RC_QK 32                 /* weights per block */
#define RC_Q8_BLOCK_BYTES 34     /* f16 scale + 32 int8 */
#define RC_Q4_BLOCK_BYTES 18     /* f16 scale + 16 bytes of codes */

/* The q4 codebook, ascending. rc_q4_values_u8 is the same +64 (unsigned, for u8 x s8 dot products). */
extern const int8_t rc_q4_values[16];
extern const uint8_t rc_q4_values_u8[16];

/* Bytes of one row of `in` weights; 0 if in is not a multiple of the block (or the dtype is not q8/q4). */
uint64_t rc_q_row_bytes(uint32_t dtype, uint64_t in);

/* Pointers into one stored row (row = the row's first byte). */
static inline const uint16_t *rc_q_scales(const uint8_t *row) { return (const uint16_t *)(const void *)row; }
static inline const uint8_t *rc_q_quants(const uint8_t *row, uint64_t nb) { return row + 2 * nb; }

/* The q4 unit holding block b of a row with nb blocks: its first block index, its block count (4, 2, 1)
 * and its byte offset inside the quants. */
void rc_q4_unit_of(uint64_t nb, uint64_t b, uint64_t *first, uint64_t *blocks, uint64_t *offset);
/* Unpack the codebook values of block b (32 int8, input order) from a row's quants. */
void rc_q4_block_values(const uint8_t *quants, uint64_t nb, uint64_t b, int8_t out[RC_QK]);

/* ---- quantizing weights (converter) and dequantizing them (embedding rows, tests) ----------------- */
/* One row of `in` floats -> its stored bytes (rc_q_row_bytes). Finite inputs with |x| small enough for an
 * f16 scale are the caller's duty (rwkv_quantize checks them). */
void rc_quantize_row_q8(const float *x, uint64_t in, uint8_t *row);
void rc_quantize_row_q4(const float *x, uint64_t in, uint8_t *row);
void rc_dequantize_row_q8(const uint8_t *row, uint64_t in, float *out);
void rc_dequantize_row_q4(const uint8_t *row, uint64_t in, float *out);

/* ---- the prepared activation vector -----------------------------------------------------------------
 * One vector of `in` floats becomes, at a 64-byte aligned address, for q4 weights:
 *     d[nb]  float   dx per block
 *     s[nb]  float   dx * (sum of the block's xq): lets a kernel that adds 64 to the q4 values (u8 x s8 dot
 *                    products) subtract 64 * d_w * s[b] afterwards
 *     q[in]  int8    xq, input order
 * and for q8 weights:
 *     d[nb]  float   dx per block
 *     q[in]  int16   xq, input order
 * T vectors lie rc_qx_stride(dtype, in) bytes apart. */
uint64_t rc_qx_stride(uint32_t dtype, uint64_t in);
static inline const float *rc_qx_d(const void *qx) { return (const float *)qx; }
static inline const float *rc_qx_s(const void *qx, uint64_t nb) { return (const float *)qx + nb; }
static inline const int8_t *rc_qx_q(const void *qx, uint64_t nb) { return (const int8_t *)((const float *)qx + 2 * nb); }
static inline const int16_t *rc_qx_q16(const void *qx, uint64_t nb) { return (const int16_t *)((const float *)qx + nb); }
/* Prepare T vectors X [T, in] for weights of dtype into out (T * rc_qx_stride bytes, 64-byte aligned). */
void rc_qx_prepare(uint32_t dtype, const float *X, uint64_t in, uint64_t T, void *out);

#endif
