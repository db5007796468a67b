/* SPDX-License-Identifier: MIT */
/* test_redis_http.c — Redis through the real `emporium serve`, two processes side by side.
 *
 * Same servers as test_redis_client.c (exits 77 without them). Each test uses its own
 * EMPORIUM_REDIS_PREFIX, so runs never share keys.
 *
 * - Two servers on the Redis Cluster share one anonymous rate-limit budget: 3 requests on
 *   one and 3 on the other spend a burst of 6, the next gets 429 with Retry-After.
 * - With PostgreSQL (EMPORIUM_TEST_PG_URL; skipped otherwise) two servers share one set of
 *   databases: a product page read through one is an L2 hit on the other (its
 *   emporium_cache_hits_total{layer="l2"} grows, the database is not asked), and a price
 *   change made through one is served by the other within the documented 5 s (polled with a
 *   60 s deadline).
 * - Redis down: /ready is 200 with "degraded":["redis"], product reads still work, the rate
 *   limit still holds (local fallback) and /metrics says store="local". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static const char *cluster_seeds;
static int spare_port;
static char run_id[32];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The value of one sample line of /metrics ("name{labels}"), or -1 when absent. */
static long long metric(struct th_server *s, const char *series)
{
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", "/metrics", NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    long long v = -1;
    size_t n = strlen(series);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            v = atoll(p + n + 1);
    th_resp_free(&r);
    return v;
}

/* Seeds a catalog with the CLI and returns the first product's id (static). */
static const char *seed_and_pick(struct th_server *s)
{
    static char id[32];
    const char *args[] = {"seed", "--products", "20", "--categories", "2", "--seed", "5", NULL};
    char *out = NULL;
    int rc = th_cli(s, args, &out);
    if (rc != 0)
        fail_msg("seed: %d %s", rc, out ? out : "");
    free(out);
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", "/api/v1/products?limit=1", NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    json_t *first = json_array_get(json_object_get(r.json, "items"), 0);
    assert_non_null(first);
    snprintf(id, sizeof id, "%s", th_jstr(first, "id"));
    th_resp_free(&r);
    return id;
}

