/* SPDX-License-Identifier: MIT */
/* inventory_remote.c — the inventory's client interface over HTTP, for a process that does
 * not run the inventory but has EMPORIUM_INVENTORY_URL: the calls of svc/inventory.h that
 * other services make (get, reserve, confirm, release) go to the internal routes of
 * inventory_http.c through upstream.h. All of them are idempotent on their ids, so all may be
 * retried. No answer (down, deadline, breaker open) is ERR_UNAVAILABLE: the caller fails fast
 * and compensates as it does for a local outage. */
#include <stdio.h>

#include <jansson.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/upstream.h"
#include "inventory_internal.h"

static struct upstream *up(struct app *app)
{
    const struct config *cfg = app_config(app);
    return upstream_service(cfg, "inventory", cfg->inventory_url);
}

bool inventory__remote(struct app *app)
{
    return app_config(app)->inventory_url && !app_service_ctx(app, "inventory");
}

static int post_id(struct app *app, int64_t id, const char *verb)
{
    char path[96], rid[21];
    snprintf(path, sizeof path, "/internal/v1/inventory/reservations/%s/%s", id_format(id, rid),
             verb);
    int status;
    int rc =
        upstream_call(up(app), "POST", path, NULL, NULL, 0, UPSTREAM_IDEMPOTENT, 0, &status, NULL);
    return rc < 0 ? rc : upstream_status_err(status);
}

int inventory__remote_get(struct app *app, int64_t product_id, int64_t *available,
                          int64_t *reserved)
{
    char path[80], pid[21];
    snprintf(path, sizeof path, "/internal/v1/inventory/levels/%s", id_format(product_id, pid));
    int status;
    json_t *resp = NULL;
    int rc = upstream_call(up(app), "GET", path, NULL, NULL, 0, 0, 0, &status, &resp);
    if (rc == 0 && (rc = upstream_status_err(status)) == 0) {
        json_t *a = json_object_get(resp, "available"), *r = json_object_get(resp, "reserved");
        if (!json_is_integer(a) || !json_is_integer(r))
            rc = ERR_INTERNAL;
        if (rc == 0 && available)
            *available = json_integer_value(a);
        if (rc == 0 && reserved)
            *reserved = json_integer_value(r);
    }
    json_decref(resp);
    return rc;
}

int inventory__remote_reserve(struct app *app, int64_t reservation_id,
                              const struct inventory_item *items, int n, int ttl_seconds,
                              int64_t *short_product)
{
    if (reservation_id <= 0 || n <= 0 || n > INVENTORY_MAX_ITEMS || !items || ttl_seconds <= 0)
        return ERR_INVALID;
    char rid[21];
    json_t *arr = json_array();
    for (int i = 0; arr && i < n; i++) {
        char pid[21];
        json_array_append_new(arr, json_pack("{s:s,s:i}", "product_id",
                                             id_format(items[i].product_id, pid), "quantity",
                                             items[i].quantity));
    }
    json_t *body =
        arr ? json_pack("{s:s,s:o,s:i}", "reservation_id", id_format(reservation_id, rid), "items",
                        arr, "ttl_seconds", ttl_seconds)
            : NULL;
    if (!body)
        return ERR_NOMEM;
    int status;
    json_t *resp = NULL;
    int rc = upstream_call_json(up(app), "POST", "/internal/v1/inventory/reservations", NULL, body,
                                UPSTREAM_IDEMPOTENT, &status, &resp);
    json_decref(body);
    if (rc == 0 && (rc = upstream_status_err(status)) == ERR_CONFLICT && short_product) {
        const char *pid =
            json_string_value(json_object_get(json_object_get(resp, "error"), "product_id"));
        if (!pid || id_parse(pid, short_product) < 0)
            *short_product = 0;
    }
    json_decref(resp);
    return rc;
}

int inventory__remote_confirm(struct app *app, int64_t reservation_id)
{
    return reservation_id <= 0 ? ERR_INVALID : post_id(app, reservation_id, "confirm");
}

int inventory__remote_release(struct app *app, int64_t reservation_id)
{
    return reservation_id <= 0 ? ERR_INVALID : post_id(app, reservation_id, "release");
}
