/* SPDX-License-Identifier: MIT */
/* order_store.c — every SQL statement of the order service, and its schema.
 *
 * Functions work on a connection the caller holds (the saga leases each shard connection
 * as few times as it can and runs several of these on it); they never begin or commit a
 * transaction unless their comment says so. Rows come back as the plain structs of
 * svc/order.h and order_internal.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/outbox.h"
#define EMPORIUM_SERVICE_NO_HTTP /* a layered service: no HTTP types below _http.c */
#include "emporium/service.h"
#include "order_internal.h"

#define ORDER_SELECT                                                                               \
    "SELECT id, user_id, status, currency, subtotal, shipping, total, shipping_method, "           \
    "shipping_address, payment_brand, payment_last4, failure_reason, retryable, shipment_id, "     \
    "created_at, updated_at, payment_status FROM orders "

/* The payment's status kept on the order (migration 4), so that reading an order does not
 * ask the payment service: 'captured' from the move to paid (every path to paid captures
 * first), kept through fulfilment, and NULL (unknown: the reader asks the payment service)
 * after any other move, since only those (a cancel, a failure, a hold) go with a payment that
 * changes. $1 is the status moved to. Read only in the states that keep it (row_load). */
#define PAYMENT_STATUS_OF_MOVE                                                                     \
    "payment_status = CASE WHEN $1 = 'paid' THEN 'captured' WHEN $1 IN ('fulfilling', "            \
    "'shipped', 'delivered') THEN payment_status ELSE NULL END"

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static json_t *money(int64_t amount, const char *currency)
{
    return json_pack("{s:I,s:s}", "amount", (json_int_t)amount, "currency", currency);
}

/* --- idempotency keys --- */

int order__store_key_get(struct db_conn *c, int64_t user_id, const char *key, struct order_key *out)
{
    struct db_val a[] = {DB_INT(user_id), DB_TEXT(key)};
    struct db_rows *r = NULL;
    int rc = db_query(c,
                      "SELECT request_hash, state, order_id, outcome_err, outcome_code, "
                      "outcome_product_id, response_status FROM idempotency_keys "
                      "WHERE user_id = $1 AND idem_key = $2",
                      2, a, &r);
    if (rc < 0)
        return rc;
    int found = db_rows_count(r) > 0;
    if (found) {
        memset(out, 0, sizeof *out);
        copy(out->hash, sizeof out->hash, db_get(r, 0, 0));
        out->done = !strcmp(db_get(r, 0, 1), "done");
        out->order_id = db_get_i64(r, 0, 2);
        if (!db_is_null(r, 0, 3)) {
            out->err = (int)db_get_i64(r, 0, 3);
        } else if (out->done) {
            /* A record from before outcomes were stored: its HTTP status says enough. */
            int64_t st = db_get_i64(r, 0, 6);
            out->err = st == 201 ? 0 : st == 402 ? ERR_PAYMENT : ERR_CONFLICT;
        }
        copy(out->code, sizeof out->code, db_get(r, 0, 4));
        out->product_id = db_get_i64(r, 0, 5);
    }
    db_rows_free(r);
    return found;
}

int order__store_key_done(struct db_conn *c, int64_t user_id, const char *key, int err,
                          const char *code, int64_t product_id)
{
    struct db_val a[] = {DB_INT(err),
                         code && *code ? DB_TEXT(code) : DB_NULLV,
                         product_id ? DB_INT(product_id) : DB_NULLV,
                         DB_INT(now_ms()),
                         DB_INT(user_id),
                         DB_TEXT(key)};
    int rc = db_query(c,
                      "UPDATE idempotency_keys SET state = 'done', outcome_err = $1, "
                      "outcome_code = $2, outcome_product_id = $3, updated_at = $4 "
                      "WHERE user_id = $5 AND idem_key = $6",
                      6, a, NULL);
    return rc < 0 ? rc : 0;
}

int order__store_key_drop(struct db_conn *c, int64_t user_id, const char *key)
{
    struct db_val a[] = {DB_INT(user_id), DB_TEXT(key)};
    int rc = db_query(c, "DELETE FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2", 2, a,
                      NULL);
    return rc < 0 ? rc : 0;
}

int order__store_claim_drop_orphan(struct db_conn *c, int64_t user_id, const char *key,
                                   int64_t order_id)
{
    struct db_val a[] = {DB_INT(user_id), DB_TEXT(key), DB_INT(order_id)};
    int rc = db_query(c,
                      "DELETE FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2 "
                      "AND order_id = $3 AND state = 'in_progress' "
                      "AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = $3)",
                      3, a, NULL);
    return rc < 0 ? rc : 0;
}

