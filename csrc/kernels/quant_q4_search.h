/* quant_q4_search.h: the q4 scale search with the trials side by side, RC_QS_N trials per vector. Not a header
 * of its own: kernels/quant.c includes it once per lane count (RC_QS_N 8 for the AVX2 copy, 4 for the baseline
 * one), with RC_QS(name) naming that copy's functions, after the reference search it must match.
 *
 * The lanes of a vector are trials, not weights: each lane walks the block's 32 weights in order, so every sum
 * adds the same products in the same order as rc_q4_trial / rc_q4_codes_for, and the codes and scales come out
 * bit-identical (test_quantize_q4). The nearest code to v is the number of codebook midpoints below v (the
 * midpoints rise, and a tie goes to the lower code, as in rc_q4_nearest); its value is picked by one select per
 * midpoint, so no table lookup is needed. GCC / clang vector types; -ffp-contract=off keeps each product and sum
 * rounded apart, as in the reference. */
#if !defined(RC_QS_N) || !defined(RC_QS)
#error "define RC_QS_N and RC_QS before including quant_q4_search.h"
#endif

typedef float RC_QS(rc_qs_vf) __attribute__((vector_size(4 * RC_QS_N)));
typedef int32_t RC_QS(rc_qs_vi) __attribute__((vector_size(4 * RC_QS_N)));
#define RC_QS_VF RC_QS(rc_qs_vf)
#define RC_QS_VI RC_QS(rc_qs_vi)
#define RC_QS_STEP1_TRIALS (2 * (2 * RC_Q4_TRIES + 1))                /* 22 real scales */
#define RC_QS_STEP1_VECS ((RC_QS_STEP1_TRIALS + RC_QS_N - 1) / RC_QS_N)
#define RC_QS_STEP2_TRIALS (2 * RC_Q4_S_NEAR + 1)                     /* 5 int8 scales */
#define RC_QS_STEP2_VECS ((RC_QS_STEP2_TRIALS + RC_QS_N - 1) / RC_QS_N)

/* the codebook value nearest to each lane of *vp into *out, and minus its code into *cnt (either may be NULL);
 * pointers, not vector arguments, so no copy has a vector-ABI question (always inlined) */
static inline __attribute__((always_inline)) void RC_QS(rc_q4_nearest_value)(const RC_QS_VF *vp, RC_QS_VF *out,
                                                                             RC_QS_VI *cnt) {
    const RC_QS_VF v = *vp;
    RC_QS_VI val = (RC_QS_VI)((RC_QS_VF){0} + (float)rc_q4_values[0]), c = {0};
    for (int i = 0; i < 15; i++) {
        const RC_QS_VI above = v > ((RC_QS_VF){0} + rc_q4_mid[i]); /* -1 where v > mid[i] */
        const RC_QS_VI next = (RC_QS_VI)((RC_QS_VF){0} + (float)rc_q4_values[i + 1]);
        val = (next & above) | (val & ~above);
        c += above;
    }
    if (cnt) *cnt = c;
    if (out) *out = (RC_QS_VF)val;
}

/* Step 1 (rc_q4_block_scale): the block's best real scale, the 22 trials side by side. */
static inline __attribute__((always_inline)) float RC_QS(rc_q4_block_scale)(const float *x) {
    float amax = 0, max = 0;
    for (int j = 0; j < RC_QK; j++) {
        float a = fabsf(x[j]);
        if (a > amax) { amax = a; max = x[j]; }
    }
    if (amax == 0) return 0;
    float idf[RC_QS_N * RC_QS_STEP1_VECS] = {0}; /* lanes past the 22 trials: id 0, so sq2 0 (never chosen) */
    int k = 0;
    for (int end = 0; end < 2; end++) {
        float target = end == 0 ? (float)rc_q4_values[0] : (float)rc_q4_values[15];
        for (int t = -RC_Q4_TRIES; t <= RC_Q4_TRIES; t++) idf[k++] = (target + (end == 0 ? t : -t) * RC_Q4_STEP) / max;
    }
    RC_QS_VF id[RC_QS_STEP1_VECS], a[RC_QS_STEP1_VECS], b[RC_QS_STEP1_VECS];
    for (int u = 0; u < RC_QS_STEP1_VECS; u++) {
        memcpy(&id[u], idf + RC_QS_N * u, sizeof id[u]);
        a[u] = (RC_QS_VF){0};
        b[u] = (RC_QS_VF){0};
    }
    for (int j = 0; j < RC_QK; j++) {
        const float xj = x[j];
        for (int u = 0; u < RC_QS_STEP1_VECS; u++) {
            const RC_QS_VF xi = xj * id[u];
            RC_QS_VF v;
            RC_QS(rc_q4_nearest_value)(&xi, &v, NULL);
            a[u] += v * xj; /* a product, then a sum, as in rc_q4_trial */
            b[u] += v * v;
        }
    }
    float sqx[RC_QS_N * RC_QS_STEP1_VECS], sq2[RC_QS_N * RC_QS_STEP1_VECS];
    memcpy(sqx, a, sizeof a);
    memcpy(sq2, b, sizeof b);
    float best_d = 0, best = -1;
    for (k = 0; k < RC_QS_STEP1_TRIALS; k++)
        if (sq2[k] > 0 && sqx[k] * sqx[k] > best * sq2[k]) {
            best = sqx[k] * sqx[k] / sq2[k];
            best_d = sqx[k] / sq2[k];
        }
    return best_d;
}

