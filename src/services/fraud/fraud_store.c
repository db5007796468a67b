/* SPDX-License-Identifier: MIT */
/* fraud_store.c — the fraud service's schema and every SQL statement.
 *
 * fraud_orders: one row per order the service heard of (scored at checkout, or learnt from
 * order.placed), with its user, card fingerprint, country, status and whether its payment
 * failed: what the velocity, failure and country rules count. fraud_assessments: the verdict
 * per order (scoring twice returns it). fraud_keys: the fingerprint key. The database has an
 * outbox: the fraud.assessed event is written with the assessment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/outbox.h"
#include "fraud_internal.h"

static void copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

int fraud__store_key(struct db *db, const unsigned char fresh[FRAUD_KEY_BYTES],
                     unsigned char out[FRAUD_KEY_BYTES])
{
    char hex[2 * FRAUD_KEY_BYTES + 1];
    for (int i = 0; i < FRAUD_KEY_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", fresh[i]);
    struct db_val a[] = {DB_TEXT(hex), DB_INT(now_ms())};
    int rc = db_query_once(db,
                           "INSERT INTO fraud_keys (id, secret, created_at) VALUES (1, $1, $2) "
                           "ON CONFLICT (id) DO NOTHING",
                           2, a, NULL);
    if (rc < 0)
        return rc;
    struct db_rows *r = NULL;
    if ((rc = db_query_once(db, "SELECT secret FROM fraud_keys WHERE id = 1", 0, NULL, &r)) < 0)
        return rc;
    const char *s = db_rows_count(r) ? db_get(r, 0, 0) : NULL;
    rc = s && strlen(s) == 2 * FRAUD_KEY_BYTES ? 0 : ERR_INTERNAL;
    for (int i = 0; rc == 0 && i < FRAUD_KEY_BYTES; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            rc = ERR_INTERNAL;
        out[i] = (unsigned char)v;
    }
    db_rows_free(r);
    return rc;
}

/* The reasons of a stored assessment back into static names. */
static void reasons_load(const char *s, struct fraud_verdict *v)
{
    v->n_reasons = 0;
    while (s && *s && v->n_reasons < FRAUD_MAX_REASONS) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        const char *name = fraud__reason(s, len);
        if (name)
            v->reasons[v->n_reasons++] = name;
        s += len + (e ? 1 : 0);
    }
}

struct score_tx {
    const struct fraud_ctx *ctx;
    const struct fraud_order *o;
    struct fraud_verdict *out;
};

static void score_reset(void *vctx)
{
    struct score_tx *t = vctx;
    memset(t->out, 0, sizeof *t->out);
}

/* The reads of a scoring in one statement: a verdict recorded before (1: it is in out,
 * nothing to write) and what the rules count. Every count leaves this order out, so
 * reading before this order's row is written counts the same as reading after it. One
 * statement, not one per count: on PostgreSQL each statement is a parse, bind and execute
 * of its own in the backend, and this runs for every order. */
