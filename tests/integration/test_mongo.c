/* SPDX-License-Identifier: MIT */
/* test_mongo.c — the MongoDB sink without a MongoDB server (none can be installed here; see
 * test_mongo_server.c for the run against one):
 *   - the documents built from an order event are valid extended JSON with the seed's shard
 *     keys (order_history: user_id + created_at; analytics: date + category), and an event
 *     id that needs escaping stays one string;
 *   - the adapter refuses a bad URI without echoing it, and a server that is not there is
 *     ERR_UNAVAILABLE (never a crash or a hang past the selection timeout);
 *   - through `emporium serve` with EMPORIUM_MONGODB_URI pointing at nothing: the order
 *     events are retried with backoff and reported (emporium_mongo_writes_total{result=
 *     "unavailable"}), the analytics-mongo group's offset does not move (its lag shows the
 *     waiting event: nothing lost), and the SQL sales report, another group, is unaffected;
 *   - a bad EMPORIUM_MONGODB_URI stops the server with exit 2 naming the variable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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
#define NOWHERE "mongodb://app:s3cret@127.0.0.1:1/emp?serverSelectionTimeoutMS=200"

static struct order_event sample(enum order_event_type type)
{
    struct order_event ev = {.type = type,
                             .order_id = 123456789,
                             .user_id = 42,
                             .at = 1765000000000LL /* 2025-12-06 */,
                             .n = 2};
    snprintf(ev.event_id, sizeof ev.event_id, "ev-\"quoted\"\\1");
    memcpy(ev.currency, "USD", 4);
    ev.items[0] = (struct order_event_item){1001, 2, 1500};
    ev.items[1] = (struct order_event_item){1002, 1, 999};
    return ev;
}

static json_t *parse(const struct buf *b)
{
    assert_int_equal(b->err, 0);
    assert_int_equal(mongo_json_check(b->p), 0); /* libbson reads it as a document */
    json_error_t e;
    json_t *j = json_loads(b->p, 0, &e);
    if (!j)
        fail_msg("not JSON: %s: %s", e.text, b->p);
    return j;
}

static const char *long_of(json_t *o, const char *member)
{
    return json_string_value(json_object_get(json_object_get(o, member), "$numberLong"));
}

static void test_documents(void **state)
{
    (void)state;
    struct order_event ev = sample(ORDER_EVENT_PAID);
    struct buf f = BUF_INIT(0), u = BUF_INIT(0);
    assert_int_equal(analytics__mongo_history_doc(&ev, &f, &u), 0);
    json_t *filter = parse(&f), *update = parse(&u);
    /* idempotent per event: the event id is the _id, beside the shard key */
    assert_string_equal(json_string_value(json_object_get(filter, "_id")), ev.event_id);
    assert_string_equal(long_of(filter, "user_id"), "42");
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(filter, "created_at"), "$date"), "$numberLong")),
        "1765000000000");
    json_t *set = json_object_get(update, "$setOnInsert");
    assert_non_null(set);
    assert_int_equal(json_object_size(update), 1); /* nothing changes on a redelivery */
    assert_string_equal(json_string_value(json_object_get(set, "type")), "order.paid");
    assert_string_equal(long_of(set, "total"), "3999");
    assert_int_equal(json_array_size(json_object_get(set, "items")), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(set, "items"), 1), "product_id")),
                        "1002");
    json_decref(filter);
    json_decref(update);

    /* analytics: (date, category, currency), applied once per event id */
    f.len = u.len = 0;
    assert_int_equal(analytics__mongo_facts_doc(&ev, "2025-12-06", "lamps \"x\"", 3999, 3, &f, &u),
                     0);
    filter = parse(&f);
    update = parse(&u);
    assert_string_equal(json_string_value(json_object_get(filter, "date")), "2025-12-06");
    assert_string_equal(json_string_value(json_object_get(filter, "category")), "lamps \"x\"");
    assert_string_equal(json_string_value(json_object_get(filter, "_id")),
                        "2025-12-06|lamps \"x\"|USD");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(filter, "applied"), "$ne")), ev.event_id);
    json_t *inc = json_object_get(update, "$inc");
    assert_string_equal(long_of(inc, "revenue"), "3999");
    assert_string_equal(long_of(inc, "units"), "3");
    assert_string_equal(long_of(inc, "orders"), "1");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(update, "$push"), "applied")),
        ev.event_id);
    json_decref(filter);
    json_decref(update);

    /* a cancellation subtracts */
    struct order_event cv = sample(ORDER_EVENT_CANCELLED);
    f.len = u.len = 0;
    assert_int_equal(analytics__mongo_facts_doc(&cv, "2025-12-07", "lamps", 3999, 3, &f, &u), 0);
    update = parse(&u);
    assert_string_equal(long_of(json_object_get(update, "$inc"), "revenue"), "-3999");
    assert_string_equal(long_of(json_object_get(update, "$inc"), "orders"), "-1");
    json_decref(update);
    buf_free(&f);
    buf_free(&u);
    assert_int_equal(mongo_json_check("{\"a\":"), ERR_INVALID);
    assert_int_equal(mongo_json_check(NULL), ERR_INVALID);
}

