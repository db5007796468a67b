/* SPDX-License-Identifier: MIT */
/* analytics.c — sales figures for operators: revenue, orders and units by day or category
 * (svc/analytics.h), learnt from the order events, net of cancellations and refunds.
 *
 * The service consumes "order.paid" and "order.cancelled" on the `order-events` topic
 * (svc/recommendation.h). A paid order's lines become facts on the UTC day it was paid, each
 * with the category the catalog gives its product at that moment; a cancellation (refunded
 * or not) takes the whole order back out of the day and categories it was counted in, once
 * (analytics_store.c). The seed puts analytics in MongoDB; here the facts live behind the same
 * db port as everything else, and a document-store adapter can take them over without
 * changing this interface. Revenue is reported per currency: sums never mix currencies.
 *
 * Files: analytics.c (this: events, the report's rules, the service), analytics_store.c
 * (schema and SQL), analytics_http.c (the admin route). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/svc/product.h"
#include "analytics_internal.h"

static struct db *analytics_db(struct app *app) { return app_db(app, "analytics"); }

/* A paid order's write waits for the consumer's batch end (flush()), where the batch's writes
 * commit together (the service's context: a db_batch): one commit per batch, not per event. */
static struct db_batch *pending_of(struct app *app) { return app_service_ctx(app, "analytics"); }

static int flush(void *batch) { return db_batch_run(batch); }

static void day_of(int64_t ms, char out[11])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 11, "%04u-%02u-%02u", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u);
}

static int apply_paid(struct app *app, const struct order_event *ev)
{
    if (!ev->currency[0] || ev->n == 0)
        return 0;
    char day[11];
    day_of(ev->at, day);
    struct analytics__line lines[ORDER_EVENT_MAX_ITEMS];
    struct product_info info[ORDER_EVENT_MAX_ITEMS];
    for (int i = 0; i < ev->n; i++) {
        const struct order_event_item *it = &ev->items[i];
        bool known = product_get_info(app, it->product_id, &info[i]) == 0;
        lines[i] = (struct analytics__line){
            .product_id = it->product_id,
            .units = it->quantity,
            .revenue = (int64_t)it->quantity * it->unit_price,
            .category = known ? info[i].category : "unknown",
        };
    }
    struct db_batch *pending = pending_of(app);
    return pending ? analytics__store_paid(analytics_db(app), pending, ev, day, lines, ev->n)
                   : ERR_UNAVAILABLE;
}

static int apply_cancelled(struct app *app, const struct order_event *ev)
{
    /* The paid events staged before it go first: events apply in their order. */
    struct db_batch *pending = pending_of(app);
    int rc = pending ? db_batch_run(pending) : 0;
    if (rc < 0)
        return rc;
    rc = analytics__store_cancelled(analytics_db(app), ev);
    if (rc > 0) {
        char oid[21];
        log_info("analytics: order %s cancelled (%s): taken out of the sales figures",
                 id_format(ev->order_id, oid), ev->refunded ? "refunded" : "not refunded");
    }
    return rc;
}

static int on_order_event(void *ctx, const struct bus_event *ev)
{
    return order_event_consume(ctx, "analytics", ev, apply_paid, apply_cancelled);
}

long analytics_parse_day(const char *s)
{
    int y, m, d;
    char extra;
    if (!s || strlen(s) != 10)
        return -1;
    for (int i = 0; i < 10; i++) /* digits and the two dashes only: sscanf takes signs */
        if (i == 4 || i == 7 ? s[i] != '-' : !isdigit((unsigned char)s[i]))
            return -1;
    if (sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3 || m < 1 || m > 12 || d < 1 || d > 31 ||
        y < 1970 || y > 9999)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    time_t t = timegm(&tm);
    struct tm back;
    gmtime_r(&t, &back);
    if (back.tm_mday != d) /* 2026-02-30 */
        return -1;
    return (long)(t / 86400);
}

int analytics_sales(struct app *app, const char *from, const char *to, enum analytics_group g,
                    struct analytics_report *out)
{
    out->n = 0;
    out->rows = NULL;
    long f = analytics_parse_day(from), t = analytics_parse_day(to);
    if (f < 0 || t < 0 || t < f || t - f >= ANALYTICS_MAX_DAYS ||
        (g != ANALYTICS_BY_DAY && g != ANALYTICS_BY_CATEGORY))
        return ERR_INVALID;
    return analytics__store_sales(analytics_db(app), from, to, g, out);
}

void analytics_report_free(struct analytics_report *r)
{
    if (!r)
        return;
    free(r->rows);
    r->rows = NULL;
    r->n = 0;
}

/* The default report range: the last 30 days up to today (UTC). */
void analytics__default_range(char from[11], char to[11])
{
    int64_t now = now_ms();
    day_of(now, to);
    day_of(now - 29LL * 86400 * 1000, from);
}

int analytics__init(struct app *app)
{
    struct db_batch *pending = db_batch_new(analytics_db(app));
    if (!pending)
        return ERR_NOMEM;
    int rc = app_set_service_ctx(app, "analytics", pending);
    if (rc < 0) {
        db_batch_free(pending);
        return rc;
    }
    rc = bus_subscribe_types("analytics", BUS_TOPIC_ORDER, order_event_types, on_order_event, app);
    if (rc == 0)
        rc = bus_subscribe_flush("analytics", flush, pending);
    return rc < 0 ? rc : analytics__mongo_init(app);
}

void analytics__deinit(struct app *app)
{
    analytics__mongo_deinit(app);
    struct db_batch *pending = pending_of(app);
    app_set_service_ctx(app, "analytics", NULL);
    /* The consumers stopped first: what is left here was never acknowledged (comes again). */
    db_batch_free(pending);
}
