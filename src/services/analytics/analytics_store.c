/* SPDX-License-Identifier: MIT */
/* analytics_store.c — the `analytics` database: its schema and every statement on it.
 *
 * sales_facts holds one row per paid order line (order, UTC day, category, product, units,
 * revenue in minor units, currency, cancelled 0/1); order_states one row per order the
 * service heard of ('paid' or 'cancelled'); applied_events the ids of the events applied.
 * Each event is applied in the same transaction as its id (a paid order's in the one of
 * its consumer batch), so a redelivery is a no-op. Per order the state only moves paid →
 * cancelled, by a conditional UPDATE, so a cancellation is subtracted once however often it
 * arrives; a cancellation of an order never counted leaves a 'cancelled' row behind, so a
 * late order.paid is not counted either. The report sums the facts whose order is not
 * cancelled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/buf.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "analytics_internal.h"

static const struct db_migration analytics_migrations[] = {
    {.sql = "CREATE TABLE sales_facts ("
            " order_id BIGINT NOT NULL,"
            " line INTEGER NOT NULL,"
            " day TEXT NOT NULL,"
            " category TEXT NOT NULL,"
            " product_id BIGINT NOT NULL,"
            " units BIGINT NOT NULL,"
            " revenue BIGINT NOT NULL,"
            " currency TEXT NOT NULL,"
            " PRIMARY KEY (order_id, line));"
            "CREATE INDEX sales_facts_day ON sales_facts (day);"
            "CREATE TABLE applied_events ("
            " event_id TEXT PRIMARY KEY,"
            " applied_at BIGINT NOT NULL);"},
    /* 2: cancellations. Orders counted before this migration are 'paid'. */
    {.sql = "ALTER TABLE sales_facts ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;"
            "CREATE TABLE order_states ("
            " order_id BIGINT PRIMARY KEY,"
            " status TEXT NOT NULL CHECK (status IN ('paid', 'cancelled')),"
            " refunded INTEGER NOT NULL DEFAULT 0,"
            " updated_at BIGINT NOT NULL);"
            "INSERT INTO order_states (order_id, status, refunded, updated_at)"
            " SELECT DISTINCT order_id, 'paid', 0, 0 FROM sales_facts;"},
};

const struct service_db analytics__dbs[] = {
    {"analytics", 0, analytics_migrations,
     sizeof analytics_migrations / sizeof analytics_migrations[0]},
    {NULL, 0, NULL, 0},
};

