/* SPDX-License-Identifier: MIT */
/* inventory_store.c — stock levels and reservations (svc/inventory.h) over the `inventory`
 * database.
 *
 * Invariant: inventory.available >= 0 and inventory.reserved >= 0, always. Stock only ever
 * leaves `available` through one conditional statement,
 *     UPDATE inventory SET available = available - q, reserved = reserved + q
 *     WHERE product_id = $1 AND available >= q
 * whose affected-row count says whether it happened; the database evaluates the condition
 * under the row's write lock (PostgreSQL re-checks it after waiting for a concurrent writer,
 * SQLite serialises writers with BEGIN IMMEDIATE), so no interleaving can take more than is
 * there. The schema's CHECK constraints back this up. All items of a reservation are taken
 * in one transaction, in product_id order (so two multi-item reservations never deadlock),
 * or none is.
 *
 * A reservation moves through active → confirmed | released, and confirmed → released
 * (cancel after payment). Every transition is one conditional UPDATE on the reservation row
 * (`WHERE id = $1 AND status = <the status we read>`), so of two racing transitions exactly
 * one applies and the other re-reads and sees the outcome: release, confirm and the sweeper
 * never give the same stock back twice. Each transition writes its outbox event in the same
 * transaction. Transactions that hit a lock timeout or a deadlock (ERR_BUSY) are retried a
 * few times with a short random backoff.
 *
 * After a commit that changed `available`, product_stock_changed() tells the catalog. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <sodium.h>

#include "emporium/app.h"
#include "emporium/buf.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/outbox.h"
#include "emporium/svc/inventory.h"
#include "emporium/svc/product.h"
#include "inventory_internal.h"

#define TOPIC "inventory"

/* Product levels touched by a transaction, reported to the catalog after the commit. */
struct touched {
    int n;
    int64_t product_id[INVENTORY_MAX_ITEMS];
    int64_t available[INVENTORY_MAX_ITEMS];
};

/* One transaction on the inventory database, retried on ERR_BUSY (see db_transact). */
static int run_tx(struct app *app, db_tx_fn fn, void (*reset)(void *ctx), void *ctx)
{
    return db_transact(app_db(app, "inventory"), fn, reset, ctx);
}

/* The catalog's client is in-process for now: only call it when the catalog runs here. */
static bool catalog_here(struct app *app) { return app_has_service(app, "product"); }

static void notify_catalog(struct app *app, const struct touched *t)
{
    if (!catalog_here(app))
        return;
    for (int i = 0; i < t->n; i++)
        product_stock_changed(app, t->product_id[i], t->available[i]);
}

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

/* Reads available stock inside the transaction; -1 when the row is missing. */
static int read_available(struct db_conn *c, int64_t product_id, int64_t *available,
                          int64_t *reserved)
{
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(product_id)};
    int rc = db_query(c, "SELECT available, reserved FROM inventory WHERE product_id = $1", 1,
                      a, &r);
    if (rc < 0)
        return rc;
    if (db_rows_count(r) != 1) {
        db_rows_free(r);
        return ERR_NOTFOUND;
    }
    *available = db_get_i64(r, 0, 0);
    if (reserved)
        *reserved = db_get_i64(r, 0, 1);
    db_rows_free(r);
    return 0;
}

/* stock.low when a change took available from >= threshold to below it. */
static int maybe_low(struct db_conn *c, int64_t product_id, int64_t before, int64_t after)
{
    if (!(after < INVENTORY_LOW_STOCK && before >= INVENTORY_LOW_STOCK))
        return 0;
    char pid[21];
    json_t *p = json_pack("{s:s,s:I,s:i}", "product_id", id_format(product_id, pid),
                          "available", (json_int_t)after, "threshold", INVENTORY_LOW_STOCK);
    int rc = p ? outbox_add(c, 0, TOPIC, "product", product_id, "stock.low", p) : ERR_NOMEM;
    json_decref(p);
    return rc;
}

/* ---------------------------------------------------------------- levels */

int inventory_get(struct app *app, int64_t product_id, int64_t *available, int64_t *reserved)
{
    struct db_conn *c; /* ERR_UNAVAILABLE when this process does not run the service */
    int rc = db_conn_take(app_db(app, "inventory"), &c);
    if (rc < 0)
        return rc;
    int64_t a = 0, r = 0;
    rc = read_available(c, product_id, &a, &r);
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
    int64_t product_id, available, before, reserved;
};

