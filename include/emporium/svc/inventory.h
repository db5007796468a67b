/* SPDX-License-Identifier: MIT */
/* svc/inventory.h — the inventory service's client interface for other services.
 *
 * Invariant: `available` never goes below zero, under any concurrency. A reservation moves
 * quantity from available to reserved for a limited time; confirm() makes it permanent
 * (reserved goes down, available stays down), release() or expiry gives it back. All calls
 * are idempotent on reservation_id, so a retried saga step is harmless.
 *
 * Stock changes leave the service as events, never as calls: every change writes its
 * stock.* event to the outbox (`inventory-events`, docs/events.md), and after every commit
 * that changed products' `available` the inventory broadcasts in-process (bus_broadcast,
 * topic INVENTORY_TOPIC, key the first product's id) one message naming all of them (at most
 * INVENTORY_ANNOUNCE_MAX; a larger commit sends several)
 *   {"type": "stock.changed", "items": [{"product_id": "<id>", "available": <n>}, …]}
 * delivered before the call returns. The catalog keeps its stock figure from these, one
 * transaction a message; the inventory includes no other service's header. */
#ifndef EMPORIUM_SVC_INVENTORY_H
#define EMPORIUM_SVC_INVENTORY_H
#include <stdint.h>

struct app;

#define INVENTORY_TOPIC "stock-levels" /* in-process broadcast (bus_listen) */
#define INVENTORY_ANNOUNCE_MAX 64      /* products named by one stock.changed message */

struct inventory_item {
    int64_t product_id;
    int quantity;
};

/* A product's stock level. */
struct inventory_level {
    int64_t product_id;
    int64_t available; /* can be bought now */
    int64_t reserved;  /* held by checkouts in progress */
};

/* ERR_NOTFOUND when the product has no inventory row (treated as 0 available by callers). */
int inventory_get(struct app *app, int64_t product_id, int64_t *available, int64_t *reserved);
/* Sets available stock (admin, seeding). Creates the row when missing. */
int inventory_set(struct app *app, int64_t product_id, int64_t available);
/* Sets many rows in one transaction (seeding a large catalog); one stock.changed event each. */
int inventory_set_many(struct app *app, const int64_t *product_ids, const int64_t *available,
                       int n);
/* Like inventory_set_many() without the stock.changed events: for the one caller that has
 * recorded these figures itself in the same pass (the catalog's seed), so that 100,000
 * products do not make 100,000 events nobody needs. */
int inventory_set_many_quiet(struct app *app, const int64_t *product_ids, const int64_t *available,
                             int n);
/* Reserves every item or none. ERR_CONFLICT when one is short: *short_product (may be NULL)
 * names it (the typed outcome "out of stock: product X"). Re-reserving an existing
 * reservation_id returns 0 without change. */
int inventory_reserve(struct app *app, int64_t reservation_id, const struct inventory_item *items,
                      int n, int ttl_seconds, int64_t *short_product);
/* Makes a reservation permanent (order paid). ERR_NOTFOUND if unknown or already expired and
 * released; 0 if already confirmed. */
int inventory_confirm(struct app *app, int64_t reservation_id);
/* Gives the quantities back (payment failed, order cancelled before confirm). Also undoes a
 * confirmed reservation (cancel after payment, before shipping). Idempotent. */
int inventory_release(struct app *app, int64_t reservation_id);

/* ---- administration ---------------------------------------------------------------------- */

/* Whether a product exists (1), does not (0), or ERR_*. The catalog registers one from its
 * init() (a one-way dependency: catalog → inventory), so that an admin cannot set stock for a
 * product the catalog does not know; without one (catalog not in this process) every id is
 * accepted. */
typedef int (*inventory_product_known_fn)(struct app *app, int64_t product_id);
/* ERR_UNAVAILABLE when the inventory does not run in this process. */
int inventory_set_product_check(struct app *app, inventory_product_known_fn fn);

/* An admin sets a product's available stock: checks the product exists (ERR_NOTFOUND),
 * sets it, logs the domain event with the ids, and returns the new level. */
int inventory_admin_set(struct app *app, int64_t admin_user_id, int64_t product_id,
                        int64_t available, struct inventory_level *out);
/* An admin reads a level: a product the catalog knows that never had stock has 0;
 * ERR_NOTFOUND when neither knows it. */
int inventory_admin_get(struct app *app, int64_t product_id, struct inventory_level *out);

#endif
