/* SPDX-License-Identifier: MIT */
/* cart_store.c — every SQL statement of the cart service, and its schema.
 *
 * Functions run on a connection the caller holds, inside the caller's transaction (cart__tx)
 * unless their comment says otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#define EMPORIUM_SERVICE_NO_HTTP /* a layered service: no HTTP types below _http.c */
#include "emporium/service.h"
#include "cart_internal.h"

int cart__tx(struct app *app, cart_tx_fn fn, void *ctx)
{
    /* Group commit: the change runs as one intent of the carts database's writer, which
     * commits it with the other carts' changes of the moment (db_write, emporium/db.h). */
    return db_write(app_db(app, "carts"), fn, NULL, ctx);
}

void cart__view_clear(struct cart_view *v)
{
    free(v->items);
    v->items = NULL;
    v->n = 0;
}

static const char *owner_col(const struct cart_owner *o)
{
    return o->user_id ? "user_id" : "token_hash";
}

static struct db_val owner_val(const struct cart_owner *o)
{
    return o->user_id ? DB_INT(o->user_id) : DB_TEXT(o->token_hash);
}

static int changed(int rc) { return rc < 0 ? rc : (rc > 0 ? 1 : 0); }

int cart__store_find(struct db_conn *c, const struct cart_owner *o, int64_t *cart_id)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT id FROM carts WHERE %s = $1", owner_col(o));
    struct db_val a[] = {owner_val(o)};
    struct db_rows *r = NULL;
    int rc = db_query(c, sql, 1, a, &r);
    if (rc < 0)
        return rc;
    rc = db_rows_count(r) == 1 ? 0 : ERR_NOTFOUND;
    if (rc == 0)
        *cart_id = db_get_i64(r, 0, 0);
    db_rows_free(r);
    return rc;
}

/* The UPDATE both locks the row and names the cart (RETURNING): one statement. */
static int lock_row(struct db_conn *c, const char *sql, const struct db_val *a, int64_t *cart_id)
{
    struct db_rows *r = NULL;
    int rc = db_query(c, sql, 2, a, &r);
    if (rc >= 0) {
        rc = db_rows_count(r) == 1 ? 1 : 0;
        if (rc)
            *cart_id = db_get_i64(r, 0, 0);
    }
    db_rows_free(r);
    return rc;
}

/* A cart's updated_at (what the guest-cart sweep reads) moves on only when it is a minute
 * old or more: the column is indexed, so an UPDATE that changes it cannot be a HOT update and
 * leaves a new entry in each of the table's four indexes, for every add and every checkout;
 * one that leaves it as it is (rev is not indexed) stays on its page. A minute is nothing
 * against a TTL counted in days. v: the new time (bigint). */
#define TOUCH(v)                                                                                   \
    "updated_at = CASE WHEN carts.updated_at < " v " - 60000 THEN " v " ELSE carts.updated_at END"

int cart__store_lock(struct db_conn *c, const struct cart_owner *o, bool create, int64_t *cart_id)
{
    int64_t now = now_ms();
    char sql[256];
    /* rev: past any change of a Redis copy in flight (cart_redis.c) */
    snprintf(sql, sizeof sql,
             "UPDATE carts SET " TOUCH("CAST($2 AS BIGINT)") ", rev = rev + 1000000 WHERE %s = $1 "
                                                             "RETURNING id",
             owner_col(o));
    struct db_val a[] = {owner_val(o), DB_INT(now)};
    int rc = lock_row(c, sql, a, cart_id);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        if (!create)
            return ERR_NOTFOUND;
        /* A concurrent creator makes this a no-op (PostgreSQL waits for it to commit); the
         * UPDATE after it then locks whichever row won. */
        struct db_val ia[] = {DB_INT(id_new(0)), o->user_id ? DB_INT(o->user_id) : DB_NULLV,
                              o->user_id ? DB_NULLV : DB_TEXT(o->token_hash), DB_INT(now)};
        rc = db_query(c,
                      "INSERT INTO carts (id, user_id, token_hash, created_at, updated_at) "
                      "VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
                      4, ia, NULL);
        if (rc < 0)
            return rc;
        if ((rc = lock_row(c, sql, a, cart_id)) < 0)
            return rc;
        if (rc != 1)
            return ERR_BUSY;
    }
    return 0;
}

/* Rows of (product_id, name, quantity, unit_price, currency, added_at) into a view. */
/* The lines of rows [from, to) of r, whose columns from col on are product_id, name,
 * quantity, unit_price, currency, added_at. */
