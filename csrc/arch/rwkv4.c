/* rwkv4.c: the RWKV-4 forward pass (the RWKV paper's models: Pile, Raven, World v1), float32 compute.
 * The math is ../docs/RWKV_REFERENCE.md section 2.1, as the official rwkv package computes it:
 *
 *   time mix    xx = LN(x; ln1);  x_* = xx*mu_* + prev*(1-mu_*)         (prev = previous token's xx)
 *               r = sigmoid(W_r x_r);  k = W_k x_k;  v = W_v x_v
 *               wkv per channel with the overflow-safe state (aa, bb, pp), w = -exp(time_decay) and the
 *               log-space bonus u = time_first (ops/wkv.h, rc_wkv4)
 *               x += W_o (r * wkv)
 *   channel mix xx = LN(x; ln2);  k = relu(W_k x_k)^2;  x += sigmoid(W_r x_r) * (W_v k)
 *
 * The converter stores w = -exp(time_decay) under the name time_decay (docs/FILE_FORMAT.md). Every
 * function processes a batch of T tokens (rc_batch); only the token shift and the WKV recurrence walk each
 * sequence in order. */
#include <stdlib.h>

#include "arch/arch_common.h"
#include "kernels/matmul.h"
#include "ops/ops.h"
#include "ops/wkv.h"

#define V4_PP_INIT (-1e30f) /* the official package's initial pp (transformers' port uses -1e38) */
#define V4_WKV_BLOCK 64     /* channels per WKV task */

typedef struct {
    rc_tensor ln1_w, ln1_b, ln2_w, ln2_b;
    rc_tensor mix_k, mix_v, mix_r;  /* [C] */
    rc_tensor decay;                /* [A]: w = -exp(time_decay) (stored transformed) */
    rc_tensor first;                /* [A]: u = time_first, as is */
    rc_tensor Wr, Wk, Wv;           /* [A, C] */
    rc_tensor Wo;                   /* [C, A] */
    rc_tensor fmix_k, fmix_r;       /* [C] */
    rc_tensor fWk;                  /* [F, C] */
    rc_tensor fWr;                  /* [C, C] */
    rc_tensor fWv;                  /* [C, F] */
} rc_v4_layer;

static int v4_bind(rwkv_model *m) {
    const rwkv_model_info *in = &m->info;
    const uint64_t C = in->n_embd, A = in->dim_att, F = in->n_ffn;
    if (in->n_head != 1)
        return rc_error(RWKV_ERR_FORMAT, "an RWKV-4 model has n_head 1 (head_size = dim_att), not %u", in->n_head);
    rc_v4_layer *L = calloc(in->n_layer, sizeof *L);
    if (!L) return rc_error(RWKV_ERR_OOM, "out of memory");
    m->layers = L;
    for (uint32_t i = 0; i < in->n_layer; i++) {
        rc_v4_layer *l = &L[i];
        int st;
#define V(field, name, n) if ((st = rc_bind_layer_tensor(m, &l->field, i, name, 0, 1, n, 0, 0))) return st
#define M(field, name, rows, cols) if ((st = rc_bind_layer_tensor(m, &l->field, i, name, 1, 2, rows, cols, 0))) return st
        V(ln1_w, "blocks.%u.ln1.weight", C);
        V(ln1_b, "blocks.%u.ln1.bias", C);
        V(ln2_w, "blocks.%u.ln2.weight", C);
        V(ln2_b, "blocks.%u.ln2.bias", C);
        V(mix_k, "blocks.%u.att.time_mix_k", C);
        V(mix_v, "blocks.%u.att.time_mix_v", C);
        V(mix_r, "blocks.%u.att.time_mix_r", C);
        V(decay, "blocks.%u.att.time_decay", A);
        V(first, "blocks.%u.att.time_first", A);
        M(Wr, "blocks.%u.att.receptance.weight", A, C);
        M(Wk, "blocks.%u.att.key.weight", A, C);
        M(Wv, "blocks.%u.att.value.weight", A, C);
        M(Wo, "blocks.%u.att.output.weight", C, A);
        V(fmix_k, "blocks.%u.ffn.time_mix_k", C);
        V(fmix_r, "blocks.%u.ffn.time_mix_r", C);
        M(fWk, "blocks.%u.ffn.key.weight", F, C);
        M(fWr, "blocks.%u.ffn.receptance.weight", C, C);
        M(fWv, "blocks.%u.ffn.value.weight", C, F);
#undef V
#undef M
    }
    return RWKV_OK;
}

static void v4_unbind(rwkv_model *m) {
    free(m->layers);
    m->layers = NULL;
}

/* Per layer: att_x_prev[C], aa[A], bb[A], pp[A], ffn_x_prev[C] (the official package's order). */
static uint64_t v4_state_floats(const rwkv_model_info *in) { return 2 * (uint64_t)in->n_embd + 3 * (uint64_t)in->dim_att; }

static void v4_state_init(const rwkv_model_info *in, float *s) {
    const uint64_t C = in->n_embd, A = in->dim_att;
    memset(s, 0, v4_state_floats(in) * sizeof(float));
    float *pp = s + C + 2 * A; /* [A] */
    for (uint64_t c = 0; c < A; c++) pp[c] = V4_PP_INIT;
}

/* Scratch per token: xx, prev, xr, xk, xv, out [C] each; r, k, v, wkv [A] each; ffn hidden [F]. */
static uint64_t v4_scratch_floats(const rwkv_model_info *in, uint64_t T) {
    return T * (6 * (uint64_t)in->n_embd + 4 * (uint64_t)in->dim_att + in->n_ffn);
}

