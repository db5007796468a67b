/* SPDX-License-Identifier: MIT */
/* upstream.c — the HTTP client between services (upstream.h) on libcurl's easy interface.
 *
 * Keep-alive: each curl easy handle keeps its own connection cache, so a handle returned to
 * the upstream's pool keeps its open connection for the next call; a call takes a pooled
 * handle (or makes one when all are busy) and gives it back, resetting only the per-call
 * options. The pool holds at most pool_size idle handles; extra ones are cleaned up.
 *
 * The breaker counts failures in a row (no response, or 5xx/429 answered by an overloaded
 * upstream). State changes are under the upstream's mutex, which no call holds while it
 * waits on the network. Half-open lets exactly one probe through at a time: the others fail
 * at once as if it were open.
 *
 * Retries back off 25 ms, 50 ms, … with jitter, and never past the call's deadline: the
 * deadline bounds the whole call, so no caller ever waits longer than timeout_ms. */
#include "emporium/upstream.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emporium/buf.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "emporium/trace.h"

#define RESP_MAX (1024 * 1024)
#define N_BUCKETS 10
static const double bucket_le[N_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                            0.025,  0.05,  0.1,    0.5,   2.5};

enum result { R_OK, R_HTTP_ERROR, R_UNAVAILABLE, R_TIMEOUT, R_REJECTED, N_RESULTS };
static const char *const result_names[N_RESULTS] = {"ok", "http_error", "unavailable", "timeout",
                                                    "rejected"};
enum breaker { B_CLOSED, B_OPEN, B_HALF_OPEN };

struct upstream {
    char *name, *base_url, *auth_header;
    int timeout_ms, max_attempts, breaker_failures, breaker_open_ms, pool_size;

    pthread_mutex_t mu;
    CURL **idle; /* pool_size slots */
    int n_idle;
    enum breaker state;
    int fails_in_row;
    int64_t open_until_ms;
    bool probing; /* half-open: the one probe is out */

    /* metrics */
    atomic_ulong results[N_RESULTS];
    atomic_ulong retries, opened;
    atomic_ulong buckets[N_BUCKETS + 1];
    atomic_ulong sum_us;

    struct upstream *next; /* the process's list, for /metrics */
};

/* ---------------------------------------------------------------- process-wide state */

static pthread_mutex_t list_mu = PTHREAD_MUTEX_INITIALIZER;
static struct upstream *list_head;
static bool writer_added;
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_metrics(struct buf *out, void *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&list_mu);
    if (!list_head) {
        pthread_mutex_unlock(&list_mu);
        return;
    }
    buf_printf(out, "# HELP emporium_upstream_requests_total Calls to other services by "
                    "result (ok, http_error = 5xx/429 answer, unavailable, timeout, rejected "
                    "= breaker open).\n# TYPE emporium_upstream_requests_total counter\n");
    for (struct upstream *u = list_head; u; u = u->next)
        for (int r = 0; r < N_RESULTS; r++)
            buf_printf(out, "emporium_upstream_requests_total{upstream=\"%s\",result=\"%s\"} %lu\n",
                       u->name, result_names[r], atomic_load(&u->results[r]));
    buf_printf(out, "# HELP emporium_upstream_retries_total Repeated attempts of retryable "
                    "calls.\n# TYPE emporium_upstream_retries_total counter\n");
    for (struct upstream *u = list_head; u; u = u->next)
        buf_printf(out, "emporium_upstream_retries_total{upstream=\"%s\"} %lu\n", u->name,
                   atomic_load(&u->retries));
    buf_printf(out, "# HELP emporium_upstream_breaker_opened_total Times the circuit breaker "
                    "opened.\n# TYPE emporium_upstream_breaker_opened_total counter\n");
    for (struct upstream *u = list_head; u; u = u->next)
        buf_printf(out, "emporium_upstream_breaker_opened_total{upstream=\"%s\"} %lu\n", u->name,
                   atomic_load(&u->opened));
    buf_printf(out, "# HELP emporium_upstream_breaker_open Whether the circuit breaker is open "
                    "(1) or lets calls through (0).\n# TYPE emporium_upstream_breaker_open "
                    "gauge\n");
    for (struct upstream *u = list_head; u; u = u->next) {
        pthread_mutex_lock(&u->mu);
        int open = u->state == B_OPEN;
        pthread_mutex_unlock(&u->mu);
        buf_printf(out, "emporium_upstream_breaker_open{upstream=\"%s\"} %d\n", u->name, open);
    }
    buf_printf(out, "# HELP emporium_upstream_request_seconds Duration of calls to other "
                    "services, retries included.\n# TYPE emporium_upstream_request_seconds "
                    "histogram\n");
    for (struct upstream *u = list_head; u; u = u->next) {
        unsigned long cum = 0;
        for (int b = 0; b < N_BUCKETS; b++) {
            cum += atomic_load(&u->buckets[b]);
            buf_printf(out,
                       "emporium_upstream_request_seconds_bucket{upstream=\"%s\",le=\"%g\"} %lu\n",
                       u->name, bucket_le[b], cum);
        }
        cum += atomic_load(&u->buckets[N_BUCKETS]);
        buf_printf(out,
                   "emporium_upstream_request_seconds_bucket{upstream=\"%s\",le=\"+Inf\"} %lu\n"
                   "emporium_upstream_request_seconds_sum{upstream=\"%s\"} %.6f\n"
                   "emporium_upstream_request_seconds_count{upstream=\"%s\"} %lu\n",
                   u->name, cum, u->name, (double)atomic_load(&u->sum_us) / 1e6, u->name, cum);
    }
    pthread_mutex_unlock(&list_mu);
}

