/* SPDX-License-Identifier: MIT */
/* order_http.c — order routes: parse the request, call the order service (svc/order.h),
 * render the answer. The only file of the service that includes emporium/http.h.
 *
 * Errors are rendered by the one error mapping (http_fail / http_fail_code): an outcome's
 * machine code becomes error.code and what goes with it joins the error object — product_id
 * (out_of_stock, …), lines (price_changed), retryable and the failed order (402, under
 * error.order). No handler writes an error body itself. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/http.h"
#include "emporium/id.h"
#include "emporium/service.h"
#include "emporium/svc/order.h"
#include "order_internal.h"

/* --- rendering --- */

static json_t *money(int64_t amount, const char *currency)
{
    return json_pack("{s:I,s:s}", "amount", (json_int_t)amount, "currency", currency);
}

static json_t *order_json(const struct order_view *v)
{
    char ts[32], ts2[32], id[21], pid[21];
    const char *cur = v->currency;
    json_t *items = json_array();
    for (int i = 0; i < v->n_items; i++) {
        const struct order_item *it = &v->items[i];
        json_array_append_new(items, json_pack("{s:s,s:s,s:I,s:o,s:o}", "product_id",
                                               id_format(it->product_id, pid), "name", it->name,
                                               "quantity", (json_int_t)it->quantity, "unit_price",
                                               money(it->unit_price, cur), "line_total",
                                               money(it->unit_price * it->quantity, cur)));
    }
    const struct shipping_address *a = &v->addr;
    json_t *addr = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "name", a->name, "line1", a->line1,
                             "line2", a->line2, "city", a->city, "region", a->region, "postal_code",
                             a->postal_code, "country", a->country);
    json_t *out =
        json_pack("{s:s,s:s,s:o,s:o,s:o,s:o,s:s,s:o,s:s,s:s}", "id", id_format(v->id, id), "status",
                  v->status, "items", items, "subtotal", money(v->subtotal, cur), "shipping",
                  money(v->shipping, cur), "total", money(v->total, cur), "shipping_method",
                  v->shipping_method, "shipping_address", addr ? addr : json_object(), "created_at",
                  time_format(v->created_at, ts), "updated_at", time_format(v->updated_at, ts2));
    if (!out)
        return NULL;
    if (v->has_payment) {
        json_t *pay = json_pack("{s:s,s:s}", "brand", v->payment_brand, "last4", v->payment_last4);
        if (v->full && v->payment_status[0])
            json_object_set_new(pay, "status", json_string(v->payment_status));
        json_object_set_new(out, "payment", pay);
    }
    if (v->has_failure) {
        json_object_set_new(out, "failure_reason", json_string(v->failure_reason));
        json_object_set_new(out, "retryable", json_boolean(v->retryable));
    }
    if (v->full) {
        const struct shipment_info *s = &v->shipment;
        char sid[21];
        json_object_set_new(out, "shipment",
                            v->has_shipment ? json_pack("{s:s,s:s,s:s,s:s,s:s}", "id",
                                                        id_format(s->id, sid), "method", s->method,
                                                        "carrier", s->carrier, "tracking_number",
                                                        s->tracking_number, "status", s->status)
                                            : json_null());
        json_t *hist = json_array();
        for (int i = 0; i < v->n_history; i++) {
            const struct order_history_entry *h = &v->history[i];
            json_t *e = json_pack("{s:s,s:s}", "status", h->status, "at", time_format(h->at, ts));
            if (h->note[0])
                json_object_set_new(e, "note", json_string(h->note));
            json_array_append_new(hist, e);
        }
        json_object_set_new(out, "history", hist);
    }
    return out;
}

static json_t *summary_json(const struct order_view *v, bool with_user)
{
    char ts[32], id[21], uid[21];
    const char *cur = v->currency;
    json_t *o =
        json_pack("{s:s,s:s,s:o,s:o,s:o,s:s}", "id", id_format(v->id, id), "status", v->status,
                  "subtotal", money(v->subtotal, cur), "shipping", money(v->shipping, cur), "total",
                  money(v->total, cur), "created_at", time_format(v->created_at, ts));
    if (o && v->has_failure)
        json_object_set_new(o, "failure_reason", json_string(v->failure_reason));
    if (o && with_user)
        json_object_set_new(o, "user_id", json_string(id_format(v->user_id, uid)));
    return o;
}

/* --- POST /api/v1/orders --- */