static int score_read(struct db_conn *c, struct score_tx *t, int64_t now, struct fraud_counts *n)
{
    const struct fraud_order *o = t->o;
    int64_t since = now - t->ctx->window_ms;
    const char *fp = o->card_fingerprint ? o->card_fingerprint : "";
    const char *country = o->country ? o->country : "";
    /* The rules only ask whether a count reaches its threshold (or is above 0): each count
     * stops there, so a busy card (one shared by many shoppers) costs no more to check than
     * a quiet one. Without a card fingerprint the card rule counts nothing. (The partial
     * indexes of migration 3 hold the failed payments only.) */
    struct db_val a[] = {DB_INT(o->order_id), DB_INT(o->user_id),
                         DB_INT(since),       DB_INT(t->ctx->user_velocity),
                         DB_TEXT(fp),         DB_INT(t->ctx->failed_payments),
                         DB_TEXT(country),    DB_INT(t->ctx->card_velocity)};
    struct db_rows *r = NULL;
    int rc = db_query(
        c,
        "SELECT a.score, a.hold, a.reasons, "
        "(SELECT COUNT(*) FROM (SELECT 1 FROM fraud_orders WHERE user_id = $2 "
        "AND placed_at > $3 AND order_id <> $1 AND failed_payment = 0 LIMIT $4) v), "
        "(SELECT COUNT(*) FROM (SELECT 1 FROM fraud_orders WHERE failed_payment = 1 "
        "AND placed_at > $3 AND (user_id = $2 OR (card_fp = $5 AND card_fp <> '')) "
        "LIMIT $6) v), "
        "(SELECT COUNT(*) FROM (SELECT 1 FROM fraud_orders WHERE user_id = $2 "
        "AND order_id <> $1 AND status <> 'failed' AND country <> '' LIMIT 1) v), "
        "(SELECT COUNT(*) FROM (SELECT 1 FROM fraud_orders WHERE user_id = $2 "
        "AND order_id <> $1 AND status <> 'failed' AND country <> '' AND country = $7 "
        "LIMIT 1) v), "
        "(SELECT COUNT(*) FROM (SELECT 1 FROM fraud_orders WHERE card_fp = $5 AND $5 <> '' "
        "AND placed_at > $3 AND order_id <> $1 AND failed_payment = 0 LIMIT $8) v) "
        "FROM (SELECT 1 AS one) x LEFT JOIN fraud_assessments a ON a.order_id = $1",
        8, a, &r);
    if (rc >= 0 && db_rows_count(r) != 1)
        rc = ERR_INTERNAL;
    if (rc >= 0 && db_get(r, 0, 0)) { /* scored before: the same verdict */
        t->out->score = (int)db_get_i64(r, 0, 0);
        t->out->hold = db_get_i64(r, 0, 1) != 0;
        reasons_load(db_get(r, 0, 2), t->out);
        rc = 1;
    } else if (rc >= 0) {
        *n = (struct fraud_counts){.user_orders = db_get_i64(r, 0, 3),
                                   .failed_payments = db_get_i64(r, 0, 4),
                                   .past_orders = db_get_i64(r, 0, 5),
                                   .same_country = db_get_i64(r, 0, 6),
                                   .card_orders = db_get_i64(r, 0, 7)};
        rc = 0;
    }
    db_rows_free(r);
    return rc;
}

/* The writes of a scoring in one round trip: the order's row for the velocity rules, the
 * assessment and its fraud.assessed event. On c inside the caller's transaction (SQLite),
 * or with shared set as their own transaction, committed with other scorings' writes
 * (db_query_many_shared: PostgreSQL). */
static int score_write(struct db_conn *c, struct db *shared, struct score_tx *t, int64_t now)
{
    const struct fraud_order *o = t->o;
    const char *fp = o->card_fingerprint ? o->card_fingerprint : "";
    const char *country = o->country ? o->country : "";
    char reasons[96] = "";
    size_t len = 0;
    json_t *rj = json_array();
    for (int i = 0; i < t->out->n_reasons; i++) {
        len += (size_t)snprintf(reasons + len, sizeof reasons - len, "%s%s", i ? "," : "",
                                t->out->reasons[i]);
        if (len >= sizeof reasons)
            len = sizeof reasons - 1;
        json_array_append_new(rj, json_string(t->out->reasons[i]));
    }
    char oid[21], uid[21];
    json_t *data = json_pack(
        "{s:s,s:s,s:i,s:b,s:o,s:{s:I,s:s}}", "order_id", id_format(o->order_id, oid), "user_id",
        id_format(o->user_id, uid), "score", t->out->score, "hold", t->out->hold, "reasons", rj,
        "total", "amount", (json_int_t)o->amount, "currency", o->currency ? o->currency : "");
    struct outbox_row ev;
    int rc = data ? outbox_row_make(&ev, id_shard(o->order_id), "fraud-detection-events", "order",
                                    o->order_id, "fraud.assessed", data)
                  : ERR_NOMEM;
    json_decref(data);
    if (rc < 0)
        return rc;
    struct db_val ins[] = {DB_INT(o->order_id), DB_INT(o->user_id), DB_TEXT(fp), DB_TEXT(country),
                           DB_INT(now)};
    struct db_val as[] = {DB_INT(o->order_id),          DB_INT(o->user_id), DB_INT(t->out->score),
                          DB_INT(t->out->hold ? 1 : 0), DB_TEXT(reasons),   DB_INT(now)};
    struct db_stmt st[] = {
        {.sql = "INSERT INTO fraud_orders (order_id, user_id, card_fp, country, status, "
                "failed_payment, placed_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', 0, "
                "$5, $5) ON CONFLICT (order_id) DO NOTHING",
         .n = 5,
         .args = ins},
        {.sql = "INSERT INTO fraud_assessments (order_id, user_id, score, hold, reasons, at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
         .n = 6,
         .args = as},
        {.sql = OUTBOX_INSERT, .n = OUTBOX_NARGS, .args = ev.args},
    };
    rc = shared ? db_query_many_shared(shared, st, 3) : db_query_many(c, st, 3, true);
    outbox_row_free(&ev);
    return rc < 0 ? rc : 0;
}

