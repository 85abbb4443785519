/*
 * rwkv_cpu.h: the public C API of rwkv_cpu, a CPU runtime for RWKV language models.
 *
 * Shape of the API
 *   - Opaque handles: rwkv_model (immutable weights, mmap'ed from a .rwkv file, plus a thread pool),
 *     rwkv_state (one sequence's recurrent state), rwkv_tokenizer.
 *   - Every function that can fail returns an rwkv_status (0 = RWKV_OK). On failure the calling thread's
 *     last error message (rwkv_last_error) says what went wrong. The library never prints, aborts or exits.
 *   - Nothing is global except read-only CPU-feature detection: two models or two states never interfere.
 *
 * Threads (see docs/SECURITY.md)
 *   - A model may be shared by several threads. Evaluations on one model serialize on its thread pool:
 *     each call uses all of the model's threads, then lets the next call in.
 *   - A state must not be used by two threads at the same time; give each thread its own state.
 *   - A tokenizer is immutable after creation and may be shared freely.
 *
 * The block between CFFI-BEGIN and CFFI-END is read verbatim by the Python binding (rwkv_cpu/_ffi.py),
 * so it must hold plain C declarations only: no macros, no preprocessor lines.
 */
#ifndef RWKV_CPU_H
#define RWKV_CPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* CFFI-BEGIN */

/* ---- status codes -------------------------------------------------------------------------------- */
typedef enum {
    RWKV_OK = 0,
    RWKV_ERR_IO = 1,            /* cannot open / read / map / write a file */
    RWKV_ERR_FORMAT = 2,        /* malformed or inconsistent file (bad magic, truncated, bad offsets...) */
    RWKV_ERR_UNSUPPORTED = 3,   /* a valid file of a version, architecture or type this build lacks */
    RWKV_ERR_ARG = 4,           /* bad argument (NULL pointer, zero length, bad thread count...) */
    RWKV_ERR_OOM = 5,           /* an allocation failed */
    RWKV_ERR_TOKEN = 6,         /* a token id outside [0, n_vocab) */
    RWKV_ERR_STATE = 7,         /* a state that does not belong to this model's architecture/dimensions */
    RWKV_ERR_BUFFER = 8         /* an output buffer is too small; the needed size was reported */
} rwkv_status;

/* ---- architectures, tensor types, tokenizer kinds (values are stored in .rwkv files) -------------- */
enum {
    RWKV_ARCH_V4 = 40,
    RWKV_ARCH_V5_0 = 50,
    RWKV_ARCH_V5_1 = 51,
    RWKV_ARCH_V5_2 = 52,
    RWKV_ARCH_V6 = 60,
    RWKV_ARCH_V7 = 70
};

enum {
    RWKV_DTYPE_F32 = 0,
    RWKV_DTYPE_F16 = 1,
    RWKV_DTYPE_Q8_0 = 8,        /* "q8": blocks of 32 int8 weights with an f16 scale (docs/FILE_FORMAT.md) */
    RWKV_DTYPE_Q4 = 9           /* "q4": blocks of 32 4-bit codebook indices, int8 block scales, f16 per 8 blocks */
};

enum {
    RWKV_TOKENIZER_NONE = 0,
    RWKV_TOKENIZER_WORLD = 1,   /* RWKV World vocab text (rwkv_vocab_v20230424.txt format) */
    RWKV_TOKENIZER_HF_JSON = 2, /* a Hugging Face `tokenizers` JSON file (e.g. GPT-NeoX 20B) */
    RWKV_TOKENIZER_BYTES = 3    /* byte-level: token id = byte value (vocab 256) */
};

/* rwkv_eval flags */
enum {
    RWKV_EVAL_ALL_LOGITS = 1    /* write logits for every position, not only the last */
};

typedef struct rwkv_model rwkv_model;
typedef struct rwkv_state rwkv_state;
typedef struct rwkv_tokenizer rwkv_tokenizer;

