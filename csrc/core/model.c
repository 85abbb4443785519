/* model.c: loading a model (map, validate, bind the architecture's tensors) and querying it. */
#include <stdio.h>
#include <stdlib.h>

#include "core/cpu.h"
#include "core/model.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"

#define RC_VERSION "0.1.0"

/* The recurrent state of v5-v7 holds n_head x head_size x head_size floats per layer: quadratic in head_size,
 * while the weights that a file must hold grow linearly with it. Real models use 64; this bound keeps a header
 * from turning a small file into a state of terabytes (dim_att 2^20 with head_size 2^20: 4 TiB per layer). */
#define RC_MAX_HEAD_SIZE 256u

const char *rwkv_version(void) { return RC_VERSION; }

const char *rwkv_arch_name(uint32_t arch) {
    switch (arch) {
    case RWKV_ARCH_V4: return "v4";
    case RWKV_ARCH_V5_0: return "v5.0";
    case RWKV_ARCH_V5_1: return "v5.1";
    case RWKV_ARCH_V5_2: return "v5.2";
    case RWKV_ARCH_V6: return "v6";
    case RWKV_ARCH_V7: return "v7";
    default: return "unknown";
    }
}

const char *rwkv_dtype_name(uint32_t dtype) {
    switch (dtype) {
    case RWKV_DTYPE_F32: return "f32";
    case RWKV_DTYPE_F16: return "f16";
    case RWKV_DTYPE_Q8_0: return "q8";
    case RWKV_DTYPE_Q4: return "q4";
    default: return "unknown";
    }
}

const rc_arch *rc_arch_find(uint32_t id) {
    switch (id) {
    case RWKV_ARCH_V4: return &rc_arch_v4;
    case RWKV_ARCH_V5_0:
    case RWKV_ARCH_V5_1:
    case RWKV_ARCH_V5_2: return &rc_arch_v5;
    case RWKV_ARCH_V6: return &rc_arch_v6;
    case RWKV_ARCH_V7: return &rc_arch_v7;
    default: return NULL;
    }
}

static int rc_is_matrix_dtype(uint32_t dtype) { return rc_matmul_supports(dtype); }

/* A q8/q4 matrix may come with column scales (docs/FILE_FORMAT.md): "<name>.outlier_cols" [k] (f32, exact
 * integers, increasing, < in) and "<name>.outlier_scales" [k] (f32, finite, > 0). Check them and attach
 * them to the matrix. */
static int rc_bind_outliers(const rwkv_model *m, rc_tensor *w, const char *name) {
    char cname[RC_NAME_CAP + 16], vname[RC_NAME_CAP + 16];
    snprintf(cname, sizeof cname, "%s.outlier_cols", name);
    snprintf(vname, sizeof vname, "%s.outlier_scales", name);
    const rc_tensor *c = rc_file_find(&m->file, cname), *v = rc_file_find(&m->file, vname);
    w->n_outliers = 0;
    if (!c && !v) return RWKV_OK;
    if (!c || !v) return rc_error(RWKV_ERR_FORMAT, "tensor %s is missing (its pair %s is present)", c ? vname : cname, c ? cname : vname);
    if (w->dtype != RWKV_DTYPE_Q8_0 && w->dtype != RWKV_DTYPE_Q4)
        return rc_error(RWKV_ERR_FORMAT, "tensor %s: column scales belong to q8/q4 matrices, not %s", name, rwkv_dtype_name(w->dtype));
    const uint64_t in = rc_cols(w);
    if (c->dtype != RWKV_DTYPE_F32 || c->n_dims != 1 || c->shape[0] > in)
        return rc_error(RWKV_ERR_FORMAT, "tensor %s must be f32 [k] with k <= %llu", cname, (unsigned long long)in);
    const uint64_t k = c->shape[0];
    if (v->dtype != RWKV_DTYPE_F32 || v->n_dims != 1 || v->shape[0] != k)
        return rc_error(RWKV_ERR_FORMAT, "tensor %s must be f32 [%llu]", vname, (unsigned long long)k);
    const float *cols = (const float *)c->data, *scales = (const float *)v->data;
    for (uint64_t i = 0; i < k; i++) {
        float x = cols[i];
        if (!(x >= 0 && x < (float)in && x == (float)(uint64_t)x && (i == 0 || x > cols[i - 1])))
            return rc_error(RWKV_ERR_FORMAT, "tensor %s: entry %llu is not a column index above the previous one", cname, (unsigned long long)i);
        if (!(scales[i] > 0 && scales[i] <= 3.0e38f))
            return rc_error(RWKV_ERR_FORMAT, "tensor %s: entry %llu is not a finite positive scale", vname, (unsigned long long)i);
    }
    w->n_outliers = (uint32_t)k;
    w->outlier_cols = cols;
    w->outlier_scales = scales;
    return RWKV_OK;
}

