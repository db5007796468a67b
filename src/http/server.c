/* SPDX-License-Identifier: MIT */
/* server.c — libmicrohttpd glue and the middleware chain.
 *
 * Threading: MHD runs an epoll listener per worker in a pool sized from the CPU count; each
 * request lives on one worker thread from its first callback to its completion callback,
 * except the handler of a ROUTE_OFFLOAD route: the connection is suspended, the handler runs
 * on the slow-work pool (offload.c), which resumes the connection when it is done, and the
 * response is sent from the connection's thread again. Request threads never block on slow
 * work, so /health and cached reads keep answering while registrations hash passwords and
 * checkouts wait on the payment provider.
 *
 * Keep-alive trap (INFRA.md): a response queued on the *first* access callback makes MHD
 * close the connection, so we only queue on the final callback — except to refuse an
 * over-large declared body early, where closing is what we want.
 *
 * The chain, in order: request id and traceparent → header size limit → body limit →
 * routing (404/405, OPTIONS and CORS preflight answered here) → authentication → role →
 * rate limit (plus the strict per-address class) → unknown query parameters → handler (here
 * or offloaded) → one error mapping → response headers that depend on the request
 * (Cache-Control: private, WWW-Authenticate, CORS) → access log and metrics (in the
 * completion callback, so they see the final status).
 *
 * The listening socket is made here, without SO_REUSEPORT unless EMPORIUM_REUSE_PORT=on:
 * a second server on a port in use must fail, not share the port with the first.
 *
 * Accepting is ours too: MHD runs without a listen socket and an acceptor thread hands it
 * each accepted connection (MHD_add_connection). Stopping to accept is then a matter of
 * stopping that thread. MHD_quiesce_daemon() cannot be used with epoll and worker threads in
 * libmicrohttpd 0.9.75: it races a worker removing the same listen socket from its epoll set
 * and whichever loses aborts the process ("Failed to remove listen FD from epoll set"). At
 * the connection limit the acceptor stops accepting until a connection closes, so extra
 * clients wait in the kernel's backlog instead of being refused. */
#include "emporium/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "emporium/ratelimit.h"
#include "http_internal.h"

struct http_server {
    struct MHD_Daemon *daemon;
    struct app *app;
    const struct config *cfg;
    int port;
    int listen_fd;
    int wake_fd; /* eventfd: stop, or a connection closed while at the limit */
    pthread_t acceptor;
    bool acceptor_started;
    _Atomic bool stopping;
    _Atomic bool at_limit;
    _Atomic long connections;
    struct config_cidr trusted[CONFIG_MAX_CIDRS]; /* EMPORIUM_TRUSTED_PROXIES */
    int n_trusted;
    struct http_offload *offload;
    _Atomic long offload_rejected;
};

static _Atomic long inflight;
_Atomic bool http__draining;

