/* SPDX-License-Identifier: MIT */
/* order_http.c — order routes: place (order_checkout.c), read, list, cancel, admin views. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/svc/shipping.h"
#include "order_internal.h"

static const char *const statuses[] = {"pending", "paid", "fulfilling", "shipped", "delivered",
                                       "failed", "cancelled", "on_hold", NULL};

/* Loads the order for the caller: another user's order is 404, like a missing one. */
static int order_load(struct http_req *req, struct db_conn **c, int64_t *id)
{
    struct db *db = NULL;
    if (id_parse(http_param(req, "id"), id) == 0)
        db = order__db_of(http_app(req), *id);
    if (!db)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such order");
    int rc = db_conn_take(db, c);
    if (rc < 0)
        return rc;
    const struct http_auth *au = http_auth(req);
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(*id)};
    rc = db_query(*c, "SELECT user_id FROM orders WHERE id = $1", 1, a, &r);
    if (rc >= 0 && (db_rows_count(r) == 0 ||
                    (au->role != ROLE_ADMIN && db_get_i64(r, 0, 0) != au->user_id)))
        rc = http_fail(req, ERR_NOTFOUND, NULL, "no such order");
    db_rows_free(r);
    if (rc < 0) {
        db_conn_give(*c);
        *c = NULL;
    }
    return rc < 0 ? rc : 0;
}

static int h_get(struct http_req *req)
{
    struct db_conn *c;
    int64_t id;
    int rc = order_load(req, &c, &id);
    if (rc < 0)
        return rc;
    json_t *o = order__json(http_app(req), c, id, true, &rc);
    db_conn_give(c);
    return o ? http_reply_json(req, 200, o) : rc;
}

static json_t *summary(const struct db_rows *r, int i)
{
    /* columns: ORDER_SELECT */
    const char *cur = db_get(r, i, 3);
    char ts[32];
    json_t *o = json_pack("{s:s,s:s,s:o,s:o,s:o,s:s}", "id", db_get(r, i, 0), "status",
                          db_get(r, i, 2), "subtotal", order__money(db_get_i64(r, i, 4), cur),
                          "shipping", order__money(db_get_i64(r, i, 5), cur), "total",
                          order__money(db_get_i64(r, i, 6), cur), "created_at",
                          time_format(db_get_i64(r, i, 14), ts));
    if (!db_is_null(r, i, 11))
        json_object_set_new(o, "failure_reason", json_string(db_get(r, i, 11)));
    return o;
}

static int read_cursor(struct http_req *req, int64_t *cursor)
{
    const char *cur = http_query(req, "cursor");
    *cursor = INT64_MAX;
    if (cur && (id_parse(cur, cursor) < 0 || *cursor <= 0))
        return http_fail(req, ERR_INVALID, "cursor", "is not a valid cursor");
    return 0;
}

static int read_status(struct http_req *req, const char **status)
{
    *status = http_query(req, "status");
    if (!*status)
        return 0;
    for (const char *const *s = statuses; *s; s++)
        if (!strcmp(*s, *status))
            return 0;
    return http_fail(req, ERR_INVALID, "status", "is not an order status");
}

static int h_list(struct http_req *req)
{
    int limit, rc;
    int64_t cursor;
    const char *status;
    if ((rc = http_query_limit(req, 20, 100, &limit)) < 0 || (rc = read_cursor(req, &cursor)) < 0 ||
        (rc = read_status(req, &status)) < 0)
        return rc;
    int64_t uid = http_auth(req)->user_id;
    /* All of a user's orders live in one shard: newest first by id (ids are time-ordered). */
    struct db *db = app_db_shard(http_app(req), "orders", (int)order__shard_of_user(uid));
    struct db_conn *c;
    if ((rc = db_conn_take(db, &c)) < 0)
        return rc;
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(uid), DB_INT(cursor), DB_INT(limit + 1),
                         status ? DB_TEXT(status) : DB_NULLV};
    rc = db_query(c,
                  ORDER_SELECT "WHERE user_id = $1 AND id < $2 AND (CAST($4 AS TEXT) IS NULL OR status = $4) "
                               "ORDER BY id DESC LIMIT $3",
                  4, a, &r);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    json_t *items = json_array();
    int n = db_rows_count(r);
    for (int i = 0; i < n && i < limit; i++)
        json_array_append_new(items, summary(r, i));
    json_t *next = n > limit ? json_string(db_get(r, limit - 1, 0)) : json_null();
    db_rows_free(r);
    return http_reply_json(req, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor", next));
}

