/* arch_common.c: helpers shared by the forward passes (see arch_common.h). */
#include <stdio.h>

#include "arch/arch_common.h"
#include "kernels/matmul.h"
#include "ops/ops.h"

void rc_layer_norm_rows(const float *x, const rc_tensor *w, const rc_tensor *b, uint64_t T, uint64_t C, float *y) {
    for (uint64_t t = 0; t < T; t++) rc_layer_norm(x + t * C, w->data, b->data, C, RC_LN_EPS, y + t * C);
}

void rc_channel_mix_rkv(rwkv_model *m, const rc_tensor *Wk, const rc_tensor *Wr, const rc_tensor *Wv, uint64_t T,
                        const float *xk, const float *xr, float *hk, float *r, float *vo, float *x) {
    const uint64_t C = rc_rows(Wr), F = rc_rows(Wk);
    const rc_matmul_op kr[2] = {{Wk, xk, hk}, {Wr, xr, r}};
    rc_matmul_many(m->pool, kr, 2, T);
    rc_relu_sq_inplace(hk, T * F);
    rc_matmul(m->pool, Wv, hk, T, vo);
    rc_sigmoid_inplace(r, T * C);
    rc_mul_inplace(vo, r, T * C);
    rc_add_inplace(x, vo, T * C);
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
