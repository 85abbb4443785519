/* bench_kernels.c: effective weight bandwidth of the matrix-vector kernels on Eagle-7B-sized matrices,
 * next to a plain streaming read of the same number of bytes in the same run (gemma.cpp style).
 *
 *   cmake -S . -B build/bench -G Ninja -DRWKV_BUILD_TESTS=ON && ninja -C build/bench bench_kernels
 *   build/bench/bench_kernels [reps]           (RWKV_CPU_KERNEL=scalar|avx2|... picks the family,
 *                                               RWKV_BENCH_DTYPE=f32|f16|q8|q4 one dtype only,
 *                                               RWKV_BENCH_CACHE=1 the in-cache shape only,
 *                                               RWKV_BENCH_SHAPE=0..7 one shape only,
 *                                               RWKV_BENCH_DIMS=ROWSxIN that shape only (IN a multiple of 32),
 *                                               RWKV_BENCH_NO_SHORT=1 not shapes 5-7,
 *                                               RWKV_BENCH_T=N products of N vectors, batched decode,
 *                                               RWKV_BENCH_ROWS=R, RWKV_BENCH_ROWS_IN=N the rows-alone shape
 *                                                   (default 64 x 4096),
 *                                               RWKV_BENCH_GEMM_ROWS=R, RWKV_BENCH_GEMM_IN=N the gemm-alone shape
 *                                                   (default 64 x 4096),
 *                                               RWKV_BENCH_HUGE=1 matrices in transparent huge pages)
 *
 * For each shape (rows x in: 4096x4096, 14336x4096, 4096x14336, 65536x4096), dtype (f32, f16, q8, q4) and
 * thread count (1, 2): the median over reps of one T=1 product through rc_matmul on a persistent pool,
 * reported as GB/s of weights streamed, and the ratio to the streaming read (same bytes, same threads,
 * timed alternately with the product so both see the same load); and the fastest product as G weights/s
 * ("best": what the kernel does when it has the core to itself, on a shared machine).
 * Memory, not cache: each product and each read uses the next of enough copies of the matrix to fill
 * RWKV_BENCH_MB (default 1536) MB, more than the last-level cache (this VM reports 480 MB of L3), so every
 * byte comes from DRAM, as in a 7B model's decode. The last shape, 256x4096 (0.6-4 MB, one copy, in the
 * L2 cache), measures compute throughput instead: the headroom a kernel has over the bandwidth. Shapes 5-7,
 * 2048x32, 2048x64, 2048x128 (0.13-1 MB, from memory through up to 4096 copies), are RWKV-7's LoRA second
 * products: rows of 64-512 bytes, where the per-row reduction, not the bytes, can set the time. And last,
 * the rows function alone on 64x4096 (no activation step, no pool), fastest of 10 x reps, and for T >= 2 the
 * GEMM function alone (RWKV_BENCH_GEMM_ROWS x 4096, default 64 rows, in cache, one thread), fastest of reps.
 * Weights are random bytes in the dtype's layout (finite scales): speed does not depend on the values. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/mman.h>

#include "core/threadpool.h"
#include "kernels/matmul.h"
#include "kernels/gemm.h"
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

static uint64_t bench_T = 1; /* vectors per product (RWKV_BENCH_T): 1 is decode, 2..16 batched decode */

/* Median times of a and b over reps, measured alternately (a, b, a, b, ...) so that both see the same
 * load on a shared machine; one warm-up call of each first. */
static double best_a; /* the fastest product of the last median_times: the unloaded speed on a busy machine */
static void median_times(int reps, void (*a)(void *), void (*b)(void *), void *arg, double *ta, double *tb) {
    static double t[2][4096];
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
    best_a = t[0][0];
    *tb = t[1][reps / 2];
}

/* A matrix copy: rc_alloc, or with RWKV_BENCH_HUGE=1 2 MB-aligned anonymous memory advised for transparent
 * huge pages (what the TLB costs the weight stream). */
static int bench_huge(void) { const char *e = getenv("RWKV_BENCH_HUGE"); return e && *e == '1'; }
static uint8_t *bench_alloc(uint64_t bytes) {
    if (!bench_huge()) return rc_alloc(bytes);
    const uint64_t len = (bytes + (2u << 20) - 1) / (2u << 20) * (2u << 20);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    madvise(p, len, MADV_HUGEPAGE);
    return p;
}
static void bench_free(void *p, uint64_t bytes) {
    if (!bench_huge()) { rc_free(p); return; }
    munmap(p, (bytes + (2u << 20) - 1) / (2u << 20) * (2u << 20));
}

