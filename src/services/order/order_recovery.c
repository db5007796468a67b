/* SPDX-License-Identifier: MIT */
/* order_recovery.c — the recovery sweep: nothing a crash interrupts stays stuck.
 *
 * A timer job (timer.h, "order.recovery"): once when the server starts serving, then every
 * sweep_interval_s on the timer thread; never during migrate/seed/CLI commands. Per shard:
 *  1. pending orders older than pending_timeout_s are failed ("abandoned") — the saga that
 *     owned them is gone (a live saga finds its order failed at the PAID step and undoes
 *     its own work); their in-progress idempotency claims are dropped so a retry starts over;
 *  2. failed/cancelled orders still owing compensation get it (release stock, void/refund);
 *  3. paid orders without a shipment get one;
 *  4. idempotency claims that never created an order are dropped after the timeout.
 * Every step is idempotent; a stock reservation not released here still expires by its TTL
 * in the inventory service. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "emporium/svc/shipping.h"
#include "order_internal.h"

#define SWEEP_BATCH 200

/* Whether this shard is the order's place by the map (not a copy being moved). */
static bool owned(struct app *app, struct db *db, int64_t id)
{
    struct db *home;
    return order__route_id(app, id, true, &home) == 0 && home == db;
}

static void sweep_shard(struct app *app, int shard)
{
    struct db *db = order__shard_db(app, (unsigned)shard);
    struct db_conn *c;
    if (!db || db_conn_take(db, &c) < 0)
        return;
    int64_t now = now_ms(), ids[SWEEP_BATCH];
    int64_t cutoff = now - (int64_t)order__settings.pending_timeout_s * 1000;

    /* 1. abandoned sagas */
    int n = order__store_abandoned(c, cutoff, ids, SWEEP_BATCH);
    for (int i = 0; i < n; i++)
        if (owned(app, db, ids[i]) && order__store_fail_abandoned(c, ids[i]) == 1) {
            metrics_count("emporium_orders_total", "failed");
            log_event("order.failed", LOG_I("order_id", ids[i]), LOG_S("reason", "abandoned"));
        }

    /* 2. owed compensations (a little grace so the saga's own attempt goes first) */
    n = order__store_owing(c, now - 2000, ids, SWEEP_BATCH);
    db_conn_give(c);
    for (int i = 0; i < n; i++)
        if (owned(app, db, ids[i]))
            order__compensate(app, ids[i]);

    /* 3. paid orders that lost their shipment to a crash */
    if (db_conn_take(db, &c) < 0)
        return;
    static struct order_unshipped un[SWEEP_BATCH]; /* only the timer thread runs this */
    n = order__store_unshipped(c, now - 5000, un, SWEEP_BATCH);
    for (int i = 0; i < n; i++) {
        struct shipment_info s;
        if (!owned(app, db, un[i].id))
            continue;
        if (shipping_create(app, un[i].id, un[i].method, &un[i].addr, &s) == 0 &&
            order__store_attach_shipment(c, un[i].id, s.id) == 0)
            shipping_cancel(app, un[i].id); /* cancelled meanwhile: no label */
    }

    /* 4. claims whose saga died before creating its order */
    order__store_drop_stale_claims(c, cutoff);
    db_conn_give(c);
}

void order__recovery_run(struct app *app, void *ctx)
{
    (void)ctx;
    /* One op: the sweep acts on the shards of one version of the map (order_shards.c). */
    order__op_enter(app);
    unsigned char used[ORDER_SHARDS_MAX];
    order__shards_in_use(app, used);
    for (int s = 0; s < ORDER_SHARDS_MAX; s++)
        if (used[s])
            sweep_shard(app, s);
    order__op_leave(app);
}
