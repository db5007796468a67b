/* SPDX-License-Identifier: MIT */
/* inventory.c — the inventory service: stock levels and reservations (svc/inventory.h),
 * their rules, its events and its lifecycle.
 *
 * All items of a reservation are taken in one transaction, in product_id order (so two
 * multi-item reservations never deadlock), or none is: each through the conditional
 * decrement of inventory_store.c, which can never take more than is there. A reservation
 * moves active → confirmed | released, and confirmed → released (cancel after payment);
 * every transition is one conditional UPDATE on its row, so of two racing transitions
 * exactly one applies and the other re-reads (ERR_BUSY makes db_transact() retry it):
 * release, confirm and the sweeper never give the same stock back twice. Each transition
 * writes its outbox event in the same transaction.
 *
 * After a commit that changed `available`, a stock.changed message per product goes out on
 * the INVENTORY_TOPIC bus topic (the catalog listens); the inventory calls no other service.
 * Reservations expire on their own: a timer job (timer.h, `emporium serve` only) releases up
 * to INVENTORY_SWEEP_BATCH expired reservations every INVENTORY_SWEEP_MS (more rounds at once
 * while it finds full batches, at most INVENTORY_SWEEP_ROUNDS);
 * expired reservations are also released when touched (confirm, or a reserve that finds
 * stock short). Several processes may sweep one database: each release is a conditional
 * transition, so a reservation is given back exactly once. */
#include <stdbool.h>
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
#include "emporium/outbox.h"
#include "emporium/timer.h"
#include "inventory_internal.h"

#define OUTBOX_TOPIC BUS_TOPIC_INVENTORY

static struct inventory_ctx *ctx_of(struct app *app) { return app_service_ctx(app, "inventory"); }

static struct db *inv_db(struct app *app) { return app_db(app, "inventory"); }

/* ---------------------------------------------------------------- recent reservations */

/* The lines of the reservations made here and not confirmed yet, by id (one per slot; a
 * newer one in the same slot replaces it). A confirm on PostgreSQL builds its event from
 * them instead of reading the reservation back first: a reservation's lines never change.
 * Absent (made by another process, replaced, or after a restart): read back as before. */
static struct inventory__recent *recent_slot(struct inventory_ctx *ctx, int64_t id)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return &ctx->recent[(h >> 32) % INVENTORY_RECENT_SLOTS];
}

static void recent_put(struct app *app, int64_t id, const struct inventory_item *items, int n)
{
    struct inventory_ctx *ctx = ctx_of(app);
    struct inventory_item *copy = ctx ? malloc((size_t)n * sizeof *copy) : NULL;
    if (!copy)
        return; /* the confirm reads it back */
    memcpy(copy, items, (size_t)n * sizeof *copy);
    pthread_mutex_lock(&ctx->recent_mu);
    struct inventory__recent *e = recent_slot(ctx, id);
    struct inventory_item *old = e->items;
    *e = (struct inventory__recent){.id = id, .n = n, .items = copy};
    pthread_mutex_unlock(&ctx->recent_mu);
    free(old);
}

/* Takes reservation id's lines out of the cache into rv (rv->items then yours): true when
 * they were there. */
static bool recent_take(struct app *app, int64_t id, struct inventory__resv *rv)
{
    struct inventory_ctx *ctx = ctx_of(app);
    if (!ctx)
        return false;
    pthread_mutex_lock(&ctx->recent_mu);
    struct inventory__recent *e = recent_slot(ctx, id);
    bool found = e->id == id;
    if (found) {
        free(rv->items);
        rv->items = e->items;
        rv->n = e->n;
        *e = (struct inventory__recent){0};
    }
    pthread_mutex_unlock(&ctx->recent_mu);
    return found;
}

/* Product levels touched by a transaction, announced after the commit. */
struct touched {
    int n;
    int64_t product_id[INVENTORY_MAX_ITEMS];
    int64_t available[INVENTORY_MAX_ITEMS];
};

static void touched_add(struct touched *t, int64_t product_id, int64_t available)
{
    for (int i = 0; i < t->n; i++)
        if (t->product_id[i] == product_id) {
            t->available[i] = available;
            return;
        }
    if (t->n < INVENTORY_MAX_ITEMS) {
        t->product_id[t->n] = product_id;
        t->available[t->n++] = available;
    }
}

