/* SPDX-License-Identifier: MIT */
/* test_trace.c — distributed tracing through the real binary (docs/tracing.md): the spans a
 * server exports as OTLP/HTTP JSON when EMPORIUM_OTLP_ENDPOINT is set.
 *
 * No Jaeger or OpenTelemetry Collector can be installed on the test machines, so the
 * receiver is written here: a libmicrohttpd server that takes POST /v1/traces, checks every
 * body against the OTLP JSON shape (resourceSpans → scopeSpans → spans, hex ids, nanosecond
 * strings, kind numbers, typed attribute values, service.name) and keeps the spans. It can
 * hold its answers (to fill the server's queue) or be gone (a closed port).
 *
 * What is checked: a request's server span continues the caller's traceparent (same trace,
 * the caller's span as parent, the span id the response's traceparent names); without one a
 * new trace starts; an unsampled caller (flags 00) gets no span; an order's events are
 * consumed under consumer spans whose parent is the order request's server span; no token
 * or card number ever reaches the receiver; spans still queued at SIGTERM are sent; a
 * receiver that is down costs no request and counts export failures; a full queue drops and
 * counts, never blocking a request. Nothing sleeps a fixed time: every wait is for a
 * condition, with a generous deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "events_wait.h"
#include "harness.h"

/* ---------------------------------------------------------------- the OTLP receiver */

struct receiver {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    json_t *spans; /* every span received, each with "service" (its resource's service.name) */
    char *raw;     /* every body received, concatenated (for the secrets check) */
    size_t raw_len;
    int posts;
    int bad;       /* bodies that were not OTLP JSON */
    char why[256]; /* the first shape error */
    bool hold;     /* answer nothing until released */
    int held;      /* requests waiting in hold */
};

static struct receiver rx;

static bool hex_ok(const char *s, size_t n)
{
    if (!s || strlen(s) != n)
        return false;
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        nonzero |= s[i] != '0';
    }
    return nonzero;
}

static bool digits_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* An OTLP KeyValue list: [{key, value:{stringValue|intValue|boolValue|doubleValue}}]. */
static bool attrs_ok(json_t *a, char *why, size_t n)
{
    if (!json_is_array(a)) {
        snprintf(why, n, "attributes is not an array");
        return false;
    }
    size_t i;
    json_t *kv;
    json_array_foreach (a, i, kv) {
        json_t *v = json_object_get(kv, "value");
        const char *key = json_string_value(json_object_get(kv, "key"));
        if (!key || !*key || !json_is_object(v) || json_object_size(v) != 1) {
            snprintf(why, n, "attribute %zu: no key or not one typed value", i);
            return false;
        }
        json_t *sv = json_object_get(v, "stringValue"), *iv = json_object_get(v, "intValue");
        if (!(json_is_string(sv) || (json_is_string(iv) && digits_ok(json_string_value(iv))) ||
              json_is_boolean(json_object_get(v, "boolValue")) ||
              json_is_number(json_object_get(v, "doubleValue")))) {
            snprintf(why, n, "attribute %s: value of no OTLP type", key);
            return false;
        }
    }
    return true;
}

static const char *attr_str(json_t *attrs, const char *key)
{
    size_t i;
    json_t *kv;
    json_array_foreach (attrs, i, kv) {
        const char *k = json_string_value(json_object_get(kv, "key"));
        if (k && !strcmp(k, key)) {
            json_t *v = json_object_get(kv, "value");
            json_t *s = json_object_get(v, "stringValue");
            return json_string_value(s ? s : json_object_get(v, "intValue"));
        }
    }
    return NULL;
}

