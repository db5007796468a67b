/* SPDX-License-Identifier: MIT */
/* product_store.c — the `products` database: its schema and every SQL statement on it.
 *
 * Search uses an FTS5 table kept in step by triggers (SQLite) or a generated tsvector column
 * with a GIN index (PostgreSQL); the words handed to either are only the ones
 * product_search.c cut out of q, each quoted here, so no query syntax from a client ever
 * reaches the engine. Every product read returns the PC_* columns (product_internal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/err.h"
#include "emporium/outbox.h"
#include "product_internal.h"

#define PRODUCT_COLS                                                                               \
    "p.id, p.sku, p.name, p.description, p.category, p.price, p.currency, p.image_url, "           \
    "p.attributes, p.active, p.stock_available, p.created_at, p.updated_at, p.weight_grams"

/* ---- schema -------------------------------------------------------------------------- */

/* On SQLite the migration runner applies "BIGINT PRIMARY KEY" as "INTEGER PRIMARY KEY"
 * (db_migrate): the id is the rowid, so an FTS match (content_rowid = id) reaches its row in
 * one b-tree seek instead of index + table. */
#define PRODUCTS_TABLE                                                                             \
    "CREATE TABLE categories ("                                                                    \
    " slug TEXT PRIMARY KEY,"                                                                      \
    " name TEXT NOT NULL,"                                                                         \
    " created_at BIGINT NOT NULL);"                                                                \
    "CREATE TABLE products ("                                                                      \
    " id BIGINT PRIMARY KEY,"                                                                      \
    " sku TEXT NOT NULL UNIQUE,"                                                                   \
    " name TEXT NOT NULL,"                                                                         \
    " description TEXT NOT NULL DEFAULT '',"                                                       \
    " category TEXT NOT NULL REFERENCES categories(slug),"                                         \
    " price BIGINT NOT NULL,"                                                                      \
    " currency TEXT NOT NULL DEFAULT 'USD',"                                                       \
    " image_url TEXT,"                                                                             \
    " attributes TEXT NOT NULL DEFAULT '{}',"                                                      \
    " weight_grams INTEGER NOT NULL DEFAULT 0,"                                                    \
    " active INTEGER NOT NULL DEFAULT 1,"                                                          \
    " stock_available BIGINT NOT NULL DEFAULT 0,"                                                  \
    " created_at BIGINT NOT NULL,"                                                                 \
    " updated_at BIGINT NOT NULL"

#define PRODUCTS_INDEXES                                                                           \
    "CREATE INDEX products_price ON products (price, id);"                                         \
    "CREATE INDEX products_cat_id ON products (category, id);"                                     \
    "CREATE INDEX products_cat_price ON products (category, price, id);"

static const struct db_migration product_migrations[] = {
    {.sql = PRODUCTS_TABLE
     ");" PRODUCTS_INDEXES
     /* External-content FTS5 index over name and description; rowid = products.id.
      * Porter stemming like PostgreSQL's english configuration. */
     "CREATE VIRTUAL TABLE products_fts USING fts5(name, description,"
     " content='products', content_rowid='id', tokenize='porter unicode61');"
     "CREATE TRIGGER products_fts_ai AFTER INSERT ON products BEGIN"
     " INSERT INTO products_fts(rowid, name, description)"
     " VALUES (new.id, new.name, new.description); END;"
     "CREATE TRIGGER products_fts_ad AFTER DELETE ON products BEGIN"
     " INSERT INTO products_fts(products_fts, rowid, name, description)"
     " VALUES ('delete', old.id, old.name, old.description); END;"
     "CREATE TRIGGER products_fts_au AFTER UPDATE OF name, description ON products "
     "BEGIN"
     " INSERT INTO products_fts(products_fts, rowid, name, description)"
     " VALUES ('delete', old.id, old.name, old.description);"
     " INSERT INTO products_fts(rowid, name, description)"
     " VALUES (new.id, new.name, new.description); END;",
     .pg = PRODUCTS_TABLE
     ","
     " search tsvector GENERATED ALWAYS AS ("
     "setweight(to_tsvector('english', name), 'A') ||"
     " setweight(to_tsvector('english', description), 'B')) STORED);" PRODUCTS_INDEXES
     "CREATE INDEX products_search ON products USING GIN (search);"},
    /* The in-memory search index (product_index.c) re-reads the rows changed since it last
     * looked. */
    {.sql = "CREATE INDEX products_updated ON products (updated_at);"},
    /* Cache invalidations for the other processes (product_cache.c) leave through it. */
    {.sql = OUTBOX_MIGRATION},
    {.sql = OUTBOX_QUEUE_MIGRATION},
};

