/* SPDX-License-Identifier: MIT */
/* bus_internal.h — shared by bus.c, consumers.c and relay.c only. */
#ifndef EMPORIUM_BUS_INTERNAL_H
#define EMPORIUM_BUS_INTERNAL_H
#include "emporium/bus.h"

#define BUS_MAX_SUBS 64

struct bus__sub {
    char consumer[32];
    char topic[48];
    bus_handler_fn fn;
    void *ctx;
};

/* The registered subscriptions (borrowed, stable after start-up); returns how many. */
int bus__subs(const struct bus__sub **out);

#endif