static int view_fill_range(const struct db_rows *r, int from, int to, int col,
                           struct cart_view *out)
{
    cart__view_clear(out);
    int n = to - from;
    if (n > 0 && !(out->items = malloc((size_t)n * sizeof *out->items)))
        return ERR_NOMEM;
    out->n = n;
    for (int i = 0; i < n; i++) {
        struct cart_item *it = &out->items[i];
        int row = from + i;
        const char *name = db_get(r, row, col + 1), *cur = db_get(r, row, col + 4);
        it->product_id = db_get_i64(r, row, col);
        snprintf(it->name, sizeof it->name, "%s", name ? name : "");
        it->quantity = (int)db_get_i64(r, row, col + 2);
        it->unit_price = db_get_i64(r, row, col + 3);
        snprintf(it->currency, sizeof it->currency, "%s", cur ? cur : "");
        it->added_at = db_get_i64(r, row, col + 5);
    }
    return 0;
}

static int view_fill(const struct db_rows *r, struct cart_view *out)
{
    return view_fill_range(r, 0, db_rows_count(r), 0, out);
}

int cart__store_load(struct db_conn *c, int64_t cart_id, struct cart_view *out)
{
    struct db_val a[] = {DB_INT(cart_id), DB_INT(CART_MAX_LINES)};
    struct db_rows *r = NULL;
    int rc = db_query(c,
                      "SELECT product_id, name, quantity, unit_price, currency, added_at "
                      "FROM cart_items "
                      "WHERE cart_id = $1 ORDER BY added_at, product_id LIMIT $2",
                      2, a, &r);
    if (rc < 0)
        return rc;
    rc = view_fill(r, out);
    db_rows_free(r);
    return rc;
}

int cart__store_shape(struct db_conn *c, int64_t cart_id, int64_t *lines, char currency[4])
{
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(cart_id)};
    int rc =
        db_query(c, "SELECT count(*), MIN(currency) FROM cart_items WHERE cart_id = $1", 1, a, &r);
    if (rc < 0)
        return rc;
    *lines = db_get_i64(r, 0, 0);
    snprintf(currency, 4, "%s", db_get(r, 0, 1) ? db_get(r, 0, 1) : "");
    db_rows_free(r);
    return 0;
}

void cart__store_add_stmts(struct cart_add_stmts *a, const struct cart_owner *o,
                           const struct cart_item *it, int max_qty, int max_lines, int64_t now)
{
    const char *col = owner_col(o);
    snprintf(a->cart_sql, sizeof a->cart_sql,
             "INSERT INTO carts (id, user_id, token_hash, created_at, updated_at) "
             "VALUES ($1, $2, $3, $4, $4) ON CONFLICT (%s) DO UPDATE SET " TOUCH(
                 "excluded.updated_at") " RETURNING id",
             col);
    /* Runs after the cart row is locked (the upsert above), as a statement of its own, so it
     * sees every line committed before: the checks hold under concurrency as in change_tx. */
    snprintf(a->line_sql, sizeof a->line_sql,
             "INSERT INTO cart_items (cart_id, product_id, name, quantity, unit_price, currency, "
             "added_at, updated_at) "
             "SELECT c.id, $2, $3, $4, $5, $6, $7, $7 FROM carts c WHERE c.%s = $1"
             " AND (SELECT count(*) FROM cart_items x WHERE x.cart_id = c.id AND "
             "x.currency <> $6) = 0"
             " AND (EXISTS (SELECT 1 FROM cart_items x WHERE x.cart_id = c.id AND "
             "x.product_id = $2) OR (SELECT count(*) FROM cart_items x WHERE x.cart_id = c.id) "
             "< $8) "
             "ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = cart_items.quantity + "
             "excluded.quantity, name = excluded.name, unit_price = excluded.unit_price, "
             "updated_at = excluded.updated_at WHERE cart_items.quantity + excluded.quantity <= $9 "
             "RETURNING quantity",
             col);
    snprintf(a->load_sql, sizeof a->load_sql,
             "SELECT i.product_id, i.name, i.quantity, i.unit_price, i.currency, i.added_at "
             "FROM cart_items i WHERE i.cart_id = (SELECT id FROM carts WHERE %s = $1) "
             "ORDER BY i.added_at, i.product_id LIMIT $2",
             col);
    a->ca[0] = DB_INT(id_new(0));
    a->ca[1] = o->user_id ? DB_INT(o->user_id) : DB_NULLV;
    a->ca[2] = o->user_id ? DB_NULLV : DB_TEXT(o->token_hash);
    a->ca[3] = DB_INT(now);
    struct db_val la[] = {owner_val(o),         DB_INT(it->product_id), DB_TEXT(it->name),
                          DB_INT(it->quantity), DB_INT(it->unit_price), DB_TEXT(it->currency),
                          DB_INT(now),          DB_INT(max_lines),      DB_INT(max_qty)};
    memcpy(a->la, la, sizeof la);
    a->ra[0] = owner_val(o);
    a->ra[1] = DB_INT(CART_MAX_LINES);
    a->line = a->items = NULL;
    a->st[0] = (struct db_stmt){.sql = a->cart_sql, .n = 4, .args = a->ca};
    a->st[1] = (struct db_stmt){.sql = a->line_sql, .n = 9, .args = a->la, .out = &a->line};
    a->st[2] = (struct db_stmt){.sql = a->load_sql, .n = 2, .args = a->ra, .out = &a->items};
}

