/* SPDX-License-Identifier: MIT */
/* server.c — libmicrohttpd glue and the middleware chain.
 *
 * Threading: MHD runs an epoll listener per worker in a pool sized from the CPU count; each
 * request lives on one worker thread from its first callback to its completion callback.
 *
 * Keep-alive trap (INFRA.md): a response queued on the *first* access callback makes MHD
 * close the connection, so we only queue on the final callback — except to refuse an
 * over-large declared body early, where closing is what we want.
 *
 * The chain, in order: request id and traceparent → header size limit → body limit →
 * routing (404/405) → authentication → role → rate limit → handler → one error mapping →
 * access log and metrics (in the completion callback, so they see the final status). */
#include "emporium/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
};

static _Atomic long inflight;

int64_t http__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Per-thread xorshift for request and span ids: ids need to be unique, not secret. */
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

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
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

    /* W3C traceparent: keep the caller's trace id, answer with our own span id. */
    const char *tp = http_header(req, "traceparent");
    char trace[33];
    char flags[3] = "01";
    if (tp && strlen(tp) == 55 && tp[2] == '-' && tp[35] == '-' && tp[52] == '-' &&
        is_hex(tp, 2) && is_hex(tp + 3, 32) && is_hex(tp + 36, 16) && is_hex(tp + 53, 2) &&
        strncmp(tp + 3, "00000000000000000000000000000000", 32) != 0) {
        memcpy(trace, tp + 3, 32);
        memcpy(flags, tp + 53, 2);
    } else {
        snprintf(trace, sizeof trace, "%016llx%016llx", (unsigned long long)fast_random(),
                 (unsigned long long)fast_random());
    }
    trace[32] = 0;
    snprintf(req->traceparent, sizeof req->traceparent, "00-%s-%016llx-%s", trace,
             (unsigned long long)fast_random(), flags);
}

static void set_client_ip(struct http_req *req)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    strcpy(req->client_ip, "unknown");
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
                  req->client_ip, sizeof req->client_ip);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
                  req->client_ip, sizeof req->client_ip);
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
            return http_fail(req, ERR_UNAUTHORIZED, "Authorization",
                             "expected a bearer token");
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
        snprintf(key, sizeof key, "%s|u:%lld", req->route->service,
                 (long long)req->auth.user_id);
        bool premium = req->auth.tier == TIER_PREMIUM;
        rate = premium ? cfg->rl_premium_rate : cfg->rl_user_rate;
        burst = premium ? cfg->rl_premium_burst : cfg->rl_user_burst;
    } else {
        snprintf(key, sizeof key, "%s|ip:%s", req->route->service, req->client_ip);
        rate = cfg->rl_anon_rate;
        burst = cfg->rl_anon_burst;
    }
    struct rl_result r;
    int rc = ratelimit_take(app_ratelimit(req->app), key, rate, burst, now_ms(), &r);
    if (rc < 0)
        return 0; /* a limiter failure must not take the shop down */
    char v[32];
    snprintf(v, sizeof v, "%.0f", r.limit);
    http_add_header(req, "RateLimit-Limit", v);
    snprintf(v, sizeof v, "%.0f", r.remaining < 0 ? 0 : r.remaining - 0.4999);
    http_add_header(req, "RateLimit-Remaining", v);
    snprintf(v, sizeof v, "%.0f", r.reset_seconds + 0.4999);
    http_add_header(req, "RateLimit-Reset", v);
    if (r.allowed)
        return 0;
    snprintf(v, sizeof v, "%.0f", r.retry_after < 1 ? 1 : r.retry_after + 0.4999);
    http_add_header(req, "Retry-After", v);
    return http_fail(req, ERR_RATELIMITED, NULL, "rate limit exceeded, retry after %s s", v);
}

