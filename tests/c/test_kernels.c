/* test_kernels.c: every kernel family built into this program against the scalar reference, on random
 * data of many shapes, with no Python: it runs where pytest cannot (aarch64 under qemu-user) and on a
 * second build of the AVX-512 kernels against SIMDe and of the avx2-vnni family with its two VNNI instructions
 * emulated in AVX2 (RC_TEST_SIMDE). Families this CPU cannot run are
 * reported and left out. Prints "N passed, N failed" and exits non-zero on any failure.
 *
 * Checks per family and dtype (f32, f16, q8, q4): shapes with odd sizes, widths not a multiple of 8/16 for
 * floats and 1..40 blocks for q8/q4 (q4 from 2: whole and short groups and super-blocks), T = 1 and 3; one row;
 * zero input -> zero output;
 * huge finite inputs stay finite and accurate; NaN / inf input -> non-finite outputs (the NaN policy); q8/q4
 * with column scales against the float product of the real weights. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/cpu.h"
#include "core/threadpool.h"
#include "kernels/gemm.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "ops/ops.h"
#include "ops/wkv.h"

#ifdef RC_TEST_SIMDE
extern const rc_kernel_set rc_kernels_avx512_simde;
extern const rc_kernel_set rc_kernels_avx2_vnni_emu; /* the avx2-vnni family, VNNI written in AVX2 (vnni_emu.h) */
#endif