/* stock.changed to this process's catalog (an in-process broadcast, bus.h): its figures
 * follow. One message names every product of the commit (up to INVENTORY_ANNOUNCE_MAX; more
 * go in several), so the catalog updates them together rather than in one transaction a
 * product. Best effort, after the commit; the durable events are the outbox rows. */
static void announce_list(const int64_t *product_ids, const int64_t *available, int n)
{
    for (int at = 0; at < n; at += INVENTORY_ANNOUNCE_MAX) {
        int k = n - at < INVENTORY_ANNOUNCE_MAX ? n - at : INVENTORY_ANNOUNCE_MAX;
        char first[21], pid[21];
        char fixed[INVENTORY_ANNOUNCE_MAX * 96 + 64]; /* an item is at most ~70 bytes */
        struct buf b = BUF_FIXED(fixed);
        buf_puts(&b, "{\"type\":\"stock.changed\",\"items\":[");
        for (int i = at; i < at + k; i++)
            buf_printf(&b, "%s{\"product_id\":\"%s\",\"available\":%lld}", i > at ? "," : "",
                       id_format(product_ids[i], pid), (long long)available[i]);
        buf_puts(&b, "]}");
        int rc =
            b.err ? ERR_NOMEM
                  : bus_broadcast(INVENTORY_TOPIC, id_format(product_ids[at], first), b.p, b.len);
        if (rc < 0)
            log_warn("inventory: stock.changed for %d products not published: %s", k, err_str(rc));
    }
}

static void announce(int64_t product_id, int64_t available)
{
    announce_list(&product_id, &available, 1);
}

static void announce_all(const struct touched *t)
{
    announce_list(t->product_id, t->available, t->n);
}

/* stock.low when a change took available from >= threshold to below it. */
static int maybe_low(struct db_conn *c, int64_t product_id, int64_t before, int64_t after)
{
    if (!(after < INVENTORY_LOW_STOCK && before >= INVENTORY_LOW_STOCK))
        return 0;
    char pid[21];
    json_t *p = json_pack("{s:s,s:I,s:i}", "product_id", id_format(product_id, pid), "available",
                          (json_int_t)after, "threshold", INVENTORY_LOW_STOCK);
    int rc = p ? outbox_add(c, 0, OUTBOX_TOPIC, "product", product_id, "stock.low", p) : ERR_NOMEM;
    json_decref(p);
    return rc;
}

static json_t *items_json(const struct inventory_item *items, int n)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) {
        char pid[21];
        json_array_append_new(arr, json_pack("{s:s,s:i}", "product_id",
                                             id_format(items[i].product_id, pid), "quantity",
                                             items[i].quantity));
    }
    return arr;
}

/* ---------------------------------------------------------------- levels */

int inventory_get(struct app *app, int64_t product_id, int64_t *available, int64_t *reserved)
{
    if (inventory__remote(app))
        return inventory__remote_get(app, product_id, available, reserved);
    struct db_conn *c; /* ERR_UNAVAILABLE when this process does not run the service */
    int rc = db_conn_take(inv_db(app), &c);
    if (rc < 0)
        return rc;
    int64_t a = 0, r = 0;
    rc = inventory__store_level(c, product_id, &a, &r);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    if (available)
        *available = a;
    if (reserved)
        *reserved = r;
    return 0;
}

struct set_ctx {
    int64_t product_id, available, before;
};

static int set_tx(struct db_conn *c, void *vctx)
{
    struct set_ctx *s = vctx;
    int64_t before = 0;
    int rc = inventory__store_level(c, s->product_id, &before, NULL);
    if (rc < 0 && rc != ERR_NOTFOUND)
        return rc;
    bool existed = rc == 0;
    if ((rc = inventory__store_put(c, s->product_id, s->available, now_ms())) < 0)
        return rc;
    s->before = before;
    char pid[21];
    json_t *p = json_pack("{s:s,s:I,s:I}", "product_id", id_format(s->product_id, pid), "available",
                          (json_int_t)s->available, "previous", (json_int_t)before);
    rc = p ? outbox_add(c, 0, OUTBOX_TOPIC, "product", s->product_id, "stock.adjusted", p)
           : ERR_NOMEM;
    json_decref(p);
    if (rc < 0)
        return rc;
    return maybe_low(c, s->product_id, existed ? before : INVENTORY_LOW_STOCK, s->available);
}