/* ---------------------------------------------------------------- lifecycle */

int upstream_new(const struct upstream_options *opt, struct upstream **out)
{
    *out = NULL;
    if (!opt || !opt->name || !*opt->name || !opt->base_url || !*opt->base_url)
        return ERR_INVALID;
    pthread_once(&curl_once, curl_init_once);
    struct upstream *u = calloc(1, sizeof *u);
    if (!u)
        return ERR_NOMEM;
    u->timeout_ms = opt->timeout_ms > 0 ? opt->timeout_ms : 2000;
    u->max_attempts = opt->max_attempts > 0 ? opt->max_attempts : 3;
    u->breaker_failures = opt->breaker_failures > 0 ? opt->breaker_failures : 5;
    u->breaker_open_ms = opt->breaker_open_ms > 0 ? opt->breaker_open_ms : 2000;
    u->pool_size = opt->pool_size > 0 ? opt->pool_size : 32;
    u->name = strdup(opt->name);
    size_t bl = strlen(opt->base_url);
    while (bl > 0 && opt->base_url[bl - 1] == '/')
        bl--;
    u->base_url = strndup(opt->base_url, bl);
    u->idle = calloc((size_t)u->pool_size, sizeof *u->idle);
    if (opt->token) {
        size_t n = strlen(opt->token) + 32;
        if ((u->auth_header = malloc(n)))
            snprintf(u->auth_header, n, UPSTREAM_TOKEN_HEADER ": %s", opt->token);
    }
    if (!u->name || !u->base_url || !u->idle || (opt->token && !u->auth_header)) {
        free(u->name);
        free(u->base_url);
        free(u->idle);
        free(u->auth_header);
        free(u);
        return ERR_NOMEM;
    }
    pthread_mutex_init(&u->mu, NULL);
    pthread_mutex_lock(&list_mu);
    int rc = 0;
    if (!writer_added && (rc = metrics_add_writer(write_metrics, NULL)) == 0)
        writer_added = true;
    u->next = list_head;
    list_head = u;
    pthread_mutex_unlock(&list_mu);
    *out = u;
    return 0;
}

void upstream_free(struct upstream *u)
{
    if (!u)
        return;
    pthread_mutex_lock(&list_mu);
    for (struct upstream **p = &list_head; *p; p = &(*p)->next)
        if (*p == u) {
            *p = u->next;
            break;
        }
    pthread_mutex_unlock(&list_mu);
    for (int i = 0; i < u->n_idle; i++)
        curl_easy_cleanup(u->idle[i]);
    pthread_mutex_destroy(&u->mu);
    free(u->idle);
    if (u->auth_header)
        sodium_memzero(u->auth_header, strlen(u->auth_header));
    free(u->auth_header);
    free(u->name);
    free(u->base_url);
    free(u);
}

/* ---------------------------------------------------------------- breaker */

