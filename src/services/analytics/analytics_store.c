/* SPDX-License-Identifier: MIT */
/* analytics_store.c — the `analytics` database: its schema and every statement on it.
 *
 * sales_facts holds one row per paid order line (order, UTC day, category, product, units,
 * revenue in minor units, currency, cancelled 0/1); order_states one row per order the
 * service heard of ('paid' or 'cancelled'); applied_events the ids of the events applied.
 * Each event is applied in one transaction together with its id, so a redelivery is a
 * no-op. Per order the state only moves paid → cancelled, by a conditional UPDATE, so a
 * cancellation is subtracted once however often it arrives; a cancellation of an order
 * never counted leaves a 'cancelled' row behind, so a late order.paid is not counted
 * either. The report sums the facts whose order is not cancelled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/service.h"
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

/* Takes a connection, runs one statement, gives it back. TODO(runtime): db_query_once()
 * from db.h once it is on main. */
static int query_once(struct db *db, const char *sql, int n, const struct db_val *args,
                      struct db_rows **out)
{
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    rc = db_query(c, sql, n, args, out);
    db_conn_give(c);
    return rc;
}

/* Records the event id; 1 when it is new, 0 when it was applied before. */
static int event_new(struct db_conn *c, const char *event_id)
{
    struct db_val e[] = {DB_TEXT(event_id), DB_INT(now_ms())};
    return db_query(c,
                    "INSERT INTO applied_events (event_id, applied_at) VALUES ($1, $2) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    2, e, NULL);
}

struct paid_tx {
    const struct order_event *ev;
    const char *day;
    const struct analytics__line *lines;
    int n;
    int done;
};

static int paid_tx(struct db_conn *c, void *vctx)
{
    struct paid_tx *p = vctx;
    p->done = 0;
    int rc = event_new(c, p->ev->event_id);
    if (rc <= 0)
        return rc;
    struct db_val o[] = {DB_INT(p->ev->order_id), DB_INT(now_ms())};
    rc = db_query(c,
                  "INSERT INTO order_states (order_id, status, refunded, updated_at) "
                  "VALUES ($1, 'paid', 0, $2) ON CONFLICT (order_id) DO NOTHING",
                  2, o, NULL);
    if (rc <= 0) /* counted already, or cancelled before this arrived */
        return rc;
    for (int i = 0; i < p->n; i++) {
        const struct analytics__line *l = &p->lines[i];
        struct db_val f[] = {DB_INT(p->ev->order_id), DB_INT(i),        DB_TEXT(p->day),
                             DB_TEXT(l->category),    DB_INT(l->product_id), DB_INT(l->units),
                             DB_INT(l->revenue),      DB_TEXT(p->ev->currency)};
        rc = db_query(c,
                      "INSERT INTO sales_facts (order_id, line, day, category, product_id, "
                      "units, revenue, currency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                      8, f, NULL);
        if (rc < 0)
            return rc;
    }
    p->done = 1;
    return 0;
}

int analytics__store_paid(struct db *db, const struct order_event *ev, const char *day,
                          const struct analytics__line *lines, int n)
{
    struct paid_tx p = {ev, day, lines, n, 0};
    int rc = db_transact(db, paid_tx, NULL, &p);
    return rc < 0 ? rc : p.done;
}

struct cancel_tx {
    const struct order_event *ev;
    int done;
};

static int cancel_tx(struct db_conn *c, void *vctx)
{
    struct cancel_tx *x = vctx;
    x->done = 0;
    int rc = event_new(c, x->ev->event_id);
    if (rc <= 0)
        return rc;
    struct db_val o[] = {DB_INT(x->ev->order_id), DB_INT(x->ev->refunded ? 1 : 0),
                         DB_INT(now_ms())};
    rc = db_query(c,
                  "UPDATE order_states SET status = 'cancelled', refunded = $2, updated_at = $3 "
                  "WHERE order_id = $1 AND status = 'paid'",
                  3, o, NULL);
    if (rc < 0)
        return rc;
    if (rc == 0) { /* never counted (or cancelled already): remember, so a late paid is not */
        rc = db_query(c,
                      "INSERT INTO order_states (order_id, status, refunded, updated_at) "
                      "VALUES ($1, 'cancelled', $2, $3) ON CONFLICT (order_id) DO NOTHING",
                      3, o, NULL);
        return rc < 0 ? rc : 0;
    }
    struct db_val f[] = {DB_INT(x->ev->order_id)};
    rc = db_query(c, "UPDATE sales_facts SET cancelled = 1 WHERE order_id = $1", 1, f, NULL);
    if (rc < 0)
        return rc;
    x->done = 1;
    return 0;
}

int analytics__store_cancelled(struct db *db, const struct order_event *ev)
{
    struct cancel_tx x = {ev, 0};
    int rc = db_transact(db, cancel_tx, NULL, &x);
    return rc < 0 ? rc : x.done;
}

int analytics__store_sales(struct db *db, const char *from, const char *to,
                           enum analytics_group g, struct analytics_report *out)
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
    int rc = query_once(db, sql[g], 2, a, &rows);
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
