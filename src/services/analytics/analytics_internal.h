/* SPDX-License-Identifier: MIT */
/* analytics_internal.h — shared between the analytics service's own files only. */
#ifndef EMPORIUM_ANALYTICS_INTERNAL_H
#define EMPORIUM_ANALYTICS_INTERNAL_H
#include <stdint.h>

#include "emporium/buf.h"
#include "emporium/db.h"
#ifndef EMPORIUM_SERVICE_NO_HTTP
#define EMPORIUM_SERVICE_NO_HTTP /* layered: only the *_http.c files see HTTP */
#endif
#include "emporium/service.h"
#include "emporium/svc/analytics.h"
#include "emporium/svc/recommendation.h"

/* The databases the service declares (schema and migrations: analytics_store.c). */
extern const struct service_db analytics__dbs[];
/* Lifecycle (analytics.c); the service definition is in analytics_http.c, next to its routes. */
int analytics__init(struct app *app);
void analytics__deinit(struct app *app);

/* The default report range (analytics.c): the last 30 days up to today, UTC. */
void analytics__default_range(char from[11], char to[11]);

/* ---- analytics_store.c: the `analytics` database ---- */

/* One line of a paid order as the facts record it. */
struct analytics__line {
    int64_t product_id, units, revenue;
    const char *category; /* borrowed */
};

/* Records a paid order (its lines on UTC day `day`) with the event id, in the transaction of
 * the consumer's batch end: added to `later` (one statement on PostgreSQL, a copy of the
 * event on SQLite), which db_batch_run() commits with the rest of the batch. 0 or an ERR_*;
 * when it runs, an event seen before, or an order already counted or cancelled, changes
 * nothing. */
int analytics__store_paid(struct db *db, struct db_batch *later, const struct order_event *ev,
                          const char *day, const struct analytics__line *lines, int n);
/* Takes a cancelled order out of the figures. 1: its facts were taken out; 0: nothing to do
 * (event seen, already cancelled, or never counted: then a later order.paid is ignored). */
int analytics__store_cancelled(struct db *db, const struct order_event *ev);
/* The report rows (see analytics_sales()). */
int analytics__store_sales(struct db *db, const char *from, const char *to, enum analytics_group g,
                           struct analytics_report *out);

/* ---- analytics_mongo.c: the events as MongoDB documents (EMPORIUM_MONGODB_URI) ---- */

/* Subscribes the "analytics-mongo" consumer group when EMPORIUM_MONGODB_URI is set (else
 * nothing); ERR_INVALID when the URI does not parse. */
int analytics__mongo_init(struct app *app);
void analytics__mongo_deinit(struct app *app);
/* The order_history upsert of an event (extended JSON): filter {_id: event id, user_id,
 * created_at}, update {$setOnInsert: order_id, type, currency, total, refunded, items}.
 * Appends to filter and update; 0 or ERR_NOMEM. */
int analytics__mongo_history_doc(const struct order_event *ev, struct buf *filter,
                                 struct buf *update);
/* The analytics upsert of one (day, category, currency) of an event: filter {_id, date,
 * category, currency, applied: {$ne: event id}}, update {$inc: revenue, units, orders (negated
 * for a cancellation), $push: {applied: event id}}. */
int analytics__mongo_facts_doc(const struct order_event *ev, const char *day, const char *category,
                               int64_t revenue, int64_t units, struct buf *filter,
                               struct buf *update);

#endif
