/* matmul_neon.h: what the two NEON kernel files share (aarch64 only). */
#ifndef RC_MATMUL_NEON_H
#define RC_MATMUL_NEON_H

#include <arm_neon.h>

#include "kernels/matmul.h"
#include "kernels/quant.h"

void rc_neon_rows_f32(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                      uint64_t out);
void rc_neon_rows_f16(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                      uint64_t out);
void rc_neon_rows_q8(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                     uint64_t out);

#endif