typedef struct {
    uint32_t arch;          /* RWKV_ARCH_* */
    uint32_t n_layer;
    uint32_t n_embd;        /* C */
    uint32_t dim_att;       /* A = n_head * head_size */
    uint32_t n_head;        /* H */
    uint32_t head_size;     /* N */
    uint32_t n_ffn;         /* F */
    uint32_t n_vocab;       /* V */
    uint32_t tokenizer_kind;
    uint32_t n_threads;
    uint64_t n_tensors;
    uint64_t n_params;      /* total number of weights */
    uint64_t weight_bytes;  /* bytes of tensor data */
    uint64_t file_size;
    uint64_t state_size;    /* floats in one state */
} rwkv_model_info;

typedef struct {
    const char *name;       /* points into the model; valid while the model lives */
    uint32_t dtype;         /* RWKV_DTYPE_* */
    uint32_t n_dims;
    uint64_t shape[4];      /* outermost first, as torch; [out, in] for matrices */
    uint64_t n_elements;
    uint64_t nbytes;
} rwkv_tensor_info;

/* ---- library ------------------------------------------------------------------------------------- */
const char *rwkv_version(void);
/* The last error message of the calling thread ("" if none). Valid until the next failing call. */
const char *rwkv_last_error(void);
const char *rwkv_status_name(int status);
const char *rwkv_dtype_name(uint32_t dtype);
const char *rwkv_arch_name(uint32_t arch);
/* Space-separated features of this CPU that the kernels use, e.g. "avx2 fma f16c", and on x86 "sw-prefetch"
 * where the kernels issue software prefetches of the weights, or "sw-prefetch-batches" where only the small-batch
 * q4 / f16 loops do (AMD CPUs: the one-vector products measured slower with them). The environment variable
 * RWKV_CPU_PREFETCH=1 asks for all of them, 0 for none. */
const char *rwkv_cpu_features(void);
/* Name of the kernel family chosen at run time ("scalar", "avx2", "avx512", "neon"). */
const char *rwkv_kernel_name(void);

/* ---- model --------------------------------------------------------------------------------------- */
/* Map and validate a .rwkv file. n_threads <= 0 means the number of physical cores. */
int rwkv_model_load(const char *path, int n_threads, rwkv_model **out);
void rwkv_model_free(rwkv_model *model);
int rwkv_model_get_info(const rwkv_model *model, rwkv_model_info *out);
int rwkv_model_set_threads(rwkv_model *model, int n_threads);
int rwkv_model_tensor_info(const rwkv_model *model, uint64_t index, rwkv_tensor_info *out);
/* The tokenizer blob embedded in the model file (kind RWKV_TOKENIZER_*); data points into the mapping. */
int rwkv_model_tokenizer_blob(const rwkv_model *model, uint32_t *kind, const uint8_t **data, uint64_t *size);
/* The converter's JSON metadata blob (UTF-8, not NUL-terminated; may be empty). */
int rwkv_model_metadata(const rwkv_model *model, const uint8_t **data, uint64_t *size);

/* ---- state --------------------------------------------------------------------------------------- */
/* A new zero state for this model (v4's p starts at -1e30). */
int rwkv_state_new(const rwkv_model *model, rwkv_state **out);
void rwkv_state_free(rwkv_state *state);
/* A new state equal to src (same model shape, same values). */
int rwkv_state_clone(const rwkv_state *src, rwkv_state **out);
/* Copy src into dst; both must have the same architecture and dimensions. */
int rwkv_state_copy(rwkv_state *dst, const rwkv_state *src);
int rwkv_state_reset(rwkv_state *state);
/* The state's floats, laid out as docs/FILE_FORMAT.md "State layout" says. */
float *rwkv_state_data(rwkv_state *state);
uint64_t rwkv_state_size(const rwkv_state *state);
/* RWKV_OK if the state fits the model, else RWKV_ERR_STATE with a message naming the difference. */
int rwkv_state_check(const rwkv_model *model, const rwkv_state *state);

/* ---- state files (docs/FILE_FORMAT.md "State file") ---------------------------------------------- */
/* A 64-byte header tying the state to a model's architecture and dimensions, up to RWKV_STATE_META_MAX
 * bytes of the caller's metadata (rwkv_cpu's Python side writes a JSON object), the floats; CRC-32. */
