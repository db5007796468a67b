/* SPDX-License-Identifier: MIT */
/* product_http.c — catalog routes: product read, admin create/update/delete, categories.
 * (The list/search handler is in product_search.c.) */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/cache.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "product_internal.h"

#define PRODUCT_TTL_MS (300 * 1000)
#define CATEGORIES_TTL_MS (60 * 1000)
#define CC_PRODUCT "public, max-age=60"
#define CC_CATEGORIES "public, max-age=60"


void product__etag(const char *data, size_t len, char out[24])
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)data[i]) * 1099511628211ull;
    snprintf(out, 24, "\"%016llx\"", (unsigned long long)h);
}

bool product__etag_matches(const char *header, const char *etag)
{
    if (!header)
        return false;
    size_t n = strlen(etag);
    for (const char *p = header; *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (!strncmp(p, etag, n) && (p[n] == 0 || p[n] == ',' || p[n] == ' '))
            return true;
        while (*p && *p != ',')
            p++;
    }
    return false;
}

/* Replies with a cached/serialised body "<etag>\n<json>", honouring If-None-Match. */
static int reply_tagged(struct http_req *req, const char *data, size_t len, const char *cc)
{
    const char *nl = memchr(data, '\n', len);
    if (!nl || nl - data >= 24)
        return ERR_INTERNAL;
    char etag[24];
    memcpy(etag, data, (size_t)(nl - data));
    etag[nl - data] = 0;
    http_add_header(req, "ETag", etag);
    http_add_header(req, "Cache-Control", cc);
    if (product__etag_matches(http_header(req, "If-None-Match"), etag))
        return ERR_NOT_MODIFIED;
    size_t off = (size_t)(nl - data) + 1;
    return http_reply_raw(req, 200, "application/json", data + off, len - off, true);
}

/* ---- GET /products/{id} --------------------------------------------------------------- */

struct one_load {
    struct app *app;
    int64_t id;
};

/* Cached value: one byte 'A' (active) or 'H' (hidden), the ETag, '\n', the JSON. */
static int load_product(void *ctx, const char *key, struct buf *out)
{
    struct one_load *l = ctx;
    struct db_conn *c;
    int rc = db_conn_take(product__db(l->app), &c);
    if (rc < 0)
        return rc;
    struct db_rows *rows = NULL;
    struct db_val args[] = {DB_INT(l->id)};
    rc = db_query(c, "SELECT " PRODUCT_COLS " FROM products p WHERE p.id = $1", 1, args, &rows);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    if (db_rows_count(rows) != 1) {
        db_rows_free(rows);
        return ERR_NOTFOUND;
    }
    struct buf json = BUF_INIT(0);
    product__json_row(&json, rows, 0);
    bool active = db_get_i64(rows, 0, PC_ACTIVE) != 0;
    db_rows_free(rows);
    if (json.err) {
        buf_free(&json);
        return json.err;
    }
    char etag[24];
    product__etag(json.p, json.len, etag);
    buf_puts(out, active ? "A" : "H");
    buf_puts(out, etag);
    buf_puts(out, "\n");
    buf_append(out, json.p, json.len);
    buf_free(&json);
    return out->err;
}

static int get_product_bytes(struct app *app, int64_t id, struct buf *out)
{
    struct one_load l = {app, id};
    struct cache *cache = product__cache();
    if (!cache)
        return load_product(&l, NULL, out);
    char key[32];
    snprintf(key, sizeof key, "p:%lld", (long long)id);
    return cache_get_or_load(cache, key, load_product, &l, PRODUCT_TTL_MS, out);
}

static int parse_id_param(struct http_req *req, int64_t *id)
{
    if (id_parse(http_param(req, "id"), id) < 0)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such product");
    return 0;
}

static int h_get(struct http_req *req)
{
    int64_t id;
    int rc = parse_id_param(req, &id);
    if (rc < 0)
        return rc;
    struct buf b = BUF_INIT(0);
    rc = get_product_bytes(http_app(req), id, &b);
    bool hidden = rc == 0 && b.len > 1 && b.p[0] != 'A';
    if (hidden && http_auth(req)->role != ROLE_ADMIN)
        rc = ERR_NOTFOUND; /* hidden products are visible to admins only */
    if (rc == ERR_NOTFOUND) {
        buf_free(&b);
        return http_fail(req, ERR_NOTFOUND, NULL, "no such product");
    }
    if (rc == 0)
        rc = reply_tagged(req, b.p + 1, b.len - 1, hidden ? "private, no-store" : CC_PRODUCT);
    buf_free(&b);
    return rc;
}

/* ---- writes --------------------------------------------------------------------------- */

