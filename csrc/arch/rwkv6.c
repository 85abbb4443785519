/* rwkv6.c: the RWKV-6 "Finch" forward pass, float32 compute.
 * The math is ../docs/RWKV_REFERENCE.md section 2.3, as the official rwkv package computes it. From v6 on
 * the token shift is a lerp: d = prev - xx, x_* = xx + d * coef (prev = previous token's xx).
 *
 *   time mix    xx = LN(x; ln1);  d = prev - xx
 *               ddlerp: m = tanh(W1 (xx + d*maa_x)) [5*Dm];  m_i = W2_i m[i*Dm : (i+1)*Dm] [C], i = w,k,v,r,g
 *                       x_i = xx + d * (maa_i + m_i)
 *               r, k, v = W_* x_*;  g = silu(W_g x_g)
 *               decay:  w = exp(-exp(time_decay + D2 tanh(D1 x_w)))       (per token, per channel)
 *               per head: out[j] = sum_i r[i] (u[i] k[i] v[j] + S[i][j]);  S[i][j] = w[i] S[i][j] + k[i] v[j]
 *               x += W_o ( GN(out; ln_x, eps 64e-5) * g )
 *   channel mix xx = LN(x; ln2);  d = prev - xx;  k = relu(W_k (xx + d*maa_k))^2
 *               x += sigmoid(W_r (xx + d*maa_r)) * (W_v k)
 *
 * The LoRA matrices W1, W2_i, D1, D2 are stored by the converter as f32 [out, in] matrices (the transposes
 * of the checkpoint's), so rc_matmul applies them to all T rows at once like every other projection.
 * Their ranks Dm and Dd are read from the shapes (larger models use larger ranks). */
#include <math.h>
#include <stdlib.h>

#include "arch/arch_common.h"
#include "kernels/matmul.h"
#include "ops/ops.h"
#include "ops/wkv.h"

enum { V6_W, V6_K, V6_V, V6_R, V6_G, V6_NMIX }; /* the official order of the five ddlerp mixes */

typedef struct {
    uint64_t Dm, Dd;                       /* LoRA ranks: token-shift mix, decay */
    rc_tensor ln1_w, ln1_b, ln2_w, ln2_b;
    rc_tensor maa_x;                       /* [C] */
    rc_tensor maa[V6_NMIX];                /* [C] each: time_maa_{w,k,v,r,g} */
    rc_tensor maa_W1;                      /* [5*Dm, C]  (time_maa_w1 [C, 5*Dm], transposed) */
    rc_tensor maa_W2_all;                  /* [5, C, Dm] (time_maa_w2 [5, Dm, C], each slice transposed) */
    rc_tensor maa_W2[V6_NMIX];             /* [C, Dm] views of maa_W2_all */
    rc_tensor decay;                       /* [A]: time_decay, raw (w is data-dependent) */
    rc_tensor dec_W1;                      /* [Dd, C] (time_decay_w1 [C, Dd], transposed) */
    rc_tensor dec_W2;                      /* [A, Dd] (time_decay_w2 [Dd, A], transposed) */
    rc_tensor faaaa;                       /* [H, N]: u, as is */
    rc_tensor Wr, Wk, Wv, Wg;              /* [A, C] */
    rc_tensor Wo;                          /* [C, A] */
    rc_tensor lnx_w, lnx_b;                /* [A] */
    rc_tensor fmaa_k, fmaa_r;              /* [C] */
    rc_tensor fWk;                         /* [F, C] */
    rc_tensor fWr;                         /* [C, C] */
    rc_tensor fWv;                         /* [C, F] */
} rc_v6_layer;

