/* SPDX-License-Identifier: MIT */
/* inventory_http.c — admin routes: read and set a product's stock level (parse, call
 * inventory_admin_get/inventory_admin_set, render). */
#include <jansson.h>

#include "emporium/err.h"
#include "emporium/http.h"
#include "emporium/id.h"
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

static const struct http_route routes[] = {
    {"GET", "/api/v1/inventory/{product_id}", h_get, ROUTE_ADMIN},
    {"PUT", "/api/v1/inventory/{product_id}", h_put, ROUTE_ADMIN},
    {NULL, NULL, NULL, 0},
};

const struct service service_inventory = {
    .name = "inventory",
    .routes = routes,
    .dbs = inventory__dbs,
    .init = inventory__init,
    .deinit = inventory__deinit,
};