/* copies of the matrix, used in turn (products and reads each walk their own turn over all of them) */
typedef struct { rc_pool *pool; rc_tensor *w; float *x, *y; read_job *rj; int n_copies, next_m, next_r; } bench_ctx;
static void run_matmul(void *a) {
    bench_ctx *c = a;
    rc_matmul(c->pool, &c->w[c->next_m], c->x, bench_T, c->y);
    c->next_m = (c->next_m + 1) % c->n_copies;
}
static void run_read(void *a) {
    bench_ctx *c = a;
    rc_pool_run(c->pool, read_task, &c->rj[c->next_r], rc_pool_threads(c->pool));
    c->next_r = (c->next_r + 1) % c->n_copies;
}

/* Random weights in dtype's layout with finite scales (f16 0x2000 = 2^-7; q4 int8 block scales random). */
static void fill(uint8_t *w, uint32_t dtype, uint64_t rows, uint64_t in, uint64_t bytes, uint64_t seed) {
    uint64_t r = 88172645463325252ull ^ seed;
    for (uint64_t i = 0; i + 8 <= bytes; i += 8) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        uint64_t v = dtype == RWKV_DTYPE_F32 ? 0x3c0000003c000000ull : dtype == RWKV_DTYPE_F16 ? 0x2c002c002c002c00ull : r;
        memcpy(w + i, &v, 8);
    }
    const uint64_t nb = in / RC_QK;
    if (dtype == RWKV_DTYPE_Q8_0)
        for (uint64_t o = 0; o < rows; o++)
            for (uint64_t b = 0; b < nb; b++) ((uint16_t *)(w + o * rc_row_bytes(dtype, in)))[b] = 0x2000;
    if (dtype == RWKV_DTYPE_Q4)
        for (uint64_t o = 0; o < rows; o++) {
            const rc_q4_row q = rc_q4_row_at(w, rows, nb, o);
            for (uint64_t j = 0; j < rc_q4_supers(nb); j++) ((uint16_t *)q.D)[j] = 0x2000;
        }
}

/* The rows function alone (no activation step, no pool): 64 rows x 4096 in cache, fastest of reps, in
 * G weights/s: the kernel's own compute ceiling. */
static void rows_alone(uint32_t dtype, int reps, uint64_t rows, uint64_t in) {
    const uint64_t bytes = rc_row_bytes(dtype, in) * rows;
    uint8_t *w = rc_alloc(bytes);
    float *x = rc_alloc(bench_T * in * sizeof(float)), *y = rc_alloc(bench_T * rows * sizeof(float));
    void *qx = rc_alloc(bench_T * rc_qx_stride(RWKV_DTYPE_Q8_0, in));
    if (!w || !x || !y || !qx) { printf("out of memory\n"); exit(1); }
    fill(w, dtype, rows, in, bytes, 7);
    for (uint64_t i = 0; i < bench_T * in; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    const void *X = x;
    if (dtype == RWKV_DTYPE_Q8_0 || dtype == RWKV_DTYPE_Q4) {
        rc_qx_prepare(dtype, x, in, bench_T, NULL, qx);
        X = qx;
    }
    const rc_kernel_set *ks = rc_kernels();
    rc_rows_fn fn = ks->rows[dtype] ? ks->rows[dtype] : rc_kernels_scalar.rows[dtype];
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        fn(w, in, 0, rows, X, bench_T, y, rows);
        double t = now() - t0;
        best = t < best ? t : best;
    }
    printf("rows function alone, %llux%llu %-5s T=%llu best %8.1f G weights/s %8.1f GB/s\n", (unsigned long long)rows,
           (unsigned long long)in, rwkv_dtype_name(dtype), (unsigned long long)bench_T, rows * in / best / 1e9,
           bytes / best / 1e9);
    rc_free(w); rc_free(x); rc_free(y); rc_free(qx);
}

/* The GEMM function alone (no activation step, no pool, one thread): rows x in in cache times bench_T vectors,
 * fastest of reps, in G multiply-adds/s (GOP/s is twice that): the compute ceiling of prompt processing. */
