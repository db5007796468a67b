/* SPDX-License-Identifier: MIT */
/* err.h — the one error space of Emporium.
 *
 * Every function that can fail returns 0 (or a non-negative value) on success and one of
 * these negative codes on failure. Only src/http/errmap.c turns a code into an HTTP status. */
#ifndef EMPORIUM_ERR_H
#define EMPORIUM_ERR_H

enum {
    ERR_OK = 0,
    ERR_INVALID = -1,         /* bad input: 400 */
    ERR_UNAUTHORIZED = -2,    /* no or bad credentials: 401 */
    ERR_FORBIDDEN = -3,       /* authenticated but not allowed: 403 */
    ERR_NOTFOUND = -4,        /* 404 */
    ERR_CONFLICT = -5,        /* 409 */
    ERR_TOOBIG = -6,          /* a client-controlled size over its cap: 413 */
    ERR_RATELIMITED = -7,     /* 429 */
    ERR_UNAVAILABLE = -8,     /* a dependency is down: 503 */
    ERR_NOMEM = -9,           /* 500 */
    ERR_INTERNAL = -10,       /* a bug or unexpected failure: 500 */
    ERR_PAYMENT = -11,        /* payment declined: 402 */
    ERR_METHOD = -12,         /* method not allowed: 405 */
    ERR_BUSY = -13,           /* database busy / lock timeout (retryable): 503 */
    ERR_HEADERS_TOOBIG = -14, /* 431 */
    ERR_UNSUPPORTED = -15,    /* unsupported media type: 415 */
    ERR_NOT_MODIFIED = -16,   /* not an error for the client: 304 */
};

/* Short machine name, e.g. "not_found". Never NULL. */
const char *err_name(int code);
/* Human text, e.g. "not found". Never NULL. */
const char *err_str(int code);

#endif
