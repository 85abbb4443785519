/* quant.h: the quantized weight types q8 and q4, and the integer activation vectors their kernels read.
 * docs/FILE_FORMAT.md has the byte layouts; this is the short form.
 *
 * Both types cut each row of W [out, in] into blocks of RC_QK = 32 weights along the input dimension.
 *
 *   q8 (in a multiple of 32): a row is  [ d: nb x f16 ][ nb x 32 int8 ]  (nb = in / 32), rows follow each
 *       other; weight = d[b] * q, q in [-127, 127]. 34 bytes per 32 weights: 8.5 bits per weight.
 *
 *   q4 (in a multiple of 32, at least 64): 4-bit codes c into a fixed non-uniform codebook,
 *       weight = d_b * rc_q4_values[c]. The blocks' scales are two-level, as in k-quants: the row's blocks
 *       form super-blocks of 8 (the last one may be shorter), each with an f16 scale D, and each block has
 *       an int8 scale s:   d_b = D[b / 8] * s[b] / 128    (exact in float: 11 x 7 significant bits).
 *       The tensor is three arrays one after the other ("structure of arrays"), each indexed by row:
 *           codes [out][nb * 16]  u8     two codes per byte, packed in groups (below)     offset 0
 *           D     [out][nsb]      f16    nsb = ceil(nb / 8)                                out * 16 nb
 *           s     [out][nb]       int8                                                      out * (16 nb + 2 nsb)
 *       so one row costs 17 nb + 2 nsb bytes: 4.25 + nsb / (2 nb) bits per weight, <= 4.5 for every nb >= 2
 *       (4.3125 for whole super-blocks). Codes of a row start at a multiple of 64 bytes whenever nb is a
 *       multiple of 4 (in % 128 == 0), and never share a line with the scales.
 *       Codebook: 16 integers in [-63, 56], denser near zero as trained weights are: the shape of llama.cpp's
 *       IQ4_NL table (MIT) at half its range, with a zero level. Half range so that a value stored +64 is an
 *       unsigned byte <= 120 and u8 x s8 pair sums (vpmaddubsw) cannot saturate: 120 * 127 * 2 < 2^15.
 *       Code packing ("groups", made for dot-product instructions that sum 4 byte products per 32-bit lane):
 *       a row's blocks form groups of 16 (the last group of a row holds the nb % 16 left, if any). A group
 *       of n blocks is 16 n bytes in 4 chunks of 4 n bytes; chunk m holds weights 8m .. 8m+7 of every block:
 *           byte 4n m + 4k + i  =  code of weight 8m + i of block k (low nibble)
 *                                | code of weight 8m + 4 + i of block k << 4 (high nibble),   i = 0..3
 *       so a 64-byte load (one chunk of a whole group) gives, after AND / shift and a table lookup, one
 *       32-bit lane per block (4 weights each): the dot products of 16 blocks accumulate in the 16 lanes of
 *       one register and take one conversion and one multiply by their scales per 512 weights.
 *
 * Column scales (both types, optional, docs/FILE_FORMAT.md "Column scales"): a few input columns whose
 * weights are many times larger than the rest are stored divided by a factor c_k, and the activation is
 * multiplied by c_k instead, before it is quantized: W x = (W / c)(c x).
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
#define RC_Q4_SUPER 8            /* q4 blocks per super-block (one f16 D each) */
#define RC_Q4_MIN_BLOCKS 2       /* q4 rows hold at least 2 blocks: one block alone would cost 4.75 bits */

/* The q4 codebook, ascending. rc_q4_values_u8 is the same +64 (unsigned, for u8 x s8 dot products). */
extern const int8_t rc_q4_values[16];
extern const uint8_t rc_q4_values_u8[16];

/* Bytes per row of `in` weights (for q4 an average: its rows are spread over three arrays, but the tensor
 * is exactly out times this); 0 if the dtype cannot hold rows of `in` (or is not q8/q4). */