static void gemm_alone(uint32_t dtype, int reps, uint64_t rows, uint64_t in) {
    const rc_kernel_set *ks = rc_kernels();
    if (!ks->gemm[dtype]) return;
    const uint64_t bytes = rc_row_bytes(dtype, in) * rows;
    const int q = dtype == RWKV_DTYPE_Q8_0 || dtype == RWKV_DTYPE_Q4;
    const uint64_t xs = dtype == RWKV_DTYPE_Q4 ? rc_gx_stride(in) : rc_qx_stride(RWKV_DTYPE_Q8_0, in);
    uint8_t *w = rc_alloc(bytes);
    float *x = rc_alloc(bench_T * in * sizeof(float)), *y = rc_alloc(bench_T * rows * sizeof(float));
    void *qx = rc_alloc(bench_T * xs), *scratch = rc_alloc(RC_GEMM_SCRATCH);
    if (!w || !x || !y || !qx || !scratch) { printf("out of memory\n"); exit(1); }
    fill(w, dtype, rows, in, bytes, 7);
    for (uint64_t i = 0; i < bench_T * in; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    const void *X = x;
    if (!q) { /* the float GEMM reads rows rc_fx_stride(in) apart (gemm.h) */
        float *fx = rc_alloc(bench_T * rc_fx_stride(in) * sizeof(float));
        if (!fx) { printf("out of memory\n"); exit(1); }
        for (uint64_t t = 0; t < bench_T; t++) memcpy(fx + t * rc_fx_stride(in), x + t * in, in * sizeof(float));
        rc_free(x);
        x = fx;
        X = x;
    }
    if (dtype == RWKV_DTYPE_Q4) (ks->gx_u8 ? rc_gx_prepare_u8 : rc_gx_prepare)(x, in, 0, bench_T, NULL, qx);
    if (dtype == RWKV_DTYPE_Q8_0) rc_qx_prepare(dtype, x, in, bench_T, NULL, qx);
    if (q) X = qx;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        ks->gemm[dtype](w, in, 0, rows, X, bench_T, y, rows, scratch);
        double t = now() - t0;
        best = t < best ? t : best;
    }
    printf("gemm function alone, %llux%llu %-5s T=%llu best %8.1f G multiply-adds/s (one thread)\n",
           (unsigned long long)rows, (unsigned long long)in, rwkv_dtype_name(dtype), (unsigned long long)bench_T,
           (double)rows * in * bench_T / best / 1e9);
    rc_free(w); rc_free(x); rc_free(y); rc_free(qx); rc_free(scratch);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 15;
    if (reps < 1) reps = 1;
    if (reps > 4096) reps = 4096;
    const char *t_env = getenv("RWKV_BENCH_T");
    if (t_env && atoi(t_env) >= 1 && atoi(t_env) <= 256) bench_T = (uint64_t)atoi(t_env);
    static uint64_t shapes[][2] = {{4096, 4096}, {14336, 4096}, {4096, 14336}, {65536, 4096}, {256, 4096},
                                   {2048, 32},   {2048, 64},    {2048, 128}};
    enum { N_SHAPES = 8, MAX_COPIES = 4096 };
    const char *dims = getenv("RWKV_BENCH_DIMS"); /* "ROWSxIN": that shape instead of shape 0, alone */
    unsigned long long d_rows = 0, d_in = 0;
    if (dims && sscanf(dims, "%llux%llu", &d_rows, &d_in) == 2 && d_rows > 0 && d_in > 0 && d_in % 32 == 0) {
        shapes[0][0] = d_rows;
        shapes[0][1] = d_in;
        setenv("RWKV_BENCH_SHAPE", "0", 1);
    }
    const char *mb_env = getenv("RWKV_BENCH_MB");
    const uint64_t pool_bytes = (uint64_t)(mb_env ? atof(mb_env) : 1536.0) * 1000000;
    static const uint32_t dtypes[] = {RWKV_DTYPE_F32, RWKV_DTYPE_F16, RWKV_DTYPE_Q8_0, RWKV_DTYPE_Q4};
    printf("kernel family: %s, cpu: %s, median of %d, %llu vector(s) per product\n", rwkv_kernel_name(),
           rwkv_cpu_features(), reps, (unsigned long long)bench_T);
    printf("%-12s %-5s %3s %10s %6s %9s %9s %9s %8s %7s %9s\n", "rows x in", "dtype", "thr", "MB", "copies", "ms", "GB/s",
           "read GB/s", "Gw/s", "ratio", "best Gw/s");
    for (int s = 0; s < N_SHAPES; s++) {
        const uint64_t rows = shapes[s][0], in = shapes[s][1];
        const int in_cache = s == 4;
        const char *cache_only = getenv("RWKV_BENCH_CACHE"); /* "1": the in-cache shape only */
        if (cache_only && *cache_only == '1' && !in_cache) continue;
        const char *shape_only = getenv("RWKV_BENCH_SHAPE"); /* "0".."4": that shape only */
        if (shape_only && *shape_only && atoi(shape_only) != s) continue;
        const char *no_short = getenv("RWKV_BENCH_NO_SHORT"); /* "1": not the short-row shapes */
        if (no_short && *no_short == '1' && s >= 5) continue;
        float *x = rc_alloc(bench_T * in * sizeof(float)), *y = rc_alloc(bench_T * rows * sizeof(float));
        for (uint64_t i = 0; i < bench_T * in; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
        for (int d = 0; d < 4; d++) {
            const uint32_t dtype = dtypes[d];
            const char *only = getenv("RWKV_BENCH_DTYPE"); /* e.g. "q4": that dtype only */
            if (only && *only && strcmp(only, rwkv_dtype_name(dtype)) != 0) continue;
            if (s >= 5 && dtype >= RWKV_DTYPE_Q8_0) continue; /* the short-row shapes: f32 and f16 only */
            const uint64_t bytes = rc_row_bytes(dtype, in) * rows;
            int n_copies = in_cache ? 1 : (int)((pool_bytes + bytes - 1) / bytes);
            if (n_copies > MAX_COPIES) n_copies = MAX_COPIES;
            static rc_tensor t[MAX_COPIES];
            static read_job rj[MAX_COPIES];
            for (int k = 0; k < n_copies; k++) {
                uint8_t *w = bench_alloc(bytes);
                if (!w) { printf("out of memory\n"); return 1; }
                fill(w, dtype, rows, in, bytes, (uint64_t)k);
                rc_tensor tk = {"W", dtype, 2, {rows, in, 0, 0}, rows * in, bytes, w, 0, NULL, NULL};
                t[k] = tk;
                rj[k].p = (const uint64_t *)w;
                rj[k].n = bytes / 8;
            }
            for (int thr = 1; thr <= 2; thr++) {
                rc_pool *pool = rc_pool_new(thr);
                rc_pool_scratch(pool, bench_T * rc_qx_stride(RWKV_DTYPE_Q8_0, in));
                bench_ctx c = {pool, t, x, y, rj, n_copies, 0, 0};
                double tm, tr;
                median_times(reps, run_matmul, run_read, &c, &tm, &tr);
                printf("%5llux%-6llu %-5s %3d %10.1f %6d %9.3f %9.1f %9.1f %8.1f %7.2f %9.1f\n", (unsigned long long)rows,
                       (unsigned long long)in, rwkv_dtype_name(dtype), thr, bytes / 1e6, n_copies, tm * 1e3,
                       bytes / tm / 1e9, bytes / tr / 1e9, (double)rows * in / tm / 1e9, tm / tr,
                       (double)rows * in / best_a / 1e9);
                fflush(stdout);
                rc_pool_free(pool);
            }
            for (int k = 0; k < n_copies; k++) bench_free((void *)t[k].data, bytes);
        }
        rc_free(x);
        rc_free(y);
    }
    static const uint32_t all[] = {RWKV_DTYPE_F32, RWKV_DTYPE_F16, RWKV_DTYPE_Q8_0, RWKV_DTYPE_Q4};
    const char *only = getenv("RWKV_BENCH_DTYPE");
    for (int d = 0; d < 4; d++)
        if (!only || !*only || strcmp(only, rwkv_dtype_name(all[d])) == 0)
            rows_alone(all[d], reps * 10, getenv("RWKV_BENCH_ROWS") ? (uint64_t)atoi(getenv("RWKV_BENCH_ROWS")) : 64,
                       getenv("RWKV_BENCH_ROWS_IN") ? (uint64_t)atoi(getenv("RWKV_BENCH_ROWS_IN")) : 4096);
    const char *gemm_rows = getenv("RWKV_BENCH_GEMM_ROWS"); /* the gemm-alone shape's rows (default 64) */
    if (bench_T >= 2)
        for (int d = 0; d < 4; d++)
            if (!only || !*only || strcmp(only, rwkv_dtype_name(all[d])) == 0)
                gemm_alone(all[d], reps, gemm_rows ? (uint64_t)atoi(gemm_rows) : 64,
                           getenv("RWKV_BENCH_GEMM_IN") ? (uint64_t)atoi(getenv("RWKV_BENCH_GEMM_IN")) : 4096);
    for (int d = 0; d < 2; d++) /* f32, f16 on a LoRA second product's shape (in L2) */
        if (!only || !*only || strcmp(only, rwkv_dtype_name(all[d])) == 0) rows_alone(all[d], reps * 10, 256, 64);
    return 0;
}