static int n_pass, n_fail;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float frand(void) { /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static float gauss(void) { return frand() + frand() + frand(); }

static void check(int ok, const char *family, const char *what, uint32_t dtype, uint64_t rows, uint64_t cols) {
    if (ok) { n_pass++; return; }
    n_fail++;
    printf("FAIL %s %s %s rows %llu cols %llu\n", family, rwkv_dtype_name(dtype), what, (unsigned long long)rows,
           (unsigned long long)cols);
}

/* W [rows, cols] random, stored as dtype */
static void *make_w(uint32_t dtype, uint64_t rows, uint64_t cols, float *wf) {
    uint64_t rb = rc_row_bytes(dtype, cols);
    void *w = malloc(rb * rows);
    for (uint64_t i = 0; i < rows * cols; i++) wf[i] = gauss() * 0.05f;
    if (rwkv_quantize(dtype, wf, rows, cols, w, rb * rows) != RWKV_OK) {
        printf("quantize failed: %s\n", rwkv_last_error());
        exit(2);
    }
    rwkv_dequantize(dtype, w, rows, cols, wf); /* wf = the values W stands for */
    return w;
}

/* ks against the scalar reference on one shape; path: RC_PATH_ROWS or RC_PATH_GEMM (both sides take it);
 * pool: NULL (the calling thread) or a pool, to split the rows into tasks. */
static void compare_ref(const rc_kernel_set *ks, uint32_t dtype, uint64_t rows, uint64_t cols, uint64_t T, int special,
                        int path, rc_pool *pool, int ref_path) {
    float *wf = malloc(rows * cols * sizeof(float));
    void *w = make_w(dtype, rows, cols, wf);
    float *x = malloc(T * cols * sizeof(float));
    float *y0 = malloc(T * rows * sizeof(float)), *y1 = malloc(T * rows * sizeof(float));
    for (uint64_t i = 0; i < T * cols; i++) x[i] = gauss();
    if (special == 1) for (uint64_t i = 0; i < T * cols; i++) x[i] = 0;
    if (special == 2) for (uint64_t i = 0; i < T * cols; i++) x[i] *= 1e15f;
    if (special == 3) x[cols / 2] = NAN;
    if (special == 4) x[cols - 1] = -INFINITY;
    rc_tensor t = {"W", dtype, 2, {rows, cols, 0, 0}, rows * cols, rc_row_bytes(dtype, cols) * rows, w, 0, NULL, NULL};
    for (uint64_t i = 0; i < T * rows; i++) y0[i] = y1[i] = 12345.0f;
    rc_matmul_path(&rc_kernels_scalar, NULL, &t, x, T, y0, ref_path);
    rc_matmul_path(ks, pool, &t, x, T, y1, path);
    int ok = 1;
    for (uint64_t tt = 0; tt < T && ok; tt++) {
        for (uint64_t o = 0; o < rows && ok; o++) {
            double mag = 0;
            for (uint64_t i = 0; i < cols; i++) mag += fabs((double)wf[o * cols + i] * x[tt * cols + i]);
            float a = y0[tt * rows + o], b = y1[tt * rows + o];
            if (special == 1) ok = a == 0 && b == 0;
            else if (special >= 3) ok = tt > 0 ? isfinite(b) : (!isfinite(b) || mag == 0 || isnan(mag));
            else ok = isfinite(b) && fabs((double)a - b) <= 3e-5 * mag + 1e-30;
            if (special >= 3 && tt == 0) {
                /* every row with a non-zero weight must be non-finite */
                int nonzero = 0;
                for (uint64_t i = 0; i < cols; i++) nonzero |= wf[o * cols + i] != 0;
                ok = !nonzero || !isfinite(b);
            }
        }
    }
    static const char *what[2][5] = {{"random", "zeros", "huge", "nan", "inf"},
                                     {"gemm random", "gemm zeros", "gemm huge", "gemm nan", "gemm inf"}};
    check(ok, ks->name, ref_path != path ? "gemm against the rows path" : what[path == RC_PATH_GEMM][special], dtype, rows, cols);
    if (!ok) printf("     (T = %llu)\n", (unsigned long long)T);
    free(wf); free(w); free(x); free(y0); free(y1);
}

static void compare_on(const rc_kernel_set *ks, uint32_t dtype, uint64_t rows, uint64_t cols, uint64_t T, int special,
                       int path, rc_pool *pool) {
    compare_ref(ks, dtype, rows, cols, T, special, path, pool, path);
}

static void compare(const rc_kernel_set *ks, uint32_t dtype, uint64_t rows, uint64_t cols, uint64_t T, int special) {
    compare_on(ks, dtype, rows, cols, T, special, RC_PATH_ROWS, NULL);
}

/* The GEMM path (gemm.h), where the family has one for dtype: panels of 32 rows cut anywhere (1, 31, 33,
 * 100 rows), vector groups cut anywhere (T = 1 .. 25 across the 6 / 12 register blocks), input slices
 * (512 floats, 1024 / 2048 quantized inputs) cut anywhere, and a pool of 2 threads splitting the rows. */
static void test_gemm(const rc_kernel_set *ks, uint32_t dtype) {
    if (!ks->gemm[dtype]) return;
    const int quant = dtype >= RWKV_DTYPE_Q8_0;
    static const uint64_t rows_list[] = {1, 17, 31, 32, 33, 100};
    static const uint64_t T_list[] = {1, 4, 6, 7, 12, 13, 25};
    static const uint64_t fcols[] = {1, 7, 64, 300, 513, 1100};
    /* q4 rows hold at least 2 blocks; 16-block code groups whole, cut, and several (quant.h) */
    static const uint64_t qblocks[] = {2, 3, 5, 15, 16, 17, 33, 64, 65, 70};
    const int ncols = quant ? 10 : 6;
    int i = 0;
    for (int c = 0; c < ncols; c++) {
        const uint64_t cols = quant ? qblocks[c] * RC_QK : fcols[c];
        for (int r = 0; r < 6; r++, i++) compare_on(ks, dtype, rows_list[r], cols, T_list[i % 7], 0, RC_PATH_GEMM, NULL);
    }
    for (int special = 1; special <= 4; special++)
        compare_on(ks, dtype, 33, quant ? 11 * RC_QK : 357, 7, special, RC_PATH_GEMM, NULL);
    /* against the scalar rows path, which takes the vectors as given (the float GEMM reads a copy with padded rows,
     * gemm.h: widths with and without the padding) */
    compare_ref(ks, dtype, 19, quant ? 32 * RC_QK : 1024, 13, 0, RC_PATH_GEMM, NULL, RC_PATH_ROWS);
    compare_ref(ks, dtype, 19, quant ? 37 * RC_QK : 520, 13, 0, RC_PATH_GEMM, NULL, RC_PATH_ROWS);
    rc_pool *pool = rc_pool_new(2);
    if (pool) {
        compare_on(ks, dtype, 300, quant ? 96 * RC_QK : 1024, 13, 0, RC_PATH_GEMM, pool);
        compare_on(ks, dtype, 77, quant ? 130 * RC_QK : 2100, 8, 0, RC_PATH_GEMM, pool);
        rc_pool_free(pool);
    }
}

/* A family's own q4 GEMM activation step must give rc_gx_prepare's bytes exactly: values on rounding ties
 * (k + 0.5 steps), zeros, huge values, a NaN and an infinity in their blocks. */
static void test_gx_prepare(const rc_kernel_set *ks) {
    if (!ks->gx_prepare) return;
    const uint64_t in = 40 * RC_QK, T = 5, stride = rc_gx_stride(in);
    float *x = malloc(T * in * sizeof(float));
    uint8_t *a = calloc(T, stride), *b = calloc(T, stride);
    for (uint64_t i = 0; i < T * in; i++) x[i] = gauss() * (i % 97 == 0 ? 1e4f : 1.0f);
    for (uint64_t i = 0; i < in; i++) x[in + i] = (float)((int)(i % 255) - 127) * 0.5f; /* ties */
    for (uint64_t i = 0; i < RC_QK; i++) x[2 * in + i] = 0;                            /* a zero block */
    x[2 * in + 40] = 3e30f;
    x[3 * in + 70] = NAN;
    x[4 * in + 100] = -INFINITY;
    for (uint64_t i = 0; i < RC_QK; i++) x[4 * in + 5 * RC_QK + i] = i % 3 ? 1e-38f * (float)(i % 5) : 0; /* 1 / d = inf */
    rc_gx_prepare(x, in, 0, T, NULL, a);
    ks->gx_prepare(x, in, 0, T, NULL, b);
    int ok = 1;
    for (uint64_t t = 0; t < T; t++) {
        const float *da = rc_gx_d(a + t * stride), *db = rc_gx_d(b + t * stride);
        for (uint64_t k = 0; k < in / RC_QK; k++) ok &= (isnan(da[k]) && isnan(db[k])) || da[k] == db[k];
        ok &= memcmp(a + t * stride + in / RC_QK * 4, b + t * stride + in / RC_QK * 4, in / RC_QK * 4 + in) == 0;
    }
    check(ok, ks->name, "gx_prepare", RWKV_DTYPE_Q4, T, in);
    free(x); free(a); free(b);
}

/* The GEMM activations hold the decode path's integers (gemm.h): rc_gx_prepare's q (input order) and scales equal
 * rc_qx_prepare's for q4 (group order), corr = 2 z, also for column scales, zero, NaN and tiny blocks (whose 1 / d
 * is infinite); rc_gx_prepare_u8 stores q + 128 and the same scales. */
static void test_gx_same_integers(void) {
    const uint64_t in = 37 * RC_QK, nb = in / RC_QK, T = 3, gs = rc_gx_stride(in), qs = rc_qx_stride(RWKV_DTYPE_Q4, in);
    float *x = malloc(T * in * sizeof(float));
    uint8_t *g = calloc(T, gs), *g8 = calloc(T, gs), *q = calloc(T, qs);
    for (uint64_t i = 0; i < T * in; i++) x[i] = gauss() * (i % 89 == 0 ? 300.0f : 1.0f);
    for (uint64_t i = 0; i < RC_QK; i++) {
        x[3 * RC_QK + i] = 0;                                               /* a zero block */
        x[in + 7 * RC_QK + i] = i % 3 ? 1e-38f * (float)(i % 5) : 0;         /* 1 / d = inf */
        x[2 * in + 9 * RC_QK + i] = (float)((int)i - 16) * 0.5f;            /* ties */
    }
    x[in + 50] = NAN;
    static const float cols[2] = {5, 700}, scales[2] = {3.5f, 0.25f};
    const rc_colscale cs = {2, cols, scales};
    int ok = 1;
    for (int c = 0; c < 2; c++) {
        const rc_colscale *csp = c ? &cs : NULL;
        rc_gx_prepare(x, in, 0, T, csp, g);
        rc_gx_prepare_u8(x, in, 0, T, csp, g8);
        rc_qx_prepare(RWKV_DTYPE_Q4, x, in, T, csp, q);
        for (uint64_t t = 0; t < T; t++) {
            const uint8_t *gt = g + t * gs, *g8t = g8 + t * gs, *qt = q + t * qs;
            for (uint64_t b = 0; b < nb; b++) {
                const float dg = rc_gx_d(gt)[b], dq = rc_qx_d(qt)[b], d8 = rc_gx_d(g8t)[b];
                ok &= (isnan(dg) && isnan(dq) && isnan(d8)) || (dg == dq && d8 == dg);
                ok &= rc_gx_corr(gt, nb)[b] == 2 * rc_qx_z(qt, nb)[b] && rc_gx_corr(g8t, nb)[b] == rc_gx_corr(gt, nb)[b];
                for (uint64_t j = 0; j < RC_QK; j++) {
                    const int8_t v = rc_gx_q(gt, nb)[b * RC_QK + j];
                    ok &= v == rc_qx_q(qt, nb)[rc_qx_q4_index(nb, b, j)];
                    ok &= (uint8_t)rc_gx_q(g8t, nb)[b * RC_QK + j] == (uint8_t)(v + 128);
                }
            }
        }
    }
    check(ok, "portable", "gx = qx integers", RWKV_DTYPE_Q4, T, in);
    free(x); free(g); free(g8); free(q);
}

/* Column scales (quant.h): W stored with 3 columns divided by c, the product must equal the float product with
 * the real weights (stored * c), for the scalar reference and the family alike (rc_qx_prepare applies them). */
static void compare_colscale(const rc_kernel_set *ks, uint32_t dtype, uint64_t rows, uint64_t cols, uint64_t T, int path) {
    float *wf = malloc(rows * cols * sizeof(float));
    void *w = make_w(dtype, rows, cols, wf);
    const float ccols[3] = {0.0f, (float)(cols / 2 + 1), (float)(cols - 1)}, cscale[3] = {40.0f, 0.25f, 7.5f};
    rc_tensor t = {"W", dtype, 2, {rows, cols, 0, 0}, rows * cols, rc_row_bytes(dtype, cols) * rows, w, 3, ccols, cscale};
    float *x = malloc(T * cols * sizeof(float)), *y0 = malloc(T * rows * sizeof(float)), *y1 = malloc(T * rows * sizeof(float));
    for (uint64_t i = 0; i < T * cols; i++) x[i] = gauss();
    rc_matmul_path(&rc_kernels_scalar, NULL, &t, x, T, y0, path);
    rc_matmul_path(ks, NULL, &t, x, T, y1, path);
    int ok = 1;
    float *row = malloc(cols * sizeof(float));
    for (uint64_t o = 0; o < rows && ok; o++) {
        rc_tensor_row(&t, o, row); /* the real weights: stored * scale in the scaled columns */
        for (int k = 0; k < 3; k++)
            ok &= row[(uint64_t)ccols[k]] == wf[o * cols + (uint64_t)ccols[k]] * cscale[k];
        for (uint64_t tt = 0; tt < T && ok; tt++) {
            /* the activation rounding bound: stored weight (row / c) times half a step of the scaled
             * activation's block (max |x c| / 127 for q4, / 32767 for q8) */
            const double qmax = dtype == RWKV_DTYPE_Q4 ? 127.0 : 32767.0;
            double want = 0, mag = 0, bound = 0;
            for (uint64_t b = 0; b < cols / RC_QK; b++) {
                double bmax = 0;
                for (uint64_t i = b * RC_QK; i < (b + 1) * RC_QK; i++) {
                    double c = 1;
                    for (int k = 0; k < 3; k++) c = i == (uint64_t)ccols[k] ? cscale[k] : c;
                    bmax = fmax(bmax, fabs((double)x[tt * cols + i] * c));
                }
                for (uint64_t i = b * RC_QK; i < (b + 1) * RC_QK; i++) {
                    double c = 1;
                    for (int k = 0; k < 3; k++) c = i == (uint64_t)ccols[k] ? cscale[k] : c;
                    want += (double)row[i] * x[tt * cols + i];
                    mag += fabs((double)row[i] * x[tt * cols + i]);
                    bound += fabs((double)row[i] / c) * bmax / qmax / 2;
                }
            }
            const float a = y0[tt * rows + o], b = y1[tt * rows + o];
            /* family = scalar up to float order; scalar = float product up to the activation rounding */
            ok = fabs((double)a - b) <= 3e-5 * mag + 1e-30 && fabs(a - want) <= bound * 1.001 + 3e-5 * mag;
        }
    }
    check(ok, ks->name, path == RC_PATH_GEMM ? "gemm column scales" : "column scales", dtype, rows, cols);
    free(row); free(wf); free(w); free(x); free(y0); free(y1);
}

/* The rows function alone on rows [r0, r1) of W [rows, cols] (cut anywhere, as a caller other than the pool's
 * 16-row split may cut them): against the scalar rows function, and nothing written outside those rows. */
static void compare_range(const rc_kernel_set *ks, uint32_t dtype, uint64_t rows, uint64_t cols, uint64_t r0,
                          uint64_t r1, uint64_t T) {
    float *wf = malloc(rows * cols * sizeof(float)), *x = malloc(T * cols * sizeof(float));
    float *y0 = malloc(T * rows * sizeof(float)), *y1 = malloc(T * rows * sizeof(float));
    void *w = make_w(dtype, rows, cols, wf);
    for (uint64_t i = 0; i < T * cols; i++) x[i] = gauss();
    for (uint64_t i = 0; i < T * rows; i++) y0[i] = y1[i] = 12345.0f;
    rc_kernels_scalar.rows[dtype](w, cols, r0, r1, x, T, y0, rows);
    ks->rows[dtype](w, cols, r0, r1, x, T, y1, rows);
    int ok = 1;
    for (uint64_t tt = 0; tt < T; tt++)
        for (uint64_t o = 0; o < rows; o++) {
            const float a = y0[tt * rows + o], b = y1[tt * rows + o];
            if (o < r0 || o >= r1) { ok &= b == 12345.0f; continue; }
            double mag = 0;
            for (uint64_t i = 0; i < cols; i++) mag += fabs((double)wf[o * cols + i] * x[tt * cols + i]);
            ok &= isfinite(b) && fabs((double)a - b) <= 3e-5 * mag + 1e-30;
        }
    check(ok, ks->name, "rows [r0, r1)", dtype, rows, cols);
    if (!ok) printf("     (r0 %llu r1 %llu T %llu)\n", (unsigned long long)r0, (unsigned long long)r1, (unsigned long long)T);
    free(wf); free(x); free(y0); free(y1); free(w);
}

/* Short rows (the LoRA products' second halves, [2048, 32..128]: the AVX-512 / AVX2 / NEON rows functions do
 * 16 / 8 / 4 such rows per reduction): widths around the block sizes and up to past the short-row bound,
 * row counts around the group sizes, T = 1 and 3, rows cut anywhere, zeros and huge values. */
static void test_short_rows(const rc_kernel_set *ks, uint32_t dtype) {
    static const uint64_t ins[] = {1, 4, 9, 17, 32, 48, 64, 96, 100, 128, 160, 255, 256, 257, 300};
    static const uint64_t rows_list[] = {1, 3, 15, 16, 17, 33, 2048};
    for (int c = 0; c < 15; c++)
        for (int r = 0; r < 7; r++) compare(ks, dtype, rows_list[r], ins[c], (c + r) % 2 ? 3 : 1, 0);
    static const uint64_t cuts[][2] = {{0, 1}, {3, 20}, {5, 6}, {7, 40}, {16, 33}, {17, 50}, {31, 64}, {1, 63}};
    for (int c = 0; c < 15; c++)
        for (int k = 0; k < 8; k++) compare_range(ks, dtype, 64, ins[c], cuts[k][0], cuts[k][1], k % 3 ? 1 : 2);
    for (int special = 1; special <= 4; special++) compare(ks, dtype, 37, 64, 2, special);
}

/* Small batches through the rows functions (batched decode: B sequences, one token each): every q4 rows
 * function that takes several vectors (avx512 up to 8 per pass, avx512-amx 8 or 16 per tile pass) on rows
 * cut anywhere around the 16-row panels (1, 15-17, 31, 33, 100), 2 to 70 blocks (whole and short code groups,
 * short super-blocks), T = 2 .. 40 (across the 8 / 16 vector tiles and their remainders), and a pool of 2
 * threads splitting the rows into tasks. */
static void test_small_batches(const rc_kernel_set *ks) {
    static const uint64_t rows_list[] = {1, 15, 16, 17, 31, 33, 100};
    static const uint64_t blocks[] = {2, 3, 9, 15, 16, 17, 31, 33, 64, 70};
    static const uint64_t T_list[] = {2, 3, 5, 7, 8, 9, 12, 15, 16, 17, 23, 40};
    /* every SIMD family has small-batch rows functions for every dtype (f32 / f16: 16-row tiles x 1024-input
     * slices x groups of vectors) */
    static const uint32_t dtypes[] = {RWKV_DTYPE_Q4, RWKV_DTYPE_Q8_0, RWKV_DTYPE_F32, RWKV_DTYPE_F16};
    for (int d = 0; d < 4; d++) {
        const uint32_t dt = dtypes[d];
        const int quant = dt >= RWKV_DTYPE_Q8_0;
        int i = 0;
        for (int c = 0; c < 10; c++) /* float rows: 64 .. 2242 inputs, across the slices, with odd tails */
            for (int r = 0; r < 7; r++, i++) {
                if (!quant && r == 6) continue; /* floats: up to 33 rows (two tiles and one), which keeps qemu short */
                compare_on(ks, dt, rows_list[r], blocks[c] * RC_QK + (quant ? 0 : (uint64_t)(c % 3)), T_list[i % 12], 0,
                           RC_PATH_ROWS, NULL);
            }
        for (int special = 1; special <= 4; special++) {
            compare_on(ks, dt, 21, 19 * RC_QK, 8, special, RC_PATH_ROWS, NULL);
            compare_on(ks, dt, 18, 35 * RC_QK, 13, special, RC_PATH_ROWS, NULL);
        }
        if (quant) { /* rows longer than 4096 inputs (AVX-512 q4: tiles of 16 rows x slices of 128 blocks) */
            static const uint64_t long_rows[] = {1, 15, 17, 33}, long_blocks[] = {129, 161, 272};
            static const uint64_t long_T[] = {2, 5, 8, 3, 9, 16, 4};
            int k = 0;
            for (int r = 0; r < 4; r++)
                for (int c = 0; c < 3; c++, k++)
                    compare_on(ks, dt, long_rows[r], long_blocks[c] * RC_QK, long_T[k % 7], 0, RC_PATH_ROWS, NULL);
            compare_on(ks, dt, 19, 200 * RC_QK, 8, 3, RC_PATH_ROWS, NULL); /* NaN / inf in a later slice */
        }
        rc_pool *pool = rc_pool_new(2);
        if (pool) {
            compare_on(ks, dt, 300, 96 * RC_QK, 8, 0, RC_PATH_ROWS, pool);
            compare_on(ks, dt, 133, 130 * RC_QK, 16, 0, RC_PATH_ROWS, pool);
            compare_on(ks, dt, 77, 40 * RC_QK, 5, 0, RC_PATH_AUTO, pool);
            rc_pool_free(pool);
        }
    }
}

/* The NEON families' rows functions do the same operations in the same order for every number of vectors
 * (KERNELS.md, "Several vectors on NEON"): a vector's outputs from a product of T vectors equal, bit for bit,
 * those of a product of that vector alone. Rows cut around the 16-row tiles, T across the 4- and 8-vector
 * groups, short last groups of q4 blocks, float rows with 4-wide and single tails, and short float rows. */
static void test_batch_independent(const rc_kernel_set *ks) {
    static const uint32_t dtypes[] = {RWKV_DTYPE_Q4, RWKV_DTYPE_Q8_0, RWKV_DTYPE_F32, RWKV_DTYPE_F16};
    static const uint64_t shapes[][3] = {{37, 19, 11}, {16, 40, 8}, {17, 33, 17}, {5, 2, 3}};
    for (int d = 0; d < 4; d++)
        for (int k = 0; k < 4; k++) {
            const int quant = dtypes[d] >= RWKV_DTYPE_Q8_0;
            const uint64_t rows = shapes[k][0], cols = shapes[k][1] * RC_QK + (quant ? 0 : 4 * k + 3), T = shapes[k][2];
            float *wf = malloc(rows * cols * sizeof(float)), *x = malloc(T * cols * sizeof(float));
            float *yb = malloc(T * rows * sizeof(float)), *y1 = malloc(T * rows * sizeof(float));
            void *w = make_w(dtypes[d], rows, cols, wf);
            for (uint64_t i = 0; i < T * cols; i++) x[i] = gauss();
            rc_tensor t = {"W", dtypes[d], 2, {rows, cols, 0, 0}, rows * cols, rc_row_bytes(dtypes[d], cols) * rows, w, 0,
                           NULL, NULL};
            rc_matmul_path(ks, NULL, &t, x, T, yb, RC_PATH_ROWS);
            for (uint64_t v = 0; v < T; v++) rc_matmul_path(ks, NULL, &t, x + v * cols, 1, y1 + v * rows, RC_PATH_ROWS);
            check(memcmp(yb, y1, T * rows * sizeof(float)) == 0, ks->name, "batch = one at a time, bit for bit",
                  dtypes[d], rows, cols);
            free(wf); free(x); free(yb); free(y1); free(w);
        }
}

static void test_family(const rc_kernel_set *ks) {
    test_small_batches(ks);
    if (strncmp(ks->name, "neon", 4) == 0) test_batch_independent(ks);
    test_gx_prepare(ks);
    static const uint32_t dtypes[] = {RWKV_DTYPE_F32, RWKV_DTYPE_F16, RWKV_DTYPE_Q8_0, RWKV_DTYPE_Q4};
    static const uint64_t rows_list[] = {1, 3, 17, 64};
    for (int d = 0; d < 4; d++) {
        uint32_t dtype = dtypes[d];
        int quant = dtype >= RWKV_DTYPE_Q8_0;
        for (uint64_t c = 1; c <= 40; c++) {
            if (dtype == RWKV_DTYPE_Q4 && c < RC_Q4_MIN_BLOCKS) continue;
            uint64_t cols = quant ? c * RC_QK : c * 7 + (c % 5);
            for (int r = 0; r < 4; r++) compare(ks, dtype, rows_list[r], cols, (c + r) % 3 ? 1 : 3, 0);
        }
        for (int special = 1; special <= 4; special++) compare(ks, dtype, 9, quant ? 11 * RC_QK : 357, 2, special);
        compare(ks, dtype, 5, quant ? 128 * RC_QK : 4096, 1, 0);
        /* several vectors through the rows functions (small batches): whole 16-block groups, up to and past 8 */
        for (uint64_t T = 2; T <= 11; T += 3) compare(ks, dtype, 19, quant ? 32 * RC_QK : 512, T, 0);
        /* every batch size up to two passes of 8, odd and even row counts (q4 on AVX-512 takes rows in pairs,
         * the last alone), a short last group; then rows split over two threads at task boundaries */
        for (uint64_t T = 2; T <= 17; T++) compare(ks, dtype, 4 + T % 3, quant ? (16 + T) * RC_QK : 100 + T, T, 0);
        rc_pool *pool2 = rc_pool_new(2);
        if (pool2) {
            rc_pool_scratch(pool2, 8 * rc_qx_stride(RWKV_DTYPE_Q8_0, 70 * RC_QK));
            compare_on(ks, dtype, 301, quant ? 70 * RC_QK : 999, 8, 0, RC_PATH_ROWS, pool2);
            rc_pool_free(pool2);
        }
        test_gemm(ks, dtype);
        if (!quant) test_short_rows(ks, dtype);
        if (quant)
            for (uint64_t nb = 2; nb <= 40; nb += 7) {
                compare_colscale(ks, dtype, 7, nb * RC_QK, 2, RC_PATH_ROWS);
                if (ks->gemm[dtype]) compare_colscale(ks, dtype, 37, nb * RC_QK, 9, RC_PATH_GEMM);
            }
    }
}

/* rc_matmul_many: several products in one pool job give, bit for bit, what rc_matmul gives for each alone,
 * and write nothing outside their outputs: mixed dtypes, products too small to split and large ones, one
 * vector (1 and 2 threads), a small batch (rows path) and a long one (the GEMM path, run product by product). */
static void test_matmul_many(void) {
    static const uint32_t dt[] = {RWKV_DTYPE_Q4, RWKV_DTYPE_F32, RWKV_DTYPE_Q8_0, RWKV_DTYPE_F16, RWKV_DTYPE_Q4};
    static const uint64_t rows[] = {300, 7, 133, 610, 48};
    static const uint64_t cols[] = {64 * RC_QK, 300, 40 * RC_QK, 700, 2 * RC_QK};
    static const uint64_t Ts[] = {1, 1, 5, 30}; /* and threads: 1, 2, 2, 2 */
    enum { N = 5, PAD = 16 };
    {
        for (int ti = 0; ti < 4; ti++) {
            const uint64_t T = Ts[ti];
            const int threads = ti == 0 ? 1 : 2;
            rc_pool *pool = rc_pool_new(threads);
            rc_tensor t[N];
            rc_matmul_op ops[N];
            float *wf[N], *x[N], *y0[N], *y1[N];
            void *w[N];
            for (int i = 0; i < N; i++) {
                wf[i] = malloc(rows[i] * cols[i] * sizeof(float));
                w[i] = make_w(dt[i], rows[i], cols[i], wf[i]);
                t[i] = (rc_tensor){"W", dt[i], 2, {rows[i], cols[i], 0, 0}, rows[i] * cols[i],
                                   rc_row_bytes(dt[i], cols[i]) * rows[i], w[i], 0, NULL, NULL};
                x[i] = malloc(T * cols[i] * sizeof(float));
                for (uint64_t k = 0; k < T * cols[i]; k++) x[i][k] = gauss();
                y0[i] = malloc((T * rows[i] + PAD) * sizeof(float));
                y1[i] = malloc((T * rows[i] + PAD) * sizeof(float));
                for (uint64_t k = 0; k < T * rows[i] + PAD; k++) y0[i][k] = y1[i][k] = 12345.0f;
                rc_matmul(pool, &t[i], x[i], T, y0[i]);
                ops[i] = (rc_matmul_op){&t[i], x[i], y1[i]};
            }
            rc_matmul_many(pool, ops, N, T);
            for (int i = 0; i < N; i++) {
                int ok = memcmp(y0[i], y1[i], (T * rows[i] + PAD) * sizeof(float)) == 0;
                for (uint64_t k = T * rows[i]; k < T * rows[i] + PAD; k++) ok &= y1[i][k] == 12345.0f;
                check(ok, threads == 1 ? "matmul_many 1 thread" : "matmul_many 2 threads",
                      T == 1 ? "T=1" : T == 5 ? "T=5" : "T=30", dt[i], rows[i], cols[i]);
                free(wf[i]); free(w[i]); free(x[i]); free(y0[i]); free(y1[i]);
            }
            rc_pool_free(pool);
        }
    }
}

/* A batch's activations are quantized on the pool (rc_qx_run: >= 64K floats, one task per product and
 * vector): the same products on 2 threads, fused (rc_matmul_many) and alone, equal them on 1 thread (whose
 * activations are prepared on the calling thread) bit for bit. q4, T = 8 (the rows path), in = 4096 and 8192. */
static void test_pooled_prepare(void) {
    enum { N = 3, T = 8 };
    static const uint64_t rows[N] = {40, 17, 33}, cols[N] = {128 * RC_QK, 128 * RC_QK, 256 * RC_QK};
    rc_pool *one = rc_pool_new(1), *two = rc_pool_new(2);
    rc_tensor t[N];
    rc_matmul_op ops[N];
    float *wf[N], *x[N], *y0[N], *y1[N], *y2[N];
    void *w[N];
    for (int i = 0; i < N; i++) {
        wf[i] = malloc(rows[i] * cols[i] * sizeof(float));
        w[i] = make_w(RWKV_DTYPE_Q4, rows[i], cols[i], wf[i]);
        t[i] = (rc_tensor){"W", RWKV_DTYPE_Q4, 2, {rows[i], cols[i], 0, 0}, rows[i] * cols[i],
                           rc_row_bytes(RWKV_DTYPE_Q4, cols[i]) * rows[i], w[i], 0, NULL, NULL};
        x[i] = malloc(T * cols[i] * sizeof(float));
        for (uint64_t k = 0; k < T * cols[i]; k++) x[i][k] = gauss();
        y0[i] = malloc(T * rows[i] * sizeof(float));
        y1[i] = malloc(T * rows[i] * sizeof(float));
        y2[i] = malloc(T * rows[i] * sizeof(float));
        rc_matmul(one, &t[i], x[i], T, y0[i]);
        rc_matmul(two, &t[i], x[i], T, y2[i]);
        ops[i] = (rc_matmul_op){&t[i], x[i], y1[i]};
    }
    rc_matmul_many(two, ops, N, T);
    for (int i = 0; i < N; i++) {
        check(memcmp(y0[i], y1[i], T * rows[i] * sizeof(float)) == 0, "pooled prepare", "matmul_many T=8",
              RWKV_DTYPE_Q4, rows[i], cols[i]);
        check(memcmp(y0[i], y2[i], T * rows[i] * sizeof(float)) == 0, "pooled prepare", "matmul T=8",
              RWKV_DTYPE_Q4, rows[i], cols[i]);
        free(wf[i]); free(w[i]); free(x[i]); free(y0[i]); free(y1[i]); free(y2[i]);
    }
    rc_pool_free(one);
    rc_pool_free(two);
}

/* The rows path's task table (matmul.c): tasks cover every row once, in order, in whole 16-row groups; they
 * shrink along the job; the table is bounded (512), so with many threads a large product asks for more tasks
 * than it holds and the last entry takes the whole remainder. Then a real product on a pool of 8 threads. */
static void test_row_split(void) {
    static const uint64_t rows[] = {1, 15, 16, 17, 4096, 14336, 65536, 9000};
    static const uint64_t rbytes[] = {4000, 100, 2304, 2304, 2176, 2176, 2176, 4000};
    static const int threads[] = {2, 3, 64, 1024};
    for (int r = 0; r < 8; r++)
        for (int t = 0; t < 4; t++) {
            int covers = 0;
            int n = rc_row_split_check(rows[r], rbytes[r], threads[t], &covers);
            check(covers && n <= 512, "row split", "covers", RWKV_DTYPE_F32, rows[r], rbytes[r]);
        }
    int covers = 0; /* 36 MB on 256 threads: 563 tasks of 16 rows wanted, 512 held */
    check(rc_row_split_check(9000, 4000, 256, &covers) == 512 && covers, "row split", "bounded", RWKV_DTYPE_F32,
          9000, 4000);
    check(rc_row_split_check(4096, 2176, 2, &covers) > 8 && covers, "row split", "guided (more than 4 per thread)",
          RWKV_DTYPE_Q4, 4096, 2176);

    const uint64_t R = 700, K = 1000; /* 2.8 MB: split over the pool */
    float *wf = malloc(R * K * sizeof(float)), *x = malloc(K * sizeof(float));
    float *y0 = malloc(R * sizeof(float)), *y1 = malloc(R * sizeof(float));
    void *w = make_w(RWKV_DTYPE_F32, R, K, wf);
    for (uint64_t i = 0; i < K; i++) x[i] = gauss();
    rc_tensor t = {"W", RWKV_DTYPE_F32, 2, {R, K, 0, 0}, R * K, R * K * 4, w, 0, NULL, NULL};
    rc_pool *pool = rc_pool_new(8);
    rc_matmul(NULL, &t, x, 1, y0);
    rc_matmul(pool, &t, x, 1, y1);
    check(pool && rc_pool_threads(pool) == 8 && memcmp(y0, y1, R * sizeof(float)) == 0, rc_kernels()->name,
          "8 threads", RWKV_DTYPE_F32, R, K);
    rc_pool_free(pool);
    free(wf); free(x); free(y0); free(y1); free(w);
}

/* rc_relu_sq_inplace (written on bit patterns so that it vectorizes) against max(x, 0)^2 with NaN -> 0, on
 * special values and random ones, at lengths that leave vector tails. */
static void test_relu_sq(void) {
    static const float special[] = {-1.0f, 0.0f, -0.0f, 2.0f, NAN, -NAN, INFINITY, -INFINITY, 1e-40f, -1e-40f,
                                    3.4e38f, -3.4e38f, 1e-20f, 0.5f};
    float x[67];
    int ok = 1;
    for (int n = 1; n <= 67; n += 11) {
        for (int i = 0; i < n; i++) x[i] = i < 14 ? special[i] : gauss() * 10.0f;
        float want[67];
        for (int i = 0; i < n; i++) {
            const float v = x[i] > 0 ? x[i] : 0.0f;
            want[i] = v * v;
        }
        rc_relu_sq_inplace(x, (uint64_t)n);
        for (int i = 0; i < n; i++) ok &= memcmp(&x[i], &want[i], 4) == 0;
    }
    check(ok, "ops", "relu_sq", RWKV_DTYPE_F32, 1, 67);
}

/* rc_layer_norm (8 running double sums) against one running double sum, at lengths with every tail (1-17, 64,
 * 4099), values offset from zero (the variance pass must use the mean) and a huge one: within 2 float ulps. */
static void test_layer_norm(void) {
    static const uint64_t lens[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 64, 4099};
    static float x[4099], w[4099], b[4099], y[4099];
    int ok = 1;
    for (int c = 0; c < 11; c++) {
        const uint64_t n = lens[c];
        for (uint64_t i = 0; i < n; i++) {
            x[i] = 3.0f + gauss() * (i % 5 == 0 ? 40.0f : 1.0f);
            w[i] = 1.0f + 0.1f * gauss();
            b[i] = 0.1f * gauss();
        }
        if (n > 9) x[n - 2] = 5e4f;
        rc_layer_norm(x, w, b, n, 64e-5f, y);
        double mean = 0, var = 0;
        for (uint64_t i = 0; i < n; i++) mean += x[i];
        mean /= (double)n;
        for (uint64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
        var /= (double)n;
        const float inv = (float)(1.0 / sqrt(var + 64e-5f)), m = (float)mean;
        for (uint64_t i = 0; i < n; i++) {
            const float want = (x[i] - m) * inv * w[i] + b[i];
            ok &= fabsf(y[i] - want) <= 2.4e-7f * (fabsf(want) + fabsf(b[i]) + 1.0f);
        }
    }
    check(ok, "ops", "layer_norm", RWKV_DTYPE_F32, 1, 4099);
}

/* rc_exp (ops.h) against the double-precision exp: relative error within 3 float ulps on [-80, 80], swept finely
 * and at random; its documented saturation outside; NaN -> NaN. rc_sigmoid_inplace (the vectorized loop) against
 * 1 / (1 + exp(-x)) in double, at lengths that leave vector tails. */
static void test_exp(void) {
    int ok = 1;
    double worst = 0;
    for (int i = 0; i <= 2000000; i++) {
        const float x = i < 1000001 ? -80.0f + 160.0f * (float)i / 1000000.0f : frand() * 80.0f;
        const double want = exp((double)x), got = rc_exp(x);
        const double rel = fabs(got - want) / want;
        if (rel > worst) worst = rel;
    }
    ok &= worst <= 3 * 5.96e-8; /* 3 ulps of a float in [1, 2) */
    ok &= rc_exp(0.0f) == 1.0f && rc_exp(-200.0f) == rc_exp(-80.0f) && rc_exp(1000.0f) == rc_exp(80.0f);
    ok &= rc_exp(-INFINITY) == rc_exp(-80.0f) && rc_exp(INFINITY) == rc_exp(80.0f);
    ok &= rc_exp(-80.0f) >= 1e-35f && rc_sigmoid(-1000.0f) >= 1e-35f; /* normal, however far out x is */
    ok &= isnan(rc_exp(NAN)) && isnan(rc_sigmoid(NAN)) && isfinite(rc_exp(80.0f));
    check(ok, "ops", "exp", RWKV_DTYPE_F32, 1, 2000001);
    if (!ok) printf("  rc_exp: worst relative error %.3g\n", worst);

    float x[67], x0[67];
    ok = 1;
    for (int n = 1; n <= 67; n += 11) {
        for (int i = 0; i < n; i++) x[i] = x0[i] = gauss() * 8.0f;
        x[0] = x0[0] = n > 30 ? 100.0f : -100.0f;
        rc_sigmoid_inplace(x, (uint64_t)n);
        for (int i = 0; i < n; i++) ok &= fabs(x[i] - 1.0 / (1.0 + exp(-(double)x0[i]))) <= 1.2e-7;
    }
    check(ok, "ops", "sigmoid", RWKV_DTYPE_F32, 1, 67);
}

/* The WKV recurrences' AVX2 and AVX-512 copies (ops/wkv.c) against the baseline copy, bit for bit: v5 with a
 * per-channel and a per-head decay, v6's per-token decay, v7; head sizes with vector tails; 3 tokens, two
 * heads (the second read at its offset). Copies this CPU cannot run are left out. */
static void test_wkv_isa(void) {
    static const struct { int isa; const char *family; } copies[] = {{RC_ISA_AVX2, "avx2"}, {RC_ISA_AVX512, "avx512"}};
    for (size_t c = 0; c < sizeof copies / sizeof copies[0]; c++) {
        if (!rc_kernels_by_name(copies[c].family)) {
            printf("skip the WKV copy for %s: %s\n", copies[c].family, rwkv_last_error());
            continue;
        }
        static const uint64_t sizes[] = {64, 17, 8, 3};
        for (size_t z = 0; z < 4; z++) {
            const uint64_t N = sizes[z], A = 2 * N, T = 3, o = N; /* head 1 */
            float r[3 * 128], k[3 * 128], v[3 * 128], w[3 * 128], u[128], kk[3 * 128], b[3 * 128];
            float S0[64 * 64], S1[64 * 64], y0[3 * 128], y1[3 * 128];
            for (int variant = 0; variant < 4; variant++) { /* v5.2, v5.0 (per head), v6 (per token), v7 */
                for (uint64_t i = 0; i < T * A; i++) {
                    r[i] = frand(); k[i] = frand(); v[i] = gauss(); kk[i] = frand() * 0.2f; b[i] = frand() * 0.2f;
                    w[i] = 0.5f + 0.49f * frand();
                }
                for (uint64_t i = 0; i < A; i++) u[i] = frand();
                for (uint64_t i = 0; i < N * N; i++) S0[i] = S1[i] = gauss();
                memset(y0, 0, sizeof y0);
                memset(y1, 0, sizeof y1);
                if (variant == 3) {
                    rc_wkv7_isa(RC_ISA_BASE, 0, T, A, N, r + o, w + o, k + o, v + o, kk + o, b + o, S0, y0 + o);
                    rc_wkv7_isa(copies[c].isa, 0, T, A, N, r + o, w + o, k + o, v + o, kk + o, b + o, S1, y1 + o);
                } else {
                    const uint64_t step = variant == 1 ? 0 : 1, tstep = variant == 2 ? A : 0;
                    rc_wkv5_isa(RC_ISA_BASE, 0, T, A, N, r + o, k + o, v + o, u + o, step, w + o, step, tstep, S0, y0 + o);
                    rc_wkv5_isa(copies[c].isa, 0, T, A, N, r + o, k + o, v + o, u + o, step, w + o, step, tstep, S1,
                                y1 + o);
                }
                const int ok = memcmp(S0, S1, N * N * sizeof(float)) == 0 && memcmp(y0, y1, sizeof y0) == 0;
                static const char *what[] = {"wkv5 copy", "wkv5 copy, per-head decay", "wkv6 copy", "wkv7 copy"};
                check(ok, copies[c].family, what[variant], RWKV_DTYPE_F32, N, T);
            }
        }
    }
}

/* The activation quantizer's AVX2 and AVX-512 copies (kernels/quant.c) against its baseline copy, byte for
 * byte, for q8 (int16) and q4 (int8, group order) vectors: random blocks, zero blocks, blocks with a NaN or an
 * infinity, blocks whose max|x| is subnormal (an infinite 1/dx), huge values; with and without column scales;
 * lengths with whole and short q4 groups; 3 vectors. */
static void test_qx_isa(void) {
    static const struct { int isa; const char *family; } copies[] = {{RC_ISA_AVX2, "avx2"}, {RC_ISA_AVX512, "avx512"}};
    enum { T = 3, MAXIN = 40 * RC_QK };
    static float x[T * MAXIN];
    static uint8_t o0[T * (MAXIN * 3 + 4096)], o1[T * (MAXIN * 3 + 4096)];
    const float cols[] = {3, 40, 41, 700};
    const uint32_t nc = 4;
    const float scales[] = {4.0f, 0.25f, 8.0f, 2.0f};
    for (size_t c = 0; c < sizeof copies / sizeof copies[0]; c++) {
        if (!rc_kernels_by_name(copies[c].family)) continue; /* reported by test_wkv_isa */
        static const uint64_t blocks[] = {2, 16, 17, 40, 5};
        for (size_t z = 0; z < 5; z++) {
            const uint64_t in = blocks[z] * RC_QK;
            for (uint64_t i = 0; i < T * in; i++) {
                const uint64_t b = i / RC_QK % 8;
                x[i] = b == 1 ? 0.0f : b == 3 ? gauss() * 1e-41f : b == 5 ? gauss() * 1e6f : gauss();
            }
            x[2 * RC_QK + 5] = NAN;          /* vector 0, block 2 */
            x[in + 6 * RC_QK + 1] = INFINITY; /* vector 1, block 6 (when it exists) */
            x[2 * in + 7] = -INFINITY;
            for (int with_cs = 0; with_cs < 2; with_cs++) {
                rc_colscale cs = {with_cs ? nc : 0, cols, scales};
                for (int q8 = 0; q8 < 2; q8++) {
                    const uint32_t dt = q8 ? RWKV_DTYPE_Q8_0 : RWKV_DTYPE_Q4;
                    if (!q8 && blocks[z] < 2) continue;
                    const uint64_t bytes = T * rc_qx_stride(dt, in);
                    memset(o0, 0xa5, bytes);
                    memset(o1, 0xa5, bytes);
                    rc_qx_prepare_isa(RC_ISA_BASE, dt, x, in, T, with_cs ? &cs : NULL, o0);
                    rc_qx_prepare_isa(copies[c].isa, dt, x, in, T, with_cs ? &cs : NULL, o1);
                    check(memcmp(o0, o1, bytes) == 0, copies[c].family,
                          with_cs ? "activation quantizer copy, column scales" : "activation quantizer copy", dt, T, in);
                }
            }
        }
    }
}

/* The q4 quantizer (the converter's): the trials-side-by-side form, in the baseline copy (4 lanes: SSE2, NEON)
 * and the AVX2 one (8), gives the same bytes as the one-trial-at-a-time reference, on rows of many widths (a short last super-block and
 * group included) and blocks of every kind: Gaussian, tiny (subnormal products), near the largest accepted
 * magnitude, all zero, one value alone, constant, a negative or positive extreme, ties on codebook midpoints. */
static void test_quantize_q4(void) {
    static const uint64_t widths[] = {64, 96, 256, 288, 544, 2048 + 96, 4096 + 32};
    enum { ROWS = 5, MAXIN = 4096 + 32 };
    static float x[ROWS * MAXIN];
    static uint8_t ref[ROWS * MAXIN], got[ROWS * MAXIN];
    static const int isas[] = {RC_ISA_BASE, RC_ISA_AVX2};
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        const uint64_t in = widths[w], bytes = ROWS * rc_q_row_bytes(RWKV_DTYPE_Q4, in);
        for (uint64_t i = 0; i < ROWS * in; i++) {
            const uint64_t b = i / RC_QK, j = i % RC_QK;
            switch ((b * 7 + w) % 10) {
            case 0: x[i] = 0.0f; break;
            case 1: x[i] = gauss() * 1e-30f; break;
            case 2: x[i] = gauss() * 9e5f; break;
            case 3: x[i] = j == 5 ? -0.7f : 0.0f; break;
            case 4: x[i] = 0.25f; break;
            case 5: x[i] = j == 0 ? 3.0f : gauss() * 0.1f; break;
            case 6: x[i] = (float)((int)(frand() * 64.0f)) * 0.5f; break; /* many exact midpoints of v * id */
            case 7: x[i] = j == 31 ? -1e-3f : frand() * 1e-3f; break;
            default: x[i] = gauss() * 0.02f; break;
            }
        }
        memset(ref, 0xa5, bytes);
        rc_quantize_q4_ref(x, ROWS, in, ref);
        for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
            if (isas[k] == RC_ISA_AVX2 && !rc_kernels_by_name("avx2")) continue;
            memset(got, 0x5a, bytes);
            rc_quantize_q4_isa(isas[k], x, ROWS, in, got);
            check(memcmp(ref, got, bytes) == 0, isas[k] == RC_ISA_AVX2 ? "avx2" : "base",
                  "q4 quantizer against the one-trial reference", RWKV_DTYPE_Q4, ROWS, in);
        }
    }
    /* and many Gaussian rows: trials whose errors differ in the last bits decide some blocks, so a sum taken in
     * another order (or fused) shows here */
    enum { GR = 40, GIN = 4096 };
    const uint64_t gbytes = GR * rc_q_row_bytes(RWKV_DTYPE_Q4, GIN);
    float *g = malloc(GR * GIN * sizeof(float));
    uint8_t *gref = malloc(gbytes), *ggot = malloc(gbytes);
    for (uint64_t i = 0; i < GR * GIN; i++) g[i] = gauss() * 0.02f;
    rc_quantize_q4_ref(g, GR, GIN, gref);
    for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
        if (isas[k] == RC_ISA_AVX2 && !rc_kernels_by_name("avx2")) continue;
        rc_quantize_q4_isa(isas[k], g, GR, GIN, ggot);
        check(memcmp(gref, ggot, gbytes) == 0, isas[k] == RC_ISA_AVX2 ? "avx2" : "base",
              "q4 quantizer against the one-trial reference, Gaussian rows", RWKV_DTYPE_Q4, GR, GIN);
    }
    free(g);
    free(gref);
    free(ggot);
}