/* --- the order --- */

static char *address_text(const struct shipping_address *a)
{
    json_t *aj = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "name", a->name, "line1", a->line1,
                           "line2", a->line2, "city", a->city, "region", a->region, "postal_code",
                           a->postal_code, "country", a->country);
    char *s = aj ? json_dumps(aj, JSON_COMPACT) : NULL;
    json_decref(aj);
    return s;
}

static void address_load(const char *text, struct shipping_address *a)
{
    memset(a, 0, sizeof *a);
    json_error_t jerr;
    json_t *aj = text ? json_loads(text, 0, &jerr) : NULL;
    copy(a->name, sizeof a->name, json_string_value(json_object_get(aj, "name")));
    copy(a->line1, sizeof a->line1, json_string_value(json_object_get(aj, "line1")));
    copy(a->line2, sizeof a->line2, json_string_value(json_object_get(aj, "line2")));
    copy(a->city, sizeof a->city, json_string_value(json_object_get(aj, "city")));
    copy(a->region, sizeof a->region, json_string_value(json_object_get(aj, "region")));
    copy(a->postal_code, sizeof a->postal_code,
         json_string_value(json_object_get(aj, "postal_code")));
    copy(a->country, sizeof a->country, json_string_value(json_object_get(aj, "country")));
    json_decref(aj);
}

int order__store_create(struct db *db, const struct order_new *o)
{
    char *addr = address_text(o->addr);
    if (!addr)
        return ERR_NOMEM;
    int64_t now = now_ms();
    /* The claim on the key commits with the order: the primary key makes it the lock, so
     * a concurrent duplicate fails here (ERR_CONFLICT) and waits for our result. The key,
     * the order, its lines and its history row go in one pipeline (one round trip on
     * PostgreSQL), the lines as multi-row inserts. */
    struct db_val k[] = {DB_INT(o->user_id), DB_TEXT(o->key), DB_TEXT(o->hash), DB_INT(o->id),
                         DB_INT(now)};
    struct db_val a[] = {DB_INT(o->id),       DB_INT(o->user_id),  DB_TEXT(o->currency),
                         DB_INT(o->subtotal), DB_INT(o->shipping), DB_INT(o->total),
                         DB_TEXT(o->method),  DB_TEXT(addr),       DB_TEXT(o->brand),
                         DB_TEXT(o->last4),   DB_TEXT(o->key),     DB_INT(now)};
    struct db_val h[] = {DB_INT(id_new(o->shard)), DB_INT(o->id), DB_INT(now)};
    enum { LINES_PER_STMT = 20 };
    struct db_val li[LINES_PER_STMT * 6 * ((CART_MAX_LINES + LINES_PER_STMT - 1) / LINES_PER_STMT)];
    char lsql[(CART_MAX_LINES + LINES_PER_STMT - 1) / LINES_PER_STMT][160 + LINES_PER_STMT * 40];
    struct db_stmt st[4 + (CART_MAX_LINES + LINES_PER_STMT - 1) / LINES_PER_STMT];
    int ns = 0;
    st[ns++] = (struct db_stmt){
        .sql = "INSERT INTO idempotency_keys (user_id, idem_key, request_hash, order_id, "
               "state, created_at, updated_at) VALUES ($1, $2, $3, $4, 'in_progress', $5, $5)",
        .n = 5,
        .args = k};
    st[ns++] = (struct db_stmt){
        .sql = "INSERT INTO orders (id, user_id, status, currency, subtotal, shipping, "
               "total, shipping_method, shipping_address, payment_brand, payment_last4, "
               "retryable, compensated, idempotency_key, created_at, updated_at) VALUES "
               "($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $10, 0, 1, $11, $12, $12)",
        .n = 12,
        .args = a};
    int n = o->n < CART_MAX_LINES ? o->n : CART_MAX_LINES;
    json_t *items = json_array();
    for (int off = 0; off < n; off += LINES_PER_STMT) {
        int m = n - off < LINES_PER_STMT ? n - off : LINES_PER_STMT;
        char *q = lsql[off / LINES_PER_STMT];
        struct db_val *v = &li[off * 6];
        int len = snprintf(q, sizeof lsql[0],
                           "INSERT INTO order_items (order_id, line, product_id, name, "
                           "quantity, unit_price) VALUES ");
        for (int i = 0; i < m; i++) {
            const struct order_item *it = &o->items[off + i];
            v[6 * i] = DB_INT(o->id);
            v[6 * i + 1] = DB_INT(off + i);
            v[6 * i + 2] = DB_INT(it->product_id);
            v[6 * i + 3] = DB_TEXT(it->name);
            v[6 * i + 4] = DB_INT(it->quantity);
            v[6 * i + 5] = DB_INT(it->unit_price);
            len += snprintf(q + len, sizeof lsql[0] - (size_t)len,
                            "%s($%d, $%d, $%d, $%d, $%d, $%d)", i ? ", " : "", 6 * i + 1, 6 * i + 2,
                            6 * i + 3, 6 * i + 4, 6 * i + 5, 6 * i + 6);
            char pid[21];
            json_array_append_new(items, json_pack("{s:s,s:i,s:I}", "product_id",
                                                   id_format(it->product_id, pid), "quantity",
                                                   it->quantity, "unit_price",
                                                   (json_int_t)it->unit_price));
        }
        st[ns++] = (struct db_stmt){.sql = q, .n = 6 * m, .args = v};
    }
    st[ns++] = (struct db_stmt){
        .sql =
            "INSERT INTO order_history (id, order_id, status, at) VALUES ($1, $2, 'pending', $3)",
        .n = 3,
        .args = h};
    /* The order.placed event goes in the same pipeline: outside a transaction (PostgreSQL)
     * the whole create is one implicit transaction, one round trip and one commit. */
    char uid[21], oid[21];
    json_t *data = json_pack(
        "{s:s,s:s,s:s,s:O,s:o,s:o,s:o,s:s,s:s}", "order_id", id_format(o->id, oid), "user_id",
        id_format(o->user_id, uid), "status", "pending", "items", items, "subtotal",
        money(o->subtotal, o->currency), "shipping", money(o->shipping, o->currency), "total",
        money(o->total, o->currency), "shipping_method", o->method, "country", o->addr->country);
    if (data && o->card_fp && o->card_fp[0])
        json_object_set_new(data, "card_fingerprint", json_string(o->card_fp));
    struct outbox_row ev;
    int rc =
        data ? outbox_row_make(&ev, o->shard, "order-events", "order", o->id, "order.placed", data)
             : ERR_NOMEM;
    json_decref(data);
    if (rc >= 0) {
        st[ns++] = (struct db_stmt){.sql = OUTBOX_INSERT, .n = OUTBOX_NARGS, .args = ev.args};
        rc = db_query_many_shared(db, st, ns);
        outbox_row_free(&ev);
    }
    json_decref(items);
    free(addr);
    return rc < 0 ? rc : 0;
}

