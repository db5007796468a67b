/* SPDX-License-Identifier: MIT */
/* test_http.c — what the HTTP core promises every route, through HTTP against the real
 * binary: slow handlers never stall the request threads (ROUTE_OFFLOAD) and a full slow-work
 * pool answers 503; the strict per-address limit of register and login; Cache-Control on
 * user-specific responses; Allow, OPTIONS and CORS; WWW-Authenticate; unknown query
 * parameters refused; Location on 201; the build-info metric; a port in use refused.
 *
 * No test waits a fixed time: each waits for the condition it needs (the server's own
 * in-flight gauge, a counter of finished requests) with a generous deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "events_wait.h"
#include "harness.h"

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Polls until the gauge `name` reaches `want` (emporium_http_requests_in_flight counts the
 * /metrics request itself); false after 60 s. */
static bool wait_gauge(struct th_server *s, const char *name, long want)
{
    int64_t deadline = mono_us() + 60 * 1000000LL;
    while (mono_us() < deadline) {
        if (th_metric(s, name) >= (double)want)
            return true;
        usleep(2000);
    }
    return false;
}

/* Polls until nothing but the /metrics request itself is in flight and no slow-work thread
 * is busy: a request is counted until MHD reports it complete, and a slow-work thread until
 * it has handed its answer over, both of which can be a moment after the client had it (a
 * registration's thread still counted as busy once made the next checkout a 503 in CI). */
static bool wait_idle(struct th_server *s)
{
    int64_t deadline = mono_us() + 60 * 1000000LL;
    while (mono_us() < deadline) {
        struct th_resp r;
        bool idle = th_req(s, "GET", "/metrics", NULL, NULL, &r) == 0 && r.status == 200 &&
                    th_metric_in(r.body, "emporium_http_requests_in_flight") == 1 &&
                    th_metric_in(r.body, "emporium_offload_running") == 0 &&
                    th_metric_in(r.body, "emporium_offload_waiting") == 0;
        th_resp_free(&r);
        if (idle)
            return true;
        usleep(2000);
    }
    return false;
}