static int set_one(struct app *app, int64_t product_id, int64_t available, int64_t *before)
{
    if (product_id <= 0 || available < 0 || available > INVENTORY_MAX_STOCK)
        return ERR_INVALID;
    struct set_ctx s = {.product_id = product_id, .available = available};
    int rc = db_transact(inv_db(app), set_tx, NULL, &s);
    if (rc < 0)
        return rc;
    if (before)
        *before = s.before;
    announce(product_id, available);
    return 0;
}

int inventory_set(struct app *app, int64_t product_id, int64_t available)
{
    return set_one(app, product_id, available, NULL);
}

struct set_many_ctx {
    const int64_t *ids, *avail;
    int n;
};

static int set_many_tx(struct db_conn *c, void *vctx)
{
    struct set_many_ctx *s = vctx;
    return inventory__store_put_many(c, s->ids, s->avail, s->n, now_ms());
}

static int set_many(struct app *app, const int64_t *product_ids, const int64_t *available, int n,
                    bool quiet)
{
    if (n < 0 || (n > 0 && (!product_ids || !available)))
        return ERR_INVALID;
    for (int i = 0; i < n; i++)
        if (product_ids[i] <= 0 || available[i] < 0 || available[i] > INVENTORY_MAX_STOCK)
            return ERR_INVALID;
    if (n == 0)
        return 0;
    struct set_many_ctx s = {product_ids, available, n};
    int rc = db_transact(inv_db(app), set_many_tx, NULL, &s);
    if (rc < 0)
        return rc;
    if (!quiet)
        announce_list(product_ids, available, n);
    return 0;
}

int inventory_set_many(struct app *app, const int64_t *product_ids, const int64_t *available, int n)
{
    return set_many(app, product_ids, available, n, false);
}

int inventory_set_many_quiet(struct app *app, const int64_t *product_ids, const int64_t *available,
                             int n)
{
    return set_many(app, product_ids, available, n, true);
}

/* ---------------------------------------------------------------- administration */

int inventory_set_product_check(struct app *app, inventory_product_known_fn fn)
{
    struct inventory_ctx *ctx = ctx_of(app);
    if (!ctx)
        return ERR_UNAVAILABLE;
    ctx->product_known = fn;
    return 0;
}

/* 1 known, 0 unknown, ERR_*; every id is known when no catalog registered a check. */
static int product_known(struct app *app, int64_t product_id)
{
    struct inventory_ctx *ctx = ctx_of(app);
    return ctx && ctx->product_known ? ctx->product_known(app, product_id) : 1;
}

int inventory_admin_get(struct app *app, int64_t product_id, struct inventory_level *out)
{
    out->product_id = product_id;
    out->available = out->reserved = 0;
    int rc = inventory_get(app, product_id, &out->available, &out->reserved);
    if (rc != ERR_NOTFOUND)
        return rc;
    /* A product the catalog knows that never had stock set has none. */
    struct inventory_ctx *ctx = ctx_of(app);
    if (!ctx || !ctx->product_known)
        return ERR_NOTFOUND;
    rc = ctx->product_known(app, product_id);
    return rc < 0 ? rc : rc ? 0 : ERR_NOTFOUND;
}

int inventory_admin_set(struct app *app, int64_t admin_user_id, int64_t product_id,
                        int64_t available, struct inventory_level *out)
{
    if (product_id <= 0 || available < 0 || available > INVENTORY_MAX_STOCK)
        return ERR_INVALID;
    int rc = product_known(app, product_id);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return ERR_NOTFOUND;
    int64_t before = 0;
    if ((rc = set_one(app, product_id, available, &before)) < 0)
        return rc;
    char pid[21], uid[21];
    log_info("inventory: stock of product %s set to %lld (was %lld) by admin %s",
             id_format(product_id, pid), (long long)available, (long long)before,
             id_format(admin_user_id, uid));
    out->product_id = product_id;
    return inventory_get(app, product_id, &out->available, &out->reserved);
}