int order__store_transition(struct db_conn *c, int64_t id, const char *to, const char *const *from,
                            const char *reason, bool retryable, bool compensate, int64_t at)
{
    return order__store_transition_known(c, id, to, from, reason, retryable, compensate, at, NULL);
}

/* The event's user, total and (paid, cancelled) lines: from k, else read back. */
static json_t *transition_data(struct db_conn *c, int64_t id, const char *to, int64_t at,
                               const struct order_known *k, int *rc_out)
{
    char oid[21], uid[21], ts[32];
    bool lines = !strcmp(to, "paid") || !strcmp(to, "cancelled");
    json_t *data = NULL;
    if (k) {
        data = json_pack("{s:s,s:s,s:s,s:o,s:s}", "order_id", id_format(id, oid), "user_id",
                         id_format(k->user_id, uid), "status", to, "total",
                         money(k->total, k->currency), "at", time_format(at, ts));
        if (data && lines) {
            json_t *items = json_array();
            for (int i = 0; i < k->n; i++) {
                char pid[21];
                json_array_append_new(items,
                                      json_pack("{s:s,s:I,s:I}", "product_id",
                                                id_format(k->items[i].product_id, pid), "quantity",
                                                (json_int_t)k->items[i].quantity, "unit_price",
                                                (json_int_t)k->items[i].unit_price));
            }
            json_object_set_new(data, "items", items);
        }
        *rc_out = data ? 0 : ERR_NOMEM;
        return data;
    }
    /* The event carries the order's new state; read back what the row now says (and the
     * lines), in one round trip. */
    struct db_rows *r = NULL, *ir = NULL;
    struct db_val q[] = {DB_INT(id)};
    struct db_stmt st[] = {
        {.sql = "SELECT user_id, currency, total FROM orders WHERE id = $1",
         .n = 1,
         .args = q,
         .out = &r},
        {.sql = "SELECT product_id, quantity, unit_price FROM order_items WHERE order_id = $1 "
                "ORDER BY line",
         .n = 1,
         .args = q,
         .out = &ir},
    };
    int rc = db_query_many(c, st, lines ? 2 : 1, false);
    if (rc >= 0 && db_rows_count(r) != 1)
        rc = ERR_NOTFOUND;
    if (rc >= 0)
        data = json_pack("{s:s,s:s,s:s,s:o,s:s}", "order_id", id_format(id, oid), "user_id",
                         db_get(r, 0, 0), "status", to, "total",
                         money(db_get_i64(r, 0, 2), db_get(r, 0, 1)), "at", time_format(at, ts));
    if (data && lines) {
        /* Paid and cancelled carry the lines: analytics and recommendations count them. */
        json_t *items = json_array();
        for (int i = 0; i < db_rows_count(ir); i++)
            json_array_append_new(items, json_pack("{s:s,s:I,s:I}", "product_id", db_get(ir, i, 0),
                                                   "quantity", (json_int_t)db_get_i64(ir, i, 1),
                                                   "unit_price", (json_int_t)db_get_i64(ir, i, 2)));
        json_object_set_new(data, "items", items);
    }
    db_rows_free(r);
    db_rows_free(ir);
    *rc_out = rc < 0 ? rc : data ? 0 : ERR_NOMEM;
    return data;
}

