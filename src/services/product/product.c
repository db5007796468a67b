/* SPDX-License-Identifier: MIT */
/* product.c — the catalog service: products and categories, their rules, the client
 * interface (product_get_info), the service's context and definition.
 *
 * Storage: the `products` database (product_store.c). products.stock_available is a
 * denormalised copy of the inventory service's available stock, kept fresh by its
 * stock.changed events on the inventory-events topic, so showing stock and filtering
 * in_stock never crosses a service boundary on the read path, and the inventory never calls
 * the catalog. Reads are served from the L1 (product_cache.c) as ready response bytes
 * ("<etag>\n<json>"), which is why the product's public JSON is built here and not in
 * product_http.c: the bytes are the cached value. Every admin write is logged at info with
 * the product and admin ids (and the old and new price when the price changes). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/cache.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/svc/inventory.h"
#include "product_internal.h"

#define PRODUCT_TTL_MS (300 * 1000)
#define INFO_TTL_MS (300 * 1000)
#define CATEGORIES_TTL_MS (60 * 1000)

struct product_ctx *product__ctx(struct app *app) { return app_service_ctx(app, "product"); }

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

/* ---- the public JSON of a product ------------------------------------------------------ */

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

void product__etag(const char *data, size_t len, char out[24])
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)data[i]) * 1099511628211ull;
    snprintf(out, 24, "\"%016llx\"", (unsigned long long)h);
}

int product__tagged(struct buf *json, struct buf *out)
{
    if (json->err) {
        buf_free(json);
        return ERR_NOMEM;
    }
    char etag[24];
    product__etag(json->p, json->len, etag);
    buf_puts(out, etag);
    buf_puts(out, "\n");
    buf_append(out, json->p, json->len);
    buf_free(json);
    return out->err;
}

/* ---- the client interface ------------------------------------------------------------- */

struct one_load {
    struct app *app;
    int64_t id;
};

static int info_loader(void *vctx, const char *key, struct buf *out)
{
    struct one_load *l = vctx;
    struct product_info pi;
    int rc = product__store_info(product__db(l->app), l->id, &pi);
    if (rc < 0)
        return rc;
    buf_append(out, &pi, sizeof pi);
    return out->err;
}

int product_get_info(struct app *app, int64_t id, struct product_info *out)
{
    if (id <= 0)
        return ERR_NOTFOUND;
    struct product_ctx *ctx = product__ctx(app);
    if (!ctx && app_config(app)->product_url) /* the catalog runs in another process */
        return product__remote_get_info(app, id, out);
    if (!ctx || !ctx->l1)
        return product__store_info(product__db(app), id, out);
    char key[32];
    snprintf(key, sizeof key, "i:%lld", (long long)id);
    struct one_load l = {app, id};
    struct buf b = BUF_INIT(0);
    int rc = cache_get_or_load(ctx->l1, key, info_loader, &l, INFO_TTL_MS, &b);
    if (rc == 0 && b.len == sizeof *out)
        memcpy(out, b.p, sizeof *out);
    else if (rc == 0)
        rc = ERR_INTERNAL;
    buf_free(&b);
    return rc;
}

/* ---- reads ---------------------------------------------------------------------------- */

/* Cached value: one byte 'A' (active) or 'H' (hidden), the ETag, '\n', the JSON. */
static int load_product(void *vctx, const char *key, struct buf *out)
{
    struct one_load *l = vctx;
    struct db_rows *rows = NULL;
    int rc = product__store_row(product__db(l->app), l->id, &rows);
    if (rc < 0)
        return rc;
    struct buf json = BUF_INIT(0);
    product__json_row(&json, rows, 0);
    bool active = db_get_i64(rows, 0, PC_ACTIVE) != 0;
    db_rows_free(rows);
    buf_puts(out, active ? "A" : "H");
    return product__tagged(&json, out);
}

