/* SPDX-License-Identifier: MIT */
/* payment_http.c — the payment service's operator route: an order's payments and their
 * operations (audit: how many authorizations, captures, voids and refunds). */
#include <string.h>

#include "emporium/app.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/id.h"
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
    struct db_conn *c;
    int rc = db_conn_take(app_db(http_app(req), "payments"), &c);
    if (rc < 0)
        return rc;
    struct db_rows *pr = NULL, *ops = NULL;
    struct db_val a[] = {DB_INT(order_id)};
    rc = db_query(c,
                  "SELECT id, status, amount, currency, brand, last4, failure_reason, created_at "
                  "FROM payments WHERE order_id = $1 ORDER BY id",
                  1, a, &pr);
    if (rc >= 0)
        rc = db_query(c,
                      "SELECT o.payment_id, o.kind, o.status, o.amount, o.created_at "
                      "FROM payment_operations o JOIN payments p ON p.id = o.payment_id "
                      "WHERE p.order_id = $1 ORDER BY o.id",
                      1, a, &ops);
    db_conn_give(c);
    if (rc < 0) {
        db_rows_free(pr);
        return rc;
    }
    json_t *items = json_array();
    char ts[32];
    for (int i = 0; i < db_rows_count(pr); i++) {
        const char *cur = db_get(pr, i, 3);
        json_t *list = json_array();
        for (int j = 0; j < db_rows_count(ops); j++) {
            if (strcmp(db_get(ops, j, 0), db_get(pr, i, 0)) != 0)
                continue;
            json_array_append_new(
                list, json_pack("{s:s,s:s,s:o,s:s}", "kind", db_get(ops, j, 1), "status",
                                db_get(ops, j, 2), "amount", money(db_get_i64(ops, j, 3), cur),
                                "at", time_format(db_get_i64(ops, j, 4), ts)));
        }
        json_t *p = json_pack("{s:s,s:s,s:s,s:o,s:s,s:s,s:s,s:o}", "id", db_get(pr, i, 0),
                              "order_id", q, "status", db_get(pr, i, 1), "amount",
                              money(db_get_i64(pr, i, 2), cur), "brand", db_get(pr, i, 4),
                              "last4", db_get(pr, i, 5), "created_at",
                              time_format(db_get_i64(pr, i, 7), ts), "operations", list);
        if (!db_is_null(pr, i, 6))
            json_object_set_new(p, "failure_reason", json_string(db_get(pr, i, 6)));
        json_array_append_new(items, p);
    }
    db_rows_free(pr);
    db_rows_free(ops);
    return http_reply_json(req, 200, json_pack("{s:o,s:n}", "items", items, "next_cursor"));
}

const struct http_route payment__routes[] = {
    {"GET", "/api/v1/admin/payments", h_admin_payments, ROUTE_ADMIN},
    {NULL, NULL, NULL, 0},
};