int order__store_transition_known(struct db_conn *c, int64_t id, const char *to,
                                  const char *const *from, const char *reason, bool retryable,
                                  bool compensate, int64_t at, const struct order_known *k)
{
    char sql[512];
    int n = snprintf(sql, sizeof sql,
                     "UPDATE orders SET status = $1, updated_at = $2, " PAYMENT_STATUS_OF_MOVE ", "
                     "failure_reason = COALESCE($3, failure_reason), retryable = $4, "
                     "compensated = CASE WHEN $5 = 1 THEN 0 ELSE compensated END "
                     "WHERE id = $6 AND status IN (");
    struct db_val a[16] = {
        DB_TEXT(to),       DB_INT(now_ms()),   reason ? DB_TEXT(reason) : DB_NULLV,
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
    rc = db_query(
        c, "INSERT INTO order_history (id, order_id, status, at, note) VALUES ($1, $2, $3, $4, $5)",
        5, h, NULL);
    if (rc < 0)
        return rc;
    json_t *data = transition_data(c, id, to, at, k, &rc);
    if (!data)
        return rc;
    if (reason)
        json_object_set_new(data, "reason", json_string(reason));
    char type[32];
    snprintf(type, sizeof type, "order.%s", to);
    rc = outbox_add(c, id_shard(id), "order-events", "order", id, type, data);
    json_decref(data);
    return rc < 0 ? rc : 1;
}

#define ITEMS_SELECT                                                                               \
    "SELECT product_id, name, quantity, unit_price FROM order_items WHERE order_id = $1 "          \
    "ORDER BY line"

static int view_fill(struct db_rows *o, struct db_rows *it, struct db_rows *h,
                     struct order_view *out);

int order__store_settle_one(struct db *db, int64_t id, const char *to, const char *from, int64_t at,
                            const struct order_known *k, const char *key, int64_t shipment_id,
                            struct order_view *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    int rc = 0;
    json_t *data = transition_data(NULL, id, to, at, k, &rc); /* from k: no read */
    if (!data)
        return rc;
    char type[32];
    snprintf(type, sizeof type, "order.%s", to);
    struct outbox_row ev;
    rc = outbox_row_make(&ev, id_shard(id), "order-events", "order", id, type, data);
    json_decref(data);
    if (rc < 0)
        return rc;
    struct db_val a[10 + OUTBOX_NARGS] = {
        DB_TEXT(to),        DB_INT(at),   DB_INT(id), DB_TEXT(from), DB_INT(id_new(id_shard(id))),
        DB_INT(k->user_id), DB_TEXT(key), DB_INT(0),  DB_INT(0)};
    for (int i = 0; i < OUTBOX_NARGS; i++)
        a[9 + i] = ev.args[i];
    a[9 + OUTBOX_NARGS] = DB_INT(shipment_id);
    /* The move (only from `from`; linking the shipment when there is one), its history row,
     * the outcome on the key and the event, each inserted or updated from the move's
     * RETURNING: all of them or none. With out, the order read back in the same pipeline. */
    struct db_rows *o = NULL, *it = NULL;
    struct db_val q[] = {DB_INT(id)};
    struct db_stmt st[] = {
        {.sql = "WITH m AS (UPDATE orders SET status = $1, updated_at = $2, retryable = "
                "$8, " PAYMENT_STATUS_OF_MOVE ", "
                "compensated = CASE WHEN $9 = 1 THEN 0 ELSE compensated END, "
                "shipment_id = CASE WHEN $17 > 0 THEN $17 ELSE shipment_id END "
                "WHERE id = $3 AND status = $4 RETURNING id), "
                "h AS (INSERT INTO order_history (id, order_id, status, at, note) "
                "SELECT $5, m.id, $1, $2, NULL FROM m), "
                "k AS (UPDATE idempotency_keys SET state = 'done', outcome_err = 0, "
                "outcome_code = NULL, outcome_product_id = NULL, updated_at = $2 "
                "WHERE user_id = $6 AND idem_key = $7 AND EXISTS (SELECT 1 FROM m)) "
                "INSERT INTO outbox (" OUTBOX_COLUMNS ") "
                "SELECT $10, $11, $12, $13, $14, $15, $16 FROM m",
         .n = 10 + OUTBOX_NARGS,
         .args = a},
        {.sql = ORDER_SELECT "WHERE id = $1", .n = 1, .args = q, .out = &o},
        {.sql = ITEMS_SELECT, .n = 1, .args = q, .out = &it},
    };
    rc = db_query_many_shared(db, st, out ? 3 : 1);
    outbox_row_free(&ev);
    if (rc >= 0 && out)
        rc = view_fill(o, it, NULL, out);
    db_rows_free(o);
    db_rows_free(it);
    if (rc < 0) {
        if (out)
            order_view_free(out);
        return rc;
    }
    return st[0].rc;
}

/* One row of ORDER_SELECT into a summary view. */
static void row_load(const struct db_rows *r, int i, struct order_view *v)
{
    memset(v, 0, sizeof *v);
    v->id = db_get_i64(r, i, 0);
    v->user_id = db_get_i64(r, i, 1);
    copy(v->status, sizeof v->status, db_get(r, i, 2));
    copy(v->currency, sizeof v->currency, db_get(r, i, 3));
    v->subtotal = db_get_i64(r, i, 4);
    v->shipping = db_get_i64(r, i, 5);
    v->total = db_get_i64(r, i, 6);
    copy(v->shipping_method, sizeof v->shipping_method, db_get(r, i, 7));
    address_load(db_get(r, i, 8), &v->addr);
    v->has_payment = !db_is_null(r, i, 9);
    copy(v->payment_brand, sizeof v->payment_brand, db_get(r, i, 9));
    copy(v->payment_last4, sizeof v->payment_last4, db_get(r, i, 10));
    v->has_failure = !db_is_null(r, i, 11);
    copy(v->failure_reason, sizeof v->failure_reason, db_get(r, i, 11));
    v->retryable = db_get_i64(r, i, 12) != 0;
    v->shipment.id = db_get_i64(r, i, 13);
    v->created_at = db_get_i64(r, i, 14);
    v->updated_at = db_get_i64(r, i, 15);
    /* Trusted only in the states that keep it: a process of the version before migration 4
     * (a rolling upgrade) moves orders without touching it. */
    static const char *const keeps[] = {"paid", "fulfilling", "shipped", "delivered"};
    for (size_t k = 0; k < sizeof keeps / sizeof keeps[0]; k++)
        if (!strcmp(v->status, keeps[k]))
            copy(v->payment_status, sizeof v->payment_status, db_get(r, i, 16));
}

/* The order's row (o), its lines (it) and its history (h, NULL: none) into out (allocating
 * its arrays). ERR_NOTFOUND when o has no row. */
static int view_fill(struct db_rows *o, struct db_rows *it, struct db_rows *h,
                     struct order_view *out)
{
    if (db_rows_count(o) == 0)
        return ERR_NOTFOUND;
    row_load(o, 0, out);
    int ni = db_rows_count(it), nh = h ? db_rows_count(h) : 0;
    out->items = calloc((size_t)ni + 1, sizeof *out->items);
    out->history = calloc((size_t)nh + 1, sizeof *out->history);
    if (!out->items || !out->history)
        return ERR_NOMEM;
    for (int i = 0; i < ni; i++) {
        out->items[i].product_id = db_get_i64(it, i, 0);
        copy(out->items[i].name, sizeof out->items[i].name, db_get(it, i, 1));
        out->items[i].quantity = (int)db_get_i64(it, i, 2);
        out->items[i].unit_price = db_get_i64(it, i, 3);
    }
    for (int i = 0; i < nh; i++) {
        copy(out->history[i].status, sizeof out->history[i].status, db_get(h, i, 0));
        out->history[i].at = db_get_i64(h, i, 1);
        copy(out->history[i].note, sizeof out->history[i].note, db_get(h, i, 2));
    }
    out->n_items = ni;
    out->n_history = nh;
    return 0;
}

int order__store_load(struct db_conn *c, int64_t id, bool history, struct order_view *out)
{
    struct db_rows *o = NULL, *it = NULL, *h = NULL;
    struct db_val a[] = {DB_INT(id)};
    memset(out, 0, sizeof *out);
    /* The order, its lines and its history in one round trip (db_query_many). */
    struct db_stmt st[] = {
        {.sql = ORDER_SELECT "WHERE id = $1", .n = 1, .args = a, .out = &o},
        {.sql = ITEMS_SELECT, .n = 1, .args = a, .out = &it},
        {.sql = "SELECT status, at, note FROM order_history WHERE order_id = $1 ORDER BY id",
         .n = 1,
         .args = a,
         .out = &h},
    };
    int rc = db_query_many(c, st, history ? 3 : 2, false);
    if (rc >= 0)
        rc = view_fill(o, it, h, out);
    db_rows_free(o);
    db_rows_free(it);
    db_rows_free(h);
    if (rc < 0)
        order_view_free(out);
    return rc < 0 ? rc : 0;
}

void order_view_free(struct order_view *v)
{
    if (!v)
        return;
    free(v->items);
    free(v->history);
    memset(v, 0, sizeof *v);
}

int order__store_status(struct db_conn *c, int64_t id, char status[16])
{
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(id)};
    int rc = db_query(c, "SELECT status FROM orders WHERE id = $1", 1, a, &r);
    status[0] = 0;
    if (rc >= 0 && db_rows_count(r))
        copy(status, 16, db_get(r, 0, 0));
    db_rows_free(r);
    return rc < 0 ? rc : 0;
}

