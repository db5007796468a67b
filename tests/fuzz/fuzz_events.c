/* SPDX-License-Identifier: MIT */
/* fuzz_events.c — the event envelope decoders: whatever arrives on a topic that consumers
 * subscribe to (order-events: analytics and recommendations parse "order.paid";
 * cache-invalidation: the product cache) is handed to every registered consumer with
 * bus_dispatch(), as the consumer runner would deliver it from the log or from Kafka.
 * Input: a selector byte (topic, key), then the payload. */
#include <string.h>
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
    const char *key = keys[(data[0] / 2) % 4];
    struct bus_msg m = {.topic = topics[data[0] % 2],
                        .key = key,
                        .key_len = strlen(key),
                        .value = (const char *)data + 1,
                        .len = size - 1};
    (void)bus_dispatch(NULL, &m); /* a handler may refuse a bad envelope; it must not crash */
    /* the shop still answers after whatever the consumers did with it */
    char url[96];
    snprintf(url, sizeof url, "/api/v1/products/%s/recommendations", s->product);
    if (fz_do("GET", url, NULL, NULL, NULL, 0) != 200)
        __builtin_trap();
    return 0;
}
