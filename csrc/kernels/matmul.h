/* matmul.h: matrix products with stored weights, the hot loop of every model.
 *
 *   Y[t, o] = sum_i W[o, i] * X[t, i]      W: [out, in] (any matrix dtype), X: [T, in], Y: [T, out]
 *
 * T = 1 is decode (matrix-vector): "rows" functions, each row of W against the vector. T >= RC_GEMM_MIN_T
 * is prompt processing or batched decode: "gemm" functions (gemm.h), which pack a panel of W rows once and
 * multiply it with the T vectors from registers, so the product runs at arithmetic speed, not at the speed
 * of re-reading each row T times. The work is split by rows of W over the model's thread pool. Kernels for each instruction set live beside this file, one file per ISA
 * compiled with its own flags (matmul_scalar.c is the reference every other kernel is tested against), and
 * are chosen once at run time from the CPU's features, or by RWKV_CPU_KERNEL=scalar|avx2|avx512|avx512-amx|neon.
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

/* GEMM: rows [r0, r1) of W times T >= 1 vectors, Y as above. X is T float vectors rc_fx_stride(in) floats apart
 * for f32/f16 (gemm.h) and T GEMM activation vectors (rc_gx_prepare, rc_gx_stride(in) bytes apart) for q8/q4.
 * scratch: RC_GEMM_SCRATCH bytes, 64-byte aligned, this call's own (the packed panel of W). */
typedef void (*rc_gemm_fn)(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T,
                           float *Y, uint64_t out, void *scratch);
#define RC_GEMM_SCRATCH (320u << 10)
/* Products with at least this many vectors take the GEMM path (when the family has a gemm function and sets
 * no other threshold for the dtype: a rows function that keeps a row in registers for several vectors can
 * beat packing for small batches). */
#define RC_GEMM_MIN_T 4

typedef struct {
    const char *name;
    rc_rows_fn rows[16];   /* by dtype id; NULL = not supported by this kernel family (scalar is used) */
    rc_row_fn row[16];
    rc_gemm_fn gemm[16];   /* by dtype id; NULL = T > 1 runs the rows function */
    uint8_t gemm_min_t[16]; /* by dtype id: products of fewer vectors run the rows function (0: RC_GEMM_MIN_T) */
    /* The q4 GEMM activation step (gemm.h, rc_gx_prepare's signature and results, bit for bit); NULL =
     * the portable rc_gx_prepare. */
    void (*gx_prepare)(const float *X, uint64_t in, uint64_t t0, uint64_t t1, const void *cs, void *out);
    /* 1: the q4 GEMM reads its activations as unsigned bytes, rc_gx_prepare_u8 (gx_prepare is then unused). */
    uint8_t gx_u8;
    /* The instruction set the family's CPU check covers, for plain C loops compiled in several copies
     * (ops/wkv.c): RC_ISA_BASE (0, the default), RC_ISA_AVX2, RC_ISA_AVX512. */
    uint8_t isa;
} rc_kernel_set;
#define RC_ISA_BASE 0
#define RC_ISA_AVX2 1
#define RC_ISA_AVX512 2

extern const rc_kernel_set rc_kernels_scalar;
extern const rc_kernel_set rc_kernels_avx2;         /* x86-64 only */
extern const rc_kernel_set rc_kernels_avx2_vnni;    /* x86-64 only: avx2 with AVX-VNNI dot products */
extern const rc_kernel_set rc_kernels_avx512;       /* x86-64 only */
extern const rc_kernel_set rc_kernels_avx512_amx;   /* x86-64 only: avx512 + AMX tiles for q4 batches */
extern const rc_kernel_set rc_kernels_neon;         /* aarch64 only */
extern const rc_kernel_set rc_kernels_neon_dotprod; /* aarch64 only */

/* The kernel set in use: the best this CPU supports, or RWKV_CPU_KERNEL=scalar|avx2|avx2-vnni|avx512|avx512-amx|neon. */
const rc_kernel_set *rc_kernels(void);
/* A kernel set by name ("scalar", "avx2", "avx2-vnni", "avx512", "neon", "neon-dotprod"), or NULL with an error set if
 * it is not built for this architecture or the CPU lacks what it needs. */
const rc_kernel_set *rc_kernels_by_name(const char *name);

void rc_matmul(rc_pool *pool, const rc_tensor *W, const float *X, uint64_t T, float *Y);
/* Same with an explicit kernel set (tests compare sets against the scalar reference). */
void rc_matmul_with(const rc_kernel_set *ks, rc_pool *pool, const rc_tensor *W, const float *X, uint64_t T,
                    float *Y);
/* Which path rc_matmul_with takes: RC_PATH_AUTO (gemm for T >= RC_GEMM_MIN_T when the family has one),
 * or forced, for tests and benchmarks (a forced gemm the family lacks runs its rows). */
enum { RC_PATH_AUTO = 0, RC_PATH_ROWS = 1, RC_PATH_GEMM = 2 };
void rc_matmul_path(const rc_kernel_set *ks, rc_pool *pool, const rc_tensor *W, const float *X, uint64_t T,
                    float *Y, int path);
/* Several independent products of T vectors each, Y_i = W_i X_i (no Y_i may alias another product's X or
 * Y): the same results as rc_matmul on each in turn, but for decode and small batches (the rows path) they run
 * as one job of the pool, so the threads wait once instead of n times. At most RC_MATMUL_MANY_MAX. */
#define RC_MATMUL_MANY_MAX 8
typedef struct {
    const rc_tensor *W;
    const float *X; /* [T, cols(W)] */
    float *Y;       /* [T, rows(W)] */
} rc_matmul_op;
void rc_matmul_many(rc_pool *pool, const rc_matmul_op *ops, int n, uint64_t T);
/* For tests: the rows path's task table for one product of `rows` rows costing `row_bytes` each, on n_threads;
 * returns the number of tasks and sets *covers if they cover [0, rows) in order, in whole 16-row groups but
 * the last, within the table's bound. */
int rc_row_split_check(uint64_t rows, uint64_t row_bytes, int n_threads, int *covers);
void rc_tensor_row(const rc_tensor *W, uint64_t row, float *out);
/* The pool scratch (rc_pool_scratch) that products of T vectors of at most `widest` inputs need. */
uint64_t rc_matmul_scratch(uint64_t widest, uint64_t T, int n_threads);

int rc_matmul_supports(uint32_t dtype);
int rc_matmul_supports_rows(uint32_t dtype);
/* Bytes of one stored row of `in` weights of a matrix dtype; 0 if the dtype or the width does not fit. */
uint64_t rc_row_bytes(uint32_t dtype, uint64_t in);

#endif
