/* bench_kernels.c: effective weight bandwidth of the matrix-vector kernels on Eagle-7B-sized matrices,
 * next to a plain streaming read of the same number of bytes in the same run (gemma.cpp style).
 *
 *   cmake -S . -B build/bench -G Ninja -DRWKV_BUILD_TESTS=ON && ninja -C build/bench bench_kernels
 *   build/bench/bench_kernels [reps]           (RWKV_CPU_KERNEL=scalar|avx2|... picks the family)
 *
 * For each shape (rows x in: 4096x4096, 14336x4096, 4096x14336, 65536x4096), dtype (f32, f16, q8, q4) and
 * thread count (1, 2): the median over reps of one T=1 product through rc_matmul on a persistent pool,
 * reported as GB/s of weights streamed, and the ratio to the streaming read (same bytes, same threads,
 * timed alternately with the product so both see the same load).
 * Weights are random bytes in the dtype's layout (finite scales): speed does not depend on the values. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/threadpool.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    const uint64_t *p;
    uint64_t n; /* uint64 words */
    uint64_t sink[64];
} read_job;

static void read_task(void *ctx, int task, int n_tasks) {
    read_job *j = (read_job *)ctx;
    uint64_t per = j->n / (uint64_t)n_tasks, a = per * (uint64_t)task, b = task == n_tasks - 1 ? j->n : a + per;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (uint64_t i = a; i + 4 <= b; i += 4) { s0 ^= j->p[i]; s1 ^= j->p[i + 1]; s2 ^= j->p[i + 2]; s3 ^= j->p[i + 3]; }
    j->sink[task * 8 % 64] = s0 ^ s1 ^ s2 ^ s3;
}

/* Median times of a and b over reps, measured alternately (a, b, a, b, ...) so that both see the same
 * load on a shared machine; one warm-up call of each first. */
static void median_times(int reps, void (*a)(void *), void (*b)(void *), void *arg, double *ta, double *tb) {
    double t[2][64];
    a(arg);
    b(arg);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        a(arg);
        double t1 = now();
        b(arg);
        t[0][r] = t1 - t0;
        t[1][r] = now() - t1;
    }
    qsort(t[0], (size_t)reps, sizeof(double), cmp_d);
    qsort(t[1], (size_t)reps, sizeof(double), cmp_d);
    *ta = t[0][reps / 2];
    *tb = t[1][reps / 2];
}

typedef struct { rc_pool *pool; rc_tensor *w; float *x, *y; read_job *rj; } bench_ctx;
static void run_matmul(void *a) { bench_ctx *c = a; rc_matmul(c->pool, c->w, c->x, 1, c->y); }
static void run_read(void *a) { bench_ctx *c = a; rc_pool_run(c->pool, read_task, c->rj, rc_pool_threads(c->pool)); }

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 15;
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;
    static const uint64_t shapes[][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}, {65536, 4096}};
    static const uint32_t dtypes[] = {RWKV_DTYPE_F32, RWKV_DTYPE_F16, RWKV_DTYPE_Q8_0, RWKV_DTYPE_Q4};
    printf("kernel family: %s, cpu: %s, median of %d\n", rwkv_kernel_name(), rwkv_cpu_features(), reps);
    printf("%-12s %-5s %3s %10s %9s %9s %9s %7s\n", "rows x in", "dtype", "thr", "MB", "ms", "GB/s", "read GB/s",
           "ratio");
    for (int s = 0; s < 4; s++) {
        const uint64_t rows = shapes[s][0], in = shapes[s][1];
        float *x = rc_alloc(in * sizeof(float)), *y = rc_alloc(rows * sizeof(float));
        for (uint64_t i = 0; i < in; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
        for (int d = 0; d < 4; d++) {
            const uint32_t dtype = dtypes[d];
            const uint64_t bytes = rc_row_bytes(dtype, in) * rows;
            uint8_t *w = rc_alloc(bytes);
            if (!w) { printf("out of memory\n"); return 1; }
            uint64_t r = 88172645463325252ull;
            for (uint64_t i = 0; i + 8 <= bytes; i += 8) {
                r ^= r << 13; r ^= r >> 7; r ^= r << 17;
                uint64_t v = dtype == RWKV_DTYPE_F32 ? 0x3c0000003c000000ull : dtype == RWKV_DTYPE_F16 ? 0x2c002c002c002c00ull : r;
                memcpy(w + i, &v, 8);
            }
            if (dtype == RWKV_DTYPE_Q8_0 || dtype == RWKV_DTYPE_Q4) /* finite block scales */
                for (uint64_t o = 0; o < rows; o++)
                    for (uint64_t b = 0; b < in / RC_QK; b++) ((uint16_t *)(w + o * rc_row_bytes(dtype, in)))[b] = 0x2000;
            rc_tensor t = {"W", dtype, 2, {rows, in, 0, 0}, rows * in, bytes, w, 0, NULL, NULL};
            for (int thr = 1; thr <= 2; thr++) {
                rc_pool *pool = rc_pool_new(thr);
                rc_pool_scratch(pool, rc_qx_stride(RWKV_DTYPE_Q8_0, in));
                read_job rj = {(const uint64_t *)w, bytes / 8, {0}};
                bench_ctx c = {pool, &t, x, y, &rj};
                double tm, tr;
                median_times(reps, run_matmul, run_read, &c, &tm, &tr);
                printf("%5llux%-6llu %-5s %3d %10.1f %9.3f %9.1f %9.1f %7.2f\n", (unsigned long long)rows,
                       (unsigned long long)in, rwkv_dtype_name(dtype), thr, bytes / 1e6, tm * 1e3, bytes / tm / 1e9,
                       bytes / tr / 1e9, tm / tr);
                fflush(stdout);
                rc_pool_free(pool);
            }
            rc_free(w);
        }
        rc_free(x);
        rc_free(y);
    }
    return 0;
}
