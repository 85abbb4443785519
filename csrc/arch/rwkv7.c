/* rwkv7.c: the RWKV-7 "Goose" forward pass, float32 compute.
 * The math is ../docs/RWKV_REFERENCE.md section 2.4, as the official rwkv package (RWKV_x070) computes it.
 * Token shift as v6: d = prev - xx, x_* = xx + d * x_* (prev = previous token's xx).
 *
 *   time mix    xx = LN(x; ln1);  d = prev - xx;  x_{r,w,k,v,a,g} = xx + d * x_{r,w,k,v,a,g}
 *               r, k, v = W_* x_*
 *               w = exp(-0.606531 sigmoid(w0 + W2 tanh(W1 x_w)))      decay, per token and channel
 *               a = sigmoid(a0 + A2 (A1 x_a))                         in-context learning rate
 *               g = G2 sigmoid(G1 x_g)                                gate
 *               kk = per-head L2-normalise(k * k_k);  k = k * (1 + (a - 1) * k_a)
 *               layer 0: v_first = v;  later layers: v += (v_first - v) * sigmoid(v0 + V2 (V1 x_v))
 *               per head (S[i][j], i = value, j = key):
 *                   S = S (diag(w) - kk (kk*a)^T) + v k^T;   o = S r   (the UPDATED state)
 *               y = GN(o; ln_x, eps 64e-5) + per head (sum_n r k r_k) * v       (the "bonus")
 *               x += W_o (y * g)
 *   channel mix xx = LN(x; ln2);  k = relu(W_k (xx + d * x_k))^2;  x += W_v k
 *
 * v_first lives at the start of the scratch buffer: layer 0 writes it and later layers read it, for the
 * same tokens, within one evaluation (it is not part of the state). The LoRA matrices are stored by the
 * converter as f32 [out, in] matrices, their ranks read from the shapes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "arch/arch_common.h"
#include "kernels/matmul.h"
#include "ops/ops.h"
#include "ops/wkv.h"

#define V7_W_SCALE 0.606531f /* exp(-0.5) as the official code writes it */
#define V7_NORM_EPS 1e-12f   /* torch.nn.functional.normalize */

enum { V7_R, V7_W, V7_K, V7_V, V7_A, V7_G, V7_NMIX };

typedef struct {
    uint64_t Dw, Da, Dv, Dg;               /* LoRA ranks (Dv: 0 in layer 0, which has no value residual) */
    rc_tensor ln1_w, ln1_b, ln2_w, ln2_b;
    rc_tensor mix[V7_NMIX];                /* [C] each: x_r, x_w, x_k, x_v, x_a, x_g */
    rc_tensor w0, a0, v0;                  /* [A] */
    rc_tensor w1, a1, v1, g1;              /* [D*, C] (checkpoint [C, D*], transposed) */
    rc_tensor w2, a2, v2, g2;              /* [A, D*] (checkpoint [D*, A], transposed) */
    rc_tensor k_k, k_a;                    /* [A] */
    rc_tensor r_k;                         /* [H, N] */
    rc_tensor Wr, Wk, Wv;                  /* [A, C] */
    rc_tensor Wo;                          /* [C, A] */
    rc_tensor lnx_w, lnx_b;                /* [A] */
    rc_tensor fx_k;                        /* [C] */
    rc_tensor fWk;                         /* [F, C] */
    rc_tensor fWv;                         /* [C, F] */
} rc_v7_layer;

static int v7_rank(const rwkv_model *m, uint32_t i, const char *fmt, uint64_t C, uint64_t *out) {
    int st = rc_layer_tensor_dim(m, i, fmt, 2, 0, out);
    if (st) return st;
    if (*out == 0 || *out > C) {
        char name[RC_NAME_CAP + 16];
        snprintf(name, sizeof name, fmt, i);
        return rc_error(RWKV_ERR_FORMAT, "tensor %s: LoRA rank %llu must be in 1..n_embd (%llu)", name,
                        (unsigned long long)*out, (unsigned long long)C);
    }
    return RWKV_OK;
}

