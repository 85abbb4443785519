/* bandwidth.c: the machine's read bandwidth as a model's evaluations see it (rwkv_measure_read_bandwidth).
 *
 * A decode step streams every weight once, so its speed limit is the read bandwidth of memory: the roofline
 * time of a token is (bytes it reads) / (bandwidth). To compare like with like, the bandwidth is measured
 * with the model's own thread pool and thread count, each task streaming one contiguous share of a buffer
 * that the caller makes larger than the caches, with plain loads (portable C, vectorised by the compiler).
 *
 * rwkv_measure_weights_bandwidth reads the model's own weights instead, the very pages a decode step streams.
 * Memory is not uniform on every machine: on this project's VM two copies of one model file, each in the page
 * cache, read at 10.8 and 15.4 GB/s and decoded at 48 and 30 ms/token (the host places guest pages in memory
 * of different speeds), while a fresh buffer reads at a third speed. This read shows what a model's pages give.
 * It does not make two models' ratios steady: their pages' read speed also moved between rounds, more than their
 * decode did (docs/PERFORMANCE.md, issue 7, fourth session), so version comparisons interleave the models. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "core/common.h"
#include "core/model.h"

/* Passes are timed this many times at most (the median is taken). */
#define RC_BW_MAX_REPS 1024

#define RC_BW_MAX_RANGES 2

typedef struct {
    const uint64_t *words[RC_BW_MAX_RANGES]; /* the ranges read, in order; [n_words[r]] each */
    uint64_t n_words[RC_BW_MAX_RANGES];
    int n_ranges;
    uint64_t sink[64];     /* one result per task (kept so the reads cannot be optimised away) */
} read_job;

/* Task k of n reads words [W k / n, W (k + 1) / n) of the ranges laid end to end (W words in all) and folds
 * them into one value. */
static void read_share(void *ctx, int task, int n_tasks) {
    read_job *j = (read_job *)ctx;
    uint64_t total = 0;
    for (int r = 0; r < j->n_ranges; r++) total += j->n_words[r];
    const uint64_t a = total / (uint64_t)n_tasks * (uint64_t)task;
    const uint64_t b = task == n_tasks - 1 ? total : a + total / (uint64_t)n_tasks;
    uint64_t s[8] = {0};
    uint64_t off = 0; /* where range r starts in the concatenation */
    for (int r = 0; r < j->n_ranges; off += j->n_words[r], r++) {
        const uint64_t lo = a > off ? a - off : 0, hi = b - off < j->n_words[r] ? b - off : j->n_words[r];
        if (b <= off || lo >= hi) continue; /* [a, b) misses this range */
        const uint64_t *w = j->words[r];
        uint64_t i = lo;
        for (; i + 8 <= hi; i += 8)
            for (int k = 0; k < 8; k++) s[k] ^= w[i + k];
        for (; i < hi; i++) s[0] ^= w[i];
    }
    j->sink[task % 64] = s[0] ^ s[1] ^ s[2] ^ s[3] ^ s[4] ^ s[5] ^ s[6] ^ s[7];
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Median seconds of `reps` timed passes over the buffer (after one untimed warm-up pass). */
static double median_pass_seconds(rc_pool *pool, read_job *job, int reps, double *times) {
    const int n_tasks = rc_pool_threads(pool);
    rc_pool_run(pool, read_share, job, n_tasks);
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
        rc_pool_run(pool, read_share, job, n_tasks);
        times[r] = now_seconds() - t0;
    }
    qsort(times, (size_t)reps, sizeof(double), cmp_double);
    return reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
}

