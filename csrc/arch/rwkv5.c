/* rwkv5.c: the RWKV-5 family forward pass (5.0, 5.1 and 5.2 "Eagle"), float32 compute.
 * The math is ../docs/RWKV_REFERENCE.md section 2.2, as the official rwkv package computes it:
 *
 *   time mix    xx = LN(x; ln1);  x_* = xx*mu_* + prev*(1-mu_*)         (prev = previous token's xx)
 *               r, k, v = W_* x_*;  g = silu(W_g x_g)                    (5.1, 5.2; 5.0 has no gate)
 *               per head:  out[j] = sum_i r[i] (u[i] k[i] v[j] + S[i][j]);   S[i][j] = w[i] S[i][j] + k[i] v[j]
 *               x += W_o ( GN(out; ln_x, eps 64e-5) * g )
 *   channel mix xx = LN(x; ln2);  k = relu(W_k x_k)^2;  x += sigmoid(W_r x_r) * (W_v k)
 *
 * The variants differ only in the decay and bonus (one per head in 5.0/5.1, one per channel in 5.2) and in
 * the gate (absent in 5.0); the converter stores w = exp(-exp(time_decay)) and u (5.0: exp(time_first))
 * under the names time_decay and time_faaaa for all three (docs/FILE_FORMAT.md).
 *
 * Every function processes a batch of T tokens (rc_batch): one sequence's prompt, or one token from each
 * of several sequences. Per-token work is done for all T rows at once, so matrix products see T vectors;
 * only the token shift and the WKV recurrence walk each sequence in order. */
#include <stdlib.h>

#include "arch/arch_common.h"
#include "kernels/matmul.h"
#include "ops/ops.h"
#include "ops/wkv.h"

typedef struct {
    uint32_t arch;
    int per_head;  /* time_decay, time_faaaa: [H] (one per head) instead of [H, N] */
    int gate;      /* time_mix_g and gate.weight exist */
} v5_variant;

static const v5_variant V5_VARIANTS[] = {
    {RWKV_ARCH_V5_0, 1, 0},
    {RWKV_ARCH_V5_1, 1, 1},
    {RWKV_ARCH_V5_2, 0, 1},
};

typedef struct {
    v5_variant var;
    rc_tensor ln1_w, ln1_b, ln2_w, ln2_b;
    rc_tensor mix_k, mix_v, mix_r, mix_g;  /* [C]; mix_g only with a gate */
    rc_tensor decay, faaaa;                /* [H, N] or [H]: w = exp(-exp(time_decay)), u (stored transformed) */
    rc_tensor Wr, Wk, Wv, Wg;              /* [A, C]; Wg only with a gate */
    rc_tensor Wo;                          /* [C, A] */
    rc_tensor lnx_w, lnx_b;                /* [A] */
    rc_tensor fmix_k, fmix_r;              /* [C] */
    rc_tensor fWk;                         /* [F, C] */
    rc_tensor fWr;                         /* [C, C] */
    rc_tensor fWv;                         /* [C, F] */
} rc_v5_layer;

static const v5_variant *v5_variant_of(uint32_t arch) {
    for (size_t i = 0; i < sizeof V5_VARIANTS / sizeof *V5_VARIANTS; i++)
        if (V5_VARIANTS[i].arch == arch) return &V5_VARIANTS[i];
    return NULL;
}

