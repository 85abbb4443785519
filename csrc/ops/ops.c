/* ops.c: reference element-wise operations. Norms accumulate in double: they are O(n) per token, so the
 * extra precision is free next to the matrix products and keeps them close to torch's fp32 results. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"

/* sum x[i] and sum (x[i] - mean)^2 in double, each over 8 running sums (lane i % 8) added at the end:
 * independent chains the compiler vectorizes, where one running sum waited on each add's latency (LayerNorm and
 * GroupNorm were ~1% of an Eagle-7B batch of 8). */
static double rc_sum_d(const float *x, uint64_t n) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) s[l] += (double)x[i + l];
    for (int l = 0; i < n; i++, l++) s[l] += (double)x[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static double rc_sum_sq_d(const float *x, uint64_t n, double mean) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            const double d = (double)x[i + l] - mean;
            s[l] += d * d;
        }
    for (int l = 0; i < n; i++, l++) {
        const double d = (double)x[i] - mean;
        s[l] += d * d;
    }
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

void rc_layer_norm(const float *x, const float *w, const float *b, uint64_t n, float eps, float *y) {
    const double mean = rc_sum_d(x, n) / (double)n;
    const double var = rc_sum_sq_d(x, n, mean) / (double)n;
    float inv = (float)(1.0 / sqrt(var + eps));
    float m = (float)mean;
    for (uint64_t i = 0; i < n; i++) y[i] = (x[i] - m) * inv * w[i] + b[i];
}

void rc_group_norm(const float *x, const float *w, const float *b, uint64_t n_groups, uint64_t group_size,
                   float eps, float *y) {
    for (uint64_t g = 0; g < n_groups; g++) {
        uint64_t o = g * group_size;
        rc_layer_norm(x + o, w + o, b + o, group_size, eps, y + o);
    }
}

void rc_token_mix(const float *cur, const float *prev, const float *mix, uint64_t n, float *out) {
    for (uint64_t i = 0; i < n; i++) out[i] = cur[i] * mix[i] + prev[i] * (1.0f - mix[i]);
}

void rc_token_lerp(const float *cur, const float *delta, const float *coef, uint64_t n, float *out) {
    for (uint64_t i = 0; i < n; i++) out[i] = cur[i] + delta[i] * coef[i];
}

void rc_sigmoid_inplace(float *x, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) x[i] = rc_sigmoid(x[i]);
}

void rc_silu_inplace(float *x, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) x[i] = x[i] * rc_sigmoid(x[i]);
}

/* max(x, 0)^2, NaN -> 0 as before (x > 0 is false for NaN), written on the bit patterns: a float is kept when
 * 0 < bits <= +inf as a signed integer (positive, not NaN). Integer compares vectorize; the float compare
 * compiled to a branch per element (unpredictable on activations: ~2% of a decode step). */
void rc_relu_sq_inplace(float *x, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, x + i, 4);
        const int32_t s = (int32_t)b;
        b &= (s > 0) & (s <= 0x7f800000) ? 0xffffffffu : 0u;
        float v;
        memcpy(&v, &b, 4);
        x[i] = v * v;
    }
}

void rc_tanh_inplace(float *x, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
}

void rc_l2_normalize(const float *x, uint64_t n, float eps, float *y) {
    double ss = 0;
    for (uint64_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float norm = (float)sqrt(ss);
    float d = norm > eps ? norm : eps;
    for (uint64_t i = 0; i < n; i++) y[i] = x[i] / d;
}

void rc_mul_inplace(float *x, const float *y, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) x[i] *= y[i];
}

void rc_add_inplace(float *x, const float *y, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) x[i] += y[i];
}

void rc_sub(const float *a, const float *b, uint64_t n, float *out) {
    for (uint64_t i = 0; i < n; i++) out[i] = a[i] - b[i];
}
