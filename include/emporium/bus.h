/* SPDX-License-Identifier: MIT */
/* bus.h — the event bus port (topics of keyed messages).
 *
 * Embedded mode: an in-process bus that delivers each published message synchronously to
 * every subscriber of its topic, on the publisher's thread, before bus_publish() returns.
 * The durable log and Kafka adapters (the events issue) implement the same calls.
 * Topics (ARCHITECTURE.md §4): order-events, payment-events, inventory-events,
 * notification-events, analytics-events, fraud-detection-events, recommendation-events,
 * cache-invalidation. Keys are aggregate ids so one aggregate's events stay ordered.
 * Payloads are JSON text. Handlers must be quick and must not publish to the same topic. */
#ifndef EMPORIUM_BUS_H
#define EMPORIUM_BUS_H
#include <stddef.h>

typedef void (*bus_handler_fn)(void *ctx, const char *topic, const char *key, const char *payload,
                               size_t len);

/* Subscribes (at start-up, from a service's init()). At most 64 subscriptions. */
int bus_subscribe(const char *topic, bus_handler_fn fn, void *ctx);
/* Publishes; returns 0 or a negative ERR_*. key and payload are borrowed for the call. */
int bus_publish(const char *topic, const char *key, const char *payload, size_t len);
/* Removes every subscription (shutdown, tests). */
void bus_reset(void);

#endif
