/* SPDX-License-Identifier: MIT */
/* order.c — the order service: sharding, the status machine's domain rules, cancel,
 * compensation, reads, the events it publishes and the shipment progress it follows.
 *
 * Orders live in orders_0 … orders_5; a user's orders all live in one bucket, which the shard
 * map (order_shards.c, docs/sharding.md) places on a shard, and an order's id carries its
 * bucket group (id_new(group)), so a lookup by id goes straight to its shard. Every public
 * function runs as one op pinned to one version of the map (order__op_enter/leave).
 * Status machine: pending → paid → fulfilling → shipped → delivered; pending → failed;
 * paid/fulfilling/on_hold → cancelled; pending → on_hold (fraud review) → paid (approved) or
 * cancelled (rejected). Every move is a conditional UPDATE
 * (`… WHERE status IN (…)`, order_store.c) written with its history row and outbox event in
 * one transaction, so concurrent actors (the saga, a cancel, a carrier event, the recovery
 * sweep) never both win. Failed and cancelled orders owe a compensation (release stock, void
 * or refund) recorded by `compensated = 0`; it runs right away and, should the process die
 * first, from the recovery sweep.
 *
 * Settings come from struct config (app_config); the recovery sweep is a timer job.
 *
 * Shipment progress arrives one way: shipping writes shipment.* events to its outbox
 * (`shipping-events`) and this service consumes them (consumer group "order", off the
 * request threads; a full read of an order also catches up from the shipment's state);
 * shipping never calls back into orders. Every event leaves through the outbox: the
 * transition that moves an order writes its order.<status> event in its transaction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "emporium/app.h"
#include "emporium/buf.h"
#include "emporium/bus.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#define EMPORIUM_SERVICE_NO_HTTP /* a layered service: no HTTP types below _http.c */
#include "emporium/service.h"
#include "emporium/timer.h"
#include "emporium/svc/inventory.h"
#include "emporium/svc/order.h"
#include "emporium/svc/payment.h"
#include "emporium/svc/shipping.h"
#include "order_internal.h"

struct order_settings order__settings = {900, 600, 30};

static const char *const statuses[] = {"pending", "paid",      "fulfilling", "shipped", "delivered",
                                       "failed",  "cancelled", "on_hold",    NULL};

bool order_status_valid(const char *s)
{
    for (const char *const *p = statuses; s && *p; p++)
        if (!strcmp(*p, s))
            return true;
    return false;
}

static int compensate(struct app *app, int64_t order_id)
{
    int rc = inventory_release(app, order_id);
    if (rc < 0 && rc != ERR_NOTFOUND) {
        log_warn("order %lld: releasing stock failed: %s", (long long)order_id, err_str(rc));
        return rc;
    }
    rc = payment_cancel(app, order_id);
    if (rc < 0) {
        log_warn("order %lld: voiding the payment failed: %s", (long long)order_id, err_str(rc));
        return rc;
    }
    /* The checkout creates the shipment just before PAID: an order that failed there (or
     * died) may have one. 0 when there is none. */
    rc = shipping_cancel(app, order_id);
    if (rc < 0) {
        log_warn("order %lld: cancelling the shipment failed: %s", (long long)order_id,
                 err_str(rc));
        return rc;
    }
    struct db *db;
    struct db_conn *c;
    if ((rc = order__route_id(app, order_id, true, &db)) < 0 || (rc = db_conn_take(db, &c)) < 0)
        return rc;
    rc = order__store_set_compensated(c, order_id);
    db_conn_give(c);
    return rc;
}

int order__compensate(struct app *app, int64_t order_id)
{
    order__op_enter(app);
    int rc = compensate(app, order_id);
    order__op_leave(app);
    return rc;
}

/* --- cancel --- */