int rc_bind_tensor(const rwkv_model *m, rc_tensor *out, const char *name, int matrix, uint32_t n_dims,
                   uint64_t d0, uint64_t d1, uint64_t d2) {
    const rc_tensor *t = rc_file_find(&m->file, name);
    if (!t) return rc_error(RWKV_ERR_FORMAT, "tensor %s is missing", name);
    uint64_t want[3] = {d0, d1, d2};
    int shape_ok = t->n_dims == n_dims;
    for (uint32_t i = 0; shape_ok && i < n_dims && i < 3; i++) shape_ok = t->shape[i] == want[i];
    if (!shape_ok) {
        char got[96] = "", exp[96] = "";
        for (uint32_t i = 0; i < t->n_dims; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%llu", i ? ", " : "", (unsigned long long)t->shape[i]);
        for (uint32_t i = 0; i < n_dims && i < 3; i++)
            snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%s%llu", i ? ", " : "", (unsigned long long)want[i]);
        return rc_error(RWKV_ERR_FORMAT, "tensor %s has shape [%s], expected [%s]", name, got, exp);
    }
    if (matrix ? !rc_is_matrix_dtype(t->dtype) : t->dtype != RWKV_DTYPE_F32)
        return rc_error(RWKV_ERR_FORMAT, "tensor %s has dtype %s, which is not allowed for it", name,
                        rwkv_dtype_name(t->dtype));
    *out = *t;
    if (matrix) return rc_bind_outliers(m, out, name);
    return RWKV_OK;
}

int rc_bind_layer_tensor(const rwkv_model *m, rc_tensor *out, uint32_t layer, const char *fmt, int matrix,
                         uint32_t n_dims, uint64_t d0, uint64_t d1, uint64_t d2) {
    char name[RC_NAME_CAP + 16];
    snprintf(name, sizeof name, fmt, layer);
    return rc_bind_tensor(m, out, name, matrix, n_dims, d0, d1, d2);
}

static int rc_bind_common(rwkv_model *m) {
    const rwkv_model_info *in = &m->info;
    int st;
    if ((st = rc_bind_tensor(m, &m->emb, "emb.weight", 1, 2, in->n_vocab, in->n_embd, 0))) return st;
    if ((st = rc_bind_tensor(m, &m->head, "head.weight", 1, 2, in->n_vocab, in->n_embd, 0))) return st;
    if ((st = rc_bind_tensor(m, &m->ln_out_w, "ln_out.weight", 0, 1, in->n_embd, 0, 0))) return st;
    if ((st = rc_bind_tensor(m, &m->ln_out_b, "ln_out.bias", 0, 1, in->n_embd, 0, 0))) return st;
    if (!rc_matmul_supports_rows(m->emb.dtype))
        return rc_error(RWKV_ERR_UNSUPPORTED, "emb.weight: dtype %s cannot be read by rows", rwkv_dtype_name(m->emb.dtype));
    return RWKV_OK;
}

void rwkv_model_free(rwkv_model *m) {
    if (!m) return;
    if (m->arch && m->arch->unbind) m->arch->unbind(m);
    rc_pool_free(m->pool);
    rc_free(m->scratch.x);
    rc_free(m->scratch.buf);
    pthread_mutex_destroy(&m->lock);
    rc_file_close(&m->file);
    free(m);
}

/* Finish loading m around its parsed file m->file: copy the header, bind the architecture's tensors, make the
 * thread pool. `what` names the source in messages (the path). On failure m is freed. */
static int rc_model_init(rwkv_model *m, const char *what, int n_threads, rwkv_model **out) {
    int st;
    const rc_file *f = &m->file;
    rwkv_model_info *in = &m->info;
    in->arch = f->arch;
    in->n_layer = f->n_layer;
    in->n_embd = f->n_embd;
    in->dim_att = f->dim_att;
    in->n_head = f->n_head;
    in->head_size = f->head_size;
    in->n_ffn = f->n_ffn;
    in->n_vocab = f->n_vocab;
    in->tokenizer_kind = f->tokenizer_kind;
    in->n_tensors = f->n_tensors;
    in->file_size = f->size;
    for (uint32_t i = 0; i < f->n_tensors; i++) {
        in->n_params += f->tensors[i].n_elements;
        in->weight_bytes += f->tensors[i].nbytes;
    }
    m->arch = rc_arch_find(f->arch);
    if (!m->arch) {
        st = rc_error(RWKV_ERR_UNSUPPORTED, "%s: architecture %s (id %u) is not supported by this build", what,
                      rwkv_arch_name(f->arch), f->arch);
        rwkv_model_free(m);
        return st;
    }
    if (f->arch != RWKV_ARCH_V4 && f->head_size > RC_MAX_HEAD_SIZE) {
        st = rc_error(RWKV_ERR_FORMAT, "%s: head_size %u is above the limit %u (real models use 64)", what,
                      f->head_size, RC_MAX_HEAD_SIZE);
        rwkv_model_free(m);
        return st;
    }
    if ((st = rc_bind_common(m)) || (st = m->arch->bind(m))) {
        rc_error_prefix(st, "%s", what);
        rwkv_model_free(m);
        return st;
    }
    in->state_size = (uint64_t)in->n_layer * m->arch->state_floats_per_layer(in);
    if ((st = rwkv_model_set_threads(m, n_threads))) {
        rwkv_model_free(m);
        return st;
    }
    in->n_threads = atomic_load(&m->n_threads);
    *out = m;
    return RWKV_OK;
}

static rwkv_model *rc_model_alloc(void) {
    rwkv_model *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->lock, NULL);
    return m;
}