/* Whether a call may go out now; sets *probe when it is the half-open probe. */
static bool breaker_admit(struct upstream *u, bool *probe)
{
    *probe = false;
    pthread_mutex_lock(&u->mu);
    bool ok = true;
    if (u->state == B_OPEN && mono_ms() >= u->open_until_ms) {
        u->state = B_HALF_OPEN;
        u->probing = false;
    }
    if (u->state == B_OPEN) {
        ok = false;
    } else if (u->state == B_HALF_OPEN) {
        ok = !u->probing;
        if (ok)
            u->probing = *probe = true;
    }
    pthread_mutex_unlock(&u->mu);
    return ok;
}

static void breaker_record(struct upstream *u, bool success, bool probe)
{
    pthread_mutex_lock(&u->mu);
    if (probe)
        u->probing = false;
    if (success) {
        u->fails_in_row = 0;
        u->state = B_CLOSED;
    } else {
        u->fails_in_row++;
        if ((u->state == B_HALF_OPEN && probe) ||
            (u->state == B_CLOSED && u->fails_in_row >= u->breaker_failures)) {
            u->state = B_OPEN;
            u->open_until_ms = mono_ms() + u->breaker_open_ms;
            atomic_fetch_add(&u->opened, 1);
            log_warn("upstream %s: circuit breaker open for %d ms after %d failure(s)", u->name,
                     u->breaker_open_ms, u->fails_in_row);
        }
    }
    pthread_mutex_unlock(&u->mu);
}

bool upstream_available(struct upstream *u)
{
    pthread_mutex_lock(&u->mu);
    bool ok = u->state != B_OPEN || mono_ms() >= u->open_until_ms;
    pthread_mutex_unlock(&u->mu);
    return ok;
}

/* ---------------------------------------------------------------- trace context */

/* The thread's trace context is trace.c's: this name stays for the callers. */
void upstream_trace_set(const char *tp) { trace_context_set(tp); }

/* ---------------------------------------------------------------- one call */

struct sink {
    struct buf b;
    bool toobig;
};

static size_t on_data(char *p, size_t size, size_t n, void *vctx)
{
    struct sink *s = vctx;
    size_t len = size * n;
    if (s->b.len + len > RESP_MAX) {
        s->toobig = true;
        return 0;
    }
    buf_append(&s->b, p, len);
    return s->b.err ? 0 : len;
}

static CURL *handle_take(struct upstream *u)
{
    CURL *h = NULL;
    pthread_mutex_lock(&u->mu);
    if (u->n_idle > 0)
        h = u->idle[--u->n_idle];
    pthread_mutex_unlock(&u->mu);
    return h ? h : curl_easy_init();
}

static void handle_give(struct upstream *u, CURL *h)
{
    pthread_mutex_lock(&u->mu);
    if (u->n_idle < u->pool_size) {
        u->idle[u->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&u->mu);
    if (h)
        curl_easy_cleanup(h);
}

static bool method_idempotent(const char *m)
{
    return !strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "PUT") || !strcmp(m, "DELETE");
}

static void observe(struct upstream *u, enum result r, int64_t start_us_mono)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 - start_us_mono;
    if (us < 0)
        us = 0;
    atomic_fetch_add(&u->results[r], 1);
    atomic_fetch_add(&u->sum_us, (unsigned long)us);
    double s = (double)us / 1e6;
    int b = 0;
    while (b < N_BUCKETS && s > bucket_le[b])
        b++;
    atomic_fetch_add(&u->buckets[b], 1);
}

/* One attempt: 0 with *status on a response, else ERR_UNAVAILABLE (*timed_out when the
 * deadline ended it) / ERR_TOOBIG / ERR_NOMEM. */
static int attempt(struct upstream *u, CURL *h, const char *url, const char *method,
                   struct curl_slist *hdrs, const char *body, size_t len, long timeout_ms,
                   int *status, struct sink *sink, bool *timed_out)
{
    *timed_out = false;
    curl_easy_reset(h); /* keeps the connection cache: the keep-alive survives */
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 1000 ? timeout_ms : 1000L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (!strcmp(method, "GET")) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
        if (!strcmp(method, "POST") || body) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)(body ? len : 0));
        }
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    sink->b.len = 0;
    sink->toobig = false;
    CURLcode cc = curl_easy_perform(h);
    if (sink->toobig)
        return ERR_TOOBIG;
    if (cc == CURLE_OUT_OF_MEMORY)
        return ERR_NOMEM;
    if (cc != CURLE_OK) {
        *timed_out = cc == CURLE_OPERATION_TIMEDOUT;
        log_debug("upstream %s: %s %s: %s", u->name, method, url, curl_easy_strerror(cc));
        return ERR_UNAVAILABLE;
    }
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    *status = (int)code;
    return 0;
}

