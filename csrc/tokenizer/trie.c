/* trie.c: builds the byte trie of a vocabulary (layout in tokenizer.h), breadth first, without recursion.
 *
 * The tokens are sorted by their bytes; then every trie node covers a contiguous range of that order (the
 * tokens that start with the node's prefix), and a node's children split its range by the byte that follows
 * the prefix. Building is O(total token bytes) after the sort; memory is a fixed multiple of the node count,
 * which is at most the total token bytes + 1.
 */
#include <stdlib.h>

#include "tokenizer/tokenizer.h"

/* A token as the builder sees it: a view of its bytes. */
typedef struct {
    const uint8_t *p;
    uint32_t len;
    int32_t id;
} rc_key;

/* Build-time state of a node: the keys [lo, hi) start with its prefix, which is depth bytes long. */
typedef struct {
    uint32_t lo, hi, depth;
} rc_span;

/* Byte order, a prefix before its extensions; equal bytes by id. */
static int rc_cmp_key(const void *a, const void *b) {
    const rc_key *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* The root, plus for each key in sorted order the bytes it does not share with the key before it. */
static uint64_t rc_count_nodes(const rc_key *keys, uint32_t n) {
    uint64_t count = 1;
    for (uint32_t k = 0; k < n; k++) {
        uint32_t lcp = 0;
        if (k > 0) {
            uint32_t m = keys[k].len < keys[k - 1].len ? keys[k].len : keys[k - 1].len;
            while (lcp < m && keys[k].p[lcp] == keys[k - 1].p[lcp]) lcp++;
        }
        count += keys[k].len - lcp;
    }
    return count;
}

/* Lay the nodes out breadth first: node i's children are appended as a block when node i is visited. */
static void rc_fill_nodes(rc_trie *t, const rc_key *keys, rc_span *span) {
    uint32_t n = 1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t a = span[i].lo, b = span[i].hi, d = span[i].depth;
        rc_trie_node *node = &t->nodes[i];
        node->token = -1;
        if (a < b && keys[a].len == d) {     /* sorted first: the key that ends here (lowest id if repeated) */
            node->token = keys[a].id;
            while (a < b && keys[a].len == d) a++;
        }
        node->first = n;
        node->n_child = 0;
        while (a < b) {                      /* one child per distinct next byte */
            uint8_t c = keys[a].p[d];
            uint32_t e = a + 1;
            while (e < b && keys[e].p[d] == c) e++;
            t->labels[n] = c;
            span[n] = (rc_span){a, e, d + 1};
            n++;
            node->n_child++;
            a = e;
        }
    }
}

/* Give every wide node a 256-entry table; its `first` becomes the table's index. */
static int rc_fill_dense(rc_trie *t) {
    uint32_t n_dense = 0;
    for (uint32_t i = 0; i < t->n_nodes; i++) n_dense += t->nodes[i].n_child >= RC_TRIE_DENSE_MIN;
    t->dense = calloc((size_t)n_dense * 256, sizeof *t->dense);
    if (!t->dense) return rc_error(RWKV_ERR_OOM, "out of memory building the tokenizer trie");
    for (uint32_t i = 0; i < t->n_nodes; i++) {
        rc_trie_node *node = &t->nodes[i];
        if (node->n_child < RC_TRIE_DENSE_MIN) continue;
        uint32_t *table = t->dense + (size_t)t->n_dense * 256;
        for (uint32_t j = 0; j < node->n_child; j++) table[t->labels[node->first + j]] = node->first + j;
        node->first = t->n_dense++;
    }
    return RWKV_OK;
}

/* Every byte must be a token by itself, or some texts could not be encoded. */
static int rc_check_bytes(const rc_trie *t) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = rc_trie_child(t, &t->nodes[0], (uint8_t)b);
        if (!c || t->nodes[c].token < 0)
            return rc_error(RWKV_ERR_FORMAT, "the vocab has no one-byte token for byte 0x%02X (every byte needs one "
                            "so that any text can be encoded)", b);
    }
    return RWKV_OK;
}

int rc_trie_build(rc_trie *t, const rc_vocab *v) {
    int st = RWKV_OK;
    rc_span *span = NULL;
    memset(t, 0, sizeof *t);
    rc_key *keys = malloc((size_t)(v->n_tokens ? v->n_tokens : 1) * sizeof *keys);
    if (!keys) return rc_error(RWKV_ERR_OOM, "out of memory building the tokenizer trie");
    for (uint32_t k = 0; k < v->n_tokens; k++)
        keys[k] = (rc_key){v->bytes + v->tokens[k].off, v->tokens[k].len, (int32_t)v->tokens[k].id};
    qsort(keys, v->n_tokens, sizeof *keys, rc_cmp_key);

    uint64_t n_nodes = rc_count_nodes(keys, v->n_tokens);   /* <= 1 + total bytes <= 1 + RC_VOCAB_MAX_SIZE */
    t->n_nodes = (uint32_t)n_nodes;
    t->nodes = malloc((size_t)n_nodes * sizeof *t->nodes);
    t->labels = calloc((size_t)n_nodes, 1);
    span = malloc((size_t)n_nodes * sizeof *span);
    if (!t->nodes || !t->labels || !span) {
        st = rc_error(RWKV_ERR_OOM, "out of memory building the tokenizer trie (%llu nodes)",
                      (unsigned long long)n_nodes);
        goto done;
    }
    span[0] = (rc_span){0, v->n_tokens, 0};
    rc_fill_nodes(t, keys, span);
    if ((st = rc_fill_dense(t))) goto done;
    st = rc_check_bytes(t);
done:
    free(span);
    free(keys);
    if (st) rc_trie_free(t);
    return st;
}

void rc_trie_free(rc_trie *t) {
    free(t->nodes);
    free(t->labels);
    free(t->dense);
    memset(t, 0, sizeof *t);
}
