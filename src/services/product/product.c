/* SPDX-License-Identifier: MIT */
/* product.c — the catalog service: products, categories, the in-process client interface
 * (product_get_info, product_stock_changed) and the service definition.
 *
 * Storage: the `products` database. products.stock_available is a denormalised copy of the
 * inventory service's available stock, kept fresh by product_stock_changed(), so showing
 * stock and filtering in_stock never crosses a service boundary on the read path. Search
 * uses an FTS5 table kept in step by triggers (SQLite) or a generated tsvector column with a
 * GIN index (PostgreSQL). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/cache.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/service.h"
#include "product_internal.h"

_Thread_local bool product__seeding;

struct db *product__db(struct app *app) { return app_db(app, "products"); }

bool product__slug_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > PRODUCT_SLUG_MAX || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

bool product__sku_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > PRODUCT_SKU_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

static void json_str_member(struct buf *b, const char *name, const char *v, bool comma)
{
    if (comma)
        buf_puts(b, ",");
    buf_printf(b, "\"%s\":", name);
    if (!v) {
        buf_puts(b, "null");
        return;
    }
    buf_puts(b, "\"");
    buf_json_escape(b, v);
    buf_puts(b, "\"");
}

void product__json_row(struct buf *b, const struct db_rows *r, int row)
{
    char ts[32];
    buf_puts(b, "{");
    json_str_member(b, "id", db_get(r, row, PC_ID), false);
    json_str_member(b, "sku", db_get(r, row, PC_SKU), true);
    json_str_member(b, "name", db_get(r, row, PC_NAME), true);
    json_str_member(b, "description", db_get(r, row, PC_DESC), true);
    json_str_member(b, "category", db_get(r, row, PC_CATEGORY), true);
    buf_printf(b, ",\"price\":{\"amount\":%lld,\"currency\":\"",
               (long long)db_get_i64(r, row, PC_PRICE));
    buf_json_escape(b, db_get(r, row, PC_CURRENCY));
    buf_printf(b, "\"},\"stock\":{\"available\":%lld}", (long long)db_get_i64(r, row, PC_STOCK));
    json_str_member(b, "image_url", db_get(r, row, PC_IMAGE), true);
    const char *attrs = db_get(r, row, PC_ATTRS);
    /* attributes were validated as a JSON object when written: embed the text as is */
    buf_printf(b, ",\"attributes\":%s", attrs && attrs[0] == '{' ? attrs : "{}");
    buf_printf(b, ",\"weight_grams\":%lld", (long long)db_get_i64(r, row, PC_WEIGHT));
    buf_printf(b, ",\"active\":%s", db_get_i64(r, row, PC_ACTIVE) ? "true" : "false");
    json_str_member(b, "created_at", time_format(db_get_i64(r, row, PC_CREATED), ts), true);
    json_str_member(b, "updated_at", time_format(db_get_i64(r, row, PC_UPDATED), ts), true);
    buf_puts(b, "}");
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static int load_info(struct app *app, int64_t id, struct product_info *out)
{
    struct db_conn *c;
    int rc = db_conn_take(product__db(app), &c);
    if (rc < 0)
        return rc;
    struct db_rows *rows = NULL;
    struct db_val args[] = {DB_INT(id)};
    rc = db_query(c,
                  "SELECT id, sku, name, category, price, currency, weight_grams, active "
                  "FROM products WHERE id = $1",
                  1, args, &rows);
    db_conn_give(c);
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

struct info_load {
    struct app *app;
    int64_t id;
};

static int info_loader(void *ctx, const char *key, struct buf *out)
{
    struct info_load *l = ctx;
    struct product_info pi;
    int rc = load_info(l->app, l->id, &pi);
    if (rc < 0)
        return rc;
    buf_append(out, &pi, sizeof pi);
    return out->err;
}

int product_get_info(struct app *app, int64_t id, struct product_info *out)
{
    if (id <= 0)
        return ERR_NOTFOUND;
    struct cache *cache = product__cache();
    if (!cache)
        return load_info(app, id, out);
    char key[32];
    snprintf(key, sizeof key, "i:%lld", (long long)id);
    struct info_load l = {app, id};
    struct buf b = BUF_INIT(0);
    int rc = cache_get_or_load(cache, key, info_loader, &l, 300 * 1000, &b);
    if (rc == 0 && b.len == sizeof *out)
        memcpy(out, b.p, sizeof *out);
    else if (rc == 0)
        rc = ERR_INTERNAL;
    buf_free(&b);
    return rc;
}

void product_stock_changed(struct app *app, int64_t product_id, int64_t available)
{
    if (product__seeding)
        return; /* the seed wrote stock_available itself, in the same pass */
    struct db_conn *c;
    if (db_conn_take(product__db(app), &c) < 0) {
        log_warn("product: stock of %lld not refreshed: products database unavailable",
                 (long long)product_id);
        product__invalidate(product_id, true);
        return;
    }
    if (available < 0)
        available = 0;
    /* Lists and search pages show stock.available but are only regenerated (generation bump)
     * when the product crosses zero, because that changes what in_stock=true returns; other
     * changes reach lists when their entries expire (LIST_TTL_MS), while the product's own
     * entry is dropped at once. The first statement only matches a crossing, atomically. */
    struct db_val args[] = {DB_INT(product_id), DB_INT(available)};
    int rc = db_query(c,
                      "UPDATE products SET stock_available = $2 WHERE id = $1 "
                      "AND (stock_available > 0) <> ($2 > 0)",
                      2, args, NULL);
    bool crossed = rc > 0;
    if (rc == 0)
        rc = db_query(c,
                      "UPDATE products SET stock_available = $2 WHERE id = $1 "
                      "AND stock_available <> $2",
                      2, args, NULL);
    db_conn_give(c);
    if (rc < 0) {
        log_warn("product: stock of %lld not refreshed: %s", (long long)product_id, err_str(rc));
        product__invalidate(product_id, true);
        return;
    }
    if (rc > 0)
        product__invalidate(product_id, crossed);
}

static int product_init(struct app *app)
{
    return product__cache_init();
}

static void product_deinit(struct app *app)
{
    product__cache_deinit();
}

/* ---- schema -------------------------------------------------------------------------- */

/* ID_TYPE: on SQLite "INTEGER PRIMARY KEY" makes the id the rowid (still 64-bit), so an FTS
 * match (content_rowid = id) reaches its row in one b-tree seek instead of index + table. */
#define PRODUCTS_TABLE(ID_TYPE)                                                             \
    "CREATE TABLE categories ("                                                             \
    " slug TEXT PRIMARY KEY,"                                                               \
    " name TEXT NOT NULL,"                                                                  \
    " created_at BIGINT NOT NULL);"                                                         \
    "CREATE TABLE products ("                                                               \
    " id " ID_TYPE " PRIMARY KEY,"                                                          \
    " sku TEXT NOT NULL UNIQUE,"                                                            \
    " name TEXT NOT NULL,"                                                                  \
    " description TEXT NOT NULL DEFAULT '',"                                                \
    " category TEXT NOT NULL REFERENCES categories(slug),"                                  \
    " price BIGINT NOT NULL,"                                                               \
    " currency TEXT NOT NULL DEFAULT 'USD',"                                                \
    " image_url TEXT,"                                                                      \
    " attributes TEXT NOT NULL DEFAULT '{}',"                                               \
    " weight_grams INTEGER NOT NULL DEFAULT 0,"                                             \
    " active INTEGER NOT NULL DEFAULT 1,"                                                   \
    " stock_available BIGINT NOT NULL DEFAULT 0,"                                           \
    " created_at BIGINT NOT NULL,"                                                          \
    " updated_at BIGINT NOT NULL"

#define PRODUCTS_INDEXES                                                                    \
    "CREATE INDEX products_price ON products (price, id);"                                  \
    "CREATE INDEX products_cat_id ON products (category, id);"                              \
    "CREATE INDEX products_cat_price ON products (category, price, id);"

static const struct db_migration product_migrations[] = {
    {.sql = PRODUCTS_TABLE("INTEGER") ");" PRODUCTS_INDEXES
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
            "CREATE TRIGGER products_fts_au AFTER UPDATE OF name, description ON products BEGIN"
            " INSERT INTO products_fts(products_fts, rowid, name, description)"
            " VALUES ('delete', old.id, old.name, old.description);"
            " INSERT INTO products_fts(rowid, name, description)"
            " VALUES (new.id, new.name, new.description); END;",
     .pg = PRODUCTS_TABLE("BIGINT") ","
           " search tsvector GENERATED ALWAYS AS ("
           "setweight(to_tsvector('english', name), 'A') ||"
           " setweight(to_tsvector('english', description), 'B')) STORED);" PRODUCTS_INDEXES
           "CREATE INDEX products_search ON products USING GIN (search);"},
};

static const struct service_db product_dbs[] = {
    {"products", 0, product_migrations, sizeof product_migrations / sizeof product_migrations[0]},
    {NULL, 0, NULL, 0},
};

/* `emporium seed` flags, checked by main.c before the data dir is opened. */
static const struct cli_flag seed_flags[] = {
    {"--products", "N", "products to generate", 1, 10000000, true},
    {"--categories", "M", "categories (default: products/25, at most 1000)", 1, 1000, false},
    {"--seed", "S", "random seed (default 42)", 0, 0xffffffffL, false},
    {NULL, NULL, NULL, 0, 0, false},
};
static const struct cli_command seed_cli = {"seed", "generate a demo catalog",
                                            "emporium seed --products 1000 --categories 40",
                                            seed_flags, NULL};

const struct service service_product = {
    .name = "product",
    .routes = product__routes,
    .dbs = product_dbs,
    .init = product_init,
    .deinit = product_deinit,
    .command = "seed",
    .run_command = product__seed_command,
    .command_help = "generate a demo catalog: seed --products N [--categories M] [--seed S]",
    .cli = &seed_cli,
    .on_serve = product__on_serve,
};