struct product_input {
    const char *sku, *name, *description, *category, *category_name, *currency, *image_url;
    char *attributes; /* serialised JSON object (malloc'd) */
    int64_t price, weight;
    int active; /* -1 unset */
    bool has_price, has_weight;
};

static void input_free(struct product_input *in) { free(in->attributes); }

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
        out[j++] = start ? (char)toupper((unsigned char)ch) : ch;
        start = false;
    }
    out[j] = 0;
}

static int read_input(struct http_req *req, json_t *body, bool create, struct product_input *in)
{
    static const char *const allowed[] = {"sku",       "name",      "description",
                                          "category",  "category_name", "price",
                                          "image_url", "attributes", "weight_grams",
                                          "active",    NULL};
    memset(in, 0, sizeof *in);
    in->active = -1;
    int rc = http_json_only(req, body, allowed);
    if (rc < 0)
        return rc;
    if ((rc = http_json_string(req, body, "sku", create, 1, PRODUCT_SKU_MAX, &in->sku)) < 0)
        return rc;
    if (in->sku && !product__sku_ok(in->sku))
        return http_fail(req, ERR_INVALID, "sku", "letters, digits, '-', '_' and '.' only");
    if ((rc = http_json_string(req, body, "name", create, 1, PRODUCT_NAME_MAX, &in->name)) < 0)
        return rc;
    if ((rc = http_json_string(req, body, "description", false, 0, PRODUCT_DESC_MAX,
                               &in->description)) < 0)
        return rc;
    if ((rc = http_json_string(req, body, "category", create, 1, PRODUCT_SLUG_MAX,
                               &in->category)) < 0)
        return rc;
    if (in->category && !product__slug_ok(in->category))
        return http_fail(req, ERR_INVALID, "category",
                         "a slug: lower-case letters, digits and inner '-'");
    if ((rc = http_json_string(req, body, "category_name", false, 1, PRODUCT_CATNAME_MAX,
                               &in->category_name)) < 0)
        return rc;
    if ((rc = http_json_string(req, body, "image_url", false, 0, PRODUCT_URL_MAX,
                               &in->image_url)) < 0)
        return rc;
    if (in->image_url && in->image_url[0] && strncmp(in->image_url, "https://", 8) &&
        strncmp(in->image_url, "http://", 7) && in->image_url[0] != '/')
        return http_fail(req, ERR_INVALID, "image_url", "must be an http(s) URL or a path");
    json_t *price = json_object_get(body, "price");
    if (price && !json_is_null(price)) {
        if (!json_is_object(price))
            return http_fail(req, ERR_INVALID, "price",
                             "must be {\"amount\": <minor units>, \"currency\": \"USD\"}");
        static const char *const pallowed[] = {"amount", "currency", NULL};
        if ((rc = http_json_only(req, price, pallowed)) < 0)
            return rc;
        json_t *amount = json_object_get(price, "amount");
        if (!json_is_integer(amount) || json_integer_value(amount) < 0 ||
            json_integer_value(amount) > PRODUCT_PRICE_MAX)
            return http_fail(req, ERR_INVALID, "price.amount",
                             "must be an integer number of minor units, 0 to %lld",
                             PRODUCT_PRICE_MAX);
        in->price = json_integer_value(amount);
        in->has_price = true;
        /* Without a currency, a create is in USD and an update keeps the product's
         * currency: {"price":{"amount":1200}} changes the amount only. */
        json_t *cur = json_object_get(price, "currency");
        in->currency = create ? "USD" : NULL;
        if (cur) {
            const char *s = json_string_value(cur);
            if (!s || strlen(s) != 3 || !isupper((unsigned char)s[0]) ||
                !isupper((unsigned char)s[1]) || !isupper((unsigned char)s[2]))
                return http_fail(req, ERR_INVALID, "price.currency",
                                 "must be an ISO 4217 code like \"USD\"");
            in->currency = s;
        }
    } else if (create) {
        return http_fail(req, ERR_INVALID, "price", "is required");
    }
    if ((rc = http_json_int(req, body, "weight_grams", false, 0, 1000000000, &in->weight)) < 0)
        return rc;
    in->has_weight = json_object_get(body, "weight_grams") &&
                     !json_is_null(json_object_get(body, "weight_grams"));
    json_t *active = json_object_get(body, "active");
    if (active && !json_is_null(active)) {
        if (!json_is_boolean(active))
            return http_fail(req, ERR_INVALID, "active", "must be true or false");
        in->active = json_is_true(active);
    }
    json_t *attrs = json_object_get(body, "attributes");
    if (attrs && !json_is_null(attrs)) {
        if (!json_is_object(attrs))
            return http_fail(req, ERR_INVALID, "attributes", "must be a JSON object");
        in->attributes = json_dumps(attrs, JSON_COMPACT | JSON_SORT_KEYS);
        if (!in->attributes)
            return ERR_NOMEM;
        if (strlen(in->attributes) > PRODUCT_ATTRS_MAX)
            return http_fail(req, ERR_INVALID, "attributes", "at most %d bytes of JSON",
                             PRODUCT_ATTRS_MAX);
    }
    if (!create && json_object_size(body) == 0)
        return http_fail(req, ERR_INVALID, "body", "nothing to update");
    return 0;
}

