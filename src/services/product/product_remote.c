/* SPDX-License-Identifier: MIT */
/* product_remote.c — product_get_info over HTTP, for a process that does not run the catalog
 * but has EMPORIUM_PRODUCT_URL (the order process pricing a cart): one GET to the internal
 * route of product_http.c through upstream.h (a read: retried on failure). */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/upstream.h"
#include "product_internal.h"

static void str_get(json_t *j, const char *k, char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(j, k));
    snprintf(out, cap, "%s", v ? v : "");
}

int product__remote_get_info(struct app *app, int64_t id, struct product_info *out)
{
    const struct config *cfg = app_config(app);
    char path[80], pid[21];
    snprintf(path, sizeof path, "/internal/v1/product/products/%s", id_format(id, pid));
    int status;
    json_t *resp = NULL;
    int rc = upstream_call(upstream_service(cfg, "product", cfg->product_url), "GET", path, NULL,
                           NULL, 0, 0, 0, &status, &resp);
    if (rc == 0 && (rc = upstream_status_err(status)) == 0) {
        json_t *price = json_object_get(resp, "price"), *w = json_object_get(resp, "weight_grams");
        const char *rid = json_string_value(json_object_get(resp, "id"));
        struct product_info p = {0};
        if (!rid || id_parse(rid, &p.id) < 0 || !json_is_integer(price) || !json_is_integer(w)) {
            rc = ERR_INTERNAL;
        } else {
            str_get(resp, "sku", p.sku, sizeof p.sku);
            str_get(resp, "name", p.name, sizeof p.name);
            str_get(resp, "category", p.category, sizeof p.category);
            str_get(resp, "currency", p.currency, sizeof p.currency);
            p.price = json_integer_value(price);
            p.weight_grams = (int)json_integer_value(w);
            p.active = json_is_true(json_object_get(resp, "active"));
            *out = p;
        }
    }
    json_decref(resp);
    return rc;
}