/* Checks one export body and appends its spans to rx.spans (under rx.mu). */
static bool take_body(json_t *doc, char *why, size_t n)
{
    json_t *rss = json_object_get(doc, "resourceSpans");
    if (!json_is_array(rss) || json_array_size(rss) == 0) {
        snprintf(why, n, "no resourceSpans");
        return false;
    }
    size_t i, j, k;
    json_t *rs, *ss, *sp;
    json_array_foreach (rss, i, rs) {
        json_t *rattrs = json_object_get(json_object_get(rs, "resource"), "attributes");
        if (!attrs_ok(rattrs, why, n))
            return false;
        const char *service = attr_str(rattrs, "service.name");
        if (!service || !*service) {
            snprintf(why, n, "no service.name");
            return false;
        }
        json_t *sss = json_object_get(rs, "scopeSpans");
        if (!json_is_array(sss) || json_array_size(sss) == 0) {
            snprintf(why, n, "no scopeSpans");
            return false;
        }
        json_array_foreach (sss, j, ss) {
            json_t *spans = json_object_get(ss, "spans");
            if (!json_is_string(json_object_get(json_object_get(ss, "scope"), "name")) ||
                !json_is_array(spans)) {
                snprintf(why, n, "scopeSpans without scope.name or spans");
                return false;
            }
            json_array_foreach (spans, k, sp) {
                const char *start = json_string_value(json_object_get(sp, "startTimeUnixNano"));
                const char *end = json_string_value(json_object_get(sp, "endTimeUnixNano"));
                json_t *parent = json_object_get(sp, "parentSpanId");
                json_t *kind = json_object_get(sp, "kind");
                const char *name = json_string_value(json_object_get(sp, "name"));
                if (!hex_ok(json_string_value(json_object_get(sp, "traceId")), 32) ||
                    !hex_ok(json_string_value(json_object_get(sp, "spanId")), 16) ||
                    (parent && !hex_ok(json_string_value(parent), 16)) || !name || !*name ||
                    !json_is_integer(kind) || json_integer_value(kind) < 1 ||
                    json_integer_value(kind) > 5 || !digits_ok(start) || !digits_ok(end) ||
                    strlen(start) != 19 || strlen(end) != 19 || strcmp(end, start) < 0 ||
                    !attrs_ok(json_object_get(sp, "attributes"), why, n)) {
                    if (!*why)
                        snprintf(why, n, "span %zu: ids, name, kind or times malformed", k);
                    return false;
                }
                json_t *copy = json_deep_copy(sp);
                json_object_set_new(copy, "service", json_string(service));
                json_array_append_new(rx.spans, copy);
            }
        }
    }
    return true;
}

struct post {
    char *p;
    size_t len;
};