static int key_check(struct http_req *req, const char **out)
{
    const char *k = http_header(req, "Idempotency-Key");
    if (!k || !*k)
        return http_fail(req, ERR_INVALID, "Idempotency-Key", "the header is required");
    size_t n = strlen(k);
    if (n > ORDER_KEY_MAX)
        return http_fail(req, ERR_INVALID, "Idempotency-Key", "must be 1 to %d characters",
                         ORDER_KEY_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x20 || (unsigned char)k[i] > 0x7e)
            return http_fail(req, ERR_INVALID, "Idempotency-Key",
                             "must be printable ASCII characters");
    *out = k;
    return 0;
}

static int card_read(struct http_req *req, json_t *p, struct payment_card *card)
{
    if (!json_is_object(p))
        return http_fail(req, ERR_INVALID, "payment", p ? "must be an object" : "is required");
    const char *k;
    json_t *v;
    json_object_foreach (p, k, v) {
        if (strcmp(k, "card_number") && strcmp(k, "exp_month") && strcmp(k, "exp_year") &&
            strcmp(k, "cvc")) {
            char f[80];
            snprintf(f, sizeof f, "payment.%.60s", k);
            return http_fail(req, ERR_INVALID, f, "unknown field");
        }
    }
    json_t *num = json_object_get(p, "card_number"), *m = json_object_get(p, "exp_month"),
           *y = json_object_get(p, "exp_year"), *cvc = json_object_get(p, "cvc");
    if (!json_is_string(num) || json_string_length(num) > 40)
        return http_fail(req, ERR_INVALID, "payment.card_number", "must be a card number string");
    if (!json_is_integer(m) || json_integer_value(m) < 1 || json_integer_value(m) > 12)
        return http_fail(req, ERR_INVALID, "payment.exp_month", "must be an integer from 1 to 12");
    if (!json_is_integer(y) || json_integer_value(y) < 2000 || json_integer_value(y) > 2100)
        return http_fail(req, ERR_INVALID, "payment.exp_year", "must be a four-digit year");
    if (!json_is_string(cvc) || json_string_length(cvc) > 8)
        return http_fail(req, ERR_INVALID, "payment.cvc", "must be a string of 3 or 4 digits");
    card->number = json_string_value(num);
    card->exp_month = (int)json_integer_value(m);
    card->exp_year = (int)json_integer_value(y);
    card->cvc = json_string_value(cvc);
    const char *field, *msg;
    bool expired;
    if (payment_card_check(card, &field, &msg, &expired) < 0) {
        char f[40];
        snprintf(f, sizeof f, "payment.%s", field);
        if (expired)
            return http_fail_code(req, ERR_INVALID, "card_expired", json_pack("{s:s}", "field", f),
                                  "%s", msg);
        return http_fail(req, ERR_INVALID, f, "%s", msg);
    }
    return 0;
}

static void add_location(struct http_req *req, int64_t id)
{
    char loc[64], idb[21];
    snprintf(loc, sizeof loc, "/api/v1/orders/%s", id_format(id, idb));
    http_add_header(req, "Location", loc);
}

/* A refused checkout through the one error mapping. */
static int place_refused(struct http_req *req, int rc, const struct order_outcome *o)
{
    const char *code = o->code;
    char pid[21];
    id_format(o->product_id, pid);
    if (rc == ERR_PAYMENT) {
        json_t *order = o->order.id ? order_json(&o->order) : json_null();
        return http_fail_code(
            req, ERR_PAYMENT, code[0] ? code : "card_declined",
            json_pack("{s:b,s:o}", "retryable", o->retryable, "order", order ? order : json_null()),
            "the payment was not accepted (%s)", code[0] ? code : "card_declined");
    }
    if (!strcmp(code, "price_changed")) {
        json_t *lines = json_array();
        for (int i = 0; i < o->n_changed; i++) {
            const struct order_price_change *c = &o->changed[i];
            json_array_append_new(lines, json_pack("{s:s,s:o,s:o}", "product_id",
                                                   id_format(c->product_id, pid), "previous_price",
                                                   money(c->old_price, c->currency), "unit_price",
                                                   money(c->new_price, c->currency)));
        }
        return http_fail_code(req, rc, code, json_pack("{s:o}", "lines", lines),
                              "prices changed since the cart was filled; the cart now shows the "
                              "new prices");
    }
    static const struct {
        const char *code, *message;
        bool product;
    } msgs[] = {
        {"cart_empty", "the cart is empty", false},
        {"idempotency_key_reused", "this Idempotency-Key was used with a different request", false},
        {"request_in_progress", "a request with this Idempotency-Key is still running", false},
        {"out_of_stock", "not enough stock for a product in the cart", true},
        {"product_unavailable", "a product in the cart is no longer sold", true},
        {"currency_mismatch", "the cart mixes currencies", true},
        {"currency_unsupported", "shipping is not priced in this cart's currency", false},
        {"reservation_expired", "the stock reservation expired, try again", false},
    };
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        if (strcmp(msgs[i].code, code) != 0)
            continue;
        if (!strcmp(code, "request_in_progress"))
            http_add_header(req, "Retry-After", "1");
        return http_fail_code(req, rc, code,
                              msgs[i].product ? json_pack("{s:s}", "product_id", pid) : NULL, "%s",
                              msgs[i].message);
    }
    return code[0] ? http_fail_code(req, rc, code, NULL, "%s", code) : rc;
}

