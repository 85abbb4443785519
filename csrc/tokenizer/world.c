/* world.c: the public tokenizer API (rwkv_tokenizer_*): the RWKV World tokenizer and the byte tokenizer.
 *
 * Both are a vocabulary (id -> bytes, vocab.c) plus a byte trie (trie.c). Encoding is the reference
 * TRIE_TOKENIZER's: greedy longest match, left to right, over the raw bytes (no normalisation, no BPE ranks).
 * Decoding concatenates token bytes; id 0, when it is not a token (World), is end of text and decodes to
 * nothing. A tokenizer is immutable once built, so threads may share it.
 */
#include <stdlib.h>

#include "tokenizer/tokenizer.h"

/* The tokenizer handle. */
struct rwkv_tokenizer {
    uint32_t kind;          /* RWKV_TOKENIZER_WORLD or RWKV_TOKENIZER_BYTES */
    uint32_t vocab_size;    /* largest id + 1 */
    rc_vocab vocab;         /* tokens sorted by id, and their bytes */
    rc_trie trie;           /* over the tokens' bytes, for encoding */
};

/* Take ownership of vocab *v (emptied, even on failure) and build the tokenizer around it. */
static int rc_tokenizer_make(uint32_t kind, rc_vocab *v, rwkv_tokenizer **out) {
    rwkv_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) {
        rc_vocab_free(v);
        return rc_error(RWKV_ERR_OOM, "out of memory creating a tokenizer");
    }
    tok->kind = kind;
    tok->vocab = *v;
    memset(v, 0, sizeof *v);
    tok->vocab_size = tok->vocab.n_tokens ? tok->vocab.tokens[tok->vocab.n_tokens - 1].id + 1 : 0;
    int st = rc_trie_build(&tok->trie, &tok->vocab);
    if (st) {
        rwkv_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return RWKV_OK;
}

int rwkv_tokenizer_new_world(const uint8_t *vocab_text, uint64_t size, rwkv_tokenizer **out) {
    rc_vocab v;
    if (!out) return rc_error(RWKV_ERR_ARG, "NULL argument");
    *out = NULL;
    int st = rc_vocab_parse(vocab_text, size, &v);
    if (st) return st;
    return rc_tokenizer_make(RWKV_TOKENIZER_WORLD, &v, out);
}

int rwkv_tokenizer_new_bytes(rwkv_tokenizer **out) {
    rc_vocab v;
    if (!out) return rc_error(RWKV_ERR_ARG, "NULL argument");
    *out = NULL;
    int st = rc_vocab_bytes(&v);
    if (st) return st;
    return rc_tokenizer_make(RWKV_TOKENIZER_BYTES, &v, out);
}

int rwkv_tokenizer_from_model(const rwkv_model *model, rwkv_tokenizer **out) {
    uint32_t kind;
    const uint8_t *data;
    uint64_t size;
    if (!out) return rc_error(RWKV_ERR_ARG, "NULL argument");
    *out = NULL;
    int st = rwkv_model_tokenizer_blob(model, &kind, &data, &size);
    if (st) return st;
    switch (kind) {
    case RWKV_TOKENIZER_WORLD:
        st = rwkv_tokenizer_new_world(data, size, out);
        return st ? rc_error_prefix(st, "the model's World tokenizer") : RWKV_OK;
    case RWKV_TOKENIZER_BYTES:
        return rwkv_tokenizer_new_bytes(out);
    case RWKV_TOKENIZER_HF_JSON:
        return rc_error(RWKV_ERR_UNSUPPORTED, "the model's tokenizer is a Hugging Face tokenizers JSON, which the C "
                        "library cannot run; use the Python package (rwkv_cpu.Tokenizer)");
    case RWKV_TOKENIZER_NONE:
        return rc_error(RWKV_ERR_UNSUPPORTED, "the model file has no tokenizer");
    default:
        return rc_error(RWKV_ERR_UNSUPPORTED, "unknown tokenizer kind %u", kind);
    }
}

