/* SPDX-License-Identifier: MIT */
/* inventory_http.c — admin routes: read and set a product's stock level (parse, call
 * inventory_admin_get/inventory_admin_set, render); and the internal routes that serve the
 * client interface (svc/inventory.h) to other processes (inventory_remote.c is the caller):
 * only with the internal token (upstream_internal_check), never routed by the gateway. */
#include <jansson.h>

#include "emporium/app.h"
#include "emporium/arena.h"
#include "emporium/err.h"
#include "emporium/http.h"
#include "emporium/id.h"
#include "emporium/svc/inventory.h"
#include "emporium/upstream.h"
#include "inventory_internal.h"

static int path_product_id(struct http_req *req, int64_t *out)
{
    const char *s = http_param(req, "product_id");
    if (!s || id_parse(s, out) < 0 || *out <= 0)
        return http_fail(req, ERR_INVALID, "product_id", "must be a product id");
    return 0;
}

static int reply_level(struct http_req *req, const struct inventory_level *l)
{
    char pid[21];
    http_add_header(req, "Cache-Control", "private, no-store");
    return http_reply_json(req, 200,
                           json_pack("{s:s,s:I,s:I}", "product_id", id_format(l->product_id, pid),
                                     "available", (json_int_t)l->available, "reserved",
                                     (json_int_t)l->reserved));
}

static int h_get(struct http_req *req)
{
    int64_t id;
    int rc = path_product_id(req, &id);
    if (rc < 0)
        return rc;
    struct inventory_level l;
    rc = inventory_admin_get(http_app(req), id, &l);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, ERR_NOTFOUND, "product_id", "no such product");
    if (rc < 0)
        return rc;
    return reply_level(req, &l);
}

static int h_put(struct http_req *req)
{
    int64_t id, available;
    int rc = path_product_id(req, &id);
    if (rc < 0)
        return rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    static const char *const allowed[] = {"available", NULL};
    if ((rc = http_json_only(req, body, allowed)) < 0)
        return rc;
    if ((rc = http_json_int(req, body, "available", true, 0, INVENTORY_MAX_STOCK, &available)) < 0)
        return rc;
    struct inventory_level l;
    rc = inventory_admin_set(http_app(req), http_auth(req)->user_id, id, available, &l);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, ERR_NOTFOUND, "product_id", "no such product");
    if (rc < 0)
        return rc;
    return reply_level(req, &l);
}

/* ---- internal routes (callers: inventory_remote.c in other processes) ---- */

static int path_id(struct http_req *req, const char *name, int64_t *out)
{
    const char *s = http_param(req, name);
    if (!s || id_parse(s, out) < 0 || *out <= 0)
        return http_fail(req, ERR_INVALID, name, "must be an id");
    return 0;
}

static int reply_ok(struct http_req *req)
{
    return http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static int h_int_reserve(struct http_req *req)
{
    int rc = http_internal_guard(req);
    if (rc < 0)
        return rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    static const char *const allowed[] = {"reservation_id", "items", "ttl_seconds", NULL};
    const char *rid_s;
    int64_t rid, ttl;
    if ((rc = http_json_only(req, body, allowed)) < 0 ||
        (rc = http_json_string(req, body, "reservation_id", true, 1, 20, &rid_s)) < 0 ||
        (rc = http_json_int(req, body, "ttl_seconds", true, 1, 7 * 24 * 3600, &ttl)) < 0)
        return rc;
    if (id_parse(rid_s, &rid) < 0 || rid <= 0)
        return http_fail(req, ERR_INVALID, "reservation_id", "must be an id");
    json_t *items = json_object_get(body, "items");
    size_t n = json_array_size(items);
    if (!json_is_array(items) || n == 0 || n > INVENTORY_MAX_ITEMS)
        return http_fail(req, ERR_INVALID, "items", "must be 1 to %d items", INVENTORY_MAX_ITEMS);
    struct inventory_item *it = arena_alloc(http_arena(req), n * sizeof *it);
    if (!it)
        return ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(items, i);
        const char *pid = json_string_value(json_object_get(e, "product_id"));
        json_t *q = json_object_get(e, "quantity");
        if (!pid || id_parse(pid, &it[i].product_id) < 0 || !json_is_integer(q) ||
            json_integer_value(q) < 1 || json_integer_value(q) > INVENTORY_MAX_QTY)
            return http_fail(req, ERR_INVALID, "items", "each needs a product_id and a quantity");
        it[i].quantity = (int)json_integer_value(q);
    }
    int64_t short_pid = 0;
    rc = inventory_reserve(http_app(req), rid, it, (int)n, (int)ttl, &short_pid);
    if (rc == ERR_CONFLICT) {
        char pid[21];
        return http_fail_code(req, ERR_CONFLICT, "out_of_stock",
                              json_pack("{s:s}", "product_id", id_format(short_pid, pid)),
                              "not enough stock");
    }
    return rc < 0 ? rc : reply_ok(req);
}

static int h_int_confirm(struct http_req *req)
{
    int64_t id;
    int rc = http_internal_guard(req);
    if (rc < 0 || (rc = path_id(req, "id", &id)) < 0)
        return rc;
    rc = inventory_confirm(http_app(req), id);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, rc, "id", "no active reservation");
    return rc < 0 ? rc : reply_ok(req);
}

static int h_int_release(struct http_req *req)
{
    int64_t id;
    int rc = http_internal_guard(req);
    if (rc < 0 || (rc = path_id(req, "id", &id)) < 0)
        return rc;
    rc = inventory_release(http_app(req), id);
    return rc < 0 ? rc : reply_ok(req);
}

static int h_int_level(struct http_req *req)
{
    int64_t id, a, r;
    int rc = http_internal_guard(req);
    if (rc < 0 || (rc = path_id(req, "product_id", &id)) < 0)
        return rc;
    rc = inventory_get(http_app(req), id, &a, &r);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, rc, "product_id", "no stock row");
    if (rc < 0)
        return rc;
    return http_reply_json(
        req, 200, json_pack("{s:I,s:I}", "available", (json_int_t)a, "reserved", (json_int_t)r));
}

static const struct http_route routes[] = {
    {"GET", "/api/v1/inventory/{product_id}", h_get, ROUTE_ADMIN},
    {"PUT", "/api/v1/inventory/{product_id}", h_put, ROUTE_ADMIN},
    {"POST", "/internal/v1/inventory/reservations", h_int_reserve, ROUTE_NOLIMIT},
    {"POST", "/internal/v1/inventory/reservations/{id}/confirm", h_int_confirm, ROUTE_NOLIMIT},
    {"POST", "/internal/v1/inventory/reservations/{id}/release", h_int_release, ROUTE_NOLIMIT},
    {"GET", "/internal/v1/inventory/levels/{product_id}", h_int_level, ROUTE_NOLIMIT},
    {NULL, NULL, NULL, 0},
};

const struct service service_inventory = {
    .name = "inventory",
    .routes = routes,
    .dbs = inventory__dbs,
    .init = inventory__init,
    .deinit = inventory__deinit,
};
