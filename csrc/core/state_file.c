/* state_file.c: state files (docs/FILE_FORMAT.md "State file"): a 64-byte header that ties the state to a
 * model's architecture and dimensions, the caller's metadata, then the state's floats; CRC-32 over all of it.
 *
 * The reader takes untrusted bytes: every header field is checked before it is used, sizes are computed with
 * overflow checks, the total size must be exactly what the header implies, and nothing is allocated in
 * proportion to a claimed size before the buffer (or file) has been shown to hold that many bytes.
 *
 *   rwkv_state_serialize    state -> bytes (caller's buffer; RWKV_ERR_BUFFER protocol)
 *   rwkv_state_file_info    bytes -> header fields, checked (no model needed: the fuzzing entry point)
 *   rwkv_state_deserialize  bytes -> a new state for a model (refused for another model's shape)
 *   rwkv_state_save / _load the same, to and from a file; save is atomic (temp file, fsync, rename)     */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/state.h"

#define RC_SF_MAGIC "RWKVSTA"         /* 7 chars + NUL = 8 bytes */
#define RC_SF_VERSION 1
#define RC_SF_HEADER 64
#define RC_SF_CRC_AT 60               /* the CRC field; the CRC covers every other byte of the file */
/* Same sanity limits as the model file reader (model_file.c). */
#define RC_SF_MAX_LAYERS 4096u
#define RC_SF_MAX_WIDTH (1u << 20)
#define RC_SF_MAX_VOCAB (1u << 24)

/* ---- little-endian fields ------------------------------------------------------------------------- */
static uint32_t sf_rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t sf_rd64(const uint8_t *p) { return (uint64_t)sf_rd32(p) | (uint64_t)sf_rd32(p + 4) << 32; }
static void sf_wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void sf_wr64(uint8_t *p, uint64_t v) {
    sf_wr32(p, (uint32_t)v);
    sf_wr32(p + 4, (uint32_t)(v >> 32));
}

/* floats <-> little-endian bytes (a plain copy on little-endian hosts) */
static int sf_host_is_le(void) {
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}
static void sf_put_floats(uint8_t *dst, const float *src, uint64_t n) {
    if (sf_host_is_le()) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, src + i, 4);
        sf_wr32(dst + 4 * i, v);
    }
}
static void sf_get_floats(float *dst, const uint8_t *src, uint64_t n) {
    if (sf_host_is_le()) {
        memcpy(dst, src, (size_t)n * 4);
        return;
    }
    for (uint64_t i = 0; i < n; i++) {
        uint32_t v = sf_rd32(src + 4 * i);
        memcpy(dst + i, &v, 4);
    }
}

/* ---- CRC-32 (IEEE 802.3, reflected, as zlib.crc32) ------------------------------------------------ */
/* Slicing-by-8: eight 256-entry tables, eight bytes per step (several times the speed of the byte-wise loop;
 * a 7B model's 35 MB state is checked in tens of milliseconds). The tables are built once. */
static uint32_t sf_crc_tab[8][256];
static pthread_once_t sf_crc_once = PTHREAD_ONCE_INIT;

static void sf_crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        sf_crc_tab[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (uint32_t i = 0; i < 256; i++)
            sf_crc_tab[t][i] = (sf_crc_tab[t - 1][i] >> 8) ^ sf_crc_tab[0][sf_crc_tab[t - 1][i] & 0xff];
}

