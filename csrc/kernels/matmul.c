/* matmul.c: kernel selection, the int8 activation step of q8/q4, and the threaded row split. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/cpu.h"
#include "kernels/gemm.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"

/* ---- kernel families --------------------------------------------------------------------------------
 * Each family is built only for its architecture and used only if the CPU (and OS) has what it needs. */
typedef struct {
    const char *name;
    const rc_kernel_set *set; /* NULL: not built for this architecture */
    const char *needs;        /* features, for messages */
} rc_family;

static int rc_family_runs(const char *name) {
    const rc_cpu_features *f = rc_cpu();
    if (strcmp(name, "scalar") == 0) return 1;
    if (strcmp(name, "avx2") == 0) return f->avx2 && f->fma && f->f16c;
    if (strcmp(name, "avx2-vnni") == 0) return f->avx2 && f->fma && f->f16c && f->avxvnni;
    if (strcmp(name, "avx512") == 0 || strcmp(name, "avx512-amx") == 0)
        return f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni && f->avx2 && f->fma && f->f16c &&
               (strcmp(name, "avx512-amx") != 0 || f->amx);
    if (strcmp(name, "neon") == 0) return f->neon;
    if (strcmp(name, "neon-dotprod") == 0) return f->neon && f->dotprod;
    return 0;
}

/* best first */
static const rc_family rc_families[] = {
#if defined(__x86_64__)
#if defined(RC_HAVE_AMX)
    {"avx512-amx", &rc_kernels_avx512_amx, "amx-tile amx-int8 (and the avx512 family's)"},
#endif
    {"avx512", &rc_kernels_avx512, "avx512f avx512bw avx512vl avx512vnni (and avx2 fma f16c)"},
#if defined(RC_HAVE_AVX_VNNI)
    {"avx2-vnni", &rc_kernels_avx2_vnni, "avx2 fma f16c avx-vnni"},
#endif
    {"avx2", &rc_kernels_avx2, "avx2 fma f16c"},
#endif
#if defined(__aarch64__)
    {"neon-dotprod", &rc_kernels_neon_dotprod, "neon dotprod"},
    {"neon", &rc_kernels_neon, "neon"},
#endif
    {"scalar", &rc_kernels_scalar, ""},
};
#define RC_N_FAMILIES (sizeof rc_families / sizeof *rc_families)

const rc_kernel_set *rc_kernels_by_name(const char *name) {
    if (!name) { rc_error(RWKV_ERR_ARG, "kernel name is NULL"); return NULL; }
    /* "neon" means the best NEON family this CPU runs */
    int best_neon = strcmp(name, "neon") == 0;
    for (size_t i = 0; i < RC_N_FAMILIES; i++) {
        const rc_family *fam = &rc_families[i];
        int match = strcmp(name, fam->name) == 0 || (best_neon && strncmp(fam->name, "neon", 4) == 0);
        if (!match) continue;
        if (rc_family_runs(fam->name)) return fam->set;
        if (!best_neon) {
            rc_error(RWKV_ERR_UNSUPPORTED, "kernel family %s needs %s; this CPU has: %s", name, fam->needs,
                     rc_cpu()->names[0] ? rc_cpu()->names : "(none)");
            return NULL;
        }
    }
    if (strncmp(name, "avx2", 4) == 0 || strncmp(name, "avx512", 6) == 0 || strncmp(name, "neon", 4) == 0)
        rc_error(RWKV_ERR_UNSUPPORTED, "kernel family %s is not built for this architecture", name);
    else
        rc_error(RWKV_ERR_ARG, "unknown kernel family '%s' (scalar, avx2, avx2-vnni, avx512, avx512-amx, neon, neon-dotprod)", name);
    return NULL;
}

static const rc_kernel_set *rc_selected;
static pthread_once_t rc_select_once = PTHREAD_ONCE_INIT;

/* RWKV_CPU_KERNEL names a family; one this CPU cannot run falls back to the best one that it can (the
 * reason is kept in rc_kernel_note, shown by rwkv_kernel_note). */
static char rc_note[256];