static enum MHD_Result rx_handle(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *data,
                                 size_t *data_size, void **con_cls)
{
    (void)cls;
    (void)version;
    struct post *p = *con_cls;
    if (!p) {
        *con_cls = calloc(1, sizeof *p);
        return *con_cls ? MHD_YES : MHD_NO;
    }
    if (*data_size) {
        char *q = realloc(p->p, p->len + *data_size + 1);
        if (!q)
            return MHD_NO;
        memcpy(q + p->len, data, *data_size);
        p->p = q;
        p->len += *data_size;
        p->p[p->len] = 0;
        *data_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&rx.mu);
    rx.held++;
    pthread_cond_broadcast(&rx.cv);
    while (rx.hold)
        pthread_cond_wait(&rx.cv, &rx.mu);
    rx.held--;
    rx.posts++;
    unsigned status = 200;
    const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    json_t *doc = p->p ? json_loadb(p->p, p->len, 0, NULL) : NULL;
    char why[256] = "";
    if (strcmp(method, "POST") || strcmp(url, "/v1/traces") || !ct ||
        strcmp(ct, "application/json") || !doc)
        snprintf(why, sizeof why, "not a JSON POST to /v1/traces (%s %s)", method, url);
    else
        take_body(doc, why, sizeof why);
    if (*why) {
        status = 400;
        if (!rx.bad++)
            snprintf(rx.why, sizeof rx.why, "%s", why);
    }
    if (p->p) {
        char *q = realloc(rx.raw, rx.raw_len + p->len + 2);
        if (q) {
            memcpy(q + rx.raw_len, p->p, p->len);
            rx.raw = q;
            rx.raw_len += p->len;
            rx.raw[rx.raw_len++] = '\n';
            rx.raw[rx.raw_len] = 0;
        }
    }
    pthread_cond_broadcast(&rx.cv);
    pthread_mutex_unlock(&rx.mu);
    json_decref(doc);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(2, (void *)"{}", MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static void rx_done(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct post *p = *con_cls;
    if (p) {
        free(p->p);
        free(p);
        *con_cls = NULL;
    }
}

static int rx_start(void)
{
    pthread_mutex_init(&rx.mu, NULL);
    pthread_cond_init(&rx.cv, NULL);
    rx.spans = json_array();
    rx.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                MHD_USE_ERROR_LOG,
                            0, NULL, NULL, rx_handle, NULL, MHD_OPTION_NOTIFY_COMPLETED, rx_done,
                            NULL, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_END);
    if (!rx.d)
        return -1;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(rx.d, MHD_DAEMON_INFO_BIND_PORT);
    rx.port = di ? di->port : 0;
    return rx.port > 0 ? 0 : -1;
}

static void rx_release(void)
{
    pthread_mutex_lock(&rx.mu);
    rx.hold = false;
    pthread_cond_broadcast(&rx.cv);
    pthread_mutex_unlock(&rx.mu);
}

static void rx_stop(void)
{
    rx_release();
    if (rx.d)
        MHD_stop_daemon(rx.d);
    rx.d = NULL;
    json_decref(rx.spans);
    rx.spans = NULL;
    free(rx.raw);
    rx.raw = NULL;
    rx.raw_len = 0;
    pthread_mutex_destroy(&rx.mu);
    pthread_cond_destroy(&rx.cv);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A copy of the received span whose `member` is `value` and, when member2 is not NULL,
 * whose member2 is value2 (the first, in arrival order), waiting up to 90 s for it; NULL
 * when it never came. */
static json_t *wait_span2(const char *member, const char *value, const char *member2,
                          const char *value2)
{
    int64_t deadline = mono_ms() + 90000;
    json_t *found = NULL;
    pthread_mutex_lock(&rx.mu);
    while (!found) {
        size_t i;
        json_t *sp;
        json_array_foreach (rx.spans, i, sp) {
            const char *v = json_string_value(json_object_get(sp, member));
            const char *v2 = member2 ? json_string_value(json_object_get(sp, member2)) : NULL;
            if (v && !strcmp(v, value) && (!member2 || (v2 && !strcmp(v2, value2)))) {
                found = json_deep_copy(sp);
                break;
            }
        }
        if (found || mono_ms() > deadline)
            break;
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 50 * 1000000L;
        if (t.tv_nsec >= 1000000000L)
            t.tv_sec++, t.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&rx.cv, &rx.mu, &t);
    }
    pthread_mutex_unlock(&rx.mu);
    return found;
}

static json_t *wait_span(const char *member, const char *value)
{
    return wait_span2(member, value, NULL, NULL);
}

static bool span_received(const char *span_id)
{
    bool yes = false;
    pthread_mutex_lock(&rx.mu);
    size_t i;
    json_t *sp;
    json_array_foreach (rx.spans, i, sp) {
        const char *v = json_string_value(json_object_get(sp, "spanId"));
        yes |= v && !strcmp(v, span_id);
    }
    pthread_mutex_unlock(&rx.mu);
    return yes;
}

/* ---------------------------------------------------------------- helpers */

static struct th_server srv;
static char *admin;
static char product_id[32];
static char endpoint_env[96];

/* GET path with an optional traceparent; the response's traceparent into tp_out[56]. */
static long get_traced(struct th_server *s, const char *path, const char *traceparent,
                       char tp_out[56])
{
    char h[128];
    snprintf(h, sizeof h, "traceparent: %s", traceparent ? traceparent : "");
    const char *hdrs[] = {h, NULL};
    struct th_resp r;
    if (th_req(s, "GET", path, NULL, traceparent ? hdrs : NULL, &r) != 0)
        return -1;
    long status = r.status;
    if (tp_out && !th_header(&r, "traceparent", tp_out, 56))
        tp_out[0] = 0;
    th_resp_free(&r);
    return status;
}

static int group_setup(void **state)
{
    (void)state;
    if (rx_start() != 0)
        return -1;
    snprintf(endpoint_env, sizeof endpoint_env, "EMPORIUM_OTLP_ENDPOINT=http://127.0.0.1:%d",
             rx.port);
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", endpoint_env,
                         "EMPORIUM_OTLP_SERVICE_NAME=shop-test", NULL};
    if (th_start(&srv, env, NULL) != 0 || !(admin = th_admin_token(&srv)))
        return -1;
    struct th_resp r;
    if (th_call(&srv, "POST", "/api/v1/products", admin, &r,
                "{\"sku\":\"TR-1\",\"name\":\"Traced\",\"description\":\"d\",\"category\":\"t\","
                "\"price\":{\"amount\":1500,\"currency\":\"USD\"}}") != 0 ||
        r.status != 201)
        return -1;
    snprintf(product_id, sizeof product_id, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    char path[80];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", product_id);
    if (th_call(&srv, "PUT", path, admin, &r, "{\"available\":100}") != 0 || r.status != 200)
        return -1;
    th_resp_free(&r);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (srv.pid > 0)
        rc = th_suite_stop(&srv, admin);
    else
        free(admin);
    admin = NULL;
    if (rx.bad)
        fprintf(stderr, "receiver: %d bodies were not OTLP JSON: %s\n", rx.bad, rx.why);
    rc |= rx.bad ? -1 : 0;
    rx_stop();
    return rc;
}

/* ---------------------------------------------------------------- tests */

static void test_server_span_continues_the_callers_trace(void **state)
{
    (void)state;
    const char *given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    char path[96], tp[56];
    snprintf(path, sizeof path, "/api/v1/products/%s", product_id);
    assert_int_equal(get_traced(&srv, path, given, tp), 200);
    /* the answer names the server span: same trace, a span id of its own, still sampled */
    assert_int_equal(strlen(tp), 55);
    assert_memory_equal(tp, given, 36);
    assert_memory_not_equal(tp + 36, given + 36, 16);
    assert_string_equal(tp + 52, "-01");
    char span_id[17];
    memcpy(span_id, tp + 36, 16);
    span_id[16] = 0;

    json_t *sp = wait_span("spanId", span_id);
    assert_non_null(sp);
    assert_string_equal(json_string_value(json_object_get(sp, "traceId")),
                        "0af7651916cd43dd8448eb211c80319c");
    assert_string_equal(json_string_value(json_object_get(sp, "parentSpanId")), "b7ad6b7169203331");
    assert_int_equal(json_integer_value(json_object_get(sp, "kind")), 2); /* SERVER */
    assert_string_equal(json_string_value(json_object_get(sp, "name")),
                        "GET /api/v1/products/{id}");
    assert_string_equal(json_string_value(json_object_get(sp, "service")), "shop-test");
    json_t *attrs = json_object_get(sp, "attributes");
    assert_string_equal(attr_str(attrs, "http.request.method"), "GET");
    assert_string_equal(attr_str(attrs, "http.route"), "/api/v1/products/{id}");
    assert_string_equal(attr_str(attrs, "url.path"), path);
    assert_string_equal(attr_str(attrs, "http.response.status_code"), "200");
    json_decref(sp);
}

static void test_no_traceparent_starts_a_trace(void **state)
{
    (void)state;
    char tp[56];
    /* a malformed traceparent counts as none */
    assert_int_equal(get_traced(&srv, "/api/v1/products?limit=1", "00-xyz-01", tp), 200);
    assert_int_equal(strlen(tp), 55);
    char span_id[17];
    memcpy(span_id, tp + 36, 16);
    span_id[16] = 0;
    json_t *sp = wait_span("spanId", span_id);
    assert_non_null(sp);
    assert_null(json_object_get(sp, "parentSpanId")); /* a root */
    char trace[33];
    memcpy(trace, tp + 3, 32);
    trace[32] = 0;
    assert_string_equal(json_string_value(json_object_get(sp, "traceId")), trace);
    assert_string_equal(json_string_value(json_object_get(sp, "name")), "GET /api/v1/products");
    json_decref(sp);
}

static void test_unsampled_caller_gets_no_span(void **state)
{
    (void)state;
    char tp1[56], tp2[56];
    assert_int_equal(get_traced(&srv, "/api/v1/products?limit=1",
                                "00-1af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", tp1),
                     200);
    assert_string_equal(tp1 + 52, "-00"); /* the decision travels on */
    /* A sampled request after it: spans are sent in the order they ended, so once this one
     * is in, the first one would be too. */
    assert_int_equal(get_traced(&srv, "/api/v1/products?limit=1",
                                "00-2af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tp2),
                     200);
    json_t *sp = wait_span("traceId", "2af7651916cd43dd8448eb211c80319c");
    assert_non_null(sp);
    json_decref(sp);
    char id1[17];
    memcpy(id1, tp1 + 36, 16);
    id1[16] = 0;
    assert_false(span_received(id1));
    json_t *none = NULL;
    pthread_mutex_lock(&rx.mu);
    size_t i;
    json_t *s;
    json_array_foreach (rx.spans, i, s) {
        const char *t = json_string_value(json_object_get(s, "traceId"));
        if (t && !strcmp(t, "1af7651916cd43dd8448eb211c80319c"))
            none = s;
    }
    pthread_mutex_unlock(&rx.mu);
    assert_null(none);
}

/* An order: its events are consumed in this process under consumer spans whose parent is the
 * order request's server span; no token or card number reaches the receiver. */
static void test_order_events_continue_the_trace(void **state)
{
    (void)state;
    char *tok = th_register(&srv, "trace@example.com", "correct horse battery");
    assert_non_null(tok);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", "/api/v1/cart/items", tok, &r,
                             "{\"product_id\":\"%s\",\"quantity\":1}", product_id),
                     0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    char auth[200];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    const char *h[] = {auth, "Content-Type: application/json", "Idempotency-Key: trace-order-1",
                       "traceparent: 00-3af7651916cd43dd8448eb211c80319c-c7ad6b7169203331-01",
                       NULL};
    const char *body =
        "{\"shipping_address\":{\"name\":\"A\",\"line1\":\"1 Road\",\"city\":\"Town\","
        "\"postal_code\":\"12345\",\"country\":\"US\"},\"payment\":{\"card_number\":"
        "\"4242424242424242\",\"exp_month\":12,\"exp_year\":2040,\"cvc\":\"123\"},"
        "\"shipping_method\":\"standard\"}";
    assert_int_equal(th_req(&srv, "POST", "/api/v1/orders", body, h, &r), 0);
    if (r.status != 201)
        fail_msg("order: %ld %s", r.status, r.body);
    char tp[56];
    assert_non_null(th_header(&r, "traceparent", tp, sizeof tp));
    th_resp_free(&r);
    char server_span[17];
    memcpy(server_span, tp + 36, 16);
    server_span[16] = 0;

    json_t *sp = wait_span("spanId", server_span);
    assert_non_null(sp);
    assert_string_equal(json_string_value(json_object_get(sp, "name")), "POST /api/v1/orders");
    assert_string_equal(attr_str(json_object_get(sp, "attributes"), "http.response.status_code"),
                        "201");
    json_decref(sp);
    /* the order's events: consumed under spans that are children of the request's span */
    json_t *consumer = wait_span2("parentSpanId", server_span, "name", "process order-events");
    assert_non_null(consumer);
    assert_string_equal(json_string_value(json_object_get(consumer, "traceId")),
                        "3af7651916cd43dd8448eb211c80319c");
    assert_int_equal(json_integer_value(json_object_get(consumer, "kind")), 5); /* CONSUMER */
    assert_string_equal(json_string_value(json_object_get(consumer, "name")),
                        "process order-events");
    assert_string_equal(
        attr_str(json_object_get(consumer, "attributes"), "messaging.destination.name"),
        "order-events");
    json_decref(consumer);

    pthread_mutex_lock(&rx.mu);
    bool leaked = rx.raw && (strstr(rx.raw, "4242424242424242") || strstr(rx.raw, tok) ||
                             strstr(rx.raw, "Bearer") || strstr(rx.raw, "correct horse"));
    pthread_mutex_unlock(&rx.mu);
    assert_false(leaked);
    free(tok);
}

static void test_metrics_count_exported_spans(void **state)
{
    (void)state;
    int64_t deadline = mono_ms() + 90000;
    double exported = 0;
    while (mono_ms() < deadline &&
           (exported = th_metric(&srv, "emporium_trace_spans_exported_total")) < 3)
        usleep(20000);
    assert_true(exported >= 3);
    assert_true(th_metric(&srv, "emporium_trace_export_failures_total") == 0);
    assert_true(th_metric(&srv, "emporium_trace_spans_dropped_total{reason=\"queue_full\"}") == 0);
}

/* Spans still queued at SIGTERM are sent before the process exits. */
static void test_shutdown_flushes(void **state)
{
    (void)state;
    struct th_server s2;
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", endpoint_env, "EMPORIUM_SERVICES=product,web",
                         NULL};
    assert_int_equal(th_start(&s2, env, NULL), 0);
    char tp[56];
    assert_int_equal(get_traced(&s2, "/api/v1/products?limit=1",
                                "00-4af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tp),
                     200);
    assert_int_equal(th_stop(&s2), 0);
    th_cleanup(&s2);
    char id[17];
    memcpy(id, tp + 36, 16);
    id[16] = 0;
    assert_true(span_received(id)); /* no waiting: the process is gone */
    json_t *sp = wait_span("spanId", id);
    assert_non_null(sp);
    /* the default service name comes from EMPORIUM_SERVICES */
    assert_string_equal(json_string_value(json_object_get(sp, "service")), "emporium-product");
    json_decref(sp);
}

/* A receiver that is down: every request is answered, the failures are counted. */
static void test_receiver_down(void **state)
{
    (void)state;
    /* a port that was just closed: nothing listens there */
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                                            rx_handle, NULL, MHD_OPTION_END);
    assert_non_null(d);
    int port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    MHD_stop_daemon(d);
    char ep[96];
    snprintf(ep, sizeof ep, "EMPORIUM_OTLP_ENDPOINT=http://127.0.0.1:%d", port);
    struct th_server s2;
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", ep, "EMPORIUM_SERVICES=product,web", NULL};
    assert_int_equal(th_start(&s2, env, NULL), 0);
    int64_t deadline = mono_ms() + 90000;
    double failures = 0;
    while (mono_ms() < deadline) {
        assert_int_equal(get_traced(&s2, "/api/v1/products?limit=1", NULL, NULL), 200);
        if ((failures = th_metric(&s2, "emporium_trace_export_failures_total")) >= 1)
            break;
        usleep(20000);
    }
    assert_true(failures >= 1);
    assert_true(th_metric(&s2, "emporium_trace_spans_dropped_total{reason=\"export_failed\"}") >=
                1);
    assert_true(th_metric(&s2, "emporium_trace_spans_exported_total") == 0);
    assert_int_equal(th_stop(&s2), 0); /* the flush at exit gives up on a dead receiver */
    th_cleanup(&s2);
}