static int cancel_op(struct app *app, int64_t order_id, int64_t user_id, bool admin,
                     struct order_outcome *out)
{
    static const char *const cancellable[] = {"paid", "fulfilling", "on_hold", NULL};
    memset(out, 0, sizeof *out);
    out->order_id = order_id;
    struct db *db;
    int rrc = order__route_id(app, order_id, true, &db);
    if (rrc < 0)
        return rrc;
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    struct order_view v;
    if ((rc = order__store_load(c, order_id, false, &v)) < 0)
        goto out;
    if (!admin && v.user_id != user_id) {
        rc = ERR_NOTFOUND;
        goto out;
    }
    if (!strcmp(v.status, "cancelled"))
        goto out; /* cancelling twice is the same as once */
    bool ok = false;
    for (const char *const *s = cancellable; *s; s++)
        ok = ok || !strcmp(*s, v.status);
    if (!ok) {
        bool gone = !strcmp(v.status, "shipped") || !strcmp(v.status, "delivered");
        snprintf(out->code, sizeof out->code, "%s",
                 gone ? "order_shipped" : "order_not_cancellable");
        rc = ERR_CONFLICT;
        goto out;
    }
    /* The shipping database decides "too late": a shipment in transit refuses. A concurrent
     * cancel of the same order is not "too late" (shipping_cancel answers 0). */
    db_conn_give(c); /* not held across another service's work */
    c = NULL;
    rc = shipping_cancel(app, order_id);
    if (rc == ERR_CONFLICT)
        snprintf(out->code, sizeof out->code, "order_shipped");
    if (rc < 0)
        goto out;
    if ((rc = db_conn_take(db, &c)) < 0)
        goto out;
    if ((rc = db_begin(c)) == 0)
        rc = order__store_transition(c, order_id, "cancelled", cancellable,
                                     admin ? "cancelled by an operator"
                                           : "cancelled by the customer",
                                     false, true, now_ms());
    bool moved = rc == 1;
    if (rc >= 0)
        rc = db_commit(c);
    if (rc < 0) {
        db_rollback(c);
        goto out;
    }
    if (moved) {
        /* Compensation is owed from the commit on; the sweep finishes it if this fails. */
        db_conn_give(c);
        c = NULL;
        order__compensate(app, order_id);
        struct payment_result pr;
        bool refunded = payment_get(app, order_id, &pr) == 0 &&
                        (!strcmp(pr.status, "refunded") || !strcmp(pr.status, "captured") ||
                         !strcmp(pr.status, "capturing"));
        metrics_count("emporium_orders_total", "cancelled");
        log_event("order.cancelled", LOG_I("order_id", order_id), LOG_I("user_id", v.user_id),
                  LOG_S("by", admin && v.user_id != user_id ? "operator" : "customer"));
        if (refunded) {
            metrics_count("emporium_orders_total", "refunded");
            log_event("order.refunded", LOG_I("order_id", order_id), LOG_I("user_id", v.user_id),
                      LOG_I("amount", v.total), LOG_S("currency", v.currency));
        }
        goto out;
    }
    /* Not moved: cancelled meanwhile by a concurrent request, or moved on by a carrier. */
    char now[16];
    if ((rc = order__store_status(c, order_id, now)) == 0 && strcmp(now, "cancelled") != 0) {
        snprintf(out->code, sizeof out->code, "order_not_cancellable");
        rc = ERR_CONFLICT;
    }
out:
    db_conn_give(c);
    order_view_free(&v);
    return rc < 0 ? rc : 0;
}

/* --- fraud review --- */

static bool status_in(const char *s, const char *const *set)
{
    for (; *set; set++)
        if (!strcmp(*set, s))
            return true;
    return false;
}

/* The order's status now, and whether it was ever held: 0, ERR_NOTFOUND, or an ERR_*. */
static int review_state(struct db *db, int64_t order_id, char status[16], bool *was_held)
{
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    if ((rc = order__store_status(c, order_id, status)) == 0 && !status[0])
        rc = ERR_NOTFOUND;
    if (rc == 0 && (rc = order__store_was_held(c, order_id)) >= 0) {
        *was_held = rc == 1;
        rc = 0;
    }
    db_conn_give(c);
    return rc;
}

static int not_on_hold(struct order_outcome *out)
{
    snprintf(out->code, sizeof out->code, "order_not_on_hold");
    return ERR_CONFLICT;
}