/* Creates a product with stock and returns its id (malloc'd). */
static char *make_product(struct th_server *s, const char *adm, const char *sku, int stock)
{
    struct th_resp r;
    assert_int_equal(th_call(s, "POST", "/api/v1/products", adm, &r,
                             "{\"sku\":\"%s\",\"name\":\"Lamp %s\",\"description\":\"d\","
                             "\"category\":\"lighting\",\"price\":{\"amount\":1000,"
                             "\"currency\":\"USD\"}}",
                             sku, sku),
                     0);
    assert_int_equal(r.status, 201);
    char *id = strdup(th_jstr(r.json, "id"));
    th_resp_free(&r);
    char path[80];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", id);
    assert_int_equal(th_call(s, "PUT", path, adm, &r, "{\"available\":%d}", stock), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    return id;
}

/* ---- slow work never stalls the request threads ------------------------------------- */

struct slow {
    struct th_server *s;
    char token[200];
    char email[64];
    char key[40];
    bool checkout;
    atomic_int *completed;
    long status;
    int rc;
};

static const char order_body[] =
    "{\"shipping_address\":{\"name\":\"D\",\"line1\":\"1 Road\",\"city\":\"Town\","
    "\"postal_code\":\"12345\",\"country\":\"US\"},\"payment\":{\"card_number\":"
    "\"4242424242424242\",\"exp_month\":12,\"exp_year\":2040,\"cvc\":\"123\"},"
    "\"shipping_method\":\"standard\"}";

static void *slow_request(void *arg)
{
    struct slow *w = arg;
    struct th_resp r;
    if (w->checkout) {
        char auth[240], idem[80];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", w->token);
        snprintf(idem, sizeof idem, "Idempotency-Key: %s", w->key);
        const char *h[] = {"Content-Type: application/json", auth, idem, NULL};
        w->rc = th_req(w->s, "POST", "/api/v1/orders", order_body, h, &r);
    } else {
        char body[200];
        snprintf(body, sizeof body,
                 "{\"email\":\"%s\",\"password\":\"a long password\",\"name\":\"Slow\"}", w->email);
        const char *h[] = {"Content-Type: application/json", NULL};
        w->rc = th_req(w->s, "POST", "/api/v1/auth/register", body, h, &r);
    }
    atomic_fetch_add(w->completed, 1);
    if (w->rc == 0) {
        w->status = r.status;
        th_resp_free(&r);
    }
    return NULL;
}

/* Issue 9: with a slow payment provider, 8 checkouts and 8 registrations in flight must
 * not delay anyone else. The checkouts hold 8 slow-work threads for 5 s each; the pool has
 * exactly 8 (EMPORIUM_OFFLOAD_THREADS=8), so the registrations that come next wait in its
 * queue: all 16 are in flight, none can finish before the provider answers, and the request
 * threads (2 here) must still serve cached product reads and /health at once. Before
 * ROUTE_OFFLOAD the first two checkouts held both request threads for 5 s, so not even
 * /metrics answered until they were done and the test failed at its first wait. */
static void test_slow_work_does_not_stall(void **state)
{
    struct th_server s;
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_PAYMENT_LATENCY_MS=5000",
                         "EMPORIUM_OFFLOAD_THREADS=8", "EMPORIUM_THREADS=2", NULL};
    assert_int_equal(th_start(&s, env, NULL), 0);
    char *adm = th_admin_token(&s);
    assert_non_null(adm);
    char *pid = make_product(&s, adm, "STALL-1", 100);
    char product_path[80];
    snprintf(product_path, sizeof product_path, "/api/v1/products/%s", pid);
    struct th_resp r;
    assert_int_equal(th_req(&s, "GET", product_path, NULL, NULL, &r), 0); /* now cached */
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    enum { N = 8 };
    atomic_int completed = 0;
    struct slow w[2 * N];
    memset(w, 0, sizeof w);
    for (int i = 0; i < N; i++) {
        struct slow *c = &w[i];
        c->s = &s;
        c->checkout = true;
        c->completed = &completed;
        snprintf(c->email, sizeof c->email, "buyer%d@example.com", i);
        snprintf(c->key, sizeof c->key, "stall-%d", i);
        char *tok = th_register(&s, c->email, "a long password");
        assert_non_null(tok);
        snprintf(c->token, sizeof c->token, "%s", tok);
        free(tok);
        assert_int_equal(th_call(&s, "POST", "/api/v1/cart/items", c->token, &r,
                                 "{\"product_id\":\"%s\",\"quantity\":1}", pid),
                         0);
        assert_int_equal(r.status, 200);
        th_resp_free(&r);
        struct slow *g = &w[N + i];
        g->s = &s;
        g->completed = &completed;
        snprintf(g->email, sizeof g->email, "newcomer%d@example.com", i);
    }
    assert_true(wait_idle(&s));
    long base = 1; /* the /metrics request itself */

    pthread_t t[2 * N];
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&t[i], NULL, slow_request, &w[i]), 0);
    /* The checkouts hold the whole pool (in flight alone is not enough: a request is counted
     * from its headers, before its handler reaches the pool). */
    assert_true(wait_gauge(&s, "emporium_offload_running", N));
    for (int i = N; i < 2 * N; i++)
        assert_int_equal(pthread_create(&t[i], NULL, slow_request, &w[i]), 0);
    assert_true(wait_gauge(&s, "emporium_offload_waiting", N));
    assert_true(wait_gauge(&s, "emporium_http_requests_in_flight", base + 2 * N));
    assert_int_equal(atomic_load(&completed), 0);

    /* All 16 are in flight: the fast requests. */
    enum { ROUNDS = 10 };
    int64_t lat_product[ROUNDS], lat_health[ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        int64_t t0 = mono_us();
        assert_int_equal(th_req(&s, "GET", product_path, NULL, NULL, &r), 0);
        lat_product[i] = mono_us() - t0;
        assert_int_equal(r.status, 200);
        th_resp_free(&r);
        t0 = mono_us();
        assert_int_equal(th_req(&s, "GET", "/health", NULL, NULL, &r), 0);
        lat_health[i] = mono_us() - t0;
        assert_int_equal(r.status, 200);
        th_resp_free(&r);
    }
    int done_before = atomic_load(&completed);
    fprintf(stderr, "fast requests while 16 slow ones were in flight (ms):\n  product:");
    for (int i = 0; i < ROUNDS; i++)
        fprintf(stderr, " %.1f", (double)lat_product[i] / 1000.0);
    fprintf(stderr, "\n  health: ");
    for (int i = 0; i < ROUNDS; i++)
        fprintf(stderr, " %.1f", (double)lat_health[i] / 1000.0);
    fprintf(stderr, "\n  slow requests completed by then: %d of %d\n", done_before, 2 * N);
    assert_int_equal(done_before, 0);

    for (int i = 0; i < 2 * N; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2 * N; i++) {
        assert_int_equal(w[i].rc, 0);
        if (w[i].status != 201)
            fail_msg("slow request %d (%s) answered %ld", i,
                     w[i].checkout ? "checkout" : "register", w[i].status);
    }
    free(pid);
    free(adm);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