static void rc_select(void) {
    const char *want = getenv("RWKV_CPU_KERNEL");
    if (want && *want) {
        const rc_kernel_set *ks = rc_kernels_by_name(want);
        if (ks) { rc_selected = ks; return; }
        snprintf(rc_note, sizeof rc_note, "RWKV_CPU_KERNEL=%s ignored: %s", want, rwkv_last_error());
        rc_error_clear();
    }
    for (size_t i = 0; i < RC_N_FAMILIES; i++)
        if (rc_family_runs(rc_families[i].name)) { rc_selected = rc_families[i].set; return; }
    rc_selected = &rc_kernels_scalar;
}

const rc_kernel_set *rc_kernels(void) {
    pthread_once(&rc_select_once, rc_select);
    return rc_selected;
}

const char *rwkv_kernel_name(void) { return rc_kernels()->name; }

const char *rwkv_kernel_note(void) {
    rc_kernels();
    return rc_note;
}

int rc_matmul_supports(uint32_t dtype) { return dtype < 16 && rc_kernels_scalar.rows[dtype] != NULL; }
int rc_matmul_supports_rows(uint32_t dtype) { return dtype < 16 && rc_kernels_scalar.row[dtype] != NULL; }

uint64_t rc_row_bytes(uint32_t dtype, uint64_t in) {
    switch (dtype) {
    case RWKV_DTYPE_F32: return in * 4;
    case RWKV_DTYPE_F16: return in * 2;
    case RWKV_DTYPE_Q8_0:
    case RWKV_DTYPE_Q4: return rc_q_row_bytes(dtype, in);
    default: return 0;
    }
}

static int rc_is_quantized(uint32_t dtype) { return dtype == RWKV_DTYPE_Q8_0 || dtype == RWKV_DTYPE_Q4; }

/* ---- the row split ---------------------------------------------------------------------------------
 * Tasks are runs of whole 16-row groups (16 floats of Y = one 64-byte line, so two threads never write the
 * same line). Their sizes shrink along a job ("guided" scheduling): each task takes 1 / (RC_GUIDED_DIV x
 * threads) of the weight bytes left in the job, but at least RC_MIN_TASK_BYTES (a task must outweigh claiming
 * it). So the threads start on large tasks and finish within one small task of each other: with a fixed split
 * (4 equal tasks per thread) the first thread done waited for half a task on average at the end of every
 * product, ~5% of an Eagle-7B decode step (perf: samples in the pool's wait loops). A thread slowed by a noisy
 * neighbour also just takes fewer tasks. A job smaller than RC_MIN_PARALLEL_BYTES runs on the calling thread:
 * waking the pool costs more. */
#define RC_ROW_GROUP 16
#ifndef RC_GUIDED_DIV
#define RC_GUIDED_DIV 2
#endif
#define RC_TASKS_PER_THREAD 4 /* the GEMM path's fixed split */
#define RC_MIN_TASK_BYTES (32u << 10)
#define RC_MIN_PARALLEL_BYTES (256u << 10)
#define RC_MAX_ROW_TASKS 512

typedef struct {
    rc_rows_fn fn;
    const void *W;
    uint64_t in, out, T;
    uint64_t task_bytes; /* weight bytes of one row times T: what a row costs */
    const void *X;       /* what fn reads: float X or the prepared vectors */
    float *Y;
} rc_matmul_job;

/* The column scales of a q8/q4 matrix (common.h), as the activation step takes them. */
static rc_colscale rc_colscale_of(const rc_tensor *W) {
    rc_colscale cs = {W->n_outliers, W->outlier_cols, W->outlier_scales};
    return cs;
}

/* Rows of a q8/q4 matrix against float vectors, one block of 32 at a time (no scratch needed): the fallback
 * when the int8 activation buffer cannot be allocated. Same math as dequantizing W (column scales applied to
 * the weights), in float. */
