/* SPDX-License-Identifier: MIT */
/* order_recovery.c — the recovery sweep: nothing a crash interrupts stays stuck.
 *
 * Runs once when the server starts serving and then every sweep_interval_s on its own
 * thread. Per shard:
 *  1. pending orders older than pending_timeout_s are failed ("abandoned") — the saga that
 *     owned them is gone (a live saga finds its order failed at the PAID step and undoes
 *     its own work); their in-progress idempotency claims are dropped so a retry starts over;
 *  2. failed/cancelled orders still owing compensation get it (release stock, void/refund);
 *  3. paid orders without a shipment get one;
 *  4. idempotency claims that never created an order are dropped after the timeout.
 * Every step is idempotent; a stock reservation not released here still expires by its TTL
 * in the inventory service. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/svc/shipping.h"
#include "order_internal.h"

#define SWEEP_BATCH 200

static pthread_t sweeper;
static bool sweeper_running;
static bool sweeper_stop;
static pthread_mutex_t sweeper_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sweeper_cv = PTHREAD_COND_INITIALIZER;

static int ids_where(struct db_conn *c, const char *sql, int n, const struct db_val *a,
                     int64_t *out, int cap)
{
    struct db_rows *r = NULL;
    int rc = db_query(c, sql, n, a, &r);
    if (rc < 0)
        return rc;
    int k = 0;
    for (int i = 0; i < db_rows_count(r) && k < cap; i++)
        out[k++] = db_get_i64(r, i, 0);
    db_rows_free(r);
    return k;
}

static void sweep_shard(struct app *app, int shard)
{
    struct db *db = app_db_shard(app, "orders", shard);
    struct db_conn *c;
    if (!db || db_conn_take(db, &c) < 0)
        return;
    int64_t now = now_ms(), ids[SWEEP_BATCH];
    int64_t cutoff = now - (int64_t)order__settings.pending_timeout_s * 1000;

    /* 1. abandoned sagas */
    struct db_val a1[] = {DB_INT(cutoff), DB_INT(SWEEP_BATCH)};
    int n = ids_where(c, "SELECT id FROM orders WHERE status = 'pending' AND created_at < $1 "
                         "ORDER BY id LIMIT $2", 2, a1, ids, SWEEP_BATCH);
    for (int i = 0; i < n; i++) {
        static const char *const from[] = {"pending", NULL};
        int rc = db_begin(c);
        if (rc == 0)
            rc = order__transition(c, ids[i], "failed", from, "abandoned", true, true, now_ms());
        struct db_val k[] = {DB_INT(ids[i])};
        if (rc == 1)
            rc = db_query(c, "DELETE FROM idempotency_keys WHERE order_id = $1 AND state = 'in_progress'",
                          1, k, NULL);
        if (rc >= 0)
            rc = db_commit(c);
        if (rc < 0)
            db_rollback(c);
        else
            log_info("order %lld: abandoned pending order failed by recovery", (long long)ids[i]);
    }

    /* 2. owed compensations (a little grace so the saga's own attempt goes first) */
    struct db_val a2[] = {DB_INT(now - 2000), DB_INT(SWEEP_BATCH)};
    n = ids_where(c, "SELECT id FROM orders WHERE compensated = 0 AND updated_at < $1 "
                     "ORDER BY id LIMIT $2", 2, a2, ids, SWEEP_BATCH);
    db_conn_give(c);
    for (int i = 0; i < n; i++)
        order__compensate(app, ids[i]);

    /* 3. paid orders that lost their shipment to a crash */
    if (db_conn_take(db, &c) < 0)
        return;
    struct db_rows *r = NULL;
    struct db_val a3[] = {DB_INT(now - 5000), DB_INT(SWEEP_BATCH)};
    int rc = db_query(c,
                      "SELECT id, shipping_method, shipping_address FROM orders WHERE "
                      "status = 'paid' AND shipment_id IS NULL AND updated_at < $1 "
                      "ORDER BY id LIMIT $2",
                      2, a3, &r);
    for (int i = 0; rc >= 0 && i < db_rows_count(r); i++) {
        json_error_t jerr;
        json_t *aj = json_loads(db_get(r, i, 2), 0, &jerr);
        struct shipping_address addr;
        const char *member, *msg;
        struct shipment_info s;
        int64_t id = db_get_i64(r, i, 0);
        if (aj && shipping_address_parse(aj, true, &addr, &member, &msg) == 0 &&
            shipping_create(app, id, db_get(r, i, 1), &addr, &s) == 0) {
            struct db_val u[] = {DB_INT(s.id), DB_INT(id)};
            if (db_query(c, ORDER_ATTACH_SHIPMENT_SQL, 2, u, NULL) == 0)
                shipping_cancel(app, id); /* cancelled meanwhile: no label */
        }
        json_decref(aj);
    }
    db_rows_free(r);

    /* 4. claims whose saga died before creating its order */
    struct db_val a4[] = {DB_INT(cutoff)};
    db_query(c,
             "DELETE FROM idempotency_keys WHERE state = 'in_progress' AND created_at < $1 AND "
             "NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = idempotency_keys.order_id)",
             1, a4, NULL);
    db_conn_give(c);
}

void order__recovery_run(struct app *app)
{
    for (int s = 0; s < ORDER_SHARDS; s++)
        sweep_shard(app, s);
}

static void *sweeper_main(void *arg)
{
    struct app *app = arg;
    pthread_mutex_lock(&sweeper_mu);
    while (!sweeper_stop) {
        pthread_mutex_unlock(&sweeper_mu);
        order__recovery_run(app);
        pthread_mutex_lock(&sweeper_mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += order__settings.sweep_interval_s;
        while (!sweeper_stop &&
               pthread_cond_timedwait(&sweeper_cv, &sweeper_mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&sweeper_mu);
    return NULL;
}

int order__recovery_start(struct app *app)
{
    if (sweeper_running)
        return 0;
    sweeper_stop = false;
    if (pthread_create(&sweeper, NULL, sweeper_main, app) != 0)
        return ERR_NOMEM;
    sweeper_running = true;
    return 0;
}

void order__recovery_stop(void)
{
    if (!sweeper_running)
        return;
    pthread_mutex_lock(&sweeper_mu);
    sweeper_stop = true;
    pthread_cond_broadcast(&sweeper_cv);
    pthread_mutex_unlock(&sweeper_mu);
    pthread_join(sweeper, NULL);
    sweeper_running = false;
}
