/* threadpool.h: a persistent pool of worker threads, created once per model (no thread per token). */
#ifndef RC_THREADPOOL_H
#define RC_THREADPOOL_H

#include <stdint.h>

#include <stddef.h>

typedef struct rc_pool rc_pool;

/* fn(ctx, task, n_tasks) is called once for every task in [0, n_tasks), on any thread. */
typedef void (*rc_task_fn)(void *ctx, int task, int n_tasks);

/* n_threads counts the calling thread: a pool of 1 runs everything on the caller. NULL on failure. */
rc_pool *rc_pool_new(int n_threads);
void rc_pool_free(rc_pool *pool);
int rc_pool_threads(const rc_pool *pool);
/* Run n_tasks tasks and return when all are done. Not reentrant: one job at a time per pool. */
void rc_pool_run(rc_pool *pool, rc_task_fn fn, void *ctx, int n_tasks);
/* Same, but run everything on the caller when the job is small: `work` is the job's cost in the caller's
 * units (e.g. state updates) and below `min_work` handing tasks to other threads costs more than it saves. */
void rc_pool_run_sized(rc_pool *pool, rc_task_fn fn, void *ctx, int n_tasks, uint64_t work, uint64_t min_work);

/* The WKV recurrences (csrc/ops/wkv.c, one task per sequence x head): below about 64K state updates per layer
 * (decode of a small model) they run on the caller. */
#define RC_WKV_MIN_PARALLEL_WORK 65536u

/* A 64-byte aligned work buffer of at least nbytes owned by the pool (grown as needed, kept between jobs;
 * NULL if it cannot grow). Valid until the next call; like rc_pool_run, for one job at a time. */
void *rc_pool_scratch(rc_pool *pool, size_t nbytes);

/* Number of physical cores (falls back to online logical CPUs). */
int rc_physical_cores(void);

#endif
