/* SPDX-License-Identifier: MIT */
/* order.c — the order service: sharded order storage, the status machine, compensation.
 *
 * Orders live in orders_0 … orders_5; a user's orders all live in shard hash(user_id) % 6 and
 * an order's id carries its shard (id_new(shard)), so a lookup by id goes straight to it.
 * Status machine: pending → paid → fulfilling → shipped → delivered; pending → failed;
 * paid/fulfilling/on_hold → cancelled; paid → on_hold. Every move is a conditional UPDATE
 * (`… WHERE status IN (…)`) written with its history row and outbox event in one
 * transaction, so concurrent actors (the saga, a cancel, a carrier event, the recovery
 * sweep) never both win. Failed and cancelled orders owe a compensation (release stock, void
 * or refund) recorded by `compensated = 0`; it runs right away and, should the process die
 * first, from the recovery sweep. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/outbox.h"
#include "emporium/service.h"
#include "emporium/svc/inventory.h"
#include "emporium/svc/order.h"
#include "emporium/svc/payment.h"
#include "emporium/svc/shipping.h"
#include "order_internal.h"

struct order_settings order__settings = {900, 600, 30};

unsigned order__shard_of_user(int64_t user_id)
{
    /* splitmix64's finalizer: ids are time-ordered, so their low bits alone would skew. */
    uint64_t z = (uint64_t)user_id + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (unsigned)(z % ORDER_SHARDS);
}

struct db *order__db_of(struct app *app, int64_t order_id)
{
    unsigned shard = id_shard(order_id);
    if (order_id <= 0 || shard >= ORDER_SHARDS)
        return NULL;
    return app_db_shard(app, "orders", (int)shard);
}

json_t *order__money(int64_t amount, const char *currency)
{
    return json_pack("{s:I,s:s}", "amount", (json_int_t)amount, "currency", currency);
}

int order__transition(struct db_conn *c, int64_t id, const char *to, const char *const *from,
                      const char *reason, bool retryable, bool compensate, int64_t at)
{
    char sql[512];
    int n = snprintf(sql, sizeof sql,
                     "UPDATE orders SET status = $1, updated_at = $2, "
                     "failure_reason = COALESCE($3, failure_reason), retryable = $4, "
                     "compensated = CASE WHEN $5 = 1 THEN 0 ELSE compensated END "
                     "WHERE id = $6 AND status IN (");
    struct db_val a[16] = {DB_TEXT(to), DB_INT(now_ms()), reason ? DB_TEXT(reason) : DB_NULLV,
                           DB_INT(retryable), DB_INT(compensate), DB_INT(id)};
    int na = 6;
    for (int i = 0; from[i] && na < 16; i++) {
        a[na++] = DB_TEXT(from[i]);
        n += snprintf(sql + n, sizeof sql - (size_t)n, "%s$%d", i ? ", " : "", na);
    }
    snprintf(sql + n, sizeof sql - (size_t)n, ")");
    int rc = db_query(c, sql, na, a, NULL);
    if (rc <= 0)
        return rc;
    struct db_val h[] = {DB_INT(id_new(id_shard(id))), DB_INT(id), DB_TEXT(to), DB_INT(at),
                         reason ? DB_TEXT(reason) : DB_NULLV};
    rc = db_query(c, "INSERT INTO order_history (id, order_id, status, at, note) VALUES ($1, $2, $3, $4, $5)",
                  5, h, NULL);
    if (rc < 0)
        return rc;
    /* The event carries the order's new state; read back what the row now says. */
    struct db_rows *r = NULL;
    struct db_val q[] = {DB_INT(id)};
    rc = db_query(c, "SELECT user_id, currency, total FROM orders WHERE id = $1", 1, q, &r);
    if (rc < 0)
        return rc;
    char oid[21], ts[32];
    json_t *data = json_pack("{s:s,s:s,s:s,s:o,s:s}", "order_id", id_format(id, oid), "user_id",
                             db_get(r, 0, 0), "status", to, "total",
                             order__money(db_get_i64(r, 0, 2), db_get(r, 0, 1)), "at",
                             time_format(at, ts));
    db_rows_free(r);
    if (!data)
        return ERR_NOMEM;
    if (reason)
        json_object_set_new(data, "reason", json_string(reason));
    char type[32];
    snprintf(type, sizeof type, "order.%s", to);
    rc = outbox_add(c, id_shard(id), "order-events", "order", id, type, data);
    json_decref(data);
    return rc < 0 ? rc : 1;
}

int order__compensate(struct app *app, int64_t order_id)
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
    struct db_conn *c;
    if ((rc = db_conn_take(order__db_of(app, order_id), &c)) < 0)
        return rc;
    struct db_val a[] = {DB_INT(order_id)};
    rc = db_query(c, "UPDATE orders SET compensated = 1 WHERE id = $1", 1, a, NULL);
    db_conn_give(c);
    return rc < 0 ? rc : 0;
}

