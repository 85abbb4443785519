/* fuzz_model_file.c: the .rwkv model reader (header, tensor table, offsets, outlier tables, the embedded
 * tokenizer and metadata), then everything a loaded model offers: a malformed file must be refused with an
 * error; a file that loads must evaluate without reading out of bounds, whatever its weights hold.
 *
 * Input: a model file image (seeds: tests/fuzz/corpus/model_file, made by tests/fuzz/make_corpus.py). */
#include "core/model.h"
#include "fuzz_common.h"

/* Tokens at both ends of the vocabulary and in between. */
static void fuzz_eval(rwkv_model *m, const rwkv_model_info *in) {
    const int32_t last = (int32_t)in->n_vocab - 1;
    int32_t tokens[3] = {0, last, last / 2};
    rwkv_state *a = NULL, *b = NULL;
    float *logits = malloc((size_t)in->n_vocab * 3 * sizeof(float));
    if (!logits || rwkv_state_new(m, &a) || rwkv_state_new(m, &b)) goto done;
    FUZZ_CHECK(rwkv_eval(m, a, tokens, 3, logits, RWKV_EVAL_ALL_LOGITS) == RWKV_OK);
    FUZZ_CHECK(rwkv_eval(m, a, tokens, 1, NULL, 0) == RWKV_OK);
    int32_t bad = (int32_t)in->n_vocab;
    FUZZ_CHECK(rwkv_eval(m, a, &bad, 1, logits, 0) == RWKV_ERR_TOKEN);
    rwkv_state *pair[2] = {a, b};
    FUZZ_CHECK(rwkv_eval_batch(m, pair, tokens, 2, logits) == RWKV_OK);
    /* the state survives a trip through its file format */
    static const uint8_t meta[] = "{}";
    uint64_t need = 0;
    FUZZ_CHECK(rwkv_state_serialize(a, meta, 2, NULL, 0, &need) == RWKV_ERR_BUFFER);
    uint8_t *img = malloc(need);
    if (img) {
        rwkv_state *c = NULL;
        FUZZ_CHECK(rwkv_state_serialize(a, meta, 2, img, need, &need) == RWKV_OK);
        FUZZ_CHECK(rwkv_state_deserialize(m, img, need, &c) == RWKV_OK);
        FUZZ_CHECK(memcmp(rwkv_state_data(c), rwkv_state_data(a), rwkv_state_size(a) * sizeof(float)) == 0);
        rwkv_state_free(c);
        free(img);
    }
done:
    rwkv_state_free(a);
    rwkv_state_free(b);
    free(logits);
}

/* The embedded tokenizer, when the C library runs it. */
static void fuzz_tokenizer(const rwkv_model *m) {
    rwkv_tokenizer *tok = NULL;
    if (rwkv_tokenizer_from_model(m, &tok) != RWKV_OK) return;
    static const uint8_t text[] = "Hello, world!\n\xe4\xbd\xa0\xe5\xa5\xbd \xff\x00z";
    int32_t ids[64];
    uint8_t back[64];
    uint64_t n = 0, nb = 0;
    FUZZ_CHECK(rwkv_tokenizer_encode(tok, text, sizeof text - 1, ids, 64, &n) == RWKV_OK);
    FUZZ_CHECK(rwkv_tokenizer_decode(tok, ids, n, back, sizeof back, &nb) == RWKV_OK);
    FUZZ_CHECK(nb == sizeof text - 1 && memcmp(back, text, nb) == 0);
    rwkv_tokenizer_free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *img = fuzz_aligned_copy(data, size);
    if (!img) return 0;
    rwkv_model *m = NULL;
    if (rc_model_load_image(img, size, 1, &m) == RWKV_OK) {
        rwkv_model_info in;
        FUZZ_CHECK(rwkv_model_get_info(m, &in) == RWKV_OK);
        for (uint64_t i = 0; i < in.n_tensors; i++) {
            rwkv_tensor_info ti;
            FUZZ_CHECK(rwkv_model_tensor_info(m, i, &ti) == RWKV_OK && strlen(ti.name) < 64);
        }
        const uint8_t *meta;
        uint64_t meta_size;
        FUZZ_CHECK(rwkv_model_metadata(m, &meta, &meta_size) == RWKV_OK && meta + meta_size <= img + size);
        fuzz_tokenizer(m);
        fuzz_eval(m, &in);
        rwkv_model_free(m);
    } else {
        FUZZ_CHECK(m == NULL && rwkv_last_error()[0] != 0);
    }
    free(img);
    return 0;
}
