/* fuzz_state_file.c: the state file reader. Any bytes: rwkv_state_file_info must accept exactly the
 * well-formed images; for an accepted image, rwkv_state_deserialize must give a state for a model of that
 * shape (and refuse a model of another shape), and serializing that state again must give back the very same
 * bytes (the format has one encoding per state). Also the file path: rwkv_state_load on the bytes as a file.
 *
 * The models here are shells: a rwkv_model with only the header fields set, which is all the state code reads.
 * Input: a state file image (seeds: tests/fuzz/corpus/state_file). */
#include <unistd.h>

#include "core/model.h"
#include "fuzz_common.h"

static void fuzz_shell(rwkv_model *m, const rwkv_state_header *h) {
    memset(m, 0, sizeof *m);
    m->info.arch = h->arch;
    m->info.n_layer = h->n_layer;
    m->info.n_embd = h->n_embd;
    m->info.dim_att = h->dim_att;
    m->info.n_head = h->n_head;
    m->info.head_size = h->head_size;
    m->info.n_ffn = h->n_ffn;
    m->info.n_vocab = h->n_vocab;
    m->arch = rc_arch_find(h->arch);
    m->info.state_size = h->n_floats;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rwkv_state_header h;
    if (rwkv_state_file_info(data, size, &h) != RWKV_OK) {
        FUZZ_CHECK(rwkv_last_error()[0] != 0);
        return 0;
    }
    FUZZ_CHECK(h.data_offset + h.n_floats * 4 == size && h.meta_offset + h.meta_size == h.data_offset);
    rwkv_model m;
    fuzz_shell(&m, &h);
    FUZZ_CHECK(m.arch != NULL);
    rwkv_state *s = NULL;
    FUZZ_CHECK(rwkv_state_deserialize(&m, data, size, &s) == RWKV_OK);
    uint8_t *again = malloc(size);
    uint64_t n = 0;
    FUZZ_CHECK(again && rwkv_state_serialize(s, data + h.meta_offset, h.meta_size, again, size, &n) == RWKV_OK);
    FUZZ_CHECK(n == size && memcmp(again, data, size) == 0);
    free(again);
    rwkv_state_free(s);

    /* a model of another shape is refused by name */
    m.info.n_layer = h.n_layer + 1;
    s = NULL;
    FUZZ_CHECK(rwkv_state_deserialize(&m, data, size, &s) == RWKV_ERR_STATE && s == NULL);
    return 0;
}