const struct service_db product__dbs[] = {
    {"products", 0, product_migrations, sizeof product_migrations / sizeof product_migrations[0]},
    {NULL, 0, NULL, 0},
};

/* ---- one product ----------------------------------------------------------------------- */

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

int product__store_info(struct db *db, int64_t id, struct product_info *out)
{
    struct db_rows *rows = NULL;
    struct db_val args[] = {DB_INT(id)};
    int rc = db_query_once(db,
                           "SELECT id, sku, name, category, price, currency, weight_grams, active "
                           "FROM products WHERE id = $1",
                           1, args, &rows);
    if (rc < 0)
        return rc;
    if (db_rows_count(rows) != 1) {
        db_rows_free(rows);
        return ERR_NOTFOUND;
    }
    memset(out, 0, sizeof *out);
    out->id = db_get_i64(rows, 0, 0);
    copy_str(out->sku, sizeof out->sku, db_get(rows, 0, 1));
    copy_str(out->name, sizeof out->name, db_get(rows, 0, 2));
    copy_str(out->category, sizeof out->category, db_get(rows, 0, 3));
    out->price = db_get_i64(rows, 0, 4);
    copy_str(out->currency, sizeof out->currency, db_get(rows, 0, 5));
    out->weight_grams = (int)db_get_i64(rows, 0, 6);
    out->active = db_get_i64(rows, 0, 7) != 0;
    db_rows_free(rows);
    return 0;
}

int product__store_row(struct db *db, int64_t id, struct db_rows **out)
{
    struct db_val args[] = {DB_INT(id)};
    int rc =
        db_query_once(db, "SELECT " PRODUCT_COLS " FROM products p WHERE p.id = $1", 1, args, out);
    if (rc < 0)
        return rc;
    if (db_rows_count(*out) != 1) {
        db_rows_free(*out);
        *out = NULL;
        return ERR_NOTFOUND;
    }
    return 0;
}

static void default_category_name(const char *slug, char *out, size_t cap)
{
    size_t j = 0;
    bool start = true;
    for (size_t i = 0; slug[i] && j + 1 < cap; i++) {
        char ch = slug[i];
        if (ch == '-') {
            out[j++] = ' ';
            start = true;
            continue;
        }
        out[j++] = start && ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
        start = false;
    }
    out[j] = 0;
}

int product__store_category(struct db_conn *c, const char *slug, const char *name, int64_t now)
{
    char dflt[PRODUCT_SLUG_MAX + 1];
    if (!name) {
        default_category_name(slug, dflt, sizeof dflt);
        name = dflt;
    }
    struct db_val args[] = {DB_TEXT(slug), DB_TEXT(name), DB_INT(now)};
    int rc = db_query(c,
                      "INSERT INTO categories (slug, name, created_at) VALUES ($1, $2, $3) "
                      "ON CONFLICT (slug) DO NOTHING",
                      3, args, NULL);
    return rc < 0 ? rc : 0;
}

struct insert_tx {
    int64_t id, now;
    const struct product_input *in;
};

static int insert_tx(struct db_conn *c, void *vctx)
{
    struct insert_tx *x = vctx;
    const struct product_input *in = x->in;
    int rc = product__store_category(c, in->category, in->category_name, x->now);
    if (rc < 0)
        return rc;
    struct db_val args[] = {
        DB_INT(x->id),
        DB_TEXT(in->sku),
        DB_TEXT(in->name),
        DB_TEXT(in->description ? in->description : ""),
        DB_TEXT(in->category),
        DB_INT(in->price),
        DB_TEXT(in->currency ? in->currency : "USD"),
        in->image_url && in->image_url[0] ? DB_TEXT(in->image_url) : DB_NULLV,
        DB_TEXT(in->attributes ? in->attributes : "{}"),
        DB_INT(in->weight),
        DB_INT(in->active == 0 ? 0 : 1),
        DB_INT(x->now),
    };
    rc = db_query(c,
                  "INSERT INTO products (id, sku, name, description, category, price, "
                  "currency, image_url, attributes, weight_grams, active, stock_available, "
                  "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                  "$11, 0, $12, $12)",
                  12, args, NULL);
    return rc < 0 ? rc : 0;
}