/* A receiver that does not answer: the queue fills, spans are dropped and counted, and no
 * request waits for it. */
static void test_full_queue_drops(void **state)
{
    (void)state;
    pthread_mutex_lock(&rx.mu);
    rx.hold = true;
    pthread_mutex_unlock(&rx.mu);
    struct th_server s2;
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off",       endpoint_env,
                         "EMPORIUM_SERVICES=product,web",  "EMPORIUM_OTLP_QUEUE=2",
                         "EMPORIUM_OTLP_TIMEOUT_MS=60000", NULL};
    assert_int_equal(th_start(&s2, env, NULL), 0);
    /* Requests go on while the exporter is stuck on the receiver: all answered. */
    int64_t deadline = mono_ms() + 90000;
    double dropped = 0;
    int held = 0;
    while (mono_ms() < deadline) {
        assert_int_equal(get_traced(&s2, "/api/v1/products?limit=1", NULL, NULL), 200);
        dropped = th_metric(&s2, "emporium_trace_spans_dropped_total{reason=\"queue_full\"}");
        pthread_mutex_lock(&rx.mu);
        held = rx.held;
        pthread_mutex_unlock(&rx.mu);
        if (dropped >= 5 && held >= 1)
            break;
    }
    assert_true(dropped >= 5);
    assert_true(held >= 1);
    rx_release();
    deadline = mono_ms() + 90000;
    double exported = 0;
    while (mono_ms() < deadline &&
           (exported = th_metric(&s2, "emporium_trace_spans_exported_total")) < 1)
        usleep(20000);
    assert_true(exported >= 1);
    assert_int_equal(th_stop(&s2), 0);
    th_cleanup(&s2);
}