/* SQLite: the reads and the writes inside one intent of the group-commit writer. */
static int score_fn(struct db_conn *c, void *vctx)
{
    struct score_tx *t = vctx;
    int64_t now = now_ms();
    struct fraud_counts n = {0};
    int rc = score_read(c, t, now, &n);
    if (rc != 0)
        return rc;
    fraud__rules(t->ctx, t->o, &n, t->out);
    return score_write(c, NULL, t, now);
}

/* PostgreSQL: two round trips and one commit, no BEGIN/COMMIT: the reads (no transaction
 * needed: read committed sees no more inside one), then the writes as one implicit
 * transaction, shared with other scorings'. A concurrent scoring of the same order that
 * recorded its verdict first makes the assessment's insert conflict: that recorded verdict
 * is the answer. */
static int score_pg(struct db *db, struct score_tx *t)
{
    int rc = 0;
    for (int attempt = 0; rc >= 0 && attempt < 6; attempt++) {
        score_reset(t);
        int64_t now = now_ms();
        struct fraud_counts n = {0};
        struct db_conn *c = NULL;
        if ((rc = db_conn_take(db, &c)) < 0)
            break;
        rc = score_read(c, t, now, &n);
        db_conn_give(c); /* not held while waiting for the shared write */
        if (rc != 0)
            break;
        fraud__rules(t->ctx, t->o, &n, t->out);
        rc = score_write(NULL, db, t, now);
        if (rc != ERR_CONFLICT && rc != ERR_BUSY)
            break;
    }
    return rc < 0 ? rc : 0;
}

int fraud__store_score(struct db *db, const struct fraud_ctx *ctx, const struct fraud_order *o,
                       struct fraud_verdict *out)
{
    struct score_tx t = {ctx, o, out};
    if (db && db_dialect(db) == DB_POSTGRES)
        return score_pg(db, &t);
    return db_write(db, score_fn, score_reset, &t);
}

int fraud__store_assessment(struct db *db, int64_t order_id, struct fraud_assessment *out)
{
    memset(out, 0, sizeof *out);
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(order_id)};
    int rc = db_query_once(
        db, "SELECT user_id, score, hold, reasons, at FROM fraud_assessments WHERE order_id = $1",
        1, a, &r);
    if (rc < 0)
        return rc;
    if (db_rows_count(r) == 0) {
        db_rows_free(r);
        return ERR_NOTFOUND;
    }
    out->order_id = order_id;
    out->user_id = db_get_i64(r, 0, 0);
    out->score = (int)db_get_i64(r, 0, 1);
    out->hold = db_get_i64(r, 0, 2) != 0;
    copy(out->reasons, sizeof out->reasons, db_get(r, 0, 3));
    out->at = db_get_i64(r, 0, 4);
    db_rows_free(r);
    return 0;
}

#define PLACED_SQL                                                                                 \
    "INSERT INTO fraud_orders (order_id, user_id, card_fp, country, status, failed_payment, "      \
    "placed_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5) "                        \
    "ON CONFLICT (order_id) DO UPDATE SET "                                                        \
    "card_fp = CASE WHEN fraud_orders.card_fp = '' THEN excluded.card_fp "                         \
    "ELSE fraud_orders.card_fp END, "                                                              \
    "country = CASE WHEN fraud_orders.country = '' THEN excluded.country "                         \
    "ELSE fraud_orders.country END"
