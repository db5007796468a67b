/* SPDX-License-Identifier: MIT */
/* cart_internal.h — shared between the cart service's files only. */
#ifndef EMPORIUM_CART_INTERNAL_H
#define EMPORIUM_CART_INTERNAL_H
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "emporium/db.h"
#include "emporium/http.h"
#include "emporium/svc/cart.h"

#define CART_MAX_QTY 99
/* A guest cart token: base64url of 16 random bytes and a 16-byte HMAC of them. */
#define CART_TOKEN_LEN 43

/* Whose cart: a user, or a guest named by the SHA-256 (hex) of its token. */
struct cart_owner {
    int64_t user_id;     /* 0 for a guest */
    char token_hash[65]; /* guests only */
};

/* One line as stored. */
struct cart_item {
    int64_t product_id;
    char name[201];
    int quantity;
    int64_t unit_price;
    char currency[4];
};

struct cart_view {
    int n;
    struct cart_item items[CART_MAX_LINES];
};

extern const struct http_route cart__routes[];

/* Issues a new guest token (NUL-terminated, CART_TOKEN_LEN chars) into out. */
void cart__token_new(char out[CART_TOKEN_LEN + 1]);
/* Whether token is one this deployment issued (its HMAC checks out). */
bool cart__token_valid(const char *token);
void cart__token_hash(const char *token, char out[65]);

/* Runs fn in a transaction on the carts database (commit on 0, rollback on > 0 = success
 * without change, rollback on < 0 = the error), retrying on ERR_BUSY. */
typedef int (*cart_tx_fn)(struct db_conn *c, void *ctx);
int cart__tx(struct app *app, cart_tx_fn fn, void *ctx);

/* Inside a transaction: the owner's cart id, created when create is true (else
 * ERR_NOTFOUND), and its row locked so concurrent changes to one cart queue up. */
int cart__lock(struct db_conn *c, const struct cart_owner *o, bool create, int64_t *cart_id);
/* The owner's cart id without creating or locking; ERR_NOTFOUND when it has none. */
int cart__find(struct db_conn *c, const struct cart_owner *o, int64_t *cart_id);
/* The lines of a cart, oldest first. */
int cart__load(struct db_conn *c, int64_t cart_id, struct cart_view *out);
/* {items, subtotal, item_count} for a view; new reference. */
json_t *cart__json(const struct cart_view *v);

/* The login hook: merges the guest cart named by token into the user's. */
void cart__merge_hook(struct app *app, int64_t user_id, const char *token);
int cart__secret_init(struct app *app);

#endif
