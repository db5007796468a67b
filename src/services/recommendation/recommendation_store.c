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

/* PostgreSQL: apply_tx's steps for the paid orders of a consumer batch as one statement.
 * The batch's paid events (up to a cancellation, which runs what is kept first) gather in
 * one accumulator, kept in `later` as one function: sales and pairs are summed over the
 * batch before they are written, so a product or a pair that many of the batch's orders
 * share is updated once, not once an order (the bench's orders all buy from the same 100
 * products: one row version per order and pair was most of this database's time).
 *
 * Each data-modifying CTE acts on what the one before it inserted: the events that are new
 * (e), of each order the first of them (first), the orders not counted or cancelled yet (o),
 * then the lines of those events. Sales and pairs are grouped as count_order() counts them:
 * a product twice in an order adds up, and pairs pair lines of one event. */
#define PAID_SQL                                                                                   \
    "WITH ev AS (SELECT * FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY "                  \
    "AS t(event_id, order_id, k)), "                                                               \
    "e AS (INSERT INTO applied_events (event_id, applied_at) SELECT event_id, $3 FROM ev "         \
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id), "                                      \
    "first AS (SELECT DISTINCT ON (ev.order_id) ev.order_id, ev.k FROM ev JOIN e "                 \
    "ON e.event_id = ev.event_id ORDER BY ev.order_id, ev.k), "                                    \
    "o AS (INSERT INTO order_states (order_id, status, updated_at) "                               \
    "SELECT order_id, 'paid', $3 FROM first ORDER BY order_id "                                    \
    "ON CONFLICT (order_id) DO NOTHING RETURNING order_id), "                                      \
    "it AS (SELECT l.* FROM unnest($4::bigint[], $5::bigint[], $6::text[], $7::bigint[]) "         \
    "WITH ORDINALITY AS l(k, pid, cat, units, ord) JOIN first f ON f.k = l.k "                     \
    "JOIN o ON o.order_id = f.order_id), "                                                         \
    "s AS (INSERT INTO sales (product_id, category, units) "                                       \
    "SELECT pid, (array_agg(cat ORDER BY ord DESC))[1], SUM(units) FROM it "                       \
    "GROUP BY pid ORDER BY pid "                                                                   \
    "ON CONFLICT (product_id) DO UPDATE SET units = sales.units + excluded.units, "                \
    "category = excluded.category), "                                                              \
    "p AS (INSERT INTO pairs (product_id, other_id, orders) "                                      \
    "SELECT x.pid, y.pid, COUNT(*) FROM it x JOIN it y ON x.k = y.k AND x.pid <> y.pid "           \
    "GROUP BY x.pid, y.pid ORDER BY x.pid, y.pid "                                                 \
    "ON CONFLICT (product_id, other_id) DO UPDATE SET orders = pairs.orders + "                    \
    "excluded.orders) "                                                                            \
    "SELECT COUNT(*) FROM o"

#define PAID_ACC_MAX 256 /* events of one accumulator (a consumer batch holds at most 256) */

struct paid_acc {
    int events;
    struct buf ev_id, ev_order;                   /* one element an event */
    struct buf line_k, line_pid, line_cat, units; /* one element a line */
};

static void acc_free(void *vacc)
{
    struct paid_acc *acc = vacc;
    struct buf *bufs[] = {&acc->ev_id,    &acc->ev_order, &acc->line_k,
                          &acc->line_pid, &acc->line_cat, &acc->units};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        buf_free(bufs[i]);
    free(acc);
}

/* An array's closed text, from an accumulated one (which stays open for more). */
static const char *closed(const struct buf *open, struct buf *out)
{
    *out = BUF_INIT(0);
    if (open->len)
        buf_append(out, open->p, open->len);
    return open->err ? NULL : db_array_end(out);
}

static int acc_tx(struct db_conn *c, void *vacc)
{
    struct paid_acc *acc = vacc;
    struct buf t[6];
    const char *v[6] = {closed(&acc->ev_id, &t[0]),    closed(&acc->ev_order, &t[1]),
                        closed(&acc->line_k, &t[2]),   closed(&acc->line_pid, &t[3]),
                        closed(&acc->line_cat, &t[4]), closed(&acc->units, &t[5])};
    int rc = ERR_NOMEM;
    if (v[0] && v[1] && v[2] && v[3] && v[4] && v[5]) {
        struct db_val a[] = {DB_TEXT(v[0]), DB_TEXT(v[1]), DB_INT(now_ms()), DB_TEXT(v[2]),
                             DB_TEXT(v[3]), DB_TEXT(v[4]), DB_TEXT(v[5])};
        rc = db_query(c, PAID_SQL, 7, a, NULL);
    }
    for (int i = 0; i < 6; i++)
        buf_free(&t[i]);
    return rc < 0 ? rc : 0;
}

static int paid_pg(struct db_batch *later, const struct order_event *ev,
                   const char *const *categories)
{
    int n = ev->n < REC_MAX_ITEMS ? ev->n : REC_MAX_ITEMS;
    /* The batch's last entry while it is this accumulator (the consumer's thread alone adds
     * to `later`); a cancellation ran it, so the next paid event starts another. */
    struct paid_acc *acc = db_batch_last(later, acc_tx);
    if (!acc || acc->events >= PAID_ACC_MAX) {
        if (!(acc = calloc(1, sizeof *acc)))
            return ERR_NOMEM;
        int rc = db_batch_add_fn(later, acc_tx, acc, acc_free); /* frees acc on failure */
        if (rc < 0)
            return rc;
    }
    acc->events++;
    db_array_text(&acc->ev_id, ev->event_id);
    db_array_int(&acc->ev_order, ev->order_id);
    for (int i = 0; i < n; i++) {
        db_array_int(&acc->line_k, acc->events);
        db_array_int(&acc->line_pid, ev->items[i].product_id);
        db_array_text(&acc->line_cat, categories[i]);
        db_array_int(&acc->units, ev->items[i].quantity);
    }
    return 0;
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