int order__store_set_compensated(struct db_conn *c, int64_t id)
{
    struct db_val a[] = {DB_INT(id)};
    int rc = db_query(c, "UPDATE orders SET compensated = 1 WHERE id = $1", 1, a, NULL);
    return rc < 0 ? rc : 0;
}

int order__store_attach_shipment(struct db_conn *c, int64_t id, int64_t shipment_id)
{
    struct db_val a[] = {DB_INT(shipment_id), DB_INT(id)};
    return db_query(c,
                    "UPDATE orders SET shipment_id = $1 WHERE id = $2 AND status IN ('paid', "
                    "'fulfilling', 'on_hold')",
                    2, a, NULL);
}

int order__store_list(struct db_conn *c, int64_t user_id, const char *status, int64_t cursor,
                      int limit, struct order_view *out, int *n)
{
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(cursor), DB_INT(limit), status ? DB_TEXT(status) : DB_NULLV,
                         DB_INT(user_id)};
    int rc = user_id
                 ? db_query(c,
                            ORDER_SELECT "WHERE user_id = $4 AND id < $1 AND (CAST($3 AS TEXT) IS "
                                         "NULL OR status = $3) ORDER BY id DESC LIMIT $2",
                            4, a, &r)
                 : db_query(c,
                            ORDER_SELECT "WHERE id < $1 AND (CAST($3 AS TEXT) IS NULL OR status = "
                                         "$3) ORDER BY id DESC LIMIT $2",
                            3, a, &r);
    if (rc < 0)
        return rc;
    *n = db_rows_count(r);
    for (int i = 0; i < *n && i < limit; i++)
        row_load(r, i, &out[i]);
    db_rows_free(r);
    return 0;
}

