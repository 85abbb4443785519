/* wkv.h: the recurrences ("WKV") of every RWKV version, plain scalar C.
 *
 * Each function walks the tokens [t0, t1) of ONE sequence in order, for one head (v5-v7) or a range of
 * channels (v4), reading per-token rows of [T, A] arrays and advancing that sequence's state in place.
 * Callers run (sequence, head) pairs in parallel on the thread pool; the loops over a head's N channels
 * are contiguous so that the compiler vectorizes them. The math is docs/RWKV_REFERENCE.md section 2. */
#ifndef RC_WKV_H
#define RC_WKV_H

#include <stdint.h>

/* RWKV-4, channels [c0, c1) of A. k, v, y: [T, A]; w = -exp(time_decay), u = time_first: [A];
 * aa, bb, pp: [A] (the sequence's state; pp starts at -1e30).
 *   q = max(pp, u+k);  y = (e^(pp-q) aa + e^(u+k-q) v) / (e^(pp-q) bb + e^(u+k-q))
 *   q' = max(pp+w, k); aa = e^(pp+w-q') aa + e^(k-q') v;  bb = e^(pp+w-q') bb + e^(k-q');  pp = q' */
void rc_wkv4(uint64_t t0, uint64_t t1, uint64_t A, uint64_t c0, uint64_t c1, const float *k, const float *v,
             const float *w, const float *u, float *aa, float *bb, float *pp, float *y);

/* RWKV-5 / 6, one head of size N. r, k, v, y: [T, A], already offset to the head; S: [N][N] (i = key,
 * j = value). u: the head's bonus, w: its decay factors, read as u[i * uw_step] and
 * w[t * w_tstep + i * w_step]: w_step 1 per channel (5.2, 6) or 0 per head (5.0, 5.1); w_tstep 0 for a
 * constant decay (v5) or A for a per-token decay (v6, w: [T, A] offset to the head).
 *   y[j] = sum_i r[i] (u[i] k[i] v[j] + S[i][j]);   then S[i][j] = w[i] S[i][j] + k[i] v[j]            */
void rc_wkv5(uint64_t t0, uint64_t t1, uint64_t A, uint64_t N, const float *r, const float *k, const float *v,
             const float *u, uint64_t u_step, const float *w, uint64_t w_step, uint64_t w_tstep, float *S,
             float *y);

/* RWKV-7, one head of size N. r, w, k, v, kk, b, y: [T, A] offset to the head (b = kk * a, the
 * in-context learning rate times the normalised key); S: [N][N] (i = VALUE, j = KEY).
 *   S[i][j] = S[i][j] w[j] - (sum_j' S[i][j'] kk[j']) b[j] + v[i] k[j];   y[i] = sum_j S[i][j] r[j]
 * (the output reads the updated state). */
void rc_wkv7(uint64_t t0, uint64_t t1, uint64_t A, uint64_t N, const float *r, const float *w, const float *k,
             const float *v, const float *kk, const float *b, float *S, float *y);

/* The same with the copy compiled for an instruction set chosen by the caller (RC_ISA_*, kernels/matmul.h;
 * the baseline where this build has no such copy): for tests. rc_wkv5 / rc_wkv7 run the copy of the kernel
 * family in use. The copies' results are bit-identical. */
void rc_wkv5_isa(int isa, uint64_t t0, uint64_t t1, uint64_t A, uint64_t N, const float *r, const float *k,
                 const float *v, const float *u, uint64_t u_step, const float *w, uint64_t w_step, uint64_t w_tstep,
                 float *S, float *y);
void rc_wkv7_isa(int isa, uint64_t t0, uint64_t t1, uint64_t A, uint64_t N, const float *r, const float *w,
                 const float *k, const float *v, const float *kk, const float *b, float *S, float *y);

#endif
