/* SPDX-License-Identifier: MIT */
/* payment_http.c — the payment service's operator route: an order's payments and their
 * operations (audit: how many authorizations, captures, voids and refunds). Parses and
 * renders only; the rows come from payment__audit (SQL in payment_store.c). */
#include <string.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/http.h"
#include "emporium/id.h"
#include "emporium/service.h"
#include "emporium/upstream.h"
#include "payment_internal.h"

static json_t *money(int64_t amount, const char *currency)
{
    return json_pack("{s:I,s:s}", "amount", (json_int_t)amount, "currency", currency);
}

static int h_admin_payments(struct http_req *req)
{
    const char *q = http_query(req, "order_id");
    int64_t order_id;
    if (!q)
        return http_fail(req, ERR_INVALID, "order_id", "is required");
    if (id_parse(q, &order_id) < 0)
        return http_fail(req, ERR_INVALID, "order_id", "must be an id");
    struct payment_view *v;
    int n;
    int rc = payment__audit(http_app(req), order_id, &v, &n);
    if (rc < 0)
        return rc;
    json_t *items = json_array();
    char ts[32], id[21];
    for (int i = 0; i < n; i++) {
        const char *cur = v[i].currency;
        json_t *list = json_array();
        for (int j = 0; j < v[i].n_ops; j++) {
            const struct payment_op_view *o = &v[i].ops[j];
            json_array_append_new(list, json_pack("{s:s,s:s,s:o,s:s}", "kind", o->kind, "status",
                                                  o->status, "amount", money(o->amount, cur), "at",
                                                  time_format(o->at, ts)));
        }
        json_t *p = json_pack("{s:s,s:s,s:s,s:o,s:s,s:s,s:s,s:o}", "id", id_format(v[i].id, id),
                              "order_id", q, "status", v[i].status, "amount",
                              money(v[i].amount, cur), "brand", v[i].brand, "last4", v[i].last4,
                              "created_at", time_format(v[i].created_at, ts), "operations", list);
        if (v[i].reason[0])
            json_object_set_new(p, "failure_reason", json_string(v[i].reason));
        json_array_append_new(items, p);
    }
    payment_views_free(v, n);
    return http_reply_json(req, 200, json_pack("{s:o,s:n}", "items", items, "next_cursor"));
}

/* ---- internal routes: svc/payment.h for other processes (payment_remote.c calls them) ---- */

static int order_param(struct http_req *req, int64_t *out)
{
    const char *s = http_param(req, "order_id");
    if (!s || id_parse(s, out) < 0 || *out <= 0)
        return http_fail(req, ERR_INVALID, "order_id", "must be an id");
    return 0;
}

static json_t *result_json(const struct payment_result *r)
{
    char id[21];
    return json_pack("{s:s,s:s,s:s,s:b,s:s,s:s}", "payment_id", id_format(r->payment_id, id),
                     "status", r->status, "failure_reason", r->failure_reason, "retryable",
                     r->retryable, "brand", r->brand, "last4", r->last4);
}

/* 200 {"authorized": true|false, "payment": {…}}: a decline is an answer, not an error. */
static int h_int_authorize(struct http_req *req)
{
    int rc = http_internal_guard(req);
    if (rc < 0)
        return rc;
    const char *key = http_header(req, "Idempotency-Key");
    if (!key || !*key || strlen(key) > 128)
        return http_fail(req, ERR_INVALID, "Idempotency-Key", "is required (1 to 128 bytes)");
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    const char *oid, *currency, *number, *cvc;
    int64_t order_id, amount, month, year;
    json_t *card = json_object_get(body, "card");
    if ((rc = http_json_string(req, body, "order_id", true, 1, 20, &oid)) < 0 ||
        (rc = http_json_int(req, body, "amount", true, 0, INT64_MAX / 2, &amount)) < 0 ||
        (rc = http_json_string(req, body, "currency", true, 3, 3, &currency)) < 0)
        return rc;
    if (id_parse(oid, &order_id) < 0 || order_id <= 0)
        return http_fail(req, ERR_INVALID, "order_id", "must be an id");
    if (!json_is_object(card))
        return http_fail(req, ERR_INVALID, "card", "is required");
    if ((rc = http_json_string(req, card, "number", true, 1, 40, &number)) < 0 ||
        (rc = http_json_string(req, card, "cvc", true, 1, 8, &cvc)) < 0 ||
        (rc = http_json_int(req, card, "exp_month", true, 1, 12, &month)) < 0 ||
        (rc = http_json_int(req, card, "exp_year", true, 1000, 9999, &year)) < 0)
        return rc;
    struct payment_card c = {number, (int)month, (int)year, cvc};
    struct payment_result r = {0};
    rc = payment_authorize(http_app(req), key, order_id, amount, currency, &c, &r);
    if (rc < 0 && rc != ERR_PAYMENT)
        return rc == ERR_INVALID ? http_fail(req, rc, "card", "is not a valid card") : rc;
    return http_reply_json(
        req, 200, json_pack("{s:b,s:o}", "authorized", rc == 0, "payment", result_json(&r)));
}

static int h_int_capture(struct http_req *req)
{
    int64_t id;
    int rc = http_internal_guard(req);
    if (rc < 0 || (rc = order_param(req, &id)) < 0)
        return rc;
    rc = payment_capture(http_app(req), id);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, rc, "order_id", "no authorized payment");
    if (rc == ERR_CONFLICT)
        return http_fail(req, rc, "order_id", "the payment was voided");
    return rc < 0 ? rc : http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static int h_int_cancel(struct http_req *req)
{
    int64_t id;
    int rc = http_internal_guard(req);
    if (rc < 0 || (rc = order_param(req, &id)) < 0)
        return rc;
    rc = payment_cancel(http_app(req), id);
    return rc < 0 ? rc : http_reply_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static int h_int_get(struct http_req *req)
{
    int64_t id;
    int rc = http_internal_guard(req);
    if (rc < 0 || (rc = order_param(req, &id)) < 0)
        return rc;
    struct payment_result r;
    rc = payment_get(http_app(req), id, &r);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, rc, "order_id", "no payment");
    return rc < 0 ? rc : http_reply_json(req, 200, result_json(&r));
}

static const struct http_route payment__routes[] = {
    {"GET", "/api/v1/admin/payments", h_admin_payments, ROUTE_ADMIN},
    {"POST", "/internal/v1/payment/authorizations", h_int_authorize,
     ROUTE_NOLIMIT | ROUTE_OFFLOAD | ROUTE_PRIVATE},
    {"POST", "/internal/v1/payment/orders/{order_id}/capture", h_int_capture,
     ROUTE_NOLIMIT | ROUTE_OFFLOAD},
    {"POST", "/internal/v1/payment/orders/{order_id}/cancel", h_int_cancel,
     ROUTE_NOLIMIT | ROUTE_OFFLOAD},
    {"GET", "/internal/v1/payment/orders/{order_id}", h_int_get, ROUTE_NOLIMIT | ROUTE_PRIVATE},
    {NULL, NULL, NULL, 0},
};

/* The service as the binary sees it: routes here, the schema from payment_store.c, the
 * lifecycle from payment.c. */
extern const struct service_db payment__dbs[];

const struct service service_payment = {
    .name = "payment",
    .routes = payment__routes,
    .dbs = payment__dbs,
    .init = payment__init,
};
