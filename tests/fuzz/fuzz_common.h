/* fuzz_common.h: helpers shared by the fuzz harnesses (tests/fuzz/fuzz_*.c).
 *
 * Each harness defines LLVMFuzzerTestOneInput (and optionally LLVMFuzzerInitialize). Built with clang
 * -DRWKV_BUILD_FUZZERS=ON they are libFuzzer programs; otherwise replay_main.c gives them a main() that runs
 * the files named on the command line (the corpus and the regression inputs), so any compiler, with or
 * without sanitizers, replays what the fuzzers found. A broken property is reported with FUZZ_CHECK, which
 * traps: libFuzzer (and the replay runner) report it as a crash and keep the input. */
#ifndef RWKV_FUZZ_COMMON_H
#define RWKV_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rwkv_cpu.h"

#define FUZZ_CHECK(cond)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);      \
            __builtin_trap();                                                                    \
        }                                                                                        \
    } while (0)

/* A 64-byte aligned copy of the input (a mapped file is page aligned; the fuzzer's buffer is not). */
static inline uint8_t *fuzz_aligned_copy(const uint8_t *data, size_t size) {
    void *p = NULL;
    if (posix_memalign(&p, 64, size ? size : 1)) return NULL;
    if (size) memcpy(p, data, size);
    return (uint8_t *)p;
}

/* A file of the source tree: $RWKV_SOURCE_DIR/rel, or the source directory this harness was built from. */
static inline const char *fuzz_source_path(const char *rel, char *buf, size_t cap) {
    const char *root = getenv("RWKV_SOURCE_DIR");
#ifdef RWKV_SOURCE_DIR_DEFAULT
    if (!root) root = RWKV_SOURCE_DIR_DEFAULT;
#endif
    if (!root) root = ".";
    snprintf(buf, cap, "%s/%s", root, rel);
    return buf;
}

/* The whole file at path, malloc'ed (NULL on failure). */
static inline uint8_t *fuzz_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return NULL; }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    *size = n;
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
