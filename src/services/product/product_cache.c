/* SPDX-License-Identifier: MIT */
/* product_cache.c — the catalog's L1 cache, its generation number and invalidation.
 *
 * Keys: "p:<id>" the GET /products/{id} response (ETag + body), "i:<id>" a struct
 * product_info for other services, "l:<gen>:<normalised query>" a list/search page,
 * "m:<gen>:<words>" a match set, "c:<gen>" the categories response. A write deletes the
 * product's two keys and bumps the generation, so every list/search/categories key built
 * before the write is never read again (it ages out of the LRU): no pattern deletes. All of
 * it lives in the service's context (struct product_ctx).
 *
 * Other processes hear about writes on the `cache-invalidation` topic: {"keys": [...],
 * "bump": true|false}. The in-process bus also delivers our own messages back to us, which
 * is harmless (deleting twice, bumping twice). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/cache.h"
#include "emporium/err.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "product_internal.h"

#define PRODUCT_CACHE_SHARDS 32
#define CACHE_TOPIC "cache-invalidation"

uint64_t product__generation(struct product_ctx *ctx)
{
    return atomic_load_explicit(&ctx->generation, memory_order_acquire);
}

static void drop_local(struct product_ctx *ctx, int64_t id, bool bump, bool dirty)
{
    if (dirty) /* before the bump: a search of the new generation syncs */
        product__attrs_dirty(&ctx->attrs, id);
    if (bump)
        atomic_fetch_add_explicit(&ctx->generation, 1, memory_order_acq_rel);
    if (!ctx->l1 || id <= 0)
        return;
    char key[32];
    snprintf(key, sizeof key, "p:%lld", (long long)id);
    cache_del(ctx->l1, key);
    snprintf(key, sizeof key, "i:%lld", (long long)id);
    cache_del(ctx->l1, key);
}

static void on_invalidation(void *vctx, const char *topic, const char *key, const char *payload,
                            size_t len)
{
    struct product_ctx *ctx = vctx;
    json_t *j = json_loadb(payload, len, 0, NULL);
    if (!j)
        return;
    json_t *ids = json_object_get(j, "products");
    bool bump = json_is_true(json_object_get(j, "bump"));
    if (json_array_size(ids) == 0 && bump)
        drop_local(ctx, 0, true, true);
    size_t i;
    json_t *v;
    json_array_foreach (ids, i, v) {
        int64_t id = 0;
        if (json_is_string(v))
            id = strtoll(json_string_value(v), NULL, 10);
        drop_local(ctx, id, bump && i == 0, bump);
    }
    json_decref(j);
}

void product__invalidate(struct product_ctx *ctx, int64_t id, bool lists)
{
    drop_local(ctx, id, lists, lists);
    char payload[128];
    int n;
    if (id > 0)
        n = snprintf(payload, sizeof payload,
                     "{\"service\":\"product\",\"products\":[\"%lld\"],\"bump\":%s}", (long long)id,
                     lists ? "true" : "false");
    else
        n = snprintf(payload, sizeof payload,
                     "{\"service\":\"product\",\"products\":[],\"bump\":%s}",
                     lists ? "true" : "false");
    char key[24];
    snprintf(key, sizeof key, "%lld", (long long)id);
    int rc = bus_broadcast(CACHE_TOPIC, key, payload, (size_t)n);
    if (rc < 0)
        log_warn("product: cache-invalidation for %lld not published: %s", (long long)id,
                 err_str(rc));
}

int product__cache_init(struct product_ctx *ctx)
{
    atomic_store(&ctx->generation, 1);
    /* EMPORIUM_PRODUCT_CACHE_MB, validated by config.c; 0: no cache */
    size_t bytes = (size_t)app_config(ctx->app)->product_cache_mb * 1024 * 1024;
    if (bytes) {
        ctx->l1 = cache_l1_new("product", bytes, PRODUCT_CACHE_SHARDS);
        if (!ctx->l1)
            return ERR_NOMEM;
    }
    /* With Redis, product pages ("p:") also go through the shared L2, and live at most 5 s in
     * L1, so another process sees a change within 5 s even without the event bus. Keys of a
     * generation (lists, searches) and the binary "i:" records stay in L1 alone. */
    struct redis *redis = app_redis(ctx->app);
    if (ctx->l1 && redis) {
        static const char *const shared[] = {"p:", NULL};
        const struct config *cfg = app_config(ctx->app);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%sproduct:", cfg->redis_prefix);
        ctx->l1 = cache_tiered_new(
            ctx->l1, cache_redis_new(redis, "product", prefix, cfg->redis_cache_ttl_seconds * 1000),
            shared, 5000);
        if (!ctx->l1)
            return ERR_NOMEM;
    }
    int rc = metrics_add_writer(cache_metrics_write, NULL);
    if (rc < 0)
        return rc;
    return bus_listen(CACHE_TOPIC, on_invalidation, ctx);
}

void product__cache_deinit(struct product_ctx *ctx)
{
    cache_free(ctx->l1);
    ctx->l1 = NULL;
}