static int set_tx(struct db_conn *c, void *vctx)
{
    struct set_ctx *s = vctx;
    int64_t before = 0, reserved = 0;
    int rc = read_available(c, s->product_id, &before, &reserved);
    if (rc < 0 && rc != ERR_NOTFOUND)
        return rc;
    bool existed = rc == 0;
    struct db_val a[] = {DB_INT(s->product_id), DB_INT(s->available), DB_INT(now_ms())};
    rc = db_query(c,
                  "INSERT INTO inventory (product_id, available, reserved, updated_at) "
                  "VALUES ($1, $2, 0, $3) ON CONFLICT (product_id) DO UPDATE SET "
                  "available = excluded.available, updated_at = excluded.updated_at",
                  3, a, NULL);
    if (rc < 0)
        return rc;
    s->before = before;
    s->reserved = reserved;
    char pid[21];
    json_t *p = json_pack("{s:s,s:I,s:I}", "product_id", id_format(s->product_id, pid),
                          "available", (json_int_t)s->available, "previous",
                          (json_int_t)before);
    rc = p ? outbox_add(c, 0, TOPIC, "product", s->product_id, "stock.adjusted", p) : ERR_NOMEM;
    json_decref(p);
    if (rc < 0)
        return rc;
    return maybe_low(c, s->product_id, existed ? before : INVENTORY_LOW_STOCK, s->available);
}

int inventory_set(struct app *app, int64_t product_id, int64_t available)
{
    if (product_id <= 0 || available < 0 || available > INVENTORY_MAX_STOCK)
        return ERR_INVALID;
    struct set_ctx s = {.product_id = product_id, .available = available};
    int rc = run_tx(app, set_tx, NULL, &s);
    if (rc < 0)
        return rc;
    if (catalog_here(app))
        product_stock_changed(app, product_id, available);
    return 0;
}

struct set_many_ctx {
    const int64_t *ids, *avail;
    int n;
};

/* Multi-row upserts of SET_MANY_BATCH rows per statement: 100k rows are 200 statements. */
#define SET_MANY_BATCH 500

static int set_many_tx(struct db_conn *c, void *vctx)
{
    struct set_many_ctx *s = vctx;
    struct db_val *a = malloc(sizeof(struct db_val) * SET_MANY_BATCH * 2);
    if (!a)
        return ERR_NOMEM;
    int64_t now = now_ms();
    int rc = 0;
    for (int off = 0; off < s->n && rc >= 0; off += SET_MANY_BATCH) {
        int k = s->n - off < SET_MANY_BATCH ? s->n - off : SET_MANY_BATCH;
        struct buf sql = BUF_INIT(0);
        buf_puts(&sql, "INSERT INTO inventory (product_id, available, reserved, updated_at) VALUES ");
        for (int i = 0; i < k; i++) {
            buf_printf(&sql, "%s($%d, $%d, 0, %lld)", i ? "," : "", 2 * i + 1, 2 * i + 2,
                       (long long)now);
            a[2 * i] = DB_INT(s->ids[off + i]);
            a[2 * i + 1] = DB_INT(s->avail[off + i]);
        }
        buf_puts(&sql, " ON CONFLICT (product_id) DO UPDATE SET available = excluded.available, "
                       "updated_at = excluded.updated_at");
        char *text = buf_steal(&sql, NULL);
        rc = text ? db_query(c, text, 2 * k, a, NULL) : ERR_NOMEM;
        free(text);
    }
    free(a);
    return rc < 0 ? rc : 0;
}

int inventory_set_many(struct app *app, const int64_t *product_ids, const int64_t *available,
                       int n)
{
    if (n < 0 || (n > 0 && (!product_ids || !available)))
        return ERR_INVALID;
    for (int i = 0; i < n; i++)
        if (product_ids[i] <= 0 || available[i] < 0 || available[i] > INVENTORY_MAX_STOCK)
            return ERR_INVALID;
    if (n == 0)
        return 0;
    struct set_many_ctx s = {product_ids, available, n};
    int rc = run_tx(app, set_many_tx, NULL, &s);
    if (rc < 0)
        return rc;
    for (int i = 0; catalog_here(app) && i < n; i++)
        product_stock_changed(app, product_ids[i], available[i]);
    return 0;
}

