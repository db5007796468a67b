/* SPDX-License-Identifier: MIT */
/* trace.c — spans, the thread's trace context, and the OTLP/HTTP JSON exporter (trace.h).
 *
 * Cost when off: trace_span_begin() makes two ids with a per-thread xorshift and formats the
 * traceparent; no allocation, no lock. When on, a recorded span is one malloc'd trace_rec
 * that trace_span_end() hands to the queue (a ring of pointers under one mutex, held for a
 * few instructions); the exporter thread owns and frees what it takes.
 *
 * The exporter wakes when a batch is full or a second has passed, takes up to a batch,
 * writes the OTLP JSON (protobuf JSON mapping: resourceSpans → scopeSpans → spans, ids in
 * lowercase hex, times as strings of Unix nanoseconds, int64 attribute values as strings)
 * and POSTs it with one curl handle (keep-alive) and the per-call timeout. A failed POST
 * drops that batch (counted): a receiver that is down must not make the process hold spans
 * without bound. There are no retries. */
#include "emporium/trace.h"

#include <curl/curl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "emporium/buf.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/log.h"
#include "emporium/metrics.h"

#define MAX_ATTRS 12
#define BATCH 512
#define FLUSH_MS 1000

struct trace_rec {
    char trace_id[33], span_id[17], parent_id[17]; /* parent "" for a root */
    int kind;
    int status; /* 0 unset, 2 error */
    int64_t start_ns, end_ns;
    char name[96];
    char status_msg[96];
    int n_attrs;
    struct {
        const char *key; /* static */
        bool is_int;
        int64_t i;
        char s[128];
    } attrs[MAX_ATTRS];
};

/* ---------------------------------------------------------------- ids and context */

static _Thread_local char ctx_cur[TRACEPARENT_LEN + 1];

static uint64_t xrand(void)
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

static bool all_zero(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != '0')
            return false;
    return true;
}

bool trace_valid(const char *tp)
{
    return tp && strlen(tp) == TRACEPARENT_LEN && tp[0] == '0' && tp[1] == '0' && tp[2] == '-' &&
           tp[35] == '-' && tp[52] == '-' && is_hex(tp + 3, 32) && is_hex(tp + 36, 16) &&
           is_hex(tp + 53, 2) && !all_zero(tp + 3, 32) && !all_zero(tp + 36, 16);
}

void trace_context_set(const char *tp)
{
    if (trace_valid(tp))
        memcpy(ctx_cur, tp, sizeof ctx_cur);
    else
        ctx_cur[0] = 0;
}

const char *trace_context(void) { return ctx_cur; }

/* ---------------------------------------------------------------- the exporter's state */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int refs;                /* trace_start() calls not yet stopped */
static _Atomic bool on;         /* an exporter runs: spans are recorded */
static struct trace_rec **ring; /* cap slots */
static size_t cap, head, count; /* under mu */
static bool stopping, started;  /* under mu */
static pthread_t thread;
static char *url; /* <endpoint>/v1/traces */
static char service_name[80];
static long timeout_ms;
static atomic_ulong n_exported, n_dropped, n_failed_spans, n_export_errors;

bool trace_enabled(void) { return atomic_load_explicit(&on, memory_order_relaxed); }

