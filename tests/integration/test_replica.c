/* SPDX-License-Identifier: MIT */
/* test_replica.c — reads from a real PostgreSQL streaming replica (pg_basebackup -R, started
 * by scripts/test-servers.sh): order reads go to the replica once it has caught up, a
 * session reads its own order at once even while the replica is behind (read-your-writes),
 * and a replica that is down leaves every read on the primary. The catalog's listing, search
 * and category list and the analytics report are replica reads too: the replica's own
 * pg_stat_database counts their transactions, an admin reads back a price change at once
 * while the replica's replay is paused (read-your-writes), and with the replica down they
 * are served by the primary. PostgreSQL only: on SQLite, or without
 * EMPORIUM_TEST_REPLICA_URL, it says it was skipped. */
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
#include <libpq-fe.h>

#include "harness.h"

#define CARD_OK "4242424242424242"
#define ADDR                                                                                       \
    "{\"name\":\"Ada Lovelace\",\"line1\":\"1 Analytical "                                         \
    "St\",\"city\":\"London\",\"postal_code\":\"N1 9GU\",\"country\":\"GB\"}"
#define DEADLINE_S 90

static const char *replica_url;
static int seq;

/* --- helpers --- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The value of a /metrics sample line starting with `series` (-1e9 when absent). */
static double metric(struct th_server *s, const char *series)
{
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", "/metrics", NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    double v = -1e9;
    size_t n = strlen(series);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    th_resp_free(&r);
    return v;
}

static void wait_metric(struct th_server *s, const char *series, double want)
{
    double t0 = now_s(), v = 0;
    while ((v = metric(s, series)) != want && now_s() - t0 < DEADLINE_S)
        pause_ms(50);
    if (v != want)
        fprintf(stderr, "%s stayed %g (want %g)\n", series, v, want);
    assert_true(v == want);
}

/* Runs sql on the replica itself (not through the application). */
static void on_replica(const char *sql)
{
    const char *keys[] = {"dbname", "dbname", NULL};
    const char *vals[] = {replica_url, "postgres", NULL};
    PGconn *h = PQconnectdbParams(keys, vals, 1);
    assert_int_equal(PQstatus(h), CONNECTION_OK);
    PGresult *res = PQexec(h, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fprintf(stderr, "replica: %s: %s\n", sql, PQerrorMessage(h));
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);
    PQfinish(h);
}