static void test_bad_settings_exit_2(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        {"EMPORIUM_OTLP_ENDPOINT", "collector:4318"},
        {"EMPORIUM_OTLP_ENDPOINT", "http://user:pw@collector:4318"},
        {"EMPORIUM_OTLP_SERVICE_NAME", "has space"},
        {"EMPORIUM_OTLP_TIMEOUT_MS", "0"},
        {"EMPORIUM_OTLP_QUEUE", "lots"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "env %s='%s' %s serve --listen 127.0.0.1:0 2>&1", bad[i][0],
                 bad[i][1], EMPORIUM_BIN);
        FILE *f = popen(cmd, "r");
        assert_non_null(f);
        char out[4096] = "";
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = 0;
        int st = pclose(f);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 2 || !strstr(out, bad[i][0]))
            fail_msg("%s=%s: status %d, output: %s", bad[i][0], bad[i][1], st, out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_span_continues_the_callers_trace),
        cmocka_unit_test(test_no_traceparent_starts_a_trace),
        cmocka_unit_test(test_unsampled_caller_gets_no_span),
        cmocka_unit_test(test_order_events_continue_the_trace),
        cmocka_unit_test(test_metrics_count_exported_spans),
        cmocka_unit_test(test_shutdown_flushes),
        cmocka_unit_test(test_receiver_down),
        cmocka_unit_test(test_full_queue_drops),
        cmocka_unit_test(test_bad_settings_exit_2),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