int64_t http__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Per-thread xorshift for request ids: ids need to be unique, not secret. */
static uint64_t fast_random(void)
{
    static _Thread_local uint64_t s;
    if (!s)
        randombytes_buf(&s, sizeof s), s |= 1;
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

static void set_ids(struct http_req *req)
{
    const char *rid = http_header(req, "X-Request-Id");
    size_t n = rid ? strlen(rid) : 0;
    bool ok = n > 0 && n < sizeof req->request_id;
    for (size_t i = 0; ok && i < n; i++)
        ok = rid[i] > 0x20 && rid[i] < 0x7f && rid[i] != '"' && rid[i] != '\\';
    if (ok)
        memcpy(req->request_id, rid, n + 1);
    else
        snprintf(req->request_id, sizeof req->request_id, "%016llx",
                 (unsigned long long)fast_random());

    /* W3C traceparent: the server span continues the caller's trace (or starts one) and
     * answers with its own span id. Named once the route is known (on_completed). */
    trace_span_begin(&req->span, TRACE_SERVER, req->method, http_header(req, "traceparent"));
    memcpy(req->traceparent, req->span.traceparent, sizeof req->traceparent);
}

/* The client's address: the peer's, or — when the peer is a trusted proxy
 * (EMPORIUM_TRUSTED_PROXIES, i.e. the gateway) — the right-most address of X-Forwarded-For
 * that is not itself a trusted proxy. Entries left of that one were written by the client
 * and prove nothing, so they are never used; a malformed entry stops the walk at the last
 * address we could trust. Rate limits, logs and the access log all see this address. */
static bool parse_ip(const char *s, size_t len, int *family, unsigned char addr[16])
{
    char tmp[64];
    while (len && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= sizeof tmp)
        return false;
    memcpy(tmp, s, len);
    tmp[len] = 0;
    if (inet_pton(AF_INET, tmp, addr) == 1)
        *family = AF_INET;
    else if (inet_pton(AF_INET6, tmp, addr) == 1)
        *family = AF_INET6;
    else
        return false;
    return true;
}

static void set_client_ip(const struct http_server *srv, struct http_req *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    strcpy(req->client_ip, "unknown");
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    int family = sa->sa_family;
    unsigned char addr[16] = {0};
    if (family == AF_INET)
        memcpy(addr, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    else if (family == AF_INET6)
        memcpy(addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    else
        return;
    const char *xff;
    if (srv->n_trusted > 0 && config_cidr_match(srv->trusted, srv->n_trusted, family, addr) &&
        (xff = http_header(req, "X-Forwarded-For")) != NULL) {
        size_t end = strlen(xff);
        for (int hops = 0; hops < 32; hops++) {
            size_t start = end;
            while (start > 0 && xff[start - 1] != ',')
                start--;
            int f;
            unsigned char a[16] = {0};
            if (!parse_ip(xff + start, end - start, &f, a))
                break;
            family = f;
            memcpy(addr, a, sizeof addr);
            if (!config_cidr_match(srv->trusted, srv->n_trusted, f, a) || start == 0)
                break;
            end = start - 1;
        }
    }
    inet_ntop(family, addr, req->client_ip, sizeof req->client_ip);
}

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    size_t *total = cls;
    *total += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

static int mw_authenticate(struct http_req *req)
{
    const char *h = http_header(req, "Authorization");
    unsigned flags = req->route->route.flags;
    if (h) {
        if (strncasecmp(h, "Bearer ", 7) != 0 || !h[7])
            return http_fail(req, ERR_UNAUTHORIZED, "Authorization", "expected a bearer token");
        struct app_identity id;
        int rc = app_authenticate(req->app, h + 7, &id);
        if (rc == ERR_UNAUTHORIZED)
            return http_fail(req, rc, "Authorization", "invalid or expired token");
        if (rc < 0)
            return rc;
        req->auth.user_id = id.user_id;
        req->auth.role = id.admin ? ROLE_ADMIN : ROLE_CUSTOMER;
        req->auth.tier = id.premium ? TIER_PREMIUM : TIER_STANDARD;
        memcpy(req->auth.token_hash, id.token_hash, sizeof id.token_hash);
    }
    if ((flags & (ROUTE_AUTH | ROUTE_ADMIN)) && req->auth.user_id == 0)
        return http_fail(req, ERR_UNAUTHORIZED, "Authorization", "a bearer token is required");
    if ((flags & ROUTE_ADMIN) && req->auth.role != ROLE_ADMIN)
        return http_fail(req, ERR_FORBIDDEN, NULL, "the admin role is required");
    return 0;
}

static int mw_ratelimit(struct http_req *req)
{
    const struct config *cfg = app_config(req->app);
    if (!cfg->rate_limits || (req->route->route.flags & ROUTE_NOLIMIT))
        return 0;
    char key[128];
    double rate, burst;
    if (req->auth.user_id) {
        snprintf(key, sizeof key, "%s|u:%lld", req->route->service, (long long)req->auth.user_id);
        bool premium = req->auth.tier == TIER_PREMIUM;
        rate = premium ? cfg->rl_premium_rate : cfg->rl_user_rate;
        burst = premium ? cfg->rl_premium_burst : cfg->rl_user_burst;
    } else {
        snprintf(key, sizeof key, "%s|ip:%s", req->route->service, req->client_ip);
        rate = cfg->rl_anon_rate;
        burst = cfg->rl_anon_burst;
    }
    struct rl_result r;
    int64_t now = now_ms();
    int rc = ratelimit_take(app_ratelimit(req->app), key, rate, burst, now, &r);
    if (rc < 0)
        return 0; /* a limiter failure must not take the shop down */
    /* The strict class: one bucket per address shared by its routes (register, login),
     * whoever is logged in. The headers describe whichever limit binds. */
    if (r.allowed && (req->route->route.flags & ROUTE_LIMIT_STRICT)) {
        struct rl_result strict;
        snprintf(key, sizeof key, "strict|ip:%s", req->client_ip);
        if (ratelimit_take(app_ratelimit(req->app), key, cfg->rl_strict_rate, cfg->rl_strict_burst,
                           now, &strict) == 0 &&
            (!strict.allowed || strict.remaining < r.remaining))
            r = strict;
    }
    char v[32];
    snprintf(v, sizeof v, "%.0f", r.limit);
    http_add_header(req, "RateLimit-Limit", v);
    /* whole requests left, rounded down: 0.7 left is 0, never "-0" */
    snprintf(v, sizeof v, "%ld", r.remaining < 1 ? 0L : (long)r.remaining);
    http_add_header(req, "RateLimit-Remaining", v);
    snprintf(v, sizeof v, "%.0f", r.reset_seconds + 0.4999);
    http_add_header(req, "RateLimit-Reset", v);
    if (r.allowed)
        return 0;
    snprintf(v, sizeof v, "%.0f", r.retry_after < 1 ? 1 : r.retry_after + 0.4999);
    http_add_header(req, "Retry-After", v);
    return http_fail(req, ERR_RATELIMITED, NULL, "rate limit exceeded, retry after %s s", v);
}

/* Whether origin is in EMPORIUM_CORS_ORIGINS (a comma-separated list of exact origins, or *). */
static bool origin_allowed(const struct config *cfg, const char *origin)
{
    const char *p = cfg->cors_origins;
    if (!p || !origin || !*origin)
        return false;
    size_t olen = strlen(origin);
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && t[-1] == ' ')
            t--;
        size_t n = (size_t)(t - p);
        if ((n == 1 && *p == '*') || (n == olen && n && !memcmp(p, origin, n)))
            return true;
        p = e;
    }
    return false;
}

/* Sets a response header, replacing one of the same name. */
static void header_set(struct http_req *req, const char *name, const char *value)
{
    for (int i = 0; i < req->n_headers; i++)
        if (!strcasecmp(req->headers[i].name, name)) {
            const char *v = arena_strdup(req->arena, value);
            if (v)
                req->headers[i].value = v;
            return;
        }
    http_add_header(req, name, value);
}

static bool header_has(const struct http_req *req, const char *name)
{
    for (int i = 0; i < req->n_headers; i++)
        if (!strcasecmp(req->headers[i].name, name))
            return true;
    return false;
}

static const char cors_allow_headers[] =
    "Authorization, Content-Type, Idempotency-Key, If-None-Match, X-Cart-Token, X-Request-Id, "
    "traceparent";
static const char cors_expose_headers[] =
    "X-Request-Id, X-Cart-Token, Location, ETag, Retry-After, RateLimit-Limit, "
    "RateLimit-Remaining, RateLimit-Reset, traceparent";

/* OPTIONS on a known path: 204 with Allow; a CORS preflight from an allowed origin also
 * gets the Access-Control-* answer (others get none, and the browser refuses). */
static int answer_options(struct http_req *req)
{
    http_add_header(req, "Allow", req->allow);
    const char *origin = http_header(req, "Origin");
    const char *want = http_header(req, "Access-Control-Request-Method");
    if (want && origin_allowed(app_config(req->app), origin)) {
        http_add_header(req, "Access-Control-Allow-Origin", origin);
        http_add_header(req, "Access-Control-Allow-Methods", req->allow);
        http_add_header(req, "Access-Control-Allow-Headers", cors_allow_headers);
        http_add_header(req, "Access-Control-Max-Age", "600");
        http_add_header(req, "Vary",
                        "Origin, Access-Control-Request-Method, "
                        "Access-Control-Request-Headers");
    }
    return http_reply_raw(req, 204, NULL, "", 0, false);
}

struct query_check {
    const struct http_route_entry *route;
    const char *unknown;
};

static enum MHD_Result check_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    struct query_check *q = cls;
    if (http__route_query_allowed(q->route, key))
        return MHD_YES;
    q->unknown = key;
    return MHD_NO;
}

