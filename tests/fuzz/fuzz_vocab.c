/* fuzz_vocab.c: the World vocab parser (rwkv_tokenizer_new_world) on any bytes. A text that parses gives a
 * tokenizer that can encode anything: decoding the encoding of the input (any bytes) must give the input back,
 * and every id of the vocabulary must decode to its token's bytes.
 *
 * Input: a vocab text (seeds: tests/fuzz/corpus/vocab, small vocabs in rwkv_vocab_v20230424.txt format). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rwkv_tokenizer *tok = NULL;
    if (rwkv_tokenizer_new_world(data, size, &tok) != RWKV_OK) {
        FUZZ_CHECK(tok == NULL && rwkv_last_error()[0] != 0);
        return 0;
    }
    uint64_t n = 0;
    FUZZ_CHECK(rwkv_tokenizer_encode(tok, data, size, NULL, 0, &n) == (size ? RWKV_ERR_BUFFER : RWKV_OK));
    FUZZ_CHECK(n <= size);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    uint8_t *back = malloc(size ? size : 1);
    uint64_t n2 = 0, nb = 0;
    FUZZ_CHECK(ids && back);
    FUZZ_CHECK(rwkv_tokenizer_encode(tok, data, size, ids, n, &n2) == RWKV_OK && n2 == n);
    FUZZ_CHECK(rwkv_tokenizer_decode(tok, ids, n, back, size, &nb) == RWKV_OK);
    FUZZ_CHECK(nb == size && memcmp(back, data, size) == 0);
    const uint32_t vs = rwkv_tokenizer_vocab_size(tok);
    for (uint32_t id = 0; id < vs && id < 4096; id++) {
        const uint8_t *b;
        uint64_t len;
        if (rwkv_tokenizer_token_bytes(tok, (int32_t)id, &b, &len) == RWKV_OK) FUZZ_CHECK(len >= 1 && len <= 1024);
    }
    free(ids);
    free(back);
    rwkv_tokenizer_free(tok);
    return 0;
}
