/* SPDX-License-Identifier: MIT */
/* test_reshard.c — the order shard map and online resharding (docs/sharding.md), through
 * the HTTP API and the `emporium shards` CLI against the real binary (SQLite or PostgreSQL):
 * the first map reproduces the six fixed shards; bad moves are refused and change nothing;
 * the shop is shrunk from 6 shards to 3 with orders in it, then grown from 3 to 6 while
 * three clients keep placing and reading orders, with one move stopped (as by a crash) while
 * its buckets are fenced and another after its switch, both finished by running the command
 * again. No order may be lost, duplicated or unreadable, and no request may fail except
 * with a 503 (with Retry-After) while the buckets it writes are fenced. Then a group is moved
 * to a new shard on another server (`--to URL`, PostgreSQL only) and back. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define BUCKETS 3072
#define PER_GROUP 512
#define LOADERS 3
#define USERS_PER_LOADER 3
#define MAX_ORDERS 400
#define DEADLINE_MS 90000

#define ADDR                                                                                       \
    "{\"name\":\"Ada Lovelace\",\"line1\":\"1 Analytical "                                         \
    "St\",\"city\":\"London\",\"postal_code\":\"N1 9GU\",\"country\":\"GB\"}"
#define ORDER_BODY                                                                                 \
    "{\"shipping_address\":" ADDR ",\"payment\":{\"card_number\":\"4242424242424242\","            \
    "\"exp_month\":12,\"exp_year\":2030,\"cvc\":\"123\"},\"shipping_method\":\"standard\"}"

static struct th_server srv;
static char *admin;
static char product[32];

struct buyer {
    char *token;
    long long user_id;
    unsigned bucket;
    char orders[MAX_ORDERS][24]; /* ids of the orders placed (201) */
    int n;
};

static struct buyer buyers[LOADERS * USERS_PER_LOADER];
static struct buyer probe_in, probe_out; /* a user in the fenced buckets, one outside */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int placed, fenced_503, failures;
static atomic_bool stop;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The bucket function of docs/sharding.md: splitmix64's finalizer h of the user id, then
 * (h % 6) * 512 + (h / 6) % 512. */
static unsigned bucket_of(long long user_id)
{
    uint64_t z = (uint64_t)user_id + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (unsigned)(z % 6) * PER_GROUP + (unsigned)((z / 6) % PER_GROUP);
}

static void new_buyer(struct buyer *b)
{
    static int seq;
    char email[80];
    snprintf(email, sizeof email, "reshard%d-%d@example.com", (int)getpid(), ++seq);
    b->token = th_register(&srv, email, "buyer password");
    assert_non_null(b->token);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "GET", "/api/v1/users/me", b->token, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    b->user_id = atoll(th_jstr(r.json, "id"));
    b->bucket = bucket_of(b->user_id);
    b->n = 0;
    th_resp_free(&r);
}

static void fail_req(const char *what, const struct th_resp *r)
{
    fprintf(stderr, "test_reshard: %s: %ld %s\n", what, r->status, r->body ? r->body : "");
    atomic_fetch_add(&failures, 1);
}

/* One order for b: the cart line, then POST /orders until a 201 (a 503 with Retry-After is
 * asked again with the same key), then the order read back. 0, or -1 (counted a failure). */
