/* SPDX-License-Identifier: MIT */
/* cart_http.c — cart routes: GET /cart, POST /cart/items, PATCH and DELETE
 * /cart/items/{product_id}.
 *
 * The caller's cart is the bearer's when a token was given, else the guest cart named by the
 * X-Cart-Token header. A guest without a (valid) token gets a new one; every guest response
 * carries the token in the X-Cart-Token header and as `cart_token` in the body. Input is
 * validated before anything is read or written; a failed request changes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/svc/product.h"
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

static int reply_cart(struct http_req *req, const struct caller *who,
                      const struct cart_view *v)
{
    json_t *body = cart__json(v);
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

/* ---------------------------------------------------------------- GET /cart */

static int h_get(struct http_req *req)
{
    struct caller who;
    identify(req, &who);
    struct cart_view *v = malloc(sizeof *v); /* only the first n items are read */
    if (!v)
        return ERR_NOMEM;
    v->n = 0;
    struct db_conn *c;
    int rc = db_conn_take(app_db(http_app(req), "carts"), &c);
    if (rc == 0) {
        int64_t cart_id;
        rc = cart__find(c, &who.owner, &cart_id);
        if (rc == 0)
            rc = cart__load(c, cart_id, v);
        else if (rc == ERR_NOTFOUND)
            rc = 0; /* no cart yet: an empty one */
        db_conn_give(c);
    }
    if (rc == 0)
        rc = reply_cart(req, &who, v);
    free(v);
    return rc;
}

/* ---------------------------------------------------------------- changes */

enum op { OP_ADD, OP_SET, OP_REMOVE };

struct change {
    enum op op;
    struct caller *who;
    int64_t product_id;
    int quantity; /* ADD: to add; SET: the new quantity (0 removes) */
    const struct product_info *info; /* ADD */
    struct cart_view *v;             /* the cart after the change */
    /* why a change was refused (the handler turns it into the error body) */
    enum { REFUSE_NONE, REFUSE_LINE_MAX, REFUSE_CART_FULL, REFUSE_NOT_IN_CART,
           REFUSE_CURRENCY } refused;
    int have; /* REFUSE_LINE_MAX: the quantity already in the cart */
};

static int line_quantity(struct db_conn *c, int64_t cart_id, int64_t product_id, int *q)
{
    struct db_val a[] = {DB_INT(cart_id), DB_INT(product_id)};
    struct db_rows *r = NULL;
    int rc = db_query(c, "SELECT quantity FROM cart_items WHERE cart_id = $1 AND product_id = $2",
                      2, a, &r);
    if (rc < 0)
        return rc;
    rc = db_rows_count(r) == 1 ? 0 : ERR_NOTFOUND;
    if (rc == 0)
        *q = (int)db_get_i64(r, 0, 0);
    db_rows_free(r);
    return rc;
}