static int approve_op(struct app *app, int64_t order_id, struct order_outcome *out)
{
    static const char *const approved[] = {"paid", "fulfilling", "shipped", "delivered", NULL};
    static const char *const from[] = {"on_hold", NULL};
    memset(out, 0, sizeof *out);
    out->order_id = order_id;
    struct db *db;
    int rrc = order__route_id(app, order_id, true, &db);
    if (rrc < 0)
        return rrc;
    char st[16];
    bool was_held = false;
    int rc = review_state(db, order_id, st, &was_held);
    if (rc < 0)
        return rc;
    if (strcmp(st, "on_hold") != 0)
        return was_held && status_in(st, approved) ? 0 : not_on_hold(out);
    /* The money first: an order is never paid without it. A reject that won meanwhile voided
     * the authorization (the capture is refused), or refunds what this captured. */
    rc = payment_capture(app, order_id);
    if (rc == ERR_CONFLICT || rc == ERR_NOTFOUND)
        return not_on_hold(out);
    if (rc < 0)
        return rc;
    struct db_conn *c;
    if ((rc = db_conn_take(db, &c)) < 0)
        return rc;
    if ((rc = db_begin(c)) == 0)
        rc = order__store_transition(c, order_id, "paid", from, NULL, false, false, now_ms());
    bool moved = rc == 1;
    if (rc >= 0)
        rc = db_commit(c);
    if (rc < 0) {
        db_rollback(c);
        db_conn_give(c);
        return rc; /* captured, still on_hold: approving again finishes it */
    }
    struct order_view v;
    if (!moved) { /* a concurrent approve or reject won */
        rc = order__store_status(c, order_id, st);
        db_conn_give(c);
        if (rc < 0)
            return rc;
        return status_in(st, approved) ? 0 : not_on_hold(out);
    }
    metrics_count("emporium_orders_total", "paid");
    metrics_count("emporium_orders_total", "approved");
    log_event("order.approved", LOG_I("order_id", order_id));
    /* Ships as a paid order does; should this fail, the recovery sweep creates it. */
    if (order__store_load(c, order_id, false, &v) == 0) {
        struct shipment_info si;
        if (shipping_create(app, order_id, v.shipping_method, &v.addr, &si) == 0) {
            if (order__store_attach_shipment(c, order_id, si.id) == 0)
                shipping_cancel(app, order_id);
        }
        order_view_free(&v);
    }
    db_conn_give(c);
    return 0;
}

static int reject_op(struct app *app, int64_t order_id, struct order_outcome *out)
{
    static const char *const from[] = {"on_hold", NULL};
    memset(out, 0, sizeof *out);
    out->order_id = order_id;
    struct db *db;
    int rrc = order__route_id(app, order_id, true, &db);
    if (rrc < 0)
        return rrc;
    char st[16];
    bool was_held = false;
    int rc = review_state(db, order_id, st, &was_held);
    if (rc < 0)
        return rc;
    if (strcmp(st, "on_hold") != 0)
        return was_held && !strcmp(st, "cancelled") ? 0 : not_on_hold(out);
    struct db_conn *c;
    if ((rc = db_conn_take(db, &c)) < 0)
        return rc;
    if ((rc = db_begin(c)) == 0)
        rc = order__store_transition(c, order_id, "cancelled", from, "fraud_rejected", false, true,
                                     now_ms());
    bool moved = rc == 1;
    if (rc >= 0)
        rc = db_commit(c);
    if (rc < 0)
        db_rollback(c);
    if (rc >= 0 && !moved && (rc = order__store_status(c, order_id, st)) == 0 &&
        strcmp(st, "cancelled") != 0)
        rc = not_on_hold(out);
    db_conn_give(c);
    if (rc < 0 || !moved)
        return rc < 0 ? rc : 0;
    /* Compensation is owed from the commit on (void, release); the sweep finishes it if this
     * fails. */
    order__compensate(app, order_id);
    metrics_count("emporium_orders_total", "cancelled");
    metrics_count("emporium_orders_total", "rejected");
    log_event("order.rejected", LOG_I("order_id", order_id));
    return 0;
}

/* --- reads --- */

static int get_op(struct app *app, int64_t order_id, int64_t user_id, bool admin, bool full,
                  struct order_view *out)
{
    memset(out, 0, sizeof *out);
    struct db *db;
    int rrc = order__route_id(app, order_id, false, &db);
    if (rrc < 0)
        return rrc;
    struct db_conn *c;
    int rc = db_conn_take_read(db, &c); /* a replica when one is usable (db.h) */
    if (rc < 0)
        return rc;
    rc = order__store_load(c, order_id, full, out);
    db_conn_give(c);
    if (rc == 0 && !admin && out->user_id != user_id) {
        order_view_free(out);
        rc = ERR_NOTFOUND; /* another user's order is not there, for this caller */
    }
    if (rc < 0 || !full)
        return rc;
    out->full = true;
    if (shipping_get(app, order_id, &out->shipment) == 0) {
        out->has_shipment = true;
        /* Shipping is ahead when the order missed its message: catch up now. */
        const char *s = out->shipment.status;
        if ((!strcmp(s, "in_transit") && strcmp(out->status, "shipped") &&
             strcmp(out->status, "delivered")) ||
            (!strcmp(s, "delivered") && strcmp(out->status, "delivered"))) {
            if (order__follow_shipment(app, order_id, s, now_ms()) == 0) {
                struct shipment_info keep = out->shipment;
                order_view_free(out);
                if ((rc = db_conn_take(db, &c)) < 0)
                    return rc;
                rc = order__store_load(c, order_id, true, out);
                db_conn_give(c);
                if (rc < 0)
                    return rc;
                out->full = true;
                out->has_shipment = true;
                out->shipment = keep;
            }
        }
    }
    /* The order keeps the payment's status while it cannot change (order_store.c); else the
     * payment service says. */
    struct payment_result pr;
    if (out->has_payment && !out->payment_status[0] && payment_get(app, order_id, &pr) == 0)
        snprintf(out->payment_status, sizeof out->payment_status, "%s", pr.status);
    return 0;
}

