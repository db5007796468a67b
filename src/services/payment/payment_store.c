/* SPDX-License-Identifier: MIT */
/* payment_store.c — every SQL statement of the payment service, and its schema.
 *
 * Reads run on a connection the caller holds; the writes that stand alone (insert, record,
 * transition, mark) take the database and commit as intents of its group-commit writer. Rows come back as struct payrow (payment_internal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "emporium/err.h"
#include "emporium/metrics.h"
#include "emporium/id.h"
#include "emporium/outbox.h"
#define EMPORIUM_SERVICE_NO_HTTP /* a layered service: no HTTP types below _http.c */
#include "emporium/service.h"
#include "payment_internal.h"

#define PAYMENT_COLUMNS                                                                            \
    "id, order_id, idempotency_key, status, amount, currency, brand, last4, provider_ref, "        \
    "failure_reason, retryable"
#define PAYMENT_SELECT "SELECT " PAYMENT_COLUMNS " FROM payments "

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static void row_load(const struct db_rows *r, int i, struct payrow *p)
{
    p->id = db_get_i64(r, i, 0);
    p->order_id = db_get_i64(r, i, 1);
    copy(p->key, sizeof p->key, db_get(r, i, 2));
    copy(p->status, sizeof p->status, db_get(r, i, 3));
    p->amount = db_get_i64(r, i, 4);
    copy(p->currency, sizeof p->currency, db_get(r, i, 5));
    copy(p->brand, sizeof p->brand, db_get(r, i, 6));
    copy(p->last4, sizeof p->last4, db_get(r, i, 7));
    copy(p->ref, sizeof p->ref, db_get(r, i, 8));
    copy(p->reason, sizeof p->reason, db_get(r, i, 9));
    p->retryable = db_get_i64(r, i, 10) != 0;
}

/* Loads one payment by `where` (with one parameter). 1 found, 0 not, <0 error. */
/* A query's first row into p: 1 when there was one, 0 when none, or the query's error (rc). */
static int load_first(int rc, struct db_rows *r, struct payrow *p)
{
    if (rc < 0)
        return rc;
    int found = db_rows_count(r) > 0;
    if (found)
        row_load(r, 0, p);
    db_rows_free(r);
    return found;
}

int payment__store_find(struct db_conn *c, const char *where, struct db_val arg, struct payrow *p)
{
    char sql[512];
    snprintf(sql, sizeof sql, PAYMENT_SELECT "%s", where);
    struct db_rows *r = NULL;
    int rc = db_query(c, sql, 1, &arg, &r); /* before load_first reads r */
    return load_first(rc, r, p);
}

int payment__store_by_order(struct db_conn *c, int64_t order_id, struct payrow *p)
{
    return payment__store_find(c, "WHERE order_id = $1 ORDER BY id DESC LIMIT 1", DB_INT(order_id),
                               p);
}

/* Every write below is one intent of the payments database's group-commit writer
 * (db_write): on SQLite the payment steps of many concurrent orders commit together. */

int payment__store_insert(struct db *db, const struct payrow *p, const char *provider)
{
    int64_t now = now_ms();
    struct db_val a[] = {DB_INT(p->id),     DB_INT(p->order_id),  DB_TEXT(p->key),
                         DB_INT(p->amount), DB_TEXT(p->currency), DB_TEXT(p->brand),
                         DB_TEXT(p->last4), DB_TEXT(provider),    DB_INT(now)};
    int rc = db_write_one(
        db,
        "INSERT INTO payments (id, order_id, idempotency_key, status, amount, currency, "
        "brand, last4, provider, retryable, created_at, updated_at) "
        "VALUES ($1, $2, $3, 'processing', $4, $5, $6, $7, $8, 0, $9, $9)",
        9, a);
    return rc < 0 ? rc : 0;
}

int payment__store_record_authorize(struct db_conn *c, const struct payrow *p,
                                    const char *row_status)
{
    struct db_val u[] = {
        DB_TEXT(row_status),  DB_TEXT(p->ref),  p->reason[0] ? DB_TEXT(p->reason) : DB_NULLV,
        DB_INT(p->retryable), DB_INT(now_ms()), DB_INT(p->id)};
    return db_query(c,
                    "UPDATE payments SET status = $1, provider_ref = $2, failure_reason = $3, "
                    "retryable = $4, updated_at = $5 WHERE id = $6 AND status = 'processing'",
                    6, u, NULL);
}

struct record_ctx {
    const struct payrow *p;
    const char *row_status;
    int64_t amount;
    int moved; /* rows the last run changed */
};

