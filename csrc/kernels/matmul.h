/* matmul.h: matrix products with stored weights, the hot loop of every model.
 *
 *   Y[t, o] = sum_i W[o, i] * X[t, i]      W: [out, in] (any matrix dtype), X: [T, in], Y: [T, out]
 *
 * T = 1 is decode (matrix-vector); T > 1 is prompt processing or batched decode (for now each row loops
 * over the T vectors; a GEMM kernel can slot in as another rows function). The work is split by rows of W
 * over the model's thread pool. Kernels for each instruction set live beside this file, one file per ISA
 * compiled with its own flags (matmul_scalar.c is the reference every other kernel is tested against), and
 * are chosen once at run time from the CPU's features, or by RWKV_CPU_KERNEL=scalar|avx2|avx512|neon.
 *
 * q8 / q4 (quant.h): the T activation vectors are first quantized to int8 blocks (rc_qx_prepare), once per
 * call on the calling thread, and the rows functions read that prepared form instead of floats. */
#ifndef RC_MATMUL_H
#define RC_MATMUL_H

#include "core/common.h"
#include "core/threadpool.h"

/* Rows [r0, r1) of W times T vectors: Y[t*out + o] for o in [r0, r1). X is float [T, in] for f32/f16
 * and T prepared vectors (rc_qx_prepare, rc_qx_stride(in) bytes apart) for q8/q4. */
typedef void (*rc_rows_fn)(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T,
                           float *Y, uint64_t out);
/* Dequantize / widen row `row` of W [rows, in] to float. */
typedef void (*rc_row_fn)(const void *W, uint64_t rows, uint64_t in, uint64_t row, float *out);

typedef struct {
    const char *name;
    rc_rows_fn rows[16];   /* by dtype id; NULL = not supported by this kernel family (scalar is used) */
    rc_row_fn row[16];
} rc_kernel_set;

extern const rc_kernel_set rc_kernels_scalar;
extern const rc_kernel_set rc_kernels_avx2;         /* x86-64 only */
extern const rc_kernel_set rc_kernels_avx512;       /* x86-64 only */
extern const rc_kernel_set rc_kernels_neon;         /* aarch64 only */
extern const rc_kernel_set rc_kernels_neon_dotprod; /* aarch64 only */

/* The kernel set in use: the best this CPU supports, or RWKV_CPU_KERNEL=scalar|avx2|avx512|neon. */
const rc_kernel_set *rc_kernels(void);
/* A kernel set by name ("scalar", "avx2", "avx512", "neon", "neon-dotprod"), or NULL with an error set if
 * it is not built for this architecture or the CPU lacks what it needs. */
const rc_kernel_set *rc_kernels_by_name(const char *name);

void rc_matmul(rc_pool *pool, const rc_tensor *W, const float *X, uint64_t T, float *Y);
/* Same with an explicit kernel set (tests compare sets against the scalar reference). */
void rc_matmul_with(const rc_kernel_set *ks, rc_pool *pool, const rc_tensor *W, const float *X, uint64_t T,
                    float *Y);
void rc_tensor_row(const rc_tensor *W, uint64_t row, float *out);

int rc_matmul_supports(uint32_t dtype);
int rc_matmul_supports_rows(uint32_t dtype);
/* Bytes of one stored row of `in` weights of a matrix dtype; 0 if the dtype or the width does not fit. */
uint64_t rc_row_bytes(uint32_t dtype, uint64_t in);

#endif