/* ---------------------------------------------------------------- reservations */

struct reserve_ctx {
    int64_t id;
    struct inventory_item *items; /* merged, sorted by product_id */
    int n;
    int ttl_seconds;
    int64_t short_product;
    struct touched t;
};

static void reserve_reset(void *vctx)
{
    struct reserve_ctx *r = vctx;
    r->short_product = 0;
    r->t.n = 0;
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

static int reserve_tx(struct db_conn *c, void *vctx)
{
    struct reserve_ctx *r = vctx;
    int64_t now = now_ms(), expires = now + (int64_t)r->ttl_seconds * 1000;
    struct db_val ra[] = {DB_INT(r->id), DB_INT(now), DB_INT(expires)};
    struct db_rows *rows = NULL;
    int rc = db_query(c, "SELECT 1 FROM reservations WHERE id = $1", 1, ra, &rows);
    if (rc < 0)
        return rc;
    bool exists = db_rows_count(rows) > 0;
    db_rows_free(rows);
    if (exists)
        return 1; /* a retried call: nothing to do */
    /* The reservation row first: a concurrent duplicate waits on its primary key and then
     * sees ERR_CONFLICT, which is the idempotent "already reserved". */
    rc = db_query(c,
                      "INSERT INTO reservations (id, status, created_at, expires_at, updated_at) "
                      "VALUES ($1, 'active', $2, $3, $2)",
                      3, ra, NULL);
    if (rc == ERR_CONFLICT)
        return 1;
    if (rc < 0)
        return rc;
    for (int i = 0; i < r->n; i++) {
        const struct inventory_item *it = &r->items[i];
        struct db_val a[] = {DB_INT(it->product_id), DB_INT(it->quantity), DB_INT(now)};
        rc = db_query(c,
                      "UPDATE inventory SET available = available - $2, "
                      "reserved = reserved + $2, updated_at = $3 "
                      "WHERE product_id = $1 AND available >= $2",
                      3, a, NULL);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            r->short_product = it->product_id;
            return ERR_CONFLICT;
        }
        struct db_val ia[] = {DB_INT(r->id), DB_INT(it->product_id), DB_INT(it->quantity)};
        rc = db_query(c,
                      "INSERT INTO reservation_items (reservation_id, product_id, quantity) "
                      "VALUES ($1, $2, $3)",
                      3, ia, NULL);
        if (rc < 0)
            return rc;
        int64_t after;
        if ((rc = read_available(c, it->product_id, &after, NULL)) < 0)
            return rc;
        if ((rc = maybe_low(c, it->product_id, after + it->quantity, after)) < 0)
            return rc;
        touched_add(&r->t, it->product_id, after);
    }
    char rid[21], ts[32];
    json_t *p = json_pack("{s:s,s:o,s:s}", "reservation_id", id_format(r->id, rid), "items",
                          items_json(r->items, r->n), "expires_at", time_format(expires, ts));
    rc = p ? outbox_add(c, 0, TOPIC, "reservation", r->id, "stock.reserved", p) : ERR_NOMEM;
    json_decref(p);
    return rc;
}

static int cmp_item(const void *a, const void *b)
{
    int64_t x = ((const struct inventory_item *)a)->product_id;
    int64_t y = ((const struct inventory_item *)b)->product_id;
    return x < y ? -1 : x > y;
}

