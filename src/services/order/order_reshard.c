/* SPDX-License-Identifier: MIT */
/* order_reshard.c — `emporium shards status` and `emporium shards move` (docs/sharding.md).
 *
 * A move of buckets A-B (all on one shard, the source) to another shard is a row of
 * shard_moves whose step only goes forward, each step committed before the next begins, so a
 * move interrupted at any point is finished by running the same command again:
 *   copy     every order of the buckets (with its lines, history and idempotency keys) is
 *            upserted into the target while the shop keeps writing to the source;
 *   catchup  the rows changed since the previous pass (updated_at) are upserted again; then
 *            the buckets are fenced (the map's version moves on);
 *   fenced   once every serving process acknowledged the fenced version (order_shards.c:
 *            none can still write there), the last changes are copied, both sides are
 *            compared (counts and a digest of every row of the buckets; a difference
 *            re-copies the buckets whole), and the map is switched to the target in one
 *            transaction that also lifts the fence;
 *   switched once every process acknowledged the switch (none reads the source any more),
 *            the source's copies are deleted;
 *   done.
 * Writes to the moving buckets answer a retryable 503 from the fence to the switch; every
 * other bucket is served throughout. Outbox rows are not moved: the source's relay sends
 * the events already written there. Rows are matched to buckets here, in C (the bucket is a
 * hash of the user), so each pass reads the source's orders table once. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#define EMPORIUM_SERVICE_NO_HTTP /* a layered service: no HTTP types below _http.c */
#include "emporium/service.h"
#include "order_internal.h"

#define PAGE 200
#define SINCE_MARGIN_MS 5000 /* a pass also takes rows stamped this long before it began */
#define ACK_WAIT_MS 120000

struct mover {
    struct app *app;
    struct db *ctl, *src, *dst;
    int64_t id;
    unsigned lo, hi, srcn, dstn;
    char step[16];
    int64_t since, wait_version;
};

static bool in_range(const struct mover *mv, int64_t user_id)
{
    unsigned b = order__bucket_of_user(user_id);
    return b >= mv->lo && b <= mv->hi;
}

/* --- copying rows: column lists with their types ('i' integer, 't' text) --- */

struct table {
    const char *name;
    const char *const *cols;
    const char *types;
    const char *conflict; /* "ON CONFLICT …" */
};

static const char *const order_cols[] = {"id",
                                         "user_id",
                                         "status",
                                         "currency",
                                         "subtotal",
                                         "shipping",
                                         "total",
                                         "shipping_method",
                                         "shipping_address",
                                         "payment_brand",
                                         "payment_last4",
                                         "failure_reason",
                                         "retryable",
                                         "shipment_id",
                                         "compensated",
                                         "idempotency_key",
                                         "created_at",
                                         "updated_at",
                                         "payment_status",
                                         NULL};
static const struct table t_orders = {
    "orders", order_cols, "iittiiitttttiiitiit",
    "ON CONFLICT (id) DO UPDATE SET status = excluded.status, failure_reason = "
    "excluded.failure_reason, retryable = excluded.retryable, shipment_id = excluded.shipment_id, "
    "compensated = excluded.compensated, updated_at = excluded.updated_at, payment_status = "
    "excluded.payment_status"};
static const char *const item_cols[] = {"order_id", "line",       "product_id", "name",
                                        "quantity", "unit_price", NULL};
static const struct table t_items = {"order_items", item_cols, "iiitii",
                                     "ON CONFLICT (order_id, line) DO NOTHING"};
static const char *const hist_cols[] = {"id", "order_id", "status", "at", "note", NULL};
static const struct table t_hist = {"order_history", hist_cols, "iitit",
                                    "ON CONFLICT (id) DO NOTHING"};
static const char *const key_cols[] = {
    "user_id",    "idem_key",        "request_hash",  "order_id",
    "state",      "response_status", "response_body", "created_at",
    "updated_at", "outcome_err",     "outcome_code",  "outcome_product_id",
    NULL};
static const struct table t_keys = {
    "idempotency_keys", key_cols, "ittitititiit",
    "ON CONFLICT (user_id, idem_key) DO UPDATE SET request_hash = excluded.request_hash, "
    "order_id = excluded.order_id, state = excluded.state, response_status = "
    "excluded.response_status, response_body = excluded.response_body, updated_at = "
    "excluded.updated_at, outcome_err = excluded.outcome_err, outcome_code = "
    "excluded.outcome_code, outcome_product_id = excluded.outcome_product_id"};