int cart__store_add_result(struct cart_add_stmts *a, int rc, struct cart_view *out, bool *applied)
{
    if (rc == 0) {
        *applied = db_rows_count(a->line) == 1;
        rc = view_fill(a->items, out);
    }
    db_rows_free(a->line);
    db_rows_free(a->items);
    a->line = a->items = NULL;
    return rc;
}

/* --- many adds as set statements (cart__store_addset_*) --- */

#define ADDSET_CARTS(col, other, type)                                                             \
    "INSERT INTO carts (id, " col ", " other ", created_at, updated_at) "                          \
    "SELECT a.id, a.o, NULL, $3, $3 FROM unnest($1::bigint[], $2::" type "[]) AS a(id, o) "        \
    "ON CONFLICT (" col ") DO UPDATE SET " TOUCH("excluded.updated_at")
/* Each add against its own cart, as cart__store_add_stmts's line_sql; its own statement so
 * that it sees every line committed before the carts rows were locked. The cart is found by
 * a LATERAL subquery with a LIMIT (the owner is unique), and the other-currency check is a
 * count, not a NOT EXISTS: PostgreSQL cannot turn either into a join, so each add is index
 * lookups in its own cart. As joins, a prepared statement's generic plan — made once per
 * connection, often while the tables were still nearly empty — hashed the whole carts or
 * cart_items table at every batch: 2–3.5 ms a batch at 10,000 carts on the bench, growing
 * with every customer (cart__store_add_stmts's line_sql likewise). */
#define ADDSET_LINES(col, type)                                                                    \
    "INSERT INTO cart_items (cart_id, product_id, name, quantity, unit_price, currency, "          \
    "added_at, updated_at) "                                                                       \
    "SELECT c.id, a.pid, a.name, a.qty, a.price, a.cur, $7, $7 FROM unnest($1::" type              \
    "[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::text[]) "                       \
    "AS a(o, pid, name, qty, price, cur) "                                                         \
    "CROSS JOIN LATERAL (SELECT id FROM carts WHERE " col " = a.o LIMIT 1) c "                     \
    "WHERE (SELECT count(*) FROM cart_items x WHERE x.cart_id = c.id AND x.currency <> a.cur) = 0" \
    " AND (EXISTS (SELECT 1 FROM cart_items x WHERE x.cart_id = c.id AND x.product_id = a.pid)"    \
    " OR (SELECT count(*) FROM cart_items x WHERE x.cart_id = c.id) < $8) "                        \
    "ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = cart_items.quantity + "            \
    "excluded.quantity, name = excluded.name, unit_price = excluded.unit_price, "                  \
    "updated_at = excluded.updated_at WHERE cart_items.quantity + excluded.quantity <= $9 "        \
    "RETURNING cart_id, product_id"
#define ADDSET_LOAD(col, type)                                                                     \
    "SELECT c." col ", c.id, i.product_id, i.name, i.quantity, i.unit_price, i.currency, "         \
    "i.added_at FROM carts c CROSS JOIN LATERAL (SELECT * FROM cart_items x WHERE x.cart_id = "    \
    "c.id OFFSET 0) i WHERE c." col " = ANY($1::" type "[]) "                                      \
    "ORDER BY c." col ", i.added_at, i.product_id LIMIT $2"

/* The statement set's array literals, for one loop over them. */
#define SET_BUFS(s)                                                                                \
    {                                                                                              \
        &(s)->ids, &(s)->owners, &(s)->pids, &(s)->names, &(s)->qtys, &(s)->prices, &(s)->curs     \
    }
#define SET_NBUFS 7