/* ---------------------------------------------------------------- reservations */

struct reserve_ctx {
    int64_t id;
    struct inventory_item *items; /* merged, sorted by product_id */
    int n;
    int ttl_seconds;
    int64_t short_product;
    int64_t *after; /* n levels after the takes */
    struct touched t;
};

static void reserve_reset(void *vctx)
{
    struct reserve_ctx *r = vctx;
    r->short_product = 0;
    r->t.n = 0;
}

/* The stock.reserved event: it rides in the takes' pipeline, so a short item or a duplicate
 * rolls it back with them. */
static int reserve_event(const struct reserve_ctx *r, int64_t expires, struct outbox_row *ev)
{
    char rid[21], ts[32];
    json_t *p = json_pack("{s:s,s:o,s:s}", "reservation_id", id_format(r->id, rid), "items",
                          items_json(r->items, r->n), "expires_at", time_format(expires, ts));
    int rc = p ? outbox_row_make(ev, 0, OUTBOX_TOPIC, "reservation", r->id, "stock.reserved", p)
               : ERR_NOMEM;
    json_decref(p);
    return rc;
}

/* PostgreSQL: the reservation as one implicit transaction, one round trip (the takes' row
 * locks are held for that round trip only). Not shared with other reservations
 * (db_query_many_shared): one transaction holding several orders' rows, locked order by
 * order, could deadlock with a confirm or release locking them in product order. 1: it needs the transaction of reserve_tx (a
 * short item, the low-stock mark crossed, a duplicate) and nothing of it was kept. */
static int reserve_fast(struct db *db, struct reserve_ctx *r)
{
    int64_t now = now_ms(), expires = now + (int64_t)r->ttl_seconds * 1000;
    struct outbox_row ev;
    int rc = reserve_event(r, expires, &ev);
    if (rc == 0) {
        struct db_stmt tail = {.sql = OUTBOX_INSERT, .n = OUTBOX_NARGS, .args = ev.args};
        rc =
            inventory__store_reserve_fast(db, r->id, now, expires, r->items, r->n, r->after, &tail);
        outbox_row_free(&ev);
    }
    for (int i = 0; rc == 0 && i < r->n; i++)
        touched_add(&r->t, r->items[i].product_id, r->after[i]);
    return rc;
}

static int reserve_tx(struct db_conn *c, void *vctx)
{
    struct reserve_ctx *r = vctx;
    int64_t now = now_ms(), expires = now + (int64_t)r->ttl_seconds * 1000;
    struct outbox_row ev;
    int rc = reserve_event(r, expires, &ev);
    if (rc < 0)
        return rc;
    struct db_stmt tail = {.sql = OUTBOX_INSERT, .n = OUTBOX_NARGS, .args = ev.args};
    /* The reservation row first: a concurrent duplicate waits on its primary key and then
     * finds it (1: a retried call, nothing to do; the takes of this attempt roll back). */
    int64_t *after = r->after;
    rc = inventory__store_reserve(c, r->id, now, expires, r->items, r->n, after, &r->short_product,
                                  &tail);
    outbox_row_free(&ev);
    if (rc != 0)
        return rc;
    for (int i = 0; i < r->n; i++) {
        const struct inventory_item *it = &r->items[i];
        if ((rc = maybe_low(c, it->product_id, after[i] + it->quantity, after[i])) < 0)
            return rc;
        touched_add(&r->t, it->product_id, after[i]);
    }
    return 0;
}

static int cmp_item(const void *a, const void *b)
{
    int64_t x = ((const struct inventory_item *)a)->product_id;
    int64_t y = ((const struct inventory_item *)b)->product_id;
    return x < y ? -1 : x > y;
}

