/* SPDX-License-Identifier: MIT */
/* inventory_internal.h — shared between the inventory service's files only. */
#ifndef EMPORIUM_INVENTORY_INTERNAL_H
#define EMPORIUM_INVENTORY_INTERNAL_H
#include <stdint.h>

#include "emporium/db.h"
#include "emporium/http.h"

/* A stock level below this after a change writes a stock.low event (once per crossing). */
#define INVENTORY_LOW_STOCK 5
/* Largest stock level the API accepts for one product. */
#define INVENTORY_MAX_STOCK 1000000000LL
/* Largest quantity of one reservation line, and lines per reservation. */
#define INVENTORY_MAX_QTY 1000000
#define INVENTORY_MAX_ITEMS 1000
/* Sweeper: how often it looks for expired reservations, and how many it releases a round. */
#define INVENTORY_SWEEP_MS 1000
#define INVENTORY_SWEEP_BATCH 200

extern const struct http_route inventory__routes[];

/* Releases up to `max` active reservations whose expires_at has passed. Returns how many
 * were released (>= 0) or an ERR_*. Safe to run concurrently with anything (several
 * processes may sweep the same database). */
int inventory__sweep(struct app *app, int max);

#endif