static void set_bufs_free(struct cart_set_stmts *s)
{
    struct buf *bufs[SET_NBUFS] = SET_BUFS(s);
    for (int i = 0; i < SET_NBUFS; i++)
        buf_free(bufs[i]);
}

int cart__store_addset_stmts(struct cart_set_stmts *s, const struct cart_owner *const *owners,
                             const struct cart_item *const *items, int n, int max_qty,
                             int max_lines, int64_t now)
{
    memset(s, 0, sizeof *s);
    bool users = owners[0]->user_id != 0;
    struct buf *bufs[SET_NBUFS] = SET_BUFS(s);
    for (int i = 0; i < SET_NBUFS; i++)
        *bufs[i] = BUF_INIT(1 << 20);
    for (int i = 0; i < n; i++) {
        db_array_int(&s->ids, id_new(0));
        if (users)
            db_array_int(&s->owners, owners[i]->user_id);
        else
            db_array_text(&s->owners, owners[i]->token_hash);
        db_array_int(&s->pids, items[i]->product_id);
        db_array_text(&s->names, items[i]->name);
        db_array_int(&s->qtys, items[i]->quantity);
        db_array_int(&s->prices, items[i]->unit_price);
        db_array_text(&s->curs, items[i]->currency);
    }
    for (int i = 0; i < SET_NBUFS; i++) {
        db_array_end(bufs[i]);
        if (bufs[i]->err) {
            int err = bufs[i]->err;
            set_bufs_free(s);
            return err;
        }
    }
    s->ca[0] = DB_TEXT(s->ids.p);
    s->ca[1] = DB_TEXT(s->owners.p);
    s->ca[2] = DB_INT(now);
    struct db_val la[] = {DB_TEXT(s->owners.p), DB_TEXT(s->pids.p),   DB_TEXT(s->names.p),
                          DB_TEXT(s->qtys.p),   DB_TEXT(s->prices.p), DB_TEXT(s->curs.p),
                          DB_INT(now),          DB_INT(max_lines),    DB_INT(max_qty)};
    memcpy(s->la, la, sizeof la);
    s->ra[0] = DB_TEXT(s->owners.p);
    s->ra[1] = DB_INT((int64_t)n * CART_MAX_LINES);
    s->st[0] = (struct db_stmt){.sql = users ? ADDSET_CARTS("user_id", "token_hash", "bigint")
                                             : ADDSET_CARTS("token_hash", "user_id", "text"),
                                .n = 3,
                                .args = s->ca};
    s->st[1] = (struct db_stmt){.sql = users ? ADDSET_LINES("user_id", "bigint")
                                             : ADDSET_LINES("token_hash", "text"),
                                .n = 9,
                                .args = s->la,
                                .out = &s->lines};
    s->st[2] = (struct db_stmt){.sql = users ? ADDSET_LOAD("user_id", "bigint")
                                             : ADDSET_LOAD("token_hash", "text"),
                                .n = 2,
                                .args = s->ra,
                                .out = &s->items};
    return 0;
}

static bool owner_is(const struct db_rows *r, int row, const struct cart_owner *o)
{
    const char *v = db_get(r, row, 0);
    if (!v)
        return false;
    return o->user_id ? db_get_i64(r, row, 0) == o->user_id : strcmp(v, o->token_hash) == 0;
}

int cart__store_addset_result(struct cart_set_stmts *s, int rc,
                              const struct cart_owner *const *owners,
                              const struct cart_item *const *items, int n,
                              struct cart_view *const *views, bool *applied)
{
    int nrows = rc == 0 ? db_rows_count(s->items) : 0;
    for (int i = 0; i < n && rc == 0; i++) {
        cart__view_clear(views[i]);
        applied[i] = false;
        int from = 0;
        while (from < nrows && !owner_is(s->items, from, owners[i]))
            from++;
        int to = from;
        while (to < nrows && owner_is(s->items, to, owners[i]))
            to++;
        if (to == from)
            continue; /* an empty cart: nothing was added to it */
        int64_t cart_id = db_get_i64(s->items, from, 1);
        for (int j = 0; j < db_rows_count(s->lines); j++)
            if (db_get_i64(s->lines, j, 0) == cart_id &&
                db_get_i64(s->lines, j, 1) == items[i]->product_id)
                applied[i] = true;
        rc = view_fill_range(s->items, from, to, 2, views[i]);
    }
    db_rows_free(s->lines);
    db_rows_free(s->items);
    s->lines = s->items = NULL;
    set_bufs_free(s);
    return rc;
}

