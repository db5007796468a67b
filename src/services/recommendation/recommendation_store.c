/* SPDX-License-Identifier: MIT */
/* recommendation_store.c — the `recommendations` database: its schema and every statement
 * on it.
 *
 * pairs(product_id, other_id, orders): both directions of every unordered pair of an
 * order's lines; sales(product_id, category, units); order_states(order_id, status): each
 * order counted ('paid') or cancelled; applied_events: the event ids applied. An event is
 * applied in the same transaction as its id (a paid order's in the one of its consumer
 * batch). Per order the state only moves paid → cancelled
 * (a conditional UPDATE), so a cancellation takes the counts back once; one that arrives for
 * an order never counted leaves a 'cancelled' row, and a late order.paid is then ignored.
 * Counts that reach zero are deleted, so reads never see them. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/buf.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "recommendation_internal.h"

static const struct db_migration rec_migrations[] = {
    {.sql = "CREATE TABLE pairs ("
            " product_id BIGINT NOT NULL,"
            " other_id BIGINT NOT NULL,"
            " orders BIGINT NOT NULL,"
            " PRIMARY KEY (product_id, other_id));"
            "CREATE INDEX pairs_rank ON pairs (product_id, orders);"
            "CREATE TABLE sales ("
            " product_id BIGINT PRIMARY KEY,"
            " category TEXT NOT NULL,"
            " units BIGINT NOT NULL);"
            "CREATE INDEX sales_rank ON sales (category, units);"
            "CREATE TABLE applied_events ("
            " event_id TEXT PRIMARY KEY,"
            " applied_at BIGINT NOT NULL);"},
    /* 2: cancellations. Orders counted before (event ids "order-paid-<order id>") are paid. */
    {.sql = "CREATE TABLE order_states ("
            " order_id BIGINT PRIMARY KEY,"
            " status TEXT NOT NULL CHECK (status IN ('paid', 'cancelled')),"
            " updated_at BIGINT NOT NULL);"
            "INSERT INTO order_states (order_id, status, updated_at)"
            " SELECT CAST(substr(event_id, 12) AS BIGINT), 'paid', applied_at"
            " FROM applied_events WHERE event_id LIKE 'order-paid-%'"
            " ON CONFLICT (order_id) DO NOTHING;"},
};

const struct service_db recommendation__dbs[] = {
    {"recommendations", 0, rec_migrations, sizeof rec_migrations / sizeof rec_migrations[0]},
    {NULL, 0, NULL, 0},
};