int main(void) {
    test_quantize_q4();
    test_relu_sq();
    test_layer_norm();
    test_exp();
    test_wkv_isa();
    test_qx_isa();
    test_gx_same_integers();
    const char *families[] = {"avx512-amx", "avx512", "avx2-vnni", "avx2", "neon-dotprod", "neon"};
    for (int i = 0; i < 6; i++) {
        const rc_kernel_set *ks = rc_kernels_by_name(families[i]);
        if (!ks) {
            printf("skip %s: %s\n", families[i], rwkv_last_error());
            continue;
        }
        if (strcmp(ks->name, families[i]) != 0) continue;
        printf("testing %s\n", ks->name);
        test_family(ks);
    }
    printf("testing rc_matmul_many (%s)\n", rc_kernels()->name);
    test_matmul_many();
    test_pooled_prepare();
    test_row_split();
    printf("testing the scalar GEMM reference's own path split\n");
    for (int d = 0; d < 4; d++) {
        static const uint32_t dt[] = {RWKV_DTYPE_F32, RWKV_DTYPE_F16, RWKV_DTYPE_Q8_0, RWKV_DTYPE_Q4};
        rc_pool *pool = rc_pool_new(2);
        if (pool) compare_on(&rc_kernels_scalar, dt[d], 300, 96 * RC_QK, 9, 0, RC_PATH_GEMM, pool);
        rc_pool_free(pool);
    }
#ifdef RC_TEST_SIMDE
    printf("testing avx512 built against SIMDe\n");
    test_family(&rc_kernels_avx512_simde);
    printf("testing avx2-vnni with its VNNI instructions emulated in AVX2\n");
    test_family(&rc_kernels_avx2_vnni_emu);
#endif
    printf("cpu: %s\n", rwkv_cpu_features());
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
