/* SPDX-License-Identifier: MIT */
/* svc/recommendation.h — the order events the recommendation and analytics services consume.
 *
 * They listen on the `order-events` topic of the bus for "order.paid" events whose payload is
 *   {"event_id": "<id>", "type": "order.paid", "order_id": "<id>", "user_id": "<id>",
 *    "at": <unix ms>, "currency": "USD",
 *    "items": [{"product_id": "<id>", "quantity": <n>, "unit_price": <minor units>}, …]}
 * Recommendations learn which products are bought together and which sell best per
 * category; analytics records revenue, orders and units. Applying an event twice changes
 * nothing (each consumer records the event ids it applied). */
#ifndef EMPORIUM_SVC_RECOMMENDATION_H
#define EMPORIUM_SVC_RECOMMENDATION_H

#define RECOMMENDATION_TOPIC "order-events"

#endif
