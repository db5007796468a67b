/* SPDX-License-Identifier: MIT */
/* payment_internal.h — shared between the payment service's files only.
 *
 * The provider port: a table of functions over an opaque provider. Each call carries the
 * caller's idempotency key (real providers deduplicate on it); a call returns 0 when the
 * provider answered (approved or declined: see out->ok) and a negative ERR_* when it could
 * not be reached. The built-in sandbox (payment_sandbox.c) is the only provider so far. */
#ifndef EMPORIUM_PAYMENT_INTERNAL_H
#define EMPORIUM_PAYMENT_INTERNAL_H
#include <stdbool.h>
#include <stdint.h>

#include "emporium/db.h"
#include "emporium/svc/payment.h"

struct payment_provider_result {
    bool ok;
    char reason[32]; /* when !ok: card_declined, insufficient_funds, processing_error */
    bool retryable;
    char ref[64]; /* the provider's id for the authorization (authorize only) */
};

struct payment_provider {
    const char *name;
    int (*authorize)(void *self, const char *key, const struct payment_card *card, int64_t amount,
                     const char *currency, struct payment_provider_result *out);
    int (*capture)(void *self, const char *key, const char *ref, int64_t amount,
                   struct payment_provider_result *out);
    int (*void_auth)(void *self, const char *key, const char *ref,
                     struct payment_provider_result *out);
    int (*refund)(void *self, const char *key, const char *ref, int64_t amount,
                  struct payment_provider_result *out);
    void *self;
};

/* The sandbox provider; latency_ms is slept on every call (EMPORIUM_PAYMENT_LATENCY_MS). */
void payment__sandbox_init(struct payment_provider *p, int latency_ms);

/* "visa", "mastercard", … from the digits. */
const char *payment__brand(const char *digits);
/* Copies the digits of number (spaces and dashes skipped) into out; -1 when another
 * character is present or there are more than cap-1 digits. */
int payment__digits(const char *number, char *out, size_t cap);

/* --- store (payment_store.c): SQL only --- */

struct payrow {
    int64_t id, order_id, amount;
    char key[160], status[16], currency[4], brand[16], last4[5], ref[64], reason[32];
    bool retryable;
};

/* Loads one payment by `where` (SQL after the SELECT, with one parameter): 1 found, 0 not. */
int payment__store_find(struct db_conn *c, const char *where, struct db_val arg, struct payrow *p);
/* The newest payment of an order: 1 found, 0 not. */
int payment__store_by_order(struct db_conn *c, int64_t order_id, struct payrow *p);
/* The new attempt, status processing, committed (ERR_CONFLICT: the key exists). */
int payment__store_insert(struct db *db, const struct payrow *p, const char *provider);
/* The provider's answer on a processing row, the row moved to row_status (in the caller's
 * transaction): rows changed. */
int payment__store_record_authorize(struct db_conn *c, const struct payrow *p,
                                    const char *row_status);
/* The provider's answer (p->status authorized or failed: the operation and the event) on the
 * processing row, which moves to row_status (p->status, or capturing when a capture follows
 * at once), committed: 1 recorded, 0 when the row was no longer processing. */
int payment__store_record(struct db *db, const struct payrow *p, const char *row_status,
                          int64_t amount);
/* An operation row (authorize, capture, void, refund) and the payment's outbox event. */
int payment__store_op(struct db_conn *c, const struct payrow *p, const char *kind,
                      const char *status, int64_t amount, const char *reason);
int payment__store_event(struct db_conn *c, const struct payrow *p, const char *type,
                         int64_t amount);
/* from -> to with its operation row and event, in its own transaction: 1 when this call made
 * the change, 0 when the row was no longer in `from`. */
int payment__store_transition(struct db *db, struct payrow *p, const char *from, const char *to,
                              const char *kind, const char *event, int64_t amount);
/* from -> to alone (no operation, no event), committed: rows changed. */
int payment__store_mark(struct db *db, struct payrow *p, const char *from, const char *to);
/* PostgreSQL: moves the order's newest payment from `from` to `to` in one statement and
 * loads it into *p (as moved): 1 moved, 0 not (not in `from`, none, or SQLite: the caller
 * then reads and marks as before), <0 error. */
int payment__store_mark_newest(struct db *db, int64_t order_id, const char *from, const char *to,
                               struct payrow *p);

/* The audit view of an order's payments (GET /api/v1/admin/payments). */
struct payment_op_view {
    char kind[16], status[16];
    int64_t amount, at;
};
struct payment_view {
    int64_t id, amount, created_at;
    char status[16], currency[4], brand[16], last4[5], reason[32]; /* reason "" when none */
    int n_ops;
    struct payment_op_view *ops;
};
int payment__store_audit(struct db_conn *c, int64_t order_id, struct payment_view **out, int *n);
void payment_views_free(struct payment_view *v, int n);
/* The domain's read for the audit route. */
int payment__audit(struct app *app, int64_t order_id, struct payment_view **out, int *n);

/* The service definition (in payment_http.c) needs these. */
int payment__init(struct app *app);

/* ---- payment_remote.c: the client interface over HTTP (EMPORIUM_PAYMENT_URL) ---- */
/* True when this process calls payments over HTTP (URL set, service not running here). */
bool payment__remote(struct app *app);
int payment__remote_authorize(struct app *app, const char *key, int64_t order_id, int64_t amount,
                              const char *currency, const struct payment_card *card,
                              struct payment_result *out);
int payment__remote_capture(struct app *app, int64_t order_id);
int payment__remote_cancel(struct app *app, int64_t order_id);
int payment__remote_get(struct app *app, int64_t order_id, struct payment_result *out);

#endif