/* Sorts by product id and merges duplicates into merged[]; returns the count or ERR_INVALID. */
static int merge_items(const struct inventory_item *items, int n, struct inventory_item *merged)
{
    memcpy(merged, items, (size_t)n * sizeof *merged);
    qsort(merged, (size_t)n, sizeof *merged, cmp_item);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (merged[i].product_id <= 0 || merged[i].quantity <= 0 ||
            merged[i].quantity > INVENTORY_MAX_QTY)
            return ERR_INVALID;
        if (m > 0 && merged[m - 1].product_id == merged[i].product_id) {
            if (merged[m - 1].quantity > INVENTORY_MAX_QTY - merged[i].quantity)
                return ERR_INVALID;
            merged[m - 1].quantity += merged[i].quantity;
        } else {
            merged[m++] = merged[i];
        }
    }
    return m;
}

int inventory_reserve(struct app *app, int64_t reservation_id, const struct inventory_item *items,
                      int n, int ttl_seconds, int64_t *short_product)
{
    if (short_product)
        *short_product = 0;
    if (inventory__remote(app))
        return inventory__remote_reserve(app, reservation_id, items, n, ttl_seconds, short_product);
    if (reservation_id <= 0 || n <= 0 || n > INVENTORY_MAX_ITEMS || !items || ttl_seconds <= 0 ||
        ttl_seconds > 7 * 24 * 3600)
        return ERR_INVALID;
    /* Not zeroed: the 16 KB of touched levels are only read up to t.n. */
    struct reserve_ctx *r = malloc(sizeof *r);
    struct inventory_item *merged = malloc((size_t)n * sizeof *merged);
    int64_t *after = malloc((size_t)n * sizeof *after);
    int rc = !r || !merged || !after ? ERR_NOMEM : merge_items(items, n, merged);
    if (rc >= 0) {
        r->id = reservation_id;
        r->after = after;
        r->items = merged;
        r->n = rc;
        r->ttl_seconds = ttl_seconds;
        r->short_product = 0;
        r->t.n = 0;
        rc = db_dialect(inv_db(app)) == DB_POSTGRES ? reserve_fast(inv_db(app), r) : 1;
        if (rc == 1 || rc == ERR_BUSY) {
            reserve_reset(r);
            rc = db_write(inv_db(app), reserve_tx, reserve_reset, r);
        }
        /* Short: stock held by reservations that have expired but were not swept yet is
         * really free, so sweep once and try again before saying no. */
        if (rc == ERR_CONFLICT && inventory__sweep(app, INVENTORY_SWEEP_BATCH) > 0)
            rc = db_write(inv_db(app), reserve_tx, reserve_reset, r);
        if (rc == ERR_CONFLICT && short_product)
            *short_product = r->short_product;
        if (rc == 0 && db_dialect(inv_db(app)) == DB_POSTGRES)
            recent_put(app, reservation_id, r->items, r->n); /* for confirm_pg() */
        if (rc >= 0)
            announce_all(&r->t);
    }
    free(after);
    free(merged);
    free(r);
    return rc < 0 ? rc : 0;
}

enum release_mode { REL_ANY, REL_EXPIRED_ONLY };

struct release_ctx {
    int64_t id;
    enum release_mode mode;
    const char *reason;
    struct inventory__resv rv;
    struct touched t;
    bool released; /* this call gave the stock back */
};

static void release_reset(void *vctx)
{
    struct release_ctx *r = vctx;
    r->t.n = 0;
    r->released = false;
}

/* Gives a reservation's stock back: from reserved when active, plain back to available when
 * confirmed. Returns 0 (done, or nothing to do) or ERR_*; ERR_BUSY when it lost a race
 * (the retry re-reads the new status). */
