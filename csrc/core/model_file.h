/* model_file.h: the .rwkv reader (docs/FILE_FORMAT.md). Maps a file and validates every field before any
 * other code looks at it: after rc_file_parse succeeds, every tensor's bytes lie inside the mapping. */
#ifndef RC_MODEL_FILE_H
#define RC_MODEL_FILE_H

#include "core/common.h"

#define RC_FILE_MAGIC "RWKVCPU"   /* 7 chars + NUL = 8 bytes */
#define RC_FILE_VERSION 2
/* Version 1 differs only in q4 (one f16 scale per block) and in outlier columns stored whole in f16
 * ("NAME.outlier_vals"): a version-1 file without either is read as it is; one with them is refused by
 * name (convert the checkpoint again). */
#define RC_FILE_VERSION_OLDEST 1
#define RC_HEADER_SIZE 256
#define RC_ENTRY_SIZE 128
#define RC_NAME_CAP 64

typedef struct {
    /* the mapping (or the caller's buffer, for rc_file_parse) */
    const uint8_t *base;
    uint64_t size;
    void *map;       /* non-NULL when we own an mmap */
    /* header */
    uint32_t version, arch, n_layer, n_embd, dim_att, n_head, head_size, n_ffn, n_vocab;
    uint32_t n_tensors, tokenizer_kind;
    uint64_t table_offset, tokenizer_offset, tokenizer_size, metadata_offset, metadata_size;
    uint64_t data_offset, data_size;
    /* tensors, in table order, and their indices sorted by name for lookup */
    rc_tensor *tensors;
    uint32_t *by_name;
} rc_file;

/* Map and parse a file. On failure *f is left closed and the error says what is wrong. */
int rc_file_open(const char *path, rc_file *f);
/* Parse a file image held in memory (used by rc_file_open and by the fuzzers); data must outlive f. */
int rc_file_parse(const uint8_t *data, uint64_t size, rc_file *f);
void rc_file_close(rc_file *f);
/* NULL if absent. */
const rc_tensor *rc_file_find(const rc_file *f, const char *name);

/* Bytes a tensor of this dtype and shape occupies; 0 (with an error set) if the dtype is unknown, the
 * shape does not fit the dtype's blocks, or the size overflows. */
uint64_t rc_dtype_nbytes(uint32_t dtype, uint32_t n_dims, const uint64_t *shape);

#endif
