/* SPDX-License-Identifier: MIT */
/* inventory_http.c — admin routes: read and set a product's stock level. */
#include <jansson.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/svc/inventory.h"
#include "emporium/svc/product.h"
#include "inventory_internal.h"

static int path_product_id(struct http_req *req, int64_t *out)
{
    const char *s = http_param(req, "product_id");
    if (!s || id_parse(s, out) < 0 || *out <= 0)
        return http_fail(req, ERR_INVALID, "product_id", "must be a product id");
    return 0;
}

static int reply_level(struct http_req *req, int64_t product_id, int64_t available,
                       int64_t reserved)
{
    char pid[21];
    http_add_header(req, "Cache-Control", "private, no-store");
    return http_reply_json(req, 200,
                           json_pack("{s:s,s:I,s:I}", "product_id", id_format(product_id, pid),
                                     "available", (json_int_t)available, "reserved",
                                     (json_int_t)reserved));
}

static int h_get(struct http_req *req)
{
    int64_t id, available = 0, reserved = 0;
    int rc = path_product_id(req, &id);
    if (rc < 0)
        return rc;
    rc = inventory_get(http_app(req), id, &available, &reserved);
    if (rc == ERR_NOTFOUND && app_has_service(http_app(req), "product")) {
        /* A product that never had stock set has none. */
        struct product_info info;
        rc = product_get_info(http_app(req), id, &info);
        if (rc == ERR_NOTFOUND)
            return http_fail(req, ERR_NOTFOUND, "product_id", "no such product");
    }
    if (rc == ERR_NOTFOUND)
        return http_fail(req, ERR_NOTFOUND, "product_id", "no stock recorded for this product");
    if (rc < 0)
        return rc;
    return reply_level(req, id, available, reserved);
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
    /* Stock for a product the catalog does not know is refused (when the catalog runs in
     * this process; split deployments trust the operator). */
    struct product_info info;
    rc = app_has_service(http_app(req), "product") ? product_get_info(http_app(req), id, &info) : 0;
    if (rc == ERR_NOTFOUND)
        return http_fail(req, ERR_NOTFOUND, "product_id", "no such product");
    if (rc < 0)
        return rc;
    if ((rc = inventory_set(http_app(req), id, available)) < 0)
        return rc;
    int64_t reserved = 0;
    if ((rc = inventory_get(http_app(req), id, &available, &reserved)) < 0)
        return rc;
    return reply_level(req, id, available, reserved);
}

const struct http_route inventory__routes[] = {
    {"GET", "/api/v1/inventory/{product_id}", h_get, ROUTE_ADMIN},
    {"PUT", "/api/v1/inventory/{product_id}", h_put, ROUTE_ADMIN},
    {NULL, NULL, NULL, 0},
};
