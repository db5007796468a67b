/* SPDX-License-Identifier: MIT */
/* recommendation.c — "bought together" and "top sellers of the category".
 *
 * Owns the `recommendations` database: pair counts (product, other product, orders with
 * both), units sold per product with its category, and the ids of the events already
 * applied. It learns from "order.paid" events on the `order-events` topic (see
 * svc/recommendation.h); in embedded mode the bus delivers them in-process right after the
 * order commits. An event is applied in one transaction together with its id, so a
 * redelivery is a no-op. Reads are GET /api/v1/products/{id}/recommendations: products
 * bought together with this one (most often first), then the category's best sellers,
 * never the product itself nor anything the catalog no longer sells. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/service.h"
#include "emporium/svc/product.h"
#include "emporium/svc/recommendation.h"

#define REC_MAX_ITEMS 50   /* an event's items considered (pairs grow quadratically) */
#define REC_DEFAULT_LIMIT 8
#define REC_MAX_LIMIT 20

static struct app *rec_app;

static struct db *rec_db(struct app *app) { return app_db(app, "recommendations"); }

/* Applies one paid order: units per product, and one count per unordered pair. */
static int rec_apply(struct app *app, const char *event_id, const int64_t *ids, const int *qty,
                     int n)
{
    struct db_conn *c;
    int rc = db_conn_take(rec_db(app), &c);
    if (rc < 0)
        return rc;
    if ((rc = db_begin(c)) < 0)
        goto out;
    struct db_val ev[] = {DB_TEXT(event_id), DB_INT(now_ms())};
    rc = db_query(c,
                  "INSERT INTO applied_events (event_id, applied_at) VALUES ($1, $2) "
                  "ON CONFLICT (event_id) DO NOTHING",
                  2, ev, NULL);
    if (rc == 0) { /* seen before */
        db_rollback(c);
        goto out;
    }
    for (int i = 0; rc >= 0 && i < n; i++) {
        struct product_info info;
        const char *category = product_get_info(app, ids[i], &info) == 0 ? info.category : "";
        struct db_val a[] = {DB_INT(ids[i]), DB_TEXT(category), DB_INT(qty[i])};
        rc = db_query(c,
                      "INSERT INTO sales (product_id, category, units) VALUES ($1, $2, $3) "
                      "ON CONFLICT (product_id) DO UPDATE SET units = sales.units + excluded.units, "
                      "category = excluded.category",
                      3, a, NULL);
        for (int j = 0; rc >= 0 && j < n; j++) {
            if (j == i || ids[j] == ids[i])
                continue;
            struct db_val p[] = {DB_INT(ids[i]), DB_INT(ids[j])};
            rc = db_query(c,
                          "INSERT INTO pairs (product_id, other_id, orders) VALUES ($1, $2, 1) "
                          "ON CONFLICT (product_id, other_id) DO UPDATE SET orders = pairs.orders + 1",
                          2, p, NULL);
        }
    }
    if (rc >= 0)
        rc = db_commit(c);
    else
        db_rollback(c);
out:
    db_conn_give(c);
    return rc < 0 ? rc : 0;
}

static void on_order_event(void *ctx, const char *topic, const char *key, const char *payload,
                           size_t len)
{
    json_error_t je;
    json_t *ev = json_loadb(payload, len, 0, &je);
    if (!ev)
        return;
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *event_id = json_string_value(json_object_get(ev, "event_id"));
    json_t *items = json_object_get(ev, "items");
    if (type && event_id && !strcmp(type, "order.paid") && json_is_array(items)) {
        int64_t ids[REC_MAX_ITEMS];
        int qty[REC_MAX_ITEMS], n = 0;
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
            int64_t id;
            json_int_t q = json_integer_value(json_object_get(it, "quantity"));
            if (n == REC_MAX_ITEMS)
                break;
            if (id_parse(json_string_value(json_object_get(it, "product_id")), &id) == 0 && q > 0) {
                ids[n] = id;
                qty[n++] = (int)q;
            }
        }
        int rc = n ? rec_apply(rec_app, event_id, ids, qty, n) : 0;
        if (rc < 0)
            log_warn("recommendation: event %s not applied: %s", event_id, err_str(rc));
    }
    json_decref(ev);
}

/* Appends up to `limit` products from rows (column 0 = product id) to out, skipping `self`,
 * duplicates and anything the catalog does not sell. */
