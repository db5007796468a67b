/* SPDX-License-Identifier: MIT */
/* shipping_http.c — shipping routes: quotes (anyone) and carrier tracking events (admin). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/http.h"
#include "emporium/id.h"
#include "emporium/service.h"
#include "emporium/upstream.h"
#include "shipping_internal.h"

static int h_quotes(struct http_req *req)
{
    int rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    static const char *const allowed[] = {"items", "address", NULL};
    if ((rc = http_json_only(req, body, allowed)) < 0)
        return rc;
    json_t *items = json_object_get(body, "items");
    if (!json_is_array(items))
        return http_fail(req, ERR_INVALID, "items", "must be an array");
    size_t n = json_array_size(items);
    if (n < 1 || n > SHIPPING_MAX_ITEMS)
        return http_fail(req, ERR_INVALID, "items", "must hold 1 to %d items", SHIPPING_MAX_ITEMS);
    struct shipping_item list[SHIPPING_MAX_ITEMS];
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(items, i);
        char f[48];
        snprintf(f, sizeof f, "items[%zu]", i);
        if (!json_is_object(it))
            return http_fail(req, ERR_INVALID, f, "must be an object");
        json_t *pid = json_object_get(it, "product_id"), *q = json_object_get(it, "quantity");
        snprintf(f, sizeof f, "items[%zu].product_id", i);
        if (!json_is_string(pid) || id_parse(json_string_value(pid), &list[i].product_id) < 0)
            return http_fail(req, ERR_INVALID, f, "must be a product id string");
        snprintf(f, sizeof f, "items[%zu].quantity", i);
        if (!json_is_integer(q) || json_integer_value(q) < 1 || json_integer_value(q) > 99)
            return http_fail(req, ERR_INVALID, f, "must be an integer from 1 to 99");
        list[i].quantity = (int)json_integer_value(q);
        list[i].weight_grams = -1; /* shipping_price reads the catalog */
    }
    struct shipping_address addr;
    const char *member, *msg;
    if (shipping_address_parse(json_object_get(body, "address"), false, &addr, &member, &msg) < 0) {
        char f[64];
        snprintf(f, sizeof f, "address%s%s", member ? "." : "", member ? member : "");
        return http_fail(req, ERR_INVALID, f, "%s", msg);
    }
    json_t *opts = json_array();
    static const char *const methods[] = {"standard", "express"};
    for (int m = 0; m < 2; m++) {
        struct shipping_option o;
        int64_t bad = 0;
        rc = shipping_price(http_app(req), list, (int)n, addr.country, methods[m], &o, &bad);
        if (rc == ERR_NOTFOUND) {
            json_decref(opts);
            for (size_t i = 0; i < n; i++)
                if (list[i].product_id == bad) {
                    char f[48];
                    snprintf(f, sizeof f, "items[%zu].product_id", i);
                    return http_fail(req, ERR_INVALID, f, "no such product");
                }
            return http_fail(req, ERR_INVALID, "items", "no such product");
        }
        if (rc < 0) {
            json_decref(opts);
            return rc;
        }
        json_array_append_new(opts, json_pack("{s:s,s:s,s:{s:I,s:s},s:i}", "method", o.method,
                                              "carrier", o.carrier, "price", "amount",
                                              (json_int_t)o.price, "currency", o.currency,
                                              "estimated_days", o.estimated_days));
    }
    return http_reply_json(req, 200, json_pack("{s:o}", "options", opts));
}

/* RFC 3339 date-time ("2026-05-01T10:00:00Z", fractions and offsets allowed) to Unix ms. */
static int parse_rfc3339(const char *s, int64_t *out)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return ERR_INVALID;
    int64_t ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; isdigit((unsigned char)*p); p++, digits++)
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
        if (digits == 0)
            return ERR_INVALID;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    int64_t offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int hh, mm;
        /* Exactly "+HH:MM": the p += 6 below must not step past the terminator. */
        if (!isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) || p[3] != ':' ||
            !isdigit((unsigned char)p[4]) || !isdigit((unsigned char)p[5]))
            return ERR_INVALID;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2 || hh > 23 || mm > 59)
            return ERR_INVALID;
        offset = (hh * 60 + mm) * 60 * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return ERR_INVALID;
    }
    if (*p)
        return ERR_INVALID;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return ERR_INVALID;
    *out = ((int64_t)t - offset) * 1000 + ms;
    return 0;
}