static int run_chain(struct http_req *req)
{
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
    if (rc == ERR_METHOD)
        return http_fail(req, rc, NULL, "method %s not allowed here", req->method);
    if ((rc = mw_authenticate(req)) < 0)
        return rc;
    if ((rc = mw_ratelimit(req)) < 0)
        return rc;
    rc = req->route->route.fn(req);
    if (rc == 0 && req->status == 0)
        rc = ERR_INTERNAL;
    return rc;
}

static enum MHD_Result send_response(struct http_req *req)
{
    struct MHD_Response *resp;
    if (req->resp_owned) {
        resp = MHD_create_response_from_buffer(req->resp_len, req->resp_data,
                                               MHD_RESPMEM_MUST_FREE);
        if (resp)
            req->resp_owned = false, req->resp_data = NULL;
    } else {
        resp = MHD_create_response_from_buffer(req->resp_len, req->resp_data ? req->resp_data : (char *)"",
                                               MHD_RESPMEM_PERSISTENT);
    }
    if (!resp)
        return MHD_NO;
    if (req->content_type)
        MHD_add_response_header(resp, "Content-Type", req->content_type);
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    MHD_add_response_header(resp, "traceparent", req->traceparent);
    for (int i = 0; i < req->n_headers; i++)
        MHD_add_response_header(resp, req->headers[i].name, req->headers[i].value);
    enum MHD_Result r = MHD_queue_response(req->conn, (unsigned)req->status, resp);
    MHD_destroy_response(resp);
    return r;
}

static void dispatch(struct http_req *req)
{
    int rc = run_chain(req);
    if (rc < 0)
        http__error_respond(req, rc);
}

void http__dispatch(struct http_req *req) { dispatch(req); }

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
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
        set_client_ip(req);
        /* Refuse a declared over-large body before reading it; MHD then closes. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > srv->cfg->max_body) {
            req->body_too_big = true;
            dispatch(req);
            return send_response(req);
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
    if (req->status) /* already answered (early 413) */
        return MHD_YES;
    dispatch(req);
    return send_response(req);
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

static void write_http_metrics(struct buf *out, void *ctx) { http__metrics_write(out); }

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
    int rc = http__router_build(app);
    if (rc == 0)
        rc = http__metrics_init(http__route_count());
    if (rc < 0) {
        http__router_free();
        free(srv);
        return rc;
    }
    metrics_add_writer(write_http_metrics, NULL);
    unsigned threads = (unsigned)config_worker_threads(cfg);
    /* MHD clears a connection's memory pool between keep-alive requests, so the pool size
     * is paid on every request: 32 KiB holds our 16 KiB header limit with room to spare
     * (64 KiB cost ~12 % of the CPU of a cached product read in memset). */
    srv->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32 * 1024, MHD_OPTION_LISTENING_ADDRESS_REUSE,
        (unsigned)1, MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_END);
    if (!srv->daemon) {
        log_error("cannot listen on %s", cfg->listen);
        metrics_remove_all();
        http__metrics_free();
        http__router_free();
        free(srv);
        return ERR_UNAVAILABLE;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->daemon, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : ntohs(sa.sin_port);
    log_info("listening on %s (port %d, %u worker threads)", cfg->listen, srv->port, threads);
    *out = srv;
    return 0;
}

int http_server_port(const struct http_server *s) { return s->port; }

void http_server_stop(struct http_server *srv)
{
    if (!srv)
        return;
    /* Stop accepting first; in-flight requests finish within the drain window. */
    /* The listen socket is ours once quiesced, but the pool threads remove it from their
     * epoll sets asynchronously: closing it before MHD_stop_daemon() makes that removal fail
     * and MHD panic. So it is closed last. */
    MHD_socket fd = MHD_quiesce_daemon(srv->daemon);
    int64_t deadline = mono_ms() + (int64_t)srv->cfg->drain_seconds * 1000;
    while (inflight > 0 && mono_ms() < deadline) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (inflight > 0)
        log_warn("shutdown: %ld requests still running after %d s", (long)inflight,
                 srv->cfg->drain_seconds);
    MHD_stop_daemon(srv->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    metrics_remove_all();
    http__metrics_free();
    http__router_free();
    free(srv);
}