int cart__store_add_once(struct db_conn *c, const struct cart_owner *o, const struct cart_item *it,
                         int max_qty, int max_lines, struct cart_view *out, bool *applied)
{
    struct cart_add_stmts *a = malloc(sizeof *a);
    if (!a)
        return ERR_NOMEM;
    cart__store_add_stmts(a, o, it, max_qty, max_lines, now_ms());
    int rc = cart__store_add_result(a, db_query_many(c, a->st, 3, true), out, applied);
    free(a);
    return rc;
}

int cart__store_line_insert(struct db_conn *c, int64_t cart_id, const struct cart_item *it,
                            int64_t added_at)
{
    struct db_val a[] = {DB_INT(cart_id),      DB_INT(it->product_id), DB_TEXT(it->name),
                         DB_INT(it->quantity), DB_INT(it->unit_price), DB_TEXT(it->currency),
                         DB_INT(added_at)};
    int rc = db_query(c,
                      "INSERT INTO cart_items (cart_id, product_id, name, quantity, unit_price, "
                      "currency, added_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                      7, a, NULL);
    return rc < 0 ? rc : 0;
}

int cart__store_line_refresh(struct db_conn *c, int64_t cart_id, const struct cart_item *it)
{
    struct db_val a[] = {DB_INT(cart_id),   DB_INT(it->product_id), DB_INT(it->quantity),
                         DB_TEXT(it->name), DB_INT(it->unit_price), DB_INT(now_ms())};
    int rc = db_query(c,
                      "UPDATE cart_items SET quantity = $3, name = $4, unit_price = $5, "
                      "updated_at = $6 WHERE cart_id = $1 AND product_id = $2",
                      6, a, NULL);
    return rc < 0 ? rc : 0;
}

int cart__store_line_set_qty(struct db_conn *c, int64_t cart_id, int64_t product_id, int q)
{
    struct db_val a[] = {DB_INT(cart_id), DB_INT(product_id), DB_INT(q), DB_INT(now_ms())};
    return changed(db_query(c,
                            "UPDATE cart_items SET quantity = $3, updated_at = $4 "
                            "WHERE cart_id = $1 AND product_id = $2",
                            4, a, NULL));
}

int cart__store_line_delete(struct db_conn *c, int64_t cart_id, int64_t product_id)
{
    struct db_val a[] = {DB_INT(cart_id), DB_INT(product_id)};
    return changed(
        db_query(c, "DELETE FROM cart_items WHERE cart_id = $1 AND product_id = $2", 2, a, NULL));
}

int cart__store_line_subtract(struct db_conn *c, int64_t cart_id, int64_t product_id, int q)
{
    struct db_val a[] = {DB_INT(cart_id), DB_INT(product_id), DB_INT(q), DB_INT(now_ms())};
    int rc = db_query(c,
                      "UPDATE cart_items SET quantity = quantity - $3, updated_at = $4 "
                      "WHERE cart_id = $1 AND product_id = $2 AND quantity > $3",
                      4, a, NULL);
    if (rc == 0)
        rc = db_query(c, "DELETE FROM cart_items WHERE cart_id = $1 AND product_id = $2", 2, a,
                      NULL);
    return changed(rc);
}

int cart__store_line_merge(struct db_conn *c, int64_t cart_id, int64_t product_id, int q, int max)
{
    struct db_val a[] = {DB_INT(cart_id), DB_INT(product_id), DB_INT(q), DB_INT(max),
                         DB_INT(now_ms())};
    return changed(db_query(c,
                            "UPDATE cart_items SET quantity = CASE WHEN quantity + $3 > $4 THEN $4 "
                            "ELSE quantity + $3 END, updated_at = $5 "
                            "WHERE cart_id = $1 AND product_id = $2",
                            5, a, NULL));
}

int cart__store_line_price(struct db_conn *c, int64_t cart_id, int64_t product_id,
                           int64_t unit_price, const char *currency)
{
    struct db_val a[] = {DB_INT(cart_id), DB_INT(product_id), DB_INT(unit_price), DB_TEXT(currency),
                         DB_INT(now_ms())};
    return changed(db_query(c,
                            "UPDATE cart_items SET unit_price = $3, currency = $4, updated_at = $5 "
                            "WHERE cart_id = $1 AND product_id = $2",
                            5, a, NULL));
}

int cart__store_clear(struct db_conn *c, int64_t cart_id)
{
    struct db_val a[] = {DB_INT(cart_id)};
    int rc = db_query(c, "DELETE FROM cart_items WHERE cart_id = $1", 1, a, NULL);
    return rc < 0 ? rc : 0;
}

int cart__store_drop(struct db_conn *c, int64_t cart_id)
{
    int rc = cart__store_clear(c, cart_id);
    struct db_val a[] = {DB_INT(cart_id)};
    if (rc == 0)
        rc = db_query(c, "DELETE FROM carts WHERE id = $1", 1, a, NULL);
    return rc < 0 ? rc : 0;
}

int cart__store_user_lines(struct db_conn *c, int64_t user_id, struct cart_line *out, int *n)
{
    struct db_val a[] = {DB_INT(user_id), DB_INT(CART_MAX_LINES)};
    struct db_rows *r = NULL;
    *n = 0;
    int rc = db_query(c,
                      "SELECT i.product_id, i.quantity, i.unit_price, i.currency FROM cart_items i "
                      "WHERE i.cart_id = (SELECT id FROM carts WHERE user_id = $1) "
                      "ORDER BY i.added_at, i.product_id LIMIT $2",
                      2, a, &r);
    if (rc < 0)
        return rc;
    for (int i = 0; i < db_rows_count(r); i++) {
        out[i].product_id = db_get_i64(r, i, 0);
        out[i].quantity = (int)db_get_i64(r, i, 1);
        out[i].unit_price = db_get_i64(r, i, 2);
        snprintf(out[i].currency, sizeof out[i].currency, "%s",
                 db_get(r, i, 3) ? db_get(r, i, 3) : "");
    }
    *n = db_rows_count(r);
    db_rows_free(r);
    return 0;
}

/* "{a,b,…}" of the lines' product ids (qty false) or quantities: PostgreSQL array text. */
static char *int_array(const struct cart_line *lines, int n, bool qty)
{
    size_t cap = (size_t)n * 22 + 3, at = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    buf[at++] = '{';
    for (int i = 0; i < n; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", i ? "," : "",
                               qty ? (long long)lines[i].quantity : (long long)lines[i].product_id);
    snprintf(buf + at, cap - at, "}");
    return buf;
}

int cart__store_user_subtract_once(struct db *db, int64_t user_id, const struct cart_line *lines,
                                   int n)
{
    char *pids = int_array(lines, n, false), *qtys = int_array(lines, n, true);
    int rc = ERR_NOMEM;
    if (pids && qtys) {
        struct db_val la[] = {DB_INT(user_id), DB_INT(now_ms())};
        struct db_val da[] = {DB_INT(user_id), DB_TEXT(pids), DB_TEXT(qtys), DB_INT(now_ms())};
        /* The two set statements' generic plans (index lookups in the user's cart, as their
         * custom plans) for this transaction: left to itself PostgreSQL planned them afresh
         * at every call, because an array parameter's custom plan counts its elements and so
         * always looks cheaper — ~160 us of planning an order (pg_stat_statements, the
         * bench's 4-line orders), more than running them. */
        struct db_stmt st[] = {
            {.sql = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"},
            {.sql = "UPDATE carts SET " TOUCH("CAST($2 AS BIGINT)") ", rev = rev + 1000000 "
                                                                    "WHERE user_id = $1",
             .n = 2,
             .args = la},
            {.sql = "DELETE FROM cart_items i USING unnest(CAST($2 AS BIGINT[]), "
                    "CAST($3 AS INTEGER[])) AS l(pid, q) WHERE i.cart_id = (SELECT id FROM carts "
                    "WHERE user_id = $1) AND i.product_id = l.pid AND i.quantity <= l.q",
             .n = 3,
             .args = da},
            {.sql = "UPDATE cart_items i SET quantity = i.quantity - l.q, updated_at = $4 FROM "
                    "unnest(CAST($2 AS BIGINT[]), CAST($3 AS INTEGER[])) AS l(pid, q) "
                    "WHERE i.cart_id = (SELECT id FROM carts WHERE user_id = $1) AND "
                    "i.product_id = l.pid AND i.quantity > l.q",
             .n = 4,
             .args = da},
        };
        rc = db_query_many_shared(db, st, 4);
    }
    free(pids);
    free(qtys);
    return rc;
}

int cart__store_touch(struct db_conn *c, const struct cart_owner *o, int64_t now)
{
    char sql[384];
    snprintf(
        sql, sizeof sql,
        "INSERT INTO carts (id, user_id, token_hash, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $4) ON CONFLICT (%s) DO UPDATE SET " TOUCH("excluded.updated_at"),
        owner_col(o));
    struct db_val a[] = {DB_INT(id_new(0)), o->user_id ? DB_INT(o->user_id) : DB_NULLV,
                         o->user_id ? DB_NULLV : DB_TEXT(o->token_hash), DB_INT(now)};
    int rc = db_query(c, sql, 4, a, NULL);
    return rc < 0 ? rc : 0;
}

int cart__store_line_put(struct db_conn *c, const struct cart_owner *o, const struct cart_item *it,
                         int64_t now)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO cart_items (cart_id, product_id, name, quantity, unit_price, currency, "
             "added_at, updated_at) SELECT id, $2, $3, $4, $5, $6, $7, $8 FROM carts WHERE %s = $1 "
             "ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = excluded.quantity, "
             "name = excluded.name, unit_price = excluded.unit_price, updated_at = "
             "excluded.updated_at",
             owner_col(o));
    struct db_val a[] = {
        owner_val(o),           DB_INT(it->product_id), DB_TEXT(it->name),    DB_INT(it->quantity),
        DB_INT(it->unit_price), DB_TEXT(it->currency),  DB_INT(it->added_at), DB_INT(now)};
    return changed(db_query(c, sql, 8, a, NULL));
}

int cart__store_line_drop(struct db_conn *c, const struct cart_owner *o, int64_t product_id)
{
    char sql[192];
    snprintf(sql, sizeof sql,
             "DELETE FROM cart_items WHERE cart_id = (SELECT id FROM carts WHERE %s = $1) AND "
             "product_id = $2",
             owner_col(o));
    struct db_val a[] = {owner_val(o), DB_INT(product_id)};
    return changed(db_query(c, sql, 2, a, NULL));
}

int cart__store_snapshot(struct db_conn *c, const struct cart_owner *o, int64_t rev,
                         const struct cart_view *v, int64_t now, bool *applied, int64_t *db_rev)
{
    *applied = false;
    const char *col = owner_col(o);
    char sql[320];
    struct db_val ia[] = {DB_INT(id_new(0)), o->user_id ? DB_INT(o->user_id) : DB_NULLV,
                          o->user_id ? DB_NULLV : DB_TEXT(o->token_hash), DB_INT(now)};
    int rc = db_query(c,
                      "INSERT INTO carts (id, user_id, token_hash, created_at, updated_at) "
                      "VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
                      4, ia, NULL);
    if (rc < 0)
        return rc;
    snprintf(
        sql, sizeof sql,
        "UPDATE carts SET rev = $2, " TOUCH("CAST($3 AS BIGINT)") " WHERE %s = $1 AND rev < $2 "
                                                                  "RETURNING id",
        col);
    struct db_val ua[] = {owner_val(o), DB_INT(rev), DB_INT(now)};
    struct db_rows *r = NULL;
    if ((rc = db_query(c, sql, 3, ua, &r)) < 0)
        return rc;
    int64_t cart_id = db_rows_count(r) == 1 ? db_get_i64(r, 0, 0) : 0;
    db_rows_free(r);
    if (!cart_id) { /* the database holds this revision or a later one */
        snprintf(sql, sizeof sql, "SELECT rev FROM carts WHERE %s = $1", col);
        r = NULL;
        if ((rc = db_query(c, sql, 1, ua, &r)) < 0)
            return rc;
        *db_rev = db_rows_count(r) == 1 ? db_get_i64(r, 0, 0) : 0;
        db_rows_free(r);
        return 0;
    }
    if ((rc = cart__store_clear(c, cart_id)) < 0)
        return rc;
    /* The lines, 25 to a statement. */
    for (int at = 0; at < v->n; at += 25) {
        int k = v->n - at < 25 ? v->n - at : 25;
        char ins[2048];
        struct db_val a[25 * 7];
        int len = snprintf(ins, sizeof ins,
                           "INSERT INTO cart_items (cart_id, product_id, name, quantity, "
                           "unit_price, currency, added_at, updated_at) VALUES ");
        for (int i = 0; i < k; i++) {
            const struct cart_item *it = &v->items[at + i];
            int p = i * 7;
            len += snprintf(ins + len, sizeof ins - (size_t)len,
                            "%s($%d, $%d, $%d, $%d, $%d, $%d, $%d, $%d)", i ? ", " : "", p + 1,
                            p + 2, p + 3, p + 4, p + 5, p + 6, p + 7, p + 7);
            a[p] = DB_INT(cart_id);
            a[p + 1] = DB_INT(it->product_id);
            a[p + 2] = DB_TEXT(it->name);
            a[p + 3] = DB_INT(it->quantity);
            a[p + 4] = DB_INT(it->unit_price);
            a[p + 5] = DB_TEXT(it->currency);
            a[p + 6] = DB_INT(it->added_at);
        }
        if ((rc = db_query(c, ins, k * 7, a, NULL)) < 0)
            return rc;
    }
    *applied = true;
    *db_rev = rev;
    return 0;
}

int cart__store_rev(struct db_conn *c, const struct cart_owner *o, int64_t *rev)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT rev FROM carts WHERE %s = $1", owner_col(o));
    struct db_val a[] = {owner_val(o)};
    struct db_rows *r = NULL;
    int rc = db_query(c, sql, 1, a, &r);
    if (rc < 0)
        return rc;
    *rev = db_rows_count(r) == 1 ? db_get_i64(r, 0, 0) : -1;
    db_rows_free(r);
    return 0;
}

