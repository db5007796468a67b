/* SPDX-License-Identifier: MIT */
/* test_events_kafka.c — the event path over the real Kafka protocol: the shop runs with
 * EMPORIUM_KAFKA_BROKERS pointing at a 3-broker cluster (librdkafka's mock cluster hosted by
 * tests/tools/kafka_mock.c), its consumers join Kafka consumer groups, and kcat — an outside
 * client — reads the topics back: every event once per id, keyed by its aggregate, a
 * CloudEvents envelope. Outage: every broker down in the middle of the orders, the orders
 * still answer 201; brokers back, every event arrives and every effect happens once (the
 * analytics figures are exact). A kill -9 of the server while it relays changes none of that.
 * Runs on SQLite and PostgreSQL (the shop's storage; the events go through Kafka either way). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "events_wait.h"
#include "harness.h"

static struct th_server srv;
static char *admin;
static pid_t mock_pid;
static char dir[64], bs_file[128], brokers[512], env_brokers[600];

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int mock_start(void)
{
    snprintf(dir, sizeof dir, "/tmp/emp-kmock-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(bs_file, sizeof bs_file, "%s/bootstrap", dir);
    char log[128];
    snprintf(log, sizeof log, "%s/mock.log", dir);
    mock_pid = fork();
    if (mock_pid < 0)
        return -1;
    if (mock_pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            close(fd);
        }
        execl(EMPORIUM_KAFKA_MOCK, EMPORIUM_KAFKA_MOCK, "--bootstrap-file", bs_file, "--brokers",
              "3", "--partitions", "24", (char *)NULL);
        _exit(127);
    }
    for (time_t end = time(NULL) + 30; time(NULL) < end; nap_ms(50)) {
        FILE *f = fopen(bs_file, "r");
        if (!f)
            continue;
        bool ok = fgets(brokers, sizeof brokers, f) != NULL;
        fclose(f);
        brokers[strcspn(brokers, "\n")] = 0;
        if (ok && brokers[0])
            return 0;
    }
    return -1;
}

static void mock_stop(void)
{
    if (mock_pid > 0) {
        kill(mock_pid, SIGTERM);
        int st;
        waitpid(mock_pid, &st, 0);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static const char *server_env[3];

static int setup(void **state)
{
    if (mock_start() < 0) {
        fprintf(stderr, "the Kafka mock cluster did not start\n");
        return -1;
    }
    snprintf(env_brokers, sizeof env_brokers, "EMPORIUM_KAFKA_BROKERS=%s", brokers);
    server_env[0] = "EMPORIUM_RATE_LIMITS=off";
    server_env[1] = env_brokers;
    server_env[2] = NULL;
    if (th_start(&srv, server_env, NULL) != 0)
        return -1;
    admin = th_admin_token(&srv);
    return admin ? 0 : -1;
}

static int teardown(void **state)
{
    int rc = th_suite_stop(&srv, admin);
    mock_stop();
    return rc;
}

static void product(const char *sku, const char *category, long price, char id[32])
{
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", "/api/v1/products", admin, &r,
                             "{\"sku\":\"%s\",\"name\":\"Item %s\",\"description\":\"d\","
                             "\"category\":\"%s\",\"price\":{\"amount\":%ld,\"currency\":\"USD\"}}",
                             sku, sku, category, price),
                     0);
    assert_int_equal(r.status, 201);
    snprintf(id, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    char path[80];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", id);
    assert_int_equal(th_call(&srv, "PUT", path, admin, &r, "{\"available\":1000}"), 0);
    th_resp_free(&r);
}

static void buy(const char *tok, const char *pid, int q, char oid[32])
{
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", "/api/v1/cart/items", tok, &r,
                             "{\"product_id\":\"%s\",\"quantity\":%d}", pid, q),
                     0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    static int key;
    char auth[160], idem[48];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    snprintf(idem, sizeof idem, "Idempotency-Key: kf-%d-%ld", ++key, (long)time(NULL));
    const char *h[] = {auth, "Content-Type: application/json", idem, NULL};
    const char *body =
        "{\"shipping_address\":{\"name\":\"A\",\"line1\":\"1 Road\",\"city\":\"Town\","
        "\"postal_code\":\"12345\",\"country\":\"US\"},\"payment\":{\"card_number\":"
        "\"4242424242424242\",\"exp_month\":12,\"exp_year\":2040,\"cvc\":\"123\"},"
        "\"shipping_method\":\"standard\"}";
    assert_int_equal(th_req(&srv, "POST", "/api/v1/orders", body, h, &r), 0);
    if (r.status != 201)
        fail_msg("order: %ld %s", r.status, r.body);
    snprintf(oid, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
}

static void cancel(const char *tok, const char *oid)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", oid);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

static bool category_reaches(const char *category, long long revenue, long long orders)
{
    char today[11], path[200];
    long long rv = -1, od = -1;
    for (time_t end = time(NULL) + 120; time(NULL) < end; nap_ms(100)) {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(today, sizeof today, "%Y-%m-%d", &tm);
        snprintf(path, sizeof path, "/api/v1/admin/analytics/sales?from=%s&to=%s&group_by=category",
                 today, today);
        struct th_resp r;
        assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
        rv = od = 0;
        json_t *items = json_object_get(r.json, "items");
        for (size_t i = 0; i < json_array_size(items); i++) {
            json_t *it = json_array_get(items, i);
            if (!strcmp(th_jstr(it, "category"), category)) {
                rv = th_jint(it, "revenue.amount", -1);
                od = th_jint(it, "orders", -1);
            }
        }
        th_resp_free(&r);
        if (rv == revenue && od == orders)
            return true;
    }
    fprintf(stderr, "category %s: revenue %lld orders %lld, want %lld %lld\n", category, rv, od,
            revenue, orders);
    return false;
}

/* The events of topic read by kcat from the beginning: a JSON array of {key, value}. */
static json_t *kcat_read(const char *topic)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "kcat -q -b '%s' -C -t %s -o beginning -e -f '%%k\\t%%s\\n' 2>%s/kcat.err", brokers,
             topic, dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    json_t *out = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, p)) > 0) {
        line[strcspn(line, "\n")] = 0;
        char *tab = strchr(line, '\t');
        if (!tab)
            continue;
        *tab = 0;
        json_t *v = json_loads(tab + 1, 0, NULL);
        assert_non_null(v);
        json_array_append_new(out, json_pack("{s:s,s:o}", "key", line, "value", v));
    }
    free(line);
    assert_int_equal(pclose(p), 0);
    return out;
}