static int event_new(struct db_conn *c, const char *event_id)
{
    struct db_val ev[] = {DB_TEXT(event_id), DB_INT(now_ms())};
    return db_query(c,
                    "INSERT INTO applied_events (event_id, applied_at) VALUES ($1, $2) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    2, ev, NULL);
}

/* Adds (sign 1) or takes back (sign -1) an order's counts. */
static int count_order(struct db_conn *c, const struct order_event *ev,
                       const char *const *categories, int sign)
{
    static const char *const add_sale =
        "INSERT INTO sales (product_id, category, units) VALUES ($1, $2, $3) "
        "ON CONFLICT (product_id) DO UPDATE SET units = sales.units + excluded.units, "
        "category = excluded.category";
    static const char *const add_pair =
        "INSERT INTO pairs (product_id, other_id, orders) VALUES ($1, $2, 1) "
        "ON CONFLICT (product_id, other_id) DO UPDATE SET orders = pairs.orders + 1";
    static const char *const sub_sale = "UPDATE sales SET units = units - $2 WHERE product_id = $1";
    static const char *const sub_pair =
        "UPDATE pairs SET orders = orders - 1 WHERE product_id = $1 AND other_id = $2";
    int n = ev->n < REC_MAX_ITEMS ? ev->n : REC_MAX_ITEMS, rc = 0;
    for (int i = 0; rc >= 0 && i < n; i++) {
        const struct order_event_item *it = &ev->items[i];
        if (sign > 0) {
            struct db_val a[] = {DB_INT(it->product_id), DB_TEXT(categories[i]),
                                 DB_INT(it->quantity)};
            rc = db_query(c, add_sale, 3, a, NULL);
        } else {
            struct db_val a[] = {DB_INT(it->product_id), DB_INT(it->quantity)};
            rc = db_query(c, sub_sale, 2, a, NULL);
        }
        for (int j = 0; rc >= 0 && j < n; j++) {
            if (j == i || ev->items[j].product_id == it->product_id)
                continue;
            struct db_val p[] = {DB_INT(it->product_id), DB_INT(ev->items[j].product_id)};
            rc = db_query(c, sign > 0 ? add_pair : sub_pair, 2, p, NULL);
        }
    }
    if (rc >= 0 && sign < 0)
        rc = db_query(c, "DELETE FROM sales WHERE units <= 0", 0, NULL, NULL);
    if (rc >= 0 && sign < 0)
        rc = db_query(c, "DELETE FROM pairs WHERE orders <= 0", 0, NULL, NULL);
    return rc < 0 ? rc : 0;
}

struct apply_tx {
    const struct order_event *ev;
    const char *const *categories; /* order.paid */
    int done;
};

/* Moves the order's state: 1 when this event changes the counts, 0 when it does not (the
 * order was counted or cancelled already; a cancellation of an order never counted is
 * remembered, so its late order.paid is not counted either). */
static int move_order(struct db_conn *c, const struct order_event *ev)
{
    bool paid = ev->type == ORDER_EVENT_PAID;
    struct db_val o[] = {DB_INT(ev->order_id), DB_INT(now_ms())};
    int rc = 0;
    if (!paid)
        rc = db_query(c,
                      "UPDATE order_states SET status = 'cancelled', updated_at = $2 "
                      "WHERE order_id = $1 AND status = 'paid'",
                      2, o, NULL);
    if (rc != 0)
        return rc;
    rc = db_query(c,
                  paid ? "INSERT INTO order_states (order_id, status, updated_at) "
                         "VALUES ($1, 'paid', $2) ON CONFLICT (order_id) DO NOTHING"
                       : "INSERT INTO order_states (order_id, status, updated_at) "
                         "VALUES ($1, 'cancelled', $2) ON CONFLICT (order_id) DO NOTHING",
                  2, o, NULL);
    return rc < 0 ? rc : paid ? rc : 0;
}

static int apply_tx(struct db_conn *c, void *vctx)
{
    struct apply_tx *x = vctx;
    x->done = 0;
    int rc = event_new(c, x->ev->event_id);
    if (rc > 0)
        rc = move_order(c, x->ev);
    if (rc <= 0) /* commits the event id, changes no count */
        return rc;
    rc = count_order(c, x->ev, x->categories, x->ev->type == ORDER_EVENT_PAID ? 1 : -1);
    if (rc < 0)
        return rc;
    x->done = 1;
    return 0;
}

/* PostgreSQL: apply_tx's steps for a paid order as one statement, added to `later` (the
 * consumer's batch commits them together). Each data-modifying CTE runs only when the one
 * before it inserted (the event is new, then the order was not counted or cancelled yet);
 * sales and pairs are grouped first, so a product twice in the order adds up as
 * count_order() does. */
static int paid_pg(struct db_batch *later, const struct order_event *ev,
                   const char *const *categories)
{
    int n = ev->n < REC_MAX_ITEMS ? ev->n : REC_MAX_ITEMS;
    struct buf pid = BUF_INIT(0), cat = BUF_INIT(0), units = BUF_INIT(0);
    for (int i = 0; i < n; i++) {
        db_array_int(&pid, ev->items[i].product_id);
        db_array_text(&cat, categories[i]);
        db_array_int(&units, ev->items[i].quantity);
    }
    const char *lp = db_array_end(&pid), *lc = db_array_end(&cat), *lu = db_array_end(&units);
    int rc = ERR_NOMEM;
    if (lp && lc && lu) {
        struct db_val a[] = {DB_TEXT(ev->event_id), DB_INT(now_ms()), DB_INT(ev->order_id),
                             DB_TEXT(lp),           DB_TEXT(lc),      DB_TEXT(lu)};
        rc = db_batch_add(
            later,
            "WITH it AS (SELECT * FROM unnest($4::bigint[], $5::text[], $6::bigint[]) "
            "WITH ORDINALITY AS t(pid, cat, units, ord)), "
            "e AS (INSERT INTO applied_events (event_id, applied_at) VALUES ($1, $2) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING 1), "
            "o AS (INSERT INTO order_states (order_id, status, updated_at) "
            "SELECT $3, 'paid', $2 WHERE EXISTS (SELECT 1 FROM e) "
            "ON CONFLICT (order_id) DO NOTHING RETURNING 1), "
            "s AS (INSERT INTO sales (product_id, category, units) "
            "SELECT pid, (array_agg(cat ORDER BY ord DESC))[1], SUM(units) FROM it "
            "WHERE EXISTS (SELECT 1 FROM o) GROUP BY pid ORDER BY pid "
            "ON CONFLICT (product_id) DO UPDATE SET units = sales.units + excluded.units, "
            "category = excluded.category), "
            "p AS (INSERT INTO pairs (product_id, other_id, orders) "
            "SELECT x.pid, y.pid, COUNT(*) FROM it x JOIN it y ON x.pid <> y.pid "
            "WHERE EXISTS (SELECT 1 FROM o) GROUP BY x.pid, y.pid ORDER BY x.pid, y.pid "
            "ON CONFLICT (product_id, other_id) DO UPDATE SET orders = pairs.orders + "
            "excluded.orders) "
            "SELECT COUNT(*) FROM o",
            6, a);
    }
    buf_free(&pid);
    buf_free(&cat);
    buf_free(&units);
    return rc;
}

/* SQLite: apply_tx's inputs, copied, for `later` (the consumer's batch end runs every kept
 * event's apply_tx in one transaction). The categories' text follows the pointers. */
struct kept_paid {
    struct order_event ev;
    const char *cat[REC_MAX_ITEMS];
    char text[];
};

static int kept_paid_tx(struct db_conn *c, void *ctx)
{
    struct kept_paid *k = ctx;
    struct apply_tx x = {&k->ev, k->cat, 0};
    return apply_tx(c, &x);
}

static int paid_later(struct db_batch *later, const struct order_event *ev,
                      const char *const *categories)
{
    int n = ev->n < REC_MAX_ITEMS ? ev->n : REC_MAX_ITEMS;
    size_t size = sizeof(struct kept_paid);
    for (int i = 0; i < n; i++)
        size += strlen(categories[i]) + 1;
    struct kept_paid *k = malloc(size);
    if (!k)
        return ERR_NOMEM;
    k->ev = *ev;
    char *text = k->text;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(categories[i]) + 1;
        k->cat[i] = memcpy(text, categories[i], l);
        text += l;
    }
    return db_batch_add_fn(later, kept_paid_tx, k, free);
}

