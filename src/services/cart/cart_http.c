/* SPDX-License-Identifier: MIT */
/* cart_http.c — cart routes: GET /cart, POST /cart/items, PATCH and DELETE
 * /cart/items/{product_id}.
 *
 * The caller's cart is the bearer's when a token was given, else the guest cart named by the
 * X-Cart-Token header. A guest without a (valid) token gets a new one; every guest response
 * carries the token in the X-Cart-Token header and as `cart_token` in the body. Input is
 * validated before anything is read or written; a failed request changes nothing. This file
 * parses and renders only: the changes and their limits are cart.c's, the SQL
 * cart_store.c's, and every error goes through the one error mapping. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/arena.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/service.h"
#include "emporium/http.h"
#include "cart_internal.h"

struct caller {
    struct cart_owner owner;
    char token[CART_TOKEN_LEN + 1]; /* guests */
};

static void identify(struct http_req *req, struct caller *who)
{
    memset(who, 0, sizeof *who);
    who->owner.user_id = http_auth(req)->user_id;
    if (who->owner.user_id)
        return;
    const char *t = http_header(req, "X-Cart-Token");
    /* A token we did not issue (or from before a reset) is replaced, not refused: the
     * client simply starts a new cart. */
    if (t && cart__token_valid(t))
        snprintf(who->token, sizeof who->token, "%s", t);
    else
        cart__token_new(who->token);
    cart__token_hash(who->token, who->owner.token_hash);
}

static json_t *money(int64_t amount, const char *currency)
{
    return json_pack("{s:I,s:s}", "amount", (json_int_t)amount, "currency", currency);
}

/* {items, subtotal, item_count} for a view; new reference. */
static json_t *cart_json(const struct cart_view *v)
{
    json_t *items = json_array();
    int64_t subtotal = 0, count = 0;
    for (int i = 0; items && i < v->n; i++) {
        const struct cart_item *it = &v->items[i];
        char pid[21];
        int64_t line = it->unit_price * it->quantity;
        subtotal += line;
        count += it->quantity;
        json_array_append_new(items, json_pack("{s:s,s:s,s:i,s:o,s:o}", "product_id",
                                               id_format(it->product_id, pid), "name", it->name,
                                               "quantity", it->quantity, "unit_price",
                                               money(it->unit_price, it->currency), "line_total",
                                               money(line, it->currency)));
    }
    return json_pack("{s:o,s:o,s:I}", "items", items, "subtotal",
                     money(subtotal, v->n ? v->items[0].currency : "USD"), "item_count",
                     (json_int_t)count);
}

static int reply_cart(struct http_req *req, const struct caller *who, const struct cart_view *v)
{
    json_t *body = cart_json(v);
    if (!body)
        return ERR_NOMEM;
    if (!who->owner.user_id) {
        json_object_set_new(body, "cart_token", json_string(who->token));
        http_add_header(req, "X-Cart-Token", who->token);
    }
    http_add_header(req, "Cache-Control", "private, no-store");
    return http_reply_json(req, 200, body);
}

static int parse_product_id(struct http_req *req, json_t *v, int64_t *out)
{
    if (!v || json_is_null(v))
        return http_fail(req, ERR_INVALID, "product_id", "is required");
    if (json_is_string(v)) {
        if (id_parse(json_string_value(v), out) == 0 && *out > 0)
            return 0;
    } else if (json_is_integer(v) && json_integer_value(v) > 0) {
        *out = json_integer_value(v);
        return 0;
    }
    return http_fail(req, ERR_INVALID, "product_id", "must be a product id (a decimal string)");
}

static int path_product_id(struct http_req *req, int64_t *out)
{
    const char *s = http_param(req, "product_id");
    if (!s || id_parse(s, out) < 0 || *out <= 0)
        return http_fail(req, ERR_INVALID, "product_id", "must be a product id");
    return 0;
}

static int product_missing(struct http_req *req, int64_t id)
{
    char pid[21];
    id_format(id, pid);
    http_fail(req, ERR_NOTFOUND, "product_id", "no such product: %s", pid);
    return http_fail_code(req, ERR_NOTFOUND, "product_not_found",
                          json_pack("{s:s}", "product_id", pid), "no such product: %s", pid);
}

static int reply(struct http_req *req, const struct caller *who, int rc, struct cart_view *v,
                 const struct cart_refusal_info *why, int64_t product_id)
{
    char pid[21];
    id_format(product_id, pid);
    switch (rc < 0 ? why->why : CART_REFUSE_NONE) {
    case CART_REFUSE_NO_PRODUCT:
        rc = product_missing(req, product_id);
        break;
    case CART_REFUSE_LINE_MAX:
        rc = http_fail(req, ERR_INVALID, "quantity",
                       "a cart line holds at most %d (the cart has %d of product %s)", CART_MAX_QTY,
                       why->have, pid);
        break;
    case CART_REFUSE_CART_FULL:
        rc = http_fail_code(req, ERR_CONFLICT, "cart_full",
                            json_pack("{s:i}", "max_lines", CART_MAX_LINES),
                            "a cart holds at most %d different products", CART_MAX_LINES);
        break;
    case CART_REFUSE_NOT_IN_CART:
        http_fail(req, ERR_NOTFOUND, "product_id", "product %s is not in the cart", pid);
        rc = http_fail_code(req, ERR_NOTFOUND, "not_in_cart", json_pack("{s:s}", "product_id", pid),
                            "product %s is not in the cart", pid);
        break;
    case CART_REFUSE_CURRENCY:
        http_fail(req, ERR_CONFLICT, "product_id",
                  "product %s is priced in another currency than the cart", pid);
        rc = http_fail_code(req, ERR_CONFLICT, "currency_mismatch",
                            json_pack("{s:s}", "product_id", pid),
                            "product %s is priced in another currency than the cart", pid);
        break;
    case CART_REFUSE_NONE:
        if (rc == ERR_UNAVAILABLE)
            rc = http_fail(req, ERR_UNAVAILABLE, NULL, "the catalog is not reachable");
        break;
    }
    if (rc == 0)
        rc = reply_cart(req, who, v);
    cart__view_clear(v);
    free(v);
    return rc;
}