static int h_admin_list(struct http_req *req)
{
    int limit, rc;
    int64_t cursor;
    const char *status;
    if ((rc = http_query_limit(req, 20, 100, &limit)) < 0 || (rc = read_cursor(req, &cursor)) < 0 ||
        (rc = read_status(req, &status)) < 0)
        return rc;
    /* Each shard gives its newest `limit` below the cursor; merging by id keeps the global
     * newest-first order, and the cursor (the last id shown) is valid in every shard. */
    struct db_rows *rows[ORDER_SHARDS] = {0};
    int pos[ORDER_SHARDS] = {0};
    for (int s = 0; s < ORDER_SHARDS; s++) {
        struct db_conn *c;
        if ((rc = db_conn_take(app_db_shard(http_app(req), "orders", s), &c)) < 0)
            break;
        struct db_val a[] = {DB_INT(cursor), DB_INT(limit + 1), status ? DB_TEXT(status) : DB_NULLV};
        rc = db_query(c,
                      ORDER_SELECT "WHERE id < $1 AND (CAST($3 AS TEXT) IS NULL OR status = $3) "
                                   "ORDER BY id DESC LIMIT $2",
                      3, a, &rows[s]);
        db_conn_give(c);
        if (rc < 0)
            break;
    }
    if (rc < 0) {
        for (int s = 0; s < ORDER_SHARDS; s++)
            db_rows_free(rows[s]);
        return rc;
    }
    json_t *items = json_array();
    int64_t last = 0;
    bool more = false;
    for (int k = 0; k <= limit; k++) {
        int best = -1;
        int64_t best_id = 0;
        for (int s = 0; s < ORDER_SHARDS; s++) {
            if (pos[s] >= db_rows_count(rows[s]))
                continue;
            int64_t id = db_get_i64(rows[s], pos[s], 0);
            if (best < 0 || id > best_id) {
                best = s;
                best_id = id;
            }
        }
        if (best < 0)
            break;
        if (k == limit) {
            more = true;
            break;
        }
        json_t *o = summary(rows[best], pos[best]);
        json_object_set_new(o, "user_id", json_string(db_get(rows[best], pos[best], 1)));
        json_array_append_new(items, o);
        last = best_id;
        pos[best]++;
    }
    for (int s = 0; s < ORDER_SHARDS; s++)
        db_rows_free(rows[s]);
    char buf[21];
    json_t *next = more ? json_string(id_format(last, buf)) : json_null();
    return http_reply_json(req, 200, json_pack("{s:o,s:o}", "items", items, "next_cursor", next));
}

