/* SPDX-License-Identifier: MIT */
/* svc/recommendation.h — what the recommendation service consumes.
 *
 * It listens on the `order-events` topic of the bus for "order.paid" events whose payload is
 *   {"event_id": "<id>", "type": "order.paid", "order_id": "<id>",
 *    "items": [{"product_id": "<id>", "quantity": <n>}, …]}
 * and learns from them which products are bought together and which sell best per
 * category. Applying an event twice changes nothing (event ids are recorded). */
#ifndef EMPORIUM_SVC_RECOMMENDATION_H
#define EMPORIUM_SVC_RECOMMENDATION_H

#define RECOMMENDATION_TOPIC "order-events"

#endif
