/* tokenizer.h: internal pieces of the tokenizers (vocab parser, byte trie) shared by the files of csrc/tokenizer/.
 *
 * A tokenizer is a vocabulary (token id -> bytes) plus a byte trie over those bytes for greedy longest-match
 * encoding. Both are built once and never modified, so a tokenizer may be shared by threads.
 */
#ifndef RC_TOKENIZER_H
#define RC_TOKENIZER_H

#include "core/common.h"

/* Limits on a vocab text. They bound memory and time on untrusted input; real vocabs are far below them
 * (rwkv_vocab_v20230424.txt: 1.1 MB, ids 1..65529, tokens of at most 128 bytes, lines of at most 141 bytes). */
#define RC_VOCAB_MAX_ID ((uint32_t)1 << 22)         /* largest token id accepted */
#define RC_VOCAB_MAX_TOKEN 1024u                    /* bytes in one token */
#define RC_VOCAB_MAX_LINE 8192u                     /* bytes in one line, without its terminator */
/* bytes in the whole text. Building the trie takes up to ~30 bytes per byte of token text (nodes, labels, build
 * spans, dense tables): a 16 MiB text of long distinct tokens peaks at 0.45 GB (measured), a 1 GiB one would
 * ask for ~30 GB. 16 MiB is 14x the real World vocab. */
#define RC_VOCAB_MAX_SIZE ((uint64_t)16 << 20)

/* One token of a vocabulary. 16 bytes. */
typedef struct {
    uint32_t id;
    uint32_t len;       /* length of its bytes, 1..RC_VOCAB_MAX_TOKEN */
    uint32_t off;       /* where its bytes start in rc_vocab.bytes */
    uint32_t line;      /* line of the vocab text that defined it (1-based; 0 for built-in vocabs) */
} rc_vocab_token;

/* A vocabulary: tokens sorted by id (ids unique), their bytes concatenated in one buffer.
 *
 *   tokens[0 .. n_tokens)     sorted by id, strictly increasing
 *   bytes[0 .. n_bytes)       token k's bytes are bytes[tokens[k].off .. tokens[k].off + tokens[k].len)  */
typedef struct {
    rc_vocab_token *tokens;
    uint32_t n_tokens;
    uint8_t *bytes;
    uint64_t n_bytes;
} rc_vocab;

/* Parse a World vocab text (docs in vocab_parser.c). On failure returns RWKV_ERR_FORMAT (or _OOM / _ARG) with
 * a message naming the line and the problem, and leaves *out empty. */
int rc_vocab_parse(const uint8_t *text, uint64_t size, rc_vocab *out);
/* The byte vocabulary: ids 0..255, token id = its byte. */
int rc_vocab_bytes(rc_vocab *out);
void rc_vocab_free(rc_vocab *v);
/* The token with this id, or NULL. O(1) when ids are contiguous (as in every real vocab), else O(log n). */
const rc_vocab_token *rc_vocab_find(const rc_vocab *v, int64_t id);

/* A byte trie over the tokens of a vocabulary, in flat arrays (no pointers), nodes in breadth-first order.
 *
 *   nodes[0]                the root (the empty prefix)
 *   nodes[i].token          id of the token whose bytes spell the path from the root to node i, or -1
 *   nodes[i].n_child        number of children (0..256)
 *   children of node i      nodes[c .. c + n_child), sorted by edge byte, where c = nodes[i].first when the
 *                           node is sparse (n_child < RC_TRIE_DENSE_MIN)
 *   labels[j]               the byte on the edge from node j's parent to node j (labels[0] is unused)
 *   dense tables            a node with n_child >= RC_TRIE_DENSE_MIN is dense: nodes[i].first is then the index
 *                           of its table, and dense[first * 256 + b] is the child for byte b, or 0 if none
 *                           (0 is the root, which is nobody's child). The root always has 256 children.
 *
 * Most nodes have a handful of children and are scanned linearly in labels[]; the few wide ones (583 of
 * 116078 nodes for the World vocab, the root among them) get a 1 KiB table. The World trie takes ~2 MB. */
#define RC_TRIE_DENSE_MIN 16u

typedef struct {
    uint32_t first;
    uint32_t n_child;
    int32_t token;
} rc_trie_node;

typedef struct {
    rc_trie_node *nodes;    /* [n_nodes] */
    uint8_t *labels;        /* [n_nodes] */
    uint32_t *dense;        /* [n_dense * 256] */
    uint32_t n_nodes;
    uint32_t n_dense;
} rc_trie;

/* Build the trie of a vocabulary. Several tokens with the same bytes: the lowest id is the one encoded.
 * Fails with RWKV_ERR_FORMAT unless every byte value has a one-byte token (so that any text is encodable). */
int rc_trie_build(rc_trie *t, const rc_vocab *v);
void rc_trie_free(rc_trie *t);

/* The child of node n along byte b, or 0 if there is none. */
static inline uint32_t rc_trie_child(const rc_trie *t, const rc_trie_node *n, uint8_t b) {
    if (n->n_child >= RC_TRIE_DENSE_MIN) return t->dense[(size_t)n->first * 256 + b];
    const uint8_t *lab = t->labels + n->first;
    for (uint32_t k = 0; k < n->n_child; k++) {
        if (lab[k] >= b) return lab[k] == b ? n->first + k : 0;   /* labels are sorted */
    }
    return 0;
}

#endif