static void test_adapter_errors(void **state)
{
    (void)state;
    struct mongo *m = NULL;
    char why[128] = "";
    assert_int_equal(mongo_open("http://app:s3cret@example.com/", &m, why, sizeof why),
                     ERR_INVALID);
    assert_null(m);
    assert_null(strstr(why, "s3cret")); /* never the URI: it may hold a password */
    assert_int_equal(mongo_open(NOWHERE, &m, why, sizeof why), 0);
    assert_int_equal(
        mongo_upsert(m, "order_history", "{\"_id\":\"e1\"}", "{\"$setOnInsert\":{\"a\":1}}"),
        ERR_UNAVAILABLE);
    assert_int_equal(mongo_upsert(m, "order_history", "{\"_id\":", "{}"), ERR_INVALID);
    assert_int_equal(mongo_ping(m), ERR_UNAVAILABLE);
    int64_t n = -1;
    assert_int_equal(mongo_count(m, "order_history", "{}", &n), ERR_UNAVAILABLE);
    assert_int_equal(mongo_ensure_collection(m, "analytics", "{\"date\":1,\"category\":1}"),
                     ERR_UNAVAILABLE);
    mongo_close(m);
    mongo_close(NULL);
}

/* ---- through the server ---------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double metric(struct th_server *s, const char *series)
{
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", "/metrics", NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    double v = -1;
    size_t n = strlen(series);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    th_resp_free(&r);
    return v;
}

/* A paid order of one product; returns nothing, fails the test on any error. */
static void paid_order(struct th_server *s, const char *adm)
{
    struct th_resp r;
    char pid[32], path[96], auth[256];
    assert_int_equal(th_call(s, "POST", "/api/v1/products", adm, &r,
                             "{\"sku\":\"MONGO-1\",\"name\":\"Document lamp\",\"description\":"
                             "\"d\",\"category\":\"lamps\",\"price\":{\"amount\":2500,"
                             "\"currency\":\"USD\"},\"weight_grams\":100}"),
                     0);
    assert_int_equal(r.status, 201);
    snprintf(pid, sizeof pid, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/inventory/%s", pid);
    assert_int_equal(th_call(s, "PUT", path, adm, &r, "{\"available\":10}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    char *tok = th_register(s, "docs@example.com", "mongo password");
    assert_non_null(tok);
    assert_int_equal(th_call(s, "POST", "/api/v1/cart/items", tok, &r,
                             "{\"product_id\":\"%s\",\"quantity\":2}", pid),
                     0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    const char *h[] = {auth, "Idempotency-Key: mongo-order-1", NULL};
    assert_int_equal(
        th_req(s, "POST", "/api/v1/orders",
               "{\"shipping_address\":" ADDR ",\"payment\":{\"card_number\":\"" CARD_OK
               "\",\"exp_month\":12,\"exp_year\":2030,\"cvc\":\"123\"},\"shipping_method\":"
               "\"standard\"}",
               h, &r),
        0);
    if (r.status != 201)
        fail_msg("place order: %ld %s", r.status, r.body);
    th_resp_free(&r);
    free(tok);
}

static void test_server_unreachable(void **state)
{
    (void)state;
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_MONGODB_URI=" NOWHERE, NULL};
    struct th_server s;
    assert_int_equal(th_start(&s, env, NULL), 0);
    char *adm = th_admin_token(&s);
    assert_non_null(adm);
    paid_order(&s, adm);
    /* The event is tried, fails, and is tried again after a backoff. */
    const char *unavailable = "emporium_mongo_writes_total{result=\"unavailable\"}";
    double t0 = now_s();
    while (metric(&s, unavailable) < 2 && now_s() - t0 < 90) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_true(metric(&s, unavailable) >= 2);
    assert_true(metric(&s, "emporium_mongo_writes_total{result=\"ok\"}") <= 0);
    /* Nothing lost: the group has not moved past the event. */
    assert_true(
        metric(&s, "emporium_consumer_lag{group=\"analytics-mongo\",topic=\"order-events\"}") >= 1);
    /* The SQL figures, another group, count the order meanwhile. */
    bool counted = false;
    t0 = now_s();
    while (!counted && now_s() - t0 < 90) {
        struct th_resp r;
        assert_int_equal(
            th_call(&s, "GET", "/api/v1/admin/analytics/sales?group_by=category", adm, &r, NULL),
            0);
        assert_int_equal(r.status, 200);
        json_t *first = json_array_get(json_object_get(r.json, "items"), 0);
        counted = first && th_jint(first, "units", 0) == 2;
        th_resp_free(&r);
        if (!counted) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    assert_true(counted);
    free(adm);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

static void test_bad_uri_refused(void **state)
{
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "EMPORIUM_MONGODB_URI='http://nowhere' EMPORIUM_DATA_DIR=$(mktemp -d) "
             "timeout 60 '%s' serve --listen 127.0.0.1:0 > /tmp/test_mongo_bad_uri.%d.log 2>&1",
             EMPORIUM_BIN, (int)getpid());
    int st = system(cmd);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 2);
    char path[96], text[2048] = "";
    snprintf(path, sizeof path, "/tmp/test_mongo_bad_uri.%d.log", (int)getpid());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    unlink(path);
    assert_non_null(strstr(text, "EMPORIUM_MONGODB_URI"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_documents),
        cmocka_unit_test(test_adapter_errors),
        cmocka_unit_test(test_server_unreachable),
        cmocka_unit_test(test_bad_uri_refused),
    };
    return cmocka_run_group_tests_name("mongo", tests, NULL, NULL);
}
