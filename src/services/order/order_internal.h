/* SPDX-License-Identifier: MIT */
/* order_internal.h — shared between the order service's files only.
 *
 * Three layers: order_http.c (routes: parse, call, render; the only file that includes
 * emporium/http.h), order.c + order_saga.c + order_recovery.c (domain logic, the client
 * interface of svc/order.h), order_store.c (every SQL statement; order__store_*). */
#ifndef EMPORIUM_ORDER_INTERNAL_H
#define EMPORIUM_ORDER_INTERNAL_H
#include <stdbool.h>
#include <stdint.h>

#include "emporium/db.h"
#include "emporium/svc/order.h"

/* Physical shards: the databases orders_0 … orders_5 next to the other databases
 * (docs/sharding.md), and up to orders_31 on other servers, registered by `emporium shards
 * move --to URL` in the order_map's shard_servers table and opened by every process that
 * serves orders (order_shards.c). */
#define ORDER_SHARDS 6
#define ORDER_SHARDS_MAX 32
/* Virtual buckets: a user's orders live in bucket order__bucket_of_user(); the shard map
 * places buckets on shards. Groups: an order id's 6 shard bits (id.h) name its group of
 * ORDER_BUCKETS_PER_GROUP consecutive buckets (bucket / 512), the old fixed shard. */
#define ORDER_GROUPS 6
#define ORDER_BUCKETS_PER_GROUP 512
#define ORDER_BUCKETS (ORDER_GROUPS * ORDER_BUCKETS_PER_GROUP)
#define ORDER_MAP_POLL_MS 100    /* a serving process re-reads the map version this often */
#define ORDER_MAP_DRAIN_MS 30000 /* at most this long waiting for ops of an old map */
#define ORDER_MAP_DEAD_MS 15000  /* a process silent this long is taken as gone */

/* Tunables (struct config, copied in init). */
struct order_settings {
    int reservation_ttl_s; /* EMPORIUM_RESERVATION_TTL_SECONDS, 900 */
    int pending_timeout_s; /* EMPORIUM_ORDER_PENDING_TIMEOUT_SECONDS, 600 */
    int sweep_interval_s;  /* EMPORIUM_ORDER_SWEEP_SECONDS, 30 */
};
extern struct order_settings order__settings;

/* --- the shard map (order_shards.c) --- */

/* The user's bucket (0 … ORDER_BUCKETS-1) and group (the shard bits of its order ids). */
unsigned order__bucket_of_user(int64_t user_id);
unsigned order__shard_of_user(int64_t user_id);
/* The shard database that holds the user's orders now, per the map of the current op.
 * write: ERR_UNAVAILABLE while the user's bucket is fenced (being moved). */
int order__route_user(struct app *app, int64_t user_id, bool write, struct db **out);
/* The same for an order id: ERR_NOTFOUND when no shard can hold it. */
int order__route_id(struct app *app, int64_t order_id, bool write, struct db **out);
/* Whether the map gives this user's bucket to shard `shard` (copies being moved are not). */
bool order__owns(struct app *app, unsigned shard, int64_t user_id);
/* The shards the map uses (used[s] = 1); returns how many. */
int order__shards_in_use(struct app *app, unsigned char used[ORDER_SHARDS_MAX]);
/* Shard `shard`'s database: NULL when it is not open here (one on another server that could
 * not be reached yet). */
struct db *order__shard_db(struct app *app, unsigned shard);
/* Opens shard `shard` at `url` (another server: database "<url's database>_orders_<n>",
 * created when missing, migrated) and attaches it to the app, unless it is open already. */
int order__shard_attach(struct app *app, unsigned shard, const char *url);
/* Opens every shard of shard_servers not open here yet; ERR_* of the first that failed. */
int order__shards_attach_all(struct app *app);
/* Every public entry point runs between these: the op is pinned to one map (nesting ok). */
void order__op_enter(struct app *app);
void order__op_leave(struct app *app);
int order__shards_init(struct app *app);
int order__shards_serve(struct app *app); /* on_serve: register, load, acknowledge */
void order__shards_deinit(struct app *app);
int64_t order__map_cached_version(struct app *app);
/* The control database ("order_map"). */
struct db *order__map_db(struct app *app);
int order__map_version(struct db *ctl, int64_t *version);
/* The map as stored: version, shard of every bucket, fenced buckets. */
int order__map_read(struct db *ctl, int64_t *version, unsigned char shard[ORDER_BUCKETS],
                    unsigned char fenced[ORDER_BUCKETS]);
