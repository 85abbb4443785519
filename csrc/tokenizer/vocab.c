/* vocab.c: token vocabularies: the parser of RWKV World vocab texts (untrusted input), the byte vocabulary,
 * and lookup by id.
 *
 * World vocab text (rwkv_vocab_v20230424.txt): one token per line,
 *
 *     <id> <literal> <byte length>
 *
 * with fields separated by exactly one space, lines ending in "\n" or "\r\n" (the last line may lack it).
 *   <id>           decimal, 1..RC_VOCAB_MAX_ID, unique (0 is end of text and never in the file)
 *   <literal>      a Python str literal, '...' or "...", whose UTF-8 encoding is the token's bytes; or a
 *                  Python bytes literal, b'...' or b"...", holding the bytes themselves
 *   <byte length>  decimal, equal to the number of bytes the literal decodes to
 * Ids may come in any order and leave gaps.
 *
 * Literals are decoded exactly as Python 3 does (the reference tokenizer eval()s them; we never evaluate):
 *   - characters of a str literal are UTF-8 in the file (strictly valid: no overlong forms, no surrogates);
 *     a bytes literal holds ASCII characters only
 *   - escapes \\ \' \" \a \b \f \n \r \t \v; octal \o, \oo, \ooo; \xHH (in a str literal the code point
 *     U+00HH, so '\x80' is the two bytes C2 80; in a bytes literal the raw byte); in str literals only,
 *     \uXXXX and \UXXXXXXXX
 *   - an unknown escape (e.g. \q, or \u in a bytes literal) keeps its backslash, as Python does
 * Refused, with a message naming the line and column: \N{...} (needs Unicode's name table), escapes of
 * surrogate code points (no UTF-8 form: Python's own encode() would fail too), octal escapes above \377 in
 * bytes literals (Python silently drops their high bit), NUL or CR bytes inside a literal, anything after the
 * length field, empty tokens, and lines, tokens, ids or texts beyond the RC_VOCAB_* limits.
 *
 * Memory is proportional to the text: the token array and the byte buffer grow as lines are parsed, and a
 * decoded literal is never longer than its source (each escape yields at most as many bytes as it spans).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "tokenizer/tokenizer.h"

/* A cursor over one line of the text, its terminator excluded. */
typedef struct {
    const uint8_t *start;   /* first byte of the line */
    const uint8_t *p;       /* next byte to read */
    const uint8_t *end;     /* one past the last byte */
    uint32_t line;          /* 1-based line number */
} rc_line;

/* Fail with RWKV_ERR_FORMAT and "vocab line L, column C: <message>", C being the position of `at`. */
static int rc_vfail(const rc_line *l, const uint8_t *at, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return rc_error(RWKV_ERR_FORMAT, "vocab line %u, column %u: %s", l->line, (unsigned)(at - l->start) + 1, msg);
}

#if defined(__GNUC__)
#define RC_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define RC_PRINTF(f, a)
#endif

/* Fail at the cursor. */
RC_PRINTF(2, 3) static int rc_fail(const rc_line *l, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int st = rc_vfail(l, l->p, fmt, ap);
    va_end(ap);
    return st;
}

/* Fail at an earlier position of the line. */
RC_PRINTF(3, 4) static int rc_fail_at(const rc_line *l, const uint8_t *at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int st = rc_vfail(l, at, fmt, ap);
    va_end(ap);
    return st;
}

/* ---- small lexers ----------------------------------------------------------------------------------- */