int product__get_bytes(struct app *app, int64_t id, struct buf *out)
{
    struct one_load l = {app, id};
    struct product_ctx *ctx = product__ctx(app);
    if (!ctx->l1)
        return load_product(&l, NULL, out);
    char key[32];
    snprintf(key, sizeof key, "p:%lld", (long long)id);
    return cache_get_or_load(ctx->l1, key, load_product, &l, PRODUCT_TTL_MS, out);
}

static int load_categories(void *vctx, const char *key, struct buf *out)
{
    struct app *app = vctx;
    struct db_rows *rows = NULL;
    int rc = product__store_categories(product__db(app), &rows);
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
    return product__tagged(&json, out);
}

int product__categories_bytes(struct app *app, struct buf *out)
{
    struct product_ctx *ctx = product__ctx(app);
    if (!ctx->l1)
        return load_categories(app, NULL, out);
    char key[40];
    snprintf(key, sizeof key, "c:%llu", (unsigned long long)product__generation(ctx));
    return cache_get_or_load(ctx->l1, key, load_categories, app, CATEGORIES_TTL_MS, out);
}

/* ---- writes --------------------------------------------------------------------------- */

void product__input_free(struct product_input *in) { free(in->attributes); }

/* The row just written, as the write's response. */
static int written_json(struct app *app, int64_t id, struct buf *json)
{
    struct db_rows *rows = NULL;
    int rc = product__store_row(product__db(app), id, &rows);
    if (rc < 0)
        return rc;
    product__json_row(json, rows, 0);
    db_rows_free(rows);
    return json->err;
}

int product__create(struct app *app, int64_t admin_id, const struct product_input *in, int64_t *id,
                    struct buf *json)
{
    *id = id_new(0);
    int rc = product__store_insert(product__db(app), *id, in, now_ms());
    if (rc < 0)
        return rc;
    product__invalidate(product__ctx(app), *id, true);
    char pid[21], uid[21];
    log_info("product: %s created (sku %s, category %s, price %lld %s) by admin %s",
             id_format(*id, pid), in->sku, in->category, (long long)in->price,
             in->currency ? in->currency : "USD", id_format(admin_id, uid));
    return written_json(app, *id, json);
}

/* After an update or delete: 0 rows is ERR_NOTFOUND; a change drops the cached copies. */
static int written(struct app *app, int64_t id, int rc)
{
    if (rc == 0)
        return ERR_NOTFOUND;
    if (rc > 0)
        product__invalidate(product__ctx(app), id, true);
    return rc < 0 ? rc : 0;
}

int product__update(struct app *app, int64_t admin_id, int64_t id, const struct product_input *in,
                    struct buf *json)
{
    struct product_info old = {0};
    int rc = written(app, id, product__store_update(product__db(app), id, in, now_ms(), &old));
    if (rc < 0)
        return rc;
    char pid[21], uid[21];
    id_format(id, pid);
    id_format(admin_id, uid);
    const char *cur = in->currency ? in->currency : old.currency;
    if (in->has_price && (in->price != old.price || strcmp(cur, old.currency) != 0))
        log_info("product: %s price changed from %lld %s to %lld %s by admin %s", pid,
                 (long long)old.price, old.currency, (long long)in->price, cur, uid);
    else
        log_info("product: %s updated by admin %s", pid, uid);
    return written_json(app, id, json);
}

int product__delete(struct app *app, int64_t admin_id, int64_t id)
{
    int rc = written(app, id, product__store_delete(product__db(app), id));
    if (rc == 0) {
        char pid[21], uid[21];
        log_info("product: %s deleted by admin %s", id_format(id, pid), id_format(admin_id, uid));
    }
    return rc;
}

/* ---- stock, from the inventory's events ----------------------------------------------- */

/* Lists and search pages show stock.available but are only regenerated (generation bump)
 * when the product crosses zero, because that changes what in_stock=true returns; other
 * changes reach lists when their entries expire, while the product's own entry is dropped
 * at once. */
