/* SPDX-License-Identifier: MIT */
/* svc/product.h — the product (catalog) service's client interface for other services.
 *
 * In-process implementation in embedded mode (src/services/product). */
#ifndef EMPORIUM_SVC_PRODUCT_H
#define EMPORIUM_SVC_PRODUCT_H
#include <stdbool.h>
#include <stdint.h>

struct app;

struct product_info {
    int64_t id;
    char sku[65];
    char name[201];
    char category[65]; /* slug */
    int64_t price;     /* minor units */
    char currency[4];  /* ISO 4217, e.g. "USD" */
    int weight_grams;  /* for shipping quotes; 0 when unknown */
    bool active;       /* false: deleted or hidden, cannot be bought */
};

/* Current data of one product (from the cache when warm). ERR_NOTFOUND when it does not
 * exist or was deleted. */
int product_get_info(struct app *app, int64_t id, struct product_info *out);

/* Stock: the catalog's stock.available follows the inventory's stock.changed events
 * (svc/inventory.h, INVENTORY_TOPIC); the inventory never calls the catalog. */

#endif