int recommendation__store_paid(struct db *db, struct db_batch *later, const struct order_event *ev,
                               const char *const *categories)
{
    if (db_dialect(db) == DB_POSTGRES)
        return paid_pg(later, ev, categories);
    return paid_later(later, ev, categories);
}

int recommendation__store_cancelled(struct db *db, const struct order_event *ev)
{
    struct apply_tx x = {ev, NULL, 0};
    int rc = db_transact(db, apply_tx, NULL, &x);
    return rc < 0 ? rc : x.done;
}

static int read_ids(struct db_conn *c, const char *sql, struct db_val *a, int64_t *ids, int *n)
{
    struct db_rows *rows = NULL;
    int rc = db_query(c, sql, 2, a, &rows);
    if (rc < 0)
        return rc;
    *n = db_rows_count(rows);
    for (int r = 0; r < *n; r++)
        ids[r] = db_get_i64(rows, r, 0);
    db_rows_free(rows);
    return 0;
}

int recommendation__store_candidates(struct db *db, int64_t id, const char *category, int cap,
                                     int64_t *ids, int *n_pairs, int *n_top)
{
    *n_pairs = *n_top = 0;
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    struct db_val a[] = {DB_INT(id), DB_INT(cap)};
    rc = read_ids(c,
                  "SELECT other_id FROM pairs WHERE product_id = $1 AND orders > 0 "
                  "ORDER BY orders DESC, other_id LIMIT $2",
                  a, ids, n_pairs);
    struct db_val b[] = {DB_TEXT(category), DB_INT(cap)};
    if (rc >= 0)
        rc = read_ids(c,
                      "SELECT product_id FROM sales WHERE category = $1 AND units > 0 "
                      "ORDER BY units DESC, product_id LIMIT $2",
                      b, ids + *n_pairs, n_top);
    db_conn_give(c);
    return rc;
}