static void rec_collect(struct app *app, const struct db_rows *rows, int64_t self, const char *why,
                        json_t *out, int limit)
{
    for (int r = 0; r < db_rows_count(rows) && (int)json_array_size(out) < limit; r++) {
        int64_t id = db_get_i64(rows, r, 0);
        if (id == self)
            continue;
        bool dup = false;
        size_t i;
        json_t *it;
        char idbuf[21];
        id_format(id, idbuf);
        json_array_foreach(out, i, it)
            if (!strcmp(json_string_value(json_object_get(it, "id")), idbuf))
                dup = true;
        struct product_info info;
        if (dup || product_get_info(app, id, &info) < 0 || !info.active)
            continue;
        json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:s,s:{s:I,s:s},s:s}", "id", idbuf,
                                             "sku", info.sku, "name", info.name, "category",
                                             info.category, "price", "amount",
                                             (json_int_t)info.price, "currency", info.currency,
                                             "reason", why));
    }
}

static int h_recommendations(struct http_req *req)
{
    int64_t id;
    if (id_parse(http_param(req, "id"), &id) < 0)
        return http_fail(req, ERR_INVALID, "id", "must be a product id");
    int limit;
    int rc = http_query_limit(req, REC_DEFAULT_LIMIT, REC_MAX_LIMIT, &limit);
    if (rc < 0)
        return rc;
    struct app *app = http_app(req);
    struct product_info self;
    if (product_get_info(app, id, &self) < 0 || !self.active)
        return http_fail(req, ERR_NOTFOUND, "id", "no such product");
    struct db_conn *c;
    if ((rc = db_conn_take(rec_db(app), &c)) < 0)
        return rc;
    json_t *items = json_array();
    struct db_rows *rows = NULL;
    /* Over-fetch: some rows may be hidden or deleted products. */
    struct db_val a[] = {DB_INT(id), DB_INT(limit * 2 + 5)};
    rc = db_query(c,
                  "SELECT other_id FROM pairs WHERE product_id = $1 "
                  "ORDER BY orders DESC, other_id LIMIT $2",
                  2, a, &rows);
    if (rc >= 0)
        rec_collect(app, rows, id, "bought_together", items, limit);
    db_rows_free(rows);
    rows = NULL;
    if (rc >= 0 && (int)json_array_size(items) < limit) {
        struct db_val b[] = {DB_TEXT(self.category), DB_INT(limit * 2 + 5)};
        rc = db_query(c,
                      "SELECT product_id FROM sales WHERE category = $1 "
                      "ORDER BY units DESC, product_id LIMIT $2",
                      2, b, &rows);
        if (rc >= 0)
            rec_collect(app, rows, id, "top_seller", items, limit);
        db_rows_free(rows);
    }
    db_conn_give(c);
    if (rc < 0) {
        json_decref(items);
        return rc;
    }
    http_add_header(req, "Cache-Control", "public, max-age=60");
    return http_reply_json(req, 200, json_pack("{s:o}", "items", items));
}

static int rec_init(struct app *app)
{
    rec_app = app;
    return bus_subscribe(RECOMMENDATION_TOPIC, on_order_event, NULL);
}

static const struct db_migration rec_migrations[] = {
    {.sql = "CREATE TABLE pairs ("
            " product_id BIGINT NOT NULL,"
            " other_id BIGINT NOT NULL,"
            " orders BIGINT NOT NULL,"
            " PRIMARY KEY (product_id, other_id));"
            "CREATE INDEX pairs_rank ON pairs (product_id, orders);"
            "CREATE TABLE sales ("
            " product_id BIGINT PRIMARY KEY,"
            " category TEXT NOT NULL,"
            " units BIGINT NOT NULL);"
            "CREATE INDEX sales_rank ON sales (category, units);"
            "CREATE TABLE applied_events ("
            " event_id TEXT PRIMARY KEY,"
            " applied_at BIGINT NOT NULL);"},
};

static const struct service_db rec_dbs[] = {
    {"recommendations", 0, rec_migrations, sizeof rec_migrations / sizeof rec_migrations[0]},
    {NULL, 0, NULL, 0},
};

static const struct http_route rec_routes[] = {
    {"GET", "/api/v1/products/{id}/recommendations", h_recommendations, 0},
    {NULL, NULL, NULL, 0},
};

const struct service service_recommendation = {
    .name = "recommendation",
    .routes = rec_routes,
    .dbs = rec_dbs,
    .init = rec_init,
};
