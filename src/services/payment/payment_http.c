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

static const struct http_route payment__routes[] = {
    {"GET", "/api/v1/admin/payments", h_admin_payments, ROUTE_ADMIN},
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