static int v5_bind(rwkv_model *m) {
    const rwkv_model_info *in = &m->info;
    const uint64_t C = in->n_embd, A = in->dim_att, H = in->n_head, N = in->head_size, F = in->n_ffn;
    const v5_variant *var = v5_variant_of(in->arch);
    if (!var) return rc_error(RWKV_ERR_UNSUPPORTED, "architecture %u is not an RWKV-5 variant", in->arch);
    rc_v5_layer *L = calloc(in->n_layer, sizeof *L);
    if (!L) return rc_error(RWKV_ERR_OOM, "out of memory");
    m->layers = L;
    for (uint32_t i = 0; i < in->n_layer; i++) {
        rc_v5_layer *l = &L[i];
        l->var = *var;
        int st;
#define V(field, name, n) if ((st = rc_bind_layer_tensor(m, &l->field, i, name, 0, 1, n, 0, 0))) return st
#define HN(field, name)                                                                                   \
    if ((st = var->per_head ? rc_bind_layer_tensor(m, &l->field, i, name, 0, 1, H, 0, 0)                \
                            : rc_bind_layer_tensor(m, &l->field, i, name, 0, 2, H, N, 0)))              \
        return st
#define M(field, name, rows, cols) if ((st = rc_bind_layer_tensor(m, &l->field, i, name, 1, 2, rows, cols, 0))) return st
        V(ln1_w, "blocks.%u.ln1.weight", C);
        V(ln1_b, "blocks.%u.ln1.bias", C);
        V(ln2_w, "blocks.%u.ln2.weight", C);
        V(ln2_b, "blocks.%u.ln2.bias", C);
        V(mix_k, "blocks.%u.att.time_mix_k", C);
        V(mix_v, "blocks.%u.att.time_mix_v", C);
        V(mix_r, "blocks.%u.att.time_mix_r", C);
        HN(decay, "blocks.%u.att.time_decay");
        HN(faaaa, "blocks.%u.att.time_faaaa");
        M(Wr, "blocks.%u.att.receptance.weight", A, C);
        M(Wk, "blocks.%u.att.key.weight", A, C);
        M(Wv, "blocks.%u.att.value.weight", A, C);
        if (var->gate) {
            V(mix_g, "blocks.%u.att.time_mix_g", C);
            M(Wg, "blocks.%u.att.gate.weight", A, C);
        }
        M(Wo, "blocks.%u.att.output.weight", C, A);
        V(lnx_w, "blocks.%u.att.ln_x.weight", A);
        V(lnx_b, "blocks.%u.att.ln_x.bias", A);
        V(fmix_k, "blocks.%u.ffn.time_mix_k", C);
        V(fmix_r, "blocks.%u.ffn.time_mix_r", C);
        M(fWk, "blocks.%u.ffn.key.weight", F, C);
        M(fWr, "blocks.%u.ffn.receptance.weight", C, C);
        M(fWv, "blocks.%u.ffn.value.weight", C, F);
#undef V
#undef HN
#undef M
    }
    return RWKV_OK;
}

static void v5_unbind(rwkv_model *m) {
    free(m->layers);
    m->layers = NULL;
}

/* Per layer: att_x_prev[C], S[H][N][N] (i = key, j = value), ffn_x_prev[C]. */
static uint64_t v5_state_floats(const rwkv_model_info *in) {
    return 2 * (uint64_t)in->n_embd + (uint64_t)in->n_head * in->head_size * in->head_size;
}

static void v5_state_init(const rwkv_model_info *in, float *s) { memset(s, 0, v5_state_floats(in) * sizeof(float)); }

/* Scratch per token: xx, prev, xr, xk, xv, xg, out [C] each; r, k, v, g, y [A] each; ffn hidden [F]. */
static uint64_t v5_scratch_floats(const rwkv_model_info *in, uint64_t T) {
    return T * (7 * (uint64_t)in->n_embd + 5 * (uint64_t)in->dim_att + in->n_ffn);
}

typedef struct {
    const rc_batch *b;
    const rc_v5_layer *l;
    uint64_t A, H, N, C, layer_off;
    const float *r, *k, *v;
    float *g; /* NULL without the gate (5.0) */
    float *y;
} v5_wkv_job;

/* One task = one (sequence, head) pair. */
static void v5_wkv_task(void *ctx, int task, int n_tasks) {
    const v5_wkv_job *j = (const v5_wkv_job *)ctx;
    const uint64_t s = (uint64_t)task / j->H, h = (uint64_t)task % j->H, N = j->N;
    float *S = j->b->state[s] + j->layer_off + j->C + h * N * N; /* [N][N] */
    const int per_head = j->l->var.per_head;
    const float *u = (const float *)j->l->faaaa.data + (per_head ? h : h * N);
    const float *w = (const float *)j->l->decay.data + (per_head ? h : h * N);
    const uint64_t step = per_head ? 0 : 1, o = h * N;
    rc_wkv5(j->b->seq_start[s], j->b->seq_start[s + 1], j->A, N, j->r + o, j->k + o, j->v + o, u, step, w, step,
            0, S, j->y + o);
    rc_head_out(j->b->seq_start[s], j->b->seq_start[s + 1], j->A, N, o, j->l->lnx_w.data, j->l->lnx_b.data, j->g,
                j->y);
}

