/* matmul_neon.h: what the two NEON kernel files share (aarch64 only). */
#ifndef RC_MATMUL_NEON_H
#define RC_MATMUL_NEON_H

#include <arm_neon.h>

#include "kernels/matmul.h"
#include "kernels/quant.h"

/* int32x4 partial sums of one q4 block: codebook values lo (weights 0-15), hi (16-31) times int8 x[32] */
typedef int32x4_t (*rc_neon_block_fn)(int8x16_t lo, int8x16_t hi, const int8_t *x);
float rc_neon_row_q4(const rc_q4_row *r, uint64_t nb, const void *qx, rc_neon_block_fn block);

void rc_neon_rows_f32(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                      uint64_t out);
void rc_neon_rows_f16(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                      uint64_t out);
void rc_neon_rows_q8(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                     uint64_t out);

#endif