/* `emporium shards …` (order_reshard.c). */
int order__shards_command(struct app *app, int argc, char **argv);
struct cli_command;
extern const struct cli_command order__shards_cli;

/* --- domain (order.c) --- */

/* Gives back what a failed or cancelled order holds: releases the stock, voids or refunds
 * the payment, then clears the compensation flag. Idempotent. */
int order__compensate(struct app *app, int64_t order_id);
/* Brings the order up to its shipment (in_transit -> shipped, delivered -> delivered);
 * idempotent, only forward. */
int order__follow_shipment(struct app *app, int64_t order_id, const char *shipment_status,
                           int64_t at_ms);

/* --- the recovery sweep (order_recovery.c): one pass, a timer_fn (timer.h) --- */
void order__recovery_run(struct app *app, void *ctx);

/* Orphans: sagas of this process that ended (answered 503) without recording their end,
 * because the shard's database could not be written just then (a PgBouncer restart, say):
 * their order stays pending and their Idempotency-Key claimed, so the client's retry with
 * that key would get request_in_progress until the sweep's pending timeout (10 minutes by
 * default). This process knows they are dead: a job every second fails such an order
 * ("abandoned", compensation owed, the claim dropped) as soon as the database answers, and
 * a retry that finds the claim settles it first. At most ORDER_ORPHANS_MAX are remembered
 * (beyond that, or after the pending timeout, the sweep is the fallback). */
#define ORDER_ORPHANS_MAX 256
int order__orphans_init(struct app *app);
void order__orphans_free(struct app *app);
void order__orphan_add(struct app *app, int64_t order_id, int64_t user_id, const char *key);
bool order__orphan_has(struct app *app, int64_t order_id);
/* Settles the orphan order_id now: true when it was one and is settled. */
bool order__orphan_settle(struct app *app, int64_t order_id);
void order__orphans_run(struct app *app, void *ctx);

/* --- store (order_store.c): SQL only, on a connection the caller holds --- */

/* The record of an Idempotency-Key. */
struct order_key {
    char hash[65];
    bool done;
    int64_t order_id;
    int err;            /* done: the outcome's return code (0 placed) */
    char code[32];      /* done: its machine code */
    int64_t product_id; /* done: out_of_stock and the like */
};
/* 1 and *out when the key has a record, 0 when none, or an ERR_*. */
int order__store_key_get(struct db_conn *c, int64_t user_id, const char *key,
                         struct order_key *out);
/* Records the outcome on the key (state done), inside the caller's transaction. */
int order__store_key_done(struct db_conn *c, int64_t user_id, const char *key, int err,
                          const char *code, int64_t product_id);
int order__store_key_drop(struct db_conn *c, int64_t user_id, const char *key);
/* Drops the claim of `key` made for order_id when it is still in progress and that order
 * does not exist (a create whose outcome was not known). */
int order__store_claim_drop_orphan(struct db_conn *c, int64_t user_id, const char *key,
                                   int64_t order_id);

/* The new order, PENDING, with its items. */
struct order_new {
    int64_t id, user_id;
    unsigned shard;
    const char *key, *hash;
    const char *currency;
    int64_t subtotal, shipping, total;
    const char *method;
    const struct shipping_address *addr;
    const char *brand, *last4;
    const char *card_fp; /* the card's fingerprint (svc/fraud.h) for order.placed; "" none */
    int n;
    const struct order_item *items;
};
/* Claims the key (ERR_CONFLICT when a concurrent duplicate holds it), inserts the order,
 * its items, its history row and the order.placed event, as one transaction whose commit
 * is shared with other orders' (db_query_many_shared: on PostgreSQL one round trip, on
 * SQLite an intent of the shard's group-commit writer). */
int order__store_create(struct db *db, const struct order_new *o);