static bool overloaded(int status)
{
    return status == 429 || status == 502 || status == 503 || status == 504;
}

int upstream_call(struct upstream *u, const char *method, const char *path, const char *idem_key,
                  const char *body, size_t len, unsigned flags, int timeout_ms, int *status,
                  json_t **resp)
{
    if (resp)
        *resp = NULL;
    *status = 0;
    if (!u || !method || !path || path[0] != '/' || strlen(path) > 1024 ||
        (idem_key && (strlen(idem_key) == 0 || strlen(idem_key) > 200)))
        return ERR_INVALID;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t start_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    int64_t deadline = mono_ms() + (timeout_ms > 0 ? timeout_ms : u->timeout_ms);
    bool retryable = method_idempotent(method) || (flags & UPSTREAM_IDEMPOTENT) || idem_key;

    char url[1400];
    snprintf(url, sizeof url, "%s%s", u->base_url, path);
    /* A client span under the thread's current one (the request's server span): the
     * traceparent sent carries its id, so the callee's server span is its child. */
    struct trace_span span;
    char tp[80], idem[240];
    trace_span_begin(&span, TRACE_CLIENT, method, trace_context());
    snprintf(tp, sizeof tp, "traceparent: %s", span.traceparent);
    struct curl_slist *hdrs = NULL, *t;
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    if (hdrs && (t = curl_slist_append(hdrs, tp)))
        hdrs = t;
    if (body && (t = curl_slist_append(hdrs, "Content-Type: application/json")))
        hdrs = t;
    if (u->auth_header && (t = curl_slist_append(hdrs, u->auth_header)))
        hdrs = t;
    if (idem_key) {
        snprintf(idem, sizeof idem, "Idempotency-Key: %s", idem_key);
        if ((t = curl_slist_append(hdrs, idem)))
            hdrs = t;
    }
    if (!hdrs) {
        trace_span_discard(&span);
        return ERR_NOMEM;
    }

    struct sink sink;
    sink.b = BUF_INIT(RESP_MAX);
    int rc = ERR_UNAVAILABLE;
    enum result res = R_UNAVAILABLE;
    for (int n = 0; n < u->max_attempts; n++) {
        int64_t left = deadline - mono_ms();
        if (left <= 0) {
            rc = ERR_UNAVAILABLE;
            res = R_TIMEOUT;
            break;
        }
        bool probe;
        if (!breaker_admit(u, &probe)) {
            rc = ERR_UNAVAILABLE;
            res = R_REJECTED;
            break;
        }
        CURL *h = handle_take(u);
        if (!h) {
            if (probe)
                breaker_record(u, true, true); /* not the upstream's fault */
            rc = ERR_NOMEM;
            break;
        }
        bool timed_out;
        rc = attempt(u, h, url, method, hdrs, body, len, (long)left, status, &sink, &timed_out);
        handle_give(u, h);
        bool failed = rc == ERR_UNAVAILABLE || (rc == 0 && overloaded(*status));
        breaker_record(u, !failed, probe);
        if (!failed) {
            res = rc == 0 ? (*status >= 500 ? R_HTTP_ERROR : R_OK) : R_HTTP_ERROR;
            break;
        }
        res = rc == 0 ? R_HTTP_ERROR : timed_out ? R_TIMEOUT : R_UNAVAILABLE;
        if (!retryable || n + 1 == u->max_attempts)
            break;
        /* back off 25 ms, 50 ms, … plus up to as much again, within the deadline */
        int64_t wait = (25LL << n) + (int64_t)randombytes_uniform((uint32_t)(25u << n));
        if (mono_ms() + wait >= deadline)
            break;
        atomic_fetch_add(&u->retries, 1);
        struct timespec sl = {(time_t)(wait / 1000), (long)(wait % 1000) * 1000000L};
        nanosleep(&sl, NULL);
    }
    observe(u, res, start_us);
    if (span.rec) {
        char name[160];
        size_t plen = strcspn(path, "?");
        snprintf(name, sizeof name, "%s %s", method, u->name);
        trace_span_name(&span, name);
        trace_span_str(&span, "http.request.method", method);
        snprintf(name, sizeof name, "%.*s%.*s", 60, u->base_url, (int)(plen < 96 ? plen : 96),
                 path);
        trace_span_str(&span, "url.full", name);
        trace_span_str(&span, "peer.service", u->name);
        trace_span_str(&span, "emporium.upstream.result", result_names[res]);
        if (*status)
            trace_span_int(&span, "http.response.status_code", *status);
        if (res != R_OK)
            trace_span_error(&span, result_names[res]);
    }
    trace_span_end(&span);
    curl_slist_free_all(hdrs);
    if (rc == 0 && resp && sink.b.len > 0)
        *resp = json_loadb(sink.b.p, sink.b.len, 0, NULL);
    buf_free(&sink.b);
    return rc;
}