/* Step 2 (rc_q4_block_int_scale): the 5 int8 scales side by side, then the codes for the best. */
static inline __attribute__((always_inline)) int8_t RC_QS(rc_q4_block_int_scale)(const float *x, float d, float D,
                                                                                 uint8_t codes[RC_QK]) {
    const float unit = D * 0.0078125f;
    float t = unit > 0 ? d / unit : 0;
    int s0 = (int)(t < 0 ? t - 0.5f : t + 0.5f);
    float df[RC_QS_N * RC_QS_STEP2_VECS] = {0}, idf[RC_QS_N * RC_QS_STEP2_VECS] = {0};
    for (int k = 0; k < RC_QS_STEP2_TRIALS; k++) {
        df[k] = unit * (float)(s0 - RC_Q4_S_NEAR + k);
        idf[k] = df[k] != 0 ? 1.0f / df[k] : 0.0f;
    }
    RC_QS_VF dv[RC_QS_STEP2_VECS], id[RC_QS_STEP2_VECS], err[RC_QS_STEP2_VECS];
    for (int u = 0; u < RC_QS_STEP2_VECS; u++) {
        memcpy(&dv[u], df + RC_QS_N * u, sizeof dv[u]);
        memcpy(&id[u], idf + RC_QS_N * u, sizeof id[u]);
        err[u] = (RC_QS_VF){0};
    }
    for (int j = 0; j < RC_QK; j++) {
        const float xj = x[j];
        for (int u = 0; u < RC_QS_STEP2_VECS; u++) {
            const RC_QS_VF xi = xj * id[u];
            RC_QS_VF v;
            RC_QS(rc_q4_nearest_value)(&xi, &v, NULL);
            const RC_QS_VF e = xj - dv[u] * v;
            err[u] += e * e;
        }
    }
    float errf[RC_QS_N * RC_QS_STEP2_VECS];
    memcpy(errf, err, sizeof err);
    float best = INFINITY, best_id = 0;
    int best_s = 0;
    for (int k = 0; k < RC_QS_STEP2_TRIALS; k++) {
        const int s = s0 - RC_Q4_S_NEAR + k;
        if (s < -127 || s > 127) continue;
        if (errf[k] < best) {
            best = errf[k];
            best_s = s;
            best_id = idf[k];
        }
    }
    for (int j = 0; j < RC_QK; j += RC_QS_N) { /* the codes for the chosen scale, RC_QS_N weights at a time */
        RC_QS_VF xv;
        RC_QS_VI c;
        memcpy(&xv, x + j, sizeof xv);
        xv *= best_id;
        RC_QS(rc_q4_nearest_value)(&xv, NULL, &c);
        for (int l = 0; l < RC_QS_N; l++) codes[j + l] = (uint8_t)-c[l];
    }
    return (int8_t)best_s;
}

/* rc_quantize_q4_ref's loop with the two steps above */
static inline __attribute__((always_inline)) void RC_QS(rc_quantize_q4_body)(const float *x, uint64_t n_rows,
                                                                             uint64_t in, uint8_t *dst) {
    const uint64_t nb = in / RC_QK, nsb = rc_q4_supers(nb);
    memset(dst, 0, n_rows * nb * 16);
    for (uint64_t o = 0; o < n_rows; o++) {
        const float *xr = x + o * in;
        uint8_t *codes = dst + o * nb * 16;
        uint8_t *Dp = dst + n_rows * nb * 16 + o * nsb * 2;
        int8_t *s = (int8_t *)(dst + n_rows * (nb * 16 + nsb * 2)) + o * nb;
        for (uint64_t sb = 0; sb < nsb; sb++) { /* as rc_q4_super */
            const uint64_t b0 = sb * RC_Q4_SUPER, n = nb - b0 < RC_Q4_SUPER ? nb - b0 : RC_Q4_SUPER;
            float d[RC_Q4_SUPER], dmax = 0;
            for (uint64_t k = 0; k < n; k++) {
                d[k] = RC_QS(rc_q4_block_scale)(xr + (b0 + k) * RC_QK);
                dmax = fmaxf(dmax, fabsf(d[k]));
            }
            uint16_t h = rc_f32_to_f16(dmax * (128.0f / 127.0f));
            rc_put_f16(Dp + 2 * sb, h);
            const float Df = rc_f16_to_f32(h);
            for (uint64_t k = 0; k < n; k++) {
                uint8_t c[RC_QK];
                s[b0 + k] = RC_QS(rc_q4_block_int_scale)(xr + (b0 + k) * RC_QK, d[k], Df, c);
                rc_q4_block_store(codes, nb, b0 + k, c);
            }
        }
    }
}

#undef RC_QS_VF
#undef RC_QS_VI
#undef RC_QS_STEP1_TRIALS
#undef RC_QS_STEP1_VECS
#undef RC_QS_STEP2_TRIALS
#undef RC_QS_STEP2_VECS
