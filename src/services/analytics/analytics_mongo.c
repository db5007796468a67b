/* SPDX-License-Identifier: MIT */
/* analytics_mongo.c — the order events as MongoDB documents (EMPORIUM_MONGODB_URI), the
 * seed's `order_history` and `analytics` collections.
 *
 * A consumer group of its own, "analytics-mongo", reads `order-events` (order.paid,
 * order.cancelled) beside the SQL facts of analytics_store.c, which stay the source of the
 * sales report. Each event becomes:
 *   - order_history: one document per event, _id = the event id, with the seed's shard key
 *     (user_id, created_at = the event's time) and the order's id, type, currency, total,
 *     lines and refund flag. Upsert with $setOnInsert: a redelivered event changes nothing.
 *   - analytics: one document per (date, category, currency), shard key (date, category),
 *     with running sums (revenue, units, orders) and the ids of the events applied. The
 *     upsert's filter excludes a document that already lists the event ("applied": {$ne: id}),
 *     so a redelivered event matches nothing and its insert fails on the _id (duplicate key,
 *     ERR_CONFLICT): applied once, whatever the redelivery. A paid order adds to the day it
 *     was paid; a cancellation with lines subtracts on the day it was cancelled (these sums
 *     are net by the day of the event; the SQL report takes a cancellation out of the day
 *     the order was counted in).
 * Categories come from the catalog at the moment the event is applied, as in analytics.c.
 *
 * MongoDB down: the write fails with ERR_UNAVAILABLE after the client's server selection
 * timeout, the handler returns it, and the bus delivers the event again after a backoff; the
 * group's offset does not move (emporium_consumer_lag{group="analytics-mongo"} shows what
 * waits) and emporium_mongo_writes_total{result="unavailable"} counts the attempts. Nothing
 * is lost and nothing else waits: the SQL analytics consumer is another group. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "emporium/mongo.h"
#include "emporium/svc/product.h"
#include "analytics_internal.h"

#define WRITES "emporium_mongo_writes_total"

struct analytics_mongo {
    struct app *app;
    struct mongo *m;
    _Atomic bool ensured;
};

static struct analytics_mongo *sink;

static void long_member(struct buf *b, const char *name, int64_t v)
{
    buf_printf(b, "\"%s\":{\"$numberLong\":\"%lld\"}", name, (long long)v);
}

int analytics__mongo_history_doc(const struct order_event *ev, struct buf *filter,
                                 struct buf *update)
{
    char oid[21], pid[21];
    buf_puts(filter, "{\"_id\":\"");
    buf_json_escape(filter, ev->event_id);
    buf_puts(filter, "\",");
    long_member(filter, "user_id", ev->user_id);
    buf_printf(filter, ",\"created_at\":{\"$date\":{\"$numberLong\":\"%lld\"}}}",
               (long long)ev->at);
    int64_t total = 0;
    for (int i = 0; i < ev->n; i++)
        total += (int64_t)ev->items[i].quantity * ev->items[i].unit_price;
    buf_printf(update,
               "{\"$setOnInsert\":{\"order_id\":\"%s\",\"type\":\"%s\",\"currency\":\"%s\",",
               id_format(ev->order_id, oid),
               ev->type == ORDER_EVENT_PAID ? "order.paid" : "order.cancelled", ev->currency);
    long_member(update, "total", total);
    buf_printf(update, ",\"refunded\":%s,\"items\":[", ev->refunded ? "true" : "false");
    for (int i = 0; i < ev->n; i++) {
        const struct order_event_item *it = &ev->items[i];
        buf_printf(update, "%s{\"product_id\":\"%s\",\"quantity\":%d,", i ? "," : "",
                   id_format(it->product_id, pid), it->quantity);
        long_member(update, "unit_price", it->unit_price);
        buf_puts(update, "}");
    }
    buf_puts(update, "]}}");
    return filter->err ? filter->err : update->err;
}

int analytics__mongo_facts_doc(const struct order_event *ev, const char *day, const char *category,
                               int64_t revenue, int64_t units, struct buf *filter,
                               struct buf *update)
{
    int sign = ev->type == ORDER_EVENT_CANCELLED ? -1 : 1;
    buf_printf(filter, "{\"_id\":\"%s|", day);
    buf_json_escape(filter, category);
    buf_printf(filter, "|%s\",\"date\":\"%s\",\"category\":\"", ev->currency, day);
    buf_json_escape(filter, category);
    buf_printf(filter, "\",\"currency\":\"%s\",\"applied\":{\"$ne\":\"", ev->currency);
    buf_json_escape(filter, ev->event_id);
    buf_puts(filter, "\"}}");
    buf_puts(update, "{\"$inc\":{");
    long_member(update, "revenue", sign * revenue);
    buf_puts(update, ",");
    long_member(update, "units", sign * units);
    buf_puts(update, ",");
    long_member(update, "orders", sign);
    buf_puts(update, "},\"$push\":{\"applied\":\"");
    buf_json_escape(update, ev->event_id);
    buf_puts(update, "\"}}");
    return filter->err ? filter->err : update->err;
}

/* One upsert, counted by outcome; an "already applied" duplicate key is success. */
static int put_doc(struct mongo *m, const char *collection, struct buf *filter, struct buf *update)
{
    int rc =
        filter->err || update->err ? ERR_NOMEM : mongo_upsert(m, collection, filter->p, update->p);
    metrics_count(WRITES, rc >= 0                 ? "ok"
                          : rc == ERR_CONFLICT    ? "duplicate"
                          : rc == ERR_UNAVAILABLE ? "unavailable"
                                                  : "error");
    return rc == ERR_CONFLICT ? 0 : rc < 0 ? rc : 0;
}