static int v7_bind(rwkv_model *m) {
    const rwkv_model_info *in = &m->info;
    const uint64_t C = in->n_embd, A = in->dim_att, H = in->n_head, N = in->head_size, F = in->n_ffn;
    rc_v7_layer *L = calloc(in->n_layer, sizeof *L);
    if (!L) return rc_error(RWKV_ERR_OOM, "out of memory");
    m->layers = L;
    static const char *const mix_names[V7_NMIX] = {"blocks.%u.att.x_r", "blocks.%u.att.x_w", "blocks.%u.att.x_k",
                                                   "blocks.%u.att.x_v", "blocks.%u.att.x_a", "blocks.%u.att.x_g"};
    for (uint32_t i = 0; i < in->n_layer; i++) {
        rc_v7_layer *l = &L[i];
        int st;
#define V(field, name, n) if ((st = rc_bind_layer_tensor(m, &l->field, i, name, 0, 1, n, 0, 0))) return st
#define M(field, name, rows, cols) if ((st = rc_bind_layer_tensor(m, &l->field, i, name, 1, 2, rows, cols, 0))) return st
#define LORA(field, name, rows, cols) if ((st = rc_bind_layer_tensor(m, &l->field, i, name, 0, 2, rows, cols, 0))) return st
        if ((st = v7_rank(m, i, "blocks.%u.att.w1", C, &l->Dw))) return st;
        if ((st = v7_rank(m, i, "blocks.%u.att.a1", C, &l->Da))) return st;
        if ((st = v7_rank(m, i, "blocks.%u.att.g1", C, &l->Dg))) return st;
        if (i > 0 && (st = v7_rank(m, i, "blocks.%u.att.v1", C, &l->Dv))) return st;
        V(ln1_w, "blocks.%u.ln1.weight", C);
        V(ln1_b, "blocks.%u.ln1.bias", C);
        V(ln2_w, "blocks.%u.ln2.weight", C);
        V(ln2_b, "blocks.%u.ln2.bias", C);
        for (int j = 0; j < V7_NMIX; j++) V(mix[j], mix_names[j], C);
        V(w0, "blocks.%u.att.w0", A);
        LORA(w1, "blocks.%u.att.w1", l->Dw, C);
        LORA(w2, "blocks.%u.att.w2", A, l->Dw);
        V(a0, "blocks.%u.att.a0", A);
        LORA(a1, "blocks.%u.att.a1", l->Da, C);
        LORA(a2, "blocks.%u.att.a2", A, l->Da);
        if (i > 0) {
            V(v0, "blocks.%u.att.v0", A);
            LORA(v1, "blocks.%u.att.v1", l->Dv, C);
            LORA(v2, "blocks.%u.att.v2", A, l->Dv);
        }
        LORA(g1, "blocks.%u.att.g1", l->Dg, C);
        LORA(g2, "blocks.%u.att.g2", A, l->Dg);
        V(k_k, "blocks.%u.att.k_k", A);
        V(k_a, "blocks.%u.att.k_a", A);
        if ((st = rc_bind_layer_tensor(m, &l->r_k, i, "blocks.%u.att.r_k", 0, 2, H, N, 0))) return st;
        M(Wr, "blocks.%u.att.receptance.weight", A, C);
        M(Wk, "blocks.%u.att.key.weight", A, C);
        M(Wv, "blocks.%u.att.value.weight", A, C);
        M(Wo, "blocks.%u.att.output.weight", C, A);
        V(lnx_w, "blocks.%u.att.ln_x.weight", A);
        V(lnx_b, "blocks.%u.att.ln_x.bias", A);
        V(fx_k, "blocks.%u.ffn.x_k", C);
        M(fWk, "blocks.%u.ffn.key.weight", F, C);
        M(fWv, "blocks.%u.ffn.value.weight", C, F);
#undef V
#undef M
#undef LORA
    }
    return RWKV_OK;
}

static void v7_unbind(rwkv_model *m) {
    free(m->layers);
    m->layers = NULL;
}

/* Per layer: att_x_prev[C], S[H][N][N] (i = VALUE, j = KEY: the official orientation), ffn_x_prev[C]. */
static uint64_t v7_state_floats(const rwkv_model_info *in) {
    return 2 * (uint64_t)in->n_embd + (uint64_t)in->n_head * in->head_size * in->head_size;
}

static void v7_state_init(const rwkv_model_info *in, float *s) { memset(s, 0, v7_state_floats(in) * sizeof(float)); }

/* Scratch per token: v_first [A] (kept across layers); xx, d, 6 mixes, lo, out [C] each (lo holds a
 * LoRA-rank row, rank <= C); r, k, v, w, a, g, kk, y, tmp [A] each; the channel mix's hidden [F]. */
static uint64_t v7_scratch_floats(const rwkv_model_info *in, uint64_t T) {
    return T * (13 * (uint64_t)in->n_embd + 10 * (uint64_t)in->dim_att + in->n_ffn);
}

typedef struct {
    const rc_batch *b;
    uint64_t A, H, N, C, layer_off;
    const float *r, *w, *k, *v, *kk, *ab;
    float *y;
} v7_wkv_job;

