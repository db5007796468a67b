/* SPDX-License-Identifier: MIT */
/* inject.h — run one HTTP request through the real middleware, router and handler, in
 * process and without a socket (fuzzers and fault-injection tests).
 *
 * http_inject_open() builds the route table of the app's selected services, exactly as
 * http_server_start() does; at most one of the two may be live in a process at a time (the
 * table is process-wide). A request then runs on the calling thread: request id, body limit,
 * routing (404/405), authentication, role, rate limit, handler, one error mapping — the
 * chain of server.c, with headers and query parameters answered from the strings given here
 * instead of a libmicrohttpd connection. Not covered: the header-size limit and the early
 * 413 on a declared Content-Length (both are libmicrohttpd-side), the access log and the
 * request metrics (written when libmicrohttpd reports a request complete). */
#ifndef EMPORIUM_HTTP_INJECT_H
#define EMPORIUM_HTTP_INJECT_H
#include <stddef.h>

struct app;

struct http_inject_resp {
    int status;
    char *body; /* NUL-terminated (may be empty); free() */
    size_t len;
    char *headers; /* "Name: value\n" lines, Content-Type first; free() */
};

int http_inject_open(struct app *app);
void http_inject_close(void);

/* url: path with an optional "?query" (percent-decoded like libmicrohttpd does); headers:
 * NULL-terminated "Name: value" strings or NULL; body may be NULL when len is 0. Fills *out
 * (free with http_inject_resp_free) and returns 0, or ERR_NOMEM / ERR_INVALID (the request
 * itself could not be built: then *out is zeroed). */
int http_inject_req(struct app *app, const char *method, const char *url,
                    const char *const *headers, const char *body, size_t len,
                    struct http_inject_resp *out);
void http_inject_resp_free(struct http_inject_resp *r);

/* The short form: status and body only (*resp_body yours to free(); may be NULL). */
int http_inject(struct app *app, const char *method, const char *url, const char *const *headers,
                const char *body, size_t len, int *status, char **resp_body);

#endif
