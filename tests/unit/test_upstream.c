/* SPDX-License-Identifier: MIT */
/* test_upstream.c — the client between services (upstream.h) against a real HTTP server
 * (libmicrohttpd in this process, told per test what to answer): keep-alive reuse, the
 * X-Internal-Token and traceparent headers, retries only where repeating is safe, the deadline
 * with a server that never answers in time, the circuit breaker opening on a dead upstream
 * and closing once it is back, the metrics, and the internal token check. */
#include <microhttpd.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "emporium/buf.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/metrics.h"
#include "emporium/upstream.h"

/* ---------------------------------------------------------------- the server */

struct srv {
    struct MHD_Daemon *d;
    int port;
    atomic_int requests, connections;
    atomic_int fail_next; /* answer 503 to this many requests first */
    atomic_bool hold;     /* keep the handler waiting until released */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char last_auth[128], last_trace[80], last_idem[64], last_body[256];
};

static void on_conn(void *cls, struct MHD_Connection *c, void **socket_ctx,
                    enum MHD_ConnectionNotificationCode code)
{
    struct srv *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&s->connections, 1);
}

static void copy_hdr(struct MHD_Connection *c, const char *name, char *out, size_t cap)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    snprintf(out, cap, "%s", v ? v : "");
}

static enum MHD_Result on_req(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *data,
                              size_t *size, void **req_cls)
{
    struct srv *s = cls;
    if (!*req_cls) { /* first call: headers only (answering now would close the connection) */
        *req_cls = s;
        pthread_mutex_lock(&s->mu);
        s->last_body[0] = 0;
        pthread_mutex_unlock(&s->mu);
        return MHD_YES;
    }
    if (*size) {
        pthread_mutex_lock(&s->mu);
        size_t have = strlen(s->last_body), n = *size;
        if (have + n >= sizeof s->last_body)
            n = sizeof s->last_body - have - 1;
        memcpy(s->last_body + have, data, n);
        s->last_body[have + n] = 0;
        pthread_mutex_unlock(&s->mu);
        *size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&s->requests, 1);
    pthread_mutex_lock(&s->mu);
    copy_hdr(c, "X-Internal-Token", s->last_auth, sizeof s->last_auth);
    copy_hdr(c, "traceparent", s->last_trace, sizeof s->last_trace);
    copy_hdr(c, "Idempotency-Key", s->last_idem, sizeof s->last_idem);
    while (atomic_load(&s->hold))
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    int status = 200;
    const char *body = "{\"ok\":true,\"path\":\"x\"}";
    if (atomic_load(&s->fail_next) > 0) {
        atomic_fetch_sub(&s->fail_next, 1);
        status = 503;
        body = "{\"error\":{\"code\":\"unavailable\"}}";
    } else if (!strcmp(url, "/missing")) {
        status = 404;
        body = "{\"error\":{\"code\":\"not_found\"}}";
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static void srv_start(struct srv *s, int port)
{
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                                MHD_USE_ERROR_LOG,
                            (uint16_t)port, NULL, NULL, on_req, s, MHD_OPTION_NOTIFY_CONNECTION,
                            on_conn, s, MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
    assert_non_null(s->d);
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = i->port;
}

static struct srv *srv_new(void)
{
    struct srv *s = calloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    srv_start(s, 0);
    return s;
}

static void srv_release(struct srv *s)
{
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->hold, false);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void srv_free(struct srv *s)
{
    srv_release(s);
    if (s->d)
        MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

static struct upstream *up_new(const char *name, int port, int timeout_ms, int breaker_open_ms)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    struct upstream_options o = {.name = name,
                                 .base_url = url,
                                 .token = "secret-token-0123456789",
                                 .timeout_ms = timeout_ms,
                                 .breaker_failures = 3,
                                 .breaker_open_ms = breaker_open_ms};
    struct upstream *u = NULL;
    assert_int_equal(upstream_new(&o, &u), 0);
    return u;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---------------------------------------------------------------- tests */

static void test_call_headers_keepalive(void **state)
{
    struct srv *s = srv_new();
    struct upstream *u = up_new("t_basic", s->port, 5000, 1000);
    upstream_trace_set("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    for (int i = 0; i < 20; i++) {
        int status = 0;
        json_t *resp = NULL;
        assert_int_equal(upstream_call(u, "GET", "/x", NULL, NULL, 0, 0, 0, &status, &resp), 0);
        assert_int_equal(status, 200);
        assert_non_null(resp);
        assert_true(json_is_true(json_object_get(resp, "ok")));
        json_decref(resp);
    }
    assert_int_equal(atomic_load(&s->requests), 20);
    /* one connection for twenty calls: the pooled handle kept it open */
    assert_int_equal(atomic_load(&s->connections), 1);
    assert_string_equal(s->last_auth, "secret-token-0123456789");
    /* the caller's trace id, a new span id */
    assert_int_equal(strlen(s->last_trace), 55);
    assert_memory_equal(s->last_trace, "00-0af7651916cd43dd8448eb211c80319c-", 36);
    assert_memory_not_equal(s->last_trace + 36, "b7ad6b7169203331", 16);
    upstream_trace_set(NULL);
    int status = 0;
    assert_int_equal(upstream_call(u, "GET", "/x", NULL, NULL, 0, 0, 0, &status, NULL), 0);
    assert_memory_not_equal(s->last_trace + 3, "0af7651916cd43dd8448eb211c80319c", 32);

    /* a JSON body and an idempotency key go out; a 404 is a response, not a failure */
    json_t *body = json_pack("{s:i}", "quantity", 2);
    assert_int_equal(upstream_call_json(u, "POST", "/missing", "key-1", body, 0, &status, NULL), 0);
    json_decref(body);
    assert_int_equal(status, 404);
    assert_int_equal(upstream_status_err(status), ERR_NOTFOUND);
    assert_string_equal(s->last_idem, "key-1");
    assert_string_equal(s->last_body, "{\"quantity\":2}");
    upstream_free(u);
    srv_free(s);
}

static void test_retries_only_when_safe(void **state)
{
    struct srv *s = srv_new();
    struct upstream *u = up_new("t_retry", s->port, 10000, 1000);
    int status = 0;
    /* GET: two 503s, then an answer, within one call */
    atomic_store(&s->fail_next, 2);
    assert_int_equal(upstream_call(u, "GET", "/x", NULL, NULL, 0, 0, 0, &status, NULL), 0);
    assert_int_equal(status, 200);
    assert_int_equal(atomic_load(&s->requests), 3);
    /* POST without a key: never repeated, the 503 is the answer */
    atomic_store(&s->fail_next, 1);
    assert_int_equal(upstream_call(u, "POST", "/x", NULL, "{}", 2, 0, 0, &status, NULL), 0);
    assert_int_equal(status, 503);
    assert_int_equal(upstream_status_err(status), ERR_UNAVAILABLE);
    assert_int_equal(atomic_load(&s->requests), 4);
    /* POST with an idempotency key, or flagged idempotent: repeated */
    atomic_store(&s->fail_next, 1);
    assert_int_equal(upstream_call(u, "POST", "/x", "k2", "{}", 2, 0, 0, &status, NULL), 0);
    assert_int_equal(status, 200);
    assert_int_equal(atomic_load(&s->requests), 6);
    atomic_store(&s->fail_next, 1);
    assert_int_equal(
        upstream_call(u, "POST", "/x", NULL, "{}", 2, UPSTREAM_IDEMPOTENT, 0, &status, NULL), 0);
    assert_int_equal(status, 200);
    assert_int_equal(atomic_load(&s->requests), 8);
    upstream_free(u);
    srv_free(s);
}

static void test_deadline(void **state)
{
    struct srv *s = srv_new();
    struct upstream *u = up_new("t_deadline", s->port, 10000, 1000);
    atomic_store(&s->hold, true);
    int status = 0;
    /* the server holds the request until released: only the deadline can end this call */
    assert_int_equal(upstream_call(u, "GET", "/x", NULL, NULL, 0, 0, 300, &status, NULL),
                     ERR_UNAVAILABLE);
    assert_int_equal(status, 0);
    srv_release(s);
    assert_int_equal(upstream_call(u, "GET", "/x", NULL, NULL, 0, 0, 0, &status, NULL), 0);
    assert_int_equal(status, 200);
    upstream_free(u);
    srv_free(s);
}

static void test_breaker(void **state)
{
    /* a port with nothing listening: take one from a server, then stop it */
    struct srv *s = srv_new();
    int port = s->port;
    MHD_stop_daemon(s->d);
    s->d = NULL;
    struct upstream *u = up_new("t_breaker", port, 5000, 300);
    int status;
    for (int i = 0; i < 3; i++) /* POSTs: one attempt each, three failures in a row */
        assert_int_equal(upstream_call(u, "POST", "/x", NULL, "{}", 2, 0, 0, &status, NULL),
                         ERR_UNAVAILABLE);
    assert_false(upstream_available(u));
    /* open: the next call is refused at once, and counted as such */
    srv_start(s, port);
    assert_int_equal(upstream_call(u, "POST", "/x", NULL, "{}", 2, 0, 0, &status, NULL),
                     ERR_UNAVAILABLE);
    assert_int_equal(atomic_load(&s->requests), 0);
    struct buf m = BUF_INIT(0);
    metrics_write_all(&m);
    buf_append(&m, "", 1);
    assert_non_null(strstr(
        m.p, "emporium_upstream_requests_total{upstream=\"t_breaker\",result=\"rejected\"} 1"));
    assert_non_null(strstr(m.p, "emporium_upstream_breaker_open{upstream=\"t_breaker\"} 1"));
    assert_non_null(
        strstr(m.p, "emporium_upstream_breaker_opened_total{upstream=\"t_breaker\"} 1"));
    assert_non_null(strstr(m.p, "emporium_upstream_request_seconds_bucket{upstream=\"t_breaker\","
                                "le=\"+Inf\"} 4"));
    buf_free(&m);
    /* after the open period one probe goes through and closes it (wait for the condition) */
    for (int i = 0; i < 3000 && !upstream_available(u); i++)
        sleep_ms(10);
    assert_true(upstream_available(u));
    assert_int_equal(upstream_call(u, "POST", "/x", NULL, "{}", 2, 0, 0, &status, NULL), 0);
    assert_int_equal(status, 200);
    assert_int_equal(atomic_load(&s->requests), 1);
    m = BUF_INIT(0);
    metrics_write_all(&m);
    buf_append(&m, "", 1);
    assert_non_null(strstr(m.p, "emporium_upstream_breaker_open{upstream=\"t_breaker\"} 0"));
    buf_free(&m);
    upstream_free(u);
    srv_free(s);
}

static void test_internal_check(void **state)
{
    struct config c;
    config_defaults(&c);
    assert_int_equal(upstream_internal_check(&c, NULL), ERR_UNAUTHORIZED);
    /* no token configured: internal routes are closed to everyone */
    assert_int_equal(upstream_internal_check(&c, "anything-at-all-here"), ERR_FORBIDDEN);
    c.internal_token = "secret-token-0123456789";
    assert_int_equal(upstream_internal_check(&c, NULL), ERR_UNAUTHORIZED);
    assert_int_equal(upstream_internal_check(&c, ""), ERR_UNAUTHORIZED);
    assert_int_equal(upstream_internal_check(&c, "secret-token-012345678"), ERR_FORBIDDEN);
    assert_int_equal(upstream_internal_check(&c, "secret-token-01234567890"), ERR_FORBIDDEN);
    assert_int_equal(upstream_internal_check(&c, "Secret-token-0123456789"), ERR_FORBIDDEN);
    assert_int_equal(upstream_internal_check(&c, "secret-token-0123456789"), 0);
}

/* EMPORIUM_<SVC>_URL and EMPORIUM_INTERNAL_TOKEN are validated at start: a bad value is an
 * error (main exits 2 with the variable named), never a silent default. */
static void test_settings(void **state)
{
    static const char *const vars[] = {"EMPORIUM_INVENTORY_URL", "EMPORIUM_PAYMENT_URL",
                                       "EMPORIUM_INTERNAL_TOKEN", "EMPORIUM_UPSTREAM_TIMEOUT_MS"};
    struct config c;
    static const char *const bad_urls[] = {"ftp://x:1",    "http://",      "http://a:1/path",
                                           "http://a b:1", "http://u@a:1", "127.0.0.1:80"};
    setenv("EMPORIUM_INTERNAL_TOKEN", "secret-token-0123456789", 1);
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        setenv("EMPORIUM_INVENTORY_URL", bad_urls[i], 1);
        assert_int_equal(config_from_env(&c), ERR_INVALID);
    }
    setenv("EMPORIUM_INVENTORY_URL", "http://127.0.0.1:28504", 1);
    setenv("EMPORIUM_PAYMENT_URL", "https://payments.internal:8443", 1);
    assert_int_equal(config_from_env(&c), 0);
    assert_string_equal(c.inventory_url, "http://127.0.0.1:28504");
    assert_string_equal(c.payment_url, "https://payments.internal:8443");
    assert_null(c.shipping_url);
    assert_int_equal(c.upstream_timeout_ms, 2000);
    setenv("EMPORIUM_UPSTREAM_TIMEOUT_MS", "0", 1);
    assert_int_equal(config_from_env(&c), ERR_INVALID);
    unsetenv("EMPORIUM_UPSTREAM_TIMEOUT_MS");
    setenv("EMPORIUM_INTERNAL_TOKEN", "short", 1); /* under 16 bytes */
    assert_int_equal(config_from_env(&c), ERR_INVALID);
    unsetenv("EMPORIUM_INTERNAL_TOKEN"); /* a URL without the token it needs */
    assert_int_equal(config_from_env(&c), ERR_INVALID);
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    assert_int_equal(config_from_env(&c), 0);
    assert_null(c.inventory_url);
    assert_null(c.internal_token);
}

static void test_bad_arguments(void **state)
{
    struct upstream *u = NULL;
    struct upstream_options o = {.name = "x"};
    assert_int_equal(upstream_new(&o, &u), ERR_INVALID);
    assert_null(u);
    u = up_new("t_args", 9, 1000, 1000);
    int status;
    assert_int_equal(upstream_call(u, "GET", "no-slash", NULL, NULL, 0, 0, 0, &status, NULL),
                     ERR_INVALID);
    upstream_free(u);
    upstream_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_headers_keepalive),
        cmocka_unit_test(test_retries_only_when_safe),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_breaker),
        cmocka_unit_test(test_internal_check),
        cmocka_unit_test(test_settings),
        cmocka_unit_test(test_bad_arguments),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    metrics_remove_all();
    return rc;
}