int inventory_reserve(struct app *app, int64_t reservation_id, const struct inventory_item *items,
                      int n, int ttl_seconds, int64_t *short_product)
{
    if (short_product)
        *short_product = 0;
    if (reservation_id <= 0 || n <= 0 || n > INVENTORY_MAX_ITEMS || !items || ttl_seconds <= 0 ||
        ttl_seconds > 7 * 24 * 3600)
        return ERR_INVALID;
    /* Not zeroed: the 16 KB of touched levels are only read up to t.n. */
    struct reserve_ctx *r = malloc(sizeof *r);
    struct inventory_item *merged = malloc((size_t)n * sizeof *merged);
    if (!r || !merged) {
        free(r);
        free(merged);
        return ERR_NOMEM;
    }
    int rc = 0;
    memcpy(merged, items, (size_t)n * sizeof *merged);
    qsort(merged, (size_t)n, sizeof *merged, cmp_item);
    int m = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (merged[i].product_id <= 0 || merged[i].quantity <= 0 ||
            merged[i].quantity > INVENTORY_MAX_QTY) {
            rc = ERR_INVALID;
        } else if (m > 0 && merged[m - 1].product_id == merged[i].product_id) {
            if (merged[m - 1].quantity > INVENTORY_MAX_QTY - merged[i].quantity)
                rc = ERR_INVALID;
            else
                merged[m - 1].quantity += merged[i].quantity;
        } else {
            merged[m++] = merged[i];
        }
    }
    if (rc == 0) {
        r->id = reservation_id;
        r->items = merged;
        r->n = m;
        r->ttl_seconds = ttl_seconds;
        r->short_product = 0;
        r->t.n = 0;
        rc = run_tx(app, reserve_tx, reserve_reset, r);
        /* Short: stock held by reservations that have expired but were not swept yet is
         * really free, so sweep once and try again before saying no. */
        if (rc == ERR_CONFLICT && inventory__sweep(app, INVENTORY_SWEEP_BATCH) > 0)
            rc = run_tx(app, reserve_tx, reserve_reset, r);
        if (rc == ERR_CONFLICT && short_product)
            *short_product = r->short_product;
        if (rc >= 0)
            notify_catalog(app, &r->t);
    }
    free(merged);
    free(r);
    return rc < 0 ? rc : 0;
}

/* Loads a reservation's status, expiry and items. ERR_NOTFOUND when unknown. */
struct resv {
    char status[16];
    int64_t expires_at;
    int n;
    struct inventory_item *items;
};

static int load_resv(struct db_conn *c, int64_t id, struct resv *out)
{
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(id)};
    int rc = db_query(c, "SELECT status, expires_at FROM reservations WHERE id = $1", 1, a, &r);
    if (rc < 0)
        return rc;
    if (db_rows_count(r) != 1) {
        db_rows_free(r);
        return ERR_NOTFOUND;
    }
    snprintf(out->status, sizeof out->status, "%s", db_get(r, 0, 0));
    out->expires_at = db_get_i64(r, 0, 1);
    db_rows_free(r);
    rc = db_query(c,
                  "SELECT product_id, quantity FROM reservation_items WHERE reservation_id = $1 "
                  "ORDER BY product_id",
                  1, a, &r);
    if (rc < 0)
        return rc;
    out->n = db_rows_count(r);
    free(out->items);
    out->items = calloc((size_t)(out->n ? out->n : 1), sizeof *out->items);
    if (!out->items) {
        db_rows_free(r);
        return ERR_NOMEM;
    }
    for (int i = 0; i < out->n; i++) {
        out->items[i].product_id = db_get_i64(r, i, 0);
        out->items[i].quantity = (int)db_get_i64(r, i, 1);
    }
    db_rows_free(r);
    return 0;
}

/* Moves the reservation from `from` to `to`; 0 rows means someone else moved it first. */
static int transition(struct db_conn *c, int64_t id, const char *from, const char *to)
{
    struct db_val a[] = {DB_INT(id), DB_TEXT(from), DB_TEXT(to), DB_INT(now_ms())};
    return db_query(c,
                    "UPDATE reservations SET status = $3, updated_at = $4 "
                    "WHERE id = $1 AND status = $2",
                    4, a, NULL);
}

enum release_mode { REL_ANY, REL_EXPIRED_ONLY };