static int ensure_category(struct db_conn *c, const char *slug, const char *name, int64_t now)
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

static int reply_product_row(struct http_req *req, struct db_conn *c, int64_t id, int status)
{
    struct db_rows *rows = NULL;
    struct db_val args[] = {DB_INT(id)};
    int rc = db_query(c, "SELECT " PRODUCT_COLS " FROM products p WHERE p.id = $1", 1, args,
                      &rows);
    if (rc < 0)
        return rc;
    if (db_rows_count(rows) != 1) {
        db_rows_free(rows);
        return http_fail(req, ERR_NOTFOUND, NULL, "no such product");
    }
    struct buf b = BUF_INIT(0);
    product__json_row(&b, rows, 0);
    db_rows_free(rows);
    if (b.err) {
        buf_free(&b);
        return ERR_NOMEM;
    }
    char etag[24];
    product__etag(b.p, b.len, etag);
    http_add_header(req, "ETag", etag);
    http_add_header(req, "Cache-Control", "no-store");
    rc = http_reply_raw(req, status, "application/json", b.p, b.len, true);
    buf_free(&b);
    return rc;
}

static int sku_conflict(struct http_req *req, const char *sku)
{
    return http_fail_code(req, ERR_CONFLICT, "sku_taken", json_pack("{s:s}", "field", "sku"),
                          "a product with SKU %s already exists", sku);
}

static int h_create(struct http_req *req)
{
    int rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    struct product_input in;
    if ((rc = read_input(req, body, true, &in)) < 0) {
        input_free(&in);
        return rc;
    }
    struct db_conn *c;
    if ((rc = db_conn_take(product__db(http_app(req)), &c)) < 0) {
        input_free(&in);
        return rc;
    }
    int64_t id = id_new(0), now = now_ms();
    rc = db_begin(c);
    if (rc == 0)
        rc = ensure_category(c, in.category, in.category_name, now);
    if (rc == 0) {
        struct db_val args[] = {
            DB_INT(id),
            DB_TEXT(in.sku),
            DB_TEXT(in.name),
            DB_TEXT(in.description ? in.description : ""),
            DB_TEXT(in.category),
            DB_INT(in.price),
            DB_TEXT(in.currency),
            in.image_url && in.image_url[0] ? DB_TEXT(in.image_url) : DB_NULLV,
            DB_TEXT(in.attributes ? in.attributes : "{}"),
            DB_INT(in.weight),
            DB_INT(in.active == 0 ? 0 : 1),
            DB_INT(now),
        };
        rc = db_query(c,
                      "INSERT INTO products (id, sku, name, description, category, price, "
                      "currency, image_url, attributes, weight_grams, active, stock_available, "
                      "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
                      "$11, 0, $12, $12)",
                      12, args, NULL);
    }
    if (rc == ERR_CONFLICT) {
        db_conn_give(c);
        rc = sku_conflict(req, in.sku);
        input_free(&in);
        return rc;
    }
    if (rc >= 0)
        rc = db_commit(c);
    input_free(&in);
    if (rc < 0) {
        db_conn_give(c);
        return rc;
    }
    product__invalidate(id, true);
    char loc[64], ids[21];
    snprintf(loc, sizeof loc, "/api/v1/products/%s", id_format(id, ids));
    http_add_header(req, "Location", loc);
    rc = reply_product_row(req, c, id, 201);
    db_conn_give(c);
    return rc;
}