static void rc_rows_dequant_blocks(const rc_tensor *W, const float *X, uint64_t T, float *Y) {
    const uint64_t out = rc_rows(W), in = rc_cols(W), nb = in / RC_QK;
    for (uint64_t o = 0; o < out; o++) {
        for (uint64_t t = 0; t < T; t++) Y[t * out + o] = 0;
        uint32_t next = 0;
        for (uint64_t b = 0; b < nb; b++) {
            float w[RC_QK];
            int8_t v[RC_QK];
            float d;
            if (W->dtype == RWKV_DTYPE_Q4) {
                const rc_q4_row r = rc_q4_row_at(W->data, out, nb, o);
                rc_q4_block_values(r.codes, nb, b, v);
                d = rc_q4_scale(&r, b);
            } else {
                const uint8_t *row = (const uint8_t *)W->data + o * nb * RC_Q8_BLOCK_BYTES;
                memcpy(v, rc_q_quants(row, nb) + b * RC_QK, RC_QK);
                d = rc_f16_to_f32(rc_q_scales(row)[b]);
            }
            for (int j = 0; j < RC_QK; j++) w[j] = d * (float)v[j];
            for (; next < W->n_outliers && (uint64_t)W->outlier_cols[next] < (b + 1) * RC_QK; next++)
                w[(uint64_t)W->outlier_cols[next] - b * RC_QK] *= W->outlier_scales[next];
            for (uint64_t t = 0; t < T; t++) {
                float s = 0;
                for (int j = 0; j < RC_QK; j++) s += w[j] * X[t * in + b * RC_QK + j];
                Y[t * out + o] += s;
            }
        }
    }
}

/* ---- the GEMM path (gemm.h) ----------------------------------------------------------------------------
 * Tasks are runs of whole RC_GEMM_ROWS-row panels, each with its own packing buffer. The activations are
 * quantized first (q8/q4), split over the pool by vectors when there are many. */
#define RC_GEMM_ROWS 32
#define RC_GX_MIN_PARALLEL (64u << 10) /* floats to quantize before the pool helps */

typedef struct {
    rc_gemm_fn fn;
    const void *W;
    uint64_t in, out, T, rows_per_task;
    const void *X;
    float *Y;
    uint8_t *scratch; /* RC_GEMM_SCRATCH bytes per task */
} rc_gemm_job;

static void rc_gemm_task(void *ctx, int task, int n_tasks) {
    const rc_gemm_job *j = (const rc_gemm_job *)ctx;
    uint64_t r0 = (uint64_t)task * j->rows_per_task, r1 = r0 + j->rows_per_task;
    if (r1 > j->out) r1 = j->out;
    if (r0 >= r1) return;
    j->fn(j->W, j->in, r0, r1, j->X, j->T, j->Y, j->out, j->scratch + (uint64_t)task * RC_GEMM_SCRATCH);
    (void)n_tasks;
}

/* The activations a gemm function reads (gemm.h): q4 int8 GEMM vectors, q8 the decode path's int16 ones. */
static uint64_t rc_gemm_x_stride(uint32_t dtype, uint64_t in) {
    return dtype == RWKV_DTYPE_Q4 ? rc_gx_stride(in) : rc_qx_stride(dtype, in);
}

static void rc_gemm_x_prepare(const rc_kernel_set *ks, uint32_t dtype, const float *X, uint64_t in, uint64_t t0,
                              uint64_t t1, const rc_colscale *cs, void *out) {
    if (dtype == RWKV_DTYPE_Q4 && ks->gx_u8)
        rc_gx_prepare_u8(X, in, t0, t1, cs, out);
    else if (dtype == RWKV_DTYPE_Q4 && ks->gx_prepare)
        ks->gx_prepare(X, in, t0, t1, cs, out);
    else if (dtype == RWKV_DTYPE_Q4)
        rc_gx_prepare(X, in, t0, t1, cs, out);
    else
        rc_qx_prepare(dtype, X + t0 * in, in, t1 - t0, cs, (uint8_t *)out + t0 * rc_qx_stride(dtype, in));
}

typedef struct {
    const rc_kernel_set *ks;
    uint32_t dtype;
    const float *X;
    uint64_t in, T, per;
    rc_colscale cs;
    void *gx;
} rc_gx_job;

static void rc_gx_task(void *ctx, int task, int n_tasks) {
    const rc_gx_job *j = (const rc_gx_job *)ctx;
    uint64_t t0 = (uint64_t)task * j->per, t1 = t0 + j->per;
    if (t1 > j->T) t1 = j->T;
    if (t0 < t1) rc_gemm_x_prepare(j->ks, j->dtype, j->X, j->in, t0, t1, &j->cs, j->gx);
    (void)n_tasks;
}

