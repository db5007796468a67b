/* SPDX-License-Identifier: MIT */
/* test_recommendation_store.c — the recommendations database as the consumer's batch end
 * writes it: many paid orders kept in one batch (db_batch) count exactly as they would one
 * by one — an event delivered twice counts once, an order paid under two event ids counts
 * once, a product twice in an order adds up — whether the batch's orders are summed in one
 * statement (PostgreSQL) or applied event by event (SQLite). Read back through the store's
 * candidates query, the one GET /products/{id}/recommendations uses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "emporium/db.h"
#include "emporium/err.h"
#include "harness.h"
#include "services/recommendation/recommendation_internal.h"

static char dir[] = "/tmp/emp-rec-XXXXXX";
static struct db *db;

static int setup(void **state)
{
    char url[512];
    if (!mkdtemp(dir))
        return -1;
    int pg = th_backend_db_url("rs", url, sizeof url);
    struct db_options o = {.url = pg > 0 ? url : NULL, .data_dir = dir};
    if (pg < 0 || db_open(&db, "recommendations", &o) < 0)
        return -1;
    return db_migrate(db, recommendation__dbs[0].migrations, recommendation__dbs[0].n_migrations);
}

static int teardown(void **state)
{
    db_close(db);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* An order.paid of order `order` under event `id`, lines "pid:qty,…", each line in `cat`. */
static void paid(struct db_batch *b, const char *id, int64_t order, const char *lines,
                 const char *cat)
{
    struct order_event *ev = calloc(1, sizeof *ev);
    assert_non_null(ev);
    ev->type = ORDER_EVENT_PAID;
    snprintf(ev->event_id, sizeof ev->event_id, "%s", id);
    ev->order_id = order;
    ev->user_id = 7;
    ev->at = 1;
    const char *cats[REC_MAX_ITEMS];
    for (const char *p = lines; p && *p; ev->n++) {
        long long pid;
        int q, used;
        assert_int_equal(sscanf(p, "%lld:%d%n", &pid, &q, &used), 2);
        ev->items[ev->n] = (struct order_event_item){pid, q, 100};
        cats[ev->n] = cat;
        p += used;
        if (*p == ',')
            p++;
    }
    assert_int_equal(recommendation__store_paid(db, b, ev, cats), 0);
    free(ev);
}

/* The products bought together with `id`, best first, as "a,b,…". */
static void together(int64_t id, char *out, size_t cap)
{
    int64_t ids[2 * 10];
    int np, nt;
    assert_int_equal(recommendation__store_candidates(db, id, "none", 10, ids, &np, &nt), 0);
    size_t at = 0;
    out[0] = 0;
    for (int i = 0; i < np; i++)
        at += (size_t)snprintf(out + at, cap - at, "%s%lld", i ? "," : "", (long long)ids[i]);
}

static void test_one_batch_counts_as_one_by_one(void **state)
{
    struct db_batch *b = db_batch_new(db);
    assert_non_null(b);
    /* 101 with 102 in two orders, with 103 in two (B, C) and with 100 in one that holds 100
     * twice (two pairs): a three-way tie, ranked by id, so a double count of B or C puts 103
     * first and 100 counted once puts it last. */
    paid(b, "ev-a1", 1001, "101:1,102:1", "toys");
    paid(b, "ev-b", 1002, "101:2,103:1", "toys");
    paid(b, "ev-a2", 1003, "102:1,101:1", "toys");
    paid(b, "ev-b", 1002, "101:2,103:1", "toys");       /* delivered again in the batch */
    paid(b, "ev-c1", 1004, "103:1,101:1", "toys");      /* order C ... */
    paid(b, "ev-c2", 1004, "103:1,101:1", "toys");      /* ... paid under a second id */
    paid(b, "ev-d", 1005, "100:1,101:1,100:1", "toys"); /* 100 twice: two pairs with 101 */
    assert_int_equal(db_batch_run(b), 0);
    char got[128];
    together(101, got, sizeof got);
    assert_string_equal(got, "100,102,103");
    together(103, got, sizeof got);
    assert_string_equal(got, "101");

    /* A later batch: the same events again change nothing; new orders add to the counts. */
    paid(b, "ev-b", 1002, "101:2,103:1", "toys");
    paid(b, "ev-c2", 1004, "103:1,101:1", "toys");
    paid(b, "ev-e", 1006, "101:1,103:1", "toys");
    paid(b, "ev-f", 1007, "103:1,101:1", "toys");
    assert_int_equal(db_batch_run(b), 0);
    together(101, got, sizeof got);
    assert_string_equal(got, "103,100,102"); /* 103: 4, 100: 2, 102: 2 */
    db_batch_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_batch_counts_as_one_by_one),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