static int ensure(struct analytics_mongo *s)
{
    if (atomic_load(&s->ensured))
        return 0;
    int rc = mongo_ensure_collection(s->m, "order_history", "{\"user_id\":1,\"created_at\":1}");
    if (rc == 0)
        rc = mongo_ensure_collection(s->m, "analytics", "{\"date\":1,\"category\":1}");
    if (rc == 0)
        atomic_store(&s->ensured, true);
    if (rc != ERR_UNAVAILABLE)
        return 0; /* an index the server refuses is not fatal */
    metrics_count(WRITES, "unavailable");
    return rc;
}

static void day_of(int64_t ms, char out[11])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 11, "%04u-%02u-%02u", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u);
}

static int apply(struct app *app, const struct order_event *ev)
{
    struct analytics_mongo *s = sink;
    int rc = ensure(s);
    if (rc < 0)
        return rc;
    struct buf f = BUF_INIT(256), u = BUF_INIT(512);
    analytics__mongo_history_doc(ev, &f, &u);
    rc = put_doc(s->m, "order_history", &f, &u);
    if (rc == 0 && ev->currency[0] && ev->n > 0) {
        /* the lines by category (a handful: quadratic is fine) */
        char day[11], cats[ORDER_EVENT_MAX_ITEMS][sizeof((struct product_info *)0)->category];
        day_of(ev->at, day);
        for (int i = 0; i < ev->n; i++) {
            struct product_info pi;
            snprintf(cats[i], sizeof cats[i], "%s",
                     product_get_info(app, ev->items[i].product_id, &pi) == 0 ? pi.category
                                                                              : "unknown");
        }
        for (int i = 0; i < ev->n && rc == 0; i++) {
            bool seen = false;
            for (int j = 0; j < i && !seen; j++)
                seen = !strcmp(cats[i], cats[j]);
            if (seen)
                continue;
            int64_t revenue = 0, units = 0;
            for (int j = i; j < ev->n; j++)
                if (!strcmp(cats[i], cats[j])) {
                    revenue += (int64_t)ev->items[j].quantity * ev->items[j].unit_price;
                    units += ev->items[j].quantity;
                }
            f.len = u.len = 0;
            analytics__mongo_facts_doc(ev, day, cats[i], revenue, units, &f, &u);
            rc = put_doc(s->m, "analytics", &f, &u);
        }
    }
    buf_free(&f);
    buf_free(&u);
    return rc;
}

static int on_order_event(void *ctx, const struct bus_event *ev)
{
    return order_event_consume(ctx, "analytics-mongo", ev, apply, apply);
}

int analytics__mongo_init(struct app *app)
{
    const char *uri = app_config(app)->mongodb_uri;
    if (!uri || !*uri)
        return 0;
    int rc = metrics_counter_declare(WRITES, "result",
                                     "Upserts of order events into MongoDB, by outcome.");
    if (rc < 0)
        return rc;
    struct analytics_mongo *s = calloc(1, sizeof *s);
    if (!s)
        return ERR_NOMEM;
    char why[128];
    if ((rc = mongo_open(uri, &s->m, why, sizeof why)) < 0) {
        log_error("analytics: EMPORIUM_MONGODB_URI: %s", why);
        free(s);
        return rc;
    }
    s->app = app;
    sink = s;
    log_info("analytics: order events also go to MongoDB (order_history, analytics)");
    return bus_subscribe_types("analytics-mongo", BUS_TOPIC_ORDER, order_event_types,
                               on_order_event, app);
}

void analytics__mongo_deinit(struct app *app)
{
    (void)app;
    if (!sink)
        return;
    mongo_close(sink->m);
    free(sink);
    sink = NULL;
}
