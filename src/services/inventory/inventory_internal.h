/* SPDX-License-Identifier: MIT */
/* inventory_internal.h — shared between the inventory service's own files only. */
#ifndef EMPORIUM_INVENTORY_INTERNAL_H
#define EMPORIUM_INVENTORY_INTERNAL_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "emporium/db.h"
#ifndef EMPORIUM_SERVICE_NO_HTTP
#define EMPORIUM_SERVICE_NO_HTTP /* layered: only the *_http.c files see HTTP */
#endif
#include "emporium/service.h"
#include "emporium/svc/inventory.h"

/* A stock level below this after a change writes a stock.low event (once per crossing). */
#define INVENTORY_LOW_STOCK 5
/* Largest stock level the API accepts for one product. */
#define INVENTORY_MAX_STOCK 1000000000LL
/* Largest quantity of one reservation line, and lines per reservation. */
#define INVENTORY_MAX_ITEMS 1000
#define INVENTORY_MAX_QTY 1000000
/* Sweeper: how often it looks for expired reservations, and how many it releases a round. */
#define INVENTORY_SWEEP_MS 1000
#define INVENTORY_SWEEP_BATCH 200
#define INVENTORY_SWEEP_ROUNDS 10

/* The service's state, owned by the app (app_service_ctx(app, "inventory")): allocated by
 * init(), freed by deinit(). */
/* The lines of a reservation made in this process and not confirmed yet (inventory.c). */
struct inventory__recent {
    int64_t id; /* 0: free */
    int n;
    struct inventory_item *items; /* merged and sorted by product id, as stored */
};
#define INVENTORY_RECENT_SLOTS 1024

struct inventory_ctx {
    inventory_product_known_fn product_known; /* registered by the catalog; may be NULL */
    pthread_mutex_t recent_mu;
    struct inventory__recent recent[INVENTORY_RECENT_SLOTS];
};

extern const struct service_db inventory__dbs[];
/* Lifecycle (inventory.c); the service definition is in inventory_http.c, next to its routes. */
int inventory__init(struct app *app);
void inventory__deinit(struct app *app);

/* Releases up to `max` active reservations whose expires_at has passed. Returns how many
 * were released (>= 0) or an ERR_*. Safe to run concurrently with anything (several
 * processes may sweep the same database). */
int inventory__sweep(struct app *app, int max);

/* ---- inventory_remote.c: the client interface over HTTP (EMPORIUM_INVENTORY_URL) ---- */
/* True when this process calls the inventory over HTTP (the URL is set and the service does
 * not run here): the public functions then hand over to the ones below. */
bool inventory__remote(struct app *app);
int inventory__remote_get(struct app *app, int64_t product_id, int64_t *available,
                          int64_t *reserved);
int inventory__remote_reserve(struct app *app, int64_t reservation_id,
                              const struct inventory_item *items, int n, int ttl_seconds,
                              int64_t *short_product);
int inventory__remote_confirm(struct app *app, int64_t reservation_id);
int inventory__remote_release(struct app *app, int64_t reservation_id);

/* ---- inventory_store.c: every statement on the `inventory` database. Functions taking a
 * connection run inside the caller's transaction; the others take and give back their own. */

/* A product's level; ERR_NOTFOUND when it has no row. reserved may be NULL. */
int inventory__store_level(struct db_conn *c, int64_t product_id, int64_t *available,
                           int64_t *reserved);
/* Sets available (creating the row with reserved 0). */
int inventory__store_put(struct db_conn *c, int64_t product_id, int64_t available, int64_t now);
/* The same for n rows, in multi-row statements. */
int inventory__store_put_many(struct db_conn *c, const int64_t *ids, const int64_t *available,
                              int n, int64_t now);
/* Gives q back to available; from_reserved: out of reserved (an active reservation), else
 * plain back (a confirmed one). Returns the rows changed (0: no such product row). */
int inventory__store_give(struct db_conn *c, int64_t product_id, int q, bool from_reserved,
                          int64_t now);
/* reserved -= q for n items (a reservation confirmed: the stock has left for good), pipelined
 * (one round trip per 32 items on PostgreSQL). */
int inventory__store_unreserve_many(struct db_conn *c, const struct inventory_item *items, int n,
                                    int64_t now);

/* Reservations. */

/* One reservation in as few round trips as it takes (one pipeline for up to 29 items):
 * the active reservation row, every item taken (available -= q, reserved += q, each only
 * when q is available) and its line, then tail (NULL for none: the reservation's event,
 * which the caller's rollback undoes with the rest). Returns 0 (after[i]: item i's
 * available now), 1 when the reservation exists already (nothing to do: roll back),
 * ERR_CONFLICT when an item was short (*short_product; roll back) or an ERR_*. items:
 * sorted by product id, merged. Inside the caller's transaction. */
int inventory__store_reserve(struct db_conn *c, int64_t id, int64_t now, int64_t expires,
                             const struct inventory_item *items, int n, int64_t *after,
                             int64_t *short_product, const struct db_stmt *tail);

/* PostgreSQL only: the same reservation as one implicit transaction in one round trip, on a
 * connection of its own, for the common case that needs no decision in between. Returns 0 (after[]
 * as above), 1 when it could not be done so (an item short or crossing the low-stock mark,
 * the reservation existing, more items than one pipeline holds): nothing of it was kept, so
 * run inventory__store_reserve() in a transaction instead; or an ERR_*. */
int inventory__store_reserve_fast(struct db *db, int64_t id, int64_t now, int64_t expires,
                                  const struct inventory_item *items, int n, int64_t *after,
                                  const struct db_stmt *tail);

struct inventory__resv {
    char status[16]; /* active, confirmed, released */
    int64_t expires_at;
    int n;
    struct inventory_item *items; /* malloc'd, sorted by product id; free() */
};
/* Loads status, expiry and items (replacing out->items); ERR_NOTFOUND when unknown. */
int inventory__store_resv_load(struct db_conn *c, int64_t id, struct inventory__resv *out);
/* Moves the reservation from `from` to `to`: 1 moved, 0 someone else moved it first. */
/* PostgreSQL only: active → confirmed (unless expired at now) with the lines' reserved
 * stock given up and the event (outbox_row args) inserted, in one statement. 1 moved, 0 not. */
int inventory__store_confirm_one(struct db_conn *c, int64_t id, int64_t now,
                                 const struct db_val *event);
int inventory__store_resv_move(struct db_conn *c, int64_t id, const char *from, const char *to,
                               int64_t now);
/* Up to max ids of active reservations expired at `now`, oldest first (own connection).
 * *ids is malloc'd (free()); returns how many. */
int inventory__store_expired(struct db *db, int64_t now, int max, int64_t **ids);

#endif