void rwkv_tokenizer_free(rwkv_tokenizer *tok) {
    if (!tok) return;
    rc_trie_free(&tok->trie);
    rc_vocab_free(&tok->vocab);
    free(tok);
}

uint32_t rwkv_tokenizer_vocab_size(const rwkv_tokenizer *tok) { return tok ? tok->vocab_size : 0; }

/* The longest token that starts text[0 .. len), len >= 1: its id, and its length in *n. rc_trie_build checked
 * that every byte is a token, so there always is one. */
static inline int32_t rc_longest_match(const rc_trie *t, const uint8_t *text, uint64_t len, uint64_t *n) {
    const rc_trie_node *nodes = t->nodes;
    const rc_trie_node *node = &nodes[t->dense[text[0]]];   /* the root is dense: its table is dense[0..256) */
    int32_t best = node->token;
    uint64_t best_len = 1;
    for (uint64_t i = 1; i < len && node->n_child; i++) {
        uint32_t c = rc_trie_child(t, node, text[i]);
        if (!c) break;
        node = &nodes[c];
        if (node->token >= 0) {
            best = node->token;
            best_len = i + 1;
        }
    }
    *n = best_len;
    return best;
}

int rwkv_tokenizer_encode(const rwkv_tokenizer *tok, const uint8_t *text, uint64_t len, int32_t *out, uint64_t cap,
                          uint64_t *n_out) {
    if (!tok || !n_out || (!text && len) || (!out && cap))
        return rc_error(RWKV_ERR_ARG, "NULL argument to rwkv_tokenizer_encode");
    uint64_t count = 0, pos = 0;
    while (pos < len) {
        uint64_t n;
        int32_t id = rc_longest_match(&tok->trie, text + pos, len - pos, &n);
        if (count < cap) out[count] = id;
        count++;
        pos += n;
    }
    *n_out = count;
    if (count > cap)
        return rc_error(RWKV_ERR_BUFFER, "the output buffer holds %llu token ids; %llu are needed",
                        (unsigned long long)cap, (unsigned long long)count);
    return RWKV_OK;
}

int rwkv_tokenizer_token_bytes(const rwkv_tokenizer *tok, int32_t id, const uint8_t **bytes, uint64_t *len) {
    if (!tok || !bytes || !len) return rc_error(RWKV_ERR_ARG, "NULL argument to rwkv_tokenizer_token_bytes");
    const rc_vocab_token *t = rc_vocab_find(&tok->vocab, id);
    if (!t) return rc_error(RWKV_ERR_TOKEN, "token id %d is not in the vocabulary (size %u)", id, tok->vocab_size);
    *bytes = tok->vocab.bytes + t->off;
    *len = t->len;
    return RWKV_OK;
}

int rwkv_tokenizer_decode(const rwkv_tokenizer *tok, const int32_t *ids, uint64_t n, uint8_t *out, uint64_t cap,
                          uint64_t *n_out) {
    if (!tok || !n_out || (!ids && n) || (!out && cap))
        return rc_error(RWKV_ERR_ARG, "NULL argument to rwkv_tokenizer_decode");
    uint64_t need = 0;
    *n_out = 0;
    for (uint64_t i = 0; i < n; i++) {
        const rc_vocab_token *t = rc_vocab_find(&tok->vocab, ids[i]);
        if (!t) {
            if (ids[i] == 0) continue;   /* end of text */
            return rc_error(RWKV_ERR_TOKEN, "token id %d (at position %llu) is not in the vocabulary (size %u)",
                            ids[i], (unsigned long long)i, tok->vocab_size);
        }
        if (need <= cap && t->len <= cap - need) memcpy(out + need, tok->vocab.bytes + t->off, t->len);
        need += t->len;
    }
    *n_out = need;
    if (need > cap)
        return rc_error(RWKV_ERR_BUFFER, "the output buffer holds %llu bytes; %llu are needed",
                        (unsigned long long)cap, (unsigned long long)need);
    return RWKV_OK;
}
