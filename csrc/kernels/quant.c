/* quant.c: q8 and q4 weights (see quant.h for the layouts), quantizing, dequantizing, and the int8
 * activation vector. Portable C: the converter's quantizer and the kernels' shared first step. */
#include <math.h>
#include <stdlib.h>

#include "kernels/gemm.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"

const int8_t rc_q4_values[16] = {-63, -52, -41, -32, -24, -17, -11, -5, 0, 6, 12, 19, 26, 34, 44, 56};
const uint8_t rc_q4_values_u8[16] = {1, 12, 23, 32, 40, 47, 53, 59, 64, 70, 76, 83, 90, 98, 108, 120};

/* ---- f32 -> f16, round to nearest even (portable; the converter's path, not a hot loop) ------------ */
static uint16_t rc_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffff;
    if (ax >= 0x47800000u) return (uint16_t)(sign | (ax > 0x7f800000u ? 0x7e00 : 0x7c00)); /* inf/NaN/overflow */
    if (ax < 0x38800000u) {                        /* result is subnormal or zero */
        if (ax < 0x33000000u) return (uint16_t)sign; /* below half the smallest subnormal */
        uint32_t man = (ax & 0x7fffff) | 0x800000;
        /* value = man * 2^(e-150); the subnormal unit is 2^-24, so units = man * 2^(e-126) */
        int e = (int)(ax >> 23);
        int rshift = 126 - e; /* >= 1 */
        uint32_t units = man >> rshift;
        uint32_t rem = man & ((1u << rshift) - 1);
        uint32_t halfway = 1u << (rshift - 1);
        if (rem > halfway || (rem == halfway && (units & 1))) units++;
        return (uint16_t)(sign | units);
    }
    uint32_t r = ax + 0xfff + ((ax >> 13) & 1);    /* round mantissa to 10 bits, ties to even */
    r -= 0x38000000u;                              /* rebias exponent 127 -> 15 */
    if (r >= 0x0f800000u) return (uint16_t)(sign | 0x7c00);
    return (uint16_t)(sign | (r >> 13));
}

static void rc_put_f16(uint8_t *p, uint16_t h) { p[0] = (uint8_t)h; p[1] = (uint8_t)(h >> 8); }
static uint16_t rc_get_f16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* round to nearest, ties to even, for |v| < 2^22: the same on every ISA (no libm; the library is built
 * with -ffp-contract=off so v*id + big is never fused) */
static inline __attribute__((always_inline)) float rc_round_even(float v) {
    const float big = 12582912.0f; /* 1.5 * 2^23: the sum's rounding is the rounding to an integer */
    float r = v + big;
    return r - big;
}

uint64_t rc_q_row_bytes(uint32_t dtype, uint64_t in) {
    if (in == 0 || in % RC_QK) return 0;
    const uint64_t nb = in / RC_QK;
    if (dtype == RWKV_DTYPE_Q8_0) return nb * RC_Q8_BLOCK_BYTES;
    if (dtype == RWKV_DTYPE_Q4) return nb < RC_Q4_MIN_BLOCKS ? 0 : nb * 17 + 2 * rc_q4_supers(nb);
    return 0;
}

/* ---- q4 code packing (groups, quant.h) ------------------------------------------------------------- */
/* byte of weight j of block b inside a row's codes, and the nibble's shift (0 or 4) */
static uint64_t rc_q4_byte(uint64_t nb, uint64_t b, uint64_t j, int *shift) {
    const uint64_t g = b / RC_Q4_GROUP * RC_Q4_GROUP, n = rc_q4_group_blocks(nb, b);
    *shift = (j / 4) % 2 ? 4 : 0;
    return 16 * g + rc_q4_pos(n, b - g, j);
}

void rc_q4_block_values(const uint8_t *codes, uint64_t nb, uint64_t b, int8_t out[RC_QK]) {
    for (uint64_t j = 0; j < RC_QK; j++) {
        int shift;
        const uint64_t at = rc_q4_byte(nb, b, j, &shift);
        out[j] = rc_q4_values[(codes[at] >> shift) & 15];
    }
}

