/* SPDX-License-Identifier: MIT */
/* inventory_store.c — the `inventory` database: its schema and every SQL statement on it.
 *
 * Stock only ever leaves `available` through one conditional statement,
 *     UPDATE inventory SET available = available - q, reserved = reserved + q
 *     WHERE product_id = $1 AND available >= q
 * whose affected-row count says whether it happened; the database evaluates the condition
 * under the row's write lock (PostgreSQL re-checks it after waiting for a concurrent writer,
 * SQLite serialises writers with BEGIN IMMEDIATE), so no interleaving can take more than is
 * there. The schema's CHECK constraints (available >= 0, reserved >= 0) back this up. A
 * reservation's status only moves by `UPDATE … WHERE id = $1 AND status = <seen>`, so of two
 * racing transitions exactly one applies. The rules that combine these statements are in
 * inventory.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/buf.h"
#include "emporium/err.h"
#include "emporium/outbox.h"
#include "inventory_internal.h"

static const struct db_migration inventory_migrations[] = {
    {.sql = "CREATE TABLE inventory ("
            " product_id BIGINT PRIMARY KEY,"
            " available BIGINT NOT NULL CHECK (available >= 0),"
            " reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),"
            " updated_at BIGINT NOT NULL);"
            "CREATE TABLE reservations ("
            " id BIGINT PRIMARY KEY,"
            " status TEXT NOT NULL CHECK (status IN ('active', 'confirmed', 'released')),"
            " created_at BIGINT NOT NULL,"
            " expires_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL);"
            "CREATE INDEX reservations_expiry ON reservations (status, expires_at);"
            "CREATE TABLE reservation_items ("
            " reservation_id BIGINT NOT NULL REFERENCES reservations(id) ON DELETE CASCADE,"
            " product_id BIGINT NOT NULL,"
            " quantity INTEGER NOT NULL CHECK (quantity > 0),"
            " PRIMARY KEY (reservation_id, product_id));"},
    {.sql = OUTBOX_MIGRATION},
    {.sql = OUTBOX_QUEUE_MIGRATION},
    /* The expiry sweep's index holds the active reservations only: a confirmed one leaves
     * it instead of moving within it at every checkout. */
    {.sql = "DROP INDEX reservations_expiry;"
            "CREATE INDEX reservations_expiry ON reservations (expires_at) "
            "WHERE status = 'active';"},
};

const struct service_db inventory__dbs[] = {
    {"inventory", 0, inventory_migrations,
     sizeof inventory_migrations / sizeof inventory_migrations[0]},
    {NULL, 0, NULL, 0},
};

/* One statement whose row count does not matter: 0 or ERR_*. */
static int exec(struct db_conn *c, const char *sql, int n, const struct db_val *args)
{
    int rc = db_query(c, sql, n, args, NULL);
    return rc < 0 ? rc : 0;
}

/* ---------------------------------------------------------------- levels */

int inventory__store_level(struct db_conn *c, int64_t product_id, int64_t *available,
                           int64_t *reserved)
{
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(product_id)};
    int rc =
        db_query(c, "SELECT available, reserved FROM inventory WHERE product_id = $1", 1, a, &r);
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

int inventory__store_put(struct db_conn *c, int64_t product_id, int64_t available, int64_t now)
{
    struct db_val a[] = {DB_INT(product_id), DB_INT(available), DB_INT(now)};
    return exec(c,
                "INSERT INTO inventory (product_id, available, reserved, updated_at) "
                "VALUES ($1, $2, 0, $3) ON CONFLICT (product_id) DO UPDATE SET "
                "available = excluded.available, updated_at = excluded.updated_at",
                3, a);
}

/* Multi-row upserts of PUT_MANY_BATCH rows per statement: 100k rows are 200 statements. */
#define PUT_MANY_BATCH 500

