/* matmul_scalar.c: the portable reference kernels. Plain C, no intrinsics; every SIMD kernel is tested
 * against these. Eight partial sums keep the float loops vectorizable by the compiler without
 * -ffast-math. The q8/q4 kernels compute exactly what quant.h defines: per block an exact integer dot
 * product of weight codes and the prepared integer activations, scaled by d_w * d_x, summed in block order. */
#include "kernels/gemm.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"

static float rc_dot_f32(const float *a, const float *b, uint64_t n) {
    float s[8] = {0};
    uint64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    float tail = 0;
    for (; i < n; i++) tail += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

static void rc_rows_f32(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *Xv, uint64_t T, float *Y,
                        uint64_t out) {
    const float *w = (const float *)W, *X = (const float *)Xv;
    for (uint64_t o = r0; o < r1; o++)
        for (uint64_t t = 0; t < T; t++) Y[t * out + o] = rc_dot_f32(w + o * in, X + t * in, in);
}

static void rc_row_f32(const void *W, uint64_t rows, uint64_t in, uint64_t row, float *out) {
    (void)rows;
    memcpy(out, (const float *)W + row * in, in * sizeof(float));
}

static void rc_row_f16(const void *W, uint64_t rows, uint64_t in, uint64_t row, float *out) {
    (void)rows;
    const uint16_t *w = (const uint16_t *)W + row * in;
    for (uint64_t i = 0; i < in; i++) out[i] = rc_f16_to_f32(w[i]);
}

/* f16: widen a block of the row once, then dot it with every token's vector. */
#define RC_F16_BLOCK 256
static void rc_rows_f16(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *Xv, uint64_t T, float *Y,
                        uint64_t out) {
    const uint16_t *w = (const uint16_t *)W;
    const float *X = (const float *)Xv;
    float buf[RC_F16_BLOCK];
    for (uint64_t o = r0; o < r1; o++) {
        for (uint64_t t = 0; t < T; t++) Y[t * out + o] = 0;
        for (uint64_t i0 = 0; i0 < in; i0 += RC_F16_BLOCK) {
            uint64_t n = in - i0 < RC_F16_BLOCK ? in - i0 : RC_F16_BLOCK;
            for (uint64_t i = 0; i < n; i++) buf[i] = rc_f16_to_f32(w[o * in + i0 + i]);
            for (uint64_t t = 0; t < T; t++) Y[t * out + o] += rc_dot_f32(buf, X + t * in + i0, n);
        }
    }
}

/* ---- q8 / q4: integer block dots on the prepared activations ---------------------------------------- */
static int32_t rc_dot_i8(const int8_t *a, const int8_t *b) {
    int32_t s = 0;
    for (int j = 0; j < RC_QK; j++) s += (int32_t)a[j] * (int32_t)b[j];
    return s;
}

/* One row against one prepared vector: sum over blocks of (d_w * d_x) * idot, in block order. */
static int32_t rc_dot_i8_i16(const int8_t *a, const int16_t *b) {
    int32_t s = 0;
    for (int j = 0; j < RC_QK; j++) s += (int32_t)a[j] * (int32_t)b[j];
    return s;
}

static float rc_row_dot_q8(const uint8_t *row, uint64_t nb, const void *qx) {
    const uint16_t *dw = rc_q_scales(row);
    const int8_t *wq = (const int8_t *)rc_q_quants(row, nb);
    const float *dx = rc_qx_d(qx);
    const int16_t *xq = rc_qx_q16(qx, nb);
    float acc = 0;
    for (uint64_t b = 0; b < nb; b++)
        acc += (rc_f16_to_f32(dw[b]) * dx[b]) * (float)rc_dot_i8_i16(wq + b * RC_QK, xq + b * RC_QK);
    return acc;
}

/* The prepared int8 activations of block b, in input order (quant.h: q4's are stored in group order). */
static void rc_qx_q4_block(const void *qx, uint64_t nb, uint64_t b, int8_t out[RC_QK]) {
    const int8_t *xq = rc_qx_q(qx, nb);
    for (uint64_t j = 0; j < RC_QK; j++) out[j] = xq[rc_qx_q4_index(nb, b, j)];
}

static float rc_row_dot_q4(const rc_q4_row *r, uint64_t nb, const void *qx) {
    const float *dx = rc_qx_d(qx);
    float acc = 0;
    int8_t v[RC_QK], x[RC_QK];
    for (uint64_t b = 0; b < nb; b++) {
        rc_q4_block_values(r->codes, nb, b, v);
        rc_qx_q4_block(qx, nb, b, x);
        acc += (rc_q4_scale(r, b) * dx[b]) * (float)rc_dot_i8(v, x);
    }
    return acc;
}

static void rc_rows_q8(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out) {
    const uint64_t nb = in / RC_QK, rb = nb * RC_Q8_BLOCK_BYTES, xs = rc_qx_stride(RWKV_DTYPE_Q8_0, in);
    for (uint64_t o = r0; o < r1; o++)
        for (uint64_t t = 0; t < T; t++)
            Y[t * out + o] = rc_row_dot_q8((const uint8_t *)W + o * rb, nb, (const uint8_t *)X + t * xs);
}

static void rc_rows_q4(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out) {
    const uint64_t nb = in / RC_QK, xs = rc_qx_stride(RWKV_DTYPE_Q4, in);
    for (uint64_t o = r0; o < r1; o++) {
        const rc_q4_row r = rc_q4_row_at(W, out, nb, o);
        for (uint64_t t = 0; t < T; t++) Y[t * out + o] = rc_row_dot_q4(&r, nb, (const uint8_t *)X + t * xs);
    }
}

static void rc_row_q8(const void *W, uint64_t rows, uint64_t in, uint64_t row, float *out) {
    rc_dequantize_row_q8((const uint8_t *)W, rows, in, row, out);
}

static void rc_row_q4(const void *W, uint64_t rows, uint64_t in, uint64_t row, float *out) {
    rc_dequantize_row_q4((const uint8_t *)W, rows, in, row, out);
}

/* ---- GEMM references (gemm.h) -------------------------------------------------------------------------
 * f32 / f16: the same dot products as the rows functions (a GEMM only changes the order of the work).
 * q4: per block the exact integer dot product of the weight values with the GEMM activations (int8,
 * gemm.h), scaled as every SIMD gemm scales it: ((float)isum * d_x) * d_w, summed in block order.
 * q8: the decode path's int16 activations (quant.h), so this is the rows function. */
static void rc_gemm_f32(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out, void *scratch) {
    for (uint64_t t = 0; t < T; t++) /* X rows rc_fx_stride(in) floats apart (gemm.h) */
        rc_rows_f32(W, in, r0, r1, (const float *)X + t * rc_fx_stride(in), 1, Y + t * out, out);
    (void)scratch;
}

static void rc_gemm_f16(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                        uint64_t out, void *scratch) {
    for (uint64_t t = 0; t < T; t++)
        rc_rows_f16(W, in, r0, r1, (const float *)X + t * rc_fx_stride(in), 1, Y + t * out, out);
    (void)scratch;
}

static void rc_gemm_q4(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X,
                       uint64_t T, float *Y, uint64_t out, void *scratch) {
    const uint64_t nb = in / RC_QK, xs = rc_gx_stride(in);
    int8_t v[RC_QK];
    for (uint64_t o = r0; o < r1; o++) {
        const rc_q4_row row = rc_q4_row_at(W, out, nb, o);
        for (uint64_t t = 0; t < T; t++) Y[t * out + o] = 0;
        for (uint64_t b = 0; b < nb; b++) {
            rc_q4_block_values(row.codes, nb, b, v);
            const float dw = rc_q4_scale(&row, b);
            for (uint64_t t = 0; t < T; t++) {
                const void *gx = (const uint8_t *)X + t * xs;
                const int32_t isum = rc_dot_i8(v, rc_gx_q(gx, nb) + b * RC_QK);
                Y[t * out + o] += ((float)isum * rc_gx_d(gx)[b]) * dw;
            }
        }
    }
}

static void rc_gemm_q8(const void *W, uint64_t in, uint64_t r0, uint64_t r1, const void *X, uint64_t T, float *Y,
                       uint64_t out, void *scratch) {
    rc_rows_q8(W, in, r0, r1, X, T, Y, out);
    (void)scratch;
}

const rc_kernel_set rc_kernels_scalar = {
    .name = "scalar",
    .rows = {[RWKV_DTYPE_F32] = rc_rows_f32, [RWKV_DTYPE_F16] = rc_rows_f16, [RWKV_DTYPE_Q8_0] = rc_rows_q8,
             [RWKV_DTYPE_Q4] = rc_rows_q4},
    .row = {[RWKV_DTYPE_F32] = rc_row_f32, [RWKV_DTYPE_F16] = rc_row_f16, [RWKV_DTYPE_Q8_0] = rc_row_q8,
            [RWKV_DTYPE_Q4] = rc_row_q4},
    .gemm = {[RWKV_DTYPE_F32] = rc_gemm_f32, [RWKV_DTYPE_F16] = rc_gemm_f16, [RWKV_DTYPE_Q8_0] = rc_gemm_q8,
             [RWKV_DTYPE_Q4] = rc_gemm_q4},
};
