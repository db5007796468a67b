/* SPDX-License-Identifier: MIT */
/* product_cache.c — the catalog's L1 cache, its generation number and invalidation.
 *
 * Keys: "p:<id>" the GET /products/{id} response (ETag + body), "i:<id>" a struct
 * product_info for other services, "l:<gen>:<normalised query>" a list/search page,
 * "c:<gen>" the categories response. A write deletes the product's two keys and bumps the
 * generation, so every list/search/categories key built before the write is never read
 * again (it ages out of the LRU): no pattern deletes.
 *
 * Other processes hear about writes on the `cache-invalidation` topic: {"keys": [...],
 * "bump": true|false}. The in-process bus also delivers our own messages back to us, which
 * is harmless (deleting twice, bumping twice). */
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/bus.h"
#include "emporium/cache.h"
#include "emporium/err.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "product_internal.h"

#define PRODUCT_CACHE_BYTES ((size_t)64 * 1024 * 1024)
#define PRODUCT_CACHE_SHARDS 32
#define CACHE_TOPIC "cache-invalidation"

static struct cache *l1;
static _Atomic uint64_t generation = 1;
static bool subscribed, metrics_registered;

struct cache *product__cache(void) { return l1; }
uint64_t product__generation(void) { return atomic_load_explicit(&generation, memory_order_acquire); }

static void drop_local(int64_t id, bool bump, bool dirty)
{
    if (dirty)
        product__attrs_dirty(id); /* before the bump: a search of the new generation syncs */
    if (bump)
        atomic_fetch_add_explicit(&generation, 1, memory_order_acq_rel);
    if (!l1 || id <= 0)
        return;
    char key[32];
    snprintf(key, sizeof key, "p:%lld", (long long)id);
    cache_del(l1, key);
    snprintf(key, sizeof key, "i:%lld", (long long)id);
    cache_del(l1, key);
}

static void on_invalidation(void *ctx, const char *topic, const char *key, const char *payload,
                            size_t len)
{
    json_t *j = json_loadb(payload, len, 0, NULL);
    if (!j)
        return;
    json_t *ids = json_object_get(j, "products");
    bool bump = json_is_true(json_object_get(j, "bump"));
    if (json_array_size(ids) == 0 && bump)
        drop_local(0, true, true);
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        int64_t id = 0;
        if (json_is_string(v))
            id = strtoll(json_string_value(v), NULL, 10);
        drop_local(id, bump && i == 0, bump);
    }
    json_decref(j);
}

void product__invalidate(int64_t id, bool lists)
{
    drop_local(id, lists, lists);
    char payload[128];
    int n = snprintf(payload, sizeof payload, "{\"service\":\"product\",\"products\":[%s%lld%s],\"bump\":%s}",
                     id > 0 ? "\"" : "", (long long)id, id > 0 ? "\"" : "", lists ? "true" : "false");
    if (id <= 0)
        n = snprintf(payload, sizeof payload, "{\"service\":\"product\",\"products\":[],\"bump\":%s}",
                     lists ? "true" : "false");
    char key[24];
    snprintf(key, sizeof key, "%lld", (long long)id);
    int rc = bus_publish(CACHE_TOPIC, key, payload, (size_t)n);
    if (rc < 0)
        log_warn("product: cache-invalidation for %lld not published: %s", (long long)id,
                 err_str(rc));
}

int product__cache_init(void)
{
    if (!l1) {
        size_t bytes = PRODUCT_CACHE_BYTES;
        const char *env = getenv("EMPORIUM_PRODUCT_CACHE_MB");
        if (env && atoi(env) >= 0)
            bytes = (size_t)atoi(env) * 1024 * 1024;
        if (bytes) {
            l1 = cache_l1_new("product", bytes, PRODUCT_CACHE_SHARDS);
            if (!l1)
                return ERR_NOMEM;
        }
    }
    if (!metrics_registered) {
        int rc = metrics_add_writer(cache_metrics_write, NULL);
        if (rc < 0)
            return rc;
        metrics_registered = true;
    }
    if (!subscribed) {
        int rc = bus_subscribe(CACHE_TOPIC, on_invalidation, NULL);
        if (rc < 0)
            return rc;
        subscribed = true;
    }
    return 0;
}

void product__cache_deinit(void)
{
    cache_free(l1);
    l1 = NULL;
    product__attrs_free();
    metrics_registered = false;
    subscribed = false;
}