uint64_t rc_q_row_bytes(uint32_t dtype, uint64_t in);

/* q8: pointers into one stored row (row = the row's first byte). */
static inline const uint16_t *rc_q_scales(const uint8_t *row) { return (const uint16_t *)(const void *)row; }
static inline const uint8_t *rc_q_quants(const uint8_t *row, uint64_t nb) { return row + 2 * nb; }

/* q4: row o of a tensor W [out, in], nb = in / 32 blocks:
 *     codes  nb * 16 bytes (groups, above)
 *     D      nsb f16 super-block scales (nsb = rc_q4_supers(nb))
 *     s      nb int8 block scales:  d_b = D[b / 8] * s[b] / 128 (rc_q4_scale) */
typedef struct {
    const uint8_t *codes;
    const uint16_t *D;
    const int8_t *s;
} rc_q4_row;

static inline uint64_t rc_q4_supers(uint64_t nb) { return (nb + RC_Q4_SUPER - 1) / RC_Q4_SUPER; }

static inline rc_q4_row rc_q4_row_at(const void *W, uint64_t out, uint64_t nb, uint64_t o) {
    const uint8_t *base = (const uint8_t *)W;
    const uint64_t nsb = rc_q4_supers(nb);
    rc_q4_row r;
    r.codes = base + o * nb * 16;
    r.D = (const uint16_t *)(const void *)(base + out * nb * 16) + o * nsb;
    r.s = (const int8_t *)(base + out * (nb * 16 + nsb * 2)) + o * nb;
    return r;
}

/* The scale of block b: exact in float (an f16 times an int8 times 2^-7), so every kernel gets the same. */
static inline float rc_q4_scale(const rc_q4_row *r, uint64_t b) {
    return rc_f16_to_f32(r->D[b / RC_Q4_SUPER]) * (float)r->s[b] * 0.0078125f;
}

#define RC_Q4_GROUP 16 /* blocks per group of the code packing */

/* Blocks in the group holding block b of a row of nb blocks (16, or the last group's nb % 16). */
static inline uint64_t rc_q4_group_blocks(uint64_t nb, uint64_t b) {
    uint64_t first = b / RC_Q4_GROUP * RC_Q4_GROUP;
    return nb - first < RC_Q4_GROUP ? nb - first : RC_Q4_GROUP;
}
/* Byte of weight j of block k inside its group of n blocks (relative to the group's first code byte): low
 * nibble when (j / 4) % 2 == 0, high nibble otherwise (quant.h's packing). */
static inline uint64_t rc_q4_pos(uint64_t n, uint64_t k, uint64_t j) { return (j / 8) * 4 * n + 4 * k + j % 4; }
/* Unpack the codebook values of block b (32 int8, input order) from a row's codes. */
void rc_q4_block_values(const uint8_t *codes, uint64_t nb, uint64_t b, int8_t out[RC_QK]);

/* ---- quantizing weights (converter) and dequantizing them (embedding rows, tests) ----------------- */
/* Rows [0, n_rows) of `in` floats -> the stored tensor of n_rows rows (n_rows * rc_q_row_bytes bytes).
 * Finite inputs with |x| small enough for f16 scales are the caller's duty (rwkv_quantize checks them). */
void rc_quantize_q8(const float *x, uint64_t n_rows, uint64_t in, uint8_t *dst);
void rc_quantize_q4(const float *x, uint64_t n_rows, uint64_t in, uint8_t *dst);
/* q4 with the copy built for an instruction set chosen by the caller (RC_ISA_*: the baseline copy, 4 trials per
 * vector, or AVX2's, 8), and the one-trial-at-a-time reference (tests: all give the same bytes) */
