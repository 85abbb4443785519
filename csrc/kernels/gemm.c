/* gemm.c: the GEMM activation vectors (gemm.h). Portable C, written so that the compiler vectorizes it. */
#include <math.h>

#include "kernels/gemm.h"

uint64_t rc_gx_stride(uint64_t in) {
    uint64_t bytes = in / RC_QK * 8 + in;
    return (bytes + RC_ALIGN - 1) / RC_ALIGN * RC_ALIGN;
}

/* round to nearest, ties to even, for |v| < 2^22 (as quant.c's; the library is built with
 * -ffp-contract=off so v*id + big is never fused) */
static inline float rc_gx_round(float v) {
    const float big = 12582912.0f;
    float r = v + big;
    return r - big;
}

/* One block: its scale max|x| / 127 (NaN if it holds a NaN or an infinity: then every product with it is
 * NaN, as quant.h's policy says, and its values are stored as 0), its int8 values and -128 times their sum. */
static void rc_gx_block(const float *xb, float *d, int32_t *corr, int8_t *q) {
    float amax = 0;
    int finite = 1;
    for (int j = 0; j < RC_QK; j++) {
        float a = fabsf(xb[j]);
        if (!(a <= 3.0e38f)) finite = 0;
        amax = a > amax ? a : amax;
    }
    const float db = finite ? amax / 127.0f : NAN;
    const float id = db > 0 ? 1.0f / db : 0.0f;
    int32_t s = 0;
    for (int j = 0; j < RC_QK; j++) {
        float v = finite ? rc_gx_round(xb[j] * id) : 0.0f;
        v = v > 127 ? 127 : v < -127 ? -127 : v;
        q[j] = (int8_t)v;
        s += (int32_t)v;
    }
    *d = db;
    *corr = -RC_GX_OFFSET * s;
}

void rc_gx_prepare(const float *X, uint64_t in, uint64_t t0, uint64_t t1, const rc_colscale *cs, void *out) {
    const uint64_t nb = in / RC_QK, stride = rc_gx_stride(in);
    float buf[RC_QK];
    for (uint64_t t = t0; t < t1; t++) {
        uint8_t *base = (uint8_t *)out + t * stride;
        float *d = (float *)(void *)base;
        int32_t *corr = (int32_t *)(void *)(d + nb);
        int8_t *q = (int8_t *)(corr + nb);
        uint32_t next = 0; /* the first column scale not yet passed (cs->cols increase) */
        for (uint64_t b = 0; b < nb; b++) {
            const float *xb = X + t * in + b * RC_QK;
            if (cs && next < cs->n && (uint64_t)cs->cols[next] < (b + 1) * RC_QK) {
                memcpy(buf, xb, sizeof buf);
                for (; next < cs->n && (uint64_t)cs->cols[next] < (b + 1) * RC_QK; next++)
                    buf[(uint64_t)cs->cols[next] - b * RC_QK] *= cs->scales[next];
                xb = buf;
            }
            rc_gx_block(xb, &d[b], &corr[b], q + b * RC_QK);
        }
    }
}
