/* ops.h: small element-wise and normalisation operations on float vectors. */
#ifndef RC_OPS_H
#define RC_OPS_H

#include <stdint.h>

/* y = LN(x) * w + b over n elements (eps as given; 1e-5 for every RWKV LayerNorm). y may equal x. */
void rc_layer_norm(const float *x, const float *w, const float *b, uint64_t n, float eps, float *y);
/* GroupNorm of n_groups contiguous groups of group_size, then per-channel w, b. y may equal x. */
void rc_group_norm(const float *x, const float *w, const float *b, uint64_t n_groups, uint64_t group_size,
                   float eps, float *y);
/* out = cur * mix + prev * (1 - mix)   (the v4/v5 token shift) */
void rc_token_mix(const float *cur, const float *prev, const float *mix, uint64_t n, float *out);
/* out = cur + delta * coef, delta = prev - cur   (the v6/v7 token shift, "lerp"; RWKV_REFERENCE.md 2.3) */
void rc_token_lerp(const float *cur, const float *delta, const float *coef, uint64_t n, float *out);
float rc_sigmoid(float x);
void rc_sigmoid_inplace(float *x, uint64_t n);
void rc_silu_inplace(float *x, uint64_t n);
void rc_relu_sq_inplace(float *x, uint64_t n);
void rc_tanh_inplace(float *x, uint64_t n);
/* x / max(||x||_2, eps) over n elements (torch.nn.functional.normalize, eps 1e-12). y may equal x. */
void rc_l2_normalize(const float *x, uint64_t n, float eps, float *y);
void rc_mul_inplace(float *x, const float *y, uint64_t n);
void rc_add_inplace(float *x, const float *y, uint64_t n);
/* out = a - b */
void rc_sub(const float *a, const float *b, uint64_t n, float *out);

#endif