/* One task = one (sequence, head) pair. */
static void v7_wkv_task(void *ctx, int task, int n_tasks) {
    const v7_wkv_job *j = (const v7_wkv_job *)ctx;
    const uint64_t s = (uint64_t)task / j->H, h = (uint64_t)task % j->H, N = j->N, o = h * N;
    float *S = j->b->state[s] + j->layer_off + j->C + h * N * N; /* [N][N] */
    rc_wkv7(j->b->seq_start[s], j->b->seq_start[s + 1], j->A, N, j->r + o, j->w + o, j->k + o, j->v + o,
            j->kk + o, j->ab + o, S, j->y + o);
}

static void v7_time_mix(rwkv_model *m, const rc_v7_layer *l, uint32_t layer, uint64_t layer_off, const rc_batch *b,
                        float *x, float *scratch) {
    const rwkv_model_info *in = &m->info;
    const uint64_t T = b->n_tok, C = in->n_embd, A = in->dim_att, H = in->n_head, N = in->head_size;
    float *v_first = scratch;       /* [T, A]  kept from layer 0 */
    float *xx = v_first + T * A;    /* [T, C] */
    float *d = xx + T * C;          /* [T, C]  prev - xx */
    float *xs[V7_NMIX];             /* [T, C] each: x_r, x_w, x_k, x_v, x_a, x_g */
    xs[0] = d + T * C;
    for (int i = 1; i < V7_NMIX; i++) xs[i] = xs[i - 1] + T * C;
    float *lo = xs[V7_NMIX - 1] + T * C; /* [T, D] (<= [T, C]) */
    float *out = lo + T * C;        /* [T, C] */
    float *r = out + T * C;         /* [T, A] */
    float *k = r + T * A;           /* [T, A] */
    float *v = k + T * A;           /* [T, A] */
    float *w = v + T * A;           /* [T, A] */
    float *a = w + T * A;           /* [T, A] */
    float *g = a + T * A;           /* [T, A] */
    float *kk = g + T * A;          /* [T, A] */
    float *y = kk + T * A;          /* [T, A] */
    float *tmp = y + T * A;         /* [T, A] */
    float *lo_a = tmp + T * A;      /* [T, Da] (<= [T, C]); lo holds [T, Dw] */
    float *lo_g = lo_a + T * C;     /* [T, Dg] */
    float *lo_v = lo_g + T * C;     /* [T, Dv] (layers > 0) */

    rc_layer_norm_rows(m->pool, x, &l->ln1_w, &l->ln1_b, T, C, xx);
    rc_shift_prev(b, layer_off, C, xx, d);
    rc_sub(d, xx, T * C, d);
    for (uint64_t t = 0; t < T; t++)
        for (int i = 0; i < V7_NMIX; i++) rc_token_lerp(xx + t * C, d + t * C, l->mix[i].data, C, xs[i] + t * C);

    /* r, k, v and the first products of the LoRAs of w, a, g (and v, after layer 0): one pool job; then their
     * second products: another. (LoRA: B act(A x) through rank-sized rows.) */
    const int has_v = layer > 0;
    const rc_matmul_op first[7] = {{&l->Wr, xs[V7_R], r}, {&l->Wk, xs[V7_K], k},  {&l->Wv, xs[V7_V], v},
                                   {&l->w1, xs[V7_W], lo}, {&l->a1, xs[V7_A], lo_a}, {&l->g1, xs[V7_G], lo_g},
                                   {&l->v1, xs[V7_V], lo_v}};
    rc_matmul_many(m->pool, first, has_v ? 7 : 6, T);
    rc_tanh_inplace(lo, T * rc_rows(&l->w1));
    rc_sigmoid_inplace(lo_g, T * rc_rows(&l->g1));
    const rc_matmul_op second[4] = {{&l->w2, lo, w}, {&l->a2, lo_a, a}, {&l->g2, lo_g, g}, {&l->v2, lo_v, tmp}};
    rc_matmul_many(m->pool, second, has_v ? 4 : 3, T);

    /* w = exp(-0.606531 sigmoid(w0 + W2 tanh(W1 x_w))) */
    const float *w0 = l->w0.data;
    for (uint64_t t = 0; t < T; t++) {
        float *wt = w + t * A;
        for (uint64_t c = 0; c < A; c++) wt[c] = rc_exp(-V7_W_SCALE * rc_sigmoid(w0[c] + wt[c]));
    }
    /* a = sigmoid(a0 + A2 (A1 x_a)) */
    const float *a0 = l->a0.data;
    for (uint64_t t = 0; t < T; t++) {
        float *at = a + t * A;
        for (uint64_t c = 0; c < A; c++) at[c] = rc_sigmoid(a0[c] + at[c]);
    }
    /* g = G2 sigmoid(G1 x_g): done above */

    /* kk = normalise(k * k_k) per head; k = k * (1 + (a - 1) * k_a) */
    const float *k_k = l->k_k.data, *k_a = l->k_a.data;
    for (uint64_t t = 0; t < T; t++) {
        float *kt = k + t * A, *kkt = kk + t * A;
        const float *at = a + t * A;
        for (uint64_t c = 0; c < A; c++) kkt[c] = kt[c] * k_k[c];
        for (uint64_t h = 0; h < H; h++) rc_l2_normalize(kkt + h * N, N, V7_NORM_EPS, kkt + h * N);
        for (uint64_t c = 0; c < A; c++) kt[c] = kt[c] * (1 + (at[c] - 1) * k_a[c]);
    }

    /* the value residual to layer 0's v of the same token */
    if (layer == 0) {
        memcpy(v_first, v, T * A * sizeof(float));
    } else {
        const float *v0 = l->v0.data;
        for (uint64_t t = 0; t < T; t++) {
            float *vt = v + t * A, *mt = tmp + t * A;
            const float *vf = v_first + t * A;
            for (uint64_t c = 0; c < A; c++) vt[c] = vt[c] + (vf[c] - vt[c]) * rc_sigmoid(v0[c] + mt[c]);
        }
    }

    /* the state update reads b = kk * a (tmp, free again) */
    for (uint64_t i = 0; i < T * A; i++) tmp[i] = kk[i] * a[i];
    v7_wkv_job job = {b, A, H, N, C, layer_off, r, w, k, v, kk, tmp, y};
    rc_pool_run_sized(m->pool, v7_wkv_task, &job, (int)(b->n_seq * H), T * H * N * N, RC_WKV_MIN_PARALLEL_WORK);

    const float *r_k = l->r_k.data; /* [H, N] */
    for (uint64_t t = 0; t < T; t++) {
        float *yt = y + t * A;
        const float *rt = r + t * A, *kt = k + t * A, *vt = v + t * A;
        rc_group_norm(yt, l->lnx_w.data, l->lnx_b.data, H, N, RC_GN_EPS, yt);
        for (uint64_t h = 0; h < H; h++) {
            const uint64_t o = h * N;
            float bonus = 0;
            for (uint64_t n = 0; n < N; n++) bonus += rt[o + n] * kt[o + n] * r_k[o + n];
            for (uint64_t n = 0; n < N; n++) yt[o + n] += bonus * vt[o + n];
        }
    }
    rc_mul_inplace(y, g, T * A);
    rc_matmul(m->pool, &l->Wo, y, T, out);
    rc_add_inplace(x, out, T * C);
}