static int h_place(struct http_req *req)
{
    struct order_place_req rq = {.user_id = http_auth(req)->user_id, .method = "standard"};
    int rc;
    if ((rc = key_check(req, &rq.idem_key)) < 0)
        return rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    static const char *const allowed[] = {"shipping_address", "payment", "shipping_method", NULL};
    if ((rc = http_json_only(req, body, allowed)) < 0)
        return rc;
    const char *member, *msg;
    json_t *addr = json_object_get(body, "shipping_address");
    if (shipping_address_parse(addr, true, &rq.addr, &member, &msg) < 0) {
        char f[80];
        snprintf(f, sizeof f, "shipping_address%s%.60s", member ? "." : "", member ? member : "");
        return http_fail(req, ERR_INVALID, f, "%s", addr ? msg : "is required");
    }
    if ((rc = http_json_string(req, body, "shipping_method", false, 1, 16, &rq.method)) < 0)
        return rc;
    if (strcmp(rq.method, "standard") != 0 && strcmp(rq.method, "express") != 0)
        return http_fail(req, ERR_INVALID, "shipping_method", "must be standard or express");
    if ((rc = card_read(req, json_object_get(body, "payment"), &rq.card)) < 0)
        return rc;
    struct order_outcome *o = malloc(sizeof *o);
    if (!o)
        return ERR_NOMEM;
    rc = order_place(http_app(req), &rq, o);
    if (o->replayed)
        http_add_header(req, "Idempotent-Replayed", "true");
    if (rc == 0) {
        json_t *doc = order_json(&o->order);
        add_location(req, o->order.id);
        rc = doc ? http_reply_json(req, 201, doc) : ERR_NOMEM;
    } else {
        rc = place_refused(req, rc, o);
    }
    order_view_free(&o->order);
    free(o);
    return rc;
}

/* --- reads and cancel --- */

static int path_id(struct http_req *req, int64_t *id)
{
    if (id_parse(http_param(req, "id"), id) < 0)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such order");
    return 0;
}

static int reply_order(struct http_req *req, int64_t id)
{
    const struct http_auth *au = http_auth(req);
    struct order_view v;
    int rc = order_get(http_app(req), id, au->user_id, au->role == ROLE_ADMIN, true, &v);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such order");
    if (rc < 0)
        return rc;
    json_t *doc = order_json(&v);
    order_view_free(&v);
    return doc ? http_reply_json(req, 200, doc) : ERR_NOMEM;
}

static int h_get(struct http_req *req)
{
    int64_t id;
    int rc = path_id(req, &id);
    return rc < 0 ? rc : reply_order(req, id);
}

static int h_cancel(struct http_req *req)
{
    int64_t id;
    int rc = path_id(req, &id);
    if (rc < 0)
        return rc;
    const struct http_auth *au = http_auth(req);
    struct order_outcome *o = malloc(sizeof *o);
    if (!o)
        return ERR_NOMEM;
    rc = order_cancel(http_app(req), id, au->user_id, au->role == ROLE_ADMIN, o);
    if (rc == ERR_NOTFOUND)
        rc = http_fail(req, ERR_NOTFOUND, NULL, "no such order");
    else if (rc == ERR_CONFLICT && !strcmp(o->code, "order_shipped"))
        rc =
            http_fail_code(req, rc, o->code, NULL, "the order has shipped and cannot be cancelled");
    else if (rc == ERR_CONFLICT)
        rc = http_fail_code(req, rc, o->code[0] ? o->code : "order_not_cancellable", NULL,
                            "the order can no longer be cancelled");
    free(o);
    return rc < 0 ? rc : reply_order(req, id);
}

/* POST /api/v1/admin/orders/{id}/approve and /reject: the fraud review's decisions. */
static int review(struct http_req *req, bool approve)
{
    int64_t id;
    int rc = path_id(req, &id);
    if (rc < 0)
        return rc;
    struct order_outcome *o = malloc(sizeof *o);
    if (!o)
        return ERR_NOMEM;
    rc = approve ? order_approve(http_app(req), id, o) : order_reject(http_app(req), id, o);
    if (rc == ERR_NOTFOUND)
        rc = http_fail(req, ERR_NOTFOUND, NULL, "no such order");
    else if (rc == ERR_CONFLICT)
        rc = http_fail_code(req, rc, o->code[0] ? o->code : "order_not_on_hold", NULL,
                            "the order is not held for review");
    free(o);
    return rc < 0 ? rc : reply_order(req, id);
}

