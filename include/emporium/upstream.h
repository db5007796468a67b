/* SPDX-License-Identifier: MIT */
/* upstream.h — the HTTP client between services (libcurl): one `struct upstream` per called
 * service, shared by every thread of the process.
 *
 * What a call gets, whatever the caller:
 *   - keep-alive: idle curl handles (each with its open connection) are pooled per upstream,
 *     so a call normally reuses a warm connection instead of connecting;
 *   - a deadline: the whole call, retries and back-off included, ends within timeout_ms;
 *   - retries only when repeating cannot do harm: GET/HEAD/PUT/DELETE, a call flagged
 *     UPSTREAM_IDEMPOTENT, or one that carries an Idempotency-Key; and only after a failure
 *     that says nothing was done or can be retried (no connection, 502/503/504, a timeout
 *     of a call that may be repeated);
 *   - a circuit breaker: after `breaker_failures` failures in a row the upstream is open for
 *     `breaker_open_ms` (calls fail at once with ERR_UNAVAILABLE, nothing is sent), then one
 *     probe call is let through (half-open): success closes it, failure opens it again;
 *   - the caller's W3C trace (upstream_trace_set()) as a `traceparent` header with a new span
 *     id, and the internal token as `X-Internal-Token: …` (not Authorization: that header
 *     carries a customer's bearer token, which the HTTP core checks on every route);
 *   - metrics on /metrics: emporium_upstream_requests_total{upstream,result},
 *     emporium_upstream_retries_total, emporium_upstream_breaker_open (0/1),
 *     emporium_upstream_breaker_opened_total, emporium_upstream_request_seconds (histogram).
 *
 * Thread-safety: upstream_call*() from any thread; upstream_new()/upstream_free() by the
 * owner, with no call in flight. */
#ifndef EMPORIUM_UPSTREAM_H
#define EMPORIUM_UPSTREAM_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct upstream;
struct config;

struct upstream_options {
    const char *name;     /* metrics label and logs: "inventory" (copied) */
    const char *base_url; /* "http://127.0.0.1:28504" (copied; no trailing slash needed) */
    const char *token;    /* sent as X-Internal-Token; NULL: none (copied) */
    int timeout_ms;       /* default deadline of a call; 0: 2000 */
    int max_attempts;     /* attempts of a retryable call; 0: 3 */
    int breaker_failures; /* failures in a row that open the breaker; 0: 5 */
    int breaker_open_ms;  /* how long it stays open before a probe; 0: 2000 */
    int pool_size;        /* idle connections kept; 0: 32 */
};

/* Returns 0 or ERR_INVALID (no name or base_url) / ERR_NOMEM. */
int upstream_new(const struct upstream_options *opt, struct upstream **out);
/* NULL is a no-op. */
void upstream_free(struct upstream *u);

enum {
    UPSTREAM_IDEMPOTENT = 1u << 0, /* a POST that the server makes idempotent (by its ids) */
};

/* One call. method "GET"/"POST"/…; path starts with '/'; idem_key: sent as Idempotency-Key
 * (and makes the call retryable), NULL for none; body/len: the JSON request body (NULL: none);
 * timeout_ms 0: the upstream's default. On a response (any status) returns 0 with *status
 * and, when resp is not NULL, the parsed JSON body in *resp (yours to json_decref; NULL when
 * the body is empty or not JSON). Returns ERR_UNAVAILABLE when no response came (connection
 * refused or reset, deadline passed, breaker open), ERR_TOOBIG for a response over 1 MiB,
 * ERR_NOMEM, ERR_INVALID for bad arguments. */
int upstream_call(struct upstream *u, const char *method, const char *path, const char *idem_key,
                  const char *body, size_t len, unsigned flags, int timeout_ms, int *status,
                  json_t **resp);
/* Like upstream_call() with a JSON body (borrowed; NULL: none). */
int upstream_call_json(struct upstream *u, const char *method, const char *path,
                       const char *idem_key, json_t *body, unsigned flags, int *status,
                       json_t **resp);

/* The usual ERR_* of a response status: 2xx 0, 400/422 ERR_INVALID, 401 ERR_UNAUTHORIZED,
 * 402 ERR_PAYMENT, 403 ERR_FORBIDDEN, 404 ERR_NOTFOUND, 409 ERR_CONFLICT, 413 ERR_TOOBIG,
 * 429/5xx ERR_UNAVAILABLE, anything else ERR_INTERNAL. */
int upstream_status_err(int status);

/* Whether the breaker lets calls through now (closed or half-open): for /ready and tests. */
bool upstream_available(struct upstream *u);

/* The trace of the work this thread is doing (the HTTP core sets the request's traceparent
 * before each handler; NULL or malformed clears it). Outbound calls continue it. */
void upstream_trace_set(const char *traceparent);

/* ---- the process's upstreams to other services (the *_remote.c implementations) ---- */

/* The upstream of service `svc` ("inventory") when this process calls it over HTTP: created
 * on first use from its EMPORIUM_<SVC>_URL, EMPORIUM_INTERNAL_TOKEN and
 * EMPORIUM_UPSTREAM_TIMEOUT_MS, and kept for the process. NULL when url is NULL or on
 * ERR_NOMEM. */
struct upstream *upstream_service(const struct config *cfg, const char *svc, const char *url);

/* ---- the server side of internal calls ---- */

/* The header that carries the internal token on calls between services. */
#define UPSTREAM_TOKEN_HEADER "X-Internal-Token"

/* Checks the X-Internal-Token header of an internal route against EMPORIUM_INTERNAL_TOKEN in
 * constant time: 0 when it matches; ERR_UNAUTHORIZED when the header is missing or empty;
 * ERR_FORBIDDEN when the token is wrong or this process has no internal token (internal
 * routes are then closed). */
int upstream_internal_check(const struct config *cfg, const char *token);

#endif