/* Returns 0 if the buffers cannot be had (the caller then takes the rows path). */
static int rc_matmul_gemm(const rc_kernel_set *ks, rc_gemm_fn fn, rc_pool *pool, const rc_tensor *W, const float *X, uint64_t T, float *Y) {
    rc_gemm_job j = {fn, W->data, rc_cols(W), rc_rows(W), T, 0, X, Y, NULL};
    const int quantized = rc_is_quantized(W->dtype);
    const int n_threads = rc_pool_threads(pool);
    const uint64_t weight_bytes = rc_row_bytes(W->dtype, j.in) * j.out;
    uint64_t n_tasks = 1;
    if (n_threads > 1 && weight_bytes * T >= RC_MIN_PARALLEL_BYTES) {
        uint64_t panels = (j.out + RC_GEMM_ROWS - 1) / RC_GEMM_ROWS;
        n_tasks = (uint64_t)n_threads * RC_TASKS_PER_THREAD;
        if (n_tasks > panels) n_tasks = panels;
    }
    uint64_t per = (j.out + n_tasks - 1) / n_tasks;
    j.rows_per_task = (per + RC_GEMM_ROWS - 1) / RC_GEMM_ROWS * RC_GEMM_ROWS;
    n_tasks = (j.out + j.rows_per_task - 1) / j.rows_per_task;
    const uint64_t gx_bytes = T * (quantized ? rc_gemm_x_stride(W->dtype, j.in) : rc_fx_stride(j.in) * sizeof(float));
    const uint64_t bytes = gx_bytes + n_tasks * RC_GEMM_SCRATCH;
    void *owned = NULL;
    uint8_t *buf = pool ? rc_pool_scratch(pool, (size_t)bytes) : (owned = rc_alloc((size_t)bytes));
    if (!buf) return 0;
    j.scratch = buf + gx_bytes;
    if (quantized) {
        rc_gx_job g = {ks, W->dtype, X, j.in, T, T, rc_colscale_of(W), buf};
        if (n_threads > 1 && T > 1 && T * j.in >= RC_GX_MIN_PARALLEL) {
            g.per = (T + (uint64_t)n_threads - 1) / (uint64_t)n_threads;
            rc_pool_run(pool, rc_gx_task, &g, (int)((T + g.per - 1) / g.per));
        } else {
            rc_gemm_x_prepare(ks, W->dtype, X, j.in, 0, T, &g.cs, buf);
        }
        j.X = buf;
    } else { /* the float GEMM's copy with rc_fx_stride rows */
        const uint64_t fs = rc_fx_stride(j.in);
        for (uint64_t t = 0; t < T; t++) memcpy((float *)(void *)buf + t * fs, X + t * j.in, j.in * sizeof(float));
        j.X = buf;
    }
    if (n_tasks > 1)
        rc_pool_run(pool, rc_gemm_task, &j, (int)n_tasks);
    else
        rc_gemm_task(&j, 0, 1);
    rc_free(owned);
    return 1;
}

/* ---- the rows path ---------------------------------------------------------------------------------------
 * One or several products (rc_matmul_many) whose activations are ready, split into guided tasks (above) over
 * the concatenated rows of all of them, claimed from one counter of the pool. */
typedef struct {
    uint32_t job;
    uint64_t r0, r1;
} rc_rows_task;

typedef struct {
    rc_matmul_job jobs[RC_MATMUL_MANY_MAX];
    rc_rows_task tasks[RC_MAX_ROW_TASKS];
} rc_rows_plan;

static void rc_rows_plan_task(void *ctx, int task, int n_tasks) {
    const rc_rows_plan *p = (const rc_rows_plan *)ctx;
    const rc_rows_task *t = &p->tasks[task];
    const rc_matmul_job *j = &p->jobs[t->job];
    j->fn(j->W, j->in, t->r0, t->r1, j->X, j->T, j->Y, j->out);
    (void)n_tasks;
}