static int release_tx(struct db_conn *c, void *vctx)
{
    struct release_ctx *r = vctx;
    int rc = inventory__store_resv_load(c, r->id, &r->rv);
    if (rc == ERR_NOTFOUND)
        return 1; /* unknown: releasing nothing is idempotent */
    if (rc < 0)
        return rc;
    bool active = !strcmp(r->rv.status, "active");
    bool confirmed = !strcmp(r->rv.status, "confirmed");
    if (!active && !confirmed)
        return 1; /* released already */
    if (r->mode == REL_EXPIRED_ONLY && (!active || r->rv.expires_at > now_ms()))
        return 1;
    int64_t now = now_ms();
    rc = inventory__store_resv_move(c, r->id, r->rv.status, "released", now);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return ERR_BUSY; /* raced with another transition: retry, re-reading */
    for (int i = 0; i < r->rv.n; i++) {
        const struct inventory_item *it = &r->rv.items[i];
        rc = inventory__store_give(c, it->product_id, it->quantity, active, now);
        if (rc < 0)
            return rc;
        int64_t after;
        if (rc == 1 && inventory__store_level(c, it->product_id, &after, NULL) == 0)
            touched_add(&r->t, it->product_id, after);
    }
    char rid[21];
    json_t *p = json_pack("{s:s,s:o,s:s,s:s}", "reservation_id", id_format(r->id, rid), "items",
                          items_json(r->rv.items, r->rv.n), "reason", r->reason, "previous_status",
                          r->rv.status);
    rc = p ? outbox_add(c, 0, OUTBOX_TOPIC, "reservation", r->id, "stock.released", p) : ERR_NOMEM;
    json_decref(p);
    if (rc == 0)
        r->released = true;
    return rc;
}

static int release(struct app *app, int64_t id, enum release_mode mode, const char *reason,
                   bool *released)
{
    struct release_ctx *r = calloc(1, sizeof *r);
    if (!r)
        return ERR_NOMEM;
    r->id = id;
    r->mode = mode;
    r->reason = reason;
    int rc = db_write(inv_db(app), release_tx, release_reset, r);
    if (rc >= 0)
        announce_all(&r->t);
    if (released)
        *released = rc >= 0 && r->released;
    free(r->rv.items);
    free(r);
    return rc < 0 ? rc : 0;
}

int inventory_release(struct app *app, int64_t reservation_id)
{
    if (inventory__remote(app))
        return inventory__remote_release(app, reservation_id);
    if (reservation_id <= 0)
        return ERR_INVALID;
    return release(app, reservation_id, REL_ANY, "released", NULL);
}

struct confirm_ctx {
    int64_t id;
    struct inventory__resv rv;
    bool expired; /* active but past its expiry: release it instead */
};

static int confirm_tx(struct db_conn *c, void *vctx)
{
    struct confirm_ctx *r = vctx;
    r->expired = false;
    int rc = inventory__store_resv_load(c, r->id, &r->rv);
    if (rc < 0)
        return rc;
    if (!strcmp(r->rv.status, "confirmed"))
        return 1;
    if (strcmp(r->rv.status, "active") != 0)
        return ERR_NOTFOUND;
    int64_t now = now_ms();
    if (r->rv.expires_at <= now) {
        r->expired = true;
        return ERR_NOTFOUND;
    }
    rc = inventory__store_resv_move(c, r->id, "active", "confirmed", now);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return ERR_BUSY;
    if ((rc = inventory__store_unreserve_many(c, r->rv.items, r->rv.n, now)) < 0)
        return rc;
    char rid[21];
    json_t *p = json_pack("{s:s,s:o}", "reservation_id", id_format(r->id, rid), "items",
                          items_json(r->rv.items, r->rv.n));
    rc = p ? outbox_add(c, 0, OUTBOX_TOPIC, "reservation", r->id, "stock.confirmed", p) : ERR_NOMEM;
    json_decref(p);
    return rc;
}

/* PostgreSQL: the reservation's lines (made here: from the cache; else read back with its
 * row, one round trip, no transaction), then the move with its unreserves and its event as
 * one statement (a data-modifying CTE: the lines' stock and the outbox row change only when
 * the reservation moved from active and had not expired), so the hot inventory rows stay
 * locked for that one statement only, not across the round trips of a transaction. 1
 * confirmed here; 0 when anything else is found (confirmed already, expired, released,
 * moved meanwhile): confirm_tx() then decides, as on SQLite. */
