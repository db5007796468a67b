/* SPDX-License-Identifier: MIT */
/* svc/cart.h — the cart service's client interface for the order service. */
#ifndef EMPORIUM_SVC_CART_H
#define EMPORIUM_SVC_CART_H
#include <stdint.h>

struct app;

#define CART_MAX_LINES 100

struct cart_line {
    int64_t product_id;
    int quantity;
    int64_t unit_price; /* as recorded at add time (the order re-checks the catalog) */
    char currency[4];
};

/* The user's cart lines (at most CART_MAX_LINES); *n = 0 for an empty or missing cart. */
int cart_get_lines(struct app *app, int64_t user_id, struct cart_line *out, int *n);
/* Sets the recorded price (unit_price, currency) of the user's lines for these products:
 * checkout found the catalog's price changed, and the cart must show what the next checkout
 * will charge. Lines not in the cart are skipped. */
int cart_set_prices(struct app *app, int64_t user_id, const struct cart_line *lines, int n);
/* Empties the user's cart (after a successful order). */
int cart_clear(struct app *app, int64_t user_id);
/* Takes the given quantities out of the user's cart (the lines an order was placed from),
 * so items added meanwhile stay; a line left at zero or below is removed, a missing one is
 * skipped. Not idempotent (a second call subtracts again): call it once per order. */
int cart_remove_lines(struct app *app, int64_t user_id, const struct cart_line *lines, int n);

#endif
