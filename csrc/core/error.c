/* error.c: the per-thread last-error message, and aligned allocation. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/common.h"

#define RC_ERR_CAP 1024

/* Thread-local, so two threads (and two models) never overwrite each other's message. */
static _Thread_local char rc_err_msg[RC_ERR_CAP];

const char *rwkv_last_error(void) { return rc_err_msg; }

void rc_error_clear(void) { rc_err_msg[0] = 0; }

int rc_error(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rc_err_msg, RC_ERR_CAP, fmt, ap);
    va_end(ap);
    return status;
}

int rc_error_prefix(int status, const char *fmt, ...) {
    char prefix[RC_ERR_CAP];
    char old[RC_ERR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, RC_ERR_CAP, fmt, ap);
    va_end(ap);
    memcpy(old, rc_err_msg, RC_ERR_CAP);
    /* Truncation is acceptable here: the message is cut, never overrun. */
    size_t n = strlen(prefix);
    if (n > RC_ERR_CAP - 3) n = RC_ERR_CAP - 3;
    memcpy(rc_err_msg, prefix, n);
    memcpy(rc_err_msg + n, ": ", 2);
    size_t room = RC_ERR_CAP - n - 3;
    size_t m = strlen(old);
    if (m > room) m = room;
    memcpy(rc_err_msg + n + 2, old, m);
    rc_err_msg[n + 2 + m] = 0;
    return status;
}

const char *rwkv_status_name(int status) {
    switch (status) {
    case RWKV_OK: return "ok";
    case RWKV_ERR_IO: return "io error";
    case RWKV_ERR_FORMAT: return "format error";
    case RWKV_ERR_UNSUPPORTED: return "unsupported";
    case RWKV_ERR_ARG: return "invalid argument";
    case RWKV_ERR_OOM: return "out of memory";
    case RWKV_ERR_TOKEN: return "token out of range";
    case RWKV_ERR_STATE: return "state mismatch";
    case RWKV_ERR_BUFFER: return "buffer too small";
    default: return "unknown status";
    }
}

void *rc_alloc(size_t nbytes) {
    if (nbytes == 0) nbytes = RC_ALIGN;
    if (nbytes > SIZE_MAX - RC_ALIGN) return NULL;
    size_t rounded = (nbytes + RC_ALIGN - 1) / RC_ALIGN * RC_ALIGN;
    void *p = aligned_alloc(RC_ALIGN, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}

void rc_free(void *p) { free(p); }