enum {
    RWKV_STATE_META_MAX = 1048576
};

typedef struct {
    uint32_t version;
    uint32_t arch, n_layer, n_embd, dim_att, n_head, head_size, n_ffn, n_vocab;
    uint64_t n_floats;
    uint64_t meta_offset;   /* the metadata is bytes [meta_offset, meta_offset + meta_size) of the file */
    uint64_t meta_size;
    uint64_t data_offset;   /* n_floats little-endian float32 from here to the end */
} rwkv_state_header;

/* Write a state file image into out (buffer protocol as rwkv_tokenizer_encode: *n_out gets the size
 * needed; RWKV_ERR_BUFFER if cap is too small). meta may be NULL when meta_size is 0. */
int rwkv_state_serialize(const rwkv_state *state, const uint8_t *meta, uint64_t meta_size, uint8_t *out,
                         uint64_t cap, uint64_t *n_out);
/* Check a state file image held in memory (any bytes: magic, version, dimensions, exact size, CRC) and
 * describe it; no model needed. */
int rwkv_state_file_info(const uint8_t *data, uint64_t size, rwkv_state_header *out);
/* A new state from a state file image. RWKV_ERR_STATE if it was saved from a model of another
 * architecture or dimensions; RWKV_ERR_FORMAT if it is damaged. */
int rwkv_state_deserialize(const rwkv_model *model, const uint8_t *data, uint64_t size, rwkv_state **out);
/* Save atomically: a temporary file beside path, fsync, rename over path. On failure path is untouched. */
int rwkv_state_save(const rwkv_state *state, const uint8_t *meta, uint64_t meta_size, const char *path);
/* Read a state file written by rwkv_state_save (or rwkv_state_serialize) for this model. */
int rwkv_state_load(const rwkv_model *model, const char *path, rwkv_state **out);

/* ---- evaluation ---------------------------------------------------------------------------------- */
/* Feed n_tokens tokens of one sequence, advancing state. logits: NULL, or n_vocab floats (the logits
 * after the last token), or n_tokens * n_vocab floats with RWKV_EVAL_ALL_LOGITS (row t = after
 * tokens[0..t]). On any error the state is left unchanged. */
int rwkv_eval(rwkv_model *model, rwkv_state *state, const int32_t *tokens, uint64_t n_tokens,
              float *logits, uint32_t flags);
/* The most tokens one pass over the weights evaluates together (longer inputs to rwkv_eval, and batches of
 * more sequences, run in passes of this many). */
uint32_t rwkv_eval_chunk(void);
/* Advance n_seqs independent sequences by one token each, in one pass over the weights.
 * states: n_seqs distinct states; tokens: [n_seqs]; logits: NULL or [n_seqs, n_vocab]. */
int rwkv_eval_batch(rwkv_model *model, rwkv_state *const *states, const int32_t *tokens,
                    uint64_t n_seqs, float *logits);

/* ---- tokenizer ----------------------------------------------------------------------------------- */
/* Parse a World vocab text (rwkv_vocab_v20230424.txt format): "<id> <python literal> <byte length>". */
int rwkv_tokenizer_new_world(const uint8_t *vocab_text, uint64_t size, rwkv_tokenizer **out);
/* Byte-level tokenizer: token id = byte value, vocab 256. */
int rwkv_tokenizer_new_bytes(rwkv_tokenizer **out);
/* The tokenizer embedded in a model (World or bytes kinds; RWKV_ERR_UNSUPPORTED for others). */
int rwkv_tokenizer_from_model(const rwkv_model *model, rwkv_tokenizer **out);
void rwkv_tokenizer_free(rwkv_tokenizer *tok);
uint32_t rwkv_tokenizer_vocab_size(const rwkv_tokenizer *tok);  /* largest id + 1 */
/* Encode bytes (any bytes, not only valid UTF-8). Writes up to cap ids; *n_out gets the count
 * needed. If cap is too small, returns RWKV_ERR_BUFFER (call again with a larger buffer). */
