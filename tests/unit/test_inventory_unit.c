/* SPDX-License-Identifier: MIT */
/* test_inventory_unit.c — the inventory library API (svc/inventory.h) in-process, under
 * concurrency: the no-oversell invariant, idempotency, confirm/release, expiry by the
 * sweeper, the outbox. HTTP cannot reserve stock directly, so this drives the functions the
 * order service calls. Runs on SQLite (temp data dir) or PostgreSQL (EMPORIUM_TEST_BACKEND=
 * postgres, a fresh database prefix under EMPORIUM_TEST_PG_URL). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/config.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/svc/inventory.h"
#include "harness.h"
#include "unit_app.h"

static struct th_unit_app ua;
static struct app *app;

static int setup(void **state)
{
    /* The inventory alone: the catalog's stock refresh (one write per product) is the
     * catalog's cost and is covered through HTTP by test_inventory.c. */
    if (th_unit_app_config(&ua, "iu", "inventory") < 0)
        return -1;
    if (ua.pg)
        ua.cfg.db_pool_size = 20;
    if (th_unit_app_open(&ua) < 0)
        return -1;
    app = ua.app;
    /* background jobs run only once started, as `emporium serve` does: the reservation
     * sweep is one of them (test_expiry) */
    return app_start_timers(app) == 0 ? 0 : -1;
}

static int teardown(void **state) { return th_unit_app_close(&ua); }

static void level(int64_t product, int64_t *avail, int64_t *reserved)
{
    assert_int_equal(inventory_get(app, product, avail, reserved), 0);
}

/* ---- 16 threads, one unit each, stock 5 ---- */

struct race {
    int64_t product;
    int64_t reservation;
    int rc;
    int64_t short_product;
};

static void *race_main(void *arg)
{
    struct race *r = arg;
    struct inventory_item it = {r->product, 1};
    r->rc = inventory_reserve(app, r->reservation, &it, 1, 60, &r->short_product);
    return NULL;
}

