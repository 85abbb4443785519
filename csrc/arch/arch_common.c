/* arch_common.c: helpers shared by the forward passes (see arch_common.h). */
#include <stdio.h>

#include "arch/arch_common.h"
#include "kernels/matmul.h"
#include "ops/ops.h"

/* ---- per-token work of a batch or a prompt on the pool ---------------------------------------------------- */
typedef struct {
    void (*fn)(void *ctx, uint64_t t);
    void *ctx;
} rc_rows_job;

static void rc_rows_task(void *ctx, int task, int n_tasks) {
    const rc_rows_job *j = (const rc_rows_job *)ctx;
    j->fn(j->ctx, (uint64_t)task);
    (void)n_tasks;
}

void rc_for_rows(rc_pool *pool, uint64_t T, uint64_t width, void (*fn)(void *ctx, uint64_t t), void *ctx) {
    rc_rows_job j = {fn, ctx};
    if (pool && T > 1 && T <= INT32_MAX)
        rc_pool_run_sized(pool, rc_rows_task, &j, (int)T, T * width, RC_ROWS_MIN_PARALLEL);
    else
        for (uint64_t t = 0; t < T; t++) fn(ctx, t);
}

typedef struct {
    const float *x, *w, *b;
    uint64_t C;
    float *y;
} rc_ln_rows;

static void rc_ln_row(void *ctx, uint64_t t) {
    const rc_ln_rows *j = (const rc_ln_rows *)ctx;
    rc_layer_norm(j->x + t * j->C, j->w, j->b, j->C, RC_LN_EPS, j->y + t * j->C);
}

void rc_layer_norm_rows(rc_pool *pool, const float *x, const rc_tensor *w, const rc_tensor *b, uint64_t T, uint64_t C,
                        float *y) {
    rc_ln_rows j = {x, w->data, b->data, C, y};
    rc_for_rows(pool, T, C, rc_ln_row, &j);
}

typedef struct {
    float *hk, *r, *vo, *x;
    uint64_t C, F;
} rc_cmix_rows;

static void rc_cmix_hidden_row(void *ctx, uint64_t t) { /* relu(k)^2 */
    const rc_cmix_rows *j = (const rc_cmix_rows *)ctx;
    rc_relu_sq_inplace(j->hk + t * j->F, j->F);
}

static void rc_cmix_out_row(void *ctx, uint64_t t) { /* x += sigmoid(r) * v */
    const rc_cmix_rows *j = (const rc_cmix_rows *)ctx;
    float *r = j->r + t * j->C, *vo = j->vo + t * j->C;
    rc_sigmoid_inplace(r, j->C);
    rc_mul_inplace(vo, r, j->C);
    rc_add_inplace(j->x + t * j->C, vo, j->C);
}

void rc_channel_mix_rkv(rwkv_model *m, const rc_tensor *Wk, const rc_tensor *Wr, const rc_tensor *Wv, uint64_t T,
                        const float *xk, const float *xr, float *hk, float *r, float *vo, float *x) {
    const uint64_t C = rc_rows(Wr), F = rc_rows(Wk);
    const rc_matmul_op kr[2] = {{Wk, xk, hk}, {Wr, xr, r}};
    rc_matmul_many(m->pool, kr, 2, T);
    rc_cmix_rows j = {hk, r, vo, x, C, F};
    rc_for_rows(m->pool, T, F, rc_cmix_hidden_row, &j);
    rc_matmul(m->pool, Wv, hk, T, vo);
    rc_for_rows(m->pool, T, C, rc_cmix_out_row, &j);
}

void rc_shift_prev(const rc_batch *b, uint64_t state_off, uint64_t C, const float *xx, float *prev) {
    for (uint64_t s = 0; s < b->n_seq; s++) {
        const uint64_t t0 = b->seq_start[s], t1 = b->seq_start[s + 1];
        if (t1 == t0) continue;
        float *x_prev = b->state[s] + state_off; /* [C] */
        memcpy(prev + t0 * C, x_prev, C * sizeof(float));
        if (t1 - t0 > 1) memcpy(prev + (t0 + 1) * C, xx + t0 * C, (t1 - t0 - 1) * C * sizeof(float));
        memcpy(x_prev, xx + (t1 - 1) * C, C * sizeof(float));
    }
}

int rc_layer_tensor_dim(const rwkv_model *m, uint32_t layer, const char *fmt, uint32_t n_dims, uint32_t dim,
                        uint64_t *out) {
    char name[RC_NAME_CAP + 16];
    snprintf(name, sizeof name, fmt, layer);
    const rc_tensor *t = rc_file_find(&m->file, name);
    if (!t) return rc_error(RWKV_ERR_FORMAT, "tensor %s is missing", name);
    if (t->n_dims != n_dims)
        return rc_error(RWKV_ERR_FORMAT, "tensor %s has %u dimensions, expected %u", name, t->n_dims, n_dims);
    *out = t->shape[dim];
    return RWKV_OK;
}

rc_tensor rc_tensor_slice(const rc_tensor *t, uint64_t index, uint64_t rows, uint64_t cols) {
    rc_tensor v = *t;
    v.n_dims = 2;
    v.shape[0] = rows;
    v.shape[1] = cols;
    v.shape[2] = v.shape[3] = 0;
    v.n_elements = rows * cols;
    v.nbytes = v.n_elements * sizeof(float);
    v.data = (const float *)t->data + index * rows * cols;
    return v;
}

void rc_head_out(uint64_t t0, uint64_t t1, uint64_t A, uint64_t N, uint64_t o, const float *lw, const float *lb,
                 float *g, float *y) {
    for (uint64_t t = t0; t < t1; t++) {
        float *yt = y + t * A + o;
        rc_layer_norm(yt, lw + o, lb + o, N, RC_GN_EPS, yt);
        if (g) {
            float *gt = g + t * A + o;
            rc_silu_inplace(gt, N);
            rc_mul_inplace(yt, gt, N);
        }
    }
}