int rwkv_tokenizer_encode(const rwkv_tokenizer *tok, const uint8_t *text, uint64_t len,
                          int32_t *out, uint64_t cap, uint64_t *n_out);
/* The bytes of one token. Unknown ids (e.g. 0) give RWKV_ERR_TOKEN. */
int rwkv_tokenizer_token_bytes(const rwkv_tokenizer *tok, int32_t id, const uint8_t **bytes,
                               uint64_t *len);
/* Concatenated bytes of ids; same buffer protocol as encode. Id 0 (end of text) decodes to nothing. */
int rwkv_tokenizer_decode(const rwkv_tokenizer *tok, const int32_t *ids, uint64_t n, uint8_t *out,
                          uint64_t cap, uint64_t *n_out);

/* ---- quantization and matrix kernels (docs/FILE_FORMAT.md "dtypes") ------------------------------ */
/* Bytes one row of n_cols weights takes in dtype (a matrix of n rows is exactly n times this; q4 spreads
 * its rows over three arrays, docs/FILE_FORMAT.md); 0 if the dtype is unknown or n_cols does not fit its
 * blocks (q8: a multiple of 32; q4: a multiple of 32, at least 64). */
uint64_t rwkv_dtype_row_bytes(uint32_t dtype, uint64_t n_cols);
/* Store src [n_rows, n_cols] (row-major floats) as one tensor in dtype's layout; dst_size must be
 * n_rows * rwkv_dtype_row_bytes(dtype, n_cols). NaN, infinity, and values beyond what the dtype can scale
 * (f16: |x| > 65504; q8: |x| > 6.5e6; q4: |x| > 3e6, for f16 scales) are refused with RWKV_ERR_ARG naming
 * the row. q4 chooses each block's scale by minimising the block's error (see csrc/kernels/quant.c). */
int rwkv_quantize(uint32_t dtype, const float *src, uint64_t n_rows, uint64_t n_cols, void *dst,
                  uint64_t dst_size);
/* The float values a stored tensor of n_rows rows stands for: dst [n_rows, n_cols]. */
int rwkv_dequantize(uint32_t dtype, const void *src, uint64_t n_rows, uint64_t n_cols, float *dst);
/* Why RWKV_CPU_KERNEL was not followed ("" when it was, or is unset). */
const char *rwkv_kernel_note(void);
/* For tests and benchmarks: Y [T, rows] = X [T, cols] times W [rows, cols] (stored as dtype) with the
 * named kernel family ("scalar", "avx2", "avx512", "neon", "neon-dotprod"; NULL = the one in use), on a
 * pool of n_threads made for this call. A family this CPU cannot run gives RWKV_ERR_UNSUPPORTED. */
int rwkv_matmul(const char *kernel, uint32_t dtype, const void *W, uint64_t rows, uint64_t cols, const float *X,
                uint64_t T, float *Y, int n_threads);

/* ---- benchmarks ----------------------------------------------------------------------------------- */
/* The machine's read bandwidth as this model's evaluations see it: a streaming read of a buffer of nbytes
 * (make it larger than the caches) with the model's own thread pool and thread count, each thread reading a
 * contiguous share. *bytes_per_second gets the median over reps timed passes (after one warm-up pass).
 * Waits for, then holds, the model's pool like an evaluation. nbytes in [4096, 2^40], reps in [1, 1024]. */
int rwkv_measure_read_bandwidth(rwkv_model *model, uint64_t nbytes, int reps, double *bytes_per_second);
/* The same read over the model's own weights (the file's tensor data but the embedding, as mapped): the
 * bandwidth of the very pages a decode step streams, which on some machines differs from a fresh buffer's
 * (memory of mixed speeds). reps in [1, 1024]; *bytes_read (if not NULL) gets the bytes one pass reads. */
int rwkv_measure_weights_bandwidth(rwkv_model *model, int reps, double *bytes_per_second, uint64_t *bytes_read);

/* CFFI-END */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* RWKV_CPU_H */