static void select_sql(const struct table *t, const char *where, char *sql, size_t cap)
{
    int n = snprintf(sql, cap, "SELECT ");
    for (int i = 0; t->cols[i]; i++)
        n += snprintf(sql + n, cap - (size_t)n, "%s%s", i ? ", " : "", t->cols[i]);
    snprintf(sql + n, cap - (size_t)n, " FROM %s %s", t->name, where);
}

/* Upserts row `row` of r (selected with select_sql) into t on c. */
static int put_row(struct db_conn *c, const struct table *t, const struct db_rows *r, int row)
{
    char sql[1536];
    struct db_val a[24];
    int n = snprintf(sql, sizeof sql, "INSERT INTO %s (", t->name), k = 0;
    for (; t->cols[k]; k++)
        n += snprintf(sql + n, sizeof sql - (size_t)n, "%s%s", k ? ", " : "", t->cols[k]);
    n += snprintf(sql + n, sizeof sql - (size_t)n, ") VALUES (");
    for (int i = 0; i < k; i++) {
        n += snprintf(sql + n, sizeof sql - (size_t)n, "%s$%d", i ? ", " : "", i + 1);
        a[i] = db_is_null(r, row, i) ? DB_NULLV
               : t->types[i] == 'i'  ? DB_INT(db_get_i64(r, row, i))
                                     : DB_TEXT(db_get(r, row, i));
    }
    snprintf(sql + n, sizeof sql - (size_t)n, ") %s", t->conflict);
    int rc = db_query(c, sql, k, a, NULL);
    return rc < 0 ? rc : 0;
}

/* The orders of a page (ids) with their lines and history, read from the source. */
struct page {
    struct db_rows *orders;
    int rows[PAGE]; /* rows of `orders` in the buckets */
    int n;
    struct db_rows *items[PAGE], *hist[PAGE];
};

static int page_tx(struct db_conn *c, void *ctx)
{
    struct page *p = ctx;
    int rc = 0;
    for (int i = 0; i < p->n && rc >= 0; i++) {
        rc = put_row(c, &t_orders, p->orders, p->rows[i]);
        for (int j = 0; rc >= 0 && j < db_rows_count(p->items[i]); j++)
            rc = put_row(c, &t_items, p->items[i], j);
        for (int j = 0; rc >= 0 && j < db_rows_count(p->hist[i]); j++)
            rc = put_row(c, &t_hist, p->hist[i], j);
    }
    return rc;
}

static void page_free(struct page *p)
{
    for (int i = 0; i < p->n; i++) {
        db_rows_free(p->items[i]);
        db_rows_free(p->hist[i]);
    }
    db_rows_free(p->orders);
    memset(p, 0, sizeof *p);
}

struct keys_ctx {
    const struct mover *mv;
    struct db_rows *r;
};

static int keys_tx(struct db_conn *c, void *ctx)
{
    struct keys_ctx *k = ctx;
    int rc = 0;
    for (int i = 0; i < db_rows_count(k->r) && rc >= 0; i++)
        if (in_range(k->mv, db_get_i64(k->r, i, 0)))
            rc = put_row(c, &t_keys, k->r, i);
    return rc;
}

/* Upserts into the target every row of the buckets changed since `since` (0: all). Returns
 * the number of orders copied, or an ERR_*. */
static int copy_pass(struct mover *mv, int64_t since)
{
    char osql[768], isql[256], hsql[256], ksql[512];
    select_sql(&t_orders, "WHERE id > $1 AND updated_at >= $2 ORDER BY id LIMIT $3", osql,
               sizeof osql);
    select_sql(&t_items, "WHERE order_id = $1 ORDER BY line", isql, sizeof isql);
    select_sql(&t_hist, "WHERE order_id = $1 ORDER BY id", hsql, sizeof hsql);
    select_sql(&t_keys, "WHERE updated_at >= $1", ksql, sizeof ksql);
    int64_t last = 0;
    int copied = 0, rc = 0;
    for (;;) {
        struct page p = {0};
        struct db_val a[] = {DB_INT(last), DB_INT(since), DB_INT(PAGE)};
        if ((rc = db_query_once(mv->src, osql, 3, a, &p.orders)) < 0)
            break;
        int got = db_rows_count(p.orders);
        for (int i = 0; i < got && rc >= 0; i++) {
            last = db_get_i64(p.orders, i, 0);
            if (!in_range(mv, db_get_i64(p.orders, i, 1)))
                continue;
            struct db_val q[] = {DB_INT(last)};
            p.rows[p.n] = i;
            p.items[p.n] = p.hist[p.n] = NULL;
            int k = p.n++;
            if ((rc = db_query_once(mv->src, isql, 1, q, &p.items[k])) >= 0)
                rc = db_query_once(mv->src, hsql, 1, q, &p.hist[k]);
        }
        if (rc >= 0 && p.n > 0)
            rc = db_transact(mv->dst, page_tx, NULL, &p);
        copied += p.n;
        page_free(&p);
        if (rc < 0 || got < PAGE)
            break;
    }
    if (rc >= 0) {
        struct keys_ctx k = {mv, NULL};
        struct db_val a[] = {DB_INT(since)};
        if ((rc = db_query_once(mv->src, ksql, 1, a, &k.r)) >= 0)
            rc = db_transact(mv->dst, keys_tx, NULL, &k);
        db_rows_free(k.r);
    }
    return rc < 0 ? rc : copied;
}