static int v6_bind(rwkv_model *m) {
    const rwkv_model_info *in = &m->info;
    const uint64_t C = in->n_embd, A = in->dim_att, H = in->n_head, N = in->head_size, F = in->n_ffn;
    rc_v6_layer *L = calloc(in->n_layer, sizeof *L);
    if (!L) return rc_error(RWKV_ERR_OOM, "out of memory");
    m->layers = L;
    static const char *const maa_names[V6_NMIX] = {"blocks.%u.att.time_maa_w", "blocks.%u.att.time_maa_k",
                                                   "blocks.%u.att.time_maa_v", "blocks.%u.att.time_maa_r",
                                                   "blocks.%u.att.time_maa_g"};
    for (uint32_t i = 0; i < in->n_layer; i++) {
        rc_v6_layer *l = &L[i];
        int st;
#define V(field, name, n) if ((st = rc_bind_layer_tensor(m, &l->field, i, name, 0, 1, n, 0, 0))) return st
#define M(field, name, rows, cols) if ((st = rc_bind_layer_tensor(m, &l->field, i, name, 1, 2, rows, cols, 0))) return st
#define LORA(field, name, n_dims, d0, d1, d2) \
    if ((st = rc_bind_layer_tensor(m, &l->field, i, name, 0, n_dims, d0, d1, d2))) return st
        uint64_t rows;
        if ((st = rc_layer_tensor_dim(m, i, "blocks.%u.att.time_maa_w1", 2, 0, &rows))) return st;
        l->Dm = rows / V6_NMIX;
        if ((st = rc_layer_tensor_dim(m, i, "blocks.%u.att.time_decay_w1", 2, 0, &l->Dd))) return st;
        /* the scratch holds a rank in a row of C floats (v6_scratch_floats) */
        if (l->Dm == 0 || rows != V6_NMIX * l->Dm || l->Dm > C || l->Dd == 0 || l->Dd > C)
            return rc_error(RWKV_ERR_FORMAT, "layer %u: LoRA ranks (time_maa_w1 %llu rows, time_decay_w1 %llu rows) "
                            "must be 5*Dm and Dd with 0 < Dm, Dd <= n_embd %llu", i, (unsigned long long)rows,
                            (unsigned long long)l->Dd, (unsigned long long)C);
        V(ln1_w, "blocks.%u.ln1.weight", C);
        V(ln1_b, "blocks.%u.ln1.bias", C);
        V(ln2_w, "blocks.%u.ln2.weight", C);
        V(ln2_b, "blocks.%u.ln2.bias", C);
        V(maa_x, "blocks.%u.att.time_maa_x", C);
        for (int j = 0; j < V6_NMIX; j++) V(maa[j], maa_names[j], C);
        LORA(maa_W1, "blocks.%u.att.time_maa_w1", 2, V6_NMIX * l->Dm, C, 0);
        LORA(maa_W2_all, "blocks.%u.att.time_maa_w2", 3, V6_NMIX, C, l->Dm);
        for (int j = 0; j < V6_NMIX; j++) l->maa_W2[j] = rc_tensor_slice(&l->maa_W2_all, (uint64_t)j, C, l->Dm);
        V(decay, "blocks.%u.att.time_decay", A);
        LORA(dec_W1, "blocks.%u.att.time_decay_w1", 2, l->Dd, C, 0);
        LORA(dec_W2, "blocks.%u.att.time_decay_w2", 2, A, l->Dd, 0);
        if ((st = rc_bind_layer_tensor(m, &l->faaaa, i, "blocks.%u.att.time_faaaa", 0, 2, H, N, 0))) return st;
        M(Wr, "blocks.%u.att.receptance.weight", A, C);
        M(Wk, "blocks.%u.att.key.weight", A, C);
        M(Wv, "blocks.%u.att.value.weight", A, C);
        M(Wg, "blocks.%u.att.gate.weight", A, C);
        M(Wo, "blocks.%u.att.output.weight", C, A);
        V(lnx_w, "blocks.%u.att.ln_x.weight", A);
        V(lnx_b, "blocks.%u.att.ln_x.bias", A);
        V(fmaa_k, "blocks.%u.ffn.time_maa_k", C);
        V(fmaa_r, "blocks.%u.ffn.time_maa_r", C);
        M(fWk, "blocks.%u.ffn.key.weight", F, C);
        M(fWr, "blocks.%u.ffn.receptance.weight", C, C);
        M(fWv, "blocks.%u.ffn.value.weight", C, F);
#undef V
#undef M
#undef LORA
    }
    return RWKV_OK;
}

static void v6_unbind(rwkv_model *m) {
    free(m->layers);
    m->layers = NULL;
}

/* Per layer: att_x_prev[C], S[H][N][N] (i = key, j = value), ffn_x_prev[C] (as v5). */
static uint64_t v6_state_floats(const rwkv_model_info *in) {
    return 2 * (uint64_t)in->n_embd + (uint64_t)in->n_head * in->head_size * in->head_size;
}

static void v6_state_init(const rwkv_model_info *in, float *s) { memset(s, 0, v6_state_floats(in) * sizeof(float)); }

/* Scratch per token: xx, d, xm, 5 mixes, lo, out [C] each (lo holds a LoRA-rank row, rank <= C);
 * m [5C] (5*Dm); r, k, v, g, w, y [A] each; m split by mix [5C] (5*Dm); the channel mix's hidden [F] (it
 * reuses the rest). */