static int record_tx(struct db_conn *c, void *vctx)
{
    struct record_ctx *x = vctx;
    const struct payrow *p = x->p;
    bool ok = !strcmp(p->status, "authorized");
    int rc = payment__store_record_authorize(c, p, x->row_status);
    if (rc < 0)
        return rc;
    x->moved = rc;
    if (rc == 0)
        return 1; /* no longer processing: nothing to record */
    rc = payment__store_op(c, p, "authorize", ok ? "succeeded" : "failed", x->amount, p->reason);
    if (rc == 0)
        rc = payment__store_event(c, p, ok ? "payment.authorized" : "payment.failed", x->amount);
    return rc;
}

static bool on_pg(struct db *db);
static int move_one_statement(struct db *db, const char *update, int nset, const struct db_val *set,
                              const struct payrow *p, const char *kind, const char *op_status,
                              int64_t amount, const char *reason, const char *event);

int payment__store_record(struct db *db, const struct payrow *p, const char *row_status,
                          int64_t amount)
{
    if (on_pg(db)) {
        bool ok = !strcmp(p->status, "authorized");
        struct db_val u[] = {DB_TEXT(row_status),  DB_INT(now_ms()),
                             DB_TEXT(p->ref),      p->reason[0] ? DB_TEXT(p->reason) : DB_NULLV,
                             DB_INT(p->retryable), DB_INT(p->id)};
        int rc = move_one_statement(
            db,
            "UPDATE payments SET status = $1, updated_at = $2, provider_ref = $3, "
            "failure_reason = $4, retryable = $5 WHERE id = $6 AND status = 'processing'",
            6, u, p, "authorize", ok ? "succeeded" : "failed", amount, p->reason,
            ok ? "payment.authorized" : "payment.failed");
        return rc < 0 ? rc : rc > 0;
    }
    struct record_ctx x = {p, row_status, amount, 0};
    int rc = db_write(db, record_tx, NULL, &x);
    return rc < 0 ? rc : x.moved > 0;
}

/* The event's data: the payment as p says it is now. NULL when out of memory. */
static json_t *event_data(const struct payrow *p, int64_t amount)
{
    char oid[21];
    json_t *data = json_pack("{s:s,s:s,s:I,s:s,s:s,s:s}", "order_id", id_format(p->order_id, oid),
                             "status", p->status, "amount", (json_int_t)amount, "currency",
                             p->currency, "brand", p->brand, "last4", p->last4);
    if (data && p->reason[0])
        json_object_set_new(data, "failure_reason", json_string(p->reason));
    return data;
}

int payment__store_event(struct db_conn *c, const struct payrow *p, const char *type,
                         int64_t amount)
{
    json_t *data = event_data(p, amount);
    if (!data)
        return ERR_NOMEM;
    int rc = outbox_add(c, id_shard(p->id), "payment-events", "payment", p->id, type, data);
    json_decref(data);
    return rc;
}

/* --- PostgreSQL: a move with its operation row and event as one statement ---
 * A data-modifying CTE: the UPDATE moves the row only from the expected status, and the
 * operation row and the outbox row are inserted from its RETURNING, so they exist exactly
 * when the row moved. One round trip and one commit (no BEGIN/COMMIT), where the generic
 * path sends four. The result is the number of rows moved (0 or 1). SQLite has no
 * data-modifying CTEs: it keeps the transaction below. */

/* $1.. are the UPDATE's (nset of them, the row's id and expected status included; $2 is
 * the time), then the operation's id, kind, key, status, amount, reason, then the event's. */
static int move_one_statement(struct db *db, const char *update, int nset, const struct db_val *set,
                              const struct payrow *p, const char *kind, const char *op_status,
                              int64_t amount, const char *reason, const char *event)
{
    char key[200];
    snprintf(key, sizeof key, "%s:%s", p->key, kind);
    json_t *data = event_data(p, amount);
    if (!data)
        return ERR_NOMEM;
    struct outbox_row ev;
    int rc = outbox_row_make(&ev, id_shard(p->id), "payment-events", "payment", p->id, event, data);
    json_decref(data);
    if (rc < 0)
        return rc;
    struct db_val a[24];
    int n = 0;
    for (int i = 0; i < nset; i++)
        a[n++] = set[i];
    int op = n + 1;
    a[n++] = DB_INT(id_new(id_shard(p->id)));
    a[n++] = DB_TEXT(kind);
    a[n++] = DB_TEXT(key);
    a[n++] = DB_TEXT(op_status);
    a[n++] = DB_INT(amount);
    a[n++] = reason && *reason ? DB_TEXT(reason) : DB_NULLV;
    int evn = n + 1;
    for (int i = 0; i < OUTBOX_NARGS; i++)
        a[n++] = ev.args[i];
    char sql[1024];
    snprintf(sql, sizeof sql,
             "WITH m AS (%s RETURNING id), "
             "o AS (INSERT INTO payment_operations (id, payment_id, kind, idempotency_key, "
             "status, amount, failure_reason, created_at) "
             "SELECT $%d, m.id, $%d, $%d, $%d, $%d, $%d, $2 FROM m) "
             "INSERT INTO outbox (" OUTBOX_COLUMNS ") "
             "SELECT $%d, $%d, $%d, $%d, $%d, $%d, $%d FROM m",
             update, op, op + 1, op + 2, op + 3, op + 4, op + 5, evn, evn + 1, evn + 2, evn + 3,
             evn + 4, evn + 5, evn + 6);
    rc = db_write_one(db, sql, n, a);
    outbox_row_free(&ev);
    return rc;
}