static int list_op(struct app *app, int64_t user_id, const char *status, int64_t cursor, int limit,
                   struct order_view *out, int *n, bool *more)
{
    *n = 0;
    *more = false;
    if (user_id) {
        /* All of a user's orders live in one shard: newest first by id (time-ordered). */
        struct db *db;
        struct db_conn *c;
        int rc = order__route_user(app, user_id, false, &db);
        if (rc < 0 || (rc = db_conn_take_read(db, &c)) < 0)
            return rc;
        int got = 0;
        rc = order__store_list(c, user_id, status, cursor, limit + 1, out, &got);
        db_conn_give(c);
        if (rc < 0)
            return rc;
        *more = got > limit;
        *n = got > limit ? limit : got;
        return 0;
    }
    /* Every shard the map uses gives its newest limit+1 below the cursor; merging by id
     * keeps the global newest-first order, and the cursor (the last id shown) is valid in
     * every shard. Rows of buckets the map gives to another shard (a move's copy not yet
     * switched, or not yet cleaned up) are skipped. */
    unsigned char used[ORDER_SHARDS_MAX];
    order__shards_in_use(app, used);
    struct order_view *rows[ORDER_SHARDS_MAX] = {0};
    int cnt[ORDER_SHARDS_MAX] = {0}, pos[ORDER_SHARDS_MAX] = {0}, rc = 0;
    for (int s = 0; s < ORDER_SHARDS_MAX && rc >= 0; s++) {
        if (!used[s])
            continue;
        rows[s] = calloc((size_t)limit + 1, sizeof *rows[s]);
        struct db_conn *c;
        if (!rows[s])
            rc = ERR_NOMEM;
        else if (!order__shard_db(app, (unsigned)s))
            rc = ERR_UNAVAILABLE;
        else if ((rc = db_conn_take(order__shard_db(app, (unsigned)s), &c)) == 0) {
            rc = order__store_list(c, 0, status, cursor, limit + 1, rows[s], &cnt[s]);
            db_conn_give(c);
        }
        int kept = 0;
        for (int i = 0; rc >= 0 && i < cnt[s]; i++)
            if (order__owns(app, (unsigned)s, rows[s][i].user_id))
                rows[s][kept++] = rows[s][i];
        cnt[s] = kept;
    }
    for (int k = 0; rc >= 0 && k <= limit; k++) {
        int best = -1;
        for (int s = 0; s < ORDER_SHARDS_MAX; s++)
            if (pos[s] < cnt[s] && (best < 0 || rows[s][pos[s]].id > rows[best][pos[best]].id))
                best = s;
        if (best < 0)
            break;
        if (k == limit) {
            *more = true;
            break;
        }
        out[(*n)++] = rows[best][pos[best]++];
    }
    for (int s = 0; s < ORDER_SHARDS_MAX; s++)
        free(rows[s]); /* summaries hold no allocations */
    return rc < 0 ? rc : 0;
}

static int outbox_op(struct app *app, int64_t order_id, struct order_outbox_event **out, int *n)
{
    *out = NULL;
    *n = 0;
    struct db *db;
    int rrc = order__route_id(app, order_id, false, &db);
    if (rrc < 0)
        return rrc;
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    char st[16];
    if ((rc = order__store_status(c, order_id, st)) == 0 && !st[0])
        rc = ERR_NOTFOUND;
    if (rc == 0)
        rc = order__store_outbox(c, order_id, out, n);
    db_conn_give(c);
    return rc;
}

/* --- shipment progress (one way: shipping publishes, orders follow) --- */