/* How many messages of `msgs` carry CloudEvents id `id` (and check their key = subject). */
static int count_id(json_t *msgs, const char *id)
{
    int n = 0;
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        if (strcmp(th_jstr(m, "value.id"), id) != 0)
            continue;
        n++;
        assert_string_equal(th_jstr(m, "key"), th_jstr(m, "value.subject"));
        assert_string_equal(th_jstr(m, "value.specversion"), "1.0");
    }
    return n;
}

/* Each order's outbox events, published, each exactly once on its topic. */
static void assert_each_event_once(char (*oid)[32], int n)
{
    json_t *msgs = kcat_read("order-events");
    for (int i = 0; i < n; i++) {
        char path[320];
        snprintf(path, sizeof path, "/api/v1/admin/orders/%s/events", oid[i]);
        struct th_resp r;
        assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
        json_t *items = json_object_get(r.json, "items");
        assert_true(json_array_size(items) >= 2);
        for (size_t k = 0; k < json_array_size(items); k++) {
            json_t *e = json_array_get(items, k);
            assert_true(json_is_true(json_object_get(e, "published")));
            if (count_id(msgs, th_jstr(e, "event_id")) != 1)
                fail_msg("event %s (%s) of order %s: %d times on order-events",
                         th_jstr(e, "event_id"), th_jstr(e, "type"), oid[i],
                         count_id(msgs, th_jstr(e, "event_id")));
        }
        th_resp_free(&r);
    }
    json_decref(msgs);
}