int cart__store_secret(struct db_conn *c, const char *hex, char *out, size_t cap)
{
    /* The first process to start picks the secret; everyone then reads the same one. */
    struct db_val a[] = {DB_TEXT(hex)};
    int rc =
        db_query(c, "INSERT INTO cart_secret (id, secret) VALUES (1, $1) ON CONFLICT DO NOTHING", 1,
                 a, NULL);
    struct db_rows *r = NULL;
    if (rc >= 0)
        rc = db_query(c, "SELECT secret FROM cart_secret WHERE id = 1", 0, NULL, &r);
    if (rc >= 0 && (db_rows_count(r) != 1 || strlen(db_get(r, 0, 0)) >= cap))
        rc = ERR_INTERNAL;
    if (rc >= 0)
        snprintf(out, cap, "%s", db_get(r, 0, 0));
    db_rows_free(r);
    return rc < 0 ? rc : 0;
}

int cart__store_sweep_guests(struct db_conn *c, int64_t cutoff, int batch)
{
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(cutoff), DB_INT(batch)};
    int rc = db_query(c,
                      "SELECT id FROM carts WHERE token_hash IS NOT NULL AND updated_at < $1 "
                      "ORDER BY id LIMIT $2",
                      2, a, &r);
    if (rc < 0)
        return rc;
    int n = db_rows_count(r);
    int64_t last = n ? db_get_i64(r, n - 1, 0) : 0;
    db_rows_free(r);
    if (n == 0)
        return 0;
    /* Both statements name the same carts: guests idle since the cutoff, up to the batch's
     * last id. A cart changed meanwhile (its updated_at moved on) is left alone. */
    struct db_val d[] = {DB_INT(cutoff), DB_INT(last)};
    if ((rc = db_begin(c)) == 0)
        rc = db_query(c,
                      "DELETE FROM cart_items WHERE cart_id IN (SELECT id FROM carts WHERE "
                      "token_hash IS NOT NULL AND updated_at < $1 AND id <= $2)",
                      2, d, NULL);
    if (rc >= 0)
        rc = db_query(c,
                      "DELETE FROM carts WHERE token_hash IS NOT NULL AND updated_at < $1 AND "
                      "id <= $2",
                      2, d, NULL);
    int gone = rc;
    if (rc >= 0)
        rc = db_commit(c);
    if (rc < 0) {
        db_rollback(c);
        return rc;
    }
    return gone;
}