static int mw_query(struct http_req *req)
{
    /* The API refuses parameters it does not know, like unknown body fields; a web page
     * ignores them, as links with utm_source=… and the like expect. */
    if (req->route->route.flags & ROUTE_PAGE)
        return 0;
    struct query_check q = {.route = req->route};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, check_query_arg, &q);
    if (!q.unknown)
        return 0;
    /* Name the parameter when it is plain text (the field goes into a JSON string). */
    bool plain = strlen(q.unknown) < 60;
    for (const char *c = q.unknown; plain && *c; c++)
        plain = *c > 0x20 && *c < 0x7f;
    return http_fail(req, ERR_INVALID, plain && *q.unknown ? q.unknown : "query",
                     "unknown query parameter");
}

/* Everything before the handler. Returns < 0 (error set), 0 (run the handler) or 1 (the
 * request was answered here: OPTIONS). */
static int run_middleware(struct http_req *req)
{
    req->token_given = http_header(req, "Authorization") || http_header(req, "X-Cart-Token");
    if (req->body_too_big)
        return http_fail(req, ERR_TOOBIG, "body", "request body exceeds %zu bytes",
                         app_config(req->app)->max_body);
    size_t hdr_total = 0;
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_header, &hdr_total);
    if (hdr_total > app_config(req->app)->max_header_bytes)
        return http_fail(req, ERR_HEADERS_TOOBIG, NULL, "request headers exceed %zu bytes",
                         app_config(req->app)->max_header_bytes);
    const char *q = strchr(req->url, '?');
    char path[2048];
    size_t plen = q ? (size_t)(q - req->url) : strlen(req->url);
    if (plen >= sizeof path)
        return http_fail(req, ERR_NOTFOUND, NULL, "path too long");
    memcpy(path, req->url, plen);
    path[plen] = 0;
    int rc = http__route(req, path);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, rc, NULL, "no such endpoint");
    bool options = !strcmp(req->method, "OPTIONS");
    if (rc == ERR_METHOD || options) {
        char allow[64];
        http__route_allow(path, allow, sizeof allow);
        req->allow = arena_strdup(req->arena, allow);
        if (!req->allow)
            return ERR_NOMEM;
        if (options)
            return answer_options(req) < 0 ? ERR_NOMEM : 1;
        return http_fail(req, rc, NULL, "method %s not allowed here", req->method);
    }
    /* The request's server span is current while the authenticator runs: a remote one
     * (user_remote.c) continues this request's trace, not whatever the thread ran last. */
    trace_context_set(req->traceparent);
    rc = mw_authenticate(req);
    trace_context_set(NULL);
    if (rc < 0)
        return rc;
    if ((rc = mw_ratelimit(req)) < 0)
        return rc;
    if ((rc = mw_query(req)) < 0)
        return rc;
    return 0;
}