static int h_shipment_event(struct http_req *req)
{
    int64_t id;
    if (id_parse(http_param(req, "id"), &id) < 0)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such shipment");
    int rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    static const char *const allowed[] = {"status", "at", NULL};
    if ((rc = http_json_only(req, body, allowed)) < 0)
        return rc;
    const char *status = NULL, *at = NULL;
    if ((rc = http_json_string(req, body, "status", true, 1, 32, &status)) < 0)
        return rc;
    if (strcmp(status, "in_transit") != 0 && strcmp(status, "delivered") != 0)
        return http_fail(req, ERR_INVALID, "status", "must be in_transit or delivered");
    if ((rc = http_json_string(req, body, "at", false, 1, 64, &at)) < 0)
        return rc;
    int64_t at_ms = now_ms();
    if (at && parse_rfc3339(at, &at_ms) < 0)
        return http_fail(req, ERR_INVALID, "at", "must be an RFC 3339 date-time");
    int64_t order_id = 0;
    rc = shipping__apply_event(http_app(req), id, status, at_ms, &order_id);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such shipment");
    if (rc == ERR_CONFLICT)
        return http_fail_code(req, ERR_CONFLICT, "invalid_transition", NULL,
                              "the shipment cannot move to %s", status);
    if (rc < 0)
        return rc;
    struct shipment_info s;
    struct shipment_event_view *ev;
    int n;
    if ((rc = shipping__shipment(http_app(req), id, &s, &order_id, &ev, &n)) < 0)
        return rc;
    json_t *events = json_array();
    char ts[32], idb[21], oid[21];
    for (int i = 0; i < n; i++)
        json_array_append_new(events, json_pack("{s:s,s:s}", "status", ev[i].status, "at",
                                                time_format(ev[i].at, ts)));
    free(ev);
    return http_reply_json(req, 200,
                           json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o}", "id", id_format(s.id, idb),
                                     "order_id", id_format(order_id, oid), "method", s.method,
                                     "carrier", s.carrier, "tracking_number", s.tracking_number,
                                     "status", s.status, "events", events));
}

/* ---- internal routes: svc/shipping.h for other processes (shipping_remote.c calls them) ---- */

static json_t *shipment_json(const struct shipment_info *s)
{
    char id[21];
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", id_format(s->id, id), "method", s->method,
                     "carrier", s->carrier, "tracking_number", s->tracking_number, "status",
                     s->status);
}

static int int_order_id(struct http_req *req, int64_t *out)
{
    const char *s = http_param(req, "order_id");
    if (!s || id_parse(s, out) < 0 || *out <= 0)
        return http_fail(req, ERR_INVALID, "order_id", "must be an id");
    return 0;
}

static int h_int_price(struct http_req *req)
{
    int rc = http_internal_guard(req);
    if (rc < 0)
        return rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    const char *country, *method;
    if ((rc = http_json_string(req, body, "country", true, 2, 2, &country)) < 0 ||
        (rc = http_json_string(req, body, "method", true, 1, 15, &method)) < 0)
        return rc;
    json_t *items = json_object_get(body, "items");
    size_t n = json_array_size(items);
    if (!json_is_array(items) || n > SHIPPING_MAX_ITEMS)
        return http_fail(req, ERR_INVALID, "items", "must hold 0 to %d items", SHIPPING_MAX_ITEMS);
    struct shipping_item list[SHIPPING_MAX_ITEMS];
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(items, i);
        const char *pid = json_string_value(json_object_get(it, "product_id"));
        json_t *q = json_object_get(it, "quantity"), *w = json_object_get(it, "weight_grams");
        if (!pid || id_parse(pid, &list[i].product_id) < 0 || !json_is_integer(q) ||
            !json_is_integer(w) || json_integer_value(q) < 1 || json_integer_value(q) > 1000000 ||
            json_integer_value(w) < -1 || json_integer_value(w) > 100000000)
            return http_fail(req, ERR_INVALID, "items",
                             "each needs a product_id, a quantity and weight_grams");
        list[i].quantity = (int)json_integer_value(q);
        list[i].weight_grams = (int)json_integer_value(w);
    }
    struct shipping_option o;
    int64_t bad = 0;
    rc = shipping_price(http_app(req), list, (int)n, country, method, &o, &bad);
    if (rc == ERR_NOTFOUND) {
        char pid[21];
        return http_fail_code(req, rc, "product_not_found",
                              json_pack("{s:s}", "product_id", id_format(bad, pid)),
                              "no such product");
    }
    if (rc == ERR_INVALID)
        return http_fail(req, rc, "method", "must be standard or express");
    if (rc < 0)
        return rc;
    return http_reply_json(req, 200,
                           json_pack("{s:s,s:s,s:I,s:s,s:i}", "method", o.method, "carrier",
                                     o.carrier, "price", (json_int_t)o.price, "currency",
                                     o.currency, "estimated_days", o.estimated_days));
}