int product__store_insert(struct db *db, int64_t id, const struct product_input *in, int64_t now)
{
    struct insert_tx x = {id, now, in};
    return db_transact(db, insert_tx, NULL, &x);
}

struct update_tx {
    int64_t id, now;
    const struct product_input *in;
    struct product_info *old;
    int rows;
};

static int update_tx(struct db_conn *c, void *vctx)
{
    struct update_tx *x = vctx;
    const struct product_input *in = x->in;
    x->rows = 0;
    int rc;
    if (x->old) {
        struct db_rows *r = NULL;
        struct db_val a[] = {DB_INT(x->id)};
        if ((rc = db_query(c, "SELECT price, currency FROM products WHERE id = $1", 1, a, &r)) < 0)
            return rc;
        if (db_rows_count(r) == 1) {
            x->old->price = db_get_i64(r, 0, 0);
            copy_str(x->old->currency, sizeof x->old->currency, db_get(r, 0, 1));
        }
        db_rows_free(r);
    }
    if (in->category &&
        (rc = product__store_category(c, in->category, in->category_name, x->now)) < 0)
        return rc;
    /* NULL parameters keep the column; image_url "" clears it. */
    struct db_val args[] = {
        DB_INT(x->id),
        in->sku ? DB_TEXT(in->sku) : DB_NULLV,
        in->name ? DB_TEXT(in->name) : DB_NULLV,
        in->description ? DB_TEXT(in->description) : DB_NULLV,
        in->category ? DB_TEXT(in->category) : DB_NULLV,
        in->has_price ? DB_INT(in->price) : DB_NULLV,
        in->currency ? DB_TEXT(in->currency) : DB_NULLV,
        in->image_url ? DB_TEXT(in->image_url) : DB_NULLV,
        in->attributes ? DB_TEXT(in->attributes) : DB_NULLV,
        in->has_weight ? DB_INT(in->weight) : DB_NULLV,
        in->active >= 0 ? DB_INT(in->active) : DB_NULLV,
        DB_INT(x->now),
    };
    rc = db_query(c,
                  "UPDATE products SET sku = COALESCE($2, sku), name = COALESCE($3, name), "
                  "description = COALESCE($4, description), "
                  "category = COALESCE($5, category), price = COALESCE($6, price), "
                  "currency = COALESCE($7, currency), "
                  "image_url = CASE WHEN CAST($8 AS TEXT) IS NULL THEN image_url "
                  "WHEN CAST($8 AS TEXT) = '' THEN NULL ELSE CAST($8 AS TEXT) END, "
                  "attributes = COALESCE($9, attributes), "
                  "weight_grams = COALESCE($10, weight_grams), "
                  "active = COALESCE($11, active), updated_at = $12 WHERE id = $1",
                  12, args, NULL);
    if (rc < 0)
        return rc;
    x->rows = rc;
    return rc == 0 ? 1 : 0; /* nothing updated: nothing to commit (1 rolls back) */
}

int product__store_update(struct db *db, int64_t id, const struct product_input *in, int64_t now,
                          struct product_info *old)
{
    struct update_tx x = {id, now, in, old, 0};
    int rc = db_transact(db, update_tx, NULL, &x);
    return rc < 0 ? rc : x.rows > 0;
}

int product__store_delete(struct db *db, int64_t id)
{
    struct db_val args[] = {DB_INT(id)};
    int rc = db_query_once(db, "DELETE FROM products WHERE id = $1", 1, args, NULL);
    return rc < 0 ? rc : rc > 0;
}

/* Listing, search and the category list are read-only: with EMPORIUM_DATABASE_REPLICA_URLS
 * they go to a replica that is up, within EMPORIUM_REPLICA_MAX_LAG_MS and has replayed this
 * process's last catalog write (db_conn_take_read), else to the primary. Single-product reads
 * (product__store_row, product__store_info: prices at checkout, a write's response) and the
 * search attribute copy stay on the primary. */
static int read_once(struct db *db, const char *sql, int n, const struct db_val *args,
                     struct db_rows **out)
{
    struct db_conn *c;
    int rc = db_conn_take_read(db, &c);
    if (rc < 0)
        return rc;
    rc = db_query(c, sql, n, args, out);
    db_conn_give(c);
    return rc;
}