/* The task table of jobs [0, n) on n_threads (at least one task per job); returns the number of tasks. */
static int rc_rows_plan_make(rc_rows_plan *p, int n, int n_threads) {
    uint64_t left = 0;
    for (int i = 0; i < n; i++) left += p->jobs[i].task_bytes * p->jobs[i].out;
    const uint64_t div = (uint64_t)RC_GUIDED_DIV * (uint64_t)n_threads;
    int k = 0;
    for (int i = 0; i < n; i++) {
        const rc_matmul_job *j = &p->jobs[i];
        const uint64_t rb = j->task_bytes ? j->task_bytes : 1;
        for (uint64_t r = 0; r < j->out;) {
            uint64_t want = left / div;
            if (want < RC_MIN_TASK_BYTES) want = RC_MIN_TASK_BYTES;
            uint64_t rows = (want + rb - 1) / rb;
            rows = (rows + RC_ROW_GROUP - 1) / RC_ROW_GROUP * RC_ROW_GROUP;
            /* the table's last free entries go to whole remainders, one per job left */
            if (rows > j->out - r || k >= RC_MAX_ROW_TASKS - (n - i)) rows = j->out - r;
            p->tasks[k++] = (rc_rows_task){(uint32_t)i, r, r + rows};
            r += rows;
            left -= rows * j->task_bytes;
        }
    }
    return k;
}

int rc_row_split_check(uint64_t rows, uint64_t row_bytes, int n_threads, int *covers) {
    rc_rows_plan plan;
    memset(&plan.jobs[0], 0, sizeof plan.jobs[0]);
    plan.jobs[0].out = rows;
    plan.jobs[0].task_bytes = row_bytes;
    const int n = rc_rows_plan_make(&plan, 1, n_threads);
    uint64_t next = 0;
    int ok = n >= 1 && n <= RC_MAX_ROW_TASKS;
    for (int k = 0; ok && k < n; k++) {
        const rc_rows_task *t = &plan.tasks[k];
        ok = t->job == 0 && t->r0 == next && t->r1 > t->r0 && (t->r1 == rows || (t->r1 - t->r0) % RC_ROW_GROUP == 0);
        next = t->r1;
    }
    *covers = ok && next == rows;
    return n;
}

/* Run jobs [0, n) of p: on the calling thread when the pool has one thread or the work is small. */
static void rc_rows_run(rc_pool *pool, rc_rows_plan *p, int n) {
    uint64_t total = 0;
    for (int i = 0; i < n; i++) total += p->jobs[i].task_bytes * p->jobs[i].out;
    const int n_threads = rc_pool_threads(pool);
    if (n_threads <= 1 || total < RC_MIN_PARALLEL_BYTES) {
        for (int i = 0; i < n; i++) {
            const rc_matmul_job *j = &p->jobs[i];
            j->fn(j->W, j->in, 0, j->out, j->X, j->T, j->Y, j->out);
        }
        return;
    }
    rc_pool_run(pool, rc_rows_plan_task, p, rc_rows_plan_make(p, n, n_threads));
}

static void rc_job_init(rc_matmul_job *j, const rc_kernel_set *ks, const rc_tensor *W, const float *X, uint64_t T,
                        float *Y) {
    j->fn = ks->rows[W->dtype] ? ks->rows[W->dtype] : rc_kernels_scalar.rows[W->dtype];
    j->W = W->data;
    j->out = rc_rows(W);
    j->in = rc_cols(W);
    j->T = T;
    j->task_bytes = rc_row_bytes(W->dtype, j->in) * (T ? T : 1);
    j->X = X;
    j->Y = Y;
}

/* The activations of the rows path: products [0, n) each get T prepared vectors at qx + off[i]. A batch's
 * (T * in >= RC_GX_MIN_PARALLEL floats in all) are quantized on the pool, one task per (product, vector),
 * instead of on the calling thread while the others wait (Eagle-7B q4, batch of 8: 2.3% of a step). */
typedef struct {
    const rc_tensor *W[RC_MATMUL_MANY_MAX];
    const float *X[RC_MATMUL_MANY_MAX];
    uint8_t *qx[RC_MATMUL_MANY_MAX];
    int n;
    uint64_t T;
} rc_qx_job;

static void rc_qx_task(void *ctx, int task, int n_tasks) {
    const rc_qx_job *j = (const rc_qx_job *)ctx;
    const int i = task / (int)j->T;
    const uint64_t t = (uint64_t)task % j->T, in = rc_cols(j->W[i]);
    const rc_colscale cs = rc_colscale_of(j->W[i]);
    rc_qx_prepare(j->W[i]->dtype, j->X[i] + t * in, in, 1, &cs, j->qx[i] + t * rc_qx_stride(j->W[i]->dtype, in));
    (void)n_tasks;
}