/* --- schema --- */

static const struct db_migration cart_migrations[] = {
    {.sql = "CREATE TABLE carts ("
            " id BIGINT PRIMARY KEY,"
            " user_id BIGINT UNIQUE,"
            " token_hash TEXT UNIQUE,"
            " created_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL,"
            " CHECK ((user_id IS NULL) <> (token_hash IS NULL)));"
            "CREATE TABLE cart_items ("
            " cart_id BIGINT NOT NULL REFERENCES carts(id) ON DELETE CASCADE,"
            " product_id BIGINT NOT NULL,"
            " name TEXT NOT NULL,"
            " quantity INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 99),"
            " unit_price BIGINT NOT NULL,"
            " currency TEXT NOT NULL,"
            " added_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL,"
            " PRIMARY KEY (cart_id, product_id));"
            "CREATE INDEX carts_updated ON carts (updated_at);"
            "CREATE TABLE cart_secret ("
            " id INTEGER PRIMARY KEY,"
            " secret TEXT NOT NULL);"},
    /* Carts in Redis (cart_redis.c): the revision of the cart the database holds. */
    {.sql = "ALTER TABLE carts ADD COLUMN rev BIGINT NOT NULL DEFAULT 0;"},
};

const struct service_db cart__dbs[] = {
    {"carts", 0, cart_migrations, sizeof cart_migrations / sizeof cart_migrations[0]},
    {NULL, 0, NULL, 0},
};