void rc_quantize_q4_isa(int isa, const float *x, uint64_t n_rows, uint64_t in, uint8_t *dst);
void rc_quantize_q4_ref(const float *x, uint64_t n_rows, uint64_t in, uint8_t *dst);
/* Row o of a stored tensor of n_rows rows -> `in` floats. */
void rc_dequantize_row_q8(const uint8_t *W, uint64_t n_rows, uint64_t in, uint64_t o, float *out);
void rc_dequantize_row_q4(const uint8_t *W, uint64_t n_rows, uint64_t in, uint64_t o, float *out);

/* ---- the prepared activation vector -----------------------------------------------------------------
 * One vector of `in` floats becomes, at a 64-byte aligned address, for q4 weights:
 *     d[nb]  float   dx per block
 *     s[nb]  float   dx * (sum of the block's xq): lets a kernel that adds 64 to the q4 values (u8 x s8 dot
 *                    products) subtract 64 * d_w * s[b] afterwards
 *     q[in]  int8    xq in the q4 group order: group by group (16 blocks, the last one nb % 16), as the codes
 *                    are packed, each chunk m of 4 n code bytes facing 8 n activations: the 4 n that meet
 *                    its low nibbles, then the 4 n that meet its high nibbles. So x of weight j of block k
 *                    of a group of n blocks starting at block g is at 32 g + 8 n (j / 8) + 4 n ((j / 4) % 2)
 *                    + 4 k + j % 4 (rc_qx_q4_index).
 *     z[nb]  int32   -64 * (sum of the block's xq): the same correction in integers, for a kernel that starts
 *                    its block sums there (so they come out as the exact sum v x; rc_rows_q4_batch)
 * and for q8 weights:
 *     d[nb]  float   dx per block
 *     q[in]  int16   xq, input order
 * T vectors lie rc_qx_stride(dtype, in) bytes apart. */
uint64_t rc_qx_stride(uint32_t dtype, uint64_t in);
static inline const float *rc_qx_d(const void *qx) { return (const float *)qx; }
static inline const float *rc_qx_s(const void *qx, uint64_t nb) { return (const float *)qx + nb; }
static inline const int8_t *rc_qx_q(const void *qx, uint64_t nb) { return (const int8_t *)((const float *)qx + 2 * nb); }
static inline const int32_t *rc_qx_z(const void *qx, uint64_t nb) {
    return (const int32_t *)((const int8_t *)qx + 8 * nb + RC_QK * nb);
}
static inline const int16_t *rc_qx_q16(const void *qx, uint64_t nb) { return (const int16_t *)((const float *)qx + nb); }
/* Index in q (q4's prepared vector) of the activation of weight j of block b, nb blocks per row. */
static inline uint64_t rc_qx_q4_index(uint64_t nb, uint64_t b, uint64_t j) {
    const uint64_t g = b / RC_Q4_GROUP * RC_Q4_GROUP, n = rc_q4_group_blocks(nb, b);
    return 32 * g + 8 * n * (j / 8) + 4 * n * ((j / 4) % 2) + 4 * (b - g) + j % 4;
}
/* Column scales of a matrix (rc_tensor's): x[cols[i]] is multiplied by scales[i] before it is quantized. */
typedef struct {
    uint32_t n;
    const float *cols;   /* [n] column indices, increasing, as exact floats */
    const float *scales; /* [n] */
} rc_colscale;

/* Prepare T vectors X [T, in] for weights of dtype into out (T * rc_qx_stride bytes, 64-byte aligned),
 * applying the column scales cs (NULL or n = 0: none). */
void rc_qx_prepare(uint32_t dtype, const float *X, uint64_t in, uint64_t T, const rc_colscale *cs, void *out);
/* The same with the copy compiled for an instruction set chosen by the caller (RC_ISA_*, matmul.h; the baseline
 * where the build has none), for tests: every copy's output is bit-identical. */
void rc_qx_prepare_isa(int isa, uint32_t dtype, const float *X, uint64_t in, uint64_t T, const rc_colscale *cs,
                       void *out);

#endif