static void rc_qx_run(rc_pool *pool, const rc_qx_job *j) {
    uint64_t floats = 0;
    for (int i = 0; i < j->n; i++) floats += j->T * rc_cols(j->W[i]);
    if (pool && rc_pool_threads(pool) > 1 && j->n * j->T > 1 && floats >= RC_GX_MIN_PARALLEL &&
        (uint64_t)j->n * j->T <= INT32_MAX) {
        rc_pool_run(pool, rc_qx_task, (void *)j, (int)((uint64_t)j->n * j->T));
        return;
    }
    for (int i = 0; i < j->n; i++) {
        const rc_colscale cs = rc_colscale_of(j->W[i]);
        rc_qx_prepare(j->W[i]->dtype, j->X[i], rc_cols(j->W[i]), j->T, &cs, j->qx[i]);
    }
}

static void rc_matmul_rowwise(const rc_kernel_set *ks, rc_pool *pool, const rc_tensor *W, const float *X,
                              uint64_t T, float *Y) {
    rc_rows_plan plan, *p = &plan; /* ~13 KB of stack */
    rc_matmul_job *j = &p->jobs[0];
    rc_job_init(j, ks, W, X, T, Y);
    void *owned = NULL;
    if (rc_is_quantized(W->dtype)) {
        uint64_t bytes = T * rc_qx_stride(W->dtype, j->in);
        void *qx = pool ? rc_pool_scratch(pool, (size_t)bytes) : (owned = rc_alloc((size_t)bytes));
        if (!qx) {
            rc_rows_dequant_blocks(W, X, T, Y);
            return;
        }
        rc_qx_job q = {{W}, {X}, {(uint8_t *)qx}, 1, T};
        rc_qx_run(pool, &q);
        j->X = qx;
    }
    rc_rows_run(pool, p, 1);
    rc_free(owned);
}

/* ---- several products in one pool job ---------------------------------------------------------------------
 * A decode step runs ~9 products per layer; each pool job ends with the threads waiting for each other, and
 * the next starts with a cold prefetch stream. Products that do not depend on each other (r, k, v, g of a
 * time mix; key and receptance of a channel mix) therefore run as one job: each product's activations are
 * prepared first (its own slice of the pool scratch), then the guided tasks of all of them (rc_rows_plan) are
 * claimed from one counter. */
void rc_matmul_many(rc_pool *pool, const rc_matmul_op *ops, int n, uint64_t T) {
    const rc_kernel_set *ks = rc_kernels();
    int fused = n > 1 && n <= RC_MATMUL_MANY_MAX && rc_pool_threads(pool) > 1;
    for (int i = 0; fused && i < n; i++) {
        const uint32_t dt = ops[i].W->dtype;
        const uint64_t min_t = ks->gemm_min_t[dt] ? ks->gemm_min_t[dt] : RC_GEMM_MIN_T;
        if (ks->gemm[dt] && T >= min_t) fused = 0; /* the GEMM path: each product is long enough alone */
    }
    rc_rows_plan plan, *p = fused ? &plan : NULL; /* ~13 KB of stack */
    uint64_t off[RC_MATMUL_MANY_MAX + 1] = {0}; /* byte offsets of each product's prepared vectors */
    for (int i = 0; p && i < n; i++) {
        const uint32_t dt = ops[i].W->dtype;
        off[i + 1] = off[i] + (rc_is_quantized(dt) ? (T * rc_qx_stride(dt, rc_cols(ops[i].W)) + 63) / 64 * 64 : 0);
    }
    uint8_t *qx = p && off[n] ? rc_pool_scratch(pool, (size_t)off[n]) : NULL;
    if (!p || (off[n] && !qx)) {
        for (int i = 0; i < n; i++) rc_matmul_with(ks, pool, ops[i].W, ops[i].X, T, ops[i].Y);
        return;
    }
    rc_qx_job q = {{NULL}, {NULL}, {NULL}, 0, T};
    for (int i = 0; i < n; i++) {
        const rc_tensor *W = ops[i].W;
        rc_job_init(&p->jobs[i], ks, W, ops[i].X, T, ops[i].Y);
        if (rc_is_quantized(W->dtype)) {
            q.W[q.n] = W;
            q.X[q.n] = ops[i].X;
            q.qx[q.n++] = qx + off[i];
            p->jobs[i].X = qx + off[i];
        }
    }
    rc_qx_run(pool, &q);
    rc_rows_run(pool, p, n);
}