static void test_no_oversell_16_threads(void **state)
{
    const int64_t product = 1001;
    assert_int_equal(inventory_set(app, product, 5), 0);
    enum { N = 16 };
    pthread_t th[N];
    struct race r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (struct race){.product = product, .reservation = id_new(0)};
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &r[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        if (r[i].rc == 0) {
            ok++;
        } else {
            assert_int_equal(r[i].rc, ERR_CONFLICT);
            assert_int_equal(r[i].short_product, product);
        }
    }
    assert_int_equal(ok, 5);
    int64_t a, res;
    level(product, &a, &res);
    assert_int_equal(a, 0);
    assert_int_equal(res, 5);

    /* Release every success: back to 5; releasing again changes nothing. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < N; i++)
            if (r[i].rc == 0)
                assert_int_equal(inventory_release(app, r[i].reservation), 0);
    level(product, &a, &res);
    assert_int_equal(a, 5);
    assert_int_equal(res, 0);
}

/* ---- mixed load: multi-item reservations, confirms and releases from 16 threads ---- */

#define MIX_PRODUCTS 3
#define MIX_STOCK 40
#define MIX_OPS 60

static int64_t mix_confirmed[16][MIX_PRODUCTS];

static void *mix_main(void *arg)
{
    int t = (int)(intptr_t)arg;
    unsigned seed = (unsigned)t * 7919u + 1;
    for (int op = 0; op < MIX_OPS; op++) {
        struct inventory_item items[MIX_PRODUCTS];
        int n = 0;
        for (int p = 0; p < MIX_PRODUCTS; p++)
            if (rand_r(&seed) % 2 || (p == MIX_PRODUCTS - 1 && n == 0))
                items[n++] = (struct inventory_item){2001 + p, 1 + rand_r(&seed) % 3};
        /* Reverse order half the time: the service must not deadlock on it. */
        if (rand_r(&seed) % 2)
            for (int i = 0; i < n / 2; i++) {
                struct inventory_item x = items[i];
                items[i] = items[n - 1 - i];
                items[n - 1 - i] = x;
            }
        int64_t rid = id_new((unsigned)t), short_p = 0;
        int rc = inventory_reserve(app, rid, items, n, 60, &short_p);
        if (rc == ERR_CONFLICT)
            continue;
        if (rc != 0) {
            fprintf(stderr, "reserve: %s\n", err_str(rc));
            abort();
        }
        switch (rand_r(&seed) % 3) {
        case 0:
            if (inventory_release(app, rid) != 0)
                abort();
            break;
        case 1:
            if (inventory_confirm(app, rid) != 0)
                abort();
            for (int i = 0; i < n; i++)
                mix_confirmed[t][items[i].product_id - 2001] += items[i].quantity;
            break;
        default: /* confirm then cancel: back to stock */
            if (inventory_confirm(app, rid) != 0 || inventory_release(app, rid) != 0)
                abort();
        }
    }
    return NULL;
}

static void test_mixed_concurrency_invariant(void **state)
{
    for (int p = 0; p < MIX_PRODUCTS; p++)
        assert_int_equal(inventory_set(app, 2001 + p, MIX_STOCK), 0);
    pthread_t th[16];
    for (int t = 0; t < 16; t++)
        assert_int_equal(pthread_create(&th[t], NULL, mix_main, (void *)(intptr_t)t), 0);
    for (int t = 0; t < 16; t++)
        pthread_join(th[t], NULL);
    for (int p = 0; p < MIX_PRODUCTS; p++) {
        int64_t a, res, sold = 0;
        for (int t = 0; t < 16; t++)
            sold += mix_confirmed[t][p];
        level(2001 + p, &a, &res);
        assert_true(a >= 0);
        assert_int_equal(res, 0);
        assert_int_equal(a + sold, MIX_STOCK);
    }
}

static void test_idempotent_reserve_confirm_release(void **state)
{
    const int64_t p1 = 3001, p2 = 3002;
    assert_int_equal(inventory_set(app, p1, 10), 0);
    assert_int_equal(inventory_set(app, p2, 1), 0);
    int64_t rid = id_new(0), a, res, short_p;
    struct inventory_item items[] = {{p1, 2}, {p2, 1}, {p1, 1}}; /* duplicates merge: p1 x3 */
    assert_int_equal(inventory_reserve(app, rid, items, 3, 60, &short_p), 0);
    assert_int_equal(inventory_reserve(app, rid, items, 3, 60, &short_p), 0); /* retry */
    level(p1, &a, &res);
    assert_int_equal(a, 7);
    assert_int_equal(res, 3);
    level(p2, &a, &res);
    assert_int_equal(a, 0);
    assert_int_equal(res, 1);

    /* All or nothing: p2 is short, so p1 is not taken either. */
    int64_t rid2 = id_new(0);
    struct inventory_item both[] = {{p1, 1}, {p2, 1}};
    assert_int_equal(inventory_reserve(app, rid2, both, 2, 60, &short_p), ERR_CONFLICT);
    assert_int_equal(short_p, p2);
    level(p1, &a, &res);
    assert_int_equal(a, 7);
    /* A product without an inventory row is short too. */
    struct inventory_item ghost = {999999, 1};
    assert_int_equal(inventory_reserve(app, id_new(0), &ghost, 1, 60, &short_p), ERR_CONFLICT);
    assert_int_equal(short_p, 999999);
    assert_int_equal(inventory_get(app, 999999, &a, &res), ERR_NOTFOUND);

    assert_int_equal(inventory_confirm(app, rid), 0);
    assert_int_equal(inventory_confirm(app, rid), 0);
    level(p1, &a, &res);
    assert_int_equal(a, 7);
    assert_int_equal(res, 0);
    /* Cancel after payment gives the stock back, once. */
    assert_int_equal(inventory_release(app, rid), 0);
    assert_int_equal(inventory_release(app, rid), 0);
    level(p1, &a, &res);
    assert_int_equal(a, 10);
    assert_int_equal(res, 0);
    level(p2, &a, &res);
    assert_int_equal(a, 1);
    /* Released: cannot be confirmed any more; re-reserving the id is a no-op. */
    assert_int_equal(inventory_confirm(app, rid), ERR_NOTFOUND);
    assert_int_equal(inventory_confirm(app, id_new(0)), ERR_NOTFOUND);
    assert_int_equal(inventory_release(app, id_new(0)), 0);
    assert_int_equal(inventory_reserve(app, rid, items, 3, 60, &short_p), 0);
    level(p1, &a, &res);
    assert_int_equal(a, 10);

    /* Bad input. */
    struct inventory_item zero = {p1, 0}, neg = {p1, -1}, badid = {0, 1};
    assert_int_equal(inventory_reserve(app, id_new(0), &zero, 1, 60, NULL), ERR_INVALID);
    assert_int_equal(inventory_reserve(app, id_new(0), &neg, 1, 60, NULL), ERR_INVALID);
    assert_int_equal(inventory_reserve(app, id_new(0), &badid, 1, 60, NULL), ERR_INVALID);
    assert_int_equal(inventory_reserve(app, id_new(0), items, 0, 60, NULL), ERR_INVALID);
    assert_int_equal(inventory_reserve(app, id_new(0), items, 1, 0, NULL), ERR_INVALID);
    assert_int_equal(inventory_set(app, p1, -1), ERR_INVALID);
    assert_int_equal(inventory_set(app, 0, 1), ERR_INVALID);
}

static void test_expiry(void **state)
{
    const int64_t p = 4001;
    assert_int_equal(inventory_set(app, p, 3), 0);
    int64_t rid = id_new(0), a, res;
    struct inventory_item it = {p, 3};
    assert_int_equal(inventory_reserve(app, rid, &it, 1, 1, NULL), 0);
    level(p, &a, &res);
    assert_int_equal(a, 0);
    assert_int_equal(res, 3);
    /* The sweep job (every ~1 s) gives it back without anyone touching it. */
    int64_t deadline = mono_ms() + 60000; /* generous: a slow machine */
    do {
        usleep(100 * 1000);
        level(p, &a, &res);
    } while (a != 3 && mono_ms() < deadline);
    assert_int_equal(a, 3);
    assert_int_equal(res, 0);
    assert_int_equal(inventory_confirm(app, rid), ERR_NOTFOUND);

    /* Touched after expiry: a confirm releases it at once and says not found. */
    int64_t rid2 = id_new(0);
    assert_int_equal(inventory_reserve(app, rid2, &it, 1, 1, NULL), 0);
    usleep(1050 * 1000);
    assert_int_equal(inventory_confirm(app, rid2), ERR_NOTFOUND);
    level(p, &a, &res);
    assert_int_equal(a, 3);
    assert_int_equal(res, 0);
    assert_int_equal(inventory_release(app, rid2), 0);
    level(p, &a, &res);
    assert_int_equal(a, 3);

    /* A reserve that finds only expired holdings takes their stock. */
    int64_t rid3 = id_new(0);
    assert_int_equal(inventory_reserve(app, rid3, &it, 1, 1, NULL), 0);
    usleep(1050 * 1000);
    assert_int_equal(inventory_reserve(app, id_new(0), &it, 1, 60, NULL), 0);
    level(p, &a, &res);
    assert_int_equal(a, 0);
    assert_int_equal(res, 3);
}

static void test_outbox_events(void **state)
{
    struct db *db = app_db(app, "inventory");
    assert_non_null(db);
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    static const char *const types[] = {"stock.reserved", "stock.released", "stock.confirmed",
                                        "stock.low", "stock.adjusted"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        struct db_rows *r = NULL;
        struct db_val a[] = {DB_TEXT(types[i])};
        assert_int_equal(db_query(c, "SELECT count(*) FROM outbox WHERE event_type = $1", 1, a, &r),
                         0);
        if (db_get_i64(r, 0, 0) < 1)
            fail_msg("no %s event in the outbox", types[i]);
        db_rows_free(r);
    }
    /* Ordered per aggregate: a reservation's reserved event precedes its released one. */
    struct db_rows *r = NULL;
    assert_int_equal(db_query(c,
                              "SELECT aggregate_id, event_type FROM outbox WHERE aggregate_type = "
                              "'reservation' ORDER BY aggregate_id, id",
                              0, NULL, &r),
                     0);
    const char *prev = "";
    for (int i = 0; i < db_rows_count(r); i++) {
        if (strcmp(db_get(r, i, 0), prev) != 0)
            assert_string_equal(db_get(r, i, 1), "stock.reserved");
        prev = db_get(r, i, 0);
    }
    db_rows_free(r);
    db_conn_give(c);
}

/* stock.low events of product p in the outbox whose payload names `available` a; a < 0: any. */
static int low_events(int64_t p, int a)
{
    struct db_conn *c;
    assert_int_equal(db_conn_take(app_db(app, "inventory"), &c), 0);
    char pid[21], want[48];
    snprintf(want, sizeof want, "%%\"available\":%d,%%", a);
    struct db_val args[] = {DB_TEXT(id_format(p, pid)), DB_TEXT(a < 0 ? "%" : want)};
    struct db_rows *r = NULL;
    assert_int_equal(db_query(c,
                              "SELECT count(*) FROM outbox WHERE event_type = 'stock.low' "
                              "AND aggregate_id = $1 AND payload LIKE $2",
                              2, args, &r),
                     0);
    int n = (int)db_get_i64(r, 0, 0);
    db_rows_free(r);
    db_conn_give(c);
    return n;
}

/* The reservation that takes a product below the low-stock mark (5) writes stock.low with it,
 * once; the ones before (down to the mark) and after do not. On PostgreSQL the crossing one
 * is the case the one-round-trip reservation hands to the transaction. */
static void test_low_stock_crossing(void **state)
{
    const int64_t p = 3101;
    assert_int_equal(inventory_set(app, p, 8), 0);
    struct inventory_item three = {p, 3}, one = {p, 1};
    assert_int_equal(inventory_reserve(app, id_new(0), &three, 1, 60, NULL), 0); /* 8 -> 5 */
    assert_int_equal(low_events(p, -1), 0);
    assert_int_equal(inventory_reserve(app, id_new(0), &one, 1, 60, NULL), 0); /* 5 -> 4 */
    assert_int_equal(low_events(p, -1), 1);
    assert_int_equal(low_events(p, 4), 1);
    assert_int_equal(inventory_reserve(app, id_new(0), &one, 1, 60, NULL), 0); /* 4 -> 3 */
    assert_int_equal(low_events(p, -1), 1);
    int64_t a, res;
    level(p, &a, &res);
    assert_int_equal(a, 3);
    assert_int_equal(res, 5);
}

static void test_set_many(void **state)
{
    enum { N = 20000 };
    int64_t *ids = malloc(N * sizeof *ids), *av = malloc(N * sizeof *av);
    assert_non_null(ids);
    assert_non_null(av);
    for (int i = 0; i < N; i++) {
        ids[i] = 100000 + i;
        av[i] = i % 50;
    }
    /* (its speed is a benchmark's business, never a timed assertion) */
    assert_int_equal(inventory_set_many(app, ids, av, N), 0);
    /* Again (upsert), then spot checks. */
    for (int i = 0; i < N; i++)
        av[i] = i % 7;
    assert_int_equal(inventory_set_many(app, ids, av, N), 0);
    int64_t a, res;
    level(100000 + 12345, &a, &res);
    assert_int_equal(a, 12345 % 7);
    level(100000 + N - 1, &a, &res);
    assert_int_equal(a, (N - 1) % 7);
    av[3] = -1;
    assert_int_equal(inventory_set_many(app, ids, av, N), ERR_INVALID);
    free(ids);
    free(av);
}

/* ---- stock changes leave as events; the admin path checks the catalog's registered check */

static pthread_mutex_t ev_mu = PTHREAD_MUTEX_INITIALIZER;
static char ev_last[256];
static int ev_count;

static void on_stock_event(void *ctx, const char *topic, const char *key, const char *payload,
                           size_t len)
{
    pthread_mutex_lock(&ev_mu);
    ev_count++;
    snprintf(ev_last, sizeof ev_last, "%.*s", (int)len, payload);
    pthread_mutex_unlock(&ev_mu);
}

static int known_odd(struct app *a, int64_t product_id) { return product_id % 2 == 1; }

static void test_stock_events_and_admin(void **state)
{
    assert_int_equal(bus_listen(INVENTORY_TOPIC, on_stock_event, NULL), 0);
    ev_count = 0;
    assert_int_equal(inventory_set(app, 5001, 12), 0);
    assert_int_equal(ev_count, 1);
    assert_string_equal(
        ev_last,
        "{\"type\":\"stock.changed\",\"items\":[{\"product_id\":\"5001\",\"available\":12}]}");
    int64_t rid = id_new(0);
    struct inventory_item it = {5001, 5};
    assert_int_equal(inventory_reserve(app, rid, &it, 1, 60, NULL), 0);
    assert_int_equal(ev_count, 2);
    assert_string_equal(
        ev_last,
        "{\"type\":\"stock.changed\",\"items\":[{\"product_id\":\"5001\",\"available\":7}]}");
    assert_int_equal(inventory_release(app, rid), 0);
    assert_int_equal(ev_count, 3);
    assert_string_equal(
        ev_last,
        "{\"type\":\"stock.changed\",\"items\":[{\"product_id\":\"5001\",\"available\":12}]}");
    assert_int_equal(inventory_release(app, rid), 0); /* nothing changed: no event */
    assert_int_equal(ev_count, 3);
    /* One commit, one message naming every product it changed. */
    int64_t ids[] = {5003, 5005}, av[] = {1, 2};
    assert_int_equal(inventory_set_many(app, ids, av, 2), 0);
    assert_int_equal(ev_count, 4);
    assert_string_equal(ev_last, "{\"type\":\"stock.changed\",\"items\":["
                                 "{\"product_id\":\"5003\",\"available\":1},"
                                 "{\"product_id\":\"5005\",\"available\":2}]}");
    struct inventory_item two[] = {{5005, 1}, {5001, 2}};
    int64_t rid2 = id_new(0);
    assert_int_equal(inventory_reserve(app, rid2, two, 2, 60, NULL), 0);
    assert_int_equal(ev_count, 5);
    assert_string_equal(ev_last, "{\"type\":\"stock.changed\",\"items\":["
                                 "{\"product_id\":\"5001\",\"available\":10},"
                                 "{\"product_id\":\"5005\",\"available\":1}]}");
    assert_int_equal(inventory_release(app, rid2), 0);
    assert_int_equal(ev_count, 6);
    assert_int_equal(inventory_set_many_quiet(app, ids, av, 2), 0);
    assert_int_equal(ev_count, 6);
    /* More products than one message names: several messages. */
    enum { MANY = INVENTORY_ANNOUNCE_MAX + 3 };
    int64_t mids[MANY], mav[MANY];
    for (int i = 0; i < MANY; i++) {
        mids[i] = 6001 + 2 * i;
        mav[i] = i;
    }
    assert_int_equal(inventory_set_many(app, mids, mav, MANY), 0);
    assert_int_equal(ev_count, 8);
    char want[160];
    snprintf(want, sizeof want,
             "{\"type\":\"stock.changed\",\"items\":[{\"product_id\":\"%d\",\"available\":%d},"
             "{\"product_id\":\"%d\",\"available\":%d},{\"product_id\":\"%d\",\"available\":%d}]}",
             6001 + 2 * (MANY - 3), MANY - 3, 6001 + 2 * (MANY - 2), MANY - 2,
             6001 + 2 * (MANY - 1), MANY - 1);
    assert_string_equal(ev_last, want);

    /* without a registered check every product is accepted */
    struct inventory_level l;
    assert_int_equal(inventory_admin_set(app, 1, 5002, 4, &l), 0);
    assert_int_equal(l.available, 4);
    assert_int_equal(inventory_admin_get(app, 7777, &l), ERR_NOTFOUND);
    /* with one (the catalog's): unknown products are refused and nothing is written */
    assert_int_equal(inventory_set_product_check(app, known_odd), 0);
    assert_int_equal(inventory_admin_set(app, 1, 5004, 9, &l), ERR_NOTFOUND);
    int64_t a, res;
    assert_int_equal(inventory_get(app, 5004, &a, &res), ERR_NOTFOUND);
    assert_int_equal(inventory_admin_set(app, 1, 5007, 9, &l), 0);
    assert_int_equal(l.product_id, 5007);
    assert_int_equal(l.available, 9);
    assert_int_equal(l.reserved, 0);
    assert_int_equal(inventory_admin_get(app, 7777, &l), 0); /* known, never stocked: 0 */
    assert_int_equal(l.available, 0);
    assert_int_equal(inventory_admin_get(app, 7778, &l), ERR_NOTFOUND);
    assert_int_equal(inventory_admin_set(app, 1, 5007, -1, &l), ERR_INVALID);
    assert_int_equal(inventory_set_product_check(app, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_oversell_16_threads),
        cmocka_unit_test(test_mixed_concurrency_invariant),
        cmocka_unit_test(test_idempotent_reserve_confirm_release),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_outbox_events),
        cmocka_unit_test(test_low_stock_crossing),
        cmocka_unit_test(test_set_many),
        cmocka_unit_test(test_stock_events_and_admin),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