/* --- comparing and deleting the buckets' rows --- */

struct digest {
    int64_t orders, items, hist, keys;
    uint64_t h_orders, h_keys;
};

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return (h ^ 0xff) * 0x100000001b3ULL;
}

static int digest_of(const struct mover *mv, struct db *db, struct digest *d)
{
    memset(d, 0, sizeof *d);
    struct db_rows *o = NULL, *i = NULL, *h = NULL, *k = NULL;
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    struct db_stmt st[] = {
        {.sql = "SELECT id, user_id, status, updated_at, shipment_id, compensated, retryable, "
                "failure_reason FROM orders",
         .out = &o},
        {.sql = "SELECT o.user_id, COUNT(*) FROM order_items i JOIN orders o ON o.id = "
                "i.order_id GROUP BY o.user_id",
         .out = &i},
        {.sql = "SELECT o.user_id, COUNT(*) FROM order_history h JOIN orders o ON o.id = "
                "h.order_id GROUP BY o.user_id",
         .out = &h},
        {.sql = "SELECT user_id, idem_key, state, updated_at, order_id, outcome_err FROM "
                "idempotency_keys",
         .out = &k},
    };
    /* One snapshot of the four (the fence keeps them still; this is for the honest count). */
    if ((rc = db_begin(c)) == 0)
        rc = db_query_many(c, st, 4, false);
    db_rollback(c);
    db_conn_give(c);
    for (int r = 0; rc >= 0 && r < db_rows_count(o); r++) {
        if (!in_range(mv, db_get_i64(o, r, 1)))
            continue;
        d->orders++;
        uint64_t x = 0xcbf29ce484222325ULL;
        for (int col = 0; col < 8; col++)
            x = fnv(x, db_get(o, r, col));
        d->h_orders += x;
    }
    for (int r = 0; rc >= 0 && r < db_rows_count(i); r++)
        if (in_range(mv, db_get_i64(i, r, 0)))
            d->items += db_get_i64(i, r, 1);
    for (int r = 0; rc >= 0 && r < db_rows_count(h); r++)
        if (in_range(mv, db_get_i64(h, r, 0)))
            d->hist += db_get_i64(h, r, 1);
    for (int r = 0; rc >= 0 && r < db_rows_count(k); r++) {
        if (!in_range(mv, db_get_i64(k, r, 0)))
            continue;
        d->keys++;
        uint64_t x = 0xcbf29ce484222325ULL;
        for (int col = 0; col < 6; col++)
            x = fnv(x, db_get(k, r, col));
        d->h_keys += x;
    }
    db_rows_free(o);
    db_rows_free(i);
    db_rows_free(h);
    db_rows_free(k);
    return rc < 0 ? rc : 0;
}

struct del_ctx {
    const struct mover *mv;
    struct db_rows *orders, *keys;
};

static int delete_tx(struct db_conn *c, void *ctx)
{
    struct del_ctx *d = ctx;
    int rc = 0;
    for (int r = 0; rc >= 0 && r < db_rows_count(d->orders); r++) {
        if (!in_range(d->mv, db_get_i64(d->orders, r, 1)))
            continue;
        struct db_val a[] = {DB_INT(db_get_i64(d->orders, r, 0))};
        struct db_stmt st[] = {
            {.sql = "DELETE FROM order_items WHERE order_id = $1", .n = 1, .args = a},
            {.sql = "DELETE FROM order_history WHERE order_id = $1", .n = 1, .args = a},
            {.sql = "DELETE FROM orders WHERE id = $1", .n = 1, .args = a},
        };
        rc = db_query_many(c, st, 3, false);
    }
    for (int r = 0; rc >= 0 && r < db_rows_count(d->keys); r++) {
        if (!in_range(d->mv, db_get_i64(d->keys, r, 0)))
            continue;
        struct db_val a[] = {DB_INT(db_get_i64(d->keys, r, 0)), DB_TEXT(db_get(d->keys, r, 1))};
        rc = db_query(c, "DELETE FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2", 2, a,
                      NULL);
    }
    return rc < 0 ? rc : 0;
}