static int buy(struct buyer *b, const char *key)
{
    struct th_resp r;
    if (th_call(&srv, "POST", "/api/v1/cart/items", b->token, &r,
                "{\"product_id\":\"%s\",\"quantity\":1}", product) != 0)
        return atomic_fetch_add(&failures, 1), -1;
    if (r.status != 200) {
        fail_req("add to cart", &r);
        th_resp_free(&r);
        return -1;
    }
    th_resp_free(&r);
    char auth[600], k[128], ra[16];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", b->token);
    snprintf(k, sizeof k, "Idempotency-Key: %s", key);
    const char *h[] = {auth, k, NULL};
    int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        if (th_req(&srv, "POST", "/api/v1/orders", ORDER_BODY, h, &r) != 0)
            return atomic_fetch_add(&failures, 1), -1;
        if (r.status == 201)
            break;
        if (r.status != 503 || !th_header(&r, "Retry-After", ra, sizeof ra) ||
            now_ms() > deadline) {
            fail_req("place order", &r);
            th_resp_free(&r);
            return -1;
        }
        atomic_fetch_add(&fenced_503, 1);
        th_resp_free(&r);
        pause_ms(20);
    }
    char id[24];
    snprintf(id, sizeof id, "%s", th_jstr(r.json, "id") ? th_jstr(r.json, "id") : "");
    th_resp_free(&r);
    pthread_mutex_lock(&mu);
    if (b->n < MAX_ORDERS)
        snprintf(b->orders[b->n++], sizeof b->orders[0], "%s", id);
    pthread_mutex_unlock(&mu);
    atomic_fetch_add(&placed, 1);
    char path[64];
    snprintf(path, sizeof path, "/api/v1/orders/%s", id);
    if (th_call(&srv, "GET", path, b->token, &r, NULL) != 0)
        return atomic_fetch_add(&failures, 1), -1;
    if (r.status != 200)
        fail_req("read the new order", &r);
    th_resp_free(&r);
    return 0;
}

static void *loader(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int n = 0; !atomic_load(&stop) && n < MAX_ORDERS - 10; n++) {
        struct buyer *b = &buyers[t * USERS_PER_LOADER + n % USERS_PER_LOADER];
        char key[64];
        snprintf(key, sizeof key, "reshard-%d-%d", t, n);
        if (buy(b, key) < 0)
            break;
        /* and one of the buyer's older orders, which must still be there */
        pthread_mutex_lock(&mu);
        char old[24];
        snprintf(old, sizeof old, "%s", b->orders[(n * 7 + 3) % (b->n ? b->n : 1)]);
        pthread_mutex_unlock(&mu);
        char path[64];
        snprintf(path, sizeof path, "/api/v1/orders/%s", old);
        struct th_resp r;
        if (old[0] && th_call(&srv, "GET", path, b->token, &r, NULL) == 0) {
            if (r.status != 200)
                fail_req("read an older order", &r);
            th_resp_free(&r);
        }
        pause_ms(20); /* a steady load, not a flood: the box has two cores */
    }
    return NULL;
}

/* --- CLI helpers --- */

static char *shards(const char *const *env, const char *const *args, int want_rc)
{
    char *out = NULL;
    int rc = th_cli_env(&srv, env, args, &out);
    if (rc != want_rc)
        fprintf(stderr, "emporium %s %s: exit %d, wanted %d\n%s\n", args[0], args[1], rc, want_rc,
                out ? out : "");
    assert_int_equal(rc, want_rc);
    assert_non_null(out);
    return out;
}

static char *status(void)
{
    static const char *const a[] = {"shards", "status", NULL};
    return shards(NULL, a, 0);
}

static void move(const char *buckets, const char *to, const char *stop_after, int want_rc)
{
    char env[64];
    snprintf(env, sizeof env, "EMPORIUM_TEST_RESHARD_STOP_AFTER=%s", stop_after ? stop_after : "");
    const char *const e[] = {env, NULL};
    const char *const a[] = {"shards", "move", "--buckets", buckets, "--to", to, NULL};
    free(shards(stop_after ? e : NULL, a, want_rc));
}

/* Sum of the "shard orders_N: K orders" lines of `shards status`. */
static long stored_orders(const char *st)
{
    long sum = 0;
    for (const char *p = strstr(st, "shard orders_"); p; p = strstr(p + 1, "shard orders_")) {
        int n;
        long k;
        if (sscanf(p, "shard orders_%d: %ld orders", &n, &k) == 2)
            sum += k;
    }
    return sum;
}