int order__store_outbox(struct db_conn *c, int64_t id, struct order_outbox_event **out, int *n)
{
    char idb[21];
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_TEXT(id_format(id, idb))};
    int rc = db_query(c,
                      "SELECT id, event_type, payload, created_at, published_at FROM outbox WHERE "
                      "aggregate_type = 'order' AND aggregate_id = $1 ORDER BY id",
                      1, a, &r);
    if (rc < 0)
        return rc;
    *n = db_rows_count(r);
    *out = calloc((size_t)*n + 1, sizeof **out);
    for (int i = 0; *out && i < *n; i++) {
        struct order_outbox_event *e = &(*out)[i];
        e->id = db_get_i64(r, i, 0);
        copy(e->type, sizeof e->type, db_get(r, i, 1));
        e->payload = strdup(db_get(r, i, 2) ? db_get(r, i, 2) : "null");
        e->created_at = db_get_i64(r, i, 3);
        e->published = !db_is_null(r, i, 4);
        if (!e->payload)
            rc = ERR_NOMEM;
    }
    db_rows_free(r);
    if (!*out || rc < 0) {
        order_outbox_free(*out, *n);
        *out = NULL;
        *n = 0;
        return ERR_NOMEM;
    }
    return 0;
}

void order_outbox_free(struct order_outbox_event *ev, int n)
{
    for (int i = 0; ev && i < n; i++)
        free(ev[i].payload);
    free(ev);
}

