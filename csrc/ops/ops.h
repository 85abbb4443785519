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
/* e^x for the arguments of activations and decays, written so that loops of it vectorize (glibc's expf is a
 * call per element: ~30 us per v7 layer of scalar calls on one thread, beside the matrix products). Cephes'
 * method: x = n ln2 + r with |r| <= ln2 / 2 (ln2 in two parts), e^r by a degree-6 polynomial, 2^n put in the
 * exponent bits; n is rounded by the 1.5 * 2^23 trick, so no float-to-int conversion (none can overflow).
 * Within 2 ulp of expf on [-80, 80] (tests/c: test_exp); outside it returns e^-80 (~1.8e-35) or e^80 (~5.5e34)
 * instead of going down to subnormals and 0 or up to +inf: only sigmoid and the decays use it, whose arguments
 * saturate there. The range keeps e^x, 1 / (1 + e^x) and their products normal: a subnormal lane costs a
 * microcode assist for the whole vector (measured: v7's value-residual loop ran 3.4x slower vectorized than
 * with glibc's scalar expf while sigmoid could return subnormals). NaN gives NaN. */
static inline float rc_exp(float x) {
    x = x < -80.0f ? -80.0f : x; /* NaN compares false and passes through */
    x = x > 80.0f ? 80.0f : x;
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer held in the low bits */
    const float t = x * 1.44269504088896341f + magic;
    const float n = t - magic;
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f; /* x - n ln2, ln2 = 0.693359375 - 2.1219444e-4 */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { float f; uint32_t u; } tb = {t}, sc;
    sc.u = (tb.u - 0x4b400000u + 127u) << 23; /* (n + 127) << 23: 2^n, n in [-115, 115] */
    return p * sc.f;
}
/* 1 / (1 + e^-x) with rc_exp: vectorizes. */
static inline float rc_sigmoid(float x) { return 1.0f / (1.0f + rc_exp(-x)); }
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