static void wait_placed_more(int n)
{
    int target = atomic_load(&placed) + n;
    int64_t deadline = now_ms() + DEADLINE_MS;
    while (atomic_load(&placed) < target && atomic_load(&failures) == 0 && now_ms() < deadline)
        pause_ms(10);
    assert_int_equal(atomic_load(&failures), 0);
    assert_true(atomic_load(&placed) >= target);
}

/* --- setup --- */

static int setup(void **state)
{
    (void)state;
    static const char *const env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};
    if (th_start(&srv, env, NULL) != 0)
        return -1;
    admin = th_admin_token(&srv);
    if (!admin)
        return -1;
    struct th_resp r;
    if (th_call(&srv, "POST", "/api/v1/products", admin, &r,
                "{\"sku\":\"RS-%d\",\"name\":\"Reshard thing\",\"description\":\"d\","
                "\"category\":\"things\",\"price\":{\"amount\":500,\"currency\":\"USD\"},"
                "\"weight_grams\":100}",
                (int)getpid()) != 0 ||
        r.status != 201)
        return -1;
    snprintf(product, sizeof product, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", product);
    if (th_call(&srv, "PUT", path, admin, &r, "{\"available\":1000000}") != 0 || r.status != 200)
        return -1;
    th_resp_free(&r);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof buyers / sizeof buyers[0]; i++)
        free(buyers[i].token);
    free(probe_in.token);
    free(probe_out.token);
    return th_suite_stop(&srv, admin);
}

/* --- tests --- */