static bool on_pg(struct db *db) { return db_dialect(db) == DB_POSTGRES; }

int payment__store_op(struct db_conn *c, const struct payrow *p, const char *kind,
                      const char *status, int64_t amount, const char *reason)
{
    char key[200];
    snprintf(key, sizeof key, "%s:%s", p->key, kind);
    struct db_val a[] = {DB_INT(id_new(id_shard(p->id))),
                         DB_INT(p->id),
                         DB_TEXT(kind),
                         DB_TEXT(key),
                         DB_TEXT(status),
                         DB_INT(amount),
                         reason && *reason ? DB_TEXT(reason) : DB_NULLV,
                         DB_INT(now_ms())};
    int rc = db_query(c,
                      "INSERT INTO payment_operations (id, payment_id, kind, idempotency_key, "
                      "status, amount, failure_reason, created_at) "
                      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                      8, a, NULL);
    return rc < 0 ? rc : 0;
}

struct move_ctx {
    struct payrow *p;
    const char *from, *to, *kind, *event;
    int64_t amount;
    int moved;
};

static int move_tx(struct db_conn *c, void *vctx)
{
    struct move_ctx *x = vctx;
    struct payrow *p = x->p;
    struct db_val a[] = {DB_TEXT(x->to), DB_INT(now_ms()), DB_INT(p->id), DB_TEXT(x->from)};
    int rc = db_query(
        c, "UPDATE payments SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4", 4, a,
        NULL);
    if (rc < 0)
        return rc;
    x->moved = rc;
    if (rc == 0)
        return 1;
    /* The operation row and the event carry the new status. */
    char saved[sizeof p->status];
    memcpy(saved, p->status, sizeof saved);
    copy(p->status, sizeof p->status, x->to);
    rc = payment__store_op(c, p, x->kind, "succeeded", x->amount, NULL);
    if (rc == 0)
        rc = payment__store_event(c, p, x->event, x->amount);
    memcpy(p->status, saved, sizeof saved);
    return rc;
}

/* Moves p from `from` to `to` with its operation row and event, in one transaction.
 * Returns 1 when this call made the change, 0 when the row was no longer in `from`. */
int payment__store_transition(struct db *db, struct payrow *p, const char *from, const char *to,
                              const char *kind, const char *event, int64_t amount)
{
    struct move_ctx x = {p, from, to, kind, event, amount, 0};
    int rc;
    if (on_pg(db)) {
        /* The operation row and the event carry the new status. */
        struct payrow moved = *p;
        copy(moved.status, sizeof moved.status, to);
        struct db_val a[] = {DB_TEXT(to), DB_INT(now_ms()), DB_INT(p->id), DB_TEXT(from)};
        rc = move_one_statement(
            db, "UPDATE payments SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4", 4,
            a, &moved, kind, "succeeded", amount, NULL, event);
        x.moved = rc;
    } else {
        rc = db_write(db, move_tx, NULL, &x);
    }
    if (rc < 0)
        return rc;
    if (x.moved <= 0)
        return 0;
    copy(p->status, sizeof p->status, to);
    /* the outcome counter of /metrics, counted once the move is durable */
    metrics_count("emporium_payments_total", to);
    return 1;
}

/* Moves p from `from` to `to` alone (no operation row, no event): the `capturing` mark. */
int payment__store_mark(struct db *db, struct payrow *p, const char *from, const char *to)
{
    struct db_val a[] = {DB_TEXT(to), DB_INT(now_ms()), DB_INT(p->id), DB_TEXT(from)};
    int rc = db_write_one(
        db, "UPDATE payments SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4", 4, a);
    if (rc == 1)
        copy(p->status, sizeof p->status, to);
    return rc;
}

int payment__store_mark_newest(struct db *db, int64_t order_id, const char *from, const char *to,
                               struct payrow *p)
{
    if (!on_pg(db))
        return 0; /* SQLite: the caller reads, then marks */
    struct db_val a[] = {DB_TEXT(to), DB_INT(now_ms()), DB_INT(order_id), DB_TEXT(from)};
    struct db_rows *r = NULL;
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    rc = db_query(c,
                  "UPDATE payments SET status = $1, updated_at = $2 WHERE id = (SELECT id FROM "
                  "payments WHERE order_id = $3 ORDER BY id DESC LIMIT 1) AND status = $4 "
                  "RETURNING " PAYMENT_COLUMNS,
                  4, a, &r);
    db_conn_give(c);
    return load_first(rc, r, p);
}

