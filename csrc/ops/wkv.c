/* wkv.c: the WKV recurrences, scalar reference (see wkv.h for the math and the buffer shapes). */
#include <math.h>

#include "ops/wkv.h"

/* sum_j a[j] b[j] with eight partial sums, so that the compiler can keep them in vector registers
 * (a plain running sum is a serial chain it may not reorder). */
static inline float rc_dot8(const float *a, const float *b, uint64_t n) {
    float s[8] = {0};
    uint64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int q = 0; q < 8; q++) s[q] += a[j + q] * b[j + q];
    float tail = 0;
    for (; j < n; j++) tail += a[j] * b[j];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

void rc_wkv4(uint64_t t0, uint64_t t1, uint64_t A, uint64_t c0, uint64_t c1, const float *k, const float *v,
             const float *w, const float *u, float *aa, float *bb, float *pp, float *y) {
    for (uint64_t t = t0; t < t1; t++) {
        const float *kt = k + t * A, *vt = v + t * A;
        float *yt = y + t * A;
        for (uint64_t c = c0; c < c1; c++) {
            const float kc = kt[c], vc = vt[c], a = aa[c], b = bb[c], p = pp[c];
            /* output: the current token enters with the bonus u */
            float ww = u[c] + kc;
            float q = p > ww ? p : ww;
            float e1 = expf(p - q), e2 = expf(ww - q);
            yt[c] = (e1 * a + e2 * vc) / (e1 * b + e2);
            /* state: decay the past by w, add the current token */
            ww = w[c] + p;
            q = ww > kc ? ww : kc;
            e1 = expf(ww - q);
            e2 = expf(kc - q);
            aa[c] = e1 * a + e2 * vc;
            bb[c] = e1 * b + e2;
            pp[c] = q;
        }
    }
}

void rc_wkv5(uint64_t t0, uint64_t t1, uint64_t A, uint64_t N, const float *r, const float *k, const float *v,
             const float *u, uint64_t u_step, const float *w, uint64_t w_step, uint64_t w_tstep, float *S,
             float *y) {
    for (uint64_t t = t0; t < t1; t++) {
        const float *rt = r + t * A, *kt = k + t * A, *vt = v + t * A, *wt = w + t * w_tstep;
        float *yt = y + t * A;
        for (uint64_t j = 0; j < N; j++) yt[j] = 0;
        for (uint64_t i = 0; i < N; i++) {
            const float ri = rt[i], ki = kt[i], uki = u[i * u_step] * ki, wi = wt[i * w_step];
            float *Si = S + i * N;
            for (uint64_t j = 0; j < N; j++) {
                const float a = ki * vt[j];
                yt[j] += ri * (uki * vt[j] + Si[j]);
                Si[j] = Si[j] * wi + a;
            }
        }
    }
}

void rc_wkv7(uint64_t t0, uint64_t t1, uint64_t A, uint64_t N, const float *r, const float *w, const float *k,
             const float *v, const float *kk, const float *b, float *S, float *y) {
    for (uint64_t t = t0; t < t1; t++) {
        const float *rt = r + t * A, *wt = w + t * A, *kt = k + t * A, *vt = v + t * A, *kkt = kk + t * A,
                    *bt = b + t * A;
        float *yt = y + t * A;
        for (uint64_t i = 0; i < N; i++) {
            float *Si = S + i * N;
            const float sa = rc_dot8(Si, kkt, N); /* (S kk)[i]: what the old state holds along the normalised key */
            const float vi = vt[i];
            for (uint64_t j = 0; j < N; j++) Si[j] = Si[j] * wt[j] - sa * bt[j] + vi * kt[j];
            yt[i] = rc_dot8(Si, rt, N);
        }
    }
}