/* Moves the order to `to` if its status is one of `from` (NULL-terminated), with its
 * history row and its order.<to> outbox event, on c inside the caller's transaction.
 * reason may be NULL. compensate=true marks compensation as owed (failed, cancelled).
 * Returns 1 when moved, 0 when the order was not in a `from` status, or an ERR_*. */
int order__store_transition(struct db_conn *c, int64_t id, const char *to, const char *const *from,
                            const char *reason, bool retryable, bool compensate, int64_t at);
/* What the caller already knows of the order (the saga): its event is built from this
 * instead of reading the row and its lines back. */
struct order_known {
    int64_t user_id;
    const char *currency;
    int64_t total;
    int n;
    const struct order_item *items;
};
/* order__store_transition() with k (may be NULL: read back). */
/* PostgreSQL only: the order from `from` to `to` (a success: no reason, not retryable)
 * with its history row, its event (from k), the key's outcome done (err 0) and, when
 * shipment_id > 0, the shipment linked, as one statement; with out, the order read back
 * (without history) in the same pipeline: one round trip, one commit, shared with other
 * orders' moves (db_query_many_shared). k must not be NULL. 1 moved, 0 not in `from` (*out
 * still holds the order), <0 error (*out empty). */
int order__store_settle_one(struct db *db, int64_t id, const char *to, const char *from, int64_t at,
                            const struct order_known *k, const char *key, int64_t shipment_id,
                            struct order_view *out);
int order__store_transition_known(struct db_conn *c, int64_t id, const char *to,
                                  const char *const *from, const char *reason, bool retryable,
                                  bool compensate, int64_t at, const struct order_known *k);
/* The order (with items; with history when history is true). ERR_NOTFOUND. */
int order__store_load(struct db_conn *c, int64_t id, bool history, struct order_view *out);
/* Just the status ("" when there is no such order). */
int order__store_status(struct db_conn *c, int64_t id, char status[16]);
int order__store_set_compensated(struct db_conn *c, int64_t id);
/* Links a shipment to its order while the order may still ship: 1 linked, 0 when it was
 * cancelled meanwhile (the shipment must then be cancelled too). */
int order__store_attach_shipment(struct db_conn *c, int64_t id, int64_t shipment_id);
/* Summaries (no items) newest first; user_id 0: any user. */
int order__store_list(struct db_conn *c, int64_t user_id, const char *status, int64_t cursor,
                      int limit, struct order_view *out, int *n);
int order__store_outbox(struct db_conn *c, int64_t id, struct order_outbox_event **out, int *n);

/* 1 and the order's user when shard db has the order, 0 when not, or an ERR_*. */
int order__store_owner(struct db *db, int64_t id, int64_t *user_id);

/* The recovery sweep's queries: up to cap ids. */
int order__store_abandoned(struct db_conn *c, int64_t created_before, int64_t *ids, int cap);
/* Fails one abandoned pending order and drops its in-progress key claim (one transaction). */
int order__store_fail_abandoned(struct db_conn *c, int64_t id);
int order__store_owing(struct db_conn *c, int64_t updated_before, int64_t *ids, int cap);
/* Paid orders without a shipment: ids, methods and addresses. */
struct order_unshipped {
    int64_t id;
    char method[16];
    struct shipping_address addr;
};
int order__store_unshipped(struct db_conn *c, int64_t updated_before, struct order_unshipped *out,
                           int cap);
int order__store_drop_stale_claims(struct db_conn *c, int64_t created_before);

/* Moves a pending order to on_hold (fraud review) with its history row (the rules that
 * fired as its note) and the order.on_hold event carrying the score and the reasons, inside
 * the caller's transaction. 1 when moved, 0 when it was not pending, or an ERR_*. */
int order__store_hold(struct db_conn *c, int64_t id, int score, const char *const *reasons,
                      int n_reasons, int64_t at);
/* 1 when the order was ever on_hold (its history says so), 0 when not, or an ERR_*. */
int order__store_was_held(struct db_conn *c, int64_t id);

/* The service definition (in order_http.c) needs these. */
int order__init(struct app *app);
void order__deinit(struct app *app);

#endif