static void stock_changed(struct app *app, const int64_t *ids, const int64_t *available, int n)
{
    struct product_ctx *ctx = product__ctx(app);
    unsigned char change[INVENTORY_ANNOUNCE_MAX];
    int rc = product__store_set_stock(product__db(app), ids, available, n, change);
    if (rc < 0)
        log_warn("product: stock of %d products not refreshed: %s", n, err_str(rc));
    for (int i = 0; i < n; i++)
        if (rc < 0 || change[i])
            product__invalidate_local(ctx, ids[i], rc < 0 || change[i] == 2);
}

struct stock_item {
    int64_t id, available;
    int at; /* its place in the message: of a product named twice, the later figure counts */
};

static int by_id(const void *a, const void *b)
{
    const struct stock_item *x = a, *y = b;
    return x->id != y->id ? (x->id > y->id) - (x->id < y->id) : x->at - y->at;
}

/* {"type":"stock.changed","items":[{"product_id":"<id>","available":<n>},…]}: every product
 * one commit of the inventory changed (svc/inventory.h), updated here together (one
 * transaction, on SQLite one per PRODUCT_STOCK_CHUNK products) in product order, so two
 * such transactions lock their rows in the same order. */
static void on_inventory_event(void *vctx, const char *topic, const char *key, const char *payload,
                               size_t len)
{
    json_t *ev = json_loadb(payload, len, 0, NULL);
    const char *type = json_string_value(json_object_get(ev, "type"));
    json_t *items = json_object_get(ev, "items");
    struct stock_item it[INVENTORY_ANNOUNCE_MAX];
    int n = 0;
    if (type && !strcmp(type, "stock.changed") && json_is_array(items)) {
        size_t i;
        json_t *x;
        json_array_foreach (items, i, x) {
            json_t *avail = json_object_get(x, "available");
            if (n < INVENTORY_ANNOUNCE_MAX &&
                id_parse(json_string_value(json_object_get(x, "product_id")), &it[n].id) == 0 &&
                json_is_integer(avail)) {
                int64_t a = json_integer_value(avail);
                it[n].available = a < 0 ? 0 : a;
                it[n].at = n;
                n++;
            }
        }
    }
    json_decref(ev);
    if (n == 0)
        return;
    qsort(it, (size_t)n, sizeof it[0], by_id);
    int64_t ids[INVENTORY_ANNOUNCE_MAX], available[INVENTORY_ANNOUNCE_MAX];
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (k > 0 && ids[k - 1] == it[i].id) { /* named twice: the later figure */
            available[k - 1] = it[i].available;
            continue;
        }
        ids[k] = it[i].id;
        available[k++] = it[i].available;
    }
    stock_changed(vctx, ids, available, k);
}

/* For the inventory's admin routes: whether the catalog knows a product. */
static int product_known(struct app *app, int64_t id)
{
    struct product_info info;
    int rc = product_get_info(app, id, &info);
    return rc == ERR_NOTFOUND ? 0 : rc < 0 ? rc : 1;
}

/* ---- lifecycle -------------------------------------------------------------------------- */

void product__deinit(struct app *app)
{
    struct product_ctx *ctx = product__ctx(app);
    if (!ctx)
        return;
    product__cache_deinit(ctx);
    product__index_free(ctx->index); /* first: it joins the start-up thread, which fills attrs */
    product__attrs_free(&ctx->attrs);
    app_set_service_ctx(app, "product", NULL);
    free(ctx);
}

int product__init(struct app *app)
{
    struct product_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return ERR_NOMEM;
    ctx->app = app;
    product__attrs_init(&ctx->attrs);
    int rc = app_set_service_ctx(app, "product", ctx);
    if (rc < 0) {
        product__attrs_free(&ctx->attrs);
        free(ctx);
        return rc;
    }
    if ((rc = product__cache_init(ctx)) < 0 ||
        (rc = bus_listen(INVENTORY_TOPIC, on_inventory_event, app)) < 0) {
        product__deinit(app);
        return rc;
    }
    product__index_warm(ctx, product__db(app)); /* the in-memory search index (SQLite) */
    /* the inventory's init ran first (the registry is in name order); without the inventory
     * in this process there is nothing to register */
    rc = inventory_set_product_check(app, product_known);
    return rc == ERR_UNAVAILABLE ? 0 : rc;
}