/* --- the recovery sweep --- */

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

int order__store_abandoned(struct db_conn *c, int64_t created_before, int64_t *ids, int cap)
{
    struct db_val a[] = {DB_INT(created_before), DB_INT(cap)};
    return ids_where(c,
                     "SELECT id FROM orders WHERE status = 'pending' AND created_at < $1 "
                     "ORDER BY id LIMIT $2",
                     2, a, ids, cap);
}

int order__store_fail_abandoned(struct db_conn *c, int64_t id)
{
    static const char *const from[] = {"pending", NULL};
    int rc = db_begin(c);
    if (rc == 0)
        rc = order__store_transition(c, id, "failed", from, "abandoned", true, true, now_ms());
    struct db_val k[] = {DB_INT(id)};
    if (rc == 1)
        rc = db_query(c,
                      "DELETE FROM idempotency_keys WHERE order_id = $1 AND state = 'in_progress'",
                      1, k, NULL);
    if (rc >= 0)
        rc = db_commit(c);
    if (rc < 0)
        db_rollback(c);
    return rc;
}

int order__store_owing(struct db_conn *c, int64_t updated_before, int64_t *ids, int cap)
{
    struct db_val a[] = {DB_INT(updated_before), DB_INT(cap)};
    return ids_where(c,
                     "SELECT id FROM orders WHERE compensated = 0 AND updated_at < $1 "
                     "ORDER BY id LIMIT $2",
                     2, a, ids, cap);
}

int order__store_unshipped(struct db_conn *c, int64_t updated_before, struct order_unshipped *out,
                           int cap)
{
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(updated_before), DB_INT(cap)};
    int rc = db_query(c,
                      "SELECT id, shipping_method, shipping_address FROM orders WHERE "
                      "status = 'paid' AND shipment_id IS NULL AND updated_at < $1 "
                      "ORDER BY id LIMIT $2",
                      2, a, &r);
    if (rc < 0)
        return rc;
    int n = 0;
    for (int i = 0; i < db_rows_count(r) && n < cap; i++, n++) {
        out[n].id = db_get_i64(r, i, 0);
        copy(out[n].method, sizeof out[n].method, db_get(r, i, 1));
        address_load(db_get(r, i, 2), &out[n].addr);
    }
    db_rows_free(r);
    return n;
}

int order__store_drop_stale_claims(struct db_conn *c, int64_t created_before)
{
    struct db_val a[] = {DB_INT(created_before)};
    int rc =
        db_query(c,
                 "DELETE FROM idempotency_keys WHERE state = 'in_progress' AND created_at < $1 "
                 "AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = idempotency_keys.order_id)",
                 1, a, NULL);
    return rc < 0 ? rc : 0;
}

/* --- schema --- */

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
    /* The key records the outcome (return code, machine code, product id), not response
     * bytes: a replay renders the order as it is. response_* stay for older records. */
    {.sql = "ALTER TABLE idempotency_keys ADD COLUMN outcome_err INTEGER;"
            "ALTER TABLE idempotency_keys ADD COLUMN outcome_code TEXT;"
            "ALTER TABLE idempotency_keys ADD COLUMN outcome_product_id BIGINT;"},
    /* The payment's status as the order knows it (PAYMENT_STATUS_OF_MOVE); NULL: ask. */
    {.sql = "ALTER TABLE orders ADD COLUMN payment_status TEXT;"},
    /* The outbox is the order's event history (GET /admin/orders/{id}/events): rows stay. */
    {.sql = OUTBOX_HISTORY_MIGRATION},
    /* The sweeps' two indexes hold only what the sweeps look for: the orders owing
     * compensation and the keys still in progress. A paid order and a finished key are then
     * in neither, instead of moving within each at every step of every checkout. */
    {.sql = "DROP INDEX orders_owed;"
            "CREATE INDEX orders_owed ON orders (updated_at) WHERE compensated = 0;"
            "DROP INDEX idempotency_keys_state;"
            "CREATE INDEX idempotency_keys_state ON idempotency_keys (created_at) "
            "WHERE state = 'in_progress';"},
};