json_t *order__json(struct app *app, struct db_conn *c, int64_t id, bool full, int *err)
{
    struct db_rows *o = NULL, *it = NULL, *h = NULL;
    struct db_val a[] = {DB_INT(id)};
    int rc = db_query(c, ORDER_SELECT "WHERE id = $1", 1, a, &o);
    if (rc >= 0 && db_rows_count(o) == 0)
        rc = ERR_NOTFOUND;
    if (rc >= 0)
        rc = db_query(c,
                      "SELECT product_id, name, quantity, unit_price FROM order_items "
                      "WHERE order_id = $1 ORDER BY line",
                      1, a, &it);
    if (rc >= 0 && full)
        rc = db_query(c, "SELECT status, at, note FROM order_history WHERE order_id = $1 ORDER BY id",
                      1, a, &h);
    if (rc < 0) {
        db_rows_free(o);
        db_rows_free(it);
        *err = rc;
        return NULL;
    }
    const char *cur = db_get(o, 0, 3);
    json_t *items = json_array();
    for (int i = 0; i < db_rows_count(it); i++) {
        int64_t q = db_get_i64(it, i, 2), up = db_get_i64(it, i, 3);
        json_array_append_new(items, json_pack("{s:s,s:s,s:I,s:o,s:o}", "product_id",
                                               db_get(it, i, 0), "name", db_get(it, i, 1),
                                               "quantity", (json_int_t)q, "unit_price",
                                               order__money(up, cur), "line_total",
                                               order__money(up * q, cur)));
    }
    db_rows_free(it);
    char ts[32], ts2[32];
    json_error_t jerr;
    json_t *addr = json_loads(db_get(o, 0, 8), 0, &jerr);
    json_t *out = json_pack(
        "{s:s,s:s,s:o,s:o,s:o,s:o,s:s,s:o,s:s,s:s}", "id", db_get(o, 0, 0), "status",
        db_get(o, 0, 2), "items", items, "subtotal", order__money(db_get_i64(o, 0, 4), cur),
        "shipping", order__money(db_get_i64(o, 0, 5), cur), "total",
        order__money(db_get_i64(o, 0, 6), cur), "shipping_method", db_get(o, 0, 7),
        "shipping_address", addr ? addr : json_object(), "created_at",
        time_format(db_get_i64(o, 0, 14), ts), "updated_at",
        time_format(db_get_i64(o, 0, 15), ts2));
    if (!db_is_null(o, 0, 9))
        json_object_set_new(out, "payment", json_pack("{s:s,s:s}", "brand", db_get(o, 0, 9),
                                                      "last4", db_get(o, 0, 10)));
    if (!db_is_null(o, 0, 11)) {
        json_object_set_new(out, "failure_reason", json_string(db_get(o, 0, 11)));
        json_object_set_new(out, "retryable", json_boolean(db_get_i64(o, 0, 12) != 0));
    }
    if (full) {
        struct shipment_info s;
        if (shipping_get(app, id, &s) == 0) {
            char sid[21];
            json_object_set_new(out, "shipment",
                                json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", id_format(s.id, sid),
                                          "method", s.method, "carrier", s.carrier,
                                          "tracking_number", s.tracking_number, "status",
                                          s.status));
        } else {
            json_object_set_new(out, "shipment", json_null());
        }
        struct payment_result pr;
        json_t *pay = json_object_get(out, "payment");
        if (pay && payment_get(app, id, &pr) == 0)
            json_object_set_new(pay, "status", json_string(pr.status));
        json_t *hist = json_array();
        for (int i = 0; i < db_rows_count(h); i++) {
            json_t *e = json_pack("{s:s,s:s}", "status", db_get(h, i, 0), "at",
                                  time_format(db_get_i64(h, i, 1), ts));
            if (!db_is_null(h, i, 2))
                json_object_set_new(e, "note", json_string(db_get(h, i, 2)));
            json_array_append_new(hist, e);
        }
        json_object_set_new(out, "history", hist);
        db_rows_free(h);
    }
    db_rows_free(o);
    if (!out)
        *err = ERR_NOMEM;
    return out;
}

