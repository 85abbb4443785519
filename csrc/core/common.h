/* common.h: internal helpers shared by every C file of the library (not part of the public API). */
#ifndef RC_COMMON_H
#define RC_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rwkv_cpu.h"

#define RC_ALIGN 64

/* Record a failure for the calling thread and return its status, so call sites read
 *     return rc_error(RWKV_ERR_FORMAT, "tensor %s: ...", name);                                       */
int rc_error(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Prefix the current error message with context ("loading model.rwkv: ..."). Returns status. */
int rc_error_prefix(int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void rc_error_clear(void);

/* 64-byte aligned, zeroed allocation; NULL on failure or on size overflow. */
void *rc_alloc(size_t nbytes);
void rc_free(void *p);

/* Overflow-checked arithmetic: return 0 on overflow. */
static inline int rc_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (a != 0 && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}
static inline int rc_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a) return 0;
    *out = a + b;
    return 1;
}

/* IEEE half <-> float, portable (no F16C); exact for every half value, round-to-nearest-even on store. */
static inline float rc_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do { e++; man <<= 1; } while ((man & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* A tensor as the kernels see it: a view into the mapped file. */
typedef struct {
    const char *name;
    uint32_t dtype;
    uint32_t n_dims;
    uint64_t shape[4];
    uint64_t n_elements;
    uint64_t nbytes;
    const void *data;
    /* Column scales of a q8/q4 matrix (docs/FILE_FORMAT.md): column outlier_cols[k] is stored divided by
     * outlier_scales[k], so the real weight is stored * scale (the products scale x instead). n_outliers = 0
     * for most tensors. */
    uint32_t n_outliers;
    const float *outlier_cols;     /* [k] column indices, increasing, stored as exact floats */
    const float *outlier_scales;   /* [k] finite, > 0 */
} rc_tensor;

/* Rows and columns of a matrix [out, in]; a 1-D tensor is one row. */
static inline uint64_t rc_rows(const rc_tensor *t) { return t->n_dims == 1 ? 1 : t->shape[0]; }
static inline uint64_t rc_cols(const rc_tensor *t) { return t->shape[t->n_dims - 1]; }

#endif
