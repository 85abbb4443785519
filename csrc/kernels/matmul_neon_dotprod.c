/* matmul_neon_dotprod.c: the NEON family with the Armv8.2 dot-product extension (sdot: four int8 products
 * summed into each int32 lane), compiled with -march=armv8.2-a+dotprod and used only where the CPU reports
 * it (HWCAP_ASIMDDP). q4: matmul_neon_q4.h with one sdot per 16 bytes of a group chunk (4 blocks x 4 weights);
 * f32, f16 and q8 are the plain NEON kernels. */
#include <arm_neon.h>

#include "kernels/matmul_neon.h"
#include "kernels/quant.h"

#define RC_NEON_DOT4(acc, v, x) vdotq_s32(acc, v, x)
#include "kernels/matmul_neon_q4.h"

const rc_kernel_set rc_kernels_neon_dotprod = {
    .name = "neon-dotprod",
    .rows = {[RWKV_DTYPE_F32] = rc_neon_rows_f32, [RWKV_DTYPE_F16] = rc_neon_rows_f16,
             [RWKV_DTYPE_Q8_0] = rc_neon_rows_q8, [RWKV_DTYPE_Q4] = rc_neon_rows_q4},
};