/* Store the codes of block b (32 codes in input order) into a row's codes (zeroed first). */
static void rc_q4_block_store(uint8_t *row_codes, uint64_t nb, uint64_t b, const uint8_t codes[RC_QK]) {
    for (uint64_t j = 0; j < RC_QK; j++) {
        int shift;
        const uint64_t at = rc_q4_byte(nb, b, j, &shift);
        row_codes[at] = (uint8_t)(row_codes[at] | codes[j] << shift);
    }
}

/* ---- q8 ------------------------------------------------------------------------------------------- */
static void rc_quantize_row_q8(const float *x, uint64_t in, uint8_t *row) {
    const uint64_t nb = in / RC_QK;
    int8_t *q = (int8_t *)(row + 2 * nb);
    for (uint64_t b = 0; b < nb; b++) {
        const float *xb = x + b * RC_QK;
        float amax = 0;
        for (int j = 0; j < RC_QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
        uint16_t h = rc_f32_to_f16(amax / 127.0f);
        float d = rc_f16_to_f32(h);               /* quantize with the scale the kernels will use */
        float id = d > 0 ? 1.0f / d : 0.0f;
        for (int j = 0; j < RC_QK; j++) {
            float v = rc_round_even(xb[j] * id);
            q[b * RC_QK + j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        rc_put_f16(row + 2 * b, h);
    }
}

void rc_quantize_q8(const float *x, uint64_t n_rows, uint64_t in, uint8_t *dst) {
    const uint64_t rb = rc_q_row_bytes(RWKV_DTYPE_Q8_0, in);
    for (uint64_t o = 0; o < n_rows; o++) rc_quantize_row_q8(x + o * in, in, dst + o * rb);
}

void rc_dequantize_row_q8(const uint8_t *W, uint64_t n_rows, uint64_t in, uint64_t o, float *out) {
    const uint64_t nb = in / RC_QK;
    const uint8_t *row = W + o * nb * RC_Q8_BLOCK_BYTES;
    (void)n_rows;
    const int8_t *q = (const int8_t *)(row + 2 * nb);
    for (uint64_t b = 0; b < nb; b++) {
        float d = rc_f16_to_f32(rc_get_f16(row + 2 * b));
        for (int j = 0; j < RC_QK; j++) out[b * RC_QK + j] = d * (float)q[b * RC_QK + j];
    }
}

/* ---- q4: scale search ------------------------------------------------------------------------------
 * Two steps per super-block of (up to) 8 blocks:
 * 1. for each block, the real scale d_b minimising  sum_j (x_j - d v[c_j])^2 : try 2 x (2 RC_Q4_TRIES + 1)
 *    = 22 trial scales that map the block's largest-magnitude value onto or near either end of the codebook
 *    (within +-5 of -63 or 56; 38 trials lowered the squared error on Gaussian blocks by 0.6% at 1.7x the
 *    time), give every weight its nearest code under each trial scale, and keep the assignment whose
 *    least-squares-optimal d leaves the smallest error (d may be negative: the codebook is asymmetric);
 * 2. D = max |d_b| * 128 / 127 rounded to f16, and for each block the int8 s (d_b = D s / 128) among the
 *    few nearest to d_b's that leaves the smallest error once every code is re-picked for it.
 * Plain squared error: on the test models it gave a lower KL divergence of the logits than weighting each
 * weight by x_j^2 or sigma2 + x_j^2 (as llama.cpp does without an importance matrix): tiny 0.66x absmax
 * 4-bit's KL against 0.86x and 0.74x. Outlier columns are handled by the converter's column scales. */
#define RC_Q4_TRIES 5
#define RC_Q4_STEP 1.0f
#define RC_Q4_S_NEAR 2 /* int8 scales tried on each side of the real one */

/* midpoints between consecutive codebook values */
static const float rc_q4_mid[15] = {-57.5f, -46.5f, -36.5f, -28.0f, -20.5f, -14.0f, -8.0f, -2.5f,
                                    3.0f,   9.0f,   15.5f,  22.5f,  30.0f,  39.0f,  50.0f};

/* The nearest code to v (ties to the lower value): a table on floor(v) gives the code of that integer, and
 * one comparison moves past a midpoint inside (floor(v), floor(v) + 1] (they are >= 5 apart, so there is at
 * most one). lut[k + 128] = code of the integer k, for k in [-128, 127]. */
typedef struct { uint8_t lut[256]; } rc_q4_nearest_table;

static void rc_q4_table_init(rc_q4_nearest_table *t) {
    for (int k = -128; k < 128; k++) {
        int c = 0;
        while (c < 15 && (float)k > rc_q4_mid[c]) c++;
        t->lut[k + 128] = (uint8_t)c;
    }
}

static inline int rc_q4_nearest(const rc_q4_nearest_table *t, float v) {
    v = v < -127.0f ? -127.0f : v > 126.0f ? 126.0f : v;
    int k = (int)v - (v < (float)(int)v); /* floor */
    int c = t->lut[k + 128];
    return c + (c < 15 && v > rc_q4_mid[c]);
}

/* sum x*v and sum v^2 for the codes nearest to x*id. */
static void rc_q4_trial(const rc_q4_nearest_table *t, const float *x, float id, float *sqx, float *sq2) {
    float a = 0, b = 0;
    for (int j = 0; j < RC_QK; j++) {
        float v = rc_q4_values[rc_q4_nearest(t, x[j] * id)];
        a += v * x[j];
        b += v * v;
    }
    *sqx = a;
    *sq2 = b;
}

/* Step 1: the block's best real scale (0 for an all-zero block). */
static float rc_q4_block_scale(const rc_q4_nearest_table *tab, const float *x) {
    float amax = 0, max = 0;
    for (int j = 0; j < RC_QK; j++) {
        float a = fabsf(x[j]);
        if (a > amax) { amax = a; max = x[j]; }
    }
    if (amax == 0) return 0;
    float best_d = 0, best = -1;
    for (int end = 0; end < 2; end++) {
        float target = end == 0 ? (float)rc_q4_values[0] : (float)rc_q4_values[15];
        for (int t = -RC_Q4_TRIES; t <= RC_Q4_TRIES; t++) {
            float id = (target + (end == 0 ? t : -t) * RC_Q4_STEP) / max;
            float sqx, sq2;
            rc_q4_trial(tab, x, id, &sqx, &sq2);
            /* with the optimal d = sqx/sq2 the error is  sum x^2 - sqx^2/sq2 : maximise sqx^2/sq2 */
            if (sq2 > 0 && sqx * sqx > best * sq2) {
                best = sqx * sqx / sq2;
                best_d = sqx / sq2;
            }
        }
    }
    return best_d;
}

/* The codes of a block for the stored scale d, and the squared error they leave. */
static float rc_q4_codes_for(const rc_q4_nearest_table *tab, const float *x, float d, uint8_t codes[RC_QK]) {
    float id = d != 0 ? 1.0f / d : 0.0f, err = 0;
    for (int j = 0; j < RC_QK; j++) {
        codes[j] = (uint8_t)rc_q4_nearest(tab, x[j] * id);
        float e = x[j] - d * (float)rc_q4_values[codes[j]];
        err += e * e;
    }
    return err;
}

/* Step 2 for one block: the int8 scale (near d / (D / 128)) with the smallest error, and its codes. */
static int8_t rc_q4_block_int_scale(const rc_q4_nearest_table *tab, const float *x, float d, float D,
                                    uint8_t codes[RC_QK]) {
    const float unit = D * 0.0078125f;
    float t = unit > 0 ? d / unit : 0;
    int s0 = (int)(t < 0 ? t - 0.5f : t + 0.5f);
    float best = INFINITY;
    int best_s = 0;
    uint8_t trial[RC_QK];
    for (int s = s0 - RC_Q4_S_NEAR; s <= s0 + RC_Q4_S_NEAR; s++) {
        if (s < -127 || s > 127) continue;
        float err = rc_q4_codes_for(tab, x, unit * (float)s, trial);
        if (err < best) {
            best = err;
            best_s = s;
            memcpy(codes, trial, RC_QK);
        }
    }
    return (int8_t)best_s;
}

/* One super-block: blocks [b0, b0 + n) of a row. */
static void rc_q4_super(const rc_q4_nearest_table *tab, const float *x, uint64_t nb, uint64_t b0, uint64_t n,
                        uint8_t *codes, uint8_t *D, int8_t *s) {
    float d[RC_Q4_SUPER], dmax = 0;
    for (uint64_t k = 0; k < n; k++) {
        d[k] = rc_q4_block_scale(tab, x + (b0 + k) * RC_QK);
        dmax = fmaxf(dmax, fabsf(d[k]));
    }
    uint16_t h = rc_f32_to_f16(dmax * (128.0f / 127.0f));
    rc_put_f16(D, h);
    const float Df = rc_f16_to_f32(h);
    for (uint64_t k = 0; k < n; k++) {
        uint8_t c[RC_QK];
        s[k] = rc_q4_block_int_scale(tab, x + (b0 + k) * RC_QK, d[k], Df, c);
        rc_q4_block_store(codes, nb, b0 + k, c);
    }
}

/* The reference above, one trial at a time: the tests' yardstick for the form below (rc_quantize_q4_ref). */
void rc_quantize_q4_ref(const float *x, uint64_t n_rows, uint64_t in, uint8_t *dst) {
    const uint64_t nb = in / RC_QK, nsb = rc_q4_supers(nb);
    rc_q4_nearest_table tab;
    rc_q4_table_init(&tab);
    memset(dst, 0, n_rows * nb * 16);
    for (uint64_t o = 0; o < n_rows; o++) {
        uint8_t *codes = dst + o * nb * 16;
        uint8_t *D = dst + n_rows * nb * 16 + o * nsb * 2;
        int8_t *s = (int8_t *)(dst + n_rows * (nb * 16 + nsb * 2)) + o * nb;
        for (uint64_t sb = 0; sb < nsb; sb++) {
            uint64_t b0 = sb * RC_Q4_SUPER, n = nb - b0 < RC_Q4_SUPER ? nb - b0 : RC_Q4_SUPER;
            rc_q4_super(&tab, x + o * in, nb, b0, n, codes, D + 2 * sb, s + b0);
        }
    }
}

/* ---- q4: the same search with the trials side by side (quant_q4_search.h) -----------------------------------
 * Bit-identical to the reference, and faster: AMD Zen 3, one thread, 256x4096 Gaussian, ns per weight: AVX2 copy
 * (8 trials per vector) 208-216 -> 33-38; baseline copy (4 per vector: SSE2 here, NEON on ARM, untimed there)
 * 124-126 -> 72-89. An 8-lane copy built without AVX (SSE4.1) had come out as scalar code, slower than the
 * reference (180 against 130). */
#define RC_QS_N 8
#define RC_QS(name) name##_x8
#include "kernels/quant_q4_search.h"
#undef RC_QS_N
#undef RC_QS
#define RC_QS_N 4
#define RC_QS(name) name##_x4
#include "kernels/quant_q4_search.h"
#undef RC_QS_N
#undef RC_QS

static void rc_quantize_q4_base(const float *x, uint64_t n_rows, uint64_t in, uint8_t *dst) {
    rc_quantize_q4_body_x4(x, n_rows, in, dst);
}
#if defined(__x86_64__) && defined(__GNUC__) && !defined(RC_SIMDE)
__attribute__((target("avx2"))) static void rc_quantize_q4_avx2(const float *x, uint64_t n_rows, uint64_t in,
                                                                uint8_t *dst) {
    rc_quantize_q4_body_x8(x, n_rows, in, dst);
}
#endif

void rc_quantize_q4_isa(int isa, const float *x, uint64_t n_rows, uint64_t in, uint8_t *dst) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(RC_SIMDE)
    if (isa >= RC_ISA_AVX2) { rc_quantize_q4_avx2(x, n_rows, in, dst); return; }
#endif
    (void)isa;
    rc_quantize_q4_base(x, n_rows, in, dst);
}

void rc_quantize_q4(const float *x, uint64_t n_rows, uint64_t in, uint8_t *dst) {
    rc_quantize_q4_isa(rc_kernels()->isa, x, n_rows, in, dst);
}

void rc_dequantize_row_q4(const uint8_t *W, uint64_t n_rows, uint64_t in, uint64_t o, float *out) {
    const uint64_t nb = in / RC_QK;
    const rc_q4_row r = rc_q4_row_at(W, n_rows, nb, o);
    for (uint64_t b = 0; b < nb; b++) {
        float d = rc_q4_scale(&r, b);
        int8_t v[RC_QK];
        rc_q4_block_values(r.codes, nb, b, v);
        for (int j = 0; j < RC_QK; j++) out[b * RC_QK + j] = d * (float)v[j];
    }
}

/* ---- activation vectors ------------------------------------------------------------------------- */
uint64_t rc_qx_stride(uint32_t dtype, uint64_t in) {
    uint64_t bytes = dtype == RWKV_DTYPE_Q8_0 ? in / RC_QK * 4 + 2 * in : in / RC_QK * 12 + in;
    return (bytes + RC_ALIGN - 1) / RC_ALIGN * RC_ALIGN;
}

/* A block's scale: max|x| / qmax, or NaN if the block holds a NaN or infinity (or |x| > 3e38; see quant.h).
 * The maximum is taken on the bit patterns of |x| (for non-negative floats, integer order is float order, and
 * NaN / infinity lie above every finite value): an integer max, which compilers vectorize. */
static inline __attribute__((always_inline)) float rc_block_scale(const float *xb, float qmax) {
    uint32_t bits[RC_QK], m = 0;
    memcpy(bits, xb, sizeof bits);
    for (int j = 0; j < RC_QK; j++) {
        const uint32_t a = bits[j] & 0x7fffffffu;
        m = a > m ? a : m;
    }
    const float limit = 3.0e38f;
    uint32_t limit_bits;
    memcpy(&limit_bits, &limit, 4);
    if (m > limit_bits) return NAN;
    float amax;
    memcpy(&amax, &m, 4);
    return amax / qmax;
}

/* Block b of vector x with the column scales applied (cs sorted; *next is the first column scale not yet
 * passed, advanced here): returns xb itself when no scaled column falls in the block, else buf. */
static inline __attribute__((always_inline)) const float *rc_scaled_block(const float *x, uint64_t b, const rc_colscale *cs,
                                                                 uint32_t *next, float buf[RC_QK]) {
    const float *xb = x + b * RC_QK;
    if (!cs || *next >= cs->n || (uint64_t)cs->cols[*next] >= (b + 1) * RC_QK) return xb;
    memcpy(buf, xb, RC_QK * sizeof(float));
    for (; *next < cs->n && (uint64_t)cs->cols[*next] < (b + 1) * RC_QK; (*next)++)
        buf[(uint64_t)cs->cols[*next] - b * RC_QK] *= cs->scales[*next];
    return buf;
}

/* q8 weights: int16 activations (d[nb] float, q[in] int16) */
static inline __attribute__((always_inline)) void rc_qx_prepare16(const float *x, uint64_t in, const rc_colscale *cs, void *out) {
    const uint64_t nb = in / RC_QK;
    float *d = (float *)out;
    int16_t *q = (int16_t *)(d + nb);
    uint32_t next = 0;
    float buf[RC_QK];
    for (uint64_t b = 0; b < nb; b++) {
        const float *xb = rc_scaled_block(x, b, cs, &next, buf);
        const float db = rc_block_scale(xb, 32767.0f);
        d[b] = db;
        if (!(db > 0)) { /* zero, or NaN for a non-finite block (its products are NaN through d): codes 0 */
            memset(q + b * RC_QK, 0, RC_QK * sizeof *q);
            continue;
        }
        const float id = 1.0f / db;
        for (int j = 0; j < RC_QK; j++) {
            float v = rc_round_even(xb[j] * id);
            v = v > 32767.0f ? 32767.0f : v < -32767.0f ? -32767.0f : v == v ? v : 0.0f; /* NaN: see below */
            q[b * RC_QK + j] = (int16_t)v;
        }
    }
}

/* One block of 32 floats -> int8 (dx = max|x| / 127), written in input order to q; returns dx, *sum = sum q.
 * Written as plain loops over a local buffer so that the compiler vectorizes them. */
static inline __attribute__((always_inline)) float rc_q8_block(const float *xb, int8_t q[RC_QK], int *sum) {
    const float db = rc_block_scale(xb, 127.0f);
    *sum = 0;
    if (!(db > 0)) { /* zero, or NaN for a non-finite block (its products are NaN through d): codes 0 */
        memset(q, 0, RC_QK);
        return db;
    }
    const float id = 1.0f / db;
    int v[RC_QK], s = 0;
    for (int j = 0; j < RC_QK; j++) {
        float r = rc_round_even(xb[j] * id);
        /* A block whose max|x| is tiny has a subnormal scale, so id = 1/db is infinite and a 0 entry gives
         * 0 * inf = NaN: code 0 (converting NaN to an integer is undefined; on x86 it gave INT_MIN, which then
         * entered the block sum). */
        r = r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r == r ? r : 0.0f;
        v[j] = (int)r;
    }
    for (int j = 0; j < RC_QK; j++) {
        q[j] = (int8_t)v[j];
        s += v[j];
    }
    *sum = s;
    return db;
}

/* q4 weights: int8 activations (d[nb], s[nb] float, q[in] int8 in the group order, z[nb] int32) */
static inline __attribute__((always_inline)) void rc_qx_prepare8(const float *x, uint64_t in, const rc_colscale *cs, void *out) {
    const uint64_t nb = in / RC_QK;
    float *d = (float *)out, *s = d + nb;
    int8_t *q = (int8_t *)(s + nb);
    int32_t *z = (int32_t *)(q + in);
    uint32_t next = 0;
    float buf[RC_QK];
    for (uint64_t b = 0; b < nb; b++) {
        int8_t qb[RC_QK];
        int sum;
        d[b] = rc_q8_block(rc_scaled_block(x, b, cs, &next, buf), qb, &sum);
        s[b] = d[b] * (float)sum;
        z[b] = -64 * sum;
        /* the 8 runs of 4 weights of the block to their places in the group order (rc_qx_q4_index) */
        for (uint64_t c = 0; c < RC_QK / 4; c++) memcpy(q + rc_qx_q4_index(nb, b, 4 * c), qb + 4 * c, 4);
    }
}

/* Written once, compiled as a baseline copy and, on x86-64, AVX2 and AVX-512 copies (function target
 * attributes, as ops/wkv.c): the block loops above vectorize 8 or 16 wide there. The copy follows the kernel
 * family in use (rc_kernel_set.isa). Same operations in the same order, no contraction: bit-identical
 * (tests/c/test_kernels.c, test_qx_isa). */
static inline __attribute__((always_inline)) void rc_qx_prepare_body(uint32_t dtype, const float *X, uint64_t in,
                                                                     uint64_t T, const rc_colscale *cs, void *out) {
    const uint64_t stride = rc_qx_stride(dtype, in);
    for (uint64_t t = 0; t < T; t++) {
        void *o = (uint8_t *)out + t * stride;
        if (dtype == RWKV_DTYPE_Q8_0)
            rc_qx_prepare16(X + t * in, in, cs, o);
        else
            rc_qx_prepare8(X + t * in, in, cs, o);
    }
}

/* ---- the q4 GEMM activations (gemm.h) ------------------------------------------------------------------
 * The same blocks as rc_qx_prepare8's (rc_q8_block: the GEMM and decode paths multiply the same integers), kept
 * in input order, with -128 * sum xq; u8: the values stored as xq + 128 (rc_gx_prepare_u8). */
uint64_t rc_gx_stride(uint64_t in) {
    uint64_t bytes = in / RC_QK * 8 + in;
    return (bytes + RC_ALIGN - 1) / RC_ALIGN * RC_ALIGN;
}

static inline __attribute__((always_inline)) void rc_gx_prepare_body(const float *X, uint64_t in, uint64_t t0,
                                                                     uint64_t t1, const rc_colscale *cs, void *out,
                                                                     int u8) {
    const uint64_t nb = in / RC_QK, stride = rc_gx_stride(in);
    float buf[RC_QK];
    for (uint64_t t = t0; t < t1; t++) {
        uint8_t *base = (uint8_t *)out + t * stride;
        float *d = (float *)(void *)base;
        int32_t *corr = (int32_t *)(void *)(d + nb);
        int8_t *q = (int8_t *)(corr + nb);
        uint32_t next = 0;
        for (uint64_t b = 0; b < nb; b++) {
            int8_t qb[RC_QK];
            int sum;
            d[b] = rc_q8_block(rc_scaled_block(X + t * in, b, cs, &next, buf), qb, &sum);
            corr[b] = -RC_GX_OFFSET * sum;
            for (int j = 0; j < RC_QK; j++) q[b * RC_QK + j] = u8 ? (int8_t)(qb[j] ^ (int8_t)0x80) : qb[j];
        }
    }
}

/* ---- public entry points ---------------------------------------------------------------------------- */

#define RC_QX_ARGS uint32_t dtype, const float *X, uint64_t in, uint64_t T, const rc_colscale *cs, void *out
#define RC_QX_PASS dtype, X, in, T, cs, out
static void rc_qx_prepare_base(RC_QX_ARGS) { rc_qx_prepare_body(RC_QX_PASS); }
#if defined(__x86_64__) && defined(__GNUC__) && !defined(RC_SIMDE)
#define RC_QX_X86 1
__attribute__((target("avx2"))) static void rc_qx_prepare_avx2(RC_QX_ARGS) { rc_qx_prepare_body(RC_QX_PASS); }
__attribute__((target("avx512f,avx512bw"))) static void rc_qx_prepare_avx512(RC_QX_ARGS) {
    rc_qx_prepare_body(RC_QX_PASS);
}
#endif

void rc_qx_prepare_isa(int isa, RC_QX_ARGS) {
#ifdef RC_QX_X86
    if (isa >= RC_ISA_AVX512) { rc_qx_prepare_avx512(RC_QX_PASS); return; }
    if (isa >= RC_ISA_AVX2) { rc_qx_prepare_avx2(RC_QX_PASS); return; }
#endif
    (void)isa;
    rc_qx_prepare_base(RC_QX_PASS);
}

void rc_qx_prepare(RC_QX_ARGS) { rc_qx_prepare_isa(rc_kernels()->isa, RC_QX_PASS); }

#define RC_GX_ARGS const float *X, uint64_t in, uint64_t t0, uint64_t t1, const rc_colscale *cs, void *out
#define RC_GX_PASS X, in, t0, t1, cs, out
static void rc_gx_prepare_base(RC_GX_ARGS, int u8) { rc_gx_prepare_body(RC_GX_PASS, u8); }
#ifdef RC_QX_X86
__attribute__((target("avx2"))) static void rc_gx_prepare_avx2(RC_GX_ARGS, int u8) { rc_gx_prepare_body(RC_GX_PASS, u8); }
__attribute__((target("avx512f,avx512bw"))) static void rc_gx_prepare_avx512c(RC_GX_ARGS, int u8) {
    rc_gx_prepare_body(RC_GX_PASS, u8);
}
#endif
static void rc_gx_prepare_isa(RC_GX_ARGS, int u8) {
#ifdef RC_QX_X86
    const int isa = rc_kernels()->isa;
    if (isa >= RC_ISA_AVX512) { rc_gx_prepare_avx512c(RC_GX_PASS, u8); return; }
    if (isa >= RC_ISA_AVX2) { rc_gx_prepare_avx2(RC_GX_PASS, u8); return; }
#endif
    rc_gx_prepare_base(RC_GX_PASS, u8);
}
void rc_gx_prepare(RC_GX_ARGS) { rc_gx_prepare_isa(RC_GX_PASS, 0); }
void rc_gx_prepare_u8(RC_GX_ARGS) { rc_gx_prepare_isa(RC_GX_PASS, 1); }

/* Largest |x| q8 / q4 accept: keeps every f16 scale finite (q8: d = max|x| / 127; q4: |d| <= max|x| / 51
 * and D = 128/127 max |d|) */
#define RC_Q8_MAX_ABS 6.5e6f
#define RC_Q4_MAX_ABS 3.0e6f

uint64_t rwkv_dtype_row_bytes(uint32_t dtype, uint64_t n_cols) { return n_cols ? rc_row_bytes(dtype, n_cols) : 0; }

static uint16_t rc_f16_store(float f) { return rc_f32_to_f16(f); }

int rwkv_quantize(uint32_t dtype, const float *src, uint64_t n_rows, uint64_t n_cols, void *dst, uint64_t dst_size) {
    if (!src || !dst) return rc_error(RWKV_ERR_ARG, "NULL argument");
    uint64_t rb = rwkv_dtype_row_bytes(dtype, n_cols), need = 0;
    if (rb == 0)
        return rc_error(RWKV_ERR_ARG, "dtype %s cannot store rows of %llu values%s", rwkv_dtype_name(dtype),
                        (unsigned long long)n_cols,
                        dtype == RWKV_DTYPE_Q8_0 ? " (needs a multiple of 32)"
                        : dtype == RWKV_DTYPE_Q4 ? " (needs a multiple of 32, at least 64)" : "");
    if (!rc_mul_u64(rb, n_rows, &need) || need != dst_size)
        return rc_error(RWKV_ERR_ARG, "destination holds %llu bytes; %llu rows of %s need %llu",
                        (unsigned long long)dst_size, (unsigned long long)n_rows, rwkv_dtype_name(dtype),
                        (unsigned long long)(need));
    const float limit = dtype == RWKV_DTYPE_F16    ? 65504.0f
                        : dtype == RWKV_DTYPE_F32  ? 3.4e38f
                        : dtype == RWKV_DTYPE_Q8_0 ? RC_Q8_MAX_ABS
                                                   : RC_Q4_MAX_ABS;
    for (uint64_t r = 0; r < n_rows; r++) {
        const float *x = src + r * n_cols;
        for (uint64_t i = 0; i < n_cols; i++) {
            if (!(fabsf(x[i]) <= limit)) {
                if (x[i] != x[i] || fabsf(x[i]) > 3.4e38f)
                    return rc_error(RWKV_ERR_ARG, "row %llu holds a NaN or infinite value", (unsigned long long)r);
                return rc_error(RWKV_ERR_ARG, "row %llu holds %g, beyond what %s can store (|x| <= %g)",
                                (unsigned long long)r, (double)x[i], rwkv_dtype_name(dtype), (double)limit);
            }
        }
        uint8_t *out = (uint8_t *)dst + r * rb;
        if (dtype == RWKV_DTYPE_F32) memcpy(out, x, n_cols * 4);
        if (dtype == RWKV_DTYPE_F16)
            for (uint64_t i = 0; i < n_cols; i++) rc_put_f16(out + 2 * i, rc_f16_store(x[i]));
    }
    /* q4 spreads its rows over three arrays (quant.h): quantize the whole tensor at once */
    if (dtype == RWKV_DTYPE_Q8_0) rc_quantize_q8(src, n_rows, n_cols, (uint8_t *)dst);
    if (dtype == RWKV_DTYPE_Q4) rc_quantize_q4(src, n_rows, n_cols, (uint8_t *)dst);
    return RWKV_OK;
}

int rwkv_dequantize(uint32_t dtype, const void *src, uint64_t n_rows, uint64_t n_cols, float *dst) {
    if (!src || !dst) return rc_error(RWKV_ERR_ARG, "NULL argument");
    if (rwkv_dtype_row_bytes(dtype, n_cols) == 0)
        return rc_error(RWKV_ERR_ARG, "dtype %s cannot store rows of %llu values", rwkv_dtype_name(dtype),
                        (unsigned long long)n_cols);
    for (uint64_t r = 0; r < n_rows; r++) rc_kernels_scalar.row[dtype](src, n_rows, n_cols, r, dst + r * n_cols);
    return RWKV_OK;
}