/* Records the event id; 1 when it is new, 0 when it was applied before. */
static int event_new(struct db_conn *c, const char *event_id)
{
    struct db_val e[] = {DB_TEXT(event_id), DB_INT(now_ms())};
    return db_query(c,
                    "INSERT INTO applied_events (event_id, applied_at) VALUES ($1, $2) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    2, e, NULL);
}

struct apply_tx {
    const struct order_event *ev;
    const char *day;                     /* order.paid */
    const struct analytics__line *lines; /* order.paid */
    int n;
    int done;
};

/* Moves the order's state: 1 when this event changes the figures, 0 when it does not (the
 * order was counted or cancelled already; a cancellation of an order never counted is
 * remembered, so its late order.paid is not counted either). */
static int move_order(struct db_conn *c, const struct order_event *ev)
{
    bool paid = ev->type == ORDER_EVENT_PAID;
    struct db_val o[] = {DB_INT(ev->order_id), DB_INT(ev->refunded ? 1 : 0), DB_INT(now_ms())};
    int rc = 0;
    if (!paid)
        rc = db_query(c,
                      "UPDATE order_states SET status = 'cancelled', refunded = $2, "
                      "updated_at = $3 WHERE order_id = $1 AND status = 'paid'",
                      3, o, NULL);
    if (rc != 0)
        return rc;
    rc = db_query(c,
                  paid ? "INSERT INTO order_states (order_id, status, refunded, updated_at) "
                         "VALUES ($1, 'paid', $2, $3) ON CONFLICT (order_id) DO NOTHING"
                       : "INSERT INTO order_states (order_id, status, refunded, updated_at) "
                         "VALUES ($1, 'cancelled', $2, $3) ON CONFLICT (order_id) DO NOTHING",
                  3, o, NULL);
    return rc < 0 ? rc : paid ? rc : 0;
}

static int apply_tx(struct db_conn *c, void *vctx)
{
    struct apply_tx *x = vctx;
    const struct order_event *ev = x->ev;
    x->done = 0;
    int rc = event_new(c, ev->event_id);
    if (rc > 0)
        rc = move_order(c, ev);
    if (rc <= 0) /* commits the event id, changes no figure */
        return rc;
    if (ev->type == ORDER_EVENT_CANCELLED) {
        struct db_val f[] = {DB_INT(ev->order_id)};
        rc = db_query(c, "UPDATE sales_facts SET cancelled = 1 WHERE order_id = $1", 1, f, NULL);
    }
    for (int i = 0; rc >= 0 && ev->type == ORDER_EVENT_PAID && i < x->n; i++) {
        const struct analytics__line *l = &x->lines[i];
        struct db_val f[] = {
            DB_INT(ev->order_id),  DB_INT(i),        DB_TEXT(x->day),    DB_TEXT(l->category),
            DB_INT(l->product_id), DB_INT(l->units), DB_INT(l->revenue), DB_TEXT(ev->currency)};
        rc = db_query(c,
                      "INSERT INTO sales_facts (order_id, line, day, category, product_id, "
                      "units, revenue, currency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                      8, f, NULL);
    }
    if (rc < 0)
        return rc;
    x->done = 1;
    return 0;
}

/* PostgreSQL: apply_tx's steps for a paid order as one statement, added to `later` (the
 * consumer's batch commits them together): each data-modifying CTE runs only when the one
 * before it inserted (the event is new, then the order was not counted or cancelled yet). */
static int paid_pg(struct db_batch *later, const struct order_event *ev, const char *day,
                   const struct analytics__line *lines, int n)
{
    struct buf cat = BUF_INIT(0), pid = BUF_INIT(0), units = BUF_INIT(0), rev = BUF_INIT(0);
    for (int i = 0; i < n; i++) {
        db_array_text(&cat, lines[i].category);
        db_array_int(&pid, lines[i].product_id);
        db_array_int(&units, lines[i].units);
        db_array_int(&rev, lines[i].revenue);
    }
    const char *lc = db_array_end(&cat), *lp = db_array_end(&pid), *lu = db_array_end(&units),
               *lr = db_array_end(&rev);
    int rc = ERR_NOMEM;
    if (lc && lp && lu && lr) {
        struct db_val a[] = {DB_TEXT(ev->event_id), DB_INT(now_ms()),
                             DB_INT(ev->order_id),  DB_INT(ev->refunded ? 1 : 0),
                             DB_TEXT(day),          DB_TEXT(ev->currency),
                             DB_TEXT(lc),           DB_TEXT(lp),
                             DB_TEXT(lu),           DB_TEXT(lr)};
        rc = db_batch_add(
            later,
            "WITH e AS (INSERT INTO applied_events (event_id, applied_at) VALUES ($1, $2) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING 1), "
            "o AS (INSERT INTO order_states (order_id, status, refunded, updated_at) "
            "SELECT $3, 'paid', $4, $2 WHERE EXISTS (SELECT 1 FROM e) "
            "ON CONFLICT (order_id) DO NOTHING RETURNING 1), "
            "f AS (INSERT INTO sales_facts (order_id, line, day, category, product_id, units, "
            "revenue, currency) SELECT $3, t.line - 1, $5, t.cat, t.pid, t.units, t.rev, $6 "
            "FROM unnest($7::text[], $8::bigint[], $9::bigint[], $10::bigint[]) "
            "WITH ORDINALITY AS t(cat, pid, units, rev, line) WHERE EXISTS (SELECT 1 FROM o)) "
            "SELECT COUNT(*) FROM o",
            10, a);
    }
    buf_free(&cat);
    buf_free(&pid);
    buf_free(&units);
    buf_free(&rev);
    return rc;
}

/* SQLite: apply_tx's inputs, copied, for `later` (the consumer's batch end runs every kept
 * event's apply_tx in one transaction). The lines' categories follow the lines. */
struct kept_paid {
    struct order_event ev;
    char day[11];
    int n;
    struct analytics__line lines[];
};

static int kept_paid_tx(struct db_conn *c, void *ctx)
{
    struct kept_paid *k = ctx;
    struct apply_tx x = {&k->ev, k->day, k->lines, k->n, 0};
    return apply_tx(c, &x);
}

static int paid_later(struct db_batch *later, const struct order_event *ev, const char *day,
                      const struct analytics__line *lines, int n)
{
    size_t size = sizeof(struct kept_paid) + (size_t)n * sizeof lines[0];
    for (int i = 0; i < n; i++)
        size += strlen(lines[i].category) + 1;
    struct kept_paid *k = malloc(size);
    if (!k)
        return ERR_NOMEM;
    k->ev = *ev;
    snprintf(k->day, sizeof k->day, "%s", day);
    k->n = n;
    char *text = (char *)&k->lines[n];
    for (int i = 0; i < n; i++) {
        size_t l = strlen(lines[i].category) + 1;
        k->lines[i] = lines[i];
        k->lines[i].category = memcpy(text, lines[i].category, l);
        text += l;
    }
    return db_batch_add_fn(later, kept_paid_tx, k, free);
}

int analytics__store_paid(struct db *db, struct db_batch *later, const struct order_event *ev,
                          const char *day, const struct analytics__line *lines, int n)
{
    if (db_dialect(db) == DB_POSTGRES)
        return paid_pg(later, ev, day, lines, n);
    return paid_later(later, ev, day, lines, n);
}

int analytics__store_cancelled(struct db *db, const struct order_event *ev)
{
    struct apply_tx x = {ev, NULL, NULL, 0, 0};
    int rc = db_transact(db, apply_tx, NULL, &x);
    return rc < 0 ? rc : x.done;
}

int analytics__store_sales(struct db *db, const char *from, const char *to, enum analytics_group g,
                           struct analytics_report *out)
{
    /* two fixed statements: the group column is never client text */
    static const char *const sql[] = {
        [ANALYTICS_BY_DAY] =
            "SELECT day, currency, SUM(revenue), COUNT(DISTINCT order_id), SUM(units) "
            "FROM sales_facts WHERE day >= $1 AND day <= $2 AND cancelled = 0 "
            "GROUP BY day, currency ORDER BY day, currency",
        [ANALYTICS_BY_CATEGORY] =
            "SELECT category, currency, SUM(revenue), COUNT(DISTINCT order_id), SUM(units) "
            "FROM sales_facts WHERE day >= $1 AND day <= $2 AND cancelled = 0 "
            "GROUP BY category, currency ORDER BY category, currency",
    };
    struct db_rows *rows = NULL;
    struct db_val a[] = {DB_TEXT(from), DB_TEXT(to)};
    /* A report is a read-only scan: a replica's when one is usable (db_conn_take_read: up,
     * within EMPORIUM_REPLICA_MAX_LAG_MS, and past this process's last write), else the
     * primary's. */
    struct db_conn *c;
    int rc = db_conn_take_read(db, &c);
    if (rc < 0)
        return rc;
    rc = db_query(c, sql[g], 2, a, &rows);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    int n = db_rows_count(rows);
    out->n = 0;
    out->rows = calloc((size_t)(n ? n : 1), sizeof *out->rows);
    if (!out->rows) {
        db_rows_free(rows);
        return ERR_NOMEM;
    }
    for (int r = 0; r < n; r++) {
        struct analytics_row *row = &out->rows[out->n++];
        snprintf(row->key, sizeof row->key, "%s", db_get(rows, r, 0));
        snprintf(row->currency, sizeof row->currency, "%s", db_get(rows, r, 1));
        row->revenue = db_get_i64(rows, r, 2);
        row->orders = db_get_i64(rows, r, 3);
        row->units = db_get_i64(rows, r, 4);
    }
    db_rows_free(rows);
    return 0;
}
