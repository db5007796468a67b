/* SPDX-License-Identifier: MIT */
/* http.h — what a service handler sees of an HTTP request, and how it answers.
 *
 * The HTTP core (src/http/) owns the connection, the request and its response. A handler is
 * called once per request, on one of the server's worker threads, with the body fully read
 * (at most 1 MiB) and the middleware already applied (request id, auth, rate limit). It
 * either sets a response with http_reply_*() and returns 0, or returns a negative ERR_* code
 * (after optionally naming the field with http_fail()); the core then writes the one JSON
 * error body. Everything a handler gets from the request is borrowed until it returns.
 *
 * Each request has an arena (emporium/arena.h), http_arena(): memory allocated from it and
 * cleanups registered on it live until the response has been sent (or the client went
 * away), on every path, errors included. Use it for whatever lives as long as the request:
 * strings, scratch structs, a database lease (db_conn_take_in()). */
#ifndef EMPORIUM_HTTP_H
#define EMPORIUM_HTTP_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_req;
struct app;
struct arena;

enum http_role { ROLE_NONE = 0, ROLE_CUSTOMER = 1, ROLE_ADMIN = 2 };
enum http_tier { TIER_STANDARD = 0, TIER_PREMIUM = 1 };

/* The authenticated caller (user_id == 0 when anonymous). */
struct http_auth {
    int64_t user_id;
    enum http_role role;
    enum http_tier tier;
    unsigned char token_hash[32]; /* of the bearer token when one was accepted */
};

typedef int (*http_handler_fn)(struct http_req *req);

/* Route flags */
enum {
    ROUTE_AUTH = 1u << 0,    /* a valid bearer token is required (else 401) */
    ROUTE_ADMIN = 1u << 1,   /* the admin role is required (implies ROUTE_AUTH; else 403) */
    ROUTE_NOLIMIT = 1u << 2, /* exempt from rate limiting (health, metrics) */
    ROUTE_NOLOG = 1u << 3,   /* not in the access log */
    /* The handler does slow or blocking work (argon2id, a payment provider call, a wait for
     * a concurrent duplicate): it runs on the bounded slow-work pool (EMPORIUM_OFFLOAD_THREADS
     * threads, EMPORIUM_OFFLOAD_QUEUE more waiting) instead of a request thread, so other
     * requests are never stuck behind it. Pool full: 503 `overloaded` with Retry-After.
     * Nothing changes for the handler (it may run on any thread; the arena is its own). */
    ROUTE_OFFLOAD = 1u << 4,
    /* The response is user-specific: `Cache-Control: private, no-store`. Also applied to
     * every response to a request carrying a bearer token or an X-Cart-Token, and to every
     * response that sets X-Cart-Token, whatever the route's flags. */
    ROUTE_PRIVATE = 1u << 5,
    /* On top of the normal limits, a tight per-client-address limit shared by every route
     * with this flag (EMPORIUM_RL_AUTH, default 0.2/s with a burst of 10): register, login. */
    ROUTE_LIMIT_STRICT = 1u << 6,
    /* A web page: query parameters it does not know (utm_source=…, the ones the page's own
     * script reads) are ignored instead of refused with 400 like everywhere in the API. */
    ROUTE_PAGE = 1u << 7,
};

struct http_route {
    const char *method;  /* "GET", "POST", … */
    const char *pattern; /* "/api/v1/products/{id}"; a {name} matches one non-empty segment */
    http_handler_fn fn;
    unsigned flags;
};

/* --- the request --- */
const char *http_method(const struct http_req *req);
const char *http_path(const struct http_req *req);
/* Path parameter by name ({id}); NULL if the route has none by that name. */
const char *http_param(const struct http_req *req, const char *name);
/* Query string value (first occurrence, URL-decoded); NULL when absent. */
const char *http_query(const struct http_req *req, const char *name);
/* Request header (case-insensitive); NULL when absent. */
const char *http_header(const struct http_req *req, const char *name);
const char *http_body(const struct http_req *req, size_t *len);
/* Parses the body as a JSON object. On failure returns NULL and sets the error on req (so
 * the handler just returns the code in *err). The object is owned by the request's arena:
 * borrowed until the response completes (json_incref it to keep it longer). */
json_t *http_json_body(struct http_req *req, int *err);
const struct http_auth *http_auth(const struct http_req *req);
const char *http_client_ip(const struct http_req *req);
const char *http_request_id(const struct http_req *req);
/* The application context (databases, config, other services' clients). */
struct app *http_app(const struct http_req *req);
/* The request's arena: freed (its cleanups run, last first) when the response completes. */
struct arena *http_arena(struct http_req *req);

/* --- answering --- */
/* Sends `body` as JSON with `status`; steals the reference. Returns 0 (or ERR_NOMEM). */
int http_reply_json(struct http_req *req, int status, json_t *body);
/* Sends bytes; copy=true copies them, else they must outlive the response (static data). */
int http_reply_raw(struct http_req *req, int status, const char *content_type, const char *data,
                   size_t len, bool copy);
/* 201 Created with `Location: location` (a path such as /api/v1/orders/123, copied) and
 * `body` as JSON (stolen, as with http_reply_json). */
int http_reply_created(struct http_req *req, const char *location, json_t *body);
/* Adds a response header (copied). */
int http_add_header(struct http_req *req, const char *name, const char *value);
/* Records the field at fault and a message for the error response, returns code (so
 * `return http_fail(req, ERR_INVALID, "quantity", "must be 1 to 99");`). Either of field
 * and message may be NULL. The error code name can be overridden with http_fail_code(). */
/* For the internal routes between services: 0 when the request carries the right
 * X-Internal-Token (EMPORIUM_INTERNAL_TOKEN); else the 401/403 reply is made and its code
 * returned. */
int http_internal_guard(struct http_req *req);
int http_fail(struct http_req *req, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Like http_fail() with an explicit machine code ("out_of_stock") and extra JSON members
 * merged into the error object (stolen, may be NULL). */
int http_fail_code(struct http_req *req, int code, const char *machine_code, json_t *extra,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* --- answering later --- */
/* A handler that waits for something done elsewhere (a group commit: db_write_submit) need
 * not hold a request thread meanwhile: http_suspend() parks the request and the handler
 * returns HTTP_SUSPENDED at once; later, any thread calls http_resume() exactly once, and
 * then(req, arg) runs on a request thread and answers as a handler does (http_reply_*() and
 * 0, or a negative ERR_*). The request, its arena and everything borrowed from it stay valid
 * until then() has answered. Returns ERR_UNSUPPORTED when the request cannot be parked (an
 * injected request, or one already on the slow-work pool): answer synchronously then. */
#define HTTP_SUSPENDED 1
typedef int (*http_then_fn)(struct http_req *req, void *arg);
int http_suspend(struct http_req *req, http_then_fn then, void *arg);
void http_resume(struct http_req *req);

/* --- small helpers for handlers --- */
/* Reads the `limit` query parameter: default `def`, must be 1..max, else ERR_INVALID set. */
int http_query_limit(struct http_req *req, int def, int max, int *out);
/* Validates that the JSON object only has members from the NULL-terminated list. */
int http_json_only(struct http_req *req, json_t *obj, const char *const *allowed);
/* Typed member access with errors naming the field. required=false leaves *out unchanged
 * when the member is absent or null. */
int http_json_string(struct http_req *req, json_t *obj, const char *field, bool required,
                     size_t min_len, size_t max_len, const char **out);
int http_json_int(struct http_req *req, json_t *obj, const char *field, bool required, int64_t min,
                  int64_t max, int64_t *out);

#endif