static int h_cancel(struct http_req *req)
{
    static const char *const cancellable[] = {"paid", "fulfilling", "on_hold", NULL};
    struct db_conn *c;
    int64_t id;
    int rc = order_load(req, &c, &id);
    if (rc < 0)
        return rc;
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_INT(id)};
    rc = db_query(c, "SELECT status FROM orders WHERE id = $1", 1, a, &r);
    char status[16] = "";
    if (rc >= 0 && db_rows_count(r))
        snprintf(status, sizeof status, "%s", db_get(r, 0, 0));
    db_rows_free(r);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    if (!strcmp(status, "cancelled"))
        goto reply; /* cancelling twice is the same as once */
    bool ok = false;
    for (const char *const *s = cancellable; *s; s++)
        ok = ok || !strcmp(*s, status);
    if (!ok) {
        bool gone = !strcmp(status, "shipped") || !strcmp(status, "delivered");
        return http_fail_code(req, ERR_CONFLICT, gone ? "order_shipped" : "order_not_cancellable",
                              NULL, "an order that is %s cannot be cancelled", status);
    }
    /* The shipping database decides "too late": a shipment in transit refuses. */
    rc = shipping_cancel(http_app(req), id);
    if (rc == ERR_CONFLICT)
        return http_fail_code(req, ERR_CONFLICT, "order_shipped", NULL,
                              "the order has shipped and cannot be cancelled");
    if (rc < 0)
        return rc;
    if ((rc = db_conn_take(order__db_of(http_app(req), id), &c)) < 0)
        return rc;
    if ((rc = db_begin(c)) == 0)
        rc = order__transition(c, id, "cancelled", cancellable,
                               http_auth(req)->role == ROLE_ADMIN ? "cancelled by an operator"
                                                                  : "cancelled by the customer",
                               false, true, now_ms());
    bool moved = rc == 1;
    if (rc >= 0)
        rc = db_commit(c);
    if (rc < 0)
        db_rollback(c);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    if (!moved) /* moved meanwhile (e.g. cancelled by a concurrent request) */
        goto reply;
    /* Compensation is owed from the commit on; the sweep finishes it if this fails. */
    order__compensate(http_app(req), id);
reply:
    if ((rc = db_conn_take(order__db_of(http_app(req), id), &c)) < 0)
        return rc;
    json_t *o = order__json(http_app(req), c, id, true, &rc);
    db_conn_give(c);
    if (!o)
        return rc;
    const char *now = json_string_value(json_object_get(o, "status"));
    if (now && strcmp(now, "cancelled") != 0) {
        json_decref(o);
        return http_fail_code(req, ERR_CONFLICT, "order_not_cancellable", NULL,
                              "the order can no longer be cancelled");
    }
    return http_reply_json(req, 200, o);
}

static int h_admin_events(struct http_req *req)
{
    struct db_conn *c;
    int64_t id;
    int rc = order_load(req, &c, &id);
    if (rc < 0)
        return rc;
    char idb[21];
    struct db_rows *r = NULL;
    struct db_val a[] = {DB_TEXT(id_format(id, idb))};
    rc = db_query(c,
                  "SELECT id, event_type, payload, created_at, published_at FROM outbox WHERE "
                  "aggregate_type = 'order' AND aggregate_id = $1 ORDER BY id",
                  1, a, &r);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    json_t *items = json_array();
    char ts[32];
    for (int i = 0; i < db_rows_count(r); i++) {
        json_error_t jerr;
        json_t *doc = json_loads(db_get(r, i, 2), 0, &jerr);
        json_array_append_new(items, json_pack("{s:s,s:s,s:o,s:s,s:b}", "event_id", db_get(r, i, 0),
                                               "type", db_get(r, i, 1), "payload",
                                               doc ? doc : json_null(), "created_at",
                                               time_format(db_get_i64(r, i, 3), ts), "published",
                                               !db_is_null(r, i, 4)));
    }
    db_rows_free(r);
    return http_reply_json(req, 200, json_pack("{s:o,s:n}", "items", items, "next_cursor"));
}

const struct http_route order__routes[] = {
    {"POST", "/api/v1/orders", order__h_place, ROUTE_AUTH | ROUTE_OFFLOAD},
    {"GET", "/api/v1/orders", h_list, ROUTE_AUTH},
    {"GET", "/api/v1/orders/{id}", h_get, ROUTE_AUTH},
    {"POST", "/api/v1/orders/{id}/cancel", h_cancel, ROUTE_AUTH | ROUTE_OFFLOAD},
    {"GET", "/api/v1/admin/orders", h_admin_list, ROUTE_ADMIN},
    {"GET", "/api/v1/admin/orders/{id}/events", h_admin_events, ROUTE_ADMIN},
    {NULL, NULL, NULL, 0},
};