int upstream_call_json(struct upstream *u, const char *method, const char *path,
                       const char *idem_key, json_t *body, unsigned flags, int *status,
                       json_t **resp)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body && !text)
        return ERR_NOMEM;
    int rc = upstream_call(u, method, path, idem_key, text, text ? strlen(text) : 0, flags, 0,
                           status, resp);
    free(text);
    return rc;
}

int upstream_status_err(int status)
{
    if (status >= 200 && status < 300)
        return 0;
    switch (status) {
    case 400:
    case 422:
        return ERR_INVALID;
    case 401:
        return ERR_UNAUTHORIZED;
    case 402:
        return ERR_PAYMENT;
    case 403:
        return ERR_FORBIDDEN;
    case 404:
        return ERR_NOTFOUND;
    case 409:
        return ERR_CONFLICT;
    case 413:
        return ERR_TOOBIG;
    case 429:
        return ERR_UNAVAILABLE;
    default:
        return status >= 500 ? ERR_UNAVAILABLE : ERR_INTERNAL;
    }
}

/* ---------------------------------------------------------------- the process's upstreams */

#define MAX_SERVICES 8
static struct {
    char name[24];
    _Atomic(struct upstream *) u;
} services[MAX_SERVICES];
static pthread_mutex_t services_mu = PTHREAD_MUTEX_INITIALIZER;
static bool services_atexit;

static void services_free(void)
{
    for (int i = 0; i < MAX_SERVICES; i++) {
        upstream_free(atomic_load(&services[i].u));
        atomic_store(&services[i].u, NULL);
    }
}

struct upstream *upstream_service(const struct config *cfg, const char *svc, const char *url)
{
    if (!url)
        return NULL;
    for (int i = 0; i < MAX_SERVICES; i++) {
        struct upstream *u = atomic_load_explicit(&services[i].u, memory_order_acquire);
        if (u && !strcmp(services[i].name, svc))
            return u;
    }
    pthread_mutex_lock(&services_mu);
    struct upstream *u = NULL;
    int free_slot = -1;
    for (int i = 0; i < MAX_SERVICES && !u; i++) {
        struct upstream *v = atomic_load(&services[i].u);
        if (v && !strcmp(services[i].name, svc))
            u = v;
        else if (!v && free_slot < 0)
            free_slot = i;
    }
    if (!u && free_slot >= 0) {
        struct upstream_options o = {.name = svc,
                                     .base_url = url,
                                     .token = cfg->internal_token,
                                     .timeout_ms = cfg->upstream_timeout_ms};
        if (upstream_new(&o, &u) == 0) {
            snprintf(services[free_slot].name, sizeof services[free_slot].name, "%s", svc);
            atomic_store_explicit(&services[free_slot].u, u, memory_order_release);
            if (!services_atexit)
                services_atexit = atexit(services_free) == 0;
        }
    }
    pthread_mutex_unlock(&services_mu);
    return u;
}

/* ---------------------------------------------------------------- server side */

int upstream_internal_check(const struct config *cfg, const char *given)
{
    if (!given || !*given)
        return ERR_UNAUTHORIZED;
    if (!cfg->internal_token)
        return ERR_FORBIDDEN;
    size_t gl = strlen(given), tl = strlen(cfg->internal_token);
    /* Compare hashes of both: constant time whatever the lengths. */
    unsigned char a[crypto_generichash_BYTES], b[crypto_generichash_BYTES];
    crypto_generichash(a, sizeof a, (const unsigned char *)given, gl, NULL, 0);
    crypto_generichash(b, sizeof b, (const unsigned char *)cfg->internal_token, tl, NULL, 0);
    return sodium_memcmp(a, b, sizeof a) == 0 ? 0 : ERR_FORBIDDEN;
}