int product__store_categories(struct db *db, struct db_rows **out)
{
    return read_once(db,
                     "SELECT c.slug, c.name, COUNT(p.id) FROM categories c "
                     "LEFT JOIN products p ON p.category = c.slug AND p.active = 1 "
                     "GROUP BY c.slug, c.name ORDER BY c.name, c.slug",
                     0, NULL, out);
}

_Static_assert(2 * PRODUCT_STOCK_CHUNK <= DB_STMT_MAX, "a chunk is one pipeline");

struct set_stock {
    struct db_val args[PRODUCT_STOCK_CHUNK][2];
    struct db_stmt st[2 * PRODUCT_STOCK_CHUNK];
    int n;
};

static int set_stock_tx(struct db_conn *c, void *ctx)
{
    struct set_stock *s = ctx;
    return db_query_many(c, s->st, 2 * s->n, true);
}

/* PostgreSQL: a chunk in one statement over arrays, whatever its size. The rows are locked
 * in product order (o's ORDER BY comes before its FOR UPDATE) and their figures read after
 * the lock, so the crossing of zero is judged on the row as it was just before this
 * change. The generic plan, as the carts' subtract: an array parameter's custom plan is
 * planned afresh at every call. */
static int set_stock_pg(struct db *db, const int64_t *ids, const int64_t *available, int n,
                        unsigned char *change)
{
    struct buf bi = BUF_INIT(1 << 16), ba = BUF_INIT(1 << 16);
    for (int i = 0; i < n; i++) {
        db_array_int(&bi, ids[i]);
        db_array_int(&ba, available[i]);
        change[i] = 0;
    }
    const char *ai = db_array_end(&bi), *aa = db_array_end(&ba);
    int rc = bi.err ? bi.err : ba.err;
    struct db_rows *r = NULL;
    if (rc == 0) {
        struct db_val a[] = {DB_TEXT(ai), DB_TEXT(aa)};
        struct db_stmt st[] = {
            {.sql = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"},
            {.sql = "WITH l AS (SELECT * FROM unnest(CAST($1 AS BIGINT[]), "
                    "CAST($2 AS BIGINT[])) AS l(id, a)), "
                    "o AS (SELECT p.id, p.stock_available AS old FROM products p "
                    "JOIN l ON l.id = p.id ORDER BY p.id FOR UPDATE OF p) "
                    "UPDATE products p SET stock_available = l.a FROM l JOIN o ON o.id = l.id "
                    "WHERE p.id = l.id AND o.old <> l.a "
                    "RETURNING p.id, (o.old > 0) <> (l.a > 0)",
             .n = 2,
             .args = a,
             .out = &r},
        };
        rc = db_query_many_shared(db, st, 2); /* with other checkouts' changes */
    }
    for (int k = 0; rc >= 0 && k < db_rows_count(r); k++) {
        int64_t id = db_get_i64(r, k, 0);
        const char *crossed = db_get(r, k, 1);
        int lo = 0, hi = n - 1;
        while (lo < hi) { /* ids ascending */
            int mid = (lo + hi) / 2;
            if (ids[mid] < id)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (n > 0 && ids[lo] == id)
            change[lo] = crossed && crossed[0] == 't' ? 2 : 1;
    }
    db_rows_free(r);
    buf_free(&bi);
    buf_free(&ba);
    return rc < 0 ? rc : 0;
}

int product__store_set_stock(struct db *db, const int64_t *ids, const int64_t *available, int n,
                             unsigned char *change)
{
    if (db_dialect(db) == DB_POSTGRES)
        return set_stock_pg(db, ids, available, n, change);
    /* Per product, the first statement only matches a crossing of zero, atomically; after
     * it, the second matches only a change that does not cross. A chunk's statements are
     * one transaction: on PostgreSQL one round trip, on SQLite an intent of the group-commit
     * writer (every checkout changes stock, so the catalog's copies commit together). */
    struct set_stock s;
    for (int at = 0; at < n; at += PRODUCT_STOCK_CHUNK) {
        s.n = n - at < PRODUCT_STOCK_CHUNK ? n - at : PRODUCT_STOCK_CHUNK;
        for (int i = 0; i < s.n; i++) {
            s.args[i][0] = DB_INT(ids[at + i]);
            s.args[i][1] = DB_INT(available[at + i]);
            s.st[2 * i] = (struct db_stmt){.sql = "UPDATE products SET stock_available = $2 "
                                                  "WHERE id = $1 "
                                                  "AND (stock_available > 0) <> ($2 > 0)",
                                           .n = 2,
                                           .args = s.args[i]};
            s.st[2 * i + 1] = (struct db_stmt){.sql = "UPDATE products SET stock_available = $2 "
                                                      "WHERE id = $1 AND stock_available <> $2",
                                               .n = 2,
                                               .args = s.args[i]};
        }
        int rc;
        if (db_dialect(db) == DB_SQLITE) {
            rc = db_write(db, set_stock_tx, NULL, &s);
        } else {
            struct db_conn *c;
            if ((rc = db_conn_take(db, &c)) < 0)
                return rc;
            rc = set_stock_tx(c, &s);
            db_conn_give(c);
        }
        if (rc < 0)
            return rc;
        for (int i = 0; i < s.n; i++)
            change[at + i] = s.st[2 * i].rc > 0 ? 2 : s.st[2 * i + 1].rc > 0 ? 1 : 0;
    }
    return 0;
}

/* ---- listing and search --------------------------------------------------------------- */

struct sql {
    struct buf text;
    struct db_val args[16];
    int n;
};

static const char *arg(struct sql *s, struct db_val v)
{
    static const char *const names[] = {"$1", "$2",  "$3",  "$4",  "$5",  "$6",  "$7",  "$8",
                                        "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16"};
    s->args[s->n] = v;
    return names[s->n++];
}

static void add_filters(struct sql *s, const struct product_query *o)
{
    buf_puts(&s->text, " AND p.active = 1");
    if (o->category[0])
        buf_printf(&s->text, " AND p.category = %s", arg(s, DB_TEXT(o->category)));
    if (o->min_price >= 0)
        buf_printf(&s->text, " AND p.price >= %s", arg(s, DB_INT(o->min_price)));
    if (o->max_price >= 0)
        buf_printf(&s->text, " AND p.price <= %s", arg(s, DB_INT(o->max_price)));
    if (o->in_stock)
        buf_puts(&s->text, " AND p.stock_available > 0");
}

int product__store_list(struct db *db, const struct product_query *o, struct db_rows **out)
{
    struct sql s = {.text = BUF_INIT(0)};
    struct buf *t = &s.text;
    buf_puts(t, "SELECT " PRODUCT_COLS " FROM products p WHERE 1 = 1");
    add_filters(&s, o);
    switch (o->sort) {
    case PRODUCT_SORT_NEWEST:
    case PRODUCT_SORT_RELEVANCE: /* without words relevance is newest */
        if (o->has_cursor)
            buf_printf(t, " AND p.id < %s", arg(&s, DB_INT(o->cur_id)));
        buf_puts(t, " ORDER BY p.id DESC");
        break;
    case PRODUCT_SORT_PRICE_ASC:
    case PRODUCT_SORT_PRICE_DESC: {
        bool asc = o->sort == PRODUCT_SORT_PRICE_ASC;
        if (o->has_cursor) {
            const char *k = arg(&s, DB_INT(o->cur_key));
            buf_printf(t, " AND (p.price, p.id) %s (%s, %s)", asc ? ">" : "<", k,
                       arg(&s, DB_INT(o->cur_id)));
        }
        buf_puts(t, asc ? " ORDER BY p.price, p.id" : " ORDER BY p.price DESC, p.id DESC");
        break;
    }
    }
    buf_printf(t, " LIMIT %d", o->limit + 1);
    int rc = t->err ? ERR_NOMEM : read_once(db, t->p, s.n, s.args, out);
    buf_free(t);
    return rc;
}

/* The text handed to the full-text engine, built only from the query's own word list
 * (words hold no quote or backslash: product_search.c cut them). */
static void match_text(const struct product_query *o, enum db_dialect d, struct buf *b)
{
    for (int i = 0; i < o->nwords; i++) {
        bool last = i == o->nwords - 1;
        if (d == DB_SQLITE) {
            /* FTS5: "w" is a phrase of one token; the last word also as a prefix (FTS5 stems
             * a prefix term too: "lamps"* finds lamp, lamps) */
            if (i)
                buf_puts(b, " AND ");
            buf_printf(b, last ? "\"%s\"*" : "\"%s\"", o->words[i]);
        } else {
            /* to_tsquery: 'w' is a quoted lexeme; 'w':* stems as well */
            if (i)
                buf_puts(b, " & ");
            buf_printf(b, last ? "'%s':*" : "'%s'", o->words[i]);
        }
    }
}

static int query_text(struct db_conn *c, const char *sql, const char *arg1, struct db_rows **out)
{
    struct db_val args[] = {DB_TEXT(arg1)};
    return db_query(c, sql, 1, args, out);
}

int product__store_match(struct db *db, const struct product_query *q, struct db_rows **all,
                         struct db_rows **named)
{
    *all = *named = NULL;
    enum db_dialect d = db_dialect(db);
    struct buf mt = BUF_INIT(1024), nm = BUF_INIT(1024);
    match_text(q, d, &mt);
    buf_puts(&nm, "{name} : (");
    buf_puts(&nm, mt.p ? mt.p : "");
    buf_puts(&nm, ")");
    struct db_conn *c = NULL;
    int rc = mt.err || nm.err ? ERR_NOMEM : db_conn_take_read(db, &c);
    if (rc == 0 && d == DB_SQLITE) {
        static const char *const fts =
            "SELECT rowid FROM products_fts WHERE products_fts MATCH $1 ORDER BY rowid";
        rc = query_text(c, fts, mt.p, all);
        if (rc >= 0)
            rc = query_text(c, fts, nm.p, named);
    } else if (rc == 0) {
        /* The GIN index, always: once products has statistics (autovacuum analyses it a
         * minute or so after a catalog import), the planner reads a common prefix ('cotton':*,
         * ~5 % of the catalog) as cheaper by a sequential scan, which matches every row's
         * stored tsvector — ~100 ms at 100,000 products against 20-30 ms through the index;
         * the bench's search row fell from ~2,500 to 380-1,060 req/s. set_config(..., true) lasts
         * until the end of this pipeline's one transaction, so nothing else is planned so. */
        struct db_val args[] = {DB_TEXT(mt.p)};
        struct db_stmt st[] = {
            {.sql = "SELECT set_config('enable_seqscan', 'off', true)"},
            {.sql = "SELECT id, -(ts_rank(search, to_tsquery('english', $1))::float8) "
                    "FROM products WHERE search @@ to_tsquery('english', $1) ORDER BY id",
             .n = 1,
             .args = args,
             .out = all},
        };
        rc = db_query_many(c, st, 2, true);
    }
    db_conn_give(c);
    buf_free(&mt);
    buf_free(&nm);
    if (rc < 0) {
        db_rows_free(*all);
        db_rows_free(*named);
        *all = *named = NULL;
    }
    return rc < 0 ? rc : 0;
}

/* ids as one text parameter: "[1,2]" for json_each (SQLite), "1,2" for string_to_array;
 * then the statement `prefix` WHERE <id in that list>. */
static int by_ids(struct db_conn *c, enum db_dialect d, const char *prefix, const int64_t *ids,
                  int n, struct db_rows **out)
{
    struct buf p = BUF_INIT(0), sql = BUF_INIT(0);
    if (d == DB_SQLITE)
        buf_puts(&p, "[");
    for (int i = 0; i < n; i++)
        buf_printf(&p, i ? ",%lld" : "%lld", (long long)ids[i]);
    if (d == DB_SQLITE)
        buf_puts(&p, "]");
    buf_puts(&sql, prefix);
    buf_puts(&sql, d == DB_SQLITE ? " WHERE id IN (SELECT value FROM json_each($1))"
                                  : " WHERE id = ANY(string_to_array($1, ',')::bigint[])");
    int rc;
    if (p.err || sql.err) {
        rc = ERR_NOMEM;
    } else {
        struct db_val args[] = {DB_TEXT(p.p ? p.p : "")};
        rc = db_query(c, sql.p, 1, args, out);
    }
    buf_free(&p);
    buf_free(&sql);
    return rc;
}

int product__store_rows_by_ids(struct db_conn *c, enum db_dialect d, const int64_t *ids, int n,
                               struct db_rows **out)
{
    return by_ids(c, d, "SELECT " PRODUCT_COLS " FROM products p", ids, n, out);
}

#define ATTR_COLS                                                                                  \
    "SELECT id, price, category, CASE WHEN stock_available > 0 THEN 1 ELSE 0 END, active, "        \
    "length(name) FROM products"

int product__store_text_chunk(struct db *db, int64_t after, int limit, struct db_rows **out)
{
    struct db_val args[] = {DB_INT(after), DB_INT(limit)};
    return db_query_once(db,
                         "SELECT id, name, description, updated_at FROM products WHERE id > $1 "
                         "ORDER BY id LIMIT $2",
                         2, args, out);
}

int product__store_text_newest(struct db *db, int64_t *newest)
{
    struct db_rows *r = NULL;
    int rc = db_query_once(db, "SELECT MAX(updated_at) FROM products", 0, NULL, &r);
    if (rc >= 0)
        *newest = db_get_i64(r, 0, 0);
    db_rows_free(r);
    return rc < 0 ? rc : 0;
}

int product__store_text_since(struct db *db, int64_t since, struct db_rows **out)
{
    struct db_val args[] = {DB_INT(since)};
    return db_query_once(db,
                         "SELECT id, name, description, updated_at FROM products "
                         "WHERE updated_at >= $1 ORDER BY updated_at, id",
                         1, args, out);
}

int product__store_attr_chunk(struct db_conn *c, int64_t after, int limit, struct db_rows **out)
{
    struct db_val args[] = {DB_INT(after), DB_INT(limit)};
    return db_query(c, ATTR_COLS " WHERE id > $1 ORDER BY id LIMIT $2", 2, args, out);
}

int product__store_attr_ids(struct db_conn *c, enum db_dialect d, const int64_t *ids, int n,
                            struct db_rows **out)
{
    return by_ids(c, d, ATTR_COLS, ids, n, out);
}

/* ---- seeding -------------------------------------------------------------------------- */

int product__store_count(struct db_conn *c, int64_t *n)
{
    struct db_rows *rows = NULL;
    int rc = db_query(c, "SELECT COUNT(*) FROM products", 0, NULL, &rows);
    if (rc >= 0)
        *n = db_get_i64(rows, 0, 0);
    db_rows_free(rows);
    return rc < 0 ? rc : 0;
}

int product__store_seed_insert(struct db_conn *c, int rows, const struct db_val *args)
{
    struct buf b = BUF_INIT(0);
    buf_puts(&b, "INSERT INTO products (id, sku, name, description, category, price, currency, "
                 "image_url, attributes, weight_grams, active, stock_available, created_at, "
                 "updated_at) VALUES ");
    for (int r = 0; r < rows; r++) {
        int a = r * PRODUCT_SEED_COLS;
        buf_printf(&b, "%s($%d, $%d, $%d, $%d, $%d, $%d, 'USD', $%d, $%d, $%d, 1, $%d, $%d, $%d)",
                   r ? "," : "", a + 1, a + 2, a + 3, a + 4, a + 5, a + 6, a + 7, a + 8, a + 9,
                   a + 10, rows * PRODUCT_SEED_COLS + 1, rows * PRODUCT_SEED_COLS + 1);
    }
    buf_puts(&b, " ON CONFLICT (sku) DO NOTHING");
    int rc = b.err ? ERR_NOMEM : db_query(c, b.p, rows * PRODUCT_SEED_COLS + 1, args, NULL);
    buf_free(&b);
    return rc < 0 ? rc : 0;
}

void product__store_bulk_mode(struct db *db, struct db_conn *c, bool on)
{
    /* A bigger page cache for this connection keeps the indexes being filled in memory
     * instead of spilling pages to the WAL in the middle of the transaction. */
    if (db_dialect(db) == DB_SQLITE)
        db_exec_script(c, on ? "PRAGMA cache_size = -262144" : "PRAGMA cache_size = -8000");
}

int product__store_index_flush(struct db *db)
{
    /* PostgreSQL's GIN index takes inserts into a pending list (fastupdate) that every search
     * then reads in full until a vacuum merges it: after a 100,000-product import, 480 pages
     * and ~2.6 ms a search, and a planner that prices the index as 30 times dearer. Merged
     * here, once, after a bulk load. SQLite's FTS5 has no such list. */
    if (db_dialect(db) != DB_POSTGRES)
        return 0;
    return db_query_once(db, "SELECT gin_clean_pending_list('products_search')", 0, NULL, NULL);
}

int product__store_empty(struct db *db)
{
    struct db_rows *rows = NULL;
    int rc = db_query_once(db, "SELECT 1 FROM products LIMIT 1", 0, NULL, &rows);
    if (rc < 0)
        return rc;
    rc = db_rows_count(rows) == 0;
    db_rows_free(rows);
    return rc;
}