int order_shipment_moved(struct app *app, int64_t order_id, const char *status, int64_t at_ms)
{
    static const char *const to_shipped[] = {"paid", "fulfilling", "on_hold", NULL};
    static const char *const to_delivered[] = {"paid", "fulfilling", "on_hold", "shipped", NULL};
    bool delivered = !strcmp(status, "delivered");
    if (!delivered && strcmp(status, "shipped") != 0)
        return ERR_INVALID;
    struct db *db = order__db_of(app, order_id);
    if (!db)
        return ERR_NOTFOUND;
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    if ((rc = db_begin(c)) == 0)
        rc = order__transition(c, order_id, status, delivered ? to_delivered : to_shipped, NULL,
                               false, false, at_ms);
    if (rc == 1) {
        rc = db_commit(c);
    } else if (rc == 0) {
        db_rollback(c);
        struct db_rows *r = NULL;
        struct db_val a[] = {DB_INT(order_id)};
        rc = db_query(c, "SELECT status FROM orders WHERE id = $1", 1, a, &r);
        if (rc >= 0) {
            const char *s = db_rows_count(r) ? db_get(r, 0, 0) : NULL;
            rc = !s                                                           ? ERR_NOTFOUND
                 : !strcmp(s, status) || (!delivered && !strcmp(s, "delivered")) ? 0
                                                                                 : ERR_CONFLICT;
        }
        db_rows_free(r);
    }
    if (rc < 0)
        db_rollback(c);
    db_conn_give(c);
    return rc < 0 ? rc : 0;
}

static int env_int(const char *name, int def, int min, int max)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < min || n > max) {
        log_warn("%s=%s is out of range, using %d", name, v, def);
        return def;
    }
    return (int)n;
}

static int order_init(struct app *app)
{
    order__settings.reservation_ttl_s = env_int("EMPORIUM_RESERVATION_TTL_SECONDS", 900, 1, 86400);
    order__settings.pending_timeout_s =
        env_int("EMPORIUM_ORDER_PENDING_TIMEOUT_SECONDS", 600, 1, 86400);
    order__settings.sweep_interval_s = env_int("EMPORIUM_ORDER_SWEEP_SECONDS", 30, 1, 3600);
    return 0;
}

static int order_on_serve(struct app *app)
{
    return order__recovery_start(app);
}

static void order_deinit(struct app *app)
{
    order__recovery_stop();
}

static const struct db_migration order_migrations[] = {
    {.sql = "CREATE TABLE orders ("
            " id BIGINT PRIMARY KEY,"
            " user_id BIGINT NOT NULL,"
            " status TEXT NOT NULL,"
            " currency TEXT NOT NULL,"
            " subtotal BIGINT NOT NULL,"
            " shipping BIGINT NOT NULL,"
            " total BIGINT NOT NULL,"
            " shipping_method TEXT NOT NULL,"
            " shipping_address TEXT NOT NULL,"
            " payment_brand TEXT,"
            " payment_last4 TEXT,"
            " failure_reason TEXT,"
            " retryable INTEGER NOT NULL DEFAULT 0,"
            " shipment_id BIGINT,"
            " compensated INTEGER NOT NULL DEFAULT 1,"
            " idempotency_key TEXT NOT NULL,"
            " created_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL);"
            "CREATE INDEX orders_user ON orders (user_id, id);"
            "CREATE INDEX orders_status ON orders (status, id);"
            "CREATE INDEX orders_owed ON orders (compensated, updated_at);"
            "CREATE TABLE order_items ("
            " order_id BIGINT NOT NULL REFERENCES orders(id),"
            " line INTEGER NOT NULL,"
            " product_id BIGINT NOT NULL,"
            " name TEXT NOT NULL,"
            " quantity INTEGER NOT NULL,"
            " unit_price BIGINT NOT NULL,"
            " PRIMARY KEY (order_id, line));"
            "CREATE TABLE order_history ("
            " id BIGINT PRIMARY KEY,"
            " order_id BIGINT NOT NULL REFERENCES orders(id),"
            " status TEXT NOT NULL,"
            " at BIGINT NOT NULL,"
            " note TEXT);"
            "CREATE INDEX order_history_order ON order_history (order_id, id);"
            "CREATE TABLE idempotency_keys ("
            " user_id BIGINT NOT NULL,"
            " idem_key TEXT NOT NULL,"
            " request_hash TEXT NOT NULL,"
            " order_id BIGINT,"
            " state TEXT NOT NULL,"
            " response_status INTEGER,"
            " response_body TEXT,"
            " created_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL,"
            " PRIMARY KEY (user_id, idem_key));"
            "CREATE INDEX idempotency_keys_state ON idempotency_keys (state, created_at);"},
    {.sql = OUTBOX_MIGRATION},
};

static const struct service_db order_dbs[] = {
    {"orders", ORDER_SHARDS, order_migrations, sizeof order_migrations / sizeof order_migrations[0]},
    {NULL, 0, NULL, 0},
};

const struct service service_order = {
    .name = "order",
    .routes = order__routes,
    .dbs = order_dbs,
    .init = order_init,
    .on_serve = order_on_serve,
    .deinit = order_deinit,
};