/* Deletes every row of the buckets from db (the source after the switch; the target before a
 * whole re-copy). Returns the number of orders deleted or an ERR_*. */
static int delete_buckets(const struct mover *mv, struct db *db)
{
    struct del_ctx d = {mv, NULL, NULL};
    int rc = db_query_once(db, "SELECT id, user_id FROM orders", 0, NULL, &d.orders);
    if (rc >= 0)
        rc = db_query_once(db, "SELECT user_id, idem_key FROM idempotency_keys", 0, NULL, &d.keys);
    int n = 0;
    for (int r = 0; rc >= 0 && r < db_rows_count(d.orders); r++)
        n += in_range(mv, db_get_i64(d.orders, r, 1));
    if (rc >= 0)
        rc = db_transact(db, delete_tx, NULL, &d);
    db_rows_free(d.orders);
    db_rows_free(d.keys);
    return rc < 0 ? rc : n;
}

/* --- the move's steps --- */

static void crash_point(const char *step)
{
    const char *at = getenv("EMPORIUM_TEST_RESHARD_STOP_AFTER");
    if (at && !strcmp(at, step)) {
        printf("stopping after step %s (EMPORIUM_TEST_RESHARD_STOP_AFTER)\n", step);
        fflush(stdout);
        _exit(3); /* as a crash would: nothing after this step happens */
    }
}

struct step_ctx {
    struct mover *mv;
    const char *to;
    int64_t since;
    bool bump; /* move the map's version on (fence, switch) */
    bool switch_map;
};

static int step_tx(struct db_conn *c, void *vctx)
{
    struct step_ctx *s = vctx;
    struct mover *mv = s->mv;
    int rc = 0;
    int64_t v = 0;
    if (s->switch_map) {
        int64_t have;
        unsigned char shard[ORDER_BUCKETS], fenced[ORDER_BUCKETS];
        /* Read on this connection's transaction: the map cannot change under it. */
        struct db_rows *m = NULL;
        rc = db_query(c, "SELECT lo, hi, shard FROM shard_map ORDER BY lo", 0, NULL, &m);
        memset(shard, 0xFF, sizeof shard);
        for (int i = 0; rc >= 0 && i < db_rows_count(m); i++)
            for (int64_t b = db_get_i64(m, i, 0); b <= db_get_i64(m, i, 1); b++)
                if (b >= 0 && b < ORDER_BUCKETS)
                    shard[b] = (unsigned char)db_get_i64(m, i, 2);
        db_rows_free(m);
        (void)have;
        (void)fenced;
        for (unsigned b = mv->lo; b <= mv->hi; b++)
            shard[b] = (unsigned char)mv->dstn;
        if (rc >= 0)
            rc = db_query(c, "DELETE FROM shard_map", 0, NULL, NULL);
        for (int b = 0; rc >= 0 && b < ORDER_BUCKETS;) {
            int e = b;
            while (e + 1 < ORDER_BUCKETS && shard[e + 1] == shard[b])
                e++;
            struct db_val a[] = {DB_INT(b), DB_INT(e), DB_INT(shard[b])};
            rc = db_query(c, "INSERT INTO shard_map (lo, hi, shard) VALUES ($1, $2, $3)", 3, a,
                          NULL);
            b = e + 1;
        }
    }
    if (rc >= 0 && s->bump) {
        struct db_rows *r = NULL;
        rc = db_query(c, "UPDATE shard_map_version SET version = version + 1 WHERE one = 1", 0,
                      NULL, NULL);
        if (rc >= 0)
            rc = db_query(c, "SELECT version FROM shard_map_version WHERE one = 1", 0, NULL, &r);
        if (rc >= 0 && db_rows_count(r) == 1)
            v = db_get_i64(r, 0, 0);
        db_rows_free(r);
    }
    if (rc >= 0) {
        struct db_val a[] = {DB_TEXT(s->to), DB_INT(s->since), DB_INT(v ? v : mv->wait_version),
                             DB_INT(now_ms()), DB_INT(mv->id)};
        rc = db_query(c,
                      "UPDATE shard_moves SET step = $1, since = $2, wait_version = $3, "
                      "updated_at = $4 WHERE id = $5",
                      5, a, NULL);
    }
    if (rc >= 0) {
        snprintf(mv->step, sizeof mv->step, "%s", s->to);
        mv->since = s->since;
        if (v)
            mv->wait_version = v;
    }
    return rc < 0 ? rc : 0;
}