static int h_approve(struct http_req *req) { return review(req, true); }

static int h_reject(struct http_req *req) { return review(req, false); }

static int read_page(struct http_req *req, int *limit, int64_t *cursor, const char **status)
{
    int rc = http_query_limit(req, 20, 100, limit);
    if (rc < 0)
        return rc;
    const char *cur = http_query(req, "cursor");
    *cursor = INT64_MAX;
    if (cur && (id_parse(cur, cursor) < 0 || *cursor <= 0))
        return http_fail(req, ERR_INVALID, "cursor", "is not a valid cursor");
    *status = http_query(req, "status");
    if (*status && !order_status_valid(*status))
        return http_fail(req, ERR_INVALID, "status", "is not an order status");
    return 0;
}

static int list(struct http_req *req, int64_t user_id)
{
    int limit, rc, n;
    int64_t cursor;
    const char *status = NULL;
    bool more;
    if ((rc = read_page(req, &limit, &cursor, &status)) < 0)
        return rc;
    struct order_view *rows = calloc((size_t)limit + 1, sizeof *rows);
    if (!rows)
        return ERR_NOMEM;
    rc = order_list(http_app(req), user_id, status, cursor, limit, rows, &n, &more);
    if (rc < 0) {
        free(rows);
        return rc;
    }
    json_t *items = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(items, summary_json(&rows[i], user_id == 0));
    char last[21];
    json_t *next = more && n ? json_string(id_format(rows[n - 1].id, last)) : json_null();
    free(rows); /* summaries hold no allocations */
    return http_reply_json(req, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor", next));
}

static int h_list(struct http_req *req) { return list(req, http_auth(req)->user_id); }

static int h_admin_list(struct http_req *req) { return list(req, 0); }

static int h_admin_events(struct http_req *req)
{
    int64_t id;
    int rc = path_id(req, &id);
    if (rc < 0)
        return rc;
    struct order_outbox_event *ev;
    int n;
    rc = order_outbox(http_app(req), id, &ev, &n);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such order");
    if (rc < 0)
        return rc;
    json_t *items = json_array();
    char ts[32], eid[21];
    for (int i = 0; i < n; i++) {
        json_error_t jerr;
        json_t *doc = json_loads(ev[i].payload, 0, &jerr);
        json_array_append_new(
            items, json_pack("{s:s,s:s,s:o,s:s,s:b}", "event_id", id_format(ev[i].id, eid), "type",
                             ev[i].type, "payload", doc ? doc : json_null(), "created_at",
                             time_format(ev[i].created_at, ts), "published", ev[i].published));
    }
    order_outbox_free(ev, n);
    return http_reply_json(req, 200, json_pack("{s:o,s:n}", "items", items, "next_cursor"));
}

static const struct http_route order__routes[] = {
    {"POST", "/api/v1/orders", h_place, ROUTE_AUTH | ROUTE_OFFLOAD},
    {"GET", "/api/v1/orders", h_list, ROUTE_AUTH},
    {"GET", "/api/v1/orders/{id}", h_get, ROUTE_AUTH},
    {"POST", "/api/v1/orders/{id}/cancel", h_cancel, ROUTE_AUTH | ROUTE_OFFLOAD},
    {"GET", "/api/v1/admin/orders", h_admin_list, ROUTE_ADMIN},
    {"GET", "/api/v1/admin/orders/{id}/events", h_admin_events, ROUTE_ADMIN},
    {"POST", "/api/v1/admin/orders/{id}/approve", h_approve, ROUTE_ADMIN | ROUTE_OFFLOAD},
    {"POST", "/api/v1/admin/orders/{id}/reject", h_reject, ROUTE_ADMIN | ROUTE_OFFLOAD},
    {NULL, NULL, NULL, 0},
};

/* The service as the binary sees it: routes here, the schema from order_store.c, the
 * lifecycle from order.c. */
extern const struct service_db order__dbs[];

const struct service service_order = {
    .name = "order",
    .routes = order__routes,
    .dbs = order__dbs,
    .init = order__init,
    .on_serve = order__shards_serve,
    .deinit = order__deinit,
    .command = "shards",
    .run_command = order__shards_command,
    .command_help = "the order shard map: status, move buckets online",
    .cli = &order__shards_cli,
};
