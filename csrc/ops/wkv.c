/* wkv.c: the WKV recurrences, scalar reference (see wkv.h for the math and the buffer shapes).
 *
 * The v5/v6 and v7 recurrences are plain loops over a head's channels, written once (rc_wkv5_body,
 * rc_wkv7_body) and compiled three times on x86-64: for the baseline, and for AVX2 and AVX-512 through
 * function target attributes (only those copies use the wider instructions, not the file). Which copy runs
 * follows the kernel family in use (rc_kernel_set.isa), whose choice already checked the CPU and the OS, so
 * RWKV_CPU_KERNEL=scalar also runs the baseline copy. Only the vector width differs: no FMA contraction
 * (-ffp-contract=off) and no reassociation, so the copies give bit-identical results (tests/c/test_kernels.c,
 * test_wkv_isa). Measured: Eagle-7B q4, batch of 8, the v5 recurrence's share of a step 9.6% -> 6.9%
 * (docs/PERFORMANCE.md). */
#include <math.h>

#include "kernels/matmul.h"
#include "ops/wkv.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(RC_SIMDE)
#define RC_WKV_X86 1
#endif

/* sum_j a[j] b[j] with eight partial sums, so that the compiler can keep them in vector registers
 * (a plain running sum is a serial chain it may not reorder). */
static inline __attribute__((always_inline)) float rc_dot8(const float *a, const float *b, uint64_t n) {
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

static inline __attribute__((always_inline)) void rc_wkv5_body(uint64_t t0, uint64_t t1, uint64_t A, uint64_t N,
                                                                  const float *r, const float *k, const float *v,
                                                                  const float *u, uint64_t u_step, const float *w,
                                                                  uint64_t w_step, uint64_t w_tstep, float *S, float *y) {
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

static inline __attribute__((always_inline)) void rc_wkv7_body(uint64_t t0, uint64_t t1, uint64_t A, uint64_t N,
                                                                  const float *r, const float *w, const float *k,
                                                                  const float *v, const float *kk, const float *b,
                                                                  float *S, float *y) {
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

/* ---- the copies, and the dispatch ----------------------------------------------------------------------- */
#define RC_WKV5_ARGS                                                                                                   \
    uint64_t t0, uint64_t t1, uint64_t A, uint64_t N, const float *r, const float *k, const float *v, const float *u,  \
        uint64_t u_step, const float *w, uint64_t w_step, uint64_t w_tstep, float *S, float *y
#define RC_WKV5_PASS t0, t1, A, N, r, k, v, u, u_step, w, w_step, w_tstep, S, y
#define RC_WKV7_ARGS                                                                                                   \
    uint64_t t0, uint64_t t1, uint64_t A, uint64_t N, const float *r, const float *w, const float *k, const float *v,  \
        const float *kk, const float *b, float *S, float *y
#define RC_WKV7_PASS t0, t1, A, N, r, w, k, v, kk, b, S, y

static void rc_wkv5_base(RC_WKV5_ARGS) { rc_wkv5_body(RC_WKV5_PASS); }
static void rc_wkv7_base(RC_WKV7_ARGS) { rc_wkv7_body(RC_WKV7_PASS); }
#ifdef RC_WKV_X86
__attribute__((target("avx2"))) static void rc_wkv5_avx2(RC_WKV5_ARGS) { rc_wkv5_body(RC_WKV5_PASS); }
__attribute__((target("avx512f"))) static void rc_wkv5_avx512(RC_WKV5_ARGS) { rc_wkv5_body(RC_WKV5_PASS); }
__attribute__((target("avx2"))) static void rc_wkv7_avx2(RC_WKV7_ARGS) { rc_wkv7_body(RC_WKV7_PASS); }
__attribute__((target("avx512f"))) static void rc_wkv7_avx512(RC_WKV7_ARGS) { rc_wkv7_body(RC_WKV7_PASS); }
#endif

void rc_wkv5_isa(int isa, RC_WKV5_ARGS) {
#ifdef RC_WKV_X86
    if (isa >= RC_ISA_AVX512) { rc_wkv5_avx512(RC_WKV5_PASS); return; }
    if (isa >= RC_ISA_AVX2) { rc_wkv5_avx2(RC_WKV5_PASS); return; }
#endif
    (void)isa;
    rc_wkv5_base(RC_WKV5_PASS);
}

void rc_wkv7_isa(int isa, RC_WKV7_ARGS) {
#ifdef RC_WKV_X86
    if (isa >= RC_ISA_AVX512) { rc_wkv7_avx512(RC_WKV7_PASS); return; }
    if (isa >= RC_ISA_AVX2) { rc_wkv7_avx2(RC_WKV7_PASS); return; }
#endif
    (void)isa;
    rc_wkv7_base(RC_WKV7_PASS);
}

void rc_wkv5(RC_WKV5_ARGS) { rc_wkv5_isa(rc_kernels()->isa, RC_WKV5_PASS); }
void rc_wkv7(RC_WKV7_ARGS) { rc_wkv7_isa(rc_kernels()->isa, RC_WKV7_PASS); }
