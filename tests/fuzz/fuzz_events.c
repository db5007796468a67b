/* SPDX-License-Identifier: MIT */
/* fuzz_events.c — the event envelope decoders: whatever arrives on a topic that consumers
 * subscribe to (order-events: analytics and recommendations parse "order.paid";
 * cache-invalidation: the product cache) is published through the bus port, as the
 * outbox relay or a Kafka consumer would deliver it. Input: a selector byte (topic, key),
 * then the payload. */
#include <stdio.h>

#include "emporium/bus.h"
#include "fz_shop.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_shop();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz_shop *s = fz_shop();
    if (size < 1)
        return 0;
    static const char *const topics[] = {"order-events", "cache-invalidation"};
    const char *keys[] = {s->order, s->product, "", "x"};
    bus_publish(topics[data[0] % 2], keys[(data[0] / 2) % 4], (const char *)data + 1, size - 1);
    /* the shop still answers after whatever the consumers did with it */
    char url[96];
    snprintf(url, sizeof url, "/api/v1/products/%s/recommendations", s->product);
    if (fz_do("GET", url, NULL, NULL, NULL, 0) != 200)
        __builtin_trap();
    return 0;
}