void trace_stats(struct trace_stats *out)
{
    out->exported = atomic_load(&n_exported);
    out->dropped = atomic_load(&n_dropped);
    out->failed_spans = atomic_load(&n_failed_spans);
    out->export_errors = atomic_load(&n_export_errors);
    pthread_mutex_lock(&mu);
    out->queued = count;
    pthread_mutex_unlock(&mu);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---------------------------------------------------------------- spans */

void trace_span_begin(struct trace_span *s, enum trace_kind kind, const char *name,
                      const char *parent)
{
    char trace[33], flags[3] = "01";
    bool child = parent && parent[0] && trace_valid(parent);
    if (child) {
        memcpy(trace, parent + 3, 32);
        memcpy(flags, parent + 53, 2);
    } else {
        snprintf(trace, sizeof trace, "%016llx%016llx", (unsigned long long)xrand(),
                 (unsigned long long)xrand());
    }
    trace[32] = 0;
    flags[2] = 0;
    uint64_t id;
    do
        id = xrand();
    while (id == 0);
    snprintf(s->traceparent, sizeof s->traceparent, "00-%s-%016llx-%s", trace,
             (unsigned long long)id, flags);
    s->rec = NULL;
    s->entered = false;
    s->prev[0] = 0;
    /* Parent-based sampling: a caller that did not sample (flags 00) gets no span. */
    int f = (flags[1] >= 'a' ? flags[1] - 'a' + 10 : flags[1] - '0');
    if (!trace_enabled() || !(f & 1))
        return;
    struct trace_rec *r = malloc(sizeof *r);
    if (!r)
        return;
    memcpy(r->trace_id, trace, 33);
    memcpy(r->span_id, s->traceparent + 36, 16);
    r->span_id[16] = 0;
    if (child) {
        memcpy(r->parent_id, parent + 36, 16);
        r->parent_id[16] = 0;
    } else {
        r->parent_id[0] = 0;
    }
    r->kind = kind;
    r->status = 0;
    r->status_msg[0] = 0;
    r->n_attrs = 0;
    snprintf(r->name, sizeof r->name, "%s", name ? name : "span");
    r->start_ns = now_ns();
    r->end_ns = 0;
    s->rec = r;
}

void trace_span_name(struct trace_span *s, const char *name)
{
    if (s->rec && name)
        snprintf(s->rec->name, sizeof s->rec->name, "%s", name);
}

void trace_span_str(struct trace_span *s, const char *key, const char *value)
{
    struct trace_rec *r = s->rec;
    if (!r || !key || !value || r->n_attrs == MAX_ATTRS)
        return;
    r->attrs[r->n_attrs].key = key;
    r->attrs[r->n_attrs].is_int = false;
    snprintf(r->attrs[r->n_attrs].s, sizeof r->attrs[0].s, "%s", value);
    r->n_attrs++;
}

void trace_span_int(struct trace_span *s, const char *key, int64_t value)
{
    struct trace_rec *r = s->rec;
    if (!r || !key || r->n_attrs == MAX_ATTRS)
        return;
    r->attrs[r->n_attrs].key = key;
    r->attrs[r->n_attrs].is_int = true;
    r->attrs[r->n_attrs].i = value;
    r->n_attrs++;
}

void trace_span_error(struct trace_span *s, const char *message)
{
    if (!s->rec)
        return;
    s->rec->status = 2;
    snprintf(s->rec->status_msg, sizeof s->rec->status_msg, "%s", message ? message : "");
}

void trace_span_enter(struct trace_span *s)
{
    memcpy(s->prev, ctx_cur, sizeof s->prev);
    memcpy(ctx_cur, s->traceparent, sizeof ctx_cur);
    s->entered = true;
}

static void leave(struct trace_span *s)
{
    if (s->entered) {
        memcpy(ctx_cur, s->prev, sizeof ctx_cur);
        s->entered = false;
    }
}

void trace_span_discard(struct trace_span *s)
{
    leave(s);
    free(s->rec);
    s->rec = NULL;
}

void trace_span_end(struct trace_span *s)
{
    leave(s);
    struct trace_rec *r = s->rec;
    if (!r)
        return;
    s->rec = NULL;
    r->end_ns = now_ns();
    pthread_mutex_lock(&mu);
    bool queued = false;
    if (started && !stopping && count < cap) {
        ring[(head + count) % cap] = r;
        count++;
        queued = true;
        if (count == BATCH)
            pthread_cond_signal(&cv);
    }
    pthread_mutex_unlock(&mu);
    if (!queued) {
        atomic_fetch_add(&n_dropped, 1);
        free(r);
    }
}

/* ---------------------------------------------------------------- OTLP JSON */

static void json_str(struct buf *b, const char *s)
{
    buf_puts(b, "\"");
    buf_json_escape(b, s);
    buf_puts(b, "\"");
}

static void write_span(struct buf *b, const struct trace_rec *r)
{
    buf_printf(b, "{\"traceId\":\"%s\",\"spanId\":\"%s\",", r->trace_id, r->span_id);
    if (r->parent_id[0])
        buf_printf(b, "\"parentSpanId\":\"%s\",", r->parent_id);
    buf_puts(b, "\"name\":");
    json_str(b, r->name);
    buf_printf(b,
               ",\"kind\":%d,\"startTimeUnixNano\":\"%lld\",\"endTimeUnixNano\":\"%lld\","
               "\"attributes\":[",
               r->kind, (long long)r->start_ns, (long long)r->end_ns);
    for (int i = 0; i < r->n_attrs; i++) {
        buf_puts(b, i ? ",{\"key\":" : "{\"key\":");
        json_str(b, r->attrs[i].key);
        if (r->attrs[i].is_int) {
            buf_printf(b, ",\"value\":{\"intValue\":\"%lld\"}}", (long long)r->attrs[i].i);
        } else {
            buf_puts(b, ",\"value\":{\"stringValue\":");
            json_str(b, r->attrs[i].s);
            buf_puts(b, "}}");
        }
    }
    buf_puts(b, "]");
    if (r->status == 2) {
        buf_puts(b, ",\"status\":{\"code\":2,\"message\":");
        json_str(b, r->status_msg);
        buf_puts(b, "}");
    }
    buf_puts(b, "}");
}

static void write_batch(struct buf *b, struct trace_rec **recs, size_t n)
{
    buf_puts(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
                "\"value\":{\"stringValue\":");
    json_str(b, service_name);
    buf_printf(b,
               "}},{\"key\":\"service.version\",\"value\":{\"stringValue\":\"%s\"}},"
               "{\"key\":\"process.pid\",\"value\":{\"intValue\":\"%ld\"}},"
               "{\"key\":\"telemetry.sdk.language\",\"value\":{\"stringValue\":\"c\"}}]},"
               "\"scopeSpans\":[{\"scope\":{\"name\":\"emporium\",\"version\":\"%s\"},"
               "\"spans\":[",
               EMPORIUM_VERSION, (long)getpid(), EMPORIUM_VERSION);
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_puts(b, ",");
        write_span(b, recs[i]);
    }
    buf_puts(b, "]}]}]}");
}

