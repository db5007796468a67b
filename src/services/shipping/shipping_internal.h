/* SPDX-License-Identifier: MIT */
/* shipping_internal.h — shared between the shipping service's files only. */
#ifndef EMPORIUM_SHIPPING_INTERNAL_H
#define EMPORIUM_SHIPPING_INTERNAL_H
#include <stdbool.h>
#include <stdint.h>

#include "emporium/db.h"
#include "emporium/svc/shipping.h"

#define SHIPPING_MAX_ITEMS 100

/* Applies a carrier event to shipment `id`: status "in_transit" or "delivered" at at_ms.
 * Returns 0 (also when the shipment already had that status), ERR_NOTFOUND, ERR_CONFLICT
 * (cancelled, or moving backwards); *order_id receives the shipment's order. */
int shipping__apply_event(struct app *app, int64_t id, const char *status, int64_t at_ms,
                          int64_t *order_id);
struct shipment_event_view {
    char status[16];
    int64_t at;
};
/* The shipment with its tracking events (*events malloc'd, free()). ERR_NOTFOUND. */
int shipping__shipment(struct app *app, int64_t id, struct shipment_info *s, int64_t *order_id,
                       struct shipment_event_view **events, int *n);

/* --- store (shipping_store.c): SQL only --- */

/* One shipment by `where` (SQL after the SELECT, one parameter); ERR_NOTFOUND. */
int shipping__store_find(struct db_conn *c, const char *where, int64_t v, struct shipment_info *out,
                         int64_t *order_id);
/* A tracking event row and its outbox event. */
int shipping__store_event(struct db_conn *c, int64_t id, int64_t order_id, const char *type,
                          const char *status, int64_t at);
int shipping__store_insert(struct db_conn *c, int64_t id, int64_t order_id, const char *method,
                           const char *carrier, const char *tracking, const char *address,
                           int64_t now);
/* from -> to: rows changed (0 when it was no longer in from). */
int shipping__store_move(struct db_conn *c, int64_t id, const char *from, const char *to,
                         int64_t now);
int shipping__store_events(struct db_conn *c, int64_t id, struct shipment_event_view **out, int *n);

/* ---- shipping_remote.c: the client interface over HTTP (EMPORIUM_SHIPPING_URL) ---- */
/* True when this process calls shipping over HTTP (URL set, service not running here). */
bool shipping__remote(struct app *app);
int shipping__remote_price(struct app *app, const struct shipping_item *items, int n,
                           const char *country, const char *method, struct shipping_option *out,
                           int64_t *bad_product);
int shipping__remote_create(struct app *app, int64_t order_id, const char *method,
                            const struct shipping_address *a, struct shipment_info *out);
int shipping__remote_get(struct app *app, int64_t order_id, struct shipment_info *out);
int shipping__remote_cancel(struct app *app, int64_t order_id);

#endif