static int h_update(struct http_req *req)
{
    int64_t id;
    int rc = parse_id_param(req, &id);
    if (rc < 0)
        return rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    struct product_input in;
    if ((rc = read_input(req, body, false, &in)) < 0) {
        input_free(&in);
        return rc;
    }
    struct db_conn *c;
    if ((rc = db_conn_take(product__db(http_app(req)), &c)) < 0) {
        input_free(&in);
        return rc;
    }
    int64_t now = now_ms();
    rc = db_begin(c);
    if (rc == 0 && in.category)
        rc = ensure_category(c, in.category, in.category_name, now);
    if (rc == 0) {
        /* NULL parameters keep the column; image_url "" clears it. */
        struct db_val args[] = {
            DB_INT(id),
            in.sku ? DB_TEXT(in.sku) : DB_NULLV,
            in.name ? DB_TEXT(in.name) : DB_NULLV,
            in.description ? DB_TEXT(in.description) : DB_NULLV,
            in.category ? DB_TEXT(in.category) : DB_NULLV,
            in.has_price ? DB_INT(in.price) : DB_NULLV,
            in.currency ? DB_TEXT(in.currency) : DB_NULLV,
            in.image_url ? DB_TEXT(in.image_url) : DB_NULLV,
            in.attributes ? DB_TEXT(in.attributes) : DB_NULLV,
            in.has_weight ? DB_INT(in.weight) : DB_NULLV,
            in.active >= 0 ? DB_INT(in.active) : DB_NULLV,
            DB_INT(now),
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
    }
    if (rc == ERR_CONFLICT) {
        db_conn_give(c);
        rc = sku_conflict(req, in.sku ? in.sku : "");
        input_free(&in);
        return rc;
    }
    input_free(&in);
    if (rc == 0) {
        db_conn_give(c);
        return http_fail(req, ERR_NOTFOUND, NULL, "no such product");
    }
    if (rc > 0)
        rc = db_commit(c);
    if (rc < 0) {
        db_conn_give(c);
        return rc;
    }
    product__invalidate(id, true);
    rc = reply_product_row(req, c, id, 200);
    db_conn_give(c);
    return rc;
}

static int h_delete(struct http_req *req)
{
    int64_t id;
    int rc = parse_id_param(req, &id);
    if (rc < 0)
        return rc;
    struct db_conn *c;
    if ((rc = db_conn_take(product__db(http_app(req)), &c)) < 0)
        return rc;
    struct db_val args[] = {DB_INT(id)};
    rc = db_query(c, "DELETE FROM products WHERE id = $1", 1, args, NULL);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such product");
    product__invalidate(id, true);
    return http_reply_raw(req, 204, NULL, "", 0, false);
}

/* ---- categories ----------------------------------------------------------------------- */

static int load_categories(void *ctx, const char *key, struct buf *out)
{
    struct app *app = ctx;
    struct db_conn *c;
    int rc = db_conn_take(product__db(app), &c);
    if (rc < 0)
        return rc;
    struct db_rows *rows = NULL;
    rc = db_query(c,
                  "SELECT c.slug, c.name, COUNT(p.id) FROM categories c "
                  "LEFT JOIN products p ON p.category = c.slug AND p.active = 1 "
                  "GROUP BY c.slug, c.name ORDER BY c.name, c.slug",
                  0, NULL, &rows);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    struct buf json = BUF_INIT(0);
    buf_puts(&json, "{\"items\":[");
    for (int i = 0; i < db_rows_count(rows); i++) {
        buf_puts(&json, i ? ",{\"slug\":\"" : "{\"slug\":\"");
        buf_json_escape(&json, db_get(rows, i, 0));
        buf_puts(&json, "\",\"name\":\"");
        buf_json_escape(&json, db_get(rows, i, 1));
        buf_printf(&json, "\",\"product_count\":%lld}", (long long)db_get_i64(rows, i, 2));
    }
    buf_puts(&json, "]}");
    db_rows_free(rows);
    if (json.err) {
        buf_free(&json);
        return json.err;
    }
    char etag[24];
    product__etag(json.p, json.len, etag);
    buf_puts(out, etag);
    buf_puts(out, "\n");
    buf_append(out, json.p, json.len);
    buf_free(&json);
    return out->err;
}

static int h_categories(struct http_req *req)
{
    struct buf b = BUF_INIT(0);
    struct cache *cache = product__cache();
    int rc;
    if (cache) {
        char key[40];
        snprintf(key, sizeof key, "c:%llu", (unsigned long long)product__generation());
        rc = cache_get_or_load(cache, key, load_categories, http_app(req), CATEGORIES_TTL_MS, &b);
    } else {
        rc = load_categories(http_app(req), NULL, &b);
    }
    if (rc == 0)
        rc = reply_tagged(req, b.p, b.len, CC_CATEGORIES);
    buf_free(&b);
    return rc;
}

const struct http_route product__routes[] = {
    {"GET", "/api/v1/products", product__list, 0},
    {"GET", "/api/v1/products/{id}", h_get, 0},
    {"POST", "/api/v1/products", h_create, ROUTE_ADMIN},
    {"PATCH", "/api/v1/products/{id}", h_update, ROUTE_ADMIN},
    {"DELETE", "/api/v1/products/{id}", h_delete, ROUTE_ADMIN},
    {"GET", "/api/v1/categories", h_categories, 0},
    {NULL, NULL, NULL, 0},
};