#define STATUS_SQL                                                                                 \
    "UPDATE fraud_orders SET status = $1, failed_payment = CASE WHEN $2 = 1 "                      \
    "THEN 1 ELSE failed_payment END, updated_at = $3 WHERE order_id = $4"

struct events_tx {
    const struct fraud_event *ev;
    int n;
    bool atomic; /* each chunk its own implicit transaction (PostgreSQL, no transaction open) */
};

/* A row scored at checkout exists already: a placed order only fills in what it lacks. */
static int events_fn(struct db_conn *c, void *vctx)
{
    struct events_tx *t = vctx;
    struct db_stmt st[DB_STMT_MAX];
    struct db_val a[DB_STMT_MAX][5];
    for (int at = 0; at < t->n; at += DB_STMT_MAX) {
        int k = t->n - at < DB_STMT_MAX ? t->n - at : DB_STMT_MAX;
        for (int i = 0; i < k; i++) {
            const struct fraud_event *e = &t->ev[at + i];
            if (e->placed) {
                a[i][0] = DB_INT(e->order_id);
                a[i][1] = DB_INT(e->user_id);
                a[i][2] = DB_TEXT(e->card_fp);
                a[i][3] = DB_TEXT(e->country);
                a[i][4] = DB_INT(e->at);
                st[i] = (struct db_stmt){.sql = PLACED_SQL, .n = 5, .args = a[i]};
            } else {
                a[i][0] = DB_TEXT(e->status);
                a[i][1] = DB_INT(e->failed_payment ? 1 : 0);
                a[i][2] = DB_INT(e->at);
                a[i][3] = DB_INT(e->order_id);
                st[i] = (struct db_stmt){.sql = STATUS_SQL, .n = 4, .args = a[i]};
            }
        }
        int rc = db_query_many(c, st, k, t->atomic);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int fraud__store_events(struct db *db, const struct fraud_event *ev, int n)
{
    if (n == 0)
        return 0;
    if (db_dialect(db) != DB_POSTGRES) {
        struct events_tx t = {ev, n, false};
        return db_write(db, events_fn, NULL, &t);
    }
    struct events_tx t = {ev, n, true};
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    rc = events_fn(c, &t);
    db_conn_give(c);
    return rc;
}

/* --- schema --- */

static const struct db_migration fraud_migrations[] = {
    {.sql = "CREATE TABLE fraud_keys ("
            " id INTEGER PRIMARY KEY,"
            " secret TEXT NOT NULL,"
            " created_at BIGINT NOT NULL);"
            "CREATE TABLE fraud_orders ("
            " order_id BIGINT PRIMARY KEY,"
            " user_id BIGINT NOT NULL,"
            " card_fp TEXT NOT NULL,"
            " country TEXT NOT NULL,"
            " status TEXT NOT NULL,"
            " failed_payment INTEGER NOT NULL DEFAULT 0,"
            " placed_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL);"
            "CREATE INDEX fraud_orders_user ON fraud_orders (user_id, placed_at);"
            "CREATE INDEX fraud_orders_card ON fraud_orders (card_fp, placed_at);"
            "CREATE TABLE fraud_assessments ("
            " order_id BIGINT PRIMARY KEY,"
            " user_id BIGINT NOT NULL,"
            " score INTEGER NOT NULL,"
            " hold INTEGER NOT NULL,"
            " reasons TEXT NOT NULL,"
            " at BIGINT NOT NULL);"},
    {.sql = OUTBOX_MIGRATION},
    /* The failed-payments rule reads failed payments only: without these it walked every
     * order of the user or the card in the window. */
    {.sql = "CREATE INDEX fraud_orders_failed_user ON fraud_orders (user_id, placed_at) "
            "WHERE failed_payment = 1;"
            "CREATE INDEX fraud_orders_failed_card ON fraud_orders (card_fp, placed_at) "
            "WHERE failed_payment = 1;"},
    {.sql = OUTBOX_QUEUE_MIGRATION},
};

const struct service_db fraud__dbs[] = {
    {"fraud", 0, fraud_migrations, sizeof fraud_migrations / sizeof fraud_migrations[0]},
    {NULL, 0, NULL, 0},
};