/* The plain byte-wise loop (the definition; also the tail of the fast loop). */
static uint32_t sf_crc_bytes(uint32_t crc, const uint8_t *p, uint64_t n) {
    crc = ~crc;
    for (uint64_t i = 0; i < n; i++) crc = sf_crc_tab[0][(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t sf_crc_update(uint32_t crc, const uint8_t *p, uint64_t n) {
    crc = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        crc = sf_crc_tab[7][lo & 0xff] ^ sf_crc_tab[6][(lo >> 8) & 0xff] ^ sf_crc_tab[5][(lo >> 16) & 0xff] ^
              sf_crc_tab[4][lo >> 24] ^ sf_crc_tab[3][p[4]] ^ sf_crc_tab[2][p[5]] ^ sf_crc_tab[1][p[6]] ^
              sf_crc_tab[0][p[7]];
    }
    return sf_crc_bytes(~crc, p, n);
}

/* CRC of a whole file image except its 4 CRC bytes. */
static uint32_t sf_file_crc(const uint8_t *data, uint64_t size) {
    pthread_once(&sf_crc_once, sf_crc_init);
    uint32_t crc = sf_crc_update(0, data, RC_SF_CRC_AT);
    return sf_crc_update(crc, data + RC_SF_HEADER, size - RC_SF_HEADER);
}

/* ---- header ------------------------------------------------------------------------------------------ */
/* Floats in a state of these dimensions, as the architecture lays it out. */
static int sf_state_floats(const rwkv_state_header *h, uint64_t *out) {
    const rc_arch *arch = rc_arch_find(h->arch);
    if (!arch)
        return rc_error(RWKV_ERR_UNSUPPORTED, "state file of architecture %s (id %u), which this build does not run",
                        rwkv_arch_name(h->arch), h->arch);
    rwkv_model_info info;
    memset(&info, 0, sizeof info);
    info.arch = h->arch;
    info.n_layer = h->n_layer;
    info.n_embd = h->n_embd;
    info.dim_att = h->dim_att;
    info.n_head = h->n_head;
    info.head_size = h->head_size;
    info.n_ffn = h->n_ffn;
    info.n_vocab = h->n_vocab;
    uint64_t n;
    /* bounded so that header + metadata + 4 n bytes cannot overflow either */
    if (!rc_mul_u64(arch->state_floats_per_layer(&info), h->n_layer, &n) ||
        n > (UINT64_MAX - RC_SF_HEADER - RWKV_STATE_META_MAX) / 4)
        return rc_error(RWKV_ERR_FORMAT, "state file: state size overflows");
    *out = n;
    return RWKV_OK;
}

/* Parse and check the 64-byte header (data holds at least RC_SF_HEADER bytes). Checks everything the header
 * says on its own; the total size and the CRC are checked by the callers, which know the buffer. */
static int sf_parse_header(const uint8_t *p, rwkv_state_header *h) {
    memset(h, 0, sizeof *h);
    if (memcmp(p, RC_SF_MAGIC, 8) != 0) return rc_error(RWKV_ERR_FORMAT, "not a rwkv_cpu state file (bad magic)");
    h->version = sf_rd32(p + 8);
    if (h->version != RC_SF_VERSION)
        return rc_error(RWKV_ERR_UNSUPPORTED, "state file format version %u; this build reads version %d",
                        h->version, RC_SF_VERSION);
    if (sf_rd32(p + 12) != RC_SF_HEADER)
        return rc_error(RWKV_ERR_FORMAT, "state file header size %u, expected %d", sf_rd32(p + 12), RC_SF_HEADER);
    h->arch = sf_rd32(p + 16);
    h->n_layer = sf_rd32(p + 20);
    h->n_embd = sf_rd32(p + 24);
    h->dim_att = sf_rd32(p + 28);
    h->n_head = sf_rd32(p + 32);
    h->head_size = sf_rd32(p + 36);
    h->n_ffn = sf_rd32(p + 40);
    h->n_vocab = sf_rd32(p + 44);
    h->n_floats = sf_rd64(p + 48);
    h->meta_size = sf_rd32(p + 56);
    if (h->n_layer == 0 || h->n_layer > RC_SF_MAX_LAYERS || h->n_embd == 0 || h->n_embd > RC_SF_MAX_WIDTH ||
        h->dim_att == 0 || h->dim_att > RC_SF_MAX_WIDTH || h->n_head == 0 || h->head_size == 0 ||
        h->n_ffn == 0 || h->n_ffn > RC_SF_MAX_WIDTH || h->n_vocab == 0 || h->n_vocab > RC_SF_MAX_VOCAB ||
        (uint64_t)h->n_head * h->head_size != h->dim_att)
        return rc_error(RWKV_ERR_FORMAT,
                        "state file dimensions out of range (n_layer %u, n_embd %u, dim_att %u, n_head %u, "
                        "head_size %u, n_ffn %u, n_vocab %u)", h->n_layer, h->n_embd, h->dim_att, h->n_head,
                        h->head_size, h->n_ffn, h->n_vocab);
    if (h->meta_size > RWKV_STATE_META_MAX)
        return rc_error(RWKV_ERR_FORMAT, "state file metadata of %llu bytes (at most %d)",
                        (unsigned long long)h->meta_size, RWKV_STATE_META_MAX);
    uint64_t expect;
    int st = sf_state_floats(h, &expect);
    if (st) return st;
    if (h->n_floats != expect)
        return rc_error(RWKV_ERR_FORMAT, "state file holds %llu floats, but its dimensions make %llu",
                        (unsigned long long)h->n_floats, (unsigned long long)expect);
    h->meta_offset = RC_SF_HEADER;
    h->data_offset = RC_SF_HEADER + h->meta_size;
    return RWKV_OK;
}

/* Bytes of the whole file that this (checked) header describes; sf_state_floats bounds it below 2^64. */
static uint64_t sf_file_size(const rwkv_state_header *h) { return h->data_offset + h->n_floats * 4; }

/* RWKV_OK if the file's shape is the model's, else RWKV_ERR_STATE naming the first difference. */
static int sf_match_model(const rwkv_state_header *h, const rwkv_model_info *m) {
    if (h->arch != m->arch)
        return rc_error(RWKV_ERR_STATE, "the state file was saved from another model (file vs model: architecture "
                        "%s vs %s)", rwkv_arch_name(h->arch), rwkv_arch_name(m->arch));
#define SF_CMP(field)                                                                                        \
    if (h->field != m->field)                                                                                \
        return rc_error(RWKV_ERR_STATE, "the state file was saved from another model (file vs model: " #field \
                        " %u vs %u)", (unsigned)h->field, (unsigned)m->field);
    SF_CMP(n_layer)
    SF_CMP(n_embd)
    SF_CMP(dim_att)
    SF_CMP(n_head)
    SF_CMP(head_size)
    SF_CMP(n_ffn)
    SF_CMP(n_vocab)
#undef SF_CMP
    return RWKV_OK;
}

/* ---- public: memory ---------------------------------------------------------------------------------- */
int rwkv_state_file_info(const uint8_t *data, uint64_t size, rwkv_state_header *out) {
    if (!out || (!data && size)) return rc_error(RWKV_ERR_ARG, "NULL argument");
    memset(out, 0, sizeof *out);
    if (size < RC_SF_HEADER)
        return rc_error(RWKV_ERR_FORMAT, "state file of %llu bytes is shorter than its %d-byte header",
                        (unsigned long long)size, RC_SF_HEADER);
    rwkv_state_header h;
    int st = sf_parse_header(data, &h);
    if (st) return st;
    uint64_t want = sf_file_size(&h);
    if (size != want)
        return rc_error(RWKV_ERR_FORMAT, "state file is %llu bytes, its header describes %llu (%s)",
                        (unsigned long long)size, (unsigned long long)want, size < want ? "truncated" : "trailing bytes");
    uint32_t crc = sf_file_crc(data, size), stored = sf_rd32(data + RC_SF_CRC_AT);
    if (crc != stored)
        return rc_error(RWKV_ERR_FORMAT, "state file is corrupt (CRC-32 %08x, header says %08x)", crc, stored);
    *out = h;
    return RWKV_OK;
}

int rwkv_state_serialize(const rwkv_state *s, const uint8_t *meta, uint64_t meta_size, uint8_t *out, uint64_t cap,
                         uint64_t *n_out) {
    if (!s || !n_out || (!meta && meta_size) || (!out && cap)) return rc_error(RWKV_ERR_ARG, "NULL argument");
    *n_out = 0;
    if (meta_size > RWKV_STATE_META_MAX)
        return rc_error(RWKV_ERR_ARG, "state metadata of %llu bytes (at most %d)", (unsigned long long)meta_size,
                        RWKV_STATE_META_MAX);
    uint64_t need = RC_SF_HEADER + meta_size + s->size * 4;
    *n_out = need;
    if (cap < need)
        return rc_error(RWKV_ERR_BUFFER, "a state file needs %llu bytes, the buffer has %llu", (unsigned long long)need,
                        (unsigned long long)cap);
    const rwkv_model_info *m = &s->shape;
    memset(out, 0, RC_SF_HEADER);
    memcpy(out, RC_SF_MAGIC, 8);
    sf_wr32(out + 8, RC_SF_VERSION);
    sf_wr32(out + 12, RC_SF_HEADER);
    sf_wr32(out + 16, m->arch);
    sf_wr32(out + 20, m->n_layer);
    sf_wr32(out + 24, m->n_embd);
    sf_wr32(out + 28, m->dim_att);
    sf_wr32(out + 32, m->n_head);
    sf_wr32(out + 36, m->head_size);
    sf_wr32(out + 40, m->n_ffn);
    sf_wr32(out + 44, m->n_vocab);
    sf_wr64(out + 48, s->size);
    sf_wr32(out + 56, (uint32_t)meta_size);
    if (meta_size) memcpy(out + RC_SF_HEADER, meta, (size_t)meta_size);
    sf_put_floats(out + RC_SF_HEADER + meta_size, s->data, s->size);
    sf_wr32(out + RC_SF_CRC_AT, sf_file_crc(out, need));
    return RWKV_OK;
}

int rwkv_state_deserialize(const rwkv_model *m, const uint8_t *data, uint64_t size, rwkv_state **out) {
    if (!m || !out || (!data && size)) return rc_error(RWKV_ERR_ARG, "NULL argument");
    *out = NULL;
    rwkv_state_header h;
    int st;
    /* the shape first, so that another model's state is named as such even if it is also damaged */
    if (size >= RC_SF_HEADER && (st = sf_parse_header(data, &h)) == RWKV_OK && (st = sf_match_model(&h, &m->info)))
        return st;
    if ((st = rwkv_state_file_info(data, size, &h))) return st;
    if ((st = sf_match_model(&h, &m->info))) return st;
    if (h.n_floats != m->info.state_size)
        return rc_error(RWKV_ERR_STATE, "the state file holds %llu floats, this model's state %llu",
                        (unsigned long long)h.n_floats, (unsigned long long)m->info.state_size);
    rwkv_state *s;
    if ((st = rwkv_state_new(m, &s))) return st;
    sf_get_floats(s->data, data + h.data_offset, h.n_floats);
    *out = s;
    return RWKV_OK;
}

/* ---- public: files ----------------------------------------------------------------------------------- */
static int sf_write_all(int fd, const uint8_t *p, uint64_t n) {
    while (n) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (uint64_t)w;
    }
    return 0;
}

static int sf_read_all(int fd, uint8_t *p, uint64_t n) {
    while (n) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t r = read(fd, p, chunk);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) {
            errno = 0; /* the file shrank while we read it */
            return -1;
        }
        p += r;
        n -= (uint64_t)r;
    }
    return 0;
}

