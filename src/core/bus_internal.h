/* SPDX-License-Identifier: MIT */
/* bus_internal.h — shared by bus.c, consumers.c and relay.c only. */
#ifndef EMPORIUM_BUS_INTERNAL_H
#define EMPORIUM_BUS_INTERNAL_H
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>

#include "emporium/bus.h"

#define BUS_MAX_SUBS 64

struct bus__sub {
    char consumer[32];
    char topic[48];
    bus_handler_fn fn;
    void *ctx;
    const char *const *types; /* bus_subscribe_types(): the types wanted; NULL: all */
    bool broadcast;           /* bus_subscribe_broadcast(): a group of this process alone */
};

/* The registered subscriptions (borrowed, stable after start-up); returns how many. */
int bus__subs(const struct bus__sub **out);
/* Runs the batch end (bus_subscribe_flush) of `consumer` (NULL: of every consumer): 0, or the
 * first error. */
int bus__flush(const char *consumer);

/* Sleeps ms, or less when *stop is set and cv signalled (how the relay and the consumer
 * threads back off and still stop at once). */
void bus__pause_ms(pthread_mutex_t *mu, pthread_cond_t *cv, atomic_bool *stop, int ms);

#endif
