/* fuzz_tokenizer.c: encode and decode with the real World vocabulary (rwkv_cpu/data/rwkv_vocab_v20230424.txt)
 * and the byte tokenizer, on any input:
 *   - encode(text) then decode gives text back, for any bytes; the buffer protocol (too small a buffer gives
 *     RWKV_ERR_BUFFER, the needed count and the ids that fit) agrees with a large enough buffer;
 *   - the input read as int32 ids decodes, or is refused with RWKV_ERR_TOKEN, never read out of bounds. */
#include "fuzz_common.h"

static rwkv_tokenizer *world, *bytes_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    char path[4096];
    size_t size = 0;
    uint8_t *text = fuzz_read_file(fuzz_source_path("rwkv_cpu/data/rwkv_vocab_v20230424.txt", path, sizeof path),
                                   &size);
    if (!text || rwkv_tokenizer_new_world(text, size, &world) != RWKV_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot load the World vocab %s (set RWKV_SOURCE_DIR): %s\n", path,
                rwkv_last_error());
        exit(1);
    }
    free(text);
    if (rwkv_tokenizer_new_bytes(&bytes_tok) != RWKV_OK) exit(1);
    return 0;
}

static void round_trip(const rwkv_tokenizer *tok, const uint8_t *data, size_t size) {
    uint64_t n = 0, n_small = 0, nb = 0;
    int32_t *ids = malloc((size + 1) * sizeof *ids);
    uint8_t *back = malloc(size + 1);
    FUZZ_CHECK(ids && back);
    FUZZ_CHECK(rwkv_tokenizer_encode(tok, data, size, ids, size + 1, &n) == RWKV_OK && n <= size);
    if (n > 1) {   /* half the buffer: refused, same count, same first ids */
        int32_t *half = malloc(n / 2 * sizeof *half);
        FUZZ_CHECK(half && rwkv_tokenizer_encode(tok, data, size, half, n / 2, &n_small) == RWKV_ERR_BUFFER);
        FUZZ_CHECK(n_small == n && memcmp(half, ids, n / 2 * sizeof *half) == 0);
        free(half);
    }
    FUZZ_CHECK(rwkv_tokenizer_decode(tok, ids, n, back, size, &nb) == RWKV_OK);
    FUZZ_CHECK(nb == size && memcmp(back, data, size) == 0);
    if (size > 1) FUZZ_CHECK(rwkv_tokenizer_decode(tok, ids, n, back, size - 1, &nb) == RWKV_ERR_BUFFER && nb == size);
    free(ids);
    free(back);
}

static void decode_ids(const rwkv_tokenizer *tok, const uint8_t *data, size_t size) {
    size_t n = size / 4;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    FUZZ_CHECK(ids != NULL);
    memcpy(ids, data, n * 4);
    uint64_t need = 0, got = 0;
    int st = rwkv_tokenizer_decode(tok, ids, n, NULL, 0, &need);
    if (st == RWKV_OK || st == RWKV_ERR_BUFFER) {
        FUZZ_CHECK(st == (need ? RWKV_ERR_BUFFER : RWKV_OK));
        uint8_t *out = malloc(need ? need : 1);
        FUZZ_CHECK(out && rwkv_tokenizer_decode(tok, ids, n, out, need, &got) == RWKV_OK && got == need);
        free(out);
    } else {
        FUZZ_CHECK(st == RWKV_ERR_TOKEN);
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *b;
        uint64_t len;
        st = rwkv_tokenizer_token_bytes(tok, ids[i], &b, &len);
        FUZZ_CHECK(st == RWKV_OK || st == RWKV_ERR_TOKEN);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    round_trip(world, data, size);
    round_trip(bytes_tok, data, size);
    decode_ids(world, data, size);
    decode_ids(bytes_tok, data, size);
    return 0;
}