static void test_first_map_and_bad_moves(void **state)
{
    (void)state;
    char *st = status();
    /* The fixed six shards, exactly: group g (512 buckets) on orders_g. */
    assert_non_null(strstr(st, "buckets 0-511 -> orders_0\n"));
    assert_non_null(strstr(st, "buckets 512-1023 -> orders_1\n"));
    assert_non_null(strstr(st, "buckets 2560-3071 -> orders_5\n"));
    assert_non_null(strstr(st, "serves version 1\n")); /* the server registered */
    free(st);

    const char *const bad[][7] = {
        {"shards", "move", "--buckets", "900-800", "--to", "orders_6", NULL},
        {"shards", "move", "--buckets", "500-600", "--to", "orders_2", NULL}, /* spans 0 and 1 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        free(shards(NULL, bad[i], 2));
    /* (that they changed nothing shows in the version after the next test's three moves) */
}

static void test_shrink_then_grow_under_load(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof buyers / sizeof buyers[0]; i++)
        new_buyer(&buyers[i]);
    /* Probes, outside the load: one in buckets 1536-2047 (moved with a stop while fenced),
     * one elsewhere. */
    for (new_buyer(&probe_in); probe_in.bucket < 1536 || probe_in.bucket > 2047;) {
        free(probe_in.token);
        new_buyer(&probe_in);
    }
    for (new_buyer(&probe_out); probe_out.bucket >= 1536 && probe_out.bucket <= 2047;) {
        free(probe_out.token);
        new_buyer(&probe_out);
    }
    /* Orders in the six-shard layout first. */
    for (size_t i = 0; i < sizeof buyers / sizeof buyers[0]; i++) {
        char key[64];
        snprintf(key, sizeof key, "before-%zu", i);
        assert_int_equal(buy(&buyers[i], key), 0);
    }
    assert_int_equal(buy(&probe_in, "probe-in-0"), 0);
    assert_int_equal(atomic_load(&failures), 0);

    /* 6 -> 3: the odd groups join the even ones. */
    move("512-1023", "orders_0", NULL, 0);
    move("1536-2047", "orders_2", NULL, 0);
    move("2560-3071", "orders_4", NULL, 0);
    char *st = status();
    assert_non_null(strstr(st, "map version 7:")); /* 1 + a fence and a switch per move */
    assert_non_null(strstr(st, "buckets 0-1023 -> orders_0\n"));
    assert_non_null(strstr(st, "buckets 1024-2047 -> orders_2\n"));
    assert_non_null(strstr(st, "buckets 2048-3071 -> orders_4\n"));
    assert_non_null(strstr(st, "shard orders_1: 0 orders\n"));
    assert_non_null(strstr(st, "shard orders_3: 0 orders\n"));
    assert_non_null(strstr(st, "shard orders_5: 0 orders\n"));
    free(st);

    /* 3 -> 6 under load. */
    pthread_t th[LOADERS];
    for (int t = 0; t < LOADERS; t++)
        assert_int_equal(pthread_create(&th[t], NULL, loader, (void *)(intptr_t)t), 0);
    wait_placed_more(8);
    move("512-1023", "orders_1", NULL, 0);
    wait_placed_more(4);

    /* Stopped while fenced, as by a crash: the fenced buckets refuse writes with a
     * retryable 503 (once the server has seen the fence), the others do not, reads work. */
    move("1536-2047", "orders_3", "fenced", 3);
    int64_t deadline = now_ms() + DEADLINE_MS;
    struct th_resp r;
    char auth[600], ra[16], keyhdr[80];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", probe_in.token);
    const char *h[] = {auth, keyhdr, NULL};
    for (;;) {
        snprintf(keyhdr, sizeof keyhdr, "Idempotency-Key: probe-in-%d", probe_in.n);
        th_call(&srv, "POST", "/api/v1/cart/items", probe_in.token, &r,
                "{\"product_id\":\"%s\",\"quantity\":1}", product);
        assert_int_equal(r.status, 200);
        th_resp_free(&r);
        assert_int_equal(th_req(&srv, "POST", "/api/v1/orders", ORDER_BODY, h, &r), 0);
        if (r.status == 503)
            break;
        /* Before the server saw the fence the order is simply placed: record it. */
        assert_int_equal(r.status, 201);
        snprintf(probe_in.orders[probe_in.n++], sizeof probe_in.orders[0], "%s",
                 th_jstr(r.json, "id"));
        th_resp_free(&r);
        assert_true(now_ms() < deadline);
        pause_ms(20);
    }
    assert_non_null(th_header(&r, "Retry-After", ra, sizeof ra));
    assert_true(th_is_error(&r, 503, NULL, NULL));
    th_resp_free(&r);
    assert_int_equal(buy(&probe_out, "probe-out-fenced"), 0); /* another bucket: served */
    char path[64];
    snprintf(path, sizeof path, "/api/v1/orders/%s", probe_in.orders[0]);
    assert_int_equal(th_call(&srv, "GET", path, probe_in.token, &r, NULL), 0);
    assert_int_equal(r.status, 200); /* reads are not fenced */
    th_resp_free(&r);
    st = status();
    assert_non_null(strstr(st, "buckets 1536-2047 -> orders_2 (fenced)\n"));
    assert_non_null(strstr(st, "at step fenced (unfinished)"));
    free(st);
    /* Another move waits for the unfinished one. */
    move("2560-3071", "orders_5", NULL, 1);
    move("1536-2047", "orders_3", NULL, 0); /* resumes */
    /* The probe's order, refused while fenced, now goes through with the same key. */
    deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        assert_int_equal(th_req(&srv, "POST", "/api/v1/orders", ORDER_BODY, h, &r), 0);
        if (r.status == 201)
            break;
        assert_int_equal(r.status, 503); /* until the server saw the switch */
        th_resp_free(&r);
        assert_true(now_ms() < deadline);
        pause_ms(20);
    }
    snprintf(probe_in.orders[probe_in.n++], sizeof probe_in.orders[0], "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    wait_placed_more(4);

    /* Stopped after the switch, before the source was cleaned up. */
    move("2560-3071", "orders_5", "switched", 3);
    wait_placed_more(4);
    move("2560-3071", "orders_5", NULL, 0);
    wait_placed_more(4);
    atomic_store(&stop, true);
    for (int t = 0; t < LOADERS; t++)
        pthread_join(th[t], NULL);
    assert_int_equal(atomic_load(&failures), 0);
    fprintf(stderr, "test_reshard: %d orders placed under load, %d answers were 503 (fenced)\n",
            atomic_load(&placed), atomic_load(&fenced_503));

    st = status();
    for (int g = 0; g < 6; g++) {
        char line[64];
        snprintf(line, sizeof line, "buckets %d-%d -> orders_%d\n", g * PER_GROUP,
                 g * PER_GROUP + PER_GROUP - 1, g);
        assert_non_null(strstr(st, line));
    }
    assert_null(strstr(st, "unfinished"));
    assert_null(strstr(st, "fenced"));

    /* Every order: exactly once in its buyer's list, readable by id, stored once. */
    long total = 0;
    struct buyer *all[LOADERS * USERS_PER_LOADER + 2];
    int na = 0;
    for (size_t i = 0; i < sizeof buyers / sizeof buyers[0]; i++)
        all[na++] = &buyers[i];
    all[na++] = &probe_in;
    all[na++] = &probe_out;
    for (int i = 0; i < na; i++) {
        struct buyer *b = all[i];
        total += b->n;
        /* the buyer's whole list, page by page */
        json_t *items = json_array();
        char cursor[32] = "";
        do {
            snprintf(path, sizeof path, "/api/v1/orders?limit=100%s%s", cursor[0] ? "&cursor=" : "",
                     cursor);
            assert_int_equal(th_call(&srv, "GET", path, b->token, &r, NULL), 0);
            assert_int_equal(r.status, 200);
            json_array_extend(items, json_object_get(r.json, "items"));
            const char *next = th_jstr(r.json, "next_cursor");
            snprintf(cursor, sizeof cursor, "%s", next ? next : "");
            th_resp_free(&r);
        } while (cursor[0]);
        size_t listed = json_array_size(items);
        if ((int)listed != b->n)
            fprintf(stderr, "buyer %d (bucket %u): %zu listed, %d placed\n", i, b->bucket, listed,
                    b->n);
        assert_int_equal((int)listed, b->n);
        for (int k = 0; k < b->n; k++) {
            int seen = 0;
            size_t j;
            json_t *o;
            json_array_foreach (items, j, o)
                seen += !strcmp(json_string_value(json_object_get(o, "id")), b->orders[k]);
            assert_int_equal(seen, 1);
            snprintf(path, sizeof path, "/api/v1/orders/%s", b->orders[k]);
            struct th_resp g;
            assert_int_equal(th_call(&srv, "GET", path, b->token, &g, NULL), 0);
            assert_int_equal(g.status, 200);
            assert_string_equal(th_jstr(g.json, "id"), b->orders[k]);
            th_resp_free(&g);
        }
        json_decref(items);
    }
    assert_int_equal(stored_orders(st), total); /* no copy left behind */
    free(st);
}

