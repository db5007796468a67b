/* SPDX-License-Identifier: MIT */
/* test_events_cache.c — cross-process cache invalidation through the event bus: two
 * `emporium serve` processes on one data dir (SQLite) or one PostgreSQL database; a product
 * read through the second is in its L1 cache; a price change through the first reaches the
 * second's next reads (the product.invalidated event on cache-invalidation, consumed by every
 * process in a broadcast group of its own), long before the cached entry's 5-minute lifetime.
 * Each process's broadcast group shows in its own /metrics only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "events_wait.h"
#include "harness.h"

static const char *const env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};

static long price_of(struct th_server *s, const char *pid)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/products/%s", pid);
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", path, NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    long p = (long)th_jint(r.json, "price.amount", -1);
    th_resp_free(&r);
    return p;
}

/* The text of /metrics. */
static char *metrics(struct th_server *s)
{
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", "/metrics", NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    char *text = strdup(r.body);
    th_resp_free(&r);
    return text;
}

/* The broadcast group of a process (group="cache.i-…") from its metrics, into g. */
static bool cache_group(struct th_server *s, char g[64])
{
    char *m = metrics(s);
    const char *p = strstr(m, "emporium_consumer_lag{group=\"cache.i-");
    bool ok = p != NULL;
    if (ok) {
        p += strlen("emporium_consumer_lag{group=\"");
        size_t n = strcspn(p, "\"");
        snprintf(g, 64, "%.*s", (int)(n < 63 ? n : 63), p);
    }
    free(m);
    return ok;
}

static void test_price_change_reaches_the_other_process(void **state)
{
    (void)state;
    struct th_server a, b;
    assert_int_equal(th_start(&a, env, NULL), 0);
    char *admin = th_admin_token(&a);
    assert_non_null(admin);
    b = a; /* the same data dir / database, its own port */
    b.pid = 0;
    assert_int_equal(th_restart(&b, env, NULL), 0);

    struct th_resp r;
    assert_int_equal(th_call(&a, "POST", "/api/v1/products", admin, &r,
                             "{\"sku\":\"XC-1\",\"name\":\"Cross cache\",\"description\":\"d\","
                             "\"category\":\"cache\",\"price\":{\"amount\":1000,\"currency\":"
                             "\"USD\"}}"),
                     0);
    assert_int_equal(r.status, 201);
    char pid[32];
    snprintf(pid, sizeof pid, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);

    /* b reads it (and caches it, for 5 minutes) */
    assert_int_equal(price_of(&b, pid), 1000);
    assert_int_equal(price_of(&b, pid), 1000);

    char path[96];
    snprintf(path, sizeof path, "/api/v1/products/%s", pid);
    assert_int_equal(
        th_call(&a, "PATCH", path, admin, &r, "{\"price\":{\"amount\":2500,\"currency\":\"USD\"}}"),
        0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(price_of(&a, pid), 2500); /* the writer drops its own at once */

    /* b sees the new price once the event reached it: wait for it, 60 s at most */
    long seen = 0;
    for (time_t end = time(NULL) + 60; time(NULL) < end;) {
        if ((seen = price_of(&b, pid)) == 2500)
            break;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(seen, 2500);

    /* a second change, and a delete, travel the same way */
    assert_int_equal(
        th_call(&b, "PATCH", path, admin, &r, "{\"price\":{\"amount\":3100,\"currency\":\"USD\"}}"),
        0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    for (time_t end = time(NULL) + 60; time(NULL) < end;) {
        if ((seen = price_of(&a, pid)) == 3100)
            break;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(seen, 3100);

    /* each process consumes in a group of its own, and reports only its own */
    char ga[64], gb[64];
    assert_true(cache_group(&a, ga));
    assert_true(cache_group(&b, gb));
    assert_string_not_equal(ga, gb);
    char *mb = metrics(&b);
    assert_null(strstr(mb, ga));
    free(mb);
    assert_true(th_events_settled(&a, 90));
    assert_true(th_events_settled(&b, 90));

    free(admin);
    assert_int_equal(th_stop(&b), 0);
    assert_int_equal(th_stop(&a), 0);
    th_cleanup(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_price_change_reaches_the_other_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