static void run_handler(struct http_req *req)
{
    /* The server span is current: calls to other services and the events written here
     * continue the trace as its children. */
    trace_context_set(req->traceparent);
    int rc = req->route->route.fn(req);
    if (rc == 0 && req->status == 0)
        rc = ERR_INTERNAL;
    if (rc < 0)
        http__error_respond(req, rc);
    trace_context_set(NULL);
}

/* On a slow-work thread. The connection stays suspended (so MHD neither times it out nor
 * completes it) until the resume, after which on_request() sends the response. */
static void offload_run(struct http_req *req)
{
    run_handler(req);
    atomic_store(&req->offload_done, true);
    MHD_resume_connection(req->conn);
}

static void offload_suspend(struct http_req *req)
{
    req->offload = 1;
    MHD_suspend_connection(req->conn);
}

/* Requests parked by http_suspend() and not resumed yet: the server must not stop (MHD
 * panics on a suspended connection) before their resumes came. */
static _Atomic long parked;

int http_suspend(struct http_req *req, http_then_fn then, void *arg)
{
    if (!req->conn || req->offload || !then)
        return ERR_UNSUPPORTED;
    req->offload = 1;
    req->then = then;
    req->then_arg = arg;
    parked++;
    MHD_suspend_connection(req->conn);
    return 0;
}

void http_resume(struct http_req *req)
{
    struct MHD_Connection *conn = req->conn;
    atomic_store(&req->offload_done, true); /* req may be answered and gone after this */
    MHD_resume_connection(conn);
    parked--;
}

/* On the connection's thread once a parked request was resumed: its answer. */
static void run_then(struct http_req *req)
{
    http_then_fn then = req->then;
    req->then = NULL;
    trace_context_set(req->traceparent);
    int rc = then(req, req->then_arg);
    if (rc == 0 && req->status == 0)
        rc = ERR_INTERNAL;
    if (rc < 0)
        http__error_respond(req, rc);
    trace_context_set(NULL);
}

/* Response headers that depend on the request rather than on the handler. */
static void finish_headers(struct http_req *req)
{
    if (req->status == 401 && !header_has(req, "WWW-Authenticate"))
        http_add_header(req, "WWW-Authenticate",
                        http_header(req, "Authorization")
                            ? "Bearer realm=\"emporium\", error=\"invalid_token\""
                            : "Bearer realm=\"emporium\"");
    if ((req->route && (req->route->route.flags & ROUTE_PRIVATE)) || req->token_given ||
        header_has(req, "X-Cart-Token"))
        header_set(req, "Cache-Control", "private, no-store");
    const char *origin = http_header(req, "Origin");
    if (origin && !header_has(req, "Access-Control-Allow-Origin") &&
        origin_allowed(app_config(req->app), origin)) {
        http_add_header(req, "Access-Control-Allow-Origin", origin);
        http_add_header(req, "Access-Control-Expose-Headers", cors_expose_headers);
        http_add_header(req, "Vary", "Origin");
    }
}