static int h_int_create(struct http_req *req)
{
    int rc = http_internal_guard(req);
    if (rc < 0)
        return rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    const char *oid, *method, *member = NULL, *msg = NULL;
    int64_t order_id;
    if ((rc = http_json_string(req, body, "order_id", true, 1, 20, &oid)) < 0 ||
        (rc = http_json_string(req, body, "method", true, 1, 15, &method)) < 0)
        return rc;
    if (id_parse(oid, &order_id) < 0 || order_id <= 0)
        return http_fail(req, ERR_INVALID, "order_id", "must be an id");
    struct shipping_address a;
    if (shipping_address_parse(json_object_get(body, "address"), true, &a, &member, &msg) < 0)
        return http_fail(req, ERR_INVALID, "address", "%s%s%s", member ? member : "",
                         member ? ": " : "", msg ? msg : "is not valid");
    struct shipment_info s;
    rc = shipping_create(http_app(req), order_id, method, &a, &s);
    return rc < 0 ? rc : http_reply_json(req, 200, shipment_json(&s));
}

static int h_int_get(struct http_req *req)
{
    int64_t order_id;
    int rc = http_internal_guard(req);
    if (rc < 0 || (rc = int_order_id(req, &order_id)) < 0)
        return rc;
    struct shipment_info s;
    rc = shipping_get(http_app(req), order_id, &s);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, rc, "order_id", "no shipment");
    return rc < 0 ? rc : http_reply_json(req, 200, shipment_json(&s));
}

static int h_int_cancel(struct http_req *req)
{
    int64_t order_id;
    int rc = http_internal_guard(req);
    if (rc < 0 || (rc = int_order_id(req, &order_id)) < 0)
        return rc;
    rc = shipping_cancel(http_app(req), order_id);
    if (rc == ERR_CONFLICT)
        return http_fail(req, rc, "order_id", "the shipment has left");
    return rc < 0 ? rc : http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static const struct http_route shipping__routes[] = {
    {"POST", "/api/v1/shipping/quotes", h_quotes, 0},
    {"POST", "/api/v1/shipments/{id}/events", h_shipment_event, ROUTE_ADMIN},
    {"POST", "/internal/v1/shipping/quotes", h_int_price, ROUTE_NOLIMIT},
    {"POST", "/internal/v1/shipping/shipments", h_int_create, ROUTE_NOLIMIT | ROUTE_PRIVATE},
    {"GET", "/internal/v1/shipping/shipments/{order_id}", h_int_get, ROUTE_NOLIMIT | ROUTE_PRIVATE},
    {"POST", "/internal/v1/shipping/shipments/{order_id}/cancel", h_int_cancel, ROUTE_NOLIMIT},
    {NULL, NULL, NULL, 0},
};

/* The service as the binary sees it: routes here, the schema from shipping_store.c, the
 * lifecycle from shipping.c. */
extern const struct service_db shipping__dbs[];

const struct service service_shipping = {
    .name = "shipping",
    .routes = shipping__routes,
    .dbs = shipping__dbs,
};
