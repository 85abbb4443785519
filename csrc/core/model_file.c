/* model_file.c: map a .rwkv file and validate it (docs/FILE_FORMAT.md). Untrusted input: every field is
 * checked before use, every size computed with overflow checks, and nothing is allocated in proportion
 * to a claimed size before the file has been shown to hold that many bytes. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/model_file.h"
#include "kernels/quant.h"

/* Limits that keep a hostile header from asking for absurd work. Real models are far below them. */
#define RC_MAX_LAYERS 4096u
#define RC_MAX_WIDTH (1u << 20)
#define RC_MAX_VOCAB (1u << 24)
#define RC_MAX_TENSORS (1u << 20)

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static int rc_dtype_known(uint32_t dtype) {
    return dtype == RWKV_DTYPE_F32 || dtype == RWKV_DTYPE_F16 || dtype == RWKV_DTYPE_Q8_0 || dtype == RWKV_DTYPE_Q4;
}

uint64_t rc_dtype_nbytes(uint32_t dtype, uint32_t n_dims, const uint64_t *shape) {
    uint64_t n = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        if (!rc_mul_u64(n, shape[i], &n)) {
            rc_error(RWKV_ERR_FORMAT, "tensor size overflows");
            return 0;
        }
    }
    uint64_t bytes;
    switch (dtype) {
    case RWKV_DTYPE_F32:
        if (!rc_mul_u64(n, 4, &bytes)) break;
        return bytes;
    case RWKV_DTYPE_F16:
        if (!rc_mul_u64(n, 2, &bytes)) break;
        return bytes;
    case RWKV_DTYPE_Q8_0:
    case RWKV_DTYPE_Q4: {
        /* [out, in] matrices, rows of in/32 blocks (kernels/quant.h) */
        if (n_dims != 2) {
            rc_error(RWKV_ERR_FORMAT, "a %s tensor must have 2 dimensions, not %u", rwkv_dtype_name(dtype), n_dims);
            return 0;
        }
        uint64_t row = rc_q_row_bytes(dtype, shape[1]);
        if (row == 0) {
            rc_error(RWKV_ERR_FORMAT, "a %s tensor needs an input dimension that is a multiple of %d%s, not %llu",
                     rwkv_dtype_name(dtype), RC_QK, dtype == RWKV_DTYPE_Q4 ? " and at least 64" : "",
                     (unsigned long long)shape[1]);
            return 0;
        }
        if (!rc_mul_u64(shape[0], row, &bytes)) break;
        return bytes;
    }
    default:
        rc_error(RWKV_ERR_UNSUPPORTED, "unknown tensor dtype %u", dtype);
        return 0;
    }
    rc_error(RWKV_ERR_FORMAT, "tensor size overflows");
    return 0;
}


static int rc_cmp_offset(const void *a, const void *b, const rc_file *f) {
    const rc_tensor *x = &f->tensors[*(const uint32_t *)a], *y = &f->tensors[*(const uint32_t *)b];
    const uint8_t *xa = (const uint8_t *)x->data, *ya = (const uint8_t *)y->data;
    return xa < ya ? -1 : xa > ya;
}

/* Sorting with a context pointer, portable: a small insertion-merge sort on indices. */
static void rc_sort_indices(uint32_t *idx, uint32_t n, const rc_file *f,
                            int (*cmp)(const void *, const void *, const rc_file *), uint32_t *tmp) {
    /* bottom-up merge sort: O(n log n), no recursion, no global state */
    for (uint32_t width = 1; width < n; width *= 2) {
        for (uint32_t lo = 0; lo < n; lo += 2 * width) {
            uint32_t mid = lo + width < n ? lo + width : n;
            uint32_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            uint32_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = cmp(&idx[j], &idx[i], f) < 0 ? idx[j++] : idx[i++];
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, (size_t)n * sizeof *idx);
    }
}

static int rc_cmp_name(const void *a, const void *b, const rc_file *f) {
    return strcmp(f->tensors[*(const uint32_t *)a].name, f->tensors[*(const uint32_t *)b].name);
}

void rc_file_close(rc_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->size);
    free(f->tensors);
    free(f->by_name);
    memset(f, 0, sizeof *f);
}