static int follow_shipment_op(struct app *app, int64_t order_id, const char *shipment_status,
                              int64_t at_ms)
{
    static const char *const to_shipped[] = {"paid", "fulfilling", "on_hold", NULL};
    static const char *const to_delivered[] = {"paid", "fulfilling", "on_hold", "shipped", NULL};
    bool delivered = !strcmp(shipment_status, "delivered");
    if (!delivered && strcmp(shipment_status, "in_transit") != 0)
        return 0; /* label_created, cancelled: nothing for the order to follow */
    struct db *db;
    int rrc = order__route_id(app, order_id, true, &db);
    if (rrc < 0)
        return rrc;
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    if ((rc = db_begin(c)) == 0)
        rc = order__store_transition(c, order_id, delivered ? "delivered" : "shipped",
                                     delivered ? to_delivered : to_shipped, NULL, false, false,
                                     at_ms);
    if (rc >= 0)
        rc = db_commit(c);
    if (rc < 0)
        db_rollback(c);
    db_conn_give(c);
    if (rc == 1)
        log_event(delivered ? "order.delivered" : "order.shipped", LOG_I("order_id", order_id));
    return rc < 0 ? rc : 0;
}

/* --- the public entry points: each one op on one version of the shard map --- */

int order_cancel(struct app *app, int64_t order_id, int64_t user_id, bool admin,
                 struct order_outcome *out)
{
    order__op_enter(app);
    int rc = cancel_op(app, order_id, user_id, admin, out);
    order__op_leave(app);
    return rc;
}

int order_approve(struct app *app, int64_t order_id, struct order_outcome *out)
{
    order__op_enter(app);
    int rc = approve_op(app, order_id, out);
    order__op_leave(app);
    return rc;
}

int order_reject(struct app *app, int64_t order_id, struct order_outcome *out)
{
    order__op_enter(app);
    int rc = reject_op(app, order_id, out);
    order__op_leave(app);
    return rc;
}

int order_get(struct app *app, int64_t order_id, int64_t user_id, bool admin, bool full,
              struct order_view *out)
{
    order__op_enter(app);
    int rc = get_op(app, order_id, user_id, admin, full, out);
    order__op_leave(app);
    return rc;
}

int order_list(struct app *app, int64_t user_id, const char *status, int64_t cursor, int limit,
               struct order_view *out, int *n, bool *more)
{
    order__op_enter(app);
    int rc = list_op(app, user_id, status, cursor, limit, out, n, more);
    order__op_leave(app);
    return rc;
}

int order_outbox(struct app *app, int64_t order_id, struct order_outbox_event **out, int *n)
{
    order__op_enter(app);
    int rc = outbox_op(app, order_id, out, n);
    order__op_leave(app);
    return rc;
}

int order__follow_shipment(struct app *app, int64_t order_id, const char *shipment_status,
                           int64_t at_ms)
{
    order__op_enter(app);
    int rc = follow_shipment_op(app, order_id, shipment_status, at_ms);
    order__op_leave(app);
    return rc;
}

/* shipping-events (its outbox, through the bus): the order follows its shipment. */
static int on_shipment(void *ctx, const struct bus_event *ev)
{
    struct app *app = ctx;
    int64_t order_id = 0;
    const char *status = json_string_value(json_object_get(ev->data, "status"));
    if (!status || id_parse(json_string_value(json_object_get(ev->data, "order_id")), &order_id))
        return 0; /* not a shipment progress event */
    int64_t at = bus_time_parse(json_string_value(json_object_get(ev->data, "at")));
    int rc = order__follow_shipment(app, order_id, status, at ? at : ev->at_ms);
    if (rc == ERR_NOTFOUND)
        return 0; /* an order of a shard this process does not serve, or gone */
    return rc < 0 ? rc : 0;
}

/* --- the service --- */

int order__init(struct app *app)
{
    const struct config *cfg = app_config(app);
    order__settings.reservation_ttl_s = cfg->reservation_ttl_seconds;
    order__settings.pending_timeout_s = cfg->order_pending_timeout_seconds;
    order__settings.sweep_interval_s = cfg->order_sweep_seconds;
    int rc = bus_subscribe("order", BUS_TOPIC_SHIPPING, on_shipment, app);
    if (rc < 0)
        return rc;
    metrics_counter_declare("emporium_orders_total", "status",
                            "Orders that reached a status (placed, paid, payment_failed, failed, "
                            "cancelled, refunded, on_hold, approved, rejected).");
    /* The recovery sweep: first right after `serve` starts, then every sweep interval. */
    rc = timer_add(app, "order.recovery", order__settings.sweep_interval_s * 1000,
                   order__recovery_run, NULL);
    if (rc >= 0)
        rc = timer_add(app, "order.orphans", 1000, order__orphans_run, NULL);
    if (rc >= 0)
        rc = order__orphans_init(app);
    if (rc < 0)
        return rc;
    if ((rc = order__shards_init(app)) < 0) /* last: only the orphans' list to undo */
        order__orphans_free(app);
    return rc;
}

void order__deinit(struct app *app)
{
    order__shards_deinit(app);
    order__orphans_free(app);
}