static uint64_t v6_scratch_floats(const rwkv_model_info *in, uint64_t T) {
    return T * (20 * (uint64_t)in->n_embd + 6 * (uint64_t)in->dim_att + in->n_ffn);
}

typedef struct {
    const rc_batch *b;
    const rc_v6_layer *l;
    uint64_t A, H, N, C, layer_off;
    const float *r, *k, *v, *w;
    float *g;
    float *y;
} v6_wkv_job;

/* One task = one (sequence, head) pair. */
static void v6_wkv_task(void *ctx, int task, int n_tasks) {
    const v6_wkv_job *j = (const v6_wkv_job *)ctx;
    const uint64_t s = (uint64_t)task / j->H, h = (uint64_t)task % j->H, N = j->N, o = h * N;
    float *S = j->b->state[s] + j->layer_off + j->C + h * N * N; /* [N][N] */
    const float *u = (const float *)j->l->faaaa.data + o;        /* [N] */
    rc_wkv5(j->b->seq_start[s], j->b->seq_start[s + 1], j->A, N, j->r + o, j->k + o, j->v + o, u, 1, j->w + o, 1,
            j->A, S, j->y + o);
    rc_head_out(j->b->seq_start[s], j->b->seq_start[s + 1], j->A, N, o, j->l->lnx_w.data, j->l->lnx_b.data, j->g,
                j->y);
}

/* The five ddlerp inputs x_i = xx + d * (maa_i + W2_i tanh(W1 (xx + d*maa_x))[i]): xs[i] [T, C] each.
 * The five W2_i products run as one pool job (rc_matmul_many), m_i written into xs[i] and finished in place. */
static void v6_ddlerp(rwkv_model *m, const rc_v6_layer *l, uint64_t T, uint64_t C, const float *xx, const float *d,
                      float *xm, float *mm, float *lo5, float *const *xs) {
    const uint64_t Dm = l->Dm;
    for (uint64_t t = 0; t < T; t++) rc_token_lerp(xx + t * C, d + t * C, l->maa_x.data, C, xm + t * C);
    rc_matmul(m->pool, &l->maa_W1, xm, T, mm); /* mm: [T, 5*Dm] */
    rc_tanh_inplace(mm, T * V6_NMIX * Dm);
    rc_matmul_op ops[V6_NMIX];
    for (int i = 0; i < V6_NMIX; i++) {
        float *lo = lo5 + (uint64_t)i * T * Dm; /* [T, Dm]: mix i's slice of mm */
        for (uint64_t t = 0; t < T; t++) memcpy(lo + t * Dm, mm + t * V6_NMIX * Dm + i * Dm, Dm * sizeof(float));
        ops[i] = (rc_matmul_op){&l->maa_W2[i], lo, xs[i]}; /* xs[i]: [T, C] = m_i */
    }
    rc_matmul_many(m->pool, ops, V6_NMIX, T);
    for (int i = 0; i < V6_NMIX; i++) {
        const float *maa = l->maa[i].data;
        for (uint64_t t = 0; t < T; t++) {
            const float *xt = xx + t * C, *dt = d + t * C;
            float *out = xs[i] + t * C; /* m_i in, x_i out */
            for (uint64_t c = 0; c < C; c++) out[c] = xt[c] + dt[c] * (maa[c] + out[c]);
        }
    }
}

