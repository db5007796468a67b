/* SPDX-License-Identifier: MIT */
/* product_cache.c — the catalog's L1 cache, its generation number and invalidation.
 *
 * Keys: "p:<id>" the GET /products/{id} response (ETag + body), "i:<id>" a struct
 * product_info for other services, "l:<gen>:<normalised query>" a list/search page,
 * "c:<gen>" the categories response; and in a cache of their own (ctx->matches, a quarter of
 * the bytes, so /metrics tells their hit rate apart) "m:<gen>:<words>" a match set.
 *
 * With Redis, list and search pages also have an L2 (ctx->lists, EMPORIUM_REDIS_LIST_CACHE_
 * TTL_SECONDS): "<rgen>:<normalised query>" under "<prefix>product_lists:", where rgen is the
 * catalog's generation kept in Redis ("<prefix>product_lists:gen:catalog"). Every write that
 * bumps the local generation INCRs that one first, so one write makes every list of every
 * process unreachable at once; a page then lives at most 5 s in a process's L1. A miss is
 * single-flight across processes (cache_redis_single_flight). Redis down: straight to the
 * database. A write deletes the
 * product's two keys and bumps the generation, so every list/search/categories key built
 * before the write is never read again (it ages out of the LRU): no pattern deletes. All of
 * it lives in the service's context (struct product_ctx).
 *
 * Other processes hear about admin writes through the event bus: product__invalidate() writes
 * a product.invalidated event ({"products": ["<id>"], "bump": true|false}) to the catalog's
 * outbox right after the write commits; the relay puts it on `cache-invalidation`, and every
 * process consumes that topic in a broadcast group of its own (bus_subscribe_broadcast), so
 * each drops its L1 entries. Our own events come back to us too, which is harmless (deleting
 * twice, bumping twice). A crash between the write's commit and the event's leaves the other
 * processes' entries to age out (their TTL). Stock figures change on every checkout: they are
 * dropped in this process only (product__invalidate_local). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/cache.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "emporium/outbox.h"
#include "product_internal.h"

#define PRODUCT_CACHE_SHARDS 32
/* How long a list miss waits for another process computing the same page. */
#define LISTS_FLIGHT_MS 3000

uint64_t product__generation(struct product_ctx *ctx)
{
    return atomic_load_explicit(&ctx->generation, memory_order_acquire);
}

/* info: the product's product_get_info entry too (it holds no stock). */
static void drop_local(struct product_ctx *ctx, int64_t id, bool bump, bool dirty, bool info)
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
    if (!info)
        return;
    snprintf(key, sizeof key, "i:%lld", (long long)id);
    cache_del(ctx->l1, key);
}

/* Drops what one event names: {"products": ["<id>", …], "bump": bool}. */
static void apply(struct product_ctx *ctx, json_t *j)
{
    json_t *ids = json_object_get(j, "products");
    bool bump = json_is_true(json_object_get(j, "bump"));
    if (json_array_size(ids) == 0 && bump)
        drop_local(ctx, 0, true, true, true);
    size_t i;
    json_t *v;
    json_array_foreach (ids, i, v) {
        int64_t id = 0;
        if (json_is_string(v))
            id = strtoll(json_string_value(v), NULL, 10);
        drop_local(ctx, id, bump && i == 0, bump, true);
    }
}

static int on_invalidation(void *vctx, const struct bus_event *ev)
{
    struct product_ctx *ctx = vctx;
    if (strcmp(ev->type, "product.invalidated") != 0)
        return 0;
    /* Our group starts at the oldest retained message: what was written before we started
     * cannot be in our cache (5 s of margin for clocks of other hosts). */
    if (ev->at_ms && ev->at_ms < ctx->started_ms - 5000)
        return 0;
    apply(ctx, ev->data);
    return 0;
}

/* The shared lists' generation, before the local one: a reader of this process that sees
 * the new local generation then reads the new Redis one too. */
static void bump_shared(struct product_ctx *ctx, bool lists)
{
    if (lists && ctx->lists)
        cache_redis_bump(ctx->lists, "catalog"); /* a failure bypasses the L2 (logged) */
}

void product__invalidate_local(struct product_ctx *ctx, int64_t id, bool lists)
{
    bump_shared(ctx, lists);
    drop_local(ctx, id, lists, lists, false);
}

struct publish_tx {
    int64_t id;
    json_t *data;
};

static int publish_fn(struct db_conn *c, void *vctx)
{
    struct publish_tx *t = vctx;
    return outbox_add(c, 0, BUS_TOPIC_CACHE, "product", t->id, "product.invalidated", t->data);
}

void product__invalidate(struct product_ctx *ctx, int64_t id, bool lists)
{
    bump_shared(ctx, lists);
    drop_local(ctx, id, lists, lists, true);
    char pid[24];
    snprintf(pid, sizeof pid, "%lld", (long long)id);
    json_t *data = json_pack("{s:s,s:[],s:b}", "service", "product", "products", "bump", lists);
    if (data && id > 0)
        json_array_append_new(json_object_get(data, "products"), json_string(pid));
    struct publish_tx t = {id, data};
    int rc = data ? db_write(product__db(ctx->app), publish_fn, NULL, &t) : ERR_NOMEM;
    json_decref(data);
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
        ctx->matches = cache_l1_new("search_matches", bytes / 4, PRODUCT_CACHE_SHARDS / 4);
        ctx->l1 = cache_l1_new("product", bytes - bytes / 4, PRODUCT_CACHE_SHARDS);
        if (!ctx->l1 || !ctx->matches)
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
        if (cfg->redis_list_cache_ttl_seconds > 0) {
            snprintf(prefix, sizeof prefix, "%sproduct_lists:", cfg->redis_prefix);
            ctx->lists = cache_redis_new(redis, "product_lists", prefix,
                                         cfg->redis_list_cache_ttl_seconds * 1000);
            if (!ctx->lists)
                return ERR_NOMEM;
            cache_redis_single_flight(ctx->lists, LISTS_FLIGHT_MS);
        }
    }
    int rc = metrics_add_writer(cache_metrics_write, NULL);
    if (rc < 0)
        return rc;
    ctx->started_ms = now_ms();
    return bus_subscribe_broadcast("cache", BUS_TOPIC_CACHE, on_invalidation, ctx);
}

void product__cache_deinit(struct product_ctx *ctx)
{
    cache_free(ctx->l1);
    cache_free(ctx->matches);
    cache_free(ctx->lists);
    ctx->l1 = ctx->matches = ctx->lists = NULL;
}
