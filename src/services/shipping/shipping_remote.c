/* SPDX-License-Identifier: MIT */
/* shipping_remote.c — the shipping service's client interface over HTTP, for a process that
 * does not run shipping but has EMPORIUM_SHIPPING_URL: price (quote), create, get and cancel
 * go to the internal routes of shipping_http.c through upstream.h. create is idempotent per
 * order (a second call returns the first shipment) and cancel per shipment, so both may be
 * retried; a quote changes nothing. shipping_address_parse stays local: it is pure. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/upstream.h"
#include "shipping_internal.h"

static struct upstream *up(struct app *app)
{
    const struct config *cfg = app_config(app);
    return upstream_service(cfg, "shipping", cfg->shipping_url);
}

bool shipping__remote(struct app *app)
{
    return app_config(app)->shipping_url && !app_has_service(app, "shipping");
}

static void str_get(json_t *j, const char *k, char *out, size_t cap)
{
    const char *v = json_string_value(json_object_get(j, k));
    snprintf(out, cap, "%s", v ? v : "");
}

static int shipment_read(json_t *j, struct shipment_info *out)
{
    struct shipment_info s = {0};
    const char *id = json_string_value(json_object_get(j, "id"));
    if (!id || id_parse(id, &s.id) < 0)
        return ERR_INTERNAL;
    str_get(j, "method", s.method, sizeof s.method);
    str_get(j, "carrier", s.carrier, sizeof s.carrier);
    str_get(j, "tracking_number", s.tracking_number, sizeof s.tracking_number);
    str_get(j, "status", s.status, sizeof s.status);
    if (out)
        *out = s;
    return 0;
}

int shipping__remote_price(struct app *app, const struct shipping_item *items, int n,
                           const char *country, const char *method, struct shipping_option *out,
                           int64_t *bad_product)
{
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) {
        char pid[21];
        json_array_append_new(
            arr, json_pack("{s:s,s:i,s:i}", "product_id", id_format(items[i].product_id, pid),
                           "quantity", items[i].quantity, "weight_grams", items[i].weight_grams));
    }
    json_t *body = arr ? json_pack("{s:o,s:s,s:s}", "items", arr, "country", country ? country : "",
                                   "method", method ? method : "")
                       : NULL;
    if (!body)
        return ERR_NOMEM;
    int status;
    json_t *resp = NULL;
    int rc = upstream_call_json(up(app), "POST", "/internal/v1/shipping/quotes", NULL, body,
                                UPSTREAM_IDEMPOTENT, &status, &resp);
    json_decref(body);
    if (rc == 0)
        rc = upstream_status_err(status);
    if (rc == ERR_NOTFOUND && bad_product) {
        const char *pid =
            json_string_value(json_object_get(json_object_get(resp, "error"), "product_id"));
        if (!pid || id_parse(pid, bad_product) < 0)
            *bad_product = 0;
    }
    if (rc == 0) {
        json_t *price = json_object_get(resp, "price"),
               *days = json_object_get(resp, "estimated_days");
        if (!json_is_integer(price) || !json_is_integer(days)) {
            rc = ERR_INTERNAL;
        } else {
            memset(out, 0, sizeof *out);
            str_get(resp, "method", out->method, sizeof out->method);
            str_get(resp, "carrier", out->carrier, sizeof out->carrier);
            str_get(resp, "currency", out->currency, sizeof out->currency);
            out->price = json_integer_value(price);
            out->estimated_days = (int)json_integer_value(days);
        }
    }
    json_decref(resp);
    return rc;
}

int shipping__remote_create(struct app *app, int64_t order_id, const char *method,
                            const struct shipping_address *a, struct shipment_info *out)
{
    char oid[21];
    json_t *body = json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:s,s:s,s:s,s:s}}", "order_id",
                             id_format(order_id, oid), "method", method, "address", "name", a->name,
                             "line1", a->line1, "line2", a->line2, "city", a->city, "region",
                             a->region, "postal_code", a->postal_code, "country", a->country);
    if (!body)
        return ERR_NOMEM;
    int status;
    json_t *resp = NULL;
    int rc = upstream_call_json(up(app), "POST", "/internal/v1/shipping/shipments", NULL, body,
                                UPSTREAM_IDEMPOTENT, &status, &resp);
    json_decref(body);
    if (rc == 0 && (rc = upstream_status_err(status)) == 0)
        rc = shipment_read(resp, out);
    json_decref(resp);
    return rc;
}

int shipping__remote_get(struct app *app, int64_t order_id, struct shipment_info *out)
{
    char path[80], oid[21];
    snprintf(path, sizeof path, "/internal/v1/shipping/shipments/%s", id_format(order_id, oid));
    int status;
    json_t *resp = NULL;
    int rc = upstream_call(up(app), "GET", path, NULL, NULL, 0, 0, 0, &status, &resp);
    if (rc == 0 && (rc = upstream_status_err(status)) == 0)
        rc = shipment_read(resp, out);
    json_decref(resp);
    return rc;
}

int shipping__remote_cancel(struct app *app, int64_t order_id)
{
    char path[96], oid[21];
    snprintf(path, sizeof path, "/internal/v1/shipping/shipments/%s/cancel",
             id_format(order_id, oid));
    int status;
    int rc =
        upstream_call(up(app), "POST", path, NULL, NULL, 0, UPSTREAM_IDEMPOTENT, 0, &status, NULL);
    return rc < 0 ? rc : upstream_status_err(status);
}
