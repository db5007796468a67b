/* SPDX-License-Identifier: MIT */
/* fraud_internal.h — shared between the fraud service's own files only.
 *
 * Files: fraud.c (the rules, the card fingerprint, the order-events consumer, the service's
 * lifecycle), fraud_store.c (schema and every SQL statement; fraud__store_*), fraud_http.c
 * (the admin route and the service definition). */
#ifndef EMPORIUM_FRAUD_INTERNAL_H
#define EMPORIUM_FRAUD_INTERNAL_H
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emporium/db.h"
#ifndef EMPORIUM_SERVICE_NO_HTTP
#define EMPORIUM_SERVICE_NO_HTTP /* layered: only the *_http.c files see HTTP */
#endif
#include "emporium/service.h"
#include "emporium/svc/fraud.h"

#define FRAUD_KEY_BYTES 32

/* Points of each rule (svc/fraud.h). */
#define FRAUD_POINTS_AMOUNT 100
#define FRAUD_POINTS_VELOCITY 60
#define FRAUD_POINTS_CARD 60
#define FRAUD_POINTS_FAILURES 50
#define FRAUD_POINTS_COUNTRY 30

/* One write of the consumer: an order placed (counts it; fills in its card and country), or
 * an order's new status (failed_payment marks a payment failure). Idempotent. */
struct fraud_event {
    bool placed;
    int64_t order_id, user_id, at;
    char card_fp[FRAUD_FINGERPRINT_LEN + 1], country[8]; /* placed */
    char status[16];                                     /* a status */
    bool failed_payment;
};
#define FRAUD_STAGED_MAX 256 /* the consumer runner's batch; flushed early when full */

/* The service's state (app_service_ctx "fraud"): the fingerprint key and the settings. */
struct fraud_ctx {
    unsigned char key[FRAUD_KEY_BYTES];
    int64_t review_amount;
    int hold_score;
    int64_t window_ms;
    int user_velocity, card_velocity, failed_payments;
    /* The consumer's writes, waiting for its batch end (bus_subscribe_flush). */
    pthread_mutex_t mu;
    struct fraud_event staged[FRAUD_STAGED_MAX];
    int n_staged;
};

extern const struct service_db fraud__dbs[];
int fraud__init(struct app *app);
void fraud__deinit(struct app *app);

/* --- fraud_store.c --- */

/* The fingerprint key: the stored one, or `fresh` stored now when there is none (the first
 * process to start wins; every process then reads the same key). */
int fraud__store_key(struct db *db, const unsigned char fresh[FRAUD_KEY_BYTES],
                     unsigned char out[FRAUD_KEY_BYTES]);

/* What the rules count for one order, read inside the scoring transaction. */
struct fraud_counts {
    /* Each count stops at what its rule asks (the threshold, or 1). */
    int64_t user_orders;     /* the user's other orders in the window (not failed payments) */
    int64_t card_orders;     /* other orders on the card in the window (likewise) */
    int64_t failed_payments; /* the user's or the card's failed payments in the window */
    int64_t past_orders;     /* the user's other orders that did not fail, ever (0 or 1) */
    int64_t same_country;    /* of those, shipped to this country (0 or 1) */
};

/* The rules (fraud.c): the verdict from what was counted. */
void fraud__rules(const struct fraud_ctx *ctx, const struct fraud_order *o,
                  const struct fraud_counts *n, struct fraud_verdict *out);
/* The static name of a reason ("amount", …), NULL when s names none. */
const char *fraud__reason(const char *s, size_t len);

/* Scores and records an order: the counts, fraud__rules(), then the order's row, the
 * assessment and the fraud.assessed event in one transaction (SQLite: one intent of
 * db_write; PostgreSQL: one read round trip, then one pipelined write, one commit). An order
 * scored before gets its recorded verdict. */
int fraud__store_score(struct db *db, const struct fraud_ctx *ctx, const struct fraud_order *o,
                       struct fraud_verdict *out);
int fraud__store_assessment(struct db *db, int64_t order_id, struct fraud_assessment *out);

/* The writes of one consumer batch, in their order: on PostgreSQL one pipelined round trip
 * and commit per DB_STMT_MAX of them, on SQLite one intent of the group-commit writer. A
 * failure may leave some applied: running them all again is harmless. */
int fraud__store_events(struct db *db, const struct fraud_event *ev, int n);

#endif