/* Orders and cancellations: the analytics consumer group (a Kafka group) counts the net;
 * kcat sees every event once, keyed by its order. */
static void test_kafka_every_event_once(void **state)
{
    char pid[32];
    product("KF-ONCE", "kf-once", 1000, pid);
    char *tok = th_register(&srv, "kf-once@example.com", "buyer password");
    assert_non_null(tok);
    char oid[6][32];
    for (int i = 0; i < 6; i++)
        buy(tok, pid, i + 1, oid[i]);
    cancel(tok, oid[1]);
    cancel(tok, oid[4]);
    /* kept: 1+3+4+6 = 14 units, 4 orders */
    assert_true(category_reaches("kf-once", 14000, 4));
    for (time_t end = time(NULL) + 60; time(NULL) < end; nap_ms(50))
        if (th_metric(&srv, "emporium_outbox_pending") == 0)
            break;
    assert_each_event_once(oid, 6);
    /* payment events: keyed by the payment, naming the order */
    json_t *pay = kcat_read("payment-events");
    assert_true(json_array_size(pay) >= 6);
    json_decref(pay);
    free(tok);
}

/* Every broker down in the middle: checkouts answer 201 all the same; brokers back, the
 * relay delivers the backlog, every effect happens once. */
static void test_kafka_outage(void **state)
{
    char pid[32];
    product("KF-OUT", "kf-outage", 500, pid);
    char *tok = th_register(&srv, "kf-outage@example.com", "buyer password");
    assert_non_null(tok);
    char oid[9][32];
    for (int i = 0; i < 3; i++)
        buy(tok, pid, 1, oid[i]);
    assert_true(category_reaches("kf-outage", 1500, 3));
    assert_int_equal(kill(mock_pid, SIGUSR1), 0); /* every broker down */
    for (int i = 3; i < 9; i++)
        buy(tok, pid, 1, oid[i]); /* 201 each (asserted in buy) */
    /* the relay cannot deliver: the rows wait */
    assert_true(th_metric(&srv, "emporium_outbox_pending") > 0);
    assert_int_equal(kill(mock_pid, SIGUSR2), 0); /* back */
    assert_true(category_reaches("kf-outage", 9 * 500, 9));
    for (time_t end = time(NULL) + 90; time(NULL) < end; nap_ms(50))
        if (th_metric(&srv, "emporium_outbox_pending") == 0)
            break;
    assert_true(th_metric(&srv, "emporium_outbox_pending") == 0);
    fprintf(stderr,
            "outage: 6 orders placed while every broker was down, all 201; "
            "publish failures retried: %.0f\n",
            th_metric(&srv, "emporium_outbox_publish_failures_total"));
    assert_each_event_once(oid, 9);
    free(tok);
}

/* kill -9 of the server right after a burst of orders, its relay and consumers inside:
 * nothing lost, nothing counted twice. */
static void test_kafka_kill9(void **state)
{
    char pid[32];
    product("KF-KILL", "kf-kill", 200, pid);
    char *tok = th_register(&srv, "kf-kill@example.com", "buyer password");
    assert_non_null(tok);
    char oid[10][32];
    for (int i = 0; i < 8; i++)
        buy(tok, pid, 1, oid[i]);
    th_kill(&srv);
    assert_int_equal(th_restart(&srv, server_env, NULL), 0);
    for (int i = 8; i < 10; i++)
        buy(tok, pid, 1, oid[i]);
    assert_true(category_reaches("kf-kill", 10 * 200, 10));
    free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kafka_every_event_once),
        cmocka_unit_test(test_kafka_outage),
        cmocka_unit_test(test_kafka_kill9),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
