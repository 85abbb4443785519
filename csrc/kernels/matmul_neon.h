/* matmul_neon.h: what the two NEON kernel files share (aarch64 only). */
#ifndef RC_MATMUL_NEON_H
#define RC_MATMUL_NEON_H

#include <arm_neon.h>

#include "kernels/matmul.h"
#include "kernels/quant.h"

/* acc lane k += the sum of the 4 products of bytes 4k..4k+3 of v and x (int8): one block's part in the q4
 * group packing (quant.h) */
typedef int32x4_t (*rc_neon_dot4_fn)(int32x4_t acc, int8x16_t v, int8x16_t x);
float rc_neon_row_q4(const rc_q4_row *r, uint64_t nb, const void *qx, rc_neon_dot4_fn dot4);

void rc_neon_rows_f32(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                      uint64_t out);
void rc_neon_rows_f16(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                      uint64_t out);
void rc_neon_rows_q8(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                     uint64_t out);

#endif