/* Length (1..4) of the strictly valid UTF-8 character at p, or 0 if the bytes there are not one. */
static uint32_t rc_utf8_len(const uint8_t *p, const uint8_t *end) {
    uint8_t c = p[0];
    uint32_t n, cp, min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1Fu; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0Fu; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07u; min = 0x10000; }
    else return 0;
    if ((size_t)(end - p) < n) return 0;
    for (uint32_t k = 1; k < n; k++) {
        if ((p[k] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (p[k] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

/* Write code point cp (<= U+10FFFF, not a surrogate) as UTF-8; returns the number of bytes (1..4). */
static uint32_t rc_utf8_put(uint8_t *dst, uint32_t cp) {
    if (cp < 0x80) { dst[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) {
        dst[0] = (uint8_t)(0xC0 | (cp >> 6));
        dst[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (uint8_t)(0xE0 | (cp >> 12));
        dst[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    dst[0] = (uint8_t)(0xF0 | (cp >> 18));
    dst[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    dst[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

static int rc_hex_value(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Exactly n (<= 8) hex digits at p, before end, into *out. Returns 0 if there are fewer. */
static int rc_hex(const uint8_t *p, const uint8_t *end, uint32_t n, uint32_t *out) {
    uint32_t v = 0;
    if ((size_t)(end - p) < n) return 0;
    for (uint32_t k = 0; k < n; k++) {
        int d = rc_hex_value(p[k]);
        if (d < 0) return 0;
        v = (v << 4) | (uint32_t)d;
    }
    *out = v;
    return 1;
}

/* A decimal number at the cursor, at most limit. Returns 0 and advances on success; 1 if there is no digit,
 * 2 if the number is above limit (the cursor then stays put, so messages point at the number). */
static int rc_parse_uint(rc_line *l, uint32_t limit, uint32_t *out) {
    const uint8_t *p = l->p;
    uint64_t v = 0;
    if (p >= l->end || *p < '0' || *p > '9') return 1;
    for (; p < l->end && *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > limit) return 2;
    }
    l->p = p;
    *out = (uint32_t)v;
    return 0;
}

static int rc_skip_space(rc_line *l) {
    if (l->p < l->end && *l->p == ' ') {
        l->p++;
        return 1;
    }
    return 0;
}

/* ---- literals ----------------------------------------------------------------------------------------- */

/* Decode the escape sequence at the cursor (a backslash) of a str (is_bytes = 0) or bytes literal, appending
 * its bytes at dst + *n. Errors point at the backslash. */
static int rc_parse_escape(rc_line *l, int is_bytes, uint8_t *dst, uint32_t *n) {
    const uint8_t *p = l->p;
    uint32_t cp, len;
    if (l->end - p < 2) return rc_fail(l, "unterminated literal (the line ends in a backslash)");
    uint8_t c = p[1];
    switch (c) {
    case '\\': case '\'': case '"': cp = c; len = 2; break;
    case 'a': cp = 7; len = 2; break;
    case 'b': cp = 8; len = 2; break;
    case 'f': cp = 12; len = 2; break;
    case 'n': cp = 10; len = 2; break;
    case 'r': cp = 13; len = 2; break;
    case 't': cp = 9; len = 2; break;
    case 'v': cp = 11; len = 2; break;
    case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7':
        cp = 0;
        for (len = 1; len <= 3 && p + len < l->end && p[len] >= '0' && p[len] <= '7'; len++)
            cp = cp * 8 + (uint32_t)(p[len] - '0');
        if (is_bytes && cp > 0xFF) return rc_fail(l, "octal escape above \\377 in a bytes literal");
        break;
    case 'x':
        if (!rc_hex(p + 2, l->end, 2, &cp)) return rc_fail(l, "bad \\x escape: it needs 2 hex digits");
        len = 4;
        break;
    case 'u': case 'U':
        if (is_bytes) goto unknown;
        len = c == 'u' ? 4 : 8;
        if (!rc_hex(p + 2, l->end, len, &cp))
            return rc_fail(l, "bad \\%c escape: it needs %u hex digits", c, len);
        if (cp > 0x10FFFF) return rc_fail(l, "bad \\U escape: U+%X is beyond U+10FFFF", cp);
        len += 2;
        break;
    case 'N':
        if (is_bytes) goto unknown;
        return rc_fail(l, "\\N{...} escapes are not supported");
    default:
    unknown:
        /* Python keeps an unknown escape as is: the backslash, then the next character read as usual. */
        dst[(*n)++] = '\\';
        l->p = p + 1;
        return RWKV_OK;
    }
    if (is_bytes) {
        dst[(*n)++] = (uint8_t)cp;
    } else {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            return rc_fail(l, "escape of the surrogate U+%04X, which has no UTF-8 form", cp);
        *n += rc_utf8_put(dst + *n, cp);
    }
    l->p = p + len;
    return RWKV_OK;
}

/* Decode the literal at the cursor into dst (room for the rest of the line is enough) and its length. */
static int rc_parse_literal(rc_line *l, uint8_t *dst, uint32_t *len) {
    int is_bytes = 0;
    uint32_t n = 0;
    if (l->p < l->end && *l->p == 'b') {
        is_bytes = 1;
        l->p++;
    }
    if (l->p >= l->end || (*l->p != '\'' && *l->p != '"'))
        return rc_fail(l, "expected a literal: '...', \"...\", b'...' or b\"...\"");
    const uint8_t quote = *l->p++;
    for (;;) {
        if (l->p >= l->end) return rc_fail(l, "unterminated literal (no closing %c)", quote);
        uint8_t c = *l->p;
        if (c == quote) {
            l->p++;
            break;
        }
        if (c == '\\') {
            int st = rc_parse_escape(l, is_bytes, dst, &n);
            if (st) return st;
        } else if (c == 0 || c == '\r') {
            return rc_fail(l, "%s byte inside a literal", c ? "carriage return" : "NUL");
        } else if (is_bytes) {
            if (c >= 0x80) return rc_fail(l, "non-ASCII byte 0x%02X in a bytes literal", c);
            dst[n++] = c;
            l->p++;
        } else {
            uint32_t k = rc_utf8_len(l->p, l->end);
            if (!k) return rc_fail(l, "invalid UTF-8 in a str literal");
            memcpy(dst + n, l->p, k);
            n += k;
            l->p += k;
        }
    }
    *len = n;
    return RWKV_OK;
}

/* ---- lines ------------------------------------------------------------------------------------------- */

/* Parse one line into token *tok, its bytes written at dst. */
static int rc_parse_line(rc_line *l, uint8_t *dst, rc_vocab_token *tok) {
    uint32_t id = 0, n = 0, len_field = 0;
    const uint8_t *id_at = l->p;
    int st = rc_parse_uint(l, RC_VOCAB_MAX_ID, &id);
    if (st == 1) return rc_fail(l, "expected a decimal token id");
    if (st == 2) return rc_fail(l, "token id above the limit %u", RC_VOCAB_MAX_ID);
    if (id == 0) return rc_fail_at(l, id_at, "token id 0 is reserved for end of text; ids start at 1");
    if (!rc_skip_space(l)) return rc_fail(l, "expected one space after the id");

    const uint8_t *literal_at = l->p;
    if ((st = rc_parse_literal(l, dst, &n))) return st;
    if (!rc_skip_space(l)) return rc_fail(l, "expected one space after the literal");

    const uint8_t *field_at = l->p;
    st = rc_parse_uint(l, RC_VOCAB_MAX_LINE, &len_field);
    if (st == 1) return rc_fail(l, "expected the decimal byte length of the token");
    if (st == 2) return rc_fail(l, "the byte length field is too large: the literal has %u bytes", n);
    if (l->p != l->end) return rc_fail(l, "unexpected text after the byte length");
    if (len_field != n)
        return rc_fail_at(l, field_at, "the byte length field says %u but the literal has %u bytes", len_field, n);
    if (n == 0) return rc_fail_at(l, literal_at, "empty token");
    if (n > RC_VOCAB_MAX_TOKEN)
        return rc_fail_at(l, literal_at, "token of %u bytes, above the limit %u", n, RC_VOCAB_MAX_TOKEN);
    tok->id = id;
    tok->len = n;
    tok->line = l->line;
    return RWKV_OK;
}

/* Make room for one more token and line_len more bytes. */
static int rc_vocab_reserve(rc_vocab *v, uint32_t *cap_tokens, uint64_t *cap_bytes, uint64_t line_len) {
    if (v->n_tokens == *cap_tokens) {
        uint32_t cap = *cap_tokens ? *cap_tokens * 2 : 1024;
        rc_vocab_token *t = realloc(v->tokens, (size_t)cap * sizeof *t);
        if (!t) return rc_error(RWKV_ERR_OOM, "out of memory parsing a vocab (%u tokens)", cap);
        v->tokens = t;
        *cap_tokens = cap;
    }
    if (v->n_bytes + line_len > *cap_bytes) {
        uint64_t cap = *cap_bytes * 2;
        if (cap < v->n_bytes + line_len) cap = v->n_bytes + line_len;
        if (cap < 65536) cap = 65536;
        uint8_t *b = realloc(v->bytes, (size_t)cap);
        if (!b) return rc_error(RWKV_ERR_OOM, "out of memory parsing a vocab (%llu bytes)", (unsigned long long)cap);
        v->bytes = b;
        *cap_bytes = cap;
    }
    return RWKV_OK;
}

static int rc_cmp_token_id(const void *a, const void *b) {
    uint32_t x = ((const rc_vocab_token *)a)->id, y = ((const rc_vocab_token *)b)->id;
    return (x > y) - (x < y);
}

/* Sort the tokens by id and refuse duplicates. */
static int rc_vocab_sort(rc_vocab *v) {
    qsort(v->tokens, v->n_tokens, sizeof *v->tokens, rc_cmp_token_id);
    for (uint32_t k = 1; k < v->n_tokens; k++) {
        const rc_vocab_token *a = &v->tokens[k - 1], *b = &v->tokens[k];
        if (a->id == b->id) {
            uint32_t first = a->line < b->line ? a->line : b->line;
            uint32_t second = a->line < b->line ? b->line : a->line;
            return rc_error(RWKV_ERR_FORMAT, "vocab line %u: duplicate token id %u (already on line %u)", second,
                            a->id, first);
        }
    }
    return RWKV_OK;
}

int rc_vocab_parse(const uint8_t *text, uint64_t size, rc_vocab *out) {
    rc_vocab v = {0};
    uint32_t cap_tokens = 0;
    uint64_t cap_bytes = 0;
    memset(out, 0, sizeof *out);
    if (!text && size) return rc_error(RWKV_ERR_ARG, "NULL vocab text");
    if (size == 0) return rc_error(RWKV_ERR_FORMAT, "empty vocab text");
    if (size > RC_VOCAB_MAX_SIZE)
        return rc_error(RWKV_ERR_FORMAT, "vocab text of %llu bytes, above the limit %llu",
                        (unsigned long long)size, (unsigned long long)RC_VOCAB_MAX_SIZE);

    uint64_t pos = 0;
    uint32_t line = 0;
    int st = RWKV_OK;
    while (pos < size && st == RWKV_OK) {
        /* The line: up to '\n', which is looked for no further than a line of the maximum length could go. */
        uint64_t rest = size - pos, scan = rest < RC_VOCAB_MAX_LINE + 2 ? rest : RC_VOCAB_MAX_LINE + 2;
        const uint8_t *nl = memchr(text + pos, '\n', (size_t)scan);
        uint64_t len = nl ? (uint64_t)(nl - (text + pos)) : scan;
        uint64_t next = pos + len + (nl != NULL);
        rc_line l = {text + pos, text + pos, NULL, ++line};
        if (len && text[pos + len - 1] == '\r') len--;
        l.end = l.start + len;
        if (len > RC_VOCAB_MAX_LINE) {
            st = rc_fail(&l, "line longer than %u bytes", RC_VOCAB_MAX_LINE);
        } else if (len == 0) {
            st = rc_fail(&l, "empty line");
        } else if (!(st = rc_vocab_reserve(&v, &cap_tokens, &cap_bytes, len))) {
            rc_vocab_token *tok = &v.tokens[v.n_tokens];
            tok->off = (uint32_t)v.n_bytes;
            if (!(st = rc_parse_line(&l, v.bytes + v.n_bytes, tok))) {
                v.n_bytes += tok->len;
                v.n_tokens++;
            }
        }
        pos = next;
    }
    if (!st) st = rc_vocab_sort(&v);
    if (st) {
        rc_vocab_free(&v);
        return st;
    }
    /* Give back the growth slack (shrinking cannot fail in practice; if it does, the old block stays). */
    rc_vocab_token *tokens = realloc(v.tokens, (size_t)v.n_tokens * sizeof *tokens);
    uint8_t *bytes = realloc(v.bytes, (size_t)v.n_bytes);
    if (tokens) v.tokens = tokens;
    if (bytes) v.bytes = bytes;
    *out = v;
    return RWKV_OK;
}

/* ---- other vocabularies, lookup ---------------------------------------------------------------------- */

int rc_vocab_bytes(rc_vocab *out) {
    memset(out, 0, sizeof *out);
    out->tokens = malloc(256 * sizeof *out->tokens);
    out->bytes = malloc(256);
    if (!out->tokens || !out->bytes) {
        rc_vocab_free(out);
        return rc_error(RWKV_ERR_OOM, "out of memory creating the byte tokenizer");
    }
    for (uint32_t b = 0; b < 256; b++) {
        out->tokens[b] = (rc_vocab_token){.id = b, .len = 1, .off = b, .line = 0};
        out->bytes[b] = (uint8_t)b;
    }
    out->n_tokens = 256;
    out->n_bytes = 256;
    return RWKV_OK;
}

void rc_vocab_free(rc_vocab *v) {
    free(v->tokens);
    free(v->bytes);
    memset(v, 0, sizeof *v);
}

const rc_vocab_token *rc_vocab_find(const rc_vocab *v, int64_t id) {
    if (id < 0 || v->n_tokens == 0) return NULL;
    /* Fast path: contiguous ids, token k has id tokens[0].id + k. */
    uint64_t first = v->tokens[0].id, guess = (uint64_t)id - first;
    if ((uint64_t)id >= first && guess < v->n_tokens && v->tokens[guess].id == (uint64_t)id) return &v->tokens[guess];
    uint32_t lo = 0, hi = v->n_tokens;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v->tokens[mid].id < (uint64_t)id) lo = mid + 1;
        else hi = mid;
    }
    return lo < v->n_tokens && v->tokens[lo].id == (uint64_t)id ? &v->tokens[lo] : NULL;
}
