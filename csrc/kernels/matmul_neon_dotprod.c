/* matmul_neon_dotprod.c: the NEON family with the Armv8.2 dot-product extension (sdot: four int8 products
 * summed into each int32 lane), compiled with -march=armv8.2-a+dotprod and used only where the CPU reports
 * it (HWCAP_ASIMDDP). q4: one sdot per 16 bytes of a group chunk (4 blocks x 4 weights); f32, f16 and q8 are
 * the plain NEON kernels. */
#include <arm_neon.h>

#include "kernels/matmul_neon.h"
#include "kernels/quant.h"

static int32x4_t rc_dot4_dotprod(int32x4_t acc, int8x16_t v, int8x16_t x) { return vdotq_s32(acc, v, x); }

static void rc_rows_q4(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out) {
    const uint64_t nb = in / RC_QK, xs = rc_qx_stride(RWKV_DTYPE_Q4, in);
    for (uint64_t o = r0; o < r1; o++) {
        const rc_q4_row r = rc_q4_row_at(W, out, nb, o);
        for (uint64_t t = 0; t < T; t++)
            Y[t * out + o] = rc_neon_row_q4(&r, nb, (const uint8_t *)X + t * xs, rc_dot4_dotprod);
    }
}

const rc_kernel_set rc_kernels_neon_dotprod = {
    .name = "neon-dotprod",
    .rows = {[RWKV_DTYPE_F32] = rc_neon_rows_f32, [RWKV_DTYPE_F16] = rc_neon_rows_f16,
             [RWKV_DTYPE_Q8_0] = rc_neon_rows_q8, [RWKV_DTYPE_Q4] = rc_rows_q4},
};
