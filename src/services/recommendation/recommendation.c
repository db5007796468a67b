/* SPDX-License-Identifier: MIT */
/* recommendation.c — "bought together" and "top sellers of the category"
 * (svc/recommendation.h), learnt from the order events.
 *
 * The service consumes "order.paid" and "order.cancelled" on the `order-events` topic; in
 * embedded mode the bus delivers them in-process right after the order commits. A paid
 * order counts its products' units and every pair of its products; a cancelled order
 * (refunded or not) stops counting: a shop recommends what people keep, and an order that was
 * cancelled says little about what goes together. Each event is applied once
 * (recommendation_store.c). Reads: products bought together with this one (most often
 * first), then the category's best sellers, never the product itself nor anything the
 * catalog no longer sells.
 *
 * order_event_decode(), the one decoder of the order events, lives here too; the analytics
 * service uses it. Files: recommendation.c (this), recommendation_store.c (schema and SQL),
 * recommendation_http.c (the route). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/svc/product.h"
#include "recommendation_internal.h"

static struct db *rec_db(struct app *app) { return app_db(app, "recommendations"); }

/* A paid order's write waits for the consumer's batch end (flush()), where the batch's writes
 * commit together (the service's context: a db_batch): one commit per batch, not per event. */
static struct db_batch *pending_of(struct app *app)
{
    return app_service_ctx(app, "recommendation");
}

static int flush(void *batch) { return db_batch_run(batch); }

int order_event_decode(const struct bus_event *bev, struct order_event *out)
{
    memset(out, 0, offsetof(struct order_event, items));
    json_t *ev = bev->data;
    const char *type = bev->type;
    if (!strcmp(type, "order.paid"))
        out->type = ORDER_EVENT_PAID;
    else if (!strcmp(type, "order.cancelled"))
        out->type = ORDER_EVENT_CANCELLED;
    else
        return ERR_NOTFOUND;
    if (!json_is_object(ev) || strlen(bev->id) >= sizeof out->event_id ||
        id_parse(json_string_value(json_object_get(ev, "order_id")), &out->order_id) < 0)
        return ERR_INVALID;
    snprintf(out->event_id, sizeof out->event_id, "%s", bev->id);
    if (id_parse(json_string_value(json_object_get(ev, "user_id")), &out->user_id) < 0)
        out->user_id = 0;
    out->at = bev->at_ms;
    const char *cur = json_string_value(json_object_get(json_object_get(ev, "total"), "currency"));
    if (cur && strlen(cur) == 3)
        memcpy(out->currency, cur, 4);
    out->refunded = json_is_true(json_object_get(ev, "refunded"));
    size_t i;
    json_t *it;
    json_array_foreach (json_object_get(ev, "items"), i, it) {
        if (out->n == ORDER_EVENT_MAX_ITEMS)
            break;
        struct order_event_item *o = &out->items[out->n];
        json_int_t q = json_integer_value(json_object_get(it, "quantity"));
        json_int_t price = json_integer_value(json_object_get(it, "unit_price"));
        /* bounded so that quantity * unit_price (a line's revenue) cannot overflow */
        if (id_parse(json_string_value(json_object_get(it, "product_id")), &o->product_id) < 0 ||
            q <= 0 || q > 1000000 || price < 0 || price > INT64_MAX / 1000000)
            continue;
        o->quantity = (int)q;
        o->unit_price = price;
        out->n++;
    }
    return 0;
}

const char *const order_event_types[] = {"order.paid", "order.cancelled", NULL};

int order_event_consume(struct app *app, const char *who, const struct bus_event *bev,
                        order_event_fn paid, order_event_fn cancelled)
{
    struct order_event *ev = malloc(sizeof *ev);
    int rc = ev ? order_event_decode(bev, ev) : ERR_NOMEM;
    order_event_fn fn = rc < 0 ? NULL : ev->type == ORDER_EVENT_PAID ? paid : cancelled;
    if (fn)
        rc = fn(app, ev);
    if (rc == ERR_NOTFOUND && !fn)
        rc = 0; /* another type of order event */
    if (rc < 0)
        log_warn("%s: event %s not applied: %s", who, bev->id, err_str(rc));
    free(ev);
    if (rc == ERR_INVALID) /* it never will be: not worth a retry */
        return 0;
    return rc < 0 ? rc : 0;
}

static int apply_paid(struct app *app, const struct order_event *ev)
{
    int n = ev->n < REC_MAX_ITEMS ? ev->n : REC_MAX_ITEMS;
    if (n == 0)
        return 0;
    struct product_info info[REC_MAX_ITEMS];
    const char *categories[REC_MAX_ITEMS];
    for (int i = 0; i < n; i++)
        categories[i] =
            product_get_info(app, ev->items[i].product_id, &info[i]) == 0 ? info[i].category : "";
    struct db_batch *pending = pending_of(app);
    return pending ? recommendation__store_paid(rec_db(app), pending, ev, categories)
                   : ERR_UNAVAILABLE;
}

static int apply_cancelled(struct app *app, const struct order_event *ev)
{
    /* The paid events staged before it go first: events apply in their order. */
    struct db_batch *pending = pending_of(app);
    int rc = pending ? db_batch_run(pending) : 0;
    return rc < 0 ? rc : recommendation__store_cancelled(rec_db(app), ev);
}

static int on_order_event(void *ctx, const struct bus_event *ev)
{
    return order_event_consume(ctx, "recommendation", ev, apply_paid, apply_cancelled);
}

int recommendation_list(struct app *app, int64_t id, int limit, struct recommendation *out, int *n)
{
    *n = 0;
    if (limit < 0 || limit > RECOMMENDATION_MAX)
        return ERR_INVALID;
    struct product_info self;
    if (id <= 0 || product_get_info(app, id, &self) < 0 || !self.active)
        return ERR_NOTFOUND;
    if (limit == 0) /* only the product check (the feature flag is off for the caller) */
        return 0;
    /* Over-fetch: some candidates may be hidden or deleted products. */
    int cap = limit * 2 + 5, n_pairs, n_top;
    int64_t ids[2 * (RECOMMENDATION_MAX * 2 + 5)];
    int rc = recommendation__store_candidates(rec_db(app), id, self.category, cap, ids, &n_pairs,
                                              &n_top);
    if (rc < 0)
        return rc;
    for (int k = 0; k < n_pairs + n_top && *n < limit; k++) {
        if (ids[k] == id)
            continue;
        bool dup = false;
        for (int j = 0; j < *n && !dup; j++)
            dup = out[j].product.id == ids[k];
        if (dup || product_get_info(app, ids[k], &out[*n].product) < 0 || !out[*n].product.active)
            continue;
        out[(*n)++].reason = k < n_pairs ? "bought_together" : "top_seller";
    }
    return 0;
}

int recommendation__init(struct app *app)
{
    struct db_batch *pending = db_batch_new(rec_db(app));
    if (!pending)
        return ERR_NOMEM;
    int rc = app_set_service_ctx(app, "recommendation", pending);
    if (rc < 0) {
        db_batch_free(pending);
        return rc;
    }
    rc = bus_subscribe_types("recommendation", BUS_TOPIC_ORDER, order_event_types, on_order_event,
                             app);
    return rc < 0 ? rc : bus_subscribe_flush("recommendation", flush, pending);
}

void recommendation__deinit(struct app *app)
{
    struct db_batch *pending = pending_of(app);
    app_set_service_ctx(app, "recommendation", NULL);
    /* The consumers stopped first: what is left here was never acknowledged (comes again). */
    db_batch_free(pending);
}
