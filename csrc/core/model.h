/* model.h: the model handle and the per-architecture interface. */
#ifndef RC_MODEL_H
#define RC_MODEL_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/common.h"
#include "core/model_file.h"
#include "core/threadpool.h"

/* Tokens evaluated together at most (longer inputs are cut into chunks of this many). */
#define RC_EVAL_CHUNK 64

/* A group of tokens evaluated together: n_seq sequences, sequence s owning tokens
 * [seq_start[s], seq_start[s+1]) and the state floats state[s]. One sequence with T tokens is prompt
 * processing; n_seq sequences of one token each is batched decode. */
typedef struct {
    uint64_t n_tok;
    uint64_t n_seq;
    const uint64_t *seq_start; /* [n_seq + 1] */
    float *const *state;       /* [n_seq] */
} rc_batch;

/* Scratch memory for one evaluation of up to max_tok tokens; owned by the model, used under its lock. */
typedef struct {
    uint64_t max_tok;
    float *x;       /* [T, C] residual stream */
    float *buf;     /* arch-specific work area, buf_floats floats */
    uint64_t buf_floats;
} rc_scratch;

typedef struct rc_arch rc_arch;

struct rwkv_model {
    rc_file file;
    rwkv_model_info info;
    const rc_arch *arch;
    void *layers;                 /* arch-specific per-layer weight views, n_layer of them */
    rc_tensor emb, head, ln_out_w, ln_out_b;
    rc_pool *pool;
    pthread_mutex_t lock;         /* serializes evaluations: pool and scratch */
    /* the pool's size now; info is never written after loading (states copy it while threads evaluate and
     * rwkv_model_set_threads swaps the pool), so rwkv_model_get_info reads the size from here */
    _Atomic uint32_t n_threads;
    rc_scratch scratch;
};

/* What each architecture provides (csrc/arch/rwkvN.c). */
struct rc_arch {
    uint32_t id;
    /* Find and check this architecture's tensors; fill model->layers. */
    int (*bind)(rwkv_model *m);
    void (*unbind)(rwkv_model *m);
    uint64_t (*state_floats_per_layer)(const rwkv_model_info *info);
    /* Write the initial (empty-sequence) state of one layer. */
    void (*state_init_layer)(const rwkv_model_info *info, float *layer_state);
    /* Scratch floats needed for T tokens (beyond the residual stream). */
    uint64_t (*scratch_floats)(const rwkv_model_info *info, uint64_t T);
    /* One layer on the batch: x [T, C] in and out, states advanced. */
    void (*layer)(rwkv_model *m, uint32_t layer, const rc_batch *b, float *x, float *scratch);
};

const rc_arch *rc_arch_find(uint32_t id);

/* rwkv_model_load for a file image held in memory (the fuzzers' entry point); data must outlive the model,
 * which does not own it. */
int rc_model_load_image(const uint8_t *data, uint64_t size, int n_threads, rwkv_model **out);
extern const rc_arch rc_arch_v4;
extern const rc_arch rc_arch_v5; /* 5.0, 5.1 and 5.2: bind reads the variant from info.arch */
extern const rc_arch rc_arch_v6;
extern const rc_arch rc_arch_v7;

/* Look a tensor up and check its dtype class and shape; on failure set an error naming it. */
int rc_bind_tensor(const rwkv_model *m, rc_tensor *out, const char *name, int matrix, uint32_t n_dims,
                   uint64_t d0, uint64_t d1, uint64_t d2);
/* Same, for per-layer names: fmt is e.g. "blocks.%u.att.key.weight". */
int rc_bind_layer_tensor(const rwkv_model *m, rc_tensor *out, uint32_t layer, const char *fmt, int matrix,
                         uint32_t n_dims, uint64_t d0, uint64_t d1, uint64_t d2);

#endif