static struct cart_view *view_new(void) { return calloc(1, sizeof(struct cart_view)); }

static int h_get(struct http_req *req)
{
    struct caller who;
    identify(req, &who);
    struct cart_view *v = view_new();
    if (!v)
        return ERR_NOMEM;
    struct cart_refusal_info why = {CART_REFUSE_NONE, 0};
    return reply(req, &who, cart__get(http_app(req), &who.owner, v), v, &why, 0);
}

/* A change in flight: the request is parked (http_suspend) while its intent waits for the
 * carts database's group commit, so a request thread serves other clients meanwhile. Lives
 * in the request's arena. */
struct pending {
    struct cart_op op;
    struct caller who;
    struct cart_view *v;
    struct cart_refusal_info why;
    int64_t product_id;
    int rc;
    struct http_req *req;
};

static int change_then(struct http_req *req, void *arg)
{
    struct pending *p = arg;
    return reply(req, &p->who, p->rc, p->v, &p->why, p->product_id);
}

/* On the writer's thread, once the change is durable (or failed). */
static void change_done(struct cart_op *op, int rc)
{
    struct pending *p = op->arg;
    p->rc = rc;
    http_resume(p->req);
}

/* Runs a change: parked until its commit when the request can be, else waited for here. */
static int change(struct http_req *req, enum cart_op_kind kind, int64_t pid, int qty)
{
    struct pending *p = arena_alloc(http_arena(req), sizeof *p);
    if (!p)
        return ERR_NOMEM;
    identify(req, &p->who);
    p->req = req;
    p->product_id = pid;
    p->v = view_new();
    if (!p->v)
        return ERR_NOMEM;
    int rc =
        cart__change_prepare(http_app(req), &p->op, kind, &p->who.owner, pid, qty, p->v, &p->why);
    if (rc < 0)
        return reply(req, &p->who, rc, p->v, &p->why, pid);
    if (http_suspend(req, change_then, p) == 0) {
        if ((rc = cart__change_submit(http_app(req), &p->op, change_done, p)) < 0) {
            p->rc = rc;
            http_resume(req);
        }
        return HTTP_SUSPENDED;
    }
    /* An injected request: the same intent, waited for on this thread. */
    rc = cart__change_wait(http_app(req), &p->op);
    return reply(req, &p->who, rc, p->v, &p->why, pid);
}

static int h_add(struct http_req *req)
{
    int rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    static const char *const allowed[] = {"product_id", "quantity", NULL};
    if ((rc = http_json_only(req, body, allowed)) < 0)
        return rc;
    int64_t pid, qty;
    if ((rc = parse_product_id(req, json_object_get(body, "product_id"), &pid)) < 0)
        return rc;
    if ((rc = http_json_int(req, body, "quantity", true, 1, CART_MAX_QTY, &qty)) < 0)
        return rc;
    return change(req, CART_OP_ADD, pid, (int)qty);
}

static int h_set(struct http_req *req)
{
    int64_t pid, qty;
    int rc = path_product_id(req, &pid);
    if (rc < 0)
        return rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    static const char *const allowed[] = {"quantity", NULL};
    if ((rc = http_json_only(req, body, allowed)) < 0)
        return rc;
    if ((rc = http_json_int(req, body, "quantity", true, 0, CART_MAX_QTY, &qty)) < 0)
        return rc;
    return change(req, CART_OP_SET, pid, (int)qty);
}

static int h_remove(struct http_req *req)
{
    int64_t pid;
    int rc = path_product_id(req, &pid);
    if (rc < 0)
        return rc;
    return change(req, CART_OP_REMOVE, pid, 0);
}

static const struct http_route cart__routes[] = {
    {"GET", "/api/v1/cart", h_get, 0},
    {"POST", "/api/v1/cart/items", h_add, 0},
    {"PATCH", "/api/v1/cart/items/{product_id}", h_set, 0},
    {"DELETE", "/api/v1/cart/items/{product_id}", h_remove, 0},
    {NULL, NULL, NULL, 0},
};

/* The service as the binary sees it: routes here, the schema from cart_store.c, the
 * lifecycle from cart.c. */
extern const struct service_db cart__dbs[];

const struct service service_cart = {
    .name = "cart",
    .routes = cart__routes,
    .dbs = cart__dbs,
    .init = cart__init,
    .deinit = cart__deinit,
};
