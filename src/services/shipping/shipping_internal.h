/* SPDX-License-Identifier: MIT */
/* shipping_internal.h — shared between the shipping service's files only. */
#ifndef EMPORIUM_SHIPPING_INTERNAL_H
#define EMPORIUM_SHIPPING_INTERNAL_H
#include <stdbool.h>
#include <stdint.h>

#include "emporium/db.h"
#include "emporium/http.h"
#include "emporium/svc/shipping.h"

#define SHIPPING_MAX_ITEMS 100
#define SHIPMENT_SELECT                                                                      \
    "SELECT id, order_id, method, carrier, tracking_number, status, created_at, updated_at " \
    "FROM shipments "

extern const struct http_route shipping__routes[];

/* Applies a carrier event to shipment `id`: status "in_transit" or "delivered" at at_ms.
 * Returns 0 (also when the shipment already had that status), ERR_NOTFOUND, ERR_CONFLICT
 * (cancelled, or moving backwards); *order_id receives the shipment's order. */
int shipping__apply_event(struct app *app, int64_t id, const char *status, int64_t at_ms,
                          int64_t *order_id);
/* The shipment with its events as JSON; new reference, NULL when it does not exist. */
json_t *shipping__shipment_json(struct app *app, int64_t id, int *err);

#endif
