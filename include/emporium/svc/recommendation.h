/* SPDX-License-Identifier: MIT */
/* svc/recommendation.h — the recommendation service's client interface, and the order events
 * the recommendation and analytics services consume.
 *
 * They consume the `order-events` topic (bus.h; their own consumer groups, off the request
 * threads) for the CloudEvents "order.paid" and "order.cancelled" (docs/events.md), whose
 * data is
 *   {"order_id": "<id>", "user_id": "<id>", "status", "total": {"amount", "currency"},
 *    "items": [{"product_id": "<id>", "quantity": <n>, "unit_price": <minor units>}, …], …}
 * The envelope's id is the event id and its time the moment of the change. Recommendations learn which products are bought together and which sell best per
 * category; analytics records revenue, orders and units. A cancellation takes back what the
 * order's order.paid added (and nothing when the order was never counted as paid).
 * Consumers are idempotent per order: applying an event twice changes nothing. */
#ifndef EMPORIUM_SVC_RECOMMENDATION_H
#define EMPORIUM_SVC_RECOMMENDATION_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emporium/svc/product.h"

struct app;

#define RECOMMENDATION_TOPIC "order-events"

/* ---- the order events (decoded) ------------------------------------------------------ */

#define ORDER_EVENT_MAX_ITEMS 100 /* lines kept of one event; more are ignored */

enum order_event_type { ORDER_EVENT_PAID = 1, ORDER_EVENT_CANCELLED = 2 };
/* The event types order_event_decode() decodes ("order.paid", "order.cancelled"; NULL-ended),
 * for bus_subscribe_types(): a consumer of these alone never parses the topic's others. */
extern const char *const order_event_types[];

struct order_event_item {
    int64_t product_id;
    int quantity;       /* > 0 */
    int64_t unit_price; /* minor units */
};

struct order_event {
    enum order_event_type type;
    char event_id[128];
    int64_t order_id, user_id, at; /* at: Unix ms */
    char currency[4];              /* "" when the event named none */
    bool refunded;                 /* order.cancelled: the payment was refunded */
    int n;
    struct order_event_item items[ORDER_EVENT_MAX_ITEMS]; /* lines with a valid id and q > 0 */
};

struct bus_event;
/* Decodes an event of the order-events topic. 0 and *out filled; ERR_NOTFOUND for an event
 * of another type (not for us); ERR_INVALID when its data lacks order_id. */
int order_event_decode(const struct bus_event *ev, struct order_event *out);

/* What a consumer does with a decoded event: 0 or > 0 done, < 0 an ERR_*. */
typedef int (*order_event_fn)(struct app *app, const struct order_event *ev);
/* Consumes one event of the order-events topic on behalf of service `who`: decodes it and
 * calls paid() or cancelled() (either may be NULL); other event types are ignored; a failure
 * is logged as "<who>: event <id> not applied: <reason>". Returns the failure (the consumer
 * retries the event later) or 0; a malformed event is logged and answers 0 (never applies). */
int order_event_consume(struct app *app, const char *who, const struct bus_event *ev,
                        order_event_fn paid, order_event_fn cancelled);

/* ---- recommendations ------------------------------------------------------------------ */

#define RECOMMENDATION_MAX 20

struct recommendation {
    struct product_info product;
    const char *reason; /* "bought_together" or "top_seller" (static strings) */
};

/* Up to `limit` (0..RECOMMENDATION_MAX; 0 only checks the product) products for product `id`: bought together with it
 * (most often first), then the best sellers of its category; never the product itself nor a
 * hidden or deleted one. *n receives how many. ERR_NOTFOUND when `id` is not an active
 * product; ERR_INVALID for a bad limit. */
int recommendation_list(struct app *app, int64_t id, int limit, struct recommendation *out, int *n);

#endif