static void test_shared_rate_limit(void **state)
{
    char prefix[64], cluster[256];
    snprintf(prefix, sizeof prefix, "EMPORIUM_REDIS_PREFIX=t%s:rl:", run_id);
    snprintf(cluster, sizeof cluster, "EMPORIUM_REDIS_CLUSTER=%s", cluster_seeds);
    const char *env[] = {cluster, prefix, "EMPORIUM_RL_ANON=0.001:6", NULL};
    struct th_server a, b;
    assert_int_equal(th_start(&a, env, NULL), 0);
    assert_int_equal(th_start(&b, env, NULL), 0);
    struct th_resp r;
    char v[32];
    for (int i = 0; i < 6; i++) {
        struct th_server *s = i < 3 ? &a : &b;
        assert_int_equal(th_call(s, "GET", "/api/v1/categories", NULL, &r, NULL), 0);
        assert_int_equal(r.status, 200);
        /* One budget: the second server continues where the first stopped. */
        assert_non_null(th_header(&r, "RateLimit-Remaining", v, sizeof v));
        assert_int_equal(atoi(v), 5 - i);
        th_resp_free(&r);
    }
    assert_int_equal(th_call(&a, "GET", "/api/v1/categories", NULL, &r, NULL), 0);
    assert_true(th_is_error(&r, 429, "rate_limited", NULL));
    assert_non_null(th_header(&r, "Retry-After", v, sizeof v));
    th_resp_free(&r);
    assert_true(metric(&b, "emporium_ratelimit_decisions_total{store=\"redis\"}") >= 3);
    assert_int_equal(metric(&b, "emporium_ratelimit_decisions_total{store=\"local\"}"), -1);
    assert_int_equal(th_call(&a, "GET", "/ready", NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_null(json_object_get(r.json, "degraded"));
    th_resp_free(&r);
    assert_int_equal(th_stop(&a), 0);
    assert_int_equal(th_stop(&b), 0);
    th_cleanup(&a);
    th_cleanup(&b);
}

static void test_cache_shared_by_two_processes(void **state)
{
    if (!getenv("EMPORIUM_TEST_PG_URL")) {
        printf("skipped: two processes share one set of databases only on PostgreSQL "
               "(EMPORIUM_TEST_PG_URL not set)\n");
        skip();
    }
    setenv("EMPORIUM_TEST_BACKEND", "postgres", 1);
    char prefix[64], cluster[256];
    snprintf(prefix, sizeof prefix, "EMPORIUM_REDIS_PREFIX=t%s:c:", run_id);
    snprintf(cluster, sizeof cluster, "EMPORIUM_REDIS_CLUSTER=%s", cluster_seeds);
    const char *env[] = {cluster, prefix, "EMPORIUM_RATE_LIMITS=off", NULL};
    struct th_server a, b;
    assert_int_equal(th_start(&a, env, NULL), 0);
    const char *id = seed_and_pick(&a);
    b = a; /* the same databases, a second process */
    b.pid = 0;
    assert_int_equal(th_restart(&b, env, NULL), 0);
    char *admin = th_admin_token(&a);
    assert_non_null(admin);

    char path[96], etag_a[40], etag_b[40];
    snprintf(path, sizeof path, "/api/v1/products/%s", id);
    const char *l2_hits = "emporium_cache_hits_total{cache=\"product\",layer=\"l2\"}";
    const char *l2_misses = "emporium_cache_misses_total{cache=\"product\",layer=\"l2\"}";
    struct th_resp r;
    assert_int_equal(th_call(&a, "GET", path, NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(th_header(&r, "ETag", etag_a, sizeof etag_a));
    th_resp_free(&r);
    assert_int_equal(metric(&a, l2_misses), 1); /* a loaded it and filled Redis */
    long long hits = metric(&b, l2_hits), misses = metric(&b, l2_misses);
    assert_int_equal(th_call(&b, "GET", path, NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(th_header(&r, "ETag", etag_b, sizeof etag_b));
    th_resp_free(&r);
    assert_string_equal(etag_a, etag_b);
    assert_int_equal(metric(&b, l2_hits), hits + 1);
    assert_int_equal(metric(&b, l2_misses), misses);

    /* A change through a reaches b (its L1 copy lives at most 5 s). */
    assert_int_equal(th_call(&a, "PATCH", path, admin, &r, "{\"price\":{\"amount\":4242}}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    int64_t deadline = mono() + 60000;
    for (;;) {
        assert_int_equal(th_call(&b, "GET", path, NULL, &r, NULL), 0);
        assert_int_equal(r.status, 200);
        long long amount = th_jint(r.json, "price.amount", -1);
        th_resp_free(&r);
        if (amount == 4242)
            break;
        assert_true(mono() < deadline);
        sleep_ms(100);
    }
    free(admin);
    assert_int_equal(th_stop(&b), 0);
    assert_int_equal(th_stop(&a), 0);
    th_cleanup(&a);
    unsetenv("EMPORIUM_TEST_BACKEND");
}

static void test_redis_down(void **state)
{
    char url[96], prefix[64];
    snprintf(url, sizeof url, "EMPORIUM_REDIS_URL=redis://127.0.0.1:%d", spare_port);
    snprintf(prefix, sizeof prefix, "EMPORIUM_REDIS_PREFIX=t%s:down:", run_id);
    const char *env[] = {url, prefix, "EMPORIUM_RL_ANON=0.001:4", "EMPORIUM_REDIS_TIMEOUT_MS=200",
                         NULL};
    struct th_server s;
    assert_int_equal(th_start(&s, env, NULL), 0); /* a Redis that is down does not stop it */
    struct th_resp r;
    assert_int_equal(th_call(&s, "GET", "/ready", NULL, &r, NULL), 0); /* not limited */
    assert_int_equal(r.status, 200);
    json_t *deg = json_object_get(r.json, "degraded");
    assert_int_equal(json_array_size(deg), 1);
    assert_string_equal(json_string_value(json_array_get(deg, 0)), "redis");
    th_resp_free(&r);
    /* Reads fall through to the database; the limit holds with local buckets. */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(th_call(&s, "GET", "/api/v1/categories", NULL, &r, NULL), 0);
        assert_int_equal(r.status, 200);
        th_resp_free(&r);
    }
    assert_int_equal(th_call(&s, "GET", "/api/v1/categories", NULL, &r, NULL), 0);
    assert_true(th_is_error(&r, 429, "rate_limited", NULL));
    th_resp_free(&r);
    assert_true(metric(&s, "emporium_ratelimit_decisions_total{store=\"local\"}") >= 5);
    assert_true(metric(&s, "emporium_redis_failures_total{mode=\"standalone\"}") >= 1);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

int main(void)
{
    cluster_seeds = getenv("EMPORIUM_TEST_REDIS_CLUSTER");
    const char *sp = getenv("EMPORIUM_TEST_REDIS_SPARE_PORT");
    if (!cluster_seeds || !sp) {
        printf("skipped: EMPORIUM_TEST_REDIS_CLUSTER/_SPARE_PORT not set "
               "(scripts/test-servers.sh starts the servers)\n");
        return 77;
    }
    spare_port = atoi(sp);
    snprintf(run_id, sizeof run_id, "%d_%ld", (int)getpid(), (long)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_rate_limit),
        cmocka_unit_test(test_cache_shared_by_two_processes),
        cmocka_unit_test(test_redis_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