/* fsync the directory holding path, so that the rename survives a crash (best effort). */
static void sf_fsync_dir(const char *path) {
    size_t n = strlen(path);
    while (n && path[n - 1] != '/') n--;
    char *dir = malloc(n ? n + 1 : 2);
    if (!dir) return;
    if (n) {
        memcpy(dir, path, n);
        dir[n] = 0;
    } else {
        memcpy(dir, ".", 2);
    }
    int fd = open(dir, O_RDONLY);
    free(dir);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

int rwkv_state_save(const rwkv_state *s, const uint8_t *meta, uint64_t meta_size, const char *path) {
    if (!s || !path || (!meta && meta_size)) return rc_error(RWKV_ERR_ARG, "NULL argument");
    if (!path[0]) return rc_error(RWKV_ERR_ARG, "empty path");
    uint64_t size;
    int st = rwkv_state_serialize(s, meta, meta_size, NULL, 0, &size);
    if (st != RWKV_ERR_BUFFER) return st;
    if (size > SIZE_MAX) return rc_error(RWKV_ERR_OOM, "state of %llu bytes", (unsigned long long)size);
    uint8_t *buf = malloc((size_t)size);
    if (!buf) return rc_error(RWKV_ERR_OOM, "cannot allocate %llu bytes to save a state", (unsigned long long)size);
    if ((st = rwkv_state_serialize(s, meta, meta_size, buf, size, &size))) {
        free(buf);
        return st;
    }
    /* the temp file lives beside the target, so that rename() replaces it atomically */
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    if (!tmp) {
        free(buf);
        return rc_error(RWKV_ERR_OOM, "out of memory");
    }
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp-XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = rc_error(RWKV_ERR_IO, "cannot create a temporary file beside %s: %s", path, strerror(errno));
        free(tmp);
        free(buf);
        return st;
    }
    mode_t mask = umask(0);
    umask(mask);
    if (sf_write_all(fd, buf, size) || fchmod(fd, 0666 & ~mask) || fsync(fd)) {
        st = rc_error(RWKV_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
    } else if (close(fd)) {
        st = rc_error(RWKV_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    } else if (rename(tmp, path)) {
        st = rc_error(RWKV_ERR_IO, "cannot rename the state file into %s: %s", path, strerror(errno));
        unlink(tmp);
    } else {
        sf_fsync_dir(path);
        st = RWKV_OK;
    }
    free(tmp);
    free(buf);
    return st;
}

int rwkv_state_load(const rwkv_model *m, const char *path, rwkv_state **out) {
    if (!m || !path || !out) return rc_error(RWKV_ERR_ARG, "NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return rc_error(RWKV_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    int st = RWKV_OK;
    uint8_t header[RC_SF_HEADER];
    rwkv_state_header h;
    uint8_t *buf = NULL;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        st = rc_error(RWKV_ERR_IO, "%s: not a regular file", path);
    } else if ((uint64_t)sb.st_size < RC_SF_HEADER) {
        st = rc_error(RWKV_ERR_FORMAT, "%s: %lld bytes is shorter than a state file header", path,
                      (long long)sb.st_size);
    } else if (sf_read_all(fd, header, RC_SF_HEADER)) {
        st = rc_error(RWKV_ERR_IO, "cannot read %s: %s", path, errno ? strerror(errno) : "file shrank");
    } else if ((st = sf_parse_header(header, &h)) || (st = sf_match_model(&h, &m->info))) {
        rc_error_prefix(st, "%s", path);
    } else if ((uint64_t)sb.st_size != sf_file_size(&h)) {
        /* the header matches this model, so its size is bounded by the model's state: safe to trust below */
        st = rc_error(RWKV_ERR_FORMAT, "%s: state file is %lld bytes, its header describes %llu (%s)", path,
                      (long long)sb.st_size, (unsigned long long)sf_file_size(&h),
                      (uint64_t)sb.st_size < sf_file_size(&h) ? "truncated" : "trailing bytes");
    } else if (sf_file_size(&h) > SIZE_MAX || !(buf = malloc((size_t)sf_file_size(&h)))) {
        st = rc_error(RWKV_ERR_OOM, "cannot allocate %llu bytes to read %s", (unsigned long long)sf_file_size(&h),
                      path);
    } else {
        memcpy(buf, header, RC_SF_HEADER);
        if (sf_read_all(fd, buf + RC_SF_HEADER, sf_file_size(&h) - RC_SF_HEADER))
            st = rc_error(RWKV_ERR_IO, "cannot read %s: %s", path, errno ? strerror(errno) : "file shrank");
        else if ((st = rwkv_state_deserialize(m, buf, sf_file_size(&h), out)))
            rc_error_prefix(st, "%s", path);
    }
    free(buf);
    close(fd);
    return st;
}