/* Every event of order `id` published, within the deadline: the relay of the server visits
 * the shard the order is on (one added at run time too). */
static void wait_published(const char *id)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/admin/orders/%s/events", id);
    int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        struct th_resp r;
        assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
        assert_int_equal(r.status, 200);
        json_t *items = json_object_get(r.json, "items");
        size_t k, unpublished = 0;
        json_t *e;
        json_array_foreach (items, k, e)
            unpublished += !json_is_true(json_object_get(e, "published"));
        bool done = json_array_size(items) > 0 && unpublished == 0;
        th_resp_free(&r);
        if (done)
            return;
        assert_true(now_ms() < deadline);
        pause_ms(50);
    }
}

/* The orders of a shard, from `shards status` ("shard orders_N: K orders"), or -1. */
static long shard_orders(const char *st, int n)
{
    char head[32];
    snprintf(head, sizeof head, "shard orders_%d: ", n);
    const char *p = strstr(st, head);
    long k;
    return p && sscanf(p + strlen(head), "%ld orders", &k) == 1 ? k : -1;
}

/* Buckets moved to a shard on another server (`--to URL`): a new shard orders_6 is made
 * there and registered, the orders follow, the server routes to it, its relay publishes
 * the new shard's events, and the buckets come back. The URL names the test server with
 * another database name: to the shop that is another server (its own pool, its own
 * database created and migrated there). SQLite refuses the URL and changes nothing. */
