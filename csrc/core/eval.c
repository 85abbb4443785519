/* eval.c: evaluation entry points. Validates everything first (so a failing call changes nothing), then
 * runs the model over groups of at most RC_MAX_CHUNK tokens:
 *
 *   x = emb[token]                      (ln0 is folded into emb by the converter)
 *   for each layer: arch->layer(x)      (time mix + channel mix, states advanced)
 *   logits = head @ LN(x; ln_out)       (only for the rows the caller wants)                            */
#include <stdlib.h>

#include "core/model.h"
#include "kernels/matmul.h"
#include "ops/ops.h"

#define RC_MAX_CHUNK RC_EVAL_CHUNK

static int rc_scratch_reserve(rwkv_model *m, uint64_t T) {
    rc_scratch *s = &m->scratch;
    if (s->max_tok >= T) return RWKV_OK;
    uint64_t x_floats = T * m->info.n_embd;
    uint64_t buf_floats = m->arch->scratch_floats(&m->info, T);
    float *x = rc_alloc(x_floats * sizeof(float));
    float *buf = rc_alloc(buf_floats * sizeof(float));
    if (!x || !buf) {
        rc_free(x);
        rc_free(buf);
        return rc_error(RWKV_ERR_OOM, "cannot allocate scratch for %llu tokens", (unsigned long long)T);
    }
    rc_free(s->x);
    rc_free(s->buf);
    s->x = x;
    s->buf = buf;
    s->buf_floats = buf_floats;
    s->max_tok = T;
    return RWKV_OK;
}

static int rc_check_tokens(const rwkv_model *m, const int32_t *tokens, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || (uint32_t)tokens[i] >= m->info.n_vocab)
            return rc_error(RWKV_ERR_TOKEN, "token id %d at position %llu is out of range [0, %u)", tokens[i],
                            (unsigned long long)i, m->info.n_vocab);
    return RWKV_OK;
}

/* Run the batch; write logits for rows [logit_row0, T) to logits (row-major, n_vocab each). */
static void rc_forward(rwkv_model *m, const rc_batch *b, const int32_t *tokens, uint64_t logit_row0, float *logits) {
    const uint64_t T = b->n_tok, C = m->info.n_embd;
    float *x = m->scratch.x;
    for (uint64_t t = 0; t < T; t++) rc_tensor_row(&m->emb, (uint64_t)tokens[t], x + t * C);
    for (uint32_t l = 0; l < m->info.n_layer; l++) m->arch->layer(m, l, b, x, m->scratch.buf);
    if (!logits || logit_row0 >= T) return;
    float *xn = m->scratch.buf; /* [rows, C]; the layer scratch is free again */
    uint64_t rows = T - logit_row0;
    for (uint64_t t = 0; t < rows; t++)
        rc_layer_norm(x + (logit_row0 + t) * C, m->ln_out_w.data, m->ln_out_b.data, C, 1e-5f, xn + t * C);
    rc_matmul(m->pool, &m->head, xn, rows, logits);
}

uint32_t rwkv_eval_chunk(void) { return RC_MAX_CHUNK; }

int rwkv_eval(rwkv_model *m, rwkv_state *state, const int32_t *tokens, uint64_t n, float *logits, uint32_t flags) {
    int st;
    if (!m || !state || (!tokens && n)) return rc_error(RWKV_ERR_ARG, "NULL argument");
    if (n == 0) return rc_error(RWKV_ERR_ARG, "no tokens to evaluate");
    if (flags & ~(uint32_t)RWKV_EVAL_ALL_LOGITS) return rc_error(RWKV_ERR_ARG, "unknown flags 0x%x", flags);
    if ((st = rwkv_state_check(m, state))) return st;
    if ((st = rc_check_tokens(m, tokens, n))) return st;
    const int all = (flags & RWKV_EVAL_ALL_LOGITS) != 0;
    const uint64_t V = m->info.n_vocab;

    pthread_mutex_lock(&m->lock);
    uint64_t chunk = n < RC_MAX_CHUNK ? n : RC_MAX_CHUNK;
    if ((st = rc_scratch_reserve(m, chunk))) {
        pthread_mutex_unlock(&m->lock);
        return st;
    }
    float *sdata = rwkv_state_data(state);
    for (uint64_t pos = 0; pos < n; pos += chunk) {
        uint64_t T = n - pos < chunk ? n - pos : chunk;
        uint64_t starts[2] = {0, T};
        rc_batch b = {T, 1, starts, &sdata};
        int last = pos + T == n;
        if (logits && all)
            rc_forward(m, &b, tokens + pos, 0, logits + pos * V);
        else
            rc_forward(m, &b, tokens + pos, last && logits ? T - 1 : T, logits);
    }
    pthread_mutex_unlock(&m->lock);
    return RWKV_OK;
}

int rwkv_eval_batch(rwkv_model *m, rwkv_state *const *states, const int32_t *tokens, uint64_t n_seqs,
                    float *logits) {
    int st;
    if (!m || !states || !tokens) return rc_error(RWKV_ERR_ARG, "NULL argument");
    if (n_seqs == 0) return rc_error(RWKV_ERR_ARG, "no sequences to evaluate");
    for (uint64_t i = 0; i < n_seqs; i++) {
        if (!states[i]) return rc_error(RWKV_ERR_ARG, "state %llu is NULL", (unsigned long long)i);
        if ((st = rwkv_state_check(m, states[i]))) return rc_error_prefix(st, "state %llu", (unsigned long long)i);
    }
    /* distinct states: two rows advancing one state would race and double-step it */
    for (uint64_t i = 1; i < n_seqs; i++)
        for (uint64_t j = 0; j < i; j++)
            if (states[i] == states[j])
                return rc_error(RWKV_ERR_ARG, "states %llu and %llu are the same state", (unsigned long long)j,
                                (unsigned long long)i);
    if ((st = rc_check_tokens(m, tokens, n_seqs))) return st;
    const uint64_t V = m->info.n_vocab;

    pthread_mutex_lock(&m->lock);
    uint64_t chunk = n_seqs < RC_MAX_CHUNK ? n_seqs : RC_MAX_CHUNK;
    if ((st = rc_scratch_reserve(m, chunk))) {
        pthread_mutex_unlock(&m->lock);
        return st;
    }
    uint64_t starts[RC_MAX_CHUNK + 1];
    float *sdata[RC_MAX_CHUNK];
    for (uint64_t pos = 0; pos < n_seqs; pos += chunk) {
        uint64_t B = n_seqs - pos < chunk ? n_seqs - pos : chunk;
        for (uint64_t i = 0; i <= B; i++) starts[i] = i;
        for (uint64_t i = 0; i < B; i++) sdata[i] = rwkv_state_data(states[pos + i]);
        rc_batch b = {B, B, starts, sdata};
        rc_forward(m, &b, tokens + pos, 0, logits ? logits + pos * V : NULL);
    }
    pthread_mutex_unlock(&m->lock);
    return RWKV_OK;
}