/* Check that [off, off+len) lies in the file and after `after`. */
static int rc_region(const rc_file *f, const char *what, uint64_t off, uint64_t len, uint64_t after) {
    uint64_t end;
    if (!rc_add_u64(off, len, &end) || end > f->size)
        return rc_error(RWKV_ERR_FORMAT, "%s (offset %llu, size %llu) runs past the end of the file (%llu bytes)",
                        what, (unsigned long long)off, (unsigned long long)len, (unsigned long long)f->size);
    if (off < after)
        return rc_error(RWKV_ERR_FORMAT, "%s (offset %llu) overlaps the region before it (ends at %llu)", what,
                        (unsigned long long)off, (unsigned long long)after);
    return RWKV_OK;
}

int rc_file_parse(const uint8_t *data, uint64_t size, rc_file *f) {
    int st;
    memset(f, 0, sizeof *f);
    f->base = data;
    f->size = size;
    {
        const uint16_t probe = 1;
        if (*(const uint8_t *)&probe != 1)
            return rc_error(RWKV_ERR_UNSUPPORTED, "big-endian hosts are not supported");
    }
    if (size < RC_HEADER_SIZE)
        return rc_error(RWKV_ERR_FORMAT, "file is %llu bytes, too small for the %d-byte header (truncated?)",
                        (unsigned long long)size, RC_HEADER_SIZE);
    if (memcmp(data, RC_FILE_MAGIC, 8) != 0)
        return rc_error(RWKV_ERR_FORMAT, "not a .rwkv model file (bad magic)");
    const uint8_t *h = data;
    f->version = rd32(h + 8);
    if (f->version < RC_FILE_VERSION_OLDEST || f->version > RC_FILE_VERSION)
        return rc_error(RWKV_ERR_UNSUPPORTED, "file format version %u; this build reads versions %d to %d",
                        f->version, RC_FILE_VERSION_OLDEST, RC_FILE_VERSION);
    if (rd32(h + 12) != RC_HEADER_SIZE) return rc_error(RWKV_ERR_FORMAT, "bad header size %u", rd32(h + 12));
    f->arch = rd32(h + 16);
    f->n_layer = rd32(h + 20);
    f->n_embd = rd32(h + 24);
    f->dim_att = rd32(h + 28);
    f->n_head = rd32(h + 32);
    f->head_size = rd32(h + 36);
    f->n_ffn = rd32(h + 40);
    f->n_vocab = rd32(h + 44);
    f->n_tensors = rd32(h + 48);
    f->tokenizer_kind = rd32(h + 52);
    f->table_offset = rd64(h + 56);
    f->tokenizer_offset = rd64(h + 64);
    f->tokenizer_size = rd64(h + 72);
    f->metadata_offset = rd64(h + 80);
    f->metadata_size = rd64(h + 88);
    f->data_offset = rd64(h + 96);
    f->data_size = rd64(h + 104);
    uint64_t file_size = rd64(h + 112);
    for (int i = 120; i < RC_HEADER_SIZE; i++)
        if (h[i] != 0) return rc_error(RWKV_ERR_FORMAT, "reserved header byte %d is not zero", i);
    if (file_size != size)
        return rc_error(RWKV_ERR_FORMAT, "header says the file has %llu bytes but it has %llu (truncated or damaged)",
                        (unsigned long long)file_size, (unsigned long long)size);

    /* dimensions */
    if (f->n_layer == 0 || f->n_layer > RC_MAX_LAYERS)
        return rc_error(RWKV_ERR_FORMAT, "n_layer %u out of range", f->n_layer);
    if (f->n_embd == 0 || f->n_embd > RC_MAX_WIDTH) return rc_error(RWKV_ERR_FORMAT, "n_embd %u out of range", f->n_embd);
    if (f->dim_att == 0 || f->dim_att > RC_MAX_WIDTH)
        return rc_error(RWKV_ERR_FORMAT, "dim_att %u out of range", f->dim_att);
    if (f->n_ffn == 0 || f->n_ffn > RC_MAX_WIDTH) return rc_error(RWKV_ERR_FORMAT, "n_ffn %u out of range", f->n_ffn);
    if (f->n_vocab == 0 || f->n_vocab > RC_MAX_VOCAB)
        return rc_error(RWKV_ERR_FORMAT, "n_vocab %u out of range", f->n_vocab);
    if (f->n_head == 0 || f->head_size == 0 || (uint64_t)f->n_head * f->head_size != f->dim_att)
        return rc_error(RWKV_ERR_FORMAT, "n_head %u x head_size %u does not equal dim_att %u", f->n_head,
                        f->head_size, f->dim_att);
    if (f->tokenizer_kind > RWKV_TOKENIZER_BYTES)
        return rc_error(RWKV_ERR_UNSUPPORTED, "unknown tokenizer kind %u", f->tokenizer_kind);
    if (f->n_tensors == 0 || f->n_tensors > RC_MAX_TENSORS)
        return rc_error(RWKV_ERR_FORMAT, "n_tensors %u out of range", f->n_tensors);

    /* regions, in order: header | table | metadata | tokenizer | data */
    if (f->table_offset != RC_HEADER_SIZE) return rc_error(RWKV_ERR_FORMAT, "tensor table must follow the header");
    uint64_t table_size = (uint64_t)f->n_tensors * RC_ENTRY_SIZE;
    if ((st = rc_region(f, "tensor table", f->table_offset, table_size, RC_HEADER_SIZE))) return st;
    if ((st = rc_region(f, "metadata", f->metadata_offset, f->metadata_size, f->table_offset + table_size))) return st;
    if ((st = rc_region(f, "tokenizer", f->tokenizer_offset, f->tokenizer_size,
                        f->metadata_offset + f->metadata_size)))
        return st;
    if (f->data_offset % RC_ALIGN) return rc_error(RWKV_ERR_FORMAT, "data offset is not 64-byte aligned");
    if ((st = rc_region(f, "tensor data", f->data_offset, f->data_size, f->tokenizer_offset + f->tokenizer_size)))
        return st;

    /* tensor table: the table fits in the file, so n_tensors is backed by real bytes */
    f->tensors = calloc(f->n_tensors, sizeof *f->tensors);
    f->by_name = calloc(f->n_tensors, sizeof *f->by_name);
    uint32_t *tmp = calloc(f->n_tensors, sizeof *tmp);
    uint32_t *by_off = calloc(f->n_tensors, sizeof *by_off);
    if (!f->tensors || !f->by_name || !tmp || !by_off) {
        free(tmp);
        free(by_off);
        return rc_error(RWKV_ERR_OOM, "out of memory reading the tensor table");
    }
    st = RWKV_OK;
    for (uint32_t i = 0; i < f->n_tensors && st == RWKV_OK; i++) {
        const uint8_t *e = data + f->table_offset + (uint64_t)i * RC_ENTRY_SIZE;
        rc_tensor *t = &f->tensors[i];
        const uint8_t *nul = memchr(e, 0, RC_NAME_CAP);
        if (!nul || nul == e) { st = rc_error(RWKV_ERR_FORMAT, "tensor %u: name is empty or not terminated", i); break; }
        for (const uint8_t *c = e; c < nul; c++)
            if (*c < 0x21 || *c > 0x7e) { st = rc_error(RWKV_ERR_FORMAT, "tensor %u: name is not printable ASCII", i); break; }
        if (st) break;
        for (const uint8_t *c = nul; c < e + RC_NAME_CAP; c++)
            if (*c) { st = rc_error(RWKV_ERR_FORMAT, "tensor %u: name padding is not zero", i); break; }
        if (st) break;
        t->name = (const char *)e;
        t->dtype = rd32(e + 64);
        t->n_dims = rd32(e + 68);
        if (t->n_dims < 1 || t->n_dims > 4) { st = rc_error(RWKV_ERR_FORMAT, "tensor %s: n_dims %u not in 1..4", t->name, t->n_dims); break; }
        t->n_elements = 1;
        for (uint32_t d = 0; d < 4; d++) {
            t->shape[d] = rd64(e + 72 + 8 * d);
            if (d < t->n_dims && (t->shape[d] == 0 || t->shape[d] > ((uint64_t)1 << 32))) {
                st = rc_error(RWKV_ERR_FORMAT, "tensor %s: dimension %u is %llu", t->name, d, (unsigned long long)t->shape[d]);
                break;
            }
            if (d >= t->n_dims && t->shape[d] != 0) { st = rc_error(RWKV_ERR_FORMAT, "tensor %s: unused dimension %u is not 0", t->name, d); break; }
            if (d < t->n_dims && !rc_mul_u64(t->n_elements, t->shape[d], &t->n_elements)) { st = rc_error(RWKV_ERR_FORMAT, "tensor %s: size overflows", t->name); break; }
        }
        if (st) break;
        uint64_t off = rd64(e + 104);
        t->nbytes = rd64(e + 112);
        if (rd64(e + 120) != 0) { st = rc_error(RWKV_ERR_FORMAT, "tensor %s: reserved field is not zero", t->name); break; }
        if (f->version == 1 && (t->dtype == RWKV_DTYPE_Q4 || strstr(t->name, ".outlier_vals"))) {
            st = rc_error(RWKV_ERR_UNSUPPORTED, "tensor %s: %s of file format version 1, which this build no longer "
                          "reads (q4 is now 4.5 bits per weight at most, with two-level scales); convert the "
                          "checkpoint again", t->name, t->dtype == RWKV_DTYPE_Q4 ? "a q4 matrix" : "outlier columns");
            break;
        }
        uint64_t want = rc_dtype_nbytes(t->dtype, t->n_dims, t->shape);
        if (want == 0) { st = rc_error_prefix(rc_dtype_known(t->dtype) ? RWKV_ERR_FORMAT : RWKV_ERR_UNSUPPORTED, "tensor %s", t->name); break; }
        if (want != t->nbytes) {
            st = rc_error(RWKV_ERR_FORMAT, "tensor %s: %llu bytes stored, %llu expected for its dtype and shape", t->name,
                          (unsigned long long)t->nbytes, (unsigned long long)want);
            break;
        }
        uint64_t end;
        if (off % RC_ALIGN) { st = rc_error(RWKV_ERR_FORMAT, "tensor %s: offset %llu is not 64-byte aligned", t->name, (unsigned long long)off); break; }
        if (!rc_add_u64(off, t->nbytes, &end) || end > f->data_size) {
            st = rc_error(RWKV_ERR_FORMAT, "tensor %s: data (offset %llu, %llu bytes) runs past the end of the data region (%llu bytes)",
                          t->name, (unsigned long long)off, (unsigned long long)t->nbytes, (unsigned long long)f->data_size);
            break;
        }
        t->data = data + f->data_offset + off;
        f->by_name[i] = i;
        by_off[i] = i;
    }
    if (st == RWKV_OK) {
        /* unique names */
        rc_sort_indices(f->by_name, f->n_tensors, f, rc_cmp_name, tmp);
        for (uint32_t i = 1; i < f->n_tensors; i++)
            if (strcmp(f->tensors[f->by_name[i - 1]].name, f->tensors[f->by_name[i]].name) == 0) {
                st = rc_error(RWKV_ERR_FORMAT, "tensor %s appears twice", f->tensors[f->by_name[i]].name);
                break;
            }
    }
    if (st == RWKV_OK) {
        /* no two tensors share bytes */
        rc_sort_indices(by_off, f->n_tensors, f, rc_cmp_offset, tmp);
        for (uint32_t i = 1; i < f->n_tensors; i++) {
            const rc_tensor *a = &f->tensors[by_off[i - 1]], *b = &f->tensors[by_off[i]];
            if ((const uint8_t *)a->data + a->nbytes > (const uint8_t *)b->data) {
                st = rc_error(RWKV_ERR_FORMAT, "tensors %s and %s overlap", a->name, b->name);
                break;
            }
        }
    }
    free(tmp);
    free(by_off);
    if (st != RWKV_OK) {
        free(f->tensors);
        free(f->by_name);
        memset(f, 0, sizeof *f);
    }
    return st;
}

int rc_file_open(const char *path, rc_file *f) {
    memset(f, 0, sizeof *f);
    if (!path) return rc_error(RWKV_ERR_ARG, "path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return rc_error(RWKV_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return rc_error(RWKV_ERR_IO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return rc_error(RWKV_ERR_IO, "%s is not a regular file", path);
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < RC_HEADER_SIZE) {
        close(fd);
        return rc_error(RWKV_ERR_FORMAT, "%s: file is %llu bytes, too small for a model header (truncated?)", path,
                        (unsigned long long)size);
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return rc_error(RWKV_ERR_IO, "cannot map %s: %s", path, strerror(e));
    int st = rc_file_parse((const uint8_t *)map, size, f);
    if (st != RWKV_OK) {
        munmap(map, (size_t)size);
        return rc_error_prefix(st, "%s", path);
    }
    f->map = map;
    return RWKV_OK;
}

const rc_tensor *rc_file_find(const rc_file *f, const char *name) {
    uint32_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[f->by_name[mid]].name, name);
        if (c == 0) return &f->tensors[f->by_name[mid]];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}