static void v6_time_mix(rwkv_model *m, const rc_v6_layer *l, uint64_t layer_off, const rc_batch *b, float *x,
                        float *scratch) {
    const rwkv_model_info *in = &m->info;
    const uint64_t T = b->n_tok, C = in->n_embd, A = in->dim_att, H = in->n_head, N = in->head_size;
    float *xx = scratch;            /* [T, C] */
    float *d = xx + T * C;          /* [T, C]  prev - xx */
    float *xm = d + T * C;          /* [T, C]  work */
    float *xs[V6_NMIX];             /* [T, C] each: x_w, x_k, x_v, x_r, x_g */
    xs[0] = xm + T * C;
    for (int i = 1; i < V6_NMIX; i++) xs[i] = xs[i - 1] + T * C;
    float *lo = xs[V6_NMIX - 1] + T * C; /* [T, Dm] or [T, Dd] (<= [T, C]) */
    float *out = lo + T * C;        /* [T, C] */
    float *mm = out + T * C;        /* [T, 5*Dm] (<= [T, 5C]) */
    float *r = mm + 5 * T * C;      /* [T, A] */
    float *k = r + T * A;           /* [T, A] */
    float *v = k + T * A;           /* [T, A] */
    float *g = v + T * A;           /* [T, A] */
    float *w = g + T * A;           /* [T, A] */
    float *y = w + T * A;           /* [T, A] */
    float *lo5 = y + T * A;         /* [5, T, Dm] (<= [T, 5C]) */

    rc_layer_norm_rows(m->pool, x, &l->ln1_w, &l->ln1_b, T, C, xx);
    rc_shift_prev(b, layer_off, C, xx, d);
    rc_sub(d, xx, T * C, d);
    v6_ddlerp(m, l, T, C, xx, d, xm, mm, lo5, xs);

    /* r, k, v, g and the decay LoRA's first product (all inputs ready) in one pool job */
    const rc_matmul_op rkvgw[5] = {{&l->Wr, xs[V6_R], r}, {&l->Wk, xs[V6_K], k}, {&l->Wv, xs[V6_V], v},
                                   {&l->Wg, xs[V6_G], g}, {&l->dec_W1, xs[V6_W], lo}}; /* lo: [T, Dd] */
    rc_matmul_many(m->pool, rkvgw, 5, T);

    /* data-dependent decay: w = exp(-exp(time_decay + D2 tanh(D1 x_w))) */
    rc_tanh_inplace(lo, T * l->Dd);
    rc_matmul(m->pool, &l->dec_W2, lo, T, w);        /* [T, A] */
    const float *td = l->decay.data;
    for (uint64_t t = 0; t < T; t++) {
        float *wt = w + t * A;
        for (uint64_t c = 0; c < A; c++) wt[c] = rc_exp(-rc_exp(td[c] + wt[c]));
    }

    /* per (sequence, head): the recurrence, then GroupNorm and the gate silu(g) (rc_head_out) */
    v6_wkv_job job = {b, l, A, H, N, C, layer_off, r, k, v, w, g, y};
    rc_pool_run_sized(m->pool, v6_wkv_task, &job, (int)(b->n_seq * H), T * H * N * N, RC_WKV_MIN_PARALLEL_WORK);
    rc_matmul(m->pool, &l->Wo, y, T, out);
    rc_add_inplace(x, out, T * C);
}

static void v6_channel_mix(rwkv_model *m, const rc_v6_layer *l, uint64_t layer_off, const rc_batch *b, float *x,
                           float *scratch) {
    const rwkv_model_info *in = &m->info;
    const uint64_t T = b->n_tok, C = in->n_embd, H = in->n_head, N = in->head_size;
    float *xx = scratch;            /* [T, C] */
    float *d = xx + T * C;          /* [T, C]  prev - xx */
    float *xk = d + T * C;          /* [T, C] */
    float *xr = xk + T * C;         /* [T, C] */
    float *r = xr + T * C;          /* [T, C] */
    float *vo = r + T * C;          /* [T, C] */
    float *hk = vo + T * C;         /* [T, n_ffn] */

    rc_layer_norm_rows(m->pool, x, &l->ln2_w, &l->ln2_b, T, C, xx);
    rc_shift_prev(b, layer_off + C + H * N * N, C, xx, d);
    rc_sub(d, xx, T * C, d);
    for (uint64_t t = 0; t < T; t++) {
        rc_token_lerp(xx + t * C, d + t * C, l->fmaa_k.data, C, xk + t * C);
        rc_token_lerp(xx + t * C, d + t * C, l->fmaa_r.data, C, xr + t * C);
    }

    rc_channel_mix_rkv(m, &l->fWk, &l->fWr, &l->fWv, T, xk, xr, hk, r, vo, x);
}

static void v6_layer(rwkv_model *m, uint32_t layer, const rc_batch *b, float *x, float *scratch) {
    const rc_v6_layer *l = &((const rc_v6_layer *)m->layers)[layer];
    uint64_t layer_off = (uint64_t)layer * v6_state_floats(&m->info);
    v6_time_mix(m, l, layer_off, b, x, scratch);
    v6_channel_mix(m, l, layer_off, b, x, scratch);
}

const rc_arch rc_arch_v6 = {
    .id = RWKV_ARCH_V6,
    .bind = v6_bind,
    .unbind = v6_unbind,
    .state_floats_per_layer = v6_state_floats,
    .state_init_layer = v6_state_init,
    .scratch_floats = v6_scratch_floats,
    .layer = v6_layer,
};