struct release_ctx {
    int64_t id;
    enum release_mode mode;
    const char *reason;
    struct resv rv;
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
    int rc = load_resv(c, r->id, &r->rv);
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
    rc = transition(c, r->id, r->rv.status, "released");
    if (rc < 0)
        return rc;
    if (rc == 0)
        return ERR_BUSY; /* raced with another transition: retry, re-reading */
    int64_t now = now_ms();
    for (int i = 0; i < r->rv.n; i++) {
        const struct inventory_item *it = &r->rv.items[i];
        struct db_val a[] = {DB_INT(it->product_id), DB_INT(it->quantity), DB_INT(now)};
        rc = db_query(c,
                      active ? "UPDATE inventory SET available = available + $2, "
                               "reserved = reserved - $2, updated_at = $3 WHERE product_id = $1"
                             : "UPDATE inventory SET available = available + $2, "
                               "updated_at = $3 WHERE product_id = $1",
                      3, a, NULL);
        if (rc < 0)
            return rc;
        int64_t after;
        if (rc == 1 && read_available(c, it->product_id, &after, NULL) == 0)
            touched_add(&r->t, it->product_id, after);
    }
    char rid[21];
    json_t *p = json_pack("{s:s,s:o,s:s,s:s}", "reservation_id", id_format(r->id, rid), "items",
                          items_json(r->rv.items, r->rv.n), "reason", r->reason, "previous_status",
                          r->rv.status);
    rc = p ? outbox_add(c, 0, TOPIC, "reservation", r->id, "stock.released", p) : ERR_NOMEM;
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
    int rc = run_tx(app, release_tx, release_reset, r);
    if (rc >= 0)
        notify_catalog(app, &r->t);
    if (released)
        *released = rc >= 0 && r->released;
    free(r->rv.items);
    free(r);
    return rc < 0 ? rc : 0;
}

int inventory_release(struct app *app, int64_t reservation_id)
{
    if (reservation_id <= 0)
        return ERR_INVALID;
    return release(app, reservation_id, REL_ANY, "released", NULL);
}

struct confirm_ctx {
    int64_t id;
    struct resv rv;
    bool expired; /* active but past its expiry: release it instead */
};

static int confirm_tx(struct db_conn *c, void *vctx)
{
    struct confirm_ctx *r = vctx;
    r->expired = false;
    int rc = load_resv(c, r->id, &r->rv);
    if (rc < 0)
        return rc;
    if (!strcmp(r->rv.status, "confirmed"))
        return 1;
    if (strcmp(r->rv.status, "active") != 0)
        return ERR_NOTFOUND;
    if (r->rv.expires_at <= now_ms()) {
        r->expired = true;
        return ERR_NOTFOUND;
    }
    rc = transition(c, r->id, "active", "confirmed");
    if (rc < 0)
        return rc;
    if (rc == 0)
        return ERR_BUSY;
    int64_t now = now_ms();
    for (int i = 0; i < r->rv.n; i++) {
        struct db_val a[] = {DB_INT(r->rv.items[i].product_id), DB_INT(r->rv.items[i].quantity),
                             DB_INT(now)};
        rc = db_query(c,
                      "UPDATE inventory SET reserved = reserved - $2, updated_at = $3 "
                      "WHERE product_id = $1",
                      3, a, NULL);
        if (rc < 0)
            return rc;
    }
    char rid[21];
    json_t *p = json_pack("{s:s,s:o}", "reservation_id", id_format(r->id, rid), "items",
                          items_json(r->rv.items, r->rv.n));
    rc = p ? outbox_add(c, 0, TOPIC, "reservation", r->id, "stock.confirmed", p) : ERR_NOMEM;
    json_decref(p);
    return rc;
}

int inventory_confirm(struct app *app, int64_t reservation_id)
{
    if (reservation_id <= 0)
        return ERR_INVALID;
    struct confirm_ctx r = {.id = reservation_id};
    int rc = run_tx(app, confirm_tx, NULL, &r);
    free(r.rv.items);
    if (rc == ERR_NOTFOUND && r.expired) /* touched after its expiry: give it back now */
        release(app, reservation_id, REL_EXPIRED_ONLY, "expired", NULL);
    return rc < 0 ? rc : 0;
}

int inventory__sweep(struct app *app, int max)
{
    struct db_conn *c; /* ERR_UNAVAILABLE when this process does not run the service */
    int rc = db_conn_take(app_db(app, "inventory"), &c);
    if (rc < 0)
        return rc;
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(now_ms()), DB_INT(max)};
    rc = db_query(c,
                  "SELECT id FROM reservations WHERE status = 'active' AND expires_at <= $1 "
                  "ORDER BY expires_at LIMIT $2",
                  2, a, &r);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    int done = 0;
    for (int i = 0; i < db_rows_count(r); i++) {
        bool released = false;
        rc = release(app, db_get_i64(r, i, 0), REL_EXPIRED_ONLY, "expired", &released);
        if (rc < 0) {
            log_warn("inventory: releasing expired reservation %s failed: %s", db_get(r, i, 0),
                     err_str(rc));
            continue;
        }
        done += released;
    }
    db_rows_free(r);
    return done;
}