static size_t discard_body(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

/* One POST of n spans; frees them. */
static bool export_batch(CURL *h, struct trace_rec **recs, size_t n)
{
    struct buf b = BUF_INIT(0);
    write_batch(&b, recs, n);
    for (size_t i = 0; i < n; i++)
        free(recs[i]);
    bool ok = false;
    if (!b.err) {
        struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_reset(h); /* keeps the connection cache */
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, b.p);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)b.len);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_body);
        CURLcode cc = hdrs ? curl_easy_perform(h) : CURLE_OUT_OF_MEMORY;
        long code = 0;
        if (cc == CURLE_OK)
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        ok = cc == CURLE_OK && code >= 200 && code < 300;
        if (!ok)
            log_debug("trace: export of %zu spans failed: %s (HTTP %ld)", n,
                      cc == CURLE_OK ? "refused" : curl_easy_strerror(cc), code);
        curl_slist_free_all(hdrs);
    }
    buf_free(&b);
    if (ok) {
        atomic_fetch_add(&n_exported, n);
    } else {
        atomic_fetch_add(&n_export_errors, 1);
        atomic_fetch_add(&n_failed_spans, n);
    }
    return ok;
}

static void *exporter_main(void *arg)
{
    (void)arg;
    CURL *h = curl_easy_init();
    struct trace_rec **batch = malloc(BATCH * sizeof *batch);
    bool failed_at_stop = false;
    pthread_mutex_lock(&mu);
    for (;;) {
        if (!stopping && count < BATCH) {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_sec += FLUSH_MS / 1000;
            while (!stopping && count < BATCH && pthread_cond_timedwait(&cv, &mu, &t) == 0)
                ;
        }
        if (count == 0 && stopping)
            break;
        size_t n = 0;
        while (n < BATCH && count > 0) {
            struct trace_rec *r = ring[head];
            head = (head + 1) % cap;
            count--;
            if (batch && h && !failed_at_stop)
                batch[n++] = r;
            else
                atomic_fetch_add(&n_failed_spans, 1), free(r);
        }
        bool stop_now = stopping;
        pthread_mutex_unlock(&mu);
        if (n > 0 && !export_batch(h, batch, n) && stop_now)
            failed_at_stop = true; /* shutting down: do not wait on a dead receiver again */
        pthread_mutex_lock(&mu);
    }
    pthread_mutex_unlock(&mu);
    free(batch);
    if (h)
        curl_easy_cleanup(h);
    return NULL;
}