/* The shard map's database "order_map" (order_shards.c, order_reshard.c). */
static const struct db_migration map_migrations[] = {
    {.sql = "CREATE TABLE shard_map ("
            " lo INTEGER PRIMARY KEY,"
            " hi INTEGER NOT NULL,"
            " shard INTEGER NOT NULL);"
            "CREATE TABLE shard_map_version ("
            " one INTEGER PRIMARY KEY,"
            " version BIGINT NOT NULL);"
            "CREATE TABLE shard_moves ("
            " id BIGINT PRIMARY KEY,"
            " lo INTEGER NOT NULL,"
            " hi INTEGER NOT NULL,"
            " src INTEGER NOT NULL,"
            " dst INTEGER NOT NULL,"
            " step TEXT NOT NULL,"
            " since BIGINT NOT NULL DEFAULT 0,"
            " wait_version BIGINT NOT NULL DEFAULT 0,"
            " started_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL);"
            "CREATE TABLE shard_map_acks ("
            " process TEXT PRIMARY KEY,"
            " version BIGINT NOT NULL,"
            " seen_at BIGINT NOT NULL);"},
    /* Shards on other servers (orders_6 …): where each lives, a database URL like
     * EMPORIUM_DATABASE_URL (`emporium shards move --to URL`). */
    {.sql = "CREATE TABLE shard_servers ("
            " shard INTEGER PRIMARY KEY,"
            " url TEXT NOT NULL UNIQUE,"
            " added_at BIGINT NOT NULL);"},
};

int order__store_owner(struct db *db, int64_t id, int64_t *user_id)
{
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(id)};
    int rc = db_query_once(db, "SELECT user_id FROM orders WHERE id = $1", 1, a, &r);
    if (rc >= 0 && (rc = db_rows_count(r) > 0))
        *user_id = db_get_i64(r, 0, 0);
    db_rows_free(r);
    return rc;
}

const struct service_db order__dbs[] = {
    {"orders", ORDER_SHARDS, order_migrations,
     sizeof order_migrations / sizeof order_migrations[0]},
    {"order_map", 0, map_migrations, sizeof map_migrations / sizeof map_migrations[0]},
    {NULL, 0, NULL, 0},
};

/* --- fraud review --- */

int order__store_hold(struct db_conn *c, int64_t id, int score, const char *const *reasons,
                      int n_reasons, int64_t at)
{
    char note[64] = "fraud review";
    size_t len = strlen(note);
    json_t *rj = json_array();
    for (int i = 0; i < n_reasons; i++) {
        if (len < sizeof note)
            len +=
                (size_t)snprintf(note + len, sizeof note - len, "%s%s", i ? "," : ": ", reasons[i]);
        json_array_append_new(rj, json_string(reasons[i]));
    }
    struct db_val a[] = {DB_INT(now_ms()), DB_INT(id)};
    int rc =
        db_query(c,
                 "UPDATE orders SET status = 'on_hold', updated_at = $1, payment_status = NULL "
                 "WHERE id = $2 AND status = 'pending'",
                 2, a, NULL);
    if (rc <= 0) {
        json_decref(rj);
        return rc;
    }
    struct db_val h[] = {DB_INT(id_new(id_shard(id))), DB_INT(id), DB_INT(at), DB_TEXT(note)};
    rc = db_query(c,
                  "INSERT INTO order_history (id, order_id, status, at, note) "
                  "VALUES ($1, $2, 'on_hold', $3, $4)",
                  4, h, NULL);
    struct db_rows *r = NULL;
    struct db_val q[] = {DB_INT(id)};
    if (rc >= 0)
        rc = db_query(c, "SELECT user_id, currency, total FROM orders WHERE id = $1", 1, q, &r);
    if (rc < 0) {
        json_decref(rj);
        return rc;
    }
    char oid[21], ts[32];
    json_t *data = json_pack("{s:s,s:s,s:s,s:o,s:s,s:{s:i,s:o}}", "order_id", id_format(id, oid),
                             "user_id", db_get(r, 0, 0), "status", "on_hold", "total",
                             money(db_get_i64(r, 0, 2), db_get(r, 0, 1)), "at", time_format(at, ts),
                             "fraud", "score", score, "reasons", rj);
    db_rows_free(r);
    if (!data)
        return ERR_NOMEM;
    rc = outbox_add(c, id_shard(id), "order-events", "order", id, "order.on_hold", data);
    json_decref(data);
    return rc < 0 ? rc : 1;
}

int order__store_was_held(struct db_conn *c, int64_t id)
{
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(id)};
    int rc = db_query(c,
                      "SELECT 1 FROM order_history WHERE order_id = $1 AND status = 'on_hold' "
                      "LIMIT 1",
                      1, a, &r);
    if (rc < 0)
        return rc;
    rc = db_rows_count(r) > 0;
    db_rows_free(r);
    return rc;
}
