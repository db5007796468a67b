/* SPDX-License-Identifier: MIT */
/* svc/shipping.h — the shipping service's client interface (used by the order service).
 *
 * Quotes are priced by weight (the catalog's weight_grams, 500 g when unknown) and by the
 * destination's zone. One shipment per order, created when the order is paid; the carrier's
 * tracking events move it label_created → in_transit → delivered. Shipping knows nothing of
 * orders: each accepted tracking event writes a "shipment.<status>" event to its outbox
 * (topic SHIPPING_TOPIC, data {"order_id","status","at"}, docs/events.md), and whoever cares
 * (the order service) consumes it or reads shipping_get(). A shipment can be cancelled only
 * before it is in transit — the shipping database is the one place that decides "too late
 * to cancel". */
#ifndef EMPORIUM_SVC_SHIPPING_H
#define EMPORIUM_SVC_SHIPPING_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct app;

#define SHIPPING_TOPIC "shipping-events"

struct shipping_address {
    char name[101];
    char line1[201];
    char line2[201]; /* "" when absent */
    char city[101];
    char region[101]; /* state/province, "" when absent */
    char postal_code[21];
    char country[3]; /* ISO 3166-1 alpha-2, upper case */
};

struct shipping_item {
    int64_t product_id;
    int quantity;
    int weight_grams; /* per unit as the caller read it from the catalog (0: unknown, 500 g);
                         -1: not read, shipping_price asks the catalog */
};

struct shipping_option {
    char method[16]; /* standard, express */
    char carrier[32];
    int64_t price; /* minor units */
    char currency[4];
    int estimated_days;
};

struct shipment_info {
    int64_t id;
    char method[16];
    char carrier[32];
    char tracking_number[40];
    char status[16]; /* label_created, in_transit, delivered, cancelled */
};

/* Validates and normalises an address object. full=false (quotes) requires only the
 * country. On ERR_INVALID, *member names the bad member ("country") and *message says why
 * (both static); callers prefix the member with their own path ("shipping_address."). */
int shipping_address_parse(json_t *obj, bool full, struct shipping_address *out,
                           const char **member, const char **message);
/* The price of one method ("standard"/"express") for these items to `country`. Items with
 * weight_grams -1 are looked up in the catalog: ERR_NOTFOUND with *bad_product set when a
 * product does not exist. ERR_INVALID for an unknown method. */
int shipping_price(struct app *app, const struct shipping_item *items, int n, const char *country,
                   const char *method, struct shipping_option *out, int64_t *bad_product);
/* Creates the order's shipment (idempotent: a second call returns the first shipment). */
int shipping_create(struct app *app, int64_t order_id, const char *method,
                    const struct shipping_address *addr, struct shipment_info *out);
/* The order's shipment; ERR_NOTFOUND when none. */
int shipping_get(struct app *app, int64_t order_id, struct shipment_info *out);
/* Cancels the order's shipment if it has not left: 0 when cancelled or when there is none,
 * ERR_CONFLICT once it is in transit or delivered. */
int shipping_cancel(struct app *app, int64_t order_id);

#endif