int inventory__store_put_many(struct db_conn *c, const int64_t *ids, const int64_t *available,
                              int n, int64_t now)
{
    struct db_val *a = malloc(sizeof(struct db_val) * PUT_MANY_BATCH * 2);
    if (!a)
        return ERR_NOMEM;
    int rc = 0;
    for (int off = 0; off < n && rc >= 0; off += PUT_MANY_BATCH) {
        int k = n - off < PUT_MANY_BATCH ? n - off : PUT_MANY_BATCH;
        struct buf sql = BUF_INIT(0);
        buf_puts(&sql, "INSERT INTO inventory (product_id, available, reserved, updated_at) "
                       "VALUES ");
        for (int i = 0; i < k; i++) {
            buf_printf(&sql, "%s($%d, $%d, 0, %lld)", i ? "," : "", 2 * i + 1, 2 * i + 2,
                       (long long)now);
            a[2 * i] = DB_INT(ids[off + i]);
            a[2 * i + 1] = DB_INT(available[off + i]);
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

int inventory__store_give(struct db_conn *c, int64_t product_id, int q, bool from_reserved,
                          int64_t now)
{
    struct db_val a[] = {DB_INT(product_id), DB_INT(q), DB_INT(now)};
    return db_query(c,
                    from_reserved
                        ? "UPDATE inventory SET available = available + $2, "
                          "reserved = reserved - $2, updated_at = $3 WHERE product_id = $1"
                        : "UPDATE inventory SET available = available + $2, "
                          "updated_at = $3 WHERE product_id = $1",
                    3, a, NULL);
}

int inventory__store_unreserve_many(struct db_conn *c, const struct inventory_item *items, int n,
                                    int64_t now)
{
    struct db_val a[DB_STMT_MAX][3];
    struct db_stmt st[DB_STMT_MAX];
    for (int off = 0; off < n; off += DB_STMT_MAX) {
        int k = n - off < DB_STMT_MAX ? n - off : DB_STMT_MAX;
        for (int i = 0; i < k; i++) {
            a[i][0] = DB_INT(items[off + i].product_id);
            a[i][1] = DB_INT(items[off + i].quantity);
            a[i][2] = DB_INT(now);
            st[i] = (struct db_stmt){.sql = "UPDATE inventory SET reserved = reserved - $2, "
                                            "updated_at = $3 WHERE product_id = $1",
                                     .n = 3,
                                     .args = a[i]};
        }
        int rc = db_query_many(c, st, k, false);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- reservations */

/* The take of the file's header: product $1, quantity $2, at $3; the level after it. */
#define TAKE_SQL                                                                                   \
    "UPDATE inventory SET available = available - $2, reserved = reserved + $2, "                  \
    "updated_at = $3 WHERE product_id = $1 AND available >= $2 RETURNING available"

/* Statements of one reservation pipeline: the reservation row, RESERVE_CHUNK takes, one
 * multi-row insert of their lines and the caller's tail (DB_STMT_MAX bounds a
 * db_query_many call). */
#define RESERVE_CHUNK (DB_STMT_MAX - 3)

int inventory__store_reserve(struct db_conn *c, int64_t id, int64_t now, int64_t expires,
                             const struct inventory_item *items, int n, int64_t *after,
                             int64_t *short_product, const struct db_stmt *tail)
{
    struct db_val ra[] = {DB_INT(id), DB_INT(now), DB_INT(expires)};
    struct db_val ta[RESERVE_CHUNK][3];
    struct db_val la[RESERVE_CHUNK * 3];
    struct db_rows *rows[RESERVE_CHUNK];
    struct db_stmt st[DB_STMT_MAX];
    char lines[64 + RESERVE_CHUNK * 32];
    for (int off = 0; off < n; off += RESERVE_CHUNK) {
        int k = n - off < RESERVE_CHUNK ? n - off : RESERVE_CHUNK, ns = 0;
        if (off == 0)
            st[ns++] = (struct db_stmt){
                .sql = "INSERT INTO reservations (id, status, created_at, expires_at, updated_at) "
                       "VALUES ($1, 'active', $2, $3, $2) ON CONFLICT (id) DO NOTHING",
                .n = 3,
                .args = ra};
        int len = snprintf(lines, sizeof lines,
                           "INSERT INTO reservation_items (reservation_id, product_id, quantity) "
                           "VALUES ");
        for (int i = 0; i < k; i++) {
            const struct inventory_item *it = &items[off + i];
            ta[i][0] = DB_INT(it->product_id);
            ta[i][1] = DB_INT(it->quantity);
            ta[i][2] = DB_INT(now);
            rows[i] = NULL;
            st[ns++] = (struct db_stmt){.sql = TAKE_SQL, .n = 3, .args = ta[i], .out = &rows[i]};
            la[3 * i] = DB_INT(id);
            la[3 * i + 1] = DB_INT(it->product_id);
            la[3 * i + 2] = DB_INT(it->quantity);
            len += snprintf(lines + len, sizeof lines - (size_t)len, "%s($%d, $%d, $%d)",
                            i ? ", " : "", 3 * i + 1, 3 * i + 2, 3 * i + 3);
        }
        st[ns++] = (struct db_stmt){.sql = lines, .n = 3 * k, .args = la};
        if (tail && off + k == n)
            st[ns++] = *tail;
        int rc = db_query_many(c, st, ns, false);
        int result = rc < 0 ? rc : 0;
        /* No row inserted: the reservation exists (a retried or concurrent duplicate); what
         * ran after it (its lines then conflict) is rolled back by the caller. */
        if (off == 0 && st[0].rc == 0)
            result = 1;
        for (int i = 0; i < k; i++) {
            if (result == 0 && db_rows_count(rows[i]) != 1) {
                *short_product = items[off + i].product_id;
                result = ERR_CONFLICT;
            }
            if (result == 0)
                after[off + i] = db_get_i64(rows[i], 0, 0);
            db_rows_free(rows[i]);
        }
        if (result != 0)
            return result;
    }
    return 0;
}

/* Items of one fast reservation: its row, the items, the tail in one pipeline. */
#define FAST_MAX (DB_STMT_MAX - 2)

int inventory__store_reserve_fast(struct db *db, int64_t id, int64_t now, int64_t expires,
                                  const struct inventory_item *items, int n, int64_t *after,
                                  const struct db_stmt *tail)
{
    if (n > FAST_MAX)
        return 1;
    struct db_val ra[] = {DB_INT(id), DB_INT(now), DB_INT(expires)};
    struct db_val ta[FAST_MAX][5];
    struct db_rows *rows[FAST_MAX];
    struct db_stmt st[DB_STMT_MAX];
    int ns = 0;
    /* No ON CONFLICT: an existing reservation (a retried or concurrent duplicate) fails the
     * pipeline, and the caller's transaction finds it. */
    st[ns++] = (struct db_stmt){
        .sql = "INSERT INTO reservations (id, status, created_at, expires_at, updated_at) "
               "VALUES ($1, 'active', $2, $3, $2)",
        .n = 3,
        .args = ra};
    for (int i = 0; i < n; i++) {
        ta[i][0] = DB_INT(items[i].product_id);
        ta[i][1] = DB_INT(items[i].quantity);
        ta[i][2] = DB_INT(now);
        ta[i][3] = DB_INT(id);
        ta[i][4] = DB_INT(INVENTORY_LOW_STOCK);
        rows[i] = NULL;
        /* The take is the conditional statement of the file's header. Its line gets quantity
         * 0 — refused by the CHECK (quantity > 0), which fails the pipeline — when the take
         * did not happen (short, or no stock row) or crossed the low-stock mark, the one case
         * that needs an event written with the reservation. */
        st[ns++] = (struct db_stmt){
            .sql = "WITH u AS (" TAKE_SQL ") "
                   "INSERT INTO reservation_items (reservation_id, product_id, quantity) "
                   "SELECT $4, $1, CASE WHEN u.available >= $5 OR u.available + $2 < $5 "
                   "THEN $2 ELSE 0 END FROM (SELECT 1) x LEFT JOIN u ON true "
                   "RETURNING (SELECT available FROM u)",
            .n = 5,
            .args = ta[i],
            .out = &rows[i]};
    }
    if (tail)
        st[ns++] = *tail;
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc == 0) {
        rc = db_query_many(c, st, ns, true);
        db_conn_give(c);
    }
    if (rc == ERR_CONFLICT)
        rc = 1;
    for (int i = 0; i < n; i++) {
        if (rc == 0 && db_rows_count(rows[i]) == 1)
            after[i] = db_get_i64(rows[i], 0, 0);
        else if (rc == 0)
            rc = ERR_INTERNAL;
        db_rows_free(rows[i]);
    }
    return rc;
}

int inventory__store_resv_load(struct db_conn *c, int64_t id, struct inventory__resv *out)
{
    struct db_rows *r = NULL, *ir = NULL;
    struct db_val a[] = {DB_INT(id)};
    /* The row and its lines in one round trip. */
    struct db_stmt st[] = {
        {.sql = "SELECT status, expires_at FROM reservations WHERE id = $1",
         .n = 1,
         .args = a,
         .out = &r},
        {.sql = "SELECT product_id, quantity FROM reservation_items WHERE reservation_id = $1 "
                "ORDER BY product_id",
         .n = 1,
         .args = a,
         .out = &ir},
    };
    int rc = db_query_many(c, st, 2, false);
    if (rc >= 0 && db_rows_count(r) != 1)
        rc = ERR_NOTFOUND;
    if (rc >= 0) {
        snprintf(out->status, sizeof out->status, "%s", db_get(r, 0, 0));
        out->expires_at = db_get_i64(r, 0, 1);
        out->n = db_rows_count(ir);
        free(out->items);
        out->items = calloc((size_t)(out->n ? out->n : 1), sizeof *out->items);
        if (!out->items)
            rc = ERR_NOMEM;
        for (int i = 0; rc >= 0 && i < out->n; i++) {
            out->items[i].product_id = db_get_i64(ir, i, 0);
            out->items[i].quantity = (int)db_get_i64(ir, i, 1);
        }
    }
    db_rows_free(r);
    db_rows_free(ir);
    return rc < 0 ? rc : 0;
}

int inventory__store_confirm_one(struct db_conn *c, int64_t id, int64_t now,
                                 const struct db_val *event)
{
    struct db_val a[2 + OUTBOX_NARGS] = {DB_INT(id), DB_INT(now)};
    for (int i = 0; i < OUTBOX_NARGS; i++)
        a[2 + i] = event[i];
    /* The lines' rows are locked in product order (one order everywhere: no deadlock
     * between two confirms of overlapping lines). The expiry is tested as a difference so
     * that no index can serve it: as `expires_at > $2`, a table without statistics yet (a
     * young shop: autovacuum had not analysed it) made the planner pick the partial index
     * reservations_expiry and walk every active reservation instead of the primary key —
     * 290-380 us a confirm under the bench's load instead of ~100. */
    return db_query(c,
                    "WITH m AS (UPDATE reservations SET status = 'confirmed', updated_at = $2 "
                    "WHERE id = $1 AND status = 'active' AND expires_at - $2 > 0 RETURNING id), "
                    "l AS (SELECT i.product_id, ri.quantity FROM inventory i "
                    "JOIN reservation_items ri ON ri.product_id = i.product_id "
                    "WHERE ri.reservation_id = (SELECT id FROM m) ORDER BY i.product_id "
                    "FOR UPDATE OF i), "
                    "u AS (UPDATE inventory SET reserved = inventory.reserved - l.quantity, "
                    "updated_at = $2 FROM l WHERE inventory.product_id = l.product_id) "
                    "INSERT INTO outbox (" OUTBOX_COLUMNS ") "
                    "SELECT $3, $4, $5, $6, $7, $8, $9 FROM m",
                    2 + OUTBOX_NARGS, a, NULL);
}

int inventory__store_resv_move(struct db_conn *c, int64_t id, const char *from, const char *to,
                               int64_t now)
{
    struct db_val a[] = {DB_INT(id), DB_TEXT(from), DB_TEXT(to), DB_INT(now)};
    return db_query(c,
                    "UPDATE reservations SET status = $3, updated_at = $4 "
                    "WHERE id = $1 AND status = $2",
                    4, a, NULL);
}

int inventory__store_expired(struct db *db, int64_t now, int max, int64_t **ids)
{
    *ids = NULL;
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(now), DB_INT(max)};
    int rc = db_query_once(db, /* ERR_UNAVAILABLE when this process does not run the service */
                           "SELECT id FROM reservations WHERE status = 'active' "
                           "AND expires_at <= $1 ORDER BY expires_at LIMIT $2",
                           2, a, &r);
    if (rc < 0)
        return rc;
    int n = db_rows_count(r);
    *ids = malloc((size_t)(n ? n : 1) * sizeof **ids);
    if (!*ids) {
        db_rows_free(r);
        return ERR_NOMEM;
    }
    for (int i = 0; i < n; i++)
        (*ids)[i] = db_get_i64(r, i, 0);
    db_rows_free(r);
    return n;
}