static int add_line(struct db_conn *c, struct change *ch, int64_t cart_id)
{
    int64_t now = now_ms();
    int have = 0;
    int rc = line_quantity(c, cart_id, ch->product_id, &have);
    if (rc < 0 && rc != ERR_NOTFOUND)
        return rc;
    bool exists = rc == 0;
    if (exists && have + ch->quantity > CART_MAX_QTY) {
        ch->refused = REFUSE_LINE_MAX;
        ch->have = have;
        return ERR_INVALID;
    }
    /* One currency per cart: its subtotal is one Money. */
    struct db_val ca[] = {DB_INT(cart_id), DB_TEXT(ch->info->currency)};
    struct db_rows *r = NULL;
    rc = db_query(c,
                  "SELECT (SELECT count(*) FROM cart_items WHERE cart_id = $1), "
                  "(SELECT count(*) FROM cart_items WHERE cart_id = $1 AND currency <> $2)",
                  2, ca, &r);
    if (rc < 0)
        return rc;
    int64_t lines = db_get_i64(r, 0, 0), other = db_get_i64(r, 0, 1);
    db_rows_free(r);
    if (other > 0) {
        ch->refused = REFUSE_CURRENCY;
        return ERR_CONFLICT;
    }
    if (exists) {
        /* The price and name are refreshed to what the catalog says now. */
        struct db_val a[] = {DB_INT(cart_id),          DB_INT(ch->product_id),
                             DB_INT(have + ch->quantity), DB_TEXT(ch->info->name),
                             DB_INT(ch->info->price),  DB_INT(now)};
        rc = db_query(c,
                      "UPDATE cart_items SET quantity = $3, name = $4, unit_price = $5, "
                      "updated_at = $6 WHERE cart_id = $1 AND product_id = $2",
                      6, a, NULL);
        return rc < 0 ? rc : 0;
    }
    if (lines >= CART_MAX_LINES) {
        ch->refused = REFUSE_CART_FULL;
        return ERR_CONFLICT;
    }
    struct db_val a[] = {DB_INT(cart_id),         DB_INT(ch->product_id),   DB_TEXT(ch->info->name),
                         DB_INT(ch->quantity),    DB_INT(ch->info->price),  DB_TEXT(ch->info->currency),
                         DB_INT(now)};
    rc = db_query(c,
                  "INSERT INTO cart_items (cart_id, product_id, name, quantity, unit_price, "
                  "currency, added_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                  7, a, NULL);
    return rc < 0 ? rc : 0;
}

static int change_tx(struct db_conn *c, void *vctx)
{
    struct change *ch = vctx;
    ch->refused = REFUSE_NONE;
    ch->v->n = 0;
    int64_t cart_id;
    int rc = cart__lock(c, &ch->who->owner, ch->op == OP_ADD, &cart_id);
    if (rc == ERR_NOTFOUND) {
        if (ch->op == OP_SET) {
            ch->refused = REFUSE_NOT_IN_CART;
            return ERR_NOTFOUND;
        }
        return 1; /* removing from a cart that does not exist: an empty cart */
    }
    if (rc < 0)
        return rc;
    struct db_val a[] = {DB_INT(cart_id), DB_INT(ch->product_id), DB_INT(ch->quantity),
                         DB_INT(now_ms())};
    switch (ch->op) {
    case OP_ADD:
        rc = add_line(c, ch, cart_id);
        break;
    case OP_SET:
        if (ch->quantity == 0)
            rc = db_query(c, "DELETE FROM cart_items WHERE cart_id = $1 AND product_id = $2", 2,
                          a, NULL);
        else
            rc = db_query(c,
                          "UPDATE cart_items SET quantity = $3, updated_at = $4 "
                          "WHERE cart_id = $1 AND product_id = $2",
                          4, a, NULL);
        if (rc == 0) {
            ch->refused = REFUSE_NOT_IN_CART;
            rc = ERR_NOTFOUND;
        }
        break;
    case OP_REMOVE:
        rc = db_query(c, "DELETE FROM cart_items WHERE cart_id = $1 AND product_id = $2", 2, a,
                      NULL);
        break;
    }
    if (rc < 0)
        return rc;
    rc = cart__load(c, cart_id, ch->v);
    return rc < 0 ? rc : 0;
}

static int run_change(struct http_req *req, struct change *ch)
{
    /* ~25 KB: only the first n items are ever read, so it need not be zeroed. */
    ch->v = malloc(sizeof *ch->v);
    if (!ch->v)
        return ERR_NOMEM;
    ch->v->n = 0;
    int rc = cart__tx(http_app(req), change_tx, ch);
    char pid[21];
    id_format(ch->product_id, pid);
    switch (rc < 0 ? ch->refused : REFUSE_NONE) {
    case REFUSE_LINE_MAX:
        rc = http_fail(req, ERR_INVALID, "quantity",
                       "a cart line holds at most %d (the cart has %d of product %s)",
                       CART_MAX_QTY, ch->have, pid);
        break;
    case REFUSE_CART_FULL:
        rc = http_fail_code(req, ERR_CONFLICT, "cart_full",
                            json_pack("{s:i}", "max_lines", CART_MAX_LINES),
                            "a cart holds at most %d different products", CART_MAX_LINES);
        break;
    case REFUSE_NOT_IN_CART:
        http_fail(req, ERR_NOTFOUND, "product_id", "product %s is not in the cart", pid);
        rc = http_fail_code(req, ERR_NOTFOUND, "not_in_cart",
                            json_pack("{s:s}", "product_id", pid),
                            "product %s is not in the cart", pid);
        break;
    case REFUSE_CURRENCY:
        http_fail(req, ERR_CONFLICT, "product_id", "product %s is priced in another currency than the cart", pid);
        rc = http_fail_code(req, ERR_CONFLICT, "currency_mismatch",
                            json_pack("{s:s}", "product_id", pid),
                            "product %s is priced in another currency than the cart", pid);
        break;
    case REFUSE_NONE:
        break;
    }
    if (rc == 0)
        rc = reply_cart(req, ch->who, ch->v);
    free(ch->v);
    return rc;
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
    struct product_info info;
    if (!app_has_service(http_app(req), "product")) /* in-process client only, for now */
        return http_fail(req, ERR_UNAVAILABLE, NULL, "the catalog is not reachable");
    rc = product_get_info(http_app(req), pid, &info);
    if (rc == ERR_NOTFOUND || (rc == 0 && !info.active))
        return product_missing(req, pid);
    if (rc < 0)
        return rc;
    struct caller who;
    identify(req, &who);
    struct change ch = {.op = OP_ADD, .who = &who, .product_id = pid, .quantity = (int)qty,
                        .info = &info};
    return run_change(req, &ch);
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
    struct caller who;
    identify(req, &who);
    struct change ch = {.op = OP_SET, .who = &who, .product_id = pid, .quantity = (int)qty};
    return run_change(req, &ch);
}

static int h_remove(struct http_req *req)
{
    int64_t pid;
    int rc = path_product_id(req, &pid);
    if (rc < 0)
        return rc;
    struct caller who;
    identify(req, &who);
    struct change ch = {.op = OP_REMOVE, .who = &who, .product_id = pid};
    return run_change(req, &ch);
}

const struct http_route cart__routes[] = {
    {"GET", "/api/v1/cart", h_get, 0},
    {"POST", "/api/v1/cart/items", h_add, 0},
    {"PATCH", "/api/v1/cart/items/{product_id}", h_set, 0},
    {"DELETE", "/api/v1/cart/items/{product_id}", h_remove, 0},
    {NULL, NULL, NULL, 0},
};
