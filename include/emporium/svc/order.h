/* SPDX-License-Identifier: MIT */
/* svc/order.h — the order service's client interface for other services. */
#ifndef EMPORIUM_SVC_ORDER_H
#define EMPORIUM_SVC_ORDER_H
#include <stdint.h>

struct app;

/* The shipping service reports that the order's shipment moved: status "shipped" (in
 * transit) or "delivered", at `at_ms`. Idempotent; moves the order only forward (a
 * cancelled or failed order is left alone, ERR_CONFLICT). ERR_NOTFOUND for an unknown
 * order. */
int order_shipment_moved(struct app *app, int64_t order_id, const char *status, int64_t at_ms);

#endif