/* ---------------------------------------------------------------- /metrics */

static void write_metrics(struct buf *out, void *ctx)
{
    (void)ctx;
    struct trace_stats st;
    trace_stats(&st);
    buf_printf(out,
               "# HELP emporium_trace_spans_exported_total Spans the OTLP receiver accepted.\n"
               "# TYPE emporium_trace_spans_exported_total counter\n"
               "emporium_trace_spans_exported_total %lu\n"
               "# HELP emporium_trace_spans_dropped_total Spans not exported: the queue was "
               "full (queue_full) or their export failed (export_failed).\n"
               "# TYPE emporium_trace_spans_dropped_total counter\n"
               "emporium_trace_spans_dropped_total{reason=\"queue_full\"} %lu\n"
               "emporium_trace_spans_dropped_total{reason=\"export_failed\"} %lu\n"
               "# HELP emporium_trace_export_failures_total OTLP export requests that failed "
               "(no answer, timeout, or not 2xx).\n"
               "# TYPE emporium_trace_export_failures_total counter\n"
               "emporium_trace_export_failures_total %lu\n"
               "# HELP emporium_trace_queue_spans Spans waiting for export.\n"
               "# TYPE emporium_trace_queue_spans gauge\n"
               "emporium_trace_queue_spans %lu\n",
               st.exported, st.dropped, st.failed_spans, st.export_errors, st.queued);
}

/* ---------------------------------------------------------------- start and stop */

/* "emporium-<first service>" from EMPORIUM_SERVICES, or "emporium" for all of them. */
static void default_service_name(const struct config *cfg, char *out, size_t n)
{
    const char *s = cfg->services;
    if (!s || !*s || !strcmp(s, "all")) {
        snprintf(out, n, "emporium");
        return;
    }
    size_t l = strcspn(s, ",");
    snprintf(out, n, "emporium-%.*s", (int)(l < 40 ? l : 40), s);
}

int trace_start(const struct config *cfg)
{
    pthread_mutex_lock(&mu);
    refs++;
    if (started || !cfg->otlp_endpoint) {
        pthread_mutex_unlock(&mu);
        return 0;
    }
    size_t el = strlen(cfg->otlp_endpoint);
    while (el > 0 && cfg->otlp_endpoint[el - 1] == '/')
        el--;
    url = malloc(el + sizeof "/v1/traces");
    cap = (size_t)cfg->otlp_queue;
    ring = calloc(cap, sizeof *ring);
    if (!url || !ring) {
        free(url), url = NULL;
        free(ring), ring = NULL;
        pthread_mutex_unlock(&mu);
        log_warn("trace: out of memory: spans are not exported");
        return ERR_NOMEM;
    }
    memcpy(url, cfg->otlp_endpoint, el);
    memcpy(url + el, "/v1/traces", sizeof "/v1/traces");
    if (cfg->otlp_service_name)
        snprintf(service_name, sizeof service_name, "%s", cfg->otlp_service_name);
    else
        default_service_name(cfg, service_name, sizeof service_name);
    timeout_ms = cfg->otlp_timeout_ms;
    head = count = 0;
    stopping = false;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (pthread_create(&thread, NULL, exporter_main, NULL) != 0) {
        free(url), url = NULL;
        free(ring), ring = NULL;
        pthread_mutex_unlock(&mu);
        log_warn("trace: cannot start the exporter thread: spans are not exported");
        return ERR_UNAVAILABLE;
    }
    started = true;
    atomic_store(&on, true);
    pthread_mutex_unlock(&mu);
    metrics_add_writer(write_metrics, NULL);
    log_info("trace: exporting spans of service %s to %s (OTLP/HTTP JSON)", service_name, url);
    return 0;
}

void trace_stop(void)
{
    pthread_mutex_lock(&mu);
    if (refs > 0)
        refs--;
    if (refs > 0 || !started) {
        pthread_mutex_unlock(&mu);
        return;
    }
    atomic_store(&on, false);
    stopping = true;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(thread, NULL);
    pthread_mutex_lock(&mu);
    started = false;
    free(ring), ring = NULL;
    free(url), url = NULL;
    cap = head = count = 0;
    pthread_mutex_unlock(&mu);
}