uint64_t rc_matmul_scratch(uint64_t widest, uint64_t T, int n_threads) {
    uint64_t act = rc_qx_stride(RWKV_DTYPE_Q8_0, widest);
    if (rc_gx_stride(widest) > act) act = rc_gx_stride(widest);
    if (rc_fx_stride(widest) * sizeof(float) > act) act = rc_fx_stride(widest) * sizeof(float);
    return act * T + (uint64_t)(n_threads > 1 ? n_threads * RC_TASKS_PER_THREAD : 1) * RC_GEMM_SCRATCH;
}

void rc_matmul_path(const rc_kernel_set *ks, rc_pool *pool, const rc_tensor *W, const float *X, uint64_t T,
                    float *Y, int path) {
    rc_gemm_fn gemm = ks->gemm[W->dtype];
    const uint64_t min_t = ks->gemm_min_t[W->dtype] ? ks->gemm_min_t[W->dtype] : RC_GEMM_MIN_T;
    int use_gemm = gemm && (path == RC_PATH_GEMM || (path == RC_PATH_AUTO && T >= min_t));
    if (use_gemm && rc_matmul_gemm(ks, gemm, pool, W, X, T, Y)) return;
    rc_matmul_rowwise(ks, pool, W, X, T, Y);
}

void rc_matmul_with(const rc_kernel_set *ks, rc_pool *pool, const rc_tensor *W, const float *X, uint64_t T,
                    float *Y) {
    rc_matmul_path(ks, pool, W, X, T, Y, RC_PATH_AUTO);
}

void rc_matmul(rc_pool *pool, const rc_tensor *W, const float *X, uint64_t T, float *Y) {
    rc_matmul_with(rc_kernels(), pool, W, X, T, Y);
}

void rc_tensor_row(const rc_tensor *W, uint64_t row, float *out) {
    const rc_kernel_set *ks = rc_kernels();
    rc_row_fn fn = ks->row[W->dtype] ? ks->row[W->dtype] : rc_kernels_scalar.row[W->dtype];
    fn(W->data, rc_rows(W), rc_cols(W), row, out);
    for (uint32_t i = 0; i < W->n_outliers; i++) out[(uint64_t)W->outlier_cols[i]] *= W->outlier_scales[i];
}

int rwkv_matmul(const char *kernel, uint32_t dtype, const void *W, uint64_t rows, uint64_t cols, const float *X,
                uint64_t T, float *Y, int n_threads) {
    if (!W || !X || !Y) return rc_error(RWKV_ERR_ARG, "NULL argument");
    if (rows == 0 || cols == 0 || T == 0) return rc_error(RWKV_ERR_ARG, "empty product");
    if (n_threads < 1 || n_threads > 1024) return rc_error(RWKV_ERR_ARG, "n_threads %d out of range", n_threads);
    uint64_t rb = rc_row_bytes(dtype, cols), nbytes;
    if (!rc_matmul_supports(dtype) || rb == 0)
        return rc_error(RWKV_ERR_ARG, "dtype %s cannot hold rows of %llu", rwkv_dtype_name(dtype),
                        (unsigned long long)cols);
    if (!rc_mul_u64(rb, rows, &nbytes)) return rc_error(RWKV_ERR_ARG, "matrix size overflows");
    const rc_kernel_set *ks = kernel ? rc_kernels_by_name(kernel) : rc_kernels();
    if (!ks) return rc_error_prefix(RWKV_ERR_UNSUPPORTED, "rwkv_matmul");
    rc_pool *pool = rc_pool_new(n_threads);
    if (!pool) return rc_error(RWKV_ERR_OOM, "cannot start %d threads", n_threads);
    rc_tensor t = {"W", dtype, 2, {rows, cols, 0, 0}, rows * cols, nbytes, W, 0, NULL, NULL};
    rc_matmul_with(ks, pool, &t, X, T, Y);
    rc_pool_free(pool);
    return RWKV_OK;
}
