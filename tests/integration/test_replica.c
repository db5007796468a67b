/* SPDX-License-Identifier: MIT */
/* test_replica.c — reads from a real PostgreSQL streaming replica (pg_basebackup -R, started
 * by scripts/test-servers.sh): order reads go to the replica once it has caught up, a
 * session reads its own order at once even while the replica is behind (read-your-writes),
 * and a replica that is down leaves every read on the primary. PostgreSQL only: on SQLite,
 * or without EMPORIUM_TEST_REPLICA_URL, it says it was skipped. */
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
    /* The lag bound is generous: these tests are about routing and read-your-writes. */
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", env_urls, "EMPORIUM_REPLICA_MAX_LAG_MS=600000",
                         NULL};
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
    assert_true(metric(&s, "emporium_db_replica_up{replica=\"0\"}") == 0);
    assert_true(metric(&s, "emporium_db_replica_lag_seconds{replica=\"0\"}") == -1);
    assert_true(metric(&s, "emporium_db_reads_total{target=\"replica\"}") == 0);
    assert_true(metric(&s, "emporium_db_reads_total{target=\"primary\"}") >= 5);
    free(tok);
    assert_int_equal(th_suite_stop(&s, adm), 0);
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
        cmocka_unit_test(test_replica_down),
    };
    return cmocka_run_group_tests_name("replica", tests, NULL, NULL);
}