int payment__store_audit(struct db_conn *c, int64_t order_id, struct payment_view **out, int *n)
{
    struct db_rows *pr = NULL, *ops = NULL;
    struct db_val a[] = {DB_INT(order_id)};
    *out = NULL;
    *n = 0;
    int rc =
        db_query(c,
                 "SELECT id, status, amount, currency, brand, last4, failure_reason, created_at "
                 "FROM payments WHERE order_id = $1 ORDER BY id",
                 1, a, &pr);
    if (rc >= 0)
        rc = db_query(c,
                      "SELECT o.payment_id, o.kind, o.status, o.amount, o.created_at "
                      "FROM payment_operations o JOIN payments p ON p.id = o.payment_id "
                      "WHERE p.order_id = $1 ORDER BY o.id",
                      1, a, &ops);
    int np = rc >= 0 ? db_rows_count(pr) : 0, no = rc >= 0 ? db_rows_count(ops) : 0;
    struct payment_view *v = rc >= 0 ? calloc((size_t)np + 1, sizeof *v) : NULL;
    if (rc >= 0 && !v)
        rc = ERR_NOMEM;
    for (int i = 0; rc >= 0 && i < np; i++) {
        v[i].id = db_get_i64(pr, i, 0);
        copy(v[i].status, sizeof v[i].status, db_get(pr, i, 1));
        v[i].amount = db_get_i64(pr, i, 2);
        copy(v[i].currency, sizeof v[i].currency, db_get(pr, i, 3));
        copy(v[i].brand, sizeof v[i].brand, db_get(pr, i, 4));
        copy(v[i].last4, sizeof v[i].last4, db_get(pr, i, 5));
        copy(v[i].reason, sizeof v[i].reason, db_get(pr, i, 6));
        v[i].created_at = db_get_i64(pr, i, 7);
        if (!(v[i].ops = calloc((size_t)no + 1, sizeof *v[i].ops))) {
            rc = ERR_NOMEM;
            break;
        }
        for (int j = 0; j < no; j++) {
            if (db_get_i64(ops, j, 0) != v[i].id)
                continue;
            struct payment_op_view *o = &v[i].ops[v[i].n_ops++];
            copy(o->kind, sizeof o->kind, db_get(ops, j, 1));
            copy(o->status, sizeof o->status, db_get(ops, j, 2));
            o->amount = db_get_i64(ops, j, 3);
            o->at = db_get_i64(ops, j, 4);
        }
    }
    db_rows_free(pr);
    db_rows_free(ops);
    if (rc < 0) {
        payment_views_free(v, np);
        return rc;
    }
    *out = v;
    *n = np;
    return 0;
}

void payment_views_free(struct payment_view *v, int n)
{
    for (int i = 0; v && i < n; i++)
        free(v[i].ops);
    free(v);
}

/* --- schema --- */

static const struct db_migration payment_migrations[] = {
    {.sql = "CREATE TABLE payments ("
            " id BIGINT PRIMARY KEY,"
            " order_id BIGINT NOT NULL,"
            " idempotency_key TEXT NOT NULL UNIQUE,"
            " status TEXT NOT NULL,"
            " amount BIGINT NOT NULL,"
            " currency TEXT NOT NULL,"
            " brand TEXT NOT NULL,"
            " last4 TEXT NOT NULL,"
            " provider TEXT NOT NULL,"
            " provider_ref TEXT,"
            " failure_reason TEXT,"
            " retryable INTEGER NOT NULL DEFAULT 0,"
            " created_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL);"
            "CREATE INDEX payments_order ON payments (order_id, id);"
            "CREATE TABLE payment_operations ("
            " id BIGINT PRIMARY KEY,"
            " payment_id BIGINT NOT NULL REFERENCES payments(id),"
            " kind TEXT NOT NULL,"
            " idempotency_key TEXT NOT NULL UNIQUE,"
            " status TEXT NOT NULL,"
            " amount BIGINT NOT NULL,"
            " failure_reason TEXT,"
            " created_at BIGINT NOT NULL);"
            "CREATE INDEX payment_operations_payment ON payment_operations (payment_id, id);"},
    {.sql = OUTBOX_MIGRATION},
    {.sql = OUTBOX_QUEUE_MIGRATION},
};

const struct service_db payment__dbs[] = {
    {"payments", 0, payment_migrations, sizeof payment_migrations / sizeof payment_migrations[0]},
    {NULL, 0, NULL, 0},
};
