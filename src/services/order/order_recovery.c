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
 * And the orphans (order_internal.h): sagas this process gave up on without recording
 * their end, settled by a job every second instead of after the pending timeout.
 * Every step is idempotent; a stock reservation not released here still expires by its TTL
 * in the inventory service. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
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

/* --- orphans (order_internal.h) --- */

#define ORPHANS_CTX "order.orphans"

struct orphan {
    int64_t order_id, user_id, since_ms;
    char key[ORDER_KEY_MAX + 1];
};

struct orphans {
    pthread_mutex_t mu;
    int n;
    struct orphan o[ORDER_ORPHANS_MAX];
};

static struct orphans *orphans_of(struct app *app) { return app_service_ctx(app, ORPHANS_CTX); }

int order__orphans_init(struct app *app)
{
    struct orphans *o = calloc(1, sizeof *o);
    if (!o)
        return ERR_NOMEM;
    pthread_mutex_init(&o->mu, NULL);
    int rc = app_set_service_ctx(app, ORPHANS_CTX, o);
    if (rc < 0) {
        pthread_mutex_destroy(&o->mu);
        free(o);
    }
    return rc;
}

void order__orphans_free(struct app *app)
{
    struct orphans *o = orphans_of(app);
    if (!o)
        return;
    app_set_service_ctx(app, ORPHANS_CTX, NULL);
    pthread_mutex_destroy(&o->mu);
    free(o);
}

void order__orphan_add(struct app *app, int64_t order_id, int64_t user_id, const char *key)
{
    struct orphans *o = orphans_of(app);
    if (!o)
        return;
    pthread_mutex_lock(&o->mu);
    bool added = o->n < ORDER_ORPHANS_MAX;
    if (added) {
        struct orphan *e = &o->o[o->n++];
        *e = (struct orphan){.order_id = order_id, .user_id = user_id, .since_ms = now_ms()};
        snprintf(e->key, sizeof e->key, "%s", key);
    }
    pthread_mutex_unlock(&o->mu);
    log_warn("order %lld: its end could not be recorded; %s", (long long)order_id,
             added ? "failing it once the database answers"
                   : "the recovery sweep will fail it after the pending timeout");
}

/* Fails the orphan's order (or drops a claim that never got its order): 0 when settled. */
static int settle(struct app *app, const struct orphan *e)
{
    struct db *db;
    order__op_enter(app);
    int rc = order__route_id(app, e->order_id, true, &db);
    struct db_conn *c = NULL;
    if (rc == 0)
        rc = db_conn_take(db, &c);
    if (rc == 0) {
        rc = order__store_fail_abandoned(c, e->order_id);
        if (rc == 0) /* not pending: ended meanwhile, or never created */
            rc = order__store_claim_drop_orphan(c, e->user_id, e->key, e->order_id);
        else if (rc == 1) {
            metrics_count("emporium_orders_total", "failed");
            log_event("order.failed", LOG_I("order_id", e->order_id), LOG_S("reason", "abandoned"));
        }
        db_conn_give(c);
        if (rc == 1) {
            order__compensate(app, e->order_id); /* else the sweep's step 2 */
            rc = 0;
        }
    }
    order__op_leave(app);
    return rc < 0 ? rc : 0;
}

static void forget(struct orphans *o, int64_t order_id)
{
    pthread_mutex_lock(&o->mu);
    for (int i = 0; i < o->n; i++)
        if (o->o[i].order_id == order_id) {
            o->o[i] = o->o[--o->n];
            break;
        }
    pthread_mutex_unlock(&o->mu);
}

/* Copies the orphan order_id into *e: false when there is none. */
static bool find(struct orphans *o, int64_t order_id, struct orphan *e)
{
    bool found = false;
    pthread_mutex_lock(&o->mu);
    for (int i = 0; i < o->n && !found; i++)
        if (o->o[i].order_id == order_id) {
            *e = o->o[i];
            found = true;
        }
    pthread_mutex_unlock(&o->mu);
    return found;
}

bool order__orphan_has(struct app *app, int64_t order_id)
{
    struct orphans *o = orphans_of(app);
    struct orphan e;
    return o && find(o, order_id, &e);
}

bool order__orphan_settle(struct app *app, int64_t order_id)
{
    struct orphans *o = orphans_of(app);
    struct orphan e;
    if (!o || !find(o, order_id, &e) || settle(app, &e) < 0)
        return false;
    forget(o, order_id);
    return true;
}

void order__orphans_run(struct app *app, void *ctx)
{
    (void)ctx;
    struct orphans *o = orphans_of(app);
    if (!o)
        return;
    struct orphan *todo = NULL;
    pthread_mutex_lock(&o->mu);
    int n = o->n;
    if (n > 0 && (todo = malloc((size_t)n * sizeof *todo)) != NULL)
        memcpy(todo, o->o, (size_t)n * sizeof *todo);
    pthread_mutex_unlock(&o->mu);
    if (!todo)
        return;
    int64_t too_old = now_ms() - (int64_t)order__settings.pending_timeout_s * 1000;
    for (int i = 0; i < n; i++)
        if (todo[i].since_ms < too_old || settle(app, &todo[i]) == 0)
            forget(o, todo[i].order_id);
    free(todo);
}