/* A full slow-work pool refuses more slow work with 503 + Retry-After in the error
 * envelope, and serves it again once there is room. */
static void test_offload_queue_full(void **state)
{
    struct th_server s;
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_PAYMENT_LATENCY_MS=6000",
                         "EMPORIUM_OFFLOAD_THREADS=1", "EMPORIUM_OFFLOAD_QUEUE=0", NULL};
    assert_int_equal(th_start(&s, env, NULL), 0);
    char *adm = th_admin_token(&s);
    assert_non_null(adm);
    char *pid = make_product(&s, adm, "FULL-1", 10);
    atomic_int completed = 0;
    struct slow c = {.s = &s, .checkout = true, .completed = &completed};
    snprintf(c.key, sizeof c.key, "full-1");
    assert_true(wait_idle(&s)); /* the admin's login has left the one slow-work thread */
    char *tok = th_register(&s, "full@example.com", "a long password");
    assert_non_null(tok);
    snprintf(c.token, sizeof c.token, "%s", tok);
    free(tok);
    struct th_resp r;
    assert_int_equal(th_call(&s, "POST", "/api/v1/cart/items", c.token, &r,
                             "{\"product_id\":\"%s\",\"quantity\":1}", pid),
                     0);
    th_resp_free(&r);
    pthread_t t;
    assert_true(wait_idle(&s));
    assert_int_equal(pthread_create(&t, NULL, slow_request, &c), 0);
    /* In flight is not enough: the checkout must hold the one slow-work thread (its body may
     * still be on the way when it is first counted in flight). */
    assert_true(wait_gauge(&s, "emporium_offload_running", 1));
    /* The one slow-work thread is busy and nothing may wait: a login is refused. */
    assert_int_equal(th_call(&s, "POST", "/api/v1/auth/login", NULL, &r,
                             "{\"email\":\"full@example.com\",\"password\":\"a long password\"}"),
                     0);
    int done = atomic_load(&completed);
    if (done != 0) { /* the pool really was busy with the checkout */
        pthread_join(t, NULL);
        fail_msg("the checkout was answered (rc %d, status %ld) before the login (status %ld)",
                 c.rc, c.status, r.status);
    }
    assert_true(th_is_error(&r, 503, "overloaded", NULL));
    char v[32];
    assert_non_null(th_header(&r, "Retry-After", v, sizeof v));
    assert_true(atoi(v) >= 1);
    th_resp_free(&r);
    /* Fast routes are unaffected. */
    assert_int_equal(th_req(&s, "GET", "/health", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    pthread_join(t, NULL);
    assert_int_equal(c.status, 201);
    /* Once the checkout is done a login is served again: as soon as the one thread is free
     * (it may still be finishing the checkout's work after the answer went out), so a 503
     * overloaded is asked again, as a client honouring Retry-After would. */
    int rejected_after = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        assert_int_equal(
            th_call(&s, "POST", "/api/v1/auth/login", NULL, &r,
                    "{\"email\":\"full@example.com\",\"password\":\"a long password\"}"),
            0);
        if (r.status != 503)
            break;
        assert_true(th_is_error(&r, 503, "overloaded", NULL));
        th_resp_free(&r);
        rejected_after++;
        struct timespec now, pause = {0, 50 * 1000000L};
        clock_gettime(CLOCK_MONOTONIC, &now);
        assert_true(now.tv_sec - t0.tv_sec < 60);
        nanosleep(&pause, NULL);
    }
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(th_req(&s, "GET", "/metrics", NULL, NULL, &r), 0);
    char want[64];
    snprintf(want, sizeof want, "\nemporium_offload_rejected_total %d\n", 1 + rejected_after);
    assert_non_null(strstr(r.body, want));
    th_resp_free(&r);
    free(pid);
    free(adm);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

/* "EMPORIUM_REDIS_PREFIX=…" for a server whose rate-limit budgets must start full. With Redis,
 * the buckets are shared by every process on the same prefix, also one after another (as
 * they must be), so each such server gets a prefix of its own. */
static const char *own_budgets(char *buf, size_t cap)
{
    static int n;
    const char *base = getenv("EMPORIUM_REDIS_PREFIX");
    snprintf(buf, cap, "EMPORIUM_REDIS_PREFIX=%shttp%d_%d:", base ? base : "", (int)getpid(), ++n);
    return buf;
}

/* Register and login share a tight per-address limit, apart from the service's normal one. */
static void test_strict_limit_register_login(void **state)
{
    struct th_server s;
    char prefix[96];
    const char *env[] = {"EMPORIUM_RL_AUTH=0.01:3", own_budgets(prefix, sizeof prefix), NULL};
    assert_int_equal(th_start(&s, env, NULL), 0);
    struct th_resp r;
    char v[32];
    const char *paths[] = {"/api/v1/auth/login", "/api/v1/auth/register", "/api/v1/auth/login"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(th_req(&s, "POST", paths[i], "{}", NULL, &r), 0);
        assert_int_equal(r.status, 400); /* the (empty) body is looked at: not limited yet */
        assert_non_null(th_header(&r, "RateLimit-Limit", v, sizeof v));
        assert_string_equal(v, "3");
        th_resp_free(&r);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(th_req(&s, "POST", paths[i], "{}", NULL, &r), 0);
        assert_true(th_is_error(&r, 429, "rate_limited", NULL));
        assert_non_null(th_header(&r, "Retry-After", v, sizeof v));
        th_resp_free(&r);
    }
    /* Other routes of the same service and address keep their generous limit. */
    assert_int_equal(th_req(&s, "GET", "/api/v1/users/me", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 401);
    th_resp_free(&r);
    assert_int_equal(th_req(&s, "GET", "/api/v1/products", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

/* A login from `xff` (NULL: no header); returns the status. */
static long login_from(struct th_server *s, const char *xff)
{
    char h[128];
    snprintf(h, sizeof h, "X-Forwarded-For: %s", xff ? xff : "");
    const char *hs[] = {"Content-Type: application/json", xff ? h : NULL, NULL};
    struct th_resp r;
    assert_int_equal(th_req(s, "POST", "/api/v1/auth/login", "{}", hs, &r), 0);
    long st = r.status;
    th_resp_free(&r);
    return st;
}

/* Behind the gateway (EMPORIUM_TRUSTED_PROXIES), per-address limits see the client that the
 * gateway names in X-Forwarded-For; what a client writes into that header itself proves
 * nothing, and without a trusted proxy the header is ignored. */
static void test_trusted_proxies(void **state)
{
    struct th_server s;
    char prefix[96];
    const char *env[] = {"EMPORIUM_RL_AUTH=0.01:2", "EMPORIUM_TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8",
                         own_budgets(prefix, sizeof prefix), NULL};
    assert_int_equal(th_start(&s, env, NULL), 0);
    /* Client A, through two trusted hops (127.0.0.1 is the peer, 10.1.2.3 another proxy). */
    assert_int_equal(login_from(&s, "198.51.100.1, 10.1.2.3"), 400);
    assert_int_equal(login_from(&s, "198.51.100.1"), 400);
    assert_int_equal(login_from(&s, "198.51.100.1"), 429);
    /* A spoofed left part does not make a new client: the gateway appended the real one. */
    assert_int_equal(login_from(&s, "203.0.113.77, 198.51.100.1"), 429);
    /* Client B has its own budget. */
    assert_int_equal(login_from(&s, "198.51.100.2"), 400);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);

    const char *env2[] = {"EMPORIUM_RL_AUTH=0.01:2", own_budgets(prefix, sizeof prefix), NULL};
    assert_int_equal(th_start(&s, env2, NULL), 0);
    assert_int_equal(login_from(&s, "198.51.100.1"), 400);
    assert_int_equal(login_from(&s, "198.51.100.2"), 400);
    assert_int_equal(login_from(&s, "198.51.100.3"), 429); /* all one peer: 127.0.0.1 */
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

/* ---- response headers (one server for the rest of the suite) ------------------------- */

static struct th_server shared;
static char *shared_admin;

static int shared_start(void **state)
{
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off",
                         "EMPORIUM_CORS_ORIGINS=https://shop.example,https://admin.example", NULL};
    if (th_start(&shared, env, NULL) != 0)
        return -1;
    shared_admin = th_admin_token(&shared);
    return shared_admin ? 0 : -1;
}

static int shared_stop(void **state) { return th_suite_stop(&shared, shared_admin); }

static void assert_private(const struct th_resp *r, bool want, const char *what)
{
    char v[128];
    const char *cc = th_header(r, "Cache-Control", v, sizeof v);
    bool is = cc && strstr(cc, "private") && strstr(cc, "no-store");
    if (is != want)
        fail_msg("%s: Cache-Control %s (status %ld)", what, cc ? cc : "(none)", r->status);
}

static void test_private_responses(void **state)
{
    char *pid = make_product(&shared, shared_admin, "PRIV-1", 10);
    char *tok = th_register(&shared, "private@example.com", "a long password");
    assert_non_null(tok);
    struct th_resp r;
    char path[80];
    snprintf(path, sizeof path, "/api/v1/products/%s", pid);

    assert_int_equal(th_call(&shared, "GET", "/api/v1/users/me", tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_private(&r, true, "users/me");
    th_resp_free(&r);
    assert_int_equal(th_call(&shared, "GET", "/api/v1/cart", tok, &r, NULL), 0);
    assert_private(&r, true, "cart with a bearer token");
    th_resp_free(&r);
    assert_int_equal(th_call(&shared, "GET", "/api/v1/orders", tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_private(&r, true, "orders");
    th_resp_free(&r);
    /* Even a public route, when the request carried a token (a shared cache must not keep
     * what one user was shown), and even an error. */
    assert_int_equal(th_call(&shared, "GET", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_private(&r, true, "product with a bearer token");
    th_resp_free(&r);
    assert_int_equal(th_call(&shared, "GET", "/api/v1/users/me", "not-a-token", &r, NULL), 0);
    assert_int_equal(r.status, 401);
    assert_private(&r, true, "401 to a bearer token");
    th_resp_free(&r);

    /* A guest cart: the response that hands out a cart token, and requests that carry one. */
    assert_int_equal(th_call(&shared, "POST", "/api/v1/cart/items", NULL, &r,
                             "{\"product_id\":\"%s\",\"quantity\":1}", pid),
                     0);
    assert_int_equal(r.status, 200);
    assert_private(&r, true, "new guest cart");
    char hdr[300], cart[200];
    assert_non_null(th_header(&r, "X-Cart-Token", cart, sizeof cart));
    th_resp_free(&r);
    snprintf(hdr, sizeof hdr, "X-Cart-Token: %s", cart);
    const char *h[] = {hdr, NULL};
    assert_int_equal(th_req(&shared, "GET", "/api/v1/cart", NULL, h, &r), 0);
    assert_int_equal(r.status, 200);
    assert_private(&r, true, "guest cart");
    th_resp_free(&r);
    assert_int_equal(th_req(&shared, "GET", path, NULL, h, &r), 0);
    assert_private(&r, true, "product with a cart token");
    th_resp_free(&r);

    /* Anonymous public reads stay cacheable. */
    assert_int_equal(th_req(&shared, "GET", path, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_private(&r, false, "anonymous product");
    th_resp_free(&r);
    assert_int_equal(th_req(&shared, "GET", "/health", NULL, NULL, &r), 0);
    assert_private(&r, false, "health");
    th_resp_free(&r);
    free(tok);
    free(pid);
}

static void test_allow_options_cors(void **state)
{
    struct th_resp r;
    char v[256];

    /* 405 lists the path's real methods. */
    assert_int_equal(th_req(&shared, "DELETE", "/api/v1/orders", NULL, NULL, &r), 0);
    assert_true(th_is_error(&r, 405, "method_not_allowed", NULL));
    assert_non_null(th_header(&r, "Allow", v, sizeof v));
    assert_string_equal(v, "GET, HEAD, POST, OPTIONS");
    th_resp_free(&r);
    assert_int_equal(th_req(&shared, "POST", "/api/v1/products/123", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 405);
    assert_non_null(th_header(&r, "Allow", v, sizeof v));
    assert_string_equal(v, "GET, HEAD, PATCH, DELETE, OPTIONS");
    th_resp_free(&r);

    /* OPTIONS: 204 with Allow, no CORS headers without an allowed Origin. */
    assert_int_equal(th_req(&shared, "OPTIONS", "/api/v1/cart/items/42", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 204);
    assert_non_null(th_header(&r, "Allow", v, sizeof v));
    assert_string_equal(v, "PATCH, DELETE, OPTIONS");
    assert_null(th_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    th_resp_free(&r);
    assert_int_equal(th_req(&shared, "OPTIONS", "/api/v1/nothing-here", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);

    /* A preflight from an allowed origin. */
    const char *pre[] = {"Origin: https://admin.example", "Access-Control-Request-Method: POST",
                         "Access-Control-Request-Headers: authorization, content-type", NULL};
    assert_int_equal(th_req(&shared, "OPTIONS", "/api/v1/orders", NULL, pre, &r), 0);
    assert_int_equal(r.status, 204);
    assert_non_null(th_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    assert_string_equal(v, "https://admin.example");
    assert_non_null(th_header(&r, "Access-Control-Allow-Methods", v, sizeof v));
    assert_non_null(strstr(v, "POST"));
    assert_non_null(th_header(&r, "Access-Control-Allow-Headers", v, sizeof v));
    assert_non_null(strstr(v, "Authorization"));
    assert_non_null(strstr(v, "Content-Type"));
    assert_non_null(th_header(&r, "Access-Control-Max-Age", v, sizeof v));
    assert_non_null(th_header(&r, "Vary", v, sizeof v));
    assert_non_null(strstr(v, "Origin"));
    th_resp_free(&r);
    /* … from another origin: answered, without any CORS header. */
    const char *evil[] = {"Origin: https://evil.example", "Access-Control-Request-Method: POST",
                          NULL};
    assert_int_equal(th_req(&shared, "OPTIONS", "/api/v1/orders", NULL, evil, &r), 0);
    assert_int_equal(r.status, 204);
    assert_null(th_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    assert_null(th_header(&r, "Access-Control-Allow-Methods", v, sizeof v));
    th_resp_free(&r);

    /* Actual requests: the allowed origin gets Allow-Origin and the exposed headers. */
    const char *ok[] = {"Origin: https://shop.example", NULL};
    assert_int_equal(th_req(&shared, "GET", "/api/v1/products", NULL, ok, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(th_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    assert_string_equal(v, "https://shop.example");
    assert_non_null(th_header(&r, "Access-Control-Expose-Headers", v, sizeof v));
    assert_non_null(strstr(v, "X-Cart-Token"));
    th_resp_free(&r);
    const char *bad[] = {"Origin: https://shop.example.evil", NULL};
    assert_int_equal(th_req(&shared, "GET", "/api/v1/products", NULL, bad, &r), 0);
    assert_int_equal(r.status, 200);
    assert_null(th_header(&r, "Access-Control-Allow-Origin", v, sizeof v));
    th_resp_free(&r);
}

static void test_www_authenticate(void **state)
{
    struct th_resp r;
    char v[128];
    assert_int_equal(th_req(&shared, "GET", "/api/v1/users/me", NULL, NULL, &r), 0);
    assert_true(th_is_error(&r, 401, "unauthorized", NULL));
    assert_non_null(th_header(&r, "WWW-Authenticate", v, sizeof v));
    assert_int_equal(strncmp(v, "Bearer", 6), 0);
    th_resp_free(&r);
    assert_int_equal(th_call(&shared, "GET", "/api/v1/orders", "expired-or-made-up", &r, NULL), 0);
    assert_int_equal(r.status, 401);
    assert_non_null(th_header(&r, "WWW-Authenticate", v, sizeof v));
    assert_int_equal(strncmp(v, "Bearer", 6), 0);
    assert_non_null(strstr(v, "error=\"invalid_token\""));
    th_resp_free(&r);
    /* 403 is not a challenge. */
    char *tok = th_register(&shared, "www@example.com", "a long password");
    assert_int_equal(th_call(&shared, "GET", "/api/v1/admin/orders", tok, &r, NULL), 0);
    assert_int_equal(r.status, 403);
    assert_null(th_header(&r, "WWW-Authenticate", v, sizeof v));
    th_resp_free(&r);
    free(tok);
}

static void test_unknown_query_parameters(void **state)
{
    char *tok = th_register(&shared, "query@example.com", "a long password");
    struct th_resp r;
    /* Documented parameters are accepted … */
    assert_int_equal(
        th_req(&shared, "GET", "/api/v1/products?q=lamp&limit=5&sort=price_asc", NULL, NULL, &r),
        0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(th_call(&shared, "GET", "/api/v1/orders?limit=2", tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    /* … others are refused, naming the parameter, like unknown body fields. */
    assert_int_equal(th_req(&shared, "GET", "/api/v1/products?page=2", NULL, NULL, &r), 0);
    assert_true(th_is_error(&r, 400, "validation_failed", "page"));
    th_resp_free(&r);
    assert_int_equal(th_call(&shared, "GET", "/api/v1/orders?limit=2&offset=4", tok, &r, NULL), 0);
    assert_true(th_is_error(&r, 400, "validation_failed", "offset"));
    th_resp_free(&r);
    assert_int_equal(th_call(&shared, "GET", "/api/v1/users/me?debug=1", tok, &r, NULL), 0);
    assert_true(th_is_error(&r, 400, "validation_failed", "debug"));
    th_resp_free(&r);
    assert_int_equal(th_req(&shared, "GET", "/health?verbose", NULL, NULL, &r), 0);
    assert_true(th_is_error(&r, 400, "validation_failed", "verbose"));
    th_resp_free(&r);
    /* A web page ignores what it does not know: a shared link keeps working. */
    assert_int_equal(th_req(&shared, "GET", "/?utm_source=newsletter&ref=x", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    free(tok);
}

static void test_build_info_metric(void **state)
{
    struct th_resp r;
    assert_int_equal(th_req(&shared, "GET", "/metrics", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "# TYPE emporium_build_info gauge\n"));
    char want[80];
    snprintf(want, sizeof want, "\nemporium_build_info{version=\"%s\"} 1\n", EMPORIUM_VERSION);
    assert_non_null(strstr(r.body, want));
    th_resp_free(&r);
}

/* Issue 16: a second server on a port in use must not start (it used to share the port). */
static void test_port_in_use_refused(void **state)
{
    char listen[64], log[300];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", shared.port);
    snprintf(log, sizeof log, "%s/second.log", shared.data_dir);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/second-data", shared.data_dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *f = freopen(log, "w", stdout);
        if (!f || dup2(STDOUT_FILENO, STDERR_FILENO) < 0)
            _exit(99);
        setenv("EMPORIUM_DATABASE_URL", "sqlite", 1);
        execl(EMPORIUM_BIN, EMPORIUM_BIN, "serve", "--listen", listen, "--data-dir", dir,
              "--no-demo", (char *)NULL);
        _exit(98);
    }
    int status = 0;
    /* It must exit on its own; a server that started would run until killed. */
    pid_t got = 0;
    for (int i = 0; i < 6000 && got == 0; i++) {
        got = waitpid(pid, &status, WNOHANG);
        if (got == 0)
            usleep(10000);
    }
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("a second server started on port %d", shared.port);
    }
    assert_true(WIFEXITED(status));
    assert_int_not_equal(WEXITSTATUS(status), 0);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    if (!strstr(text, "address already in use"))
        fail_msg("no clear message: %s", text);
    /* The first one still serves. */
    struct th_resp r;
    assert_int_equal(th_req(&shared, "GET", "/health", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slow_work_does_not_stall),
        cmocka_unit_test(test_offload_queue_full),
        cmocka_unit_test(test_strict_limit_register_login),
        cmocka_unit_test(test_trusted_proxies),
        cmocka_unit_test(test_private_responses),
        cmocka_unit_test(test_allow_options_cors),
        cmocka_unit_test(test_www_authenticate),
        cmocka_unit_test(test_unknown_query_parameters),
        cmocka_unit_test(test_build_info_metric),
        cmocka_unit_test(test_port_in_use_refused),
    };
    return cmocka_run_group_tests(tests, shared_start, shared_stop);
}
