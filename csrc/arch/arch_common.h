/* arch_common.h: helpers every architecture's forward pass shares (csrc/arch/rwkv*.c). */
#ifndef RC_ARCH_COMMON_H
#define RC_ARCH_COMMON_H

#include "core/model.h"

#define RC_LN_EPS 1e-5f   /* every RWKV LayerNorm */
#define RC_GN_EPS 64e-5f  /* the v5-v7 GroupNorm ln_x (= 1e-5 * head_size_divisor^2, RWKV_REFERENCE.md 2.2) */

/* fn(ctx, t) for each token t of a batch or prompt of T: one pool task per token when the work (T * width
 * floats) reaches RC_ROWS_MIN_PARALLEL, else on the calling thread (decode). For the element-wise steps between
 * the products, which otherwise ran on one thread while the pool waited (a batch of 8: ~2-4% of a step). */
#define RC_ROWS_MIN_PARALLEL (32u << 10)
void rc_for_rows(rc_pool *pool, uint64_t T, uint64_t width, void (*fn)(void *ctx, uint64_t t), void *ctx);

/* LayerNorm of each of T rows of C: x, y [T, C] (rows on the pool, rc_for_rows). */
void rc_layer_norm_rows(rc_pool *pool, const float *x, const rc_tensor *w, const rc_tensor *b, uint64_t T, uint64_t C,
                        float *y);

/* The token shift over a batch. xx: [T, C] this block's normalised inputs. prev: [T, C] out, the previous
 * token's xx of every row: xx[t-1] inside a sequence, the state's x_prev (C floats at state_off in the
 * sequence's state) at its first token. Then each state's x_prev becomes its sequence's last xx. */
void rc_shift_prev(const rc_batch *b, uint64_t state_off, uint64_t C, const float *xx, float *prev);

/* The channel mix of v4, v5 and v6 after its token shift: x += sigmoid(Wr xr) * (Wv relu(Wk xk)^2), the Wk and
 * Wr products as one pool job. xk, xr: [T, C] the shifted inputs; scratch hk [T, F], r and vo [T, C]. */
void rc_channel_mix_rkv(rwkv_model *m, const rc_tensor *Wk, const rc_tensor *Wr, const rc_tensor *Wv, uint64_t T,
                        const float *xk, const float *xr, float *hk, float *r, float *vo, float *x);

/* A v5/v6 head's outputs after its WKV, for tokens [t0, t1) of one sequence: GroupNorm of the head's group (ln_x:
 * lw, lb [A]), then, where g is given, times silu(g) (g turned into silu(g) in place). y, g: [T, A]; o = the
 * head's first channel. Called by each (sequence, head) task right after the recurrence: in parallel, and on
 * outputs still in cache, with the same operations per element as rc_group_norm / rc_silu_inplace /
 * rc_mul_inplace over the whole [T, A]. */
void rc_head_out(uint64_t t0, uint64_t t1, uint64_t A, uint64_t N, uint64_t o, const float *lw, const float *lb,
                 float *g, float *y);

/* The size along dimension `dim` of a per-layer tensor, for sizes read from shapes (LoRA ranks). Fails,
 * naming the tensor, if it is missing or has not n_dims dimensions. */
int rc_layer_tensor_dim(const rwkv_model *m, uint32_t layer, const char *fmt, uint32_t n_dims, uint32_t dim,
                        uint64_t *out);

/* A 2-D view [rows, cols] of the `index`-th slice of an f32 tensor [n, rows, cols] (no copy). */
rc_tensor rc_tensor_slice(const rc_tensor *t, uint64_t index, uint64_t rows, uint64_t cols);

#endif