static void test_move_to_another_server(void **state)
{
    (void)state;
    const char *at = srv.db_url[0] ? strrchr(srv.db_url, '/') : NULL;
    if (!at) {
        const char *const a[] = {"shards",    "move", "--buckets",
                                 "2560-3071", "--to", "postgres://127.0.0.1:1/elsewhere",
                                 NULL};
        char *out = shards(NULL, a, 2);
        assert_non_null(strstr(out, "need PostgreSQL"));
        free(out);
        char *st = status();
        assert_non_null(strstr(st, "buckets 2560-3071 -> orders_5\n"));
        assert_null(strstr(st, "orders_6"));
        free(st);
        return;
    }
    /* postgres://…/<db>[?…] -> postgres://…/<db>_far: the same server, another database */
    char url[600];
    const char *q = strchr(at, '?');
    int dblen = q ? (int)(q - at) : (int)strlen(at);
    snprintf(url, sizeof url, "%.*s%.*s_far%s", (int)(at - srv.db_url), srv.db_url, dblen, at,
             q ? q : "");
    /* A URL that cannot be reached registers nothing. */
    const char *const bad[] = {"shards",    "move", "--buckets",
                               "2560-3071", "--to", "postgres://127.0.0.1:1/elsewhere",
                               NULL};
    free(shards(NULL, bad, 1));
    char *st = status();
    assert_null(strstr(st, "orders_6"));
    free(st);

    struct buyer b;
    for (new_buyer(&b); b.bucket < 2560;) {
        free(b.token);
        new_buyer(&b);
    }
    assert_int_equal(buy(&b, "far-before"), 0);
    move("2560-3071", url, NULL, 0);
    st = status();
    assert_non_null(strstr(st, "buckets 2560-3071 -> orders_6\n"));
    assert_non_null(strstr(st, "shard orders_6: "));
    assert_non_null(strstr(st, "_far)\n")); /* where it is */
    assert_int_equal(shard_orders(st, 5), 0);
    long on6 = shard_orders(st, 6);
    assert_true(on6 >= 1);
    free(st);

    /* The buyer's order is read from the new shard, and a new one is placed there (a 503
     * until the server saw the switch is asked again by buy()). */
    char path[64];
    snprintf(path, sizeof path, "/api/v1/orders/%s", b.orders[0]);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "GET", path, b.token, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(buy(&b, "far-after"), 0);
    wait_published(b.orders[1]);
    assert_int_equal(th_call(&srv, "GET", "/api/v1/orders?limit=10", b.token, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal((int)json_array_size(json_object_get(r.json, "items")), 2);
    th_resp_free(&r);
    st = status();
    assert_int_equal(shard_orders(st, 6), on6 + 1);
    free(st);

    /* Back to orders_5, and the registered shard is reachable by its name. */
    move("2560-3071", "orders_5", NULL, 0);
    st = status();
    assert_non_null(strstr(st, "buckets 2560-3071 -> orders_5\n"));
    assert_int_equal(shard_orders(st, 6), 0);
    free(st);
    assert_int_equal(th_call(&srv, "GET", path, b.token, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    free(b.token);
    assert_int_equal(atomic_load(&failures), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_map_and_bad_moves),
        cmocka_unit_test(test_shrink_then_grow_under_load),
        cmocka_unit_test(test_move_to_another_server),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
