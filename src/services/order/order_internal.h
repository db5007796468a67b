/* SPDX-License-Identifier: MIT */
/* order_internal.h — shared between the order service's files only. */
#ifndef EMPORIUM_ORDER_INTERNAL_H
#define EMPORIUM_ORDER_INTERNAL_H
#include <stdbool.h>
#include <stdint.h>

#include "emporium/db.h"
#include "emporium/http.h"

#define ORDER_SHARDS 6
#define ORDER_KEY_MAX 128
#define ORDER_SELECT                                                                         \
    "SELECT id, user_id, status, currency, subtotal, shipping, total, shipping_method, "    \
    "shipping_address, payment_brand, payment_last4, failure_reason, retryable, shipment_id, " \
    "created_at, updated_at FROM orders "

extern const struct http_route order__routes[];

/* Tunables (environment, read once in init). */
struct order_settings {
    int reservation_ttl_s;  /* EMPORIUM_RESERVATION_TTL_SECONDS, 900 */
    int pending_timeout_s;  /* EMPORIUM_ORDER_PENDING_TIMEOUT_SECONDS, 600 */
    int sweep_interval_s;   /* EMPORIUM_ORDER_SWEEP_SECONDS, 30 */
};
extern struct order_settings order__settings;

/* The shard that holds this user's orders (hash of the id, mod ORDER_SHARDS). */
unsigned order__shard_of_user(int64_t user_id);
/* The shard database of an order id; NULL when the id's shard bits are out of range. */
struct db *order__db_of(struct app *app, int64_t order_id);

/* Moves the order to `to` if its status is one of `from` (NULL-terminated), with its
 * history row and its order.<to> outbox event, on c inside the caller's transaction.
 * reason may be NULL. compensate=true marks compensation as owed (failed, cancelled).
 * Returns 1 when moved, 0 when the order was not in a `from` status, or an ERR_*. */
int order__transition(struct db_conn *c, int64_t id, const char *to, const char *const *from,
                      const char *reason, bool retryable, bool compensate, int64_t at);
/* Gives back what a failed or cancelled order holds: releases the stock, voids or refunds
 * the payment, then clears the compensation flag. Idempotent. */
int order__compensate(struct app *app, int64_t order_id);

/* The order as JSON (new reference). full adds shipment, payment state and history.
 * NULL with *err = ERR_NOTFOUND (or another code). */
json_t *order__json(struct app *app, struct db_conn *c, int64_t id, bool full, int *err);
/* {"amount":…, "currency":…}; new reference. */
json_t *order__money(int64_t amount, const char *currency);

/* POST /api/v1/orders (order_checkout.c). */
int order__h_place(struct http_req *req);

/* The recovery sweep (order_recovery.c): fails pending orders older than the timeout,
 * finishes owed compensations, creates missing shipments, drops abandoned idempotency
 * claims. order__recovery_run does one pass; start/stop the periodic thread. */
void order__recovery_run(struct app *app);
int order__recovery_start(struct app *app);
void order__recovery_stop(void);

/* Links a new shipment to its order only while the order may still ship; 0 rows changed
 * means it was cancelled meanwhile and the shipment must be cancelled too. */
#define ORDER_ATTACH_SHIPMENT_SQL                                                           \
    "UPDATE orders SET shipment_id = $1 WHERE id = $2 AND status IN ('paid', 'fulfilling', "  \
    "'on_hold')"

#endif