static void v5_time_mix(rwkv_model *m, const rc_v5_layer *l, uint64_t layer_off, const rc_batch *b, float *x,
                        float *scratch) {
    const rwkv_model_info *in = &m->info;
    const uint64_t T = b->n_tok, C = in->n_embd, A = in->dim_att, H = in->n_head, N = in->head_size;
    const int gate = l->var.gate;
    float *xx = scratch;            /* [T, C] */
    float *prev = xx + T * C;       /* [T, C] */
    float *xr = prev + T * C;       /* [T, C] */
    float *xk = xr + T * C;         /* [T, C] */
    float *xv = xk + T * C;         /* [T, C] */
    float *xg = xv + T * C;         /* [T, C] */
    float *out = xg + T * C;        /* [T, C] */
    float *r = out + T * C;         /* [T, A] */
    float *k = r + T * A;           /* [T, A] */
    float *v = k + T * A;           /* [T, A] */
    float *g = v + T * A;           /* [T, A] */
    float *y = g + T * A;           /* [T, A] */

    rc_layer_norm_rows(m->pool, x, &l->ln1_w, &l->ln1_b, T, C, xx);
    rc_shift_prev(b, layer_off, C, xx, prev);
    for (uint64_t t = 0; t < T; t++) {
        const float *cur = xx + t * C, *pv = prev + t * C;
        rc_token_mix(cur, pv, l->mix_r.data, C, xr + t * C);
        rc_token_mix(cur, pv, l->mix_k.data, C, xk + t * C);
        rc_token_mix(cur, pv, l->mix_v.data, C, xv + t * C);
        if (gate) rc_token_mix(cur, pv, l->mix_g.data, C, xg + t * C);
    }

    const rc_matmul_op rkvg[4] = {{&l->Wr, xr, r}, {&l->Wk, xk, k}, {&l->Wv, xv, v}, {&l->Wg, xg, g}};
    rc_matmul_many(m->pool, rkvg, gate ? 4 : 3, T);

    /* per (sequence, head): the recurrence, then GroupNorm and the gate silu(g) (rc_head_out) */
    v5_wkv_job job = {b, l, A, H, N, C, layer_off, r, k, v, gate ? g : NULL, y};
    rc_pool_run_sized(m->pool, v5_wkv_task, &job, (int)(b->n_seq * H), T * H * N * N, RC_WKV_MIN_PARALLEL_WORK);
    rc_matmul(m->pool, &l->Wo, y, T, out);
    rc_add_inplace(x, out, T * C);
}

static void v5_channel_mix(rwkv_model *m, const rc_v5_layer *l, uint64_t layer_off, const rc_batch *b, float *x,
                           float *scratch) {
    const rwkv_model_info *in = &m->info;
    const uint64_t T = b->n_tok, C = in->n_embd, H = in->n_head, N = in->head_size;
    float *xx = scratch;            /* [T, C] */
    float *prev = xx + T * C;       /* [T, C] */
    float *xk = prev + T * C;       /* [T, C] */
    float *xr = xk + T * C;         /* [T, C] */
    float *r = xr + T * C;          /* [T, C] */
    float *vo = r + T * C;          /* [T, C] */
    float *hk = vo + T * C;         /* [T, n_ffn] */

    rc_layer_norm_rows(m->pool, x, &l->ln2_w, &l->ln2_b, T, C, xx);
    rc_shift_prev(b, layer_off + C + H * N * N, C, xx, prev);
    for (uint64_t t = 0; t < T; t++) {
        rc_token_mix(xx + t * C, prev + t * C, l->fmix_k.data, C, xk + t * C);
        rc_token_mix(xx + t * C, prev + t * C, l->fmix_r.data, C, xr + t * C);
    }

    rc_channel_mix_rkv(m, &l->fWk, &l->fWr, &l->fWv, T, xk, xr, hk, r, vo, x);
}

static void v5_layer(rwkv_model *m, uint32_t layer, const rc_batch *b, float *x, float *scratch) {
    const rc_v5_layer *l = &((const rc_v5_layer *)m->layers)[layer];
    uint64_t layer_off = (uint64_t)layer * v5_state_floats(&m->info);
    v5_time_mix(m, l, layer_off, b, x, scratch);
    v5_channel_mix(m, l, layer_off, b, x, scratch);
}

/* One table for 5.0, 5.1 and 5.2: bind reads the variant from the header's arch id. */
const rc_arch rc_arch_v5 = {
    .id = RWKV_ARCH_V5_2,
    .bind = v5_bind,
    .unbind = v5_unbind,
    .state_floats_per_layer = v5_state_floats,
    .state_init_layer = v5_state_init,
    .scratch_floats = v5_scratch_floats,
    .layer = v5_layer,
};