int rwkv_model_load(const char *path, int n_threads, rwkv_model **out) {
    if (!out) return rc_error(RWKV_ERR_ARG, "out is NULL");
    *out = NULL;
    rwkv_model *m = rc_model_alloc();
    if (!m) return rc_error(RWKV_ERR_OOM, "out of memory");
    int st = rc_file_open(path, &m->file);
    if (st) {
        rwkv_model_free(m);
        return st;
    }
    return rc_model_init(m, path, n_threads, out);
}

int rc_model_load_image(const uint8_t *data, uint64_t size, int n_threads, rwkv_model **out) {
    if (!out || (!data && size)) return rc_error(RWKV_ERR_ARG, "NULL argument");
    *out = NULL;
    rwkv_model *m = rc_model_alloc();
    if (!m) return rc_error(RWKV_ERR_OOM, "out of memory");
    int st = rc_file_parse(data, size, &m->file);
    if (st) {
        rwkv_model_free(m);
        return st;
    }
    return rc_model_init(m, "model image", n_threads, out);
}

int rwkv_model_set_threads(rwkv_model *m, int n_threads) {
    if (!m) return rc_error(RWKV_ERR_ARG, "model is NULL");
    if (n_threads <= 0) n_threads = rc_physical_cores();
    if (n_threads > 1024) return rc_error(RWKV_ERR_ARG, "n_threads %d is too large", n_threads);
    rc_pool *p = rc_pool_new(n_threads);
    if (!p) return rc_error(RWKV_ERR_OOM, "cannot create a pool of %d threads", n_threads);
    /* the int8 activation buffer of q8/q4 products, sized for the widest input and a full eval chunk, so
     * that no evaluation allocates */
    uint64_t widest = m->info.n_embd;
    if (m->info.dim_att > widest) widest = m->info.dim_att;
    if (m->info.n_ffn > widest) widest = m->info.n_ffn;
    if (!rc_pool_scratch(p, (size_t)(rc_qx_stride(RWKV_DTYPE_Q8_0, widest) * RC_EVAL_CHUNK))) {
        rc_pool_free(p);
        return rc_error(RWKV_ERR_OOM, "cannot allocate the activation buffer");
    }
    pthread_mutex_lock(&m->lock);
    rc_pool_free(m->pool);
    m->pool = p;
    atomic_store(&m->n_threads, (uint32_t)rc_pool_threads(p));
    pthread_mutex_unlock(&m->lock);
    return RWKV_OK;
}

int rwkv_model_get_info(const rwkv_model *m, rwkv_model_info *out) {
    if (!m || !out) return rc_error(RWKV_ERR_ARG, "NULL argument");
    *out = m->info;
    out->n_threads = atomic_load(&m->n_threads);
    return RWKV_OK;
}

int rwkv_model_tensor_info(const rwkv_model *m, uint64_t index, rwkv_tensor_info *out) {
    if (!m || !out) return rc_error(RWKV_ERR_ARG, "NULL argument");
    if (index >= m->file.n_tensors)
        return rc_error(RWKV_ERR_ARG, "tensor index %llu out of range (%u tensors)", (unsigned long long)index,
                        m->file.n_tensors);
    const rc_tensor *t = &m->file.tensors[index];
    out->name = t->name;
    out->dtype = t->dtype;
    out->n_dims = t->n_dims;
    memcpy(out->shape, t->shape, sizeof out->shape);
    out->n_elements = t->n_elements;
    out->nbytes = t->nbytes;
    return RWKV_OK;
}

int rwkv_model_tokenizer_blob(const rwkv_model *m, uint32_t *kind, const uint8_t **data, uint64_t *size) {
    if (!m || !kind || !data || !size) return rc_error(RWKV_ERR_ARG, "NULL argument");
    *kind = m->file.tokenizer_kind;
    *data = m->file.base + m->file.tokenizer_offset;
    *size = m->file.tokenizer_size;
    return RWKV_OK;
}

int rwkv_model_metadata(const rwkv_model *m, const uint8_t **data, uint64_t *size) {
    if (!m || !data || !size) return rc_error(RWKV_ERR_ARG, "NULL argument");
    *data = m->file.base + m->file.metadata_offset;
    *size = m->file.metadata_size;
    return RWKV_OK;
}