/* One number from the replica itself (sql returns one row, one column). */
static long long replica_number(const char *sql)
{
    const char *keys[] = {"dbname", "dbname", NULL};
    const char *vals[] = {replica_url, "postgres", NULL};
    PGconn *h = PQconnectdbParams(keys, vals, 1);
    assert_int_equal(PQstatus(h), CONNECTION_OK);
    PGresult *res = PQexec(h, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fprintf(stderr, "replica: %s: %s\n", sql, PQerrorMessage(h));
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    long long v = PQntuples(res) ? atoll(PQgetvalue(res, 0, 0)) : 0;
    PQclear(res);
    PQfinish(h);
    return v;
}

/* Transactions committed on the replica in the server's catalog database ("<base>_products",
 * base = the last path part of the server's database URL). Only the server's replica reads
 * run there: the lag monitor connects to the base database. */
static long long replica_catalog_xacts(const struct th_server *s)
{
    const char *base = strrchr(s->db_url, '/');
    assert_non_null(base);
    char name[128], sql[256];
    snprintf(name, sizeof name, "%.*s_products", (int)strcspn(base + 1, "?"), base + 1);
    snprintf(sql, sizeof sql,
             "SELECT COALESCE(SUM(xact_commit + xact_rollback), 0)::text FROM pg_stat_database "
             "WHERE datname = '%s'",
             name);
    return replica_number(sql);
}

/* GET path; the status, and the first item's price (-1 when none) into *price. */
static long list_price(struct th_server *s, const char *tok, const char *path, long long *price)
{
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", path, tok, &r, NULL), 0);
    long st = r.status;
    *price = -1;
    json_t *first = json_array_get(json_object_get(r.json, "items"), 0);
    if (first)
        *price = th_jint(first, "price.amount", -1);
    th_resp_free(&r);
    return st;
}

/* A product with plenty of stock, and a customer with it in the cart. */
static char *customer_with_cart(struct th_server *s, const char *adm)
{
    struct th_resp r;
    char sku[48], pid[32], email[64], path[96];
    snprintf(sku, sizeof sku, "REP-%d-%d", (int)getpid(), ++seq);
    assert_int_equal(th_call(s, "POST", "/api/v1/products", adm, &r,
                             "{\"sku\":\"%s\",\"name\":\"Thing %s\",\"description\":\"d\","
                             "\"category\":\"things\",\"price\":{\"amount\":1000,\"currency\":"
                             "\"USD\"},\"weight_grams\":100}",
                             sku, sku),
                     0);
    assert_int_equal(r.status, 201);
    snprintf(pid, sizeof pid, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/inventory/%s", pid);
    assert_int_equal(th_call(s, "PUT", path, adm, &r, "{\"available\":1000}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    snprintf(email, sizeof email, "rep%d-%d@example.com", (int)getpid(), ++seq);
    char *tok = th_register(s, email, "replica password");
    assert_non_null(tok);
    assert_int_equal(th_call(s, "POST", "/api/v1/cart/items", tok, &r,
                             "{\"product_id\":\"%s\",\"quantity\":1}", pid),
                     0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    return tok;
}

/* Places the cart as an order; its id into id. */
static void place(struct th_server *s, const char *tok, char id[32])
{
    char auth[256], key[64];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    snprintf(key, sizeof key, "Idempotency-Key: rep-%d-%d", (int)getpid(), ++seq);
    const char *h[] = {auth, key, NULL};
    struct th_resp r;
    assert_int_equal(
        th_req(s, "POST", "/api/v1/orders",
               "{\"shipping_address\":" ADDR ",\"payment\":{\"card_number\":\"" CARD_OK
               "\",\"exp_month\":12,\"exp_year\":2030,\"cvc\":\"123\"},\"shipping_method\":"
               "\"standard\"}",
               h, &r),
        0);
    if (r.status != 201)
        fprintf(stderr, "place order: %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 201);
    snprintf(id, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
}

static long get_order(struct th_server *s, const char *tok, const char *id)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s", id);
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", path, tok, &r, NULL), 0);
    long st = r.status;
    if (st == 200)
        assert_string_equal(th_jstr(r.json, "id"), id);
    th_resp_free(&r);
    return st;
}

static int start_with(struct th_server *s, const char *urls, char **admin)
{
    char env_urls[600];
    snprintf(env_urls, sizeof env_urls, "EMPORIUM_DATABASE_REPLICA_URLS=%s", urls);
    /* The lag bound is generous: these tests are about routing and read-your-writes. No
     * product cache, so that every listing and search reaches the database. */
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", env_urls, "EMPORIUM_REPLICA_MAX_LAG_MS=600000",
                         "EMPORIUM_PRODUCT_CACHE_MB=0", NULL};
    if (th_start(s, env, NULL) != 0)
        return -1;
    *admin = th_admin_token(s);
    return *admin ? 0 : -1;
}

/* --- tests --- */

/* Order reads go to the replica once it has replayed the order; with its replay paused, the
 * customer who just ordered still reads the order at once (from the primary). */
static void test_routing_and_read_your_writes(void **state)
{
    (void)state;
    struct th_server s;
    char *adm = NULL;
    assert_int_equal(start_with(&s, replica_url, &adm), 0);
    wait_metric(&s, "emporium_db_replica_up{replica=\"0\"}", 1);

    char *tok = customer_with_cart(&s, adm), id[32];
    place(&s, tok, id);
    /* Routing: once the replica has replayed the order, reading it is served there. */
    double t0 = now_s(), before = metric(&s, "emporium_db_reads_total{target=\"replica\"}");
    bool on_replica_read = false;
    while (!on_replica_read && now_s() - t0 < DEADLINE_S) {
        assert_int_equal(get_order(&s, tok, id), 200);
        on_replica_read = metric(&s, "emporium_db_reads_total{target=\"replica\"}") > before;
        if (!on_replica_read)
            pause_ms(50);
    }
    assert_true(on_replica_read);

    /* Replay paused: the replica will not have the next order. Reading it at once must still
     * find it (read-your-writes), and the read is counted on the primary. */
    on_replica("SELECT pg_wal_replay_pause()::text");
    char *tok2 = customer_with_cart(&s, adm), id2[32];
    place(&s, tok2, id2);
    double prim = metric(&s, "emporium_db_reads_total{target=\"primary\"}");
    for (int i = 0; i < 5; i++)
        assert_int_equal(get_order(&s, tok2, id2), 200);
    assert_true(metric(&s, "emporium_db_reads_total{target=\"primary\"}") >= prim + 5);
    on_replica("SELECT pg_wal_replay_resume()::text");
    /* and once it has caught up, reads go back to it */
    before = metric(&s, "emporium_db_reads_total{target=\"replica\"}");
    t0 = now_s();
    on_replica_read = false;
    while (!on_replica_read && now_s() - t0 < DEADLINE_S) {
        assert_int_equal(get_order(&s, tok2, id2), 200);
        on_replica_read = metric(&s, "emporium_db_reads_total{target=\"replica\"}") > before;
        if (!on_replica_read)
            pause_ms(50);
    }
    assert_true(on_replica_read);
    free(tok);
    free(tok2);
    assert_int_equal(th_suite_stop(&s, adm), 0);
}

/* Catalog listing, search and categories, and the analytics report, are served by the
 * replica: the replica's own transaction count in the catalog database grows with them. An
 * admin who changes a price reads it back at once, from the primary, while the replica's
 * replay is paused. */
static void test_catalog_and_reports_on_replica(void **state)
{
    (void)state;
    struct th_server s;
    char *adm = NULL;
    assert_int_equal(start_with(&s, replica_url, &adm), 0);
    wait_metric(&s, "emporium_db_replica_up{replica=\"0\"}", 1);

    char word[32], search[96], sku[48], pid[32], path[96];
    snprintf(word, sizeof word, "zqrep%d", (int)getpid());
    snprintf(search, sizeof search, "/api/v1/products?q=%s", word);
    snprintf(sku, sizeof sku, "REPCAT-%d", (int)getpid());
    struct th_resp r;
    assert_int_equal(th_call(&s, "POST", "/api/v1/products", adm, &r,
                             "{\"sku\":\"%s\",\"name\":\"Lamp %s\",\"description\":\"d\","
                             "\"category\":\"replicated\",\"price\":{\"amount\":1000,"
                             "\"currency\":\"USD\"},\"weight_grams\":100}",
                             sku, word),
                     0);
    assert_int_equal(r.status, 201);
    snprintf(pid, sizeof pid, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    /* The writer sees its product at once (from wherever is up to date), and once the
     * replica has replayed it the reads run there. */
    long long price = 0;
    assert_int_equal(list_price(&s, NULL, search, &price), 200);
    assert_int_equal(price, 1000);
    const char *reads = "emporium_db_reads_total{target=\"replica\"}";
    double t0 = now_s(), before = metric(&s, reads);
    long long xacts = replica_catalog_xacts(&s);
    bool served = false;
    while (!served && now_s() - t0 < DEADLINE_S) {
        assert_int_equal(list_price(&s, NULL, search, &price), 200);
        assert_int_equal(price, 1000);
        assert_int_equal(list_price(&s, NULL, "/api/v1/products?category=replicated", &price), 200);
        assert_int_equal(price, 1000);
        assert_int_equal(list_price(&s, NULL, "/api/v1/categories", &price), 200);
        /* pg_stat_database on a standby is flushed by its backends within seconds */
        served = metric(&s, reads) > before && replica_catalog_xacts(&s) > xacts;
        if (!served)
            pause_ms(100);
    }
    assert_true(served);
    /* The analytics report too. */
    before = metric(&s, reads);
    t0 = now_s();
    served = false;
    while (!served && now_s() - t0 < DEADLINE_S) {
        assert_int_equal(th_call(&s, "GET", "/api/v1/admin/analytics/sales", adm, &r, NULL), 0);
        assert_int_equal(r.status, 200);
        th_resp_free(&r);
        served = metric(&s, reads) > before;
        if (!served)
            pause_ms(50);
    }
    assert_true(served);

    /* Read-your-writes: with replay paused the replica keeps the old price; the admin who
     * changed it reads the new one at once, and those reads are the primary's. */
    on_replica("SELECT pg_wal_replay_pause()::text");
    snprintf(path, sizeof path, "/api/v1/products/%s", pid);
    assert_int_equal(th_call(&s, "PATCH", path, adm, &r, "{\"price\":{\"amount\":4242}}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    double prim = metric(&s, "emporium_db_reads_total{target=\"primary\"}");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(list_price(&s, adm, search, &price), 200);
        assert_int_equal(price, 4242);
        assert_int_equal(list_price(&s, adm, "/api/v1/products?category=replicated", &price), 200);
        assert_int_equal(price, 4242);
    }
    assert_true(metric(&s, "emporium_db_reads_total{target=\"primary\"}") >= prim + 6);
    on_replica("SELECT pg_wal_replay_resume()::text");
    free(adm);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

/* A replica that does not answer serves nothing: every read stays on the primary and
 * succeeds; /metrics says it is down. */
static void test_replica_down(void **state)
{
    (void)state;
    struct th_server s;
    char *adm = NULL;
    /* A port nothing listens on: the replica is stopped. */
    assert_int_equal(start_with(&s, "postgresql://postgres@127.0.0.1:1/emp", &adm), 0);
    char *tok = customer_with_cart(&s, adm), id[32];
    place(&s, tok, id);
    for (int i = 0; i < 5; i++)
        assert_int_equal(get_order(&s, tok, id), 200);
    /* the catalog's lists and search and the analytics report stay on the primary too */
    long long price = 0;
    assert_int_equal(list_price(&s, NULL, "/api/v1/products?limit=5", &price), 200);
    assert_int_equal(list_price(&s, NULL, "/api/v1/products?q=thing", &price), 200);
    assert_true(price > 0);
    assert_int_equal(list_price(&s, NULL, "/api/v1/categories", &price), 200);
    struct th_resp r;
    assert_int_equal(th_call(&s, "GET", "/api/v1/admin/analytics/sales", adm, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_true(metric(&s, "emporium_db_replica_up{replica=\"0\"}") == 0);
    assert_true(metric(&s, "emporium_db_replica_lag_seconds{replica=\"0\"}") == -1);
    assert_true(metric(&s, "emporium_db_reads_total{target=\"replica\"}") == 0);
    assert_true(metric(&s, "emporium_db_reads_total{target=\"primary\"}") >= 5);
    free(tok);
    assert_int_equal(th_suite_stop(&s, adm), 0);
}

/* A run that failed while the replica's replay was paused must not leave it paused. */
static int resume_replay(void **state)
{
    (void)state;
    on_replica("SELECT pg_wal_replay_resume()::text");
    return 0;
}

int main(void)
{
    const char *be = getenv("EMPORIUM_TEST_BACKEND");
    replica_url = getenv("EMPORIUM_TEST_REPLICA_URL");
    if (!be || strcmp(be, "postgres") != 0) {
        fprintf(stderr, "test_replica: skipped: read replicas are a PostgreSQL feature "
                        "(EMPORIUM_TEST_BACKEND=postgres runs it)\n");
        return 0;
    }
    if (!replica_url || !*replica_url) {
        fprintf(stderr, "test_replica: skipped: EMPORIUM_TEST_REPLICA_URL is not set "
                        "(scripts/test-servers.sh starts a replica)\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing_and_read_your_writes),
        cmocka_unit_test(test_catalog_and_reports_on_replica),
        cmocka_unit_test(test_replica_down),
    };
    return cmocka_run_group_tests_name("replica", tests, resume_replay, NULL);
}