typedef struct {
    const rc_batch *b;
    const rc_v4_layer *l;
    uint64_t A, C, layer_off, n_blocks;
    const float *k, *v;
    float *y;
} v4_wkv_job;

/* One task = one (sequence, block of V4_WKV_BLOCK channels) pair. */
static void v4_wkv_task(void *ctx, int task, int n_tasks) {
    const v4_wkv_job *j = (const v4_wkv_job *)ctx;
    const uint64_t s = (uint64_t)task / j->n_blocks, blk = (uint64_t)task % j->n_blocks, A = j->A;
    const uint64_t c0 = blk * V4_WKV_BLOCK, c1 = c0 + V4_WKV_BLOCK < A ? c0 + V4_WKV_BLOCK : A;
    float *aa = j->b->state[s] + j->layer_off + j->C; /* [A] */
    float *bb = aa + A;                                /* [A] */
    float *pp = bb + A;                                /* [A] */
    rc_wkv4(j->b->seq_start[s], j->b->seq_start[s + 1], A, c0, c1, j->k, j->v, j->l->decay.data, j->l->first.data,
            aa, bb, pp, j->y);
}

static void v4_time_mix(rwkv_model *m, const rc_v4_layer *l, uint64_t layer_off, const rc_batch *b, float *x,
                        float *scratch) {
    const rwkv_model_info *in = &m->info;
    const uint64_t T = b->n_tok, C = in->n_embd, A = in->dim_att;
    float *xx = scratch;            /* [T, C] */
    float *prev = xx + T * C;       /* [T, C] */
    float *xr = prev + T * C;       /* [T, C] */
    float *xk = xr + T * C;         /* [T, C] */
    float *xv = xk + T * C;         /* [T, C] */
    float *out = xv + T * C;        /* [T, C] */
    float *r = out + T * C;         /* [T, A] */
    float *k = r + T * A;           /* [T, A] */
    float *v = k + T * A;           /* [T, A] */
    float *y = v + T * A;           /* [T, A] */

    rc_layer_norm_rows(m->pool, x, &l->ln1_w, &l->ln1_b, T, C, xx);
    rc_shift_prev(b, layer_off, C, xx, prev);
    for (uint64_t t = 0; t < T; t++) {
        rc_token_mix(xx + t * C, prev + t * C, l->mix_r.data, C, xr + t * C);
        rc_token_mix(xx + t * C, prev + t * C, l->mix_k.data, C, xk + t * C);
        rc_token_mix(xx + t * C, prev + t * C, l->mix_v.data, C, xv + t * C);
    }

    const rc_matmul_op rkv[3] = {{&l->Wr, xr, r}, {&l->Wk, xk, k}, {&l->Wv, xv, v}};
    rc_matmul_many(m->pool, rkv, 3, T);
    rc_sigmoid_inplace(r, T * A);

    const uint64_t n_blocks = (A + V4_WKV_BLOCK - 1) / V4_WKV_BLOCK;
    v4_wkv_job job = {b, l, A, C, layer_off, n_blocks, k, v, y};
    rc_pool_run_sized(m->pool, v4_wkv_task, &job, (int)(b->n_seq * n_blocks), T * A, RC_WKV_MIN_PARALLEL_WORK);

    rc_mul_inplace(y, r, T * A);
    rc_matmul(m->pool, &l->Wo, y, T, out);
    rc_add_inplace(x, out, T * C);
}

static void v4_channel_mix(rwkv_model *m, const rc_v4_layer *l, uint64_t layer_off, const rc_batch *b, float *x,
                           float *scratch) {
    const rwkv_model_info *in = &m->info;
    const uint64_t T = b->n_tok, C = in->n_embd, A = in->dim_att;
    float *xx = scratch;            /* [T, C] */
    float *prev = xx + T * C;       /* [T, C] */
    float *xk = prev + T * C;       /* [T, C] */
    float *xr = xk + T * C;         /* [T, C] */
    float *r = xr + T * C;          /* [T, C] */
    float *vo = r + T * C;          /* [T, C] */
    float *hk = vo + T * C;         /* [T, n_ffn] */

    rc_layer_norm_rows(m->pool, x, &l->ln2_w, &l->ln2_b, T, C, xx);
    rc_shift_prev(b, layer_off + C + 3 * A, C, xx, prev);
    for (uint64_t t = 0; t < T; t++) {
        rc_token_mix(xx + t * C, prev + t * C, l->fmix_k.data, C, xk + t * C);
        rc_token_mix(xx + t * C, prev + t * C, l->fmix_r.data, C, xr + t * C);
    }

    rc_channel_mix_rkv(m, &l->fWk, &l->fWr, &l->fWv, T, xk, xr, hk, r, vo, x);
}

static void v4_layer(rwkv_model *m, uint32_t layer, const rc_batch *b, float *x, float *scratch) {
    const rc_v4_layer *l = &((const rc_v4_layer *)m->layers)[layer];
    uint64_t layer_off = (uint64_t)layer * v4_state_floats(&m->info);
    v4_time_mix(m, l, layer_off, b, x, scratch);
    v4_channel_mix(m, l, layer_off, b, x, scratch);
}

const rc_arch rc_arch_v4 = {
    .id = RWKV_ARCH_V4,
    .bind = v4_bind,
    .unbind = v4_unbind,
    .state_floats_per_layer = v4_state_floats,
    .state_init_layer = v4_state_init,
    .scratch_floats = v4_scratch_floats,
    .layer = v4_layer,
};
