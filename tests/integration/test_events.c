/* SPDX-License-Identifier: MIT */
/* test_events.c — the event path end to end, on the embedded log (docs/events.md): every
 * event leaves through the outbox once, as a CloudEvents envelope keyed by its aggregate;
 * consumers apply each event once, off the request threads — in `serve`, and in an
 * `emporium worker` process; kill -9 of the server (relay and consumers inside) or of the
 * worker mid-stream loses nothing and doubles nothing. Runs on SQLite and PostgreSQL (the
 * log's own tables are read directly on SQLite only). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "events_wait.h"
#include "harness.h"

static struct th_server srv;
static char *admin;

static const char *env_on[] = {"EMPORIUM_RATE_LIMITS=off", NULL};

static int setup(void **state) { return th_suite_start(&srv, &admin); }

static int teardown(void **state) { return th_suite_stop(&srv, admin); }

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void product(struct th_server *s, const char *adm, const char *sku, const char *category,
                    long price, char id[32])
{
    struct th_resp r;
    assert_int_equal(th_call(s, "POST", "/api/v1/products", adm, &r,
                             "{\"sku\":\"%s\",\"name\":\"Item %s\",\"description\":\"d\","
                             "\"category\":\"%s\",\"price\":{\"amount\":%ld,\"currency\":\"USD\"}}",
                             sku, sku, category, price),
                     0);
    assert_int_equal(r.status, 201);
    snprintf(id, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    char path[80];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", id);
    assert_int_equal(th_call(s, "PUT", path, adm, &r, "{\"available\":1000}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

/* Buys q x pid; the order id into oid. */
static void buy(struct th_server *s, const char *tok, const char *pid, int q, char oid[32])
{
    struct th_resp r;
    assert_int_equal(th_call(s, "POST", "/api/v1/cart/items", tok, &r,
                             "{\"product_id\":\"%s\",\"quantity\":%d}", pid, q),
                     0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    static int key;
    char auth[160], idem[48];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    snprintf(idem, sizeof idem, "Idempotency-Key: ev-%d-%ld", ++key, (long)time(NULL));
    const char *h[] = {auth, "Content-Type: application/json", idem, NULL};
    const char *body =
        "{\"shipping_address\":{\"name\":\"A\",\"line1\":\"1 Road\",\"city\":\"Town\","
        "\"postal_code\":\"12345\",\"country\":\"US\"},\"payment\":{\"card_number\":"
        "\"4242424242424242\",\"exp_month\":12,\"exp_year\":2040,\"cvc\":\"123\"},"
        "\"shipping_method\":\"standard\"}";
    assert_int_equal(th_req(s, "POST", "/api/v1/orders", body, h, &r), 0);
    if (r.status != 201)
        fail_msg("order: %ld %s", r.status, r.body);
    snprintf(oid, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
}

static void cancel(struct th_server *s, const char *tok, const char *oid)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", oid);
    struct th_resp r;
    assert_int_equal(th_call(s, "POST", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

/* Today's figures of one category (zeros when none). */
static void category_today(struct th_server *s, const char *adm, const char *category,
                           long long *revenue, long long *orders)
{
    char today[11], path[200];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(today, sizeof today, "%Y-%m-%d", &tm);
    snprintf(path, sizeof path, "/api/v1/admin/analytics/sales?from=%s&to=%s&group_by=category",
             today, today);
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", path, adm, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    *revenue = *orders = 0;
    json_t *items = json_object_get(r.json, "items");
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        if (strcmp(th_jstr(it, "category"), category) != 0)
            continue;
        *revenue = th_jint(it, "revenue.amount", -1);
        *orders = th_jint(it, "orders", -1);
    }
    th_resp_free(&r);
}

/* Polls the category's figures until they are (revenue, orders), 90 s at most. */
static bool category_reaches(struct th_server *s, const char *adm, const char *category,
                             long long revenue, long long orders)
{
    long long rv = -1, od = -1;
    for (time_t end = time(NULL) + 90; time(NULL) < end; nap_ms(100)) {
        category_today(s, adm, category, &rv, &od);
        if (rv == revenue && od == orders)
            return true;
    }
    fprintf(stderr, "category %s: revenue %lld orders %lld, want %lld %lld\n", category, rv, od,
            revenue, orders);
    return false;
}

/* The embedded log's own tables (SQLite backend only): how many messages carry event_id, and
 * the key and value of the last one. */
static int log_count(struct th_server *s, const char *event_id, char *key, size_t kcap,
                     char **value)
{
    char path[400];
    snprintf(path, sizeof path, "%s/events.db", s->data_dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT msg_key, value, topic FROM bus_log WHERE "
                                        "event_id = ?1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, event_id, -1, SQLITE_TRANSIENT);
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        n++;
        if (key)
            snprintf(key, kcap, "%s", (const char *)sqlite3_column_text(st, 0));
        if (value) {
            free(*value);
            *value = strdup((const char *)sqlite3_column_text(st, 1));
        }
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static bool on_sqlite(const struct th_server *s) { return s->db_url[0] == 0; }

/* Rows in the outbox of database name (SQLite backend only): all of them, or the unsent. */
static long outbox_rows(struct th_server *s, const char *name, bool unsent_only)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s.db", s->data_dir, name);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        unsent_only ? "SELECT count(*) FROM outbox WHERE "
                                                      "published_at IS NULL"
                                                    : "SELECT count(*) FROM outbox",
                                        -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long n = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Every event of every order leaves once, published, as a CloudEvents envelope keyed by the
 * order; the consumers' figures are the net of what was placed and cancelled. */
static void test_every_event_once(void **state)
{
    char pid[32];
    product(&srv, admin, "EV-ONCE", "ev-once", 1000, pid);
    char *t1 = th_register(&srv, "ev-once-1@example.com", "buyer password");
    char *t2 = th_register(&srv, "ev-once-2@example.com", "buyer password");
    assert_non_null(t1);
    assert_non_null(t2);
    char oid[8][32];
    for (int i = 0; i < 8; i++)
        buy(&srv, i % 2 ? t2 : t1, pid, i + 1, oid[i]); /* 1..8 units */
    cancel(&srv, t1, oid[0]);
    cancel(&srv, t1, oid[2]);
    cancel(&srv, t2, oid[5]);
    assert_true(th_events_settled(&srv, 90));
    /* kept: 2,4,5,7,8 units = 26 units x 1000; 5 orders */
    long long rev, ord;
    category_today(&srv, admin, "ev-once", &rev, &ord);
    assert_int_equal(rev, 26000);
    assert_int_equal(ord, 5);

    for (int i = 0; i < 8; i++) {
        char path[320];
        snprintf(path, sizeof path, "/api/v1/admin/orders/%s/events", oid[i]);
        struct th_resp r;
        assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
        json_t *items = json_object_get(r.json, "items");
        bool cancelled = i == 0 || i == 2 || i == 5;
        assert_true(json_array_size(items) >= (cancelled ? 3u : 2u));
        for (size_t k = 0; k < json_array_size(items); k++) {
            json_t *e = json_array_get(items, k);
            assert_true(json_is_true(json_object_get(e, "published")));
            assert_string_equal(th_jstr(e, "payload.specversion"), "1.0");
            assert_string_equal(th_jstr(e, "payload.subject"), oid[i]);
            assert_string_equal(th_jstr(e, "payload.datacontenttype"), "application/json");
            const char *tp = th_jstr(e, "payload.traceparent");
            assert_non_null(tp);
            assert_int_equal(strlen(tp), 55);
            assert_non_null(th_jstr(e, "payload.time"));
            if (on_sqlite(&srv)) {
                char key[64] = "";
                char *value = NULL;
                assert_int_equal(log_count(&srv, th_jstr(e, "event_id"), key, sizeof key, &value),
                                 1);
                assert_string_equal(key, oid[i]);
                json_t *doc = json_loads(value, 0, NULL);
                assert_non_null(doc);
                assert_string_equal(th_jstr(doc, "id"), th_jstr(e, "event_id"));
                assert_string_equal(th_jstr(doc, "type"), th_jstr(e, "type"));
                json_decref(doc);
                free(value);
            }
        }
        th_resp_free(&r);
    }
    if (on_sqlite(&srv)) {
        /* Sent rows leave the outboxes kept as queues; the orders' stay as their history
         * (read above through the admin route), marked sent. */
        const char *queues[] = {"inventory", "payments", "shipping", "fraud", "products"};
        for (size_t i = 0; i < sizeof queues / sizeof *queues; i++)
            if (outbox_rows(&srv, queues[i], false) != 0)
                fail_msg("%s: %ld rows left in its outbox", queues[i],
                         outbox_rows(&srv, queues[i], false));
        long kept = 0;
        for (int shard = 0; shard < 6; shard++) {
            char name[16];
            snprintf(name, sizeof name, "orders_%d", shard);
            assert_int_equal(outbox_rows(&srv, name, true), 0);
            kept += outbox_rows(&srv, name, false);
        }
        assert_true(kept >= 8 * 2 + 3);
    }
    free(t1);
    free(t2);
}

/* kill -9 of the server right after a burst of orders (the relay and the consumers run in
 * it): after the restart every order is counted exactly once. */
static void test_kill9_server_mid_stream(void **state)
{
    char pid[32];
    product(&srv, admin, "EV-KILL", "ev-kill", 700, pid);
    char *tok = th_register(&srv, "ev-kill@example.com", "buyer password");
    assert_non_null(tok);
    char oid[32];
    for (int i = 0; i < 10; i++)
        buy(&srv, tok, pid, 1, oid);
    th_kill(&srv); /* no drain: whatever the relay and consumers were doing stops here */
    assert_int_equal(th_restart(&srv, env_on, NULL), 0);
    for (int i = 0; i < 2; i++)
        buy(&srv, tok, pid, 1, oid);
    assert_true(th_events_settled(&srv, 90));
    long long rev, ord;
    category_today(&srv, admin, "ev-kill", &rev, &ord);
    assert_int_equal(ord, 12);
    assert_int_equal(rev, 12 * 700);
    free(tok);
}

/* EMPORIUM_CONSUMERS=none: nothing is applied until an `emporium worker` runs; the worker is
 * killed with -9 mid-stream and restarted; every order is counted once. */
static void test_worker_process(void **state)
{
    struct th_server w;
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_CONSUMERS=none", NULL};
    assert_int_equal(th_start(&w, env, NULL), 0);
    char *adm = th_admin_token(&w);
    assert_non_null(adm);
    char pid[32], oid[32];
    product(&w, adm, "EV-WRK", "ev-worker", 300, pid);
    char *tok = th_register(&w, "ev-worker@example.com", "buyer password");
    assert_non_null(tok);
    for (int i = 0; i < 6; i++)
        buy(&w, tok, pid, 1, oid);
    /* published, but nobody consumes here: no consumer lag lines, no figures */
    for (time_t end = time(NULL) + 60; time(NULL) < end; nap_ms(50))
        if (th_metric(&w, "emporium_outbox_pending") == 0)
            break;
    assert_true(th_metric(&w, "emporium_outbox_pending") == 0);
    assert_true(th_metric(&w, "emporium_consumer_lag{group=\"analytics\",topic=\"order-events\"}") <
                0);
    long long rev, ord;
    category_today(&w, adm, "ev-worker", &rev, &ord);
    assert_int_equal(ord, 0);

    /* a wrong consumer name is refused before anything runs */
    const char *bad[] = {"worker", "--consumers", "analytics,nope", NULL};
    assert_int_equal(th_cli(&w, bad, NULL), 2);

    pid_t wp = th_worker_start(&w, "analytics,recommendation,order", false, NULL);
    assert_true(wp > 0);
    assert_true(category_reaches(&w, adm, "ev-worker", 6 * 300, 6));
    for (int i = 0; i < 6; i++)
        buy(&w, tok, pid, 2, oid);
    th_worker_kill(wp); /* mid-stream: the new orders are being consumed, or not yet */
    wp = th_worker_start(&w, NULL, false, NULL);
    assert_true(wp > 0);
    assert_true(category_reaches(&w, adm, "ev-worker", 18 * 300, 12));
    assert_int_equal(th_worker_stop(wp), 0);
    category_today(&w, adm, "ev-worker", &rev, &ord);
    assert_int_equal(ord, 12); /* and it stays there: nothing applied twice */
    free(tok);
    free(adm);
    assert_int_equal(th_stop(&w), 0);
    th_cleanup(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_event_once),
        cmocka_unit_test(test_kill9_server_mid_stream),
        cmocka_unit_test(test_worker_process),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