int rwkv_measure_read_bandwidth(rwkv_model *model, uint64_t nbytes, int reps, double *bytes_per_second) {
    if (!model || !bytes_per_second) return rc_error(RWKV_ERR_ARG, "NULL argument");
    if (nbytes < 4096 || nbytes > ((uint64_t)1 << 40))
        return rc_error(RWKV_ERR_ARG, "buffer size %llu is outside [4096, 2^40] bytes", (unsigned long long)nbytes);
    if (reps < 1 || reps > RC_BW_MAX_REPS)
        return rc_error(RWKV_ERR_ARG, "reps %d is outside [1, %d]", reps, RC_BW_MAX_REPS);
    if ((uint64_t)(size_t)nbytes != nbytes) return rc_error(RWKV_ERR_OOM, "buffer size does not fit in memory");
    uint64_t *words = rc_alloc((size_t)nbytes);
    double *times = rc_alloc((size_t)reps * sizeof(double));
    if (!words || !times) {
        rc_free(words);
        rc_free(times);
        return rc_error(RWKV_ERR_OOM, "cannot allocate a %llu-byte buffer to read", (unsigned long long)nbytes);
    }
    memset(words, 0x5a, (size_t)nbytes); /* touch every page: untouched pages would all read the zero page */
    read_job job = {{words}, {nbytes / 8}, 1, {0}};
    pthread_mutex_lock(&model->lock);    /* the pool runs one job at a time */
    double seconds = median_pass_seconds(model->pool, &job, reps, times);
    pthread_mutex_unlock(&model->lock);
    rc_free(words);
    rc_free(times);
    *bytes_per_second = seconds > 0 ? (double)(job.n_words[0] * 8) / seconds : 0.0;
    return RWKV_OK;
}

/* The whole words of [p, p + n) (8-byte aligned inside). */
static void add_range(read_job *j, const uint8_t *p, uint64_t n) {
    const uint64_t head = (8 - (uint64_t)(uintptr_t)p % 8) % 8;
    if (n <= head || j->n_ranges == RC_BW_MAX_RANGES) return;
    j->words[j->n_ranges] = (const uint64_t *)(const void *)(p + head);
    j->n_words[j->n_ranges++] = (n - head) / 8;
}

int rwkv_measure_weights_bandwidth(rwkv_model *model, int reps, double *bytes_per_second, uint64_t *bytes_read) {
    if (!model || !bytes_per_second) return rc_error(RWKV_ERR_ARG, "NULL argument");
    if (reps < 1 || reps > RC_BW_MAX_REPS)
        return rc_error(RWKV_ERR_ARG, "reps %d is outside [1, %d]", reps, RC_BW_MAX_REPS);
    /* the tensor data region less the embedding (a decode step reads one row of it), which is one tensor */
    const rc_file *f = &model->file;
    const uint8_t *lo = f->base + f->data_offset, *hi = lo + f->data_size;
    const rc_tensor *emb = rc_file_find(f, "emb.weight");
    read_job job = {{NULL}, {0}, 0, {0}};
    if (emb && (const uint8_t *)emb->data >= lo && (const uint8_t *)emb->data + emb->nbytes <= hi) {
        add_range(&job, lo, (uint64_t)((const uint8_t *)emb->data - lo));
        add_range(&job, (const uint8_t *)emb->data + emb->nbytes, (uint64_t)(hi - ((const uint8_t *)emb->data + emb->nbytes)));
    } else {
        add_range(&job, lo, f->data_size);
    }
    uint64_t n_words = 0;
    for (int r = 0; r < job.n_ranges; r++) n_words += job.n_words[r];
    if (n_words == 0) return rc_error(RWKV_ERR_ARG, "the model has no weights besides the embedding to read");
    double *times = rc_alloc((size_t)reps * sizeof(double));
    if (!times) return rc_error(RWKV_ERR_OOM, "out of memory");
    pthread_mutex_lock(&model->lock);
    double seconds = median_pass_seconds(model->pool, &job, reps, times);
    pthread_mutex_unlock(&model->lock);
    rc_free(times);
    *bytes_per_second = seconds > 0 ? (double)(n_words * 8) / seconds : 0.0;
    if (bytes_read) *bytes_read = n_words * 8;
    return RWKV_OK;
}