static enum MHD_Result send_response(struct http_req *req)
{
    finish_headers(req);
    struct MHD_Response *resp;
    if (req->resp_owned) {
        resp =
            MHD_create_response_from_buffer(req->resp_len, req->resp_data, MHD_RESPMEM_MUST_FREE);
        if (resp)
            req->resp_owned = false, req->resp_data = NULL;
    } else {
        resp = MHD_create_response_from_buffer(
            req->resp_len, req->resp_data ? req->resp_data : (char *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!resp)
        return MHD_NO;
    if (req->content_type)
        MHD_add_response_header(resp, "Content-Type", req->content_type);
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    MHD_add_response_header(resp, "traceparent", req->traceparent);
    for (int i = 0; i < req->n_headers; i++)
        MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value);
    if (http__draining) /* a keep-alive client (a gateway) reconnects elsewhere */
        MHD_add_response_header(resp, "Connection", "close");
    enum MHD_Result r = MHD_queue_response(req->conn, (unsigned)req->status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* Runs the chain and either answers now or hands the handler to the slow-work pool. */
static enum MHD_Result dispatch(struct http_server *srv, struct http_req *req)
{
    int rc = run_middleware(req);
    if (rc == 0 && (req->route->route.flags & ROUTE_OFFLOAD) && srv->offload) {
        rc = http__offload_submit(srv->offload, req, offload_suspend);
        if (rc == 0)
            return MHD_YES; /* suspended: offload_run() resumes it */
        if (rc == ERR_BUSY) {
            srv->offload_rejected++;
            http_add_header(req, "Retry-After", "2");
            rc = http_fail_code(req, ERR_BUSY, "overloaded", NULL,
                                "too many slow requests in progress, retry shortly");
        }
    } else if (rc == 0) {
        run_handler(req);
        if (req->then) /* http_suspend(): answered by run_then() once resumed */
            return MHD_YES;
    }
    if (rc < 0)
        http__error_respond(req, rc);
    return send_response(req);
}

/* The chain without a connection (http_inject, for fuzzers and fault tests): slow routes run
 * right here, and the response stays on req for the caller to take. */
void http__dispatch(struct http_req *req)
{
    int rc = run_middleware(req);
    if (rc == 0)
        run_handler(req);
    else if (rc < 0)
        http__error_respond(req, rc); /* rc 1: answered by the chain itself (OPTIONS) */
    finish_headers(req);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct http_server *srv = cls;
    struct http_req *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        req->arena = arena_new();
        if (!req->arena) {
            free(req);
            return MHD_NO;
        }
        req->start_us = http__now_us();
        req->conn = conn;
        req->app = srv->app;
        req->url = url;
        req->method = method;
        req->body = BUF_INIT(srv->cfg->max_body);
        *con_cls = req;
        inflight++;
        http__metrics_inflight(1);
        set_ids(req);
        set_client_ip(srv, req);
        /* Refuse a declared over-large body before reading it; MHD then closes. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > srv->cfg->max_body) {
            req->body_too_big = true;
            return dispatch(srv, req);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!req->body_too_big) {
            buf_append(&req->body, upload_data, *upload_data_size);
            if (req->body.err) {
                req->body_too_big = true;
                buf_free(&req->body);
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (req->offload) { /* resumed by the slow-work pool (the handler has run) or parked */
        if (!atomic_load(&req->offload_done))
            return MHD_YES;
        if (req->then)
            run_then(req);
        return send_response(req);
    }
    if (req->status) /* already answered (early 413) */
        return MHD_YES;
    return dispatch(srv, req);
}

static void access_log(struct http_req *req, int status, int64_t dur_us)
{
    /* Each variable part is escaped within its own budget (buf_json_escape_max), so the
     * fixed members after it always fit and the line stays valid JSON. */
    char line[2048], ts[32];
    struct buf b = BUF_FIXED(line);
    buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"access\",\"method\":\"",
               time_format(now_ms(), ts));
    buf_json_escape_max(&b, req->method, 32);
    buf_puts(&b, "\",\"path\":\"");
    /* The path without the query string: queries may carry search terms or cursors. */
    const char *q = strchr(req->url, '?');
    char path[300];
    size_t plen = q ? (size_t)(q - req->url) : strlen(req->url);
    if (plen >= sizeof path)
        plen = sizeof path - 1;
    memcpy(path, req->url, plen);
    path[plen] = 0;
    buf_json_escape_max(&b, path, 900);
    buf_printf(&b,
               "\",\"route\":\"%s\",\"status\":%d,\"duration_ms\":%.3f,\"bytes\":%zu,"
               "\"request_id\":\"",
               req->route ? req->route->route.pattern : "", status, (double)dur_us / 1000.0,
               req->resp_len);
    buf_json_escape_max(&b, req->request_id, 400);
    buf_printf(&b, "\",\"trace_id\":\"%.32s\",\"user_id\":\"%lld\",\"ip\":\"%s\"}\n",
               req->traceparent + 3, (long long)req->auth.user_id, req->client_ip);
    if (!b.err)
        log_write_line(b.p, b.len);
}

/* Ends the server span with what the request turned out to be. Probes and scrapes
 * (ROUTE_NOLOG: /health, /ready, /metrics) are not worth a span. */
static void end_server_span(struct http_req *req, int status)
{
    if (!req->span.rec)
        return;
    if (req->route && (req->route->route.flags & ROUTE_NOLOG)) {
        trace_span_discard(&req->span);
        return;
    }
    char name[96], path[128];
    snprintf(name, sizeof name, "%s %s", req->method, req->route ? req->route->route.pattern : "");
    trace_span_name(&req->span, name);
    /* The path without the query string (it may carry search terms or cursors). */
    size_t plen = strcspn(req->url, "?");
    snprintf(path, sizeof path, "%.*s", (int)(plen < 127 ? plen : 127), req->url);
    trace_span_str(&req->span, "http.request.method", req->method);
    trace_span_str(&req->span, "url.path", path);
    if (req->route)
        trace_span_str(&req->span, "http.route", req->route->route.pattern);
    trace_span_int(&req->span, "http.response.status_code", status);
    trace_span_str(&req->span, "client.address", req->client_ip);
    trace_span_str(&req->span, "http.request.id", req->request_id);
    if (status >= 500)
        trace_span_error(&req->span, req->err_code_name[0] ? req->err_code_name : NULL);
    trace_span_end(&req->span);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *srv = cls;
    struct http_req *req = *con_cls;
    if (!req)
        return;
    *con_cls = NULL;
    int64_t dur = http__now_us() - req->start_us;
    int status = req->status ? req->status : 499; /* 499: client went away */
    http__metrics_observe(req->route ? req->route->index : -1, status, dur);
    end_server_span(req, status);
    if (srv->cfg->access_log && !(req->route && (req->route->route.flags & ROUTE_NOLOG)))
        access_log(req, status, dur);
    if (req->resp_owned)
        free(req->resp_data);
    arena_free(req->arena);
    json_decref(req->err_extra);
    buf_free(&req->body);
    free(req);
    http__metrics_inflight(-1);
    inflight--;
}

static int parse_listen(const char *listen, struct sockaddr_in *sa)
{
    const char *colon = strrchr(listen, ':');
    if (!colon)
        return ERR_INVALID;
    char host[64];
    size_t hl = (size_t)(colon - listen);
    if (hl >= sizeof host)
        return ERR_INVALID;
    memcpy(host, listen, hl);
    host[hl] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return ERR_INVALID;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (!strcmp(host, "localhost"))
        strcpy(host, "127.0.0.1");
    if (hl == 0 || !strcmp(host, "*"))
        strcpy(host, "0.0.0.0");
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return ERR_INVALID;
    return 0;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    log_warn("http: %s", msg);
}

static void write_http_metrics(struct buf *out, void *ctx)
{
    struct http_server *srv = ctx;
    http__metrics_write(out);
    int running = 0, waiting = 0;
    http__offload_stats(srv->offload, &running, &waiting);
    buf_printf(out,
               "# HELP emporium_offload_running Handlers running on the slow-work pool.\n"
               "# TYPE emporium_offload_running gauge\nemporium_offload_running %d\n"
               "# HELP emporium_offload_waiting Slow requests waiting for a slow-work thread.\n"
               "# TYPE emporium_offload_waiting gauge\nemporium_offload_waiting %d\n"
               "# HELP emporium_offload_rejected_total Slow requests refused with 503 because "
               "the pool and its queue were full.\n"
               "# TYPE emporium_offload_rejected_total counter\n"
               "emporium_offload_rejected_total %ld\n"
               "# HELP emporium_http_connections_open Client connections open (at most "
               "EMPORIUM_MAX_CONNECTIONS).\n"
               "# TYPE emporium_http_connections_open gauge\n"
               "emporium_http_connections_open %ld\n",
               running, waiting, (long)srv->offload_rejected, (long)srv->connections);
}

/* The listening socket. SO_REUSEADDR only lets a restarted server bind while old connections
 * linger in TIME_WAIT; it does not let two servers share the port. SO_REUSEPORT would (the
 * kernel then splits connections between them), so it is set only when the operator asks
 * for it to hand a port over from an old process to a new one without downtime. */
static int open_listener(const struct config *cfg, const struct sockaddr_in *sa, int *out)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        log_error("cannot listen on %s: %s", cfg->listen, strerror(errno));
        return ERR_UNAVAILABLE;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (cfg->reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        log_warn("EMPORIUM_REUSE_PORT: SO_REUSEPORT not available: %s", strerror(errno));
    if (bind(fd, (const struct sockaddr *)sa, sizeof *sa) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        if (e == EADDRINUSE)
            log_error("cannot listen on %s: address already in use (another process serves "
                      "this port; stop it or choose another with --listen)",
                      cfg->listen);
        else
            log_error("cannot listen on %s: %s", cfg->listen, strerror(e));
        close(fd);
        return ERR_UNAVAILABLE;
    }
    *out = fd;
    return 0;
}

static void wake_acceptor(struct http_server *srv)
{
    uint64_t one = 1;
    ssize_t n = write(srv->wake_fd, &one, sizeof one);
    (void)n; /* an eventfd at its maximum already wakes the reader */
}

/* Open connections are counted by the acceptor when it hands one to MHD and uncounted here
 * when MHD closes it, so connections queued for a worker but not yet started count too and a
 * burst of accepts cannot overshoot the limit. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)conn;
    (void)socket_ctx;
    struct http_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        srv->connections--;
        if (srv->at_limit)
            wake_acceptor(srv);
    }
}

/* Accepts until told to stop; see the comment at the top. */
static void *acceptor_main(void *arg)
{
    struct http_server *srv = arg;
    long limit = srv->cfg->max_connections;
    while (!srv->stopping) {
        long open = srv->connections;
        srv->at_limit = open >= limit;
        struct pollfd p[2] = {{.fd = srv->wake_fd, .events = POLLIN},
                              {.fd = srv->listen_fd, .events = POLLIN}};
        /* At the limit only a close (or stop) can wake us; re-check at least every second. */
        int n = poll(p, srv->at_limit ? 1 : 2, 1000);
        if (n < 0 && errno != EINTR) {
            log_error("http: poll in acceptor: %s", strerror(errno));
            break;
        }
        if (n <= 0)
            continue;
        if (p[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(srv->wake_fd, &v, sizeof v);
            (void)r;
        }
        if (srv->at_limit || !(p[1].revents & POLLIN))
            continue;
        for (long room = limit - open; room > 0 && !srv->stopping; room--) {
            struct sockaddr_storage addr;
            socklen_t len = sizeof addr;
            int fd = accept4(srv->listen_fd, (struct sockaddr *)&addr, &len,
                             SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                    log_warn("http: cannot accept: %s", strerror(errno));
                    struct timespec ts = {0, 100 * 1000 * 1000};
                    nanosleep(&ts, NULL);
                }
                break; /* EAGAIN: all taken; ECONNABORTED etc.: look again */
            }
            /* MHD owns (and closes) the socket from here, whatever it answers. */
            srv->connections++;
            if (MHD_add_connection(srv->daemon, fd, (struct sockaddr *)&addr, len) != MHD_YES) {
                srv->connections--;
                log_warn("http: a connection could not be handed to a worker");
            }
        }
    }
    return NULL;
}

int http_server_start(struct http_server **out, struct app *app)
{
    const struct config *cfg = app_config(app);
    struct sockaddr_in sa;
    if (parse_listen(cfg->listen, &sa) < 0) {
        log_error("invalid listen address %s (expected ADDR:PORT)", cfg->listen);
        return ERR_INVALID;
    }
    struct http_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return ERR_NOMEM;
    srv->app = app;
    srv->cfg = cfg;
    srv->listen_fd = -1;
    if (cfg->trusted_proxies) /* validated by config.c */
        srv->n_trusted = config_parse_cidrs(cfg->trusted_proxies, srv->trusted, CONFIG_MAX_CIDRS);
    if (srv->n_trusted < 0)
        srv->n_trusted = 0;
    srv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (srv->wake_fd < 0) {
        log_error("http: eventfd: %s", strerror(errno));
        free(srv);
        return ERR_UNAVAILABLE;
    }
    int rc = open_listener(cfg, &sa, &srv->listen_fd);
    if (rc == 0)
        rc = http__router_build(app);
    if (rc == 0)
        rc = http__metrics_init(http__route_count());
    if (rc == 0)
        rc = http__offload_new(&srv->offload, config_offload_threads(cfg), cfg->offload_queue,
                               offload_run);
    if (rc < 0) {
        http__metrics_free();
        http__router_free();
        if (srv->listen_fd >= 0)
            close(srv->listen_fd);
        close(srv->wake_fd);
        free(srv);
        return rc;
    }
    metrics_add_writer(write_http_metrics, srv);
    unsigned threads = (unsigned)config_worker_threads(cfg);
    /* MHD clears a connection's memory pool between keep-alive requests, so the pool size
     * is paid on every request: 32 KiB holds our 16 KiB header limit with room to spare
     * (64 KiB cost ~12 % of the CPU of a cached product read in memset). */
    srv->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG |
            MHD_ALLOW_SUSPEND_RESUME | MHD_USE_NO_LISTEN_SOCKET,
        0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
        /* The acceptor enforces EMPORIUM_MAX_CONNECTIONS; MHD's own limit is only a backstop,
         * with room for the moment between a close being reported to us and MHD counting it
         * (at exactly our limit MHD would refuse — and close — a connection we just took). */
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections * 2 + 64,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)32 * 1024, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        log_error("cannot listen on %s", cfg->listen);
        metrics_remove_all();
        http__offload_free(srv->offload);
        http__metrics_free();
        http__router_free();
        close(srv->listen_fd);
        close(srv->wake_fd);
        free(srv);
        return ERR_UNAVAILABLE;
    }
    struct sockaddr_in bound;
    socklen_t blen = sizeof bound;
    if (getsockname(srv->listen_fd, (struct sockaddr *)&bound, &blen) == 0)
        srv->port = ntohs(bound.sin_port);
    else
        srv->port = ntohs(sa.sin_port);
    if (pthread_create(&srv->acceptor, NULL, acceptor_main, srv) != 0) {
        log_error("http: cannot start the acceptor thread");
        MHD_stop_daemon(srv->daemon);
        metrics_remove_all();
        http__offload_free(srv->offload);
        http__metrics_free();
        http__router_free();
        close(srv->listen_fd);
        close(srv->wake_fd);
        free(srv);
        return ERR_UNAVAILABLE;
    }
    srv->acceptor_started = true;
    log_info("listening on %s (port %d, %u worker threads, %d slow-work threads)", cfg->listen,
             srv->port, threads, config_offload_threads(cfg));
    *out = srv;
    return 0;
}

