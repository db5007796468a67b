/* SPDX-License-Identifier: MIT */
/* recommendation_internal.h — shared between the recommendation service's own files only. */
#ifndef EMPORIUM_RECOMMENDATION_INTERNAL_H
#define EMPORIUM_RECOMMENDATION_INTERNAL_H
#include <stdint.h>

#include "emporium/db.h"
#ifndef EMPORIUM_SERVICE_NO_HTTP
#define EMPORIUM_SERVICE_NO_HTTP /* layered: only the *_http.c files see HTTP */
#endif
#include "emporium/service.h"
#include "emporium/svc/recommendation.h"

#define REC_MAX_ITEMS 50 /* lines of an order paired (pairs grow quadratically) */
#define REC_DEFAULT_LIMIT 8

/* The databases the service declares (schema and migrations: recommendation_store.c). */
extern const struct service_db recommendation__dbs[];
/* Lifecycle (recommendation.c); the service definition is in recommendation_http.c, next to its routes. */
int recommendation__init(struct app *app);
void recommendation__deinit(struct app *app);

/* ---- recommendation_store.c: the `recommendations` database ---- */

/* Counts a paid order (categories[i] is the category of the event's item i, borrowed):
 * units per product and one per unordered pair of its first REC_MAX_ITEMS lines, with the
 * event id, in the transaction of the consumer's batch end: added to `later` (one statement
 * on PostgreSQL, a copy of the event on SQLite), which db_batch_run() commits with the rest
 * of the batch. 0 or an ERR_*; when it runs, an event seen before, or an order already
 * counted or cancelled, changes nothing. */
int recommendation__store_paid(struct db *db, struct db_batch *later, const struct order_event *ev,
                               const char *const *categories);
/* Takes a cancelled order's counts back, once. 1: taken back; 0: nothing to do (event seen,
 * already cancelled, or never counted: then a later order.paid is ignored). */
int recommendation__store_cancelled(struct db *db, const struct order_event *ev);
/* Candidate product ids, best first: bought together with `id` (max `cap`), then the top
 * sellers of `category` (max `cap`). *n_pairs / *n_top receive the counts; ids has room for
 * 2 * cap. */
int recommendation__store_candidates(struct db *db, int64_t id, const char *category, int cap,
                                     int64_t *ids, int *n_pairs, int *n_top);

#endif
