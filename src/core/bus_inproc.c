/* SPDX-License-Identifier: MIT */
/* bus_inproc.c — the in-process event bus (see emporium/bus.h).
 *
 * Subscriptions are made at start-up and then only read, so delivery takes no lock: the
 * count is published with release semantics after the entry is written. */
#include <stdatomic.h>
#include <string.h>

#include "emporium/bus.h"
#include "emporium/err.h"

#define BUS_MAX_SUBS 64

static struct {
    char topic[48];
    bus_handler_fn fn;
    void *ctx;
} subs[BUS_MAX_SUBS];
static _Atomic int n_subs;

int bus_subscribe(const char *topic, bus_handler_fn fn, void *ctx)
{
    int n = atomic_load(&n_subs);
    if (n == BUS_MAX_SUBS || strlen(topic) >= sizeof subs[0].topic)
        return ERR_NOMEM;
    strcpy(subs[n].topic, topic);
    subs[n].fn = fn;
    subs[n].ctx = ctx;
    atomic_store_explicit(&n_subs, n + 1, memory_order_release);
    return 0;
}

int bus_publish(const char *topic, const char *key, const char *payload, size_t len)
{
    int n = atomic_load_explicit(&n_subs, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (!strcmp(subs[i].topic, topic))
            subs[i].fn(subs[i].ctx, topic, key, payload, len);
    return 0;
}

void bus_reset(void) { atomic_store(&n_subs, 0); }