int http_server_port(const struct http_server *s) { return s->port; }

void http_server_stop(struct http_server *srv)
{
    if (!srv)
        return;
    /* First /ready turns 503 while we still serve, for EMPORIUM_DRAIN_DELAY_SECONDS, so a
     * balancer that polls it stops sending before the listener closes. Then stop accepting
     * (the acceptor is ours: see the top of the file); in-flight requests finish within the
     * drain window. */
    http__draining = true;
    for (int64_t until = mono_ms() + (int64_t)srv->cfg->drain_delay_seconds * 1000;
         mono_ms() < until;) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    srv->stopping = true;
    wake_acceptor(srv);
    if (srv->acceptor_started)
        pthread_join(srv->acceptor, NULL);
    close(srv->listen_fd);
    int64_t deadline = mono_ms() + (int64_t)srv->cfg->drain_seconds * 1000;
    while (inflight > 0 && mono_ms() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (inflight > 0)
        log_warn("shutdown: %ld requests still running after %d s", (long)inflight,
                 srv->cfg->drain_seconds);
    /* Slow handlers still running finish and resume their connections before MHD stops
     * (it must not be stopped with connections suspended). */
    http__offload_free(srv->offload);
    /* Parked requests wait for work that is still running (a group commit): their resumes
     * come without anything new arriving. */
    while (parked > 0) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    MHD_stop_daemon(srv->daemon);
    close(srv->wake_fd);
    metrics_remove_all();
    http__metrics_free();
    http__router_free();
    free(srv);
}
