/* test_kernels.c: every kernel family built into this program against the scalar reference, on random
 * data of many shapes, with no Python: it runs where pytest cannot (aarch64 under qemu-user) and on a
 * second build of the AVX-512 kernels against SIMDe (RC_TEST_SIMDE). Families this CPU cannot run are
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
#include "kernels/matmul.h"
#include "kernels/quant.h"

#ifdef RC_TEST_SIMDE
extern const rc_kernel_set rc_kernels_avx512_simde;
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

static void compare(const rc_kernel_set *ks, uint32_t dtype, uint64_t rows, uint64_t cols, uint64_t T, int special) {
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
    rc_matmul_with(&rc_kernels_scalar, NULL, &t, x, T, y0);
    rc_matmul_with(ks, NULL, &t, x, T, y1);
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
    static const char *what[] = {"random", "zeros", "huge", "nan", "inf"};
    check(ok, ks->name, what[special], dtype, rows, cols);
    free(wf); free(w); free(x); free(y0); free(y1);
}

/* Column scales (quant.h): W stored with 3 columns divided by c, the product must equal the float product with
 * the real weights (stored * c), for the scalar reference and the family alike (rc_qx_prepare applies them). */
static void compare_colscale(const rc_kernel_set *ks, uint32_t dtype, uint64_t rows, uint64_t cols) {
    float *wf = malloc(rows * cols * sizeof(float));
    void *w = make_w(dtype, rows, cols, wf);
    const float ccols[3] = {0.0f, (float)(cols / 2 + 1), (float)(cols - 1)}, cscale[3] = {40.0f, 0.25f, 7.5f};
    rc_tensor t = {"W", dtype, 2, {rows, cols, 0, 0}, rows * cols, rc_row_bytes(dtype, cols) * rows, w, 3, ccols, cscale};
    float *x = malloc(2 * cols * sizeof(float)), *y0 = malloc(2 * rows * sizeof(float)), *y1 = malloc(2 * rows * sizeof(float));
    for (uint64_t i = 0; i < 2 * cols; i++) x[i] = gauss();
    rc_matmul_with(&rc_kernels_scalar, NULL, &t, x, 2, y0);
    rc_matmul_with(ks, NULL, &t, x, 2, y1);
    int ok = 1;
    float *row = malloc(cols * sizeof(float));
    for (uint64_t o = 0; o < rows && ok; o++) {
        rc_tensor_row(&t, o, row); /* the real weights: stored * scale in the scaled columns */
        for (int k = 0; k < 3; k++)
            ok &= row[(uint64_t)ccols[k]] == wf[o * cols + (uint64_t)ccols[k]] * cscale[k];
        for (uint64_t tt = 0; tt < 2 && ok; tt++) {
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
    check(ok, ks->name, "column scales", dtype, rows, cols);
    free(row); free(wf); free(w); free(x); free(y0); free(y1);
}

static void test_family(const rc_kernel_set *ks) {
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
        if (quant)
            for (uint64_t nb = 2; nb <= 40; nb += 7) compare_colscale(ks, dtype, 7, nb * RC_QK);
    }
}

int main(void) {
    const char *families[] = {"avx512", "avx2", "neon-dotprod", "neon"};
    for (int i = 0; i < 4; i++) {
        const rc_kernel_set *ks = rc_kernels_by_name(families[i]);
        if (!ks) {
            printf("skip %s: %s\n", families[i], rwkv_last_error());
            continue;
        }
        if (strcmp(ks->name, families[i]) != 0) continue;
        printf("testing %s\n", ks->name);
        test_family(ks);
    }
#ifdef RC_TEST_SIMDE
    printf("testing avx512 built against SIMDe\n");
    test_family(&rc_kernels_avx512_simde);
#endif
    printf("cpu: %s\n", rwkv_cpu_features());
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