static int go(struct mover *mv, const char *to, int64_t since, bool bump, bool switch_map)
{
    struct step_ctx s = {mv, to, since, bump, switch_map};
    int rc = db_transact(mv->ctl, step_tx, NULL, &s);
    if (rc < 0)
        return rc;
    printf("move %" PRId64 ": step %s%s\n", mv->id, to,
           bump ? (switch_map ? " (map switched)" : " (buckets fenced)") : "");
    fflush(stdout);
    crash_point(to);
    return 0;
}

/* Waits until every live serving process acknowledged version v (order_shards.c). */
static int wait_acks(struct mover *mv, int64_t v)
{
    int64_t deadline = mono_ms() + ACK_WAIT_MS;
    for (;;) {
        struct db_rows *r = NULL;
        struct db_val a[] = {DB_INT(now_ms() - ORDER_MAP_DEAD_MS), DB_INT(v)};
        int rc = db_query_once(mv->ctl,
                               "SELECT process, version FROM shard_map_acks WHERE seen_at >= $1 "
                               "AND version < $2",
                               2, a, &r);
        int behind = rc >= 0 ? db_rows_count(r) : 0;
        if (rc >= 0 && behind && mono_ms() > deadline)
            fprintf(stderr, "emporium shards move: process %s still serves map version %s\n",
                    db_get(r, 0, 0), db_get(r, 0, 1));
        db_rows_free(r);
        if (rc < 0)
            return rc;
        if (!behind)
            return 0;
        if (mono_ms() > deadline)
            return ERR_UNAVAILABLE;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int run_move(struct mover *mv)
{
    int rc = 0;
    if (!strcmp(mv->step, "copy")) {
        int64_t t0 = now_ms();
        if ((rc = copy_pass(mv, 0)) < 0)
            return rc;
        printf("move %" PRId64 ": copied %d orders\n", mv->id, rc);
        if ((rc = go(mv, "catchup", t0 - SINCE_MARGIN_MS, false, false)) < 0)
            return rc;
    }
    if (!strcmp(mv->step, "catchup")) {
        int64_t t1 = now_ms();
        if ((rc = copy_pass(mv, mv->since)) < 0)
            return rc;
        printf("move %" PRId64 ": caught up %d orders\n", mv->id, rc);
        if ((rc = go(mv, "fenced", t1 - SINCE_MARGIN_MS, true, false)) < 0)
            return rc;
    }
    if (!strcmp(mv->step, "fenced")) {
        if ((rc = wait_acks(mv, mv->wait_version)) < 0)
            return rc;
        if ((rc = copy_pass(mv, mv->since)) < 0)
            return rc;
        struct digest a, b;
        if ((rc = digest_of(mv, mv->src, &a)) < 0 || (rc = digest_of(mv, mv->dst, &b)) < 0)
            return rc;
        if (memcmp(&a, &b, sizeof a) != 0) {
            printf("move %" PRId64 ": the target differs (%" PRId64 "/%" PRId64
                   " orders): copying the buckets whole\n",
                   mv->id, b.orders, a.orders);
            if ((rc = delete_buckets(mv, mv->dst)) < 0 || (rc = copy_pass(mv, 0)) < 0 ||
                (rc = digest_of(mv, mv->dst, &b)) < 0)
                return rc;
            if (memcmp(&a, &b, sizeof a) != 0) {
                fprintf(stderr, "emporium shards move: the copy still differs from the source\n");
                return ERR_INTERNAL;
            }
        }
        printf("move %" PRId64 ": verified %" PRId64 " orders, %" PRId64 " lines, %" PRId64
               " history rows, %" PRId64 " keys\n",
               mv->id, a.orders, a.items, a.hist, a.keys);
        if ((rc = go(mv, "switched", mv->since, true, true)) < 0)
            return rc;
    }
    if (!strcmp(mv->step, "switched")) {
        if ((rc = wait_acks(mv, mv->wait_version)) < 0)
            return rc;
        if ((rc = delete_buckets(mv, mv->src)) < 0)
            return rc;
        printf("move %" PRId64 ": removed %d orders from orders_%u\n", mv->id, rc, mv->srcn);
        if ((rc = go(mv, "done", mv->since, false, false)) < 0)
            return rc;
    }
    return 0;
}

/* --- the command --- */

static int parse_range(const char *s, unsigned *lo, unsigned *hi)
{
    char *end;
    long a = strtol(s, &end, 10), b = a;
    if (end == s)
        return -1;
    if (*end == '-') {
        const char *t = end + 1;
        b = strtol(t, &end, 10);
        if (end == t)
            return -1;
    }
    if (*end || a < 0 || b < a || b >= ORDER_BUCKETS)
        return -1;
    *lo = (unsigned)a;
    *hi = (unsigned)b;
    return 0;
}

static int parse_shard(struct app *app, const char *s, unsigned *out)
{
    if (!strncmp(s, "orders_", 7))
        s += 7;
    char *end;
    long n = strtol(s, &end, 10);
    if (end == s || *end || n < 0 || n >= ORDER_SHARDS_MAX || !order__shard_db(app, (unsigned)n))
        return -1;
    *out = (unsigned)n;
    return 0;
}

static bool is_pg_url(const char *s)
{
    return !strncmp(s, "postgres://", 11) || !strncmp(s, "postgresql://", 13);
}

/* --to URL: the shard registered at that URL, or a new one (the next number) once its
 * database is created and migrated there — a URL that cannot be used registers nothing.
 * 0, or the command's exit code. */
static int shard_at_url(struct app *app, struct db *ctl, const char *url, unsigned *out)
{
    char red[512];
    url_redacted(url, red, sizeof red);
    if (db_dialect(ctl) != DB_POSTGRES) {
        fprintf(stderr,
                "emporium shards move: --to %s: shards on other servers need PostgreSQL "
                "(EMPORIUM_DATABASE_URL); the embedded shop keeps orders_0 … orders_%d\n",
                red, ORDER_SHARDS - 1);
        return 2;
    }
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_TEXT(url), DB_INT(ORDER_SHARDS)};
    int rc = db_query_once(ctl,
                           "SELECT (SELECT shard FROM shard_servers WHERE url = $1), "
                           "(SELECT COALESCE(MAX(shard) + 1, $2) FROM shard_servers)",
                           2, a, &r);
    if (rc < 0) {
        fprintf(stderr, "emporium shards move: %s\n", err_str(rc));
        return 1;
    }
    bool known = !db_is_null(r, 0, 0);
    int64_t n = known ? db_get_i64(r, 0, 0) : db_get_i64(r, 0, 1);
    db_rows_free(r);
    if (n >= ORDER_SHARDS_MAX) {
        fprintf(stderr, "emporium shards move: --to %s: there are %d shards already, the most\n",
                red, ORDER_SHARDS_MAX);
        return 2;
    }
    if ((rc = order__shard_attach(app, (unsigned)n, url)) < 0) {
        fprintf(stderr, "emporium shards move: --to %s: cannot open orders_%lld there: %s\n", red,
                (long long)n, err_str(rc));
        return 1;
    }
    if (!known) {
        struct db_val b[] = {DB_INT(n), DB_TEXT(url), DB_INT(now_ms())};
        rc = db_write_one(
            ctl, "INSERT INTO shard_servers (shard, url, added_at) VALUES ($1, $2, $3)", 3, b);
        if (rc < 0) {
            fprintf(stderr, "emporium shards move: registering orders_%lld: %s\n", (long long)n,
                    err_str(rc));
            return 1;
        }
        printf("orders_%lld: a new shard at %s\n", (long long)n, red);
    }
    *out = (unsigned)n;
    return 0;
}

static int cmd_move(struct app *app, const char *buckets, const char *to)
{
    struct mover mv = {.app = app, .ctl = order__map_db(app)};
    if (!buckets || parse_range(buckets, &mv.lo, &mv.hi) < 0) {
        fprintf(stderr, "emporium shards move: --buckets must be A-B with 0 <= A <= B <= %d\n",
                ORDER_BUCKETS - 1);
        return 2;
    }
    if (to && is_pg_url(to)) {
        int code = shard_at_url(app, mv.ctl, to, &mv.dstn);
        if (code)
            return code;
    } else if (!to || parse_shard(app, to, &mv.dstn) < 0) {
        fprintf(stderr,
                "emporium shards move: --to must name an open shard (orders_0 … orders_%d, or one "
                "added on another server) or a PostgreSQL URL for a new one\n",
                ORDER_SHARDS - 1);
        return 2;
    }
    struct db_rows *r = NULL;
    int rc = db_query_once(mv.ctl,
                           "SELECT id, lo, hi, src, dst, step, since, wait_version FROM "
                           "shard_moves WHERE step <> 'done' ORDER BY id",
                           0, NULL, &r);
    if (rc < 0) {
        fprintf(stderr, "emporium shards move: %s\n", err_str(rc));
        return 1;
    }
    if (db_rows_count(r) > 0) {
        bool same = db_get_i64(r, 0, 1) == mv.lo && db_get_i64(r, 0, 2) == mv.hi &&
                    db_get_i64(r, 0, 4) == mv.dstn;
        if (!same) {
            fprintf(stderr,
                    "emporium shards move: move %s (buckets %s-%s to orders_%s) is not finished: "
                    "run it again to finish it first\n",
                    db_get(r, 0, 0), db_get(r, 0, 1), db_get(r, 0, 2), db_get(r, 0, 4));
            db_rows_free(r);
            return 1;
        }
        mv.id = db_get_i64(r, 0, 0);
        mv.srcn = (unsigned)db_get_i64(r, 0, 3);
        snprintf(mv.step, sizeof mv.step, "%s", db_get(r, 0, 5));
        mv.since = db_get_i64(r, 0, 6);
        mv.wait_version = db_get_i64(r, 0, 7);
        printf("move %" PRId64 ": resuming at step %s\n", mv.id, mv.step);
    }
    db_rows_free(r);
    if (!mv.id) {
        int64_t v;
        unsigned char shard[ORDER_BUCKETS], fenced[ORDER_BUCKETS];
        if ((rc = order__map_read(mv.ctl, &v, shard, fenced)) < 0) {
            fprintf(stderr, "emporium shards move: %s\n", err_str(rc));
            return 1;
        }
        mv.srcn = shard[mv.lo];
        for (unsigned b = mv.lo; b <= mv.hi; b++)
            if (shard[b] != mv.srcn) {
                fprintf(stderr,
                        "emporium shards move: buckets %u-%u span shards orders_%u and "
                        "orders_%u: move one shard's buckets at a time\n",
                        mv.lo, mv.hi, mv.srcn, shard[b]);
                return 2;
            }
        if (mv.srcn == mv.dstn) {
            printf("buckets %u-%u are on orders_%u already\n", mv.lo, mv.hi, mv.dstn);
            return 0;
        }
        mv.id = id_new(0);
        snprintf(mv.step, sizeof mv.step, "copy");
        struct db_val a[] = {DB_INT(mv.id),   DB_INT(mv.lo),   DB_INT(mv.hi),
                             DB_INT(mv.srcn), DB_INT(mv.dstn), DB_INT(now_ms())};
        rc = db_write_one(mv.ctl,
                          "INSERT INTO shard_moves (id, lo, hi, src, dst, step, started_at, "
                          "updated_at) VALUES ($1, $2, $3, $4, $5, 'copy', $6, $6)",
                          6, a);
        if (rc < 0) {
            fprintf(stderr, "emporium shards move: %s\n", err_str(rc));
            return 1;
        }
        printf("move %" PRId64 ": buckets %u-%u from orders_%u to orders_%u\n", mv.id, mv.lo, mv.hi,
               mv.srcn, mv.dstn);
    }
    mv.src = order__shard_db(app, mv.srcn);
    mv.dst = order__shard_db(app, mv.dstn);
    if (!mv.src || !mv.dst) {
        fprintf(stderr, "emporium shards move: orders_%u is not open here\n",
                mv.src ? mv.dstn : mv.srcn);
        return 1;
    }
    if ((rc = run_move(&mv)) < 0) {
        fprintf(stderr,
                "emporium shards move: move %" PRId64 " stopped at step %s: %s (run the same "
                "command again to resume)\n",
                mv.id, mv.step, err_str(rc));
        return 1;
    }
    printf("move %" PRId64 ": done\n", mv.id);
    return 0;
}

static int cmd_status(struct app *app)
{
    struct db *ctl = order__map_db(app);
    int64_t v;
    unsigned char shard[ORDER_BUCKETS], fenced[ORDER_BUCKETS];
    int rc = order__map_read(ctl, &v, shard, fenced);
    if (rc < 0) {
        fprintf(stderr, "emporium shards status: %s\n", err_str(rc));
        return 1;
    }
    printf("map version %" PRId64 ": %d buckets, %d per id group\n", v, ORDER_BUCKETS,
           ORDER_BUCKETS_PER_GROUP);
    for (int b = 0; b < ORDER_BUCKETS;) {
        int e = b;
        while (e + 1 < ORDER_BUCKETS && shard[e + 1] == shard[b] && fenced[e + 1] == fenced[b])
            e++;
        printf("buckets %d-%d -> orders_%d%s\n", b, e, shard[b], fenced[b] ? " (fenced)" : "");
        b = e + 1;
    }
    /* where the shards on other servers are */
    char where[ORDER_SHARDS_MAX][512] = {{0}};
    struct db_rows *r = NULL;
    if (db_query_once(ctl, "SELECT shard, url FROM shard_servers ORDER BY shard", 0, NULL, &r) >= 0)
        for (int i = 0; i < db_rows_count(r); i++) {
            int64_t s = db_get_i64(r, i, 0);
            if (s >= 0 && s < ORDER_SHARDS_MAX) {
                char red[480];
                snprintf(where[s], sizeof where[s], " (at %s)",
                         url_redacted(db_get(r, i, 1), red, sizeof red));
            }
        }
    db_rows_free(r);
    for (int s = 0; s < ORDER_SHARDS_MAX; s++) {
        struct db *db = order__shard_db(app, (unsigned)s);
        if (!db && !where[s][0])
            continue;
        r = NULL;
        rc = db ? db_query_once(db, "SELECT COUNT(*) FROM orders", 0, NULL, &r) : ERR_UNAVAILABLE;
        if (rc >= 0)
            printf("shard orders_%d: %s orders%s\n", s, db_get(r, 0, 0), where[s]);
        else
            printf("shard orders_%d: %s%s\n", s, err_str(rc), where[s]);
        db_rows_free(r);
    }
    r = NULL;
    if (db_query_once(ctl,
                      "SELECT id, lo, hi, src, dst, step FROM shard_moves WHERE step <> 'done' "
                      "ORDER BY id",
                      0, NULL, &r) >= 0)
        for (int i = 0; i < db_rows_count(r); i++)
            printf("move %s: buckets %s-%s orders_%s -> orders_%s, at step %s (unfinished)\n",
                   db_get(r, i, 0), db_get(r, i, 1), db_get(r, i, 2), db_get(r, i, 3),
                   db_get(r, i, 4), db_get(r, i, 5));
    db_rows_free(r);
    r = NULL;
    struct db_val a[] = {DB_INT(now_ms() - ORDER_MAP_DEAD_MS)};
    if (db_query_once(ctl,
                      "SELECT process, version FROM shard_map_acks WHERE seen_at >= $1 ORDER BY "
                      "process",
                      1, a, &r) >= 0)
        for (int i = 0; i < db_rows_count(r); i++)
            printf("process %s: serves version %s\n", db_get(r, i, 0), db_get(r, i, 1));
    db_rows_free(r);
    return 0;
}

int order__shards_command(struct app *app, int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "status"))
        return cmd_status(app);
    if (argc >= 2 && !strcmp(argv[1], "move")) {
        const char *buckets = NULL, *to = NULL;
        for (int i = 2; i + 1 < argc; i += 2) {
            if (!strcmp(argv[i], "--buckets"))
                buckets = argv[i + 1];
            else if (!strcmp(argv[i], "--to"))
                to = argv[i + 1];
        }
        return cmd_move(app, buckets, to);
    }
    fprintf(stderr, "usage: emporium shards status | move --buckets A-B --to orders_N|URL\n");
    return 2;
}

static const struct cli_flag move_flags[] = {
    {"--buckets", "A-B", "the buckets to move (0 to 3071), all on one shard today", 0, 0, true},
    {"--to", "SHARD|URL",
     "the shard that gets them: orders_0 … orders_5, one added before, or a PostgreSQL URL "
     "(a new shard on that server, database <URL's database>_orders_<n>)",
     0, 0, true},
    {NULL, NULL, NULL, 0, 0, false},
};
static const struct cli_command shards_subcommands[] = {
    {"status", "the shard map: which shard holds which buckets, unfinished moves, processes",
     "emporium shards status", NULL, NULL},
    {"move", "move buckets to another shard online (run again to resume an interrupted move)",
     "emporium shards move --buckets 512-1023 --to orders_3", move_flags, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};
const struct cli_command order__shards_cli = {"shards",
                                              "the order shard map: status, move buckets online",
                                              "emporium shards status", NULL, shards_subcommands};