static void v7_channel_mix(rwkv_model *m, const rc_v7_layer *l, uint64_t layer_off, const rc_batch *b, float *x,
                           float *scratch) {
    const rwkv_model_info *in = &m->info;
    const uint64_t T = b->n_tok, C = in->n_embd, A = in->dim_att, H = in->n_head, N = in->head_size,
                   F = in->n_ffn;
    float *xx = scratch + T * A;    /* [T, C]  (after v_first, which later layers still need) */
    float *d = xx + T * C;          /* [T, C]  prev - xx */
    float *xk = d + T * C;          /* [T, C] */
    float *vo = xk + T * C;         /* [T, C] */
    float *hk = vo + T * C;         /* [T, F] */

    rc_layer_norm_rows(m->pool, x, &l->ln2_w, &l->ln2_b, T, C, xx);
    rc_shift_prev(b, layer_off + C + H * N * N, C, xx, d);
    rc_sub(d, xx, T * C, d);
    for (uint64_t t = 0; t < T; t++) rc_token_lerp(xx + t * C, d + t * C, l->fx_k.data, C, xk + t * C);

    rc_matmul(m->pool, &l->fWk, xk, T, hk);
    rc_relu_sq_inplace(hk, T * F);
    rc_matmul(m->pool, &l->fWv, hk, T, vo);
    rc_add_inplace(x, vo, T * C);
}

static void v7_layer(rwkv_model *m, uint32_t layer, const rc_batch *b, float *x, float *scratch) {
    const rc_v7_layer *l = &((const rc_v7_layer *)m->layers)[layer];
    uint64_t layer_off = (uint64_t)layer * v7_state_floats(&m->info);
    v7_time_mix(m, l, layer, layer_off, b, x, scratch);
    v7_channel_mix(m, l, layer_off, b, x, scratch);
}

const rc_arch rc_arch_v7 = {
    .id = RWKV_ARCH_V7,
    .bind = v7_bind,
    .unbind = v7_unbind,
    .state_floats_per_layer = v7_state_floats,
    .state_init_layer = v7_state_init,
    .scratch_floats = v7_scratch_floats,
    .layer = v7_layer,
};
