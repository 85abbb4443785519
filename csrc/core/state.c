/* state.c: recurrent-state handles. A state remembers the shape it was made for, so a state of another
 * architecture or size is refused instead of being read out of bounds. */
#include <stdio.h>
#include <stdlib.h>

#include "core/state.h"

static int rc_same_shape(const rwkv_model_info *a, const rwkv_model_info *b, char *why, size_t cap) {
#define RC_CMP(field)                                                                                 \
    if (a->field != b->field) {                                                                       \
        snprintf(why, cap, #field " %u vs %u", (unsigned)a->field, (unsigned)b->field);              \
        return 0;                                                                                     \
    }
    if (a->arch != b->arch) {
        snprintf(why, cap, "architecture %s vs %s", rwkv_arch_name(a->arch), rwkv_arch_name(b->arch));
        return 0;
    }
    RC_CMP(n_layer)
    RC_CMP(n_embd)
    RC_CMP(dim_att)
    RC_CMP(n_head)
    RC_CMP(head_size)
#undef RC_CMP
    return 1;
}

int rwkv_state_new(const rwkv_model *m, rwkv_state **out) {
    if (!m || !out) return rc_error(RWKV_ERR_ARG, "NULL argument");
    *out = NULL;
    rwkv_state *s = calloc(1, sizeof *s);
    if (!s) return rc_error(RWKV_ERR_OOM, "out of memory");
    s->shape = m->info;
    s->arch = m->arch;
    s->size = m->info.state_size;
    uint64_t bytes;
    if (!rc_mul_u64(s->size, sizeof(float), &bytes) || bytes > SIZE_MAX || !(s->data = rc_alloc((size_t)bytes))) {
        uint64_t n = s->size;
        free(s);
        return rc_error(RWKV_ERR_OOM, "cannot allocate a state of %llu floats", (unsigned long long)n);
    }
    rwkv_state_reset(s);
    *out = s;
    return RWKV_OK;
}

int rwkv_state_clone(const rwkv_state *src, rwkv_state **out) {
    if (!src || !out) return rc_error(RWKV_ERR_ARG, "NULL argument");
    *out = NULL;
    rwkv_state *s = calloc(1, sizeof *s);
    if (!s) return rc_error(RWKV_ERR_OOM, "out of memory");
    *s = *src;
    if (!(s->data = rc_alloc((size_t)src->size * sizeof(float)))) {
        free(s);
        return rc_error(RWKV_ERR_OOM, "cannot allocate a state of %llu floats", (unsigned long long)src->size);
    }
    memcpy(s->data, src->data, (size_t)src->size * sizeof(float));
    *out = s;
    return RWKV_OK;
}

void rwkv_state_free(rwkv_state *s) {
    if (!s) return;
    rc_free(s->data);
    free(s);
}

int rwkv_state_reset(rwkv_state *s) {
    if (!s) return rc_error(RWKV_ERR_ARG, "state is NULL");
    uint64_t per = s->arch->state_floats_per_layer(&s->shape);
    for (uint32_t l = 0; l < s->shape.n_layer; l++) s->arch->state_init_layer(&s->shape, s->data + l * per);
    return RWKV_OK;
}

int rwkv_state_copy(rwkv_state *dst, const rwkv_state *src) {
    if (!dst || !src) return rc_error(RWKV_ERR_ARG, "NULL argument");
    char why[128];
    if (!rc_same_shape(&dst->shape, &src->shape, why, sizeof why))
        return rc_error(RWKV_ERR_STATE, "cannot copy a state between different models (%s)", why);
    if (dst != src) memcpy(dst->data, src->data, src->size * sizeof(float));
    return RWKV_OK;
}

float *rwkv_state_data(rwkv_state *s) { return s ? s->data : NULL; }
uint64_t rwkv_state_size(const rwkv_state *s) { return s ? s->size : 0; }

int rwkv_state_check(const rwkv_model *m, const rwkv_state *s) {
    if (!m || !s) return rc_error(RWKV_ERR_ARG, "NULL argument");
    char why[128];
    if (!rc_same_shape(&m->info, &s->shape, why, sizeof why))
        return rc_error(RWKV_ERR_STATE, "the state belongs to another model (model vs state: %s)", why);
    return RWKV_OK;
}