static int confirm_pg(struct app *app, struct confirm_ctx *r)
{
    struct db_conn *c;
    int rc = db_conn_take(inv_db(app), &c);
    if (rc < 0)
        return rc;
    int64_t now = now_ms();
    if (!recent_take(app, r->id, &r->rv)) {
        rc = inventory__store_resv_load(c, r->id, &r->rv);
        if (rc < 0 || strcmp(r->rv.status, "active") != 0 || r->rv.expires_at <= now) {
            db_conn_give(c);
            return rc == ERR_NOTFOUND ? 0 : rc < 0 ? rc : 0;
        }
    }
    char rid[21];
    json_t *p = json_pack("{s:s,s:o}", "reservation_id", id_format(r->id, rid), "items",
                          items_json(r->rv.items, r->rv.n));
    struct outbox_row ev;
    rc = p ? outbox_row_make(&ev, 0, OUTBOX_TOPIC, "reservation", r->id, "stock.confirmed", p)
           : ERR_NOMEM;
    json_decref(p);
    if (rc == 0) {
        rc = inventory__store_confirm_one(c, r->id, now, ev.args);
        outbox_row_free(&ev);
    }
    db_conn_give(c);
    return rc;
}

int inventory_confirm(struct app *app, int64_t reservation_id)
{
    if (inventory__remote(app))
        return inventory__remote_confirm(app, reservation_id);
    if (reservation_id <= 0)
        return ERR_INVALID;
    struct confirm_ctx r = {.id = reservation_id};
    int rc = 0;
    if (db_dialect(inv_db(app)) == DB_POSTGRES && (rc = confirm_pg(app, &r)) != 0) {
        free(r.rv.items);
        return rc < 0 ? rc : 0;
    }
    rc = db_write(inv_db(app), confirm_tx, NULL, &r);
    free(r.rv.items);
    if (rc == ERR_NOTFOUND && r.expired) /* touched after its expiry: give it back now */
        release(app, reservation_id, REL_EXPIRED_ONLY, "expired", NULL);
    return rc < 0 ? rc : 0;
}

int inventory__sweep(struct app *app, int max)
{
    int64_t *ids;
    int n = inventory__store_expired(inv_db(app), now_ms(), max, &ids);
    if (n < 0)
        return n;
    int done = 0;
    for (int i = 0; i < n; i++) {
        bool released = false;
        int rc = release(app, ids[i], REL_EXPIRED_ONLY, "expired", &released);
        if (rc < 0) {
            char rid[21];
            log_warn("inventory: releasing expired reservation %s failed: %s",
                     id_format(ids[i], rid), err_str(rc));
            continue;
        }
        done += released;
    }
    free(ids);
    return done;
}

/* ---------------------------------------------------------------- lifecycle */

/* The sweep job (timer.h: `serve` only, on the monotonic clock): rounds of
 * INVENTORY_SWEEP_BATCH while full batches come back, at most INVENTORY_SWEEP_ROUNDS a run so
 * a run stays short. */
static void sweep_job(struct app *app, void *vctx)
{
    int n, rounds = 0;
    do {
        n = inventory__sweep(app, INVENTORY_SWEEP_BATCH);
        if (n > 0)
            log_info("inventory: released %d expired reservation(s)", n);
    } while (n >= INVENTORY_SWEEP_BATCH && ++rounds < INVENTORY_SWEEP_ROUNDS);
    if (n < 0 && n != ERR_UNAVAILABLE)
        log_warn("inventory: sweeping expired reservations failed: %s", err_str(n));
}

int inventory__init(struct app *app)
{
    struct inventory_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return ERR_NOMEM;
    pthread_mutex_init(&ctx->recent_mu, NULL);
    int rc = app_set_service_ctx(app, "inventory", ctx);
    if (rc == 0)
        rc = timer_add(app, "inventory.reservation_sweep", INVENTORY_SWEEP_MS, sweep_job, ctx);
    if (rc < 0) {
        app_set_service_ctx(app, "inventory", NULL);
        pthread_mutex_destroy(&ctx->recent_mu);
        free(ctx);
    }
    return rc;
}

void inventory__deinit(struct app *app)
{
    /* app_free() stopped the timer thread before any deinit: no sweep can be running */
    struct inventory_ctx *ctx = ctx_of(app);
    app_set_service_ctx(app, "inventory", NULL);
    if (!ctx)
        return;
    for (int i = 0; i < INVENTORY_RECENT_SLOTS; i++)
        free(ctx->recent[i].items);
    pthread_mutex_destroy(&ctx->recent_mu);
    free(ctx);
}
