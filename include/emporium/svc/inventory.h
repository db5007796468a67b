/* SPDX-License-Identifier: MIT */
/* svc/inventory.h — the inventory service's client interface for other services.
 *
 * Invariant: `available` never goes below zero, under any concurrency. A reservation moves
 * quantity from available to reserved for a limited time; confirm() makes it permanent
 * (reserved goes down, available stays down), release() or expiry gives it back. All calls
 * are idempotent on reservation_id, so a retried saga step is harmless. */
#ifndef EMPORIUM_SVC_INVENTORY_H
#define EMPORIUM_SVC_INVENTORY_H
#include <stdint.h>

struct app;

struct inventory_item {
    int64_t product_id;
    int quantity;
};

/* ERR_NOTFOUND when the product has no inventory row (treated as 0 available by callers). */
int inventory_get(struct app *app, int64_t product_id, int64_t *available, int64_t *reserved);
/* Sets available stock (admin, seeding). Creates the row when missing. */
int inventory_set(struct app *app, int64_t product_id, int64_t available);
/* Sets many rows in one transaction (seeding a large catalog). */
int inventory_set_many(struct app *app, const int64_t *product_ids, const int64_t *available,
                       int n);
/* Reserves every item or none. ERR_CONFLICT when one is short: *short_product (may be NULL)
 * names it. Re-reserving an existing reservation_id returns 0 without change. */
int inventory_reserve(struct app *app, int64_t reservation_id, const struct inventory_item *items,
                      int n, int ttl_seconds, int64_t *short_product);
/* Makes a reservation permanent (order paid). ERR_NOTFOUND if unknown or already expired and
 * released; 0 if already confirmed. */
int inventory_confirm(struct app *app, int64_t reservation_id);
/* Gives the quantities back (payment failed, order cancelled before confirm). Also undoes a
 * confirmed reservation (cancel after payment, before shipping). Idempotent. */
int inventory_release(struct app *app, int64_t reservation_id);

#endif
