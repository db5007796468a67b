/* SPDX-License-Identifier: MIT */
/* cache.h — the cache port (ARCHITECTURE.md §5) and its in-process L1 implementation.
 *
 * A cache maps short string keys to immutable byte strings with a per-entry time to live.
 * Values are copied in on set and copied out on get (a hit costs one lookup and one memcpy
 * under a shard lock), so no reference ever escapes a lock.
 *
 * The L1 (cache_l1_new) is bounded by bytes (keys + values + per-entry overhead), evicts the
 * least recently used entry of a shard when full, and is split into independently locked
 * shards (by key hash) so the HTTP thread pool never serialises on one lock.
 *
 * cache_get_or_load() is single-flight: when a key misses, one caller (the leader) runs the
 * loader while concurrent callers for the same key wait for its result, so a cold hot key
 * under load reaches the database once. An invalidation (cache_del/cache_clear) that
 * happens while a load is in flight detaches that load: its result is still returned to the
 * callers already waiting (they asked before the invalidation finished) but is not stored,
 * and later callers start a fresh load. That is what keeps a writer's invalidation from
 * being undone by a reader that loaded the old row just before the write committed.
 *
 * Later layers (Redis L2) implement the same operations behind `struct cache_ops`; a tiered
 * cache is then one more implementation that asks L1, then L2, then the loader. Every
 * function is thread-safe. */
#ifndef EMPORIUM_CACHE_H
#define EMPORIUM_CACHE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emporium/buf.h"

struct cache;

/* Fills `out` with the value for `key` (append to it); returns 0, or a negative ERR_* that
 * is passed to every waiting caller and not cached. */
typedef int (*cache_load_fn)(void *ctx, const char *key, struct buf *out);

struct cache_stats {
    uint64_t hits, misses;   /* lookups (get and get_or_load) */
    uint64_t evictions;      /* entries pushed out by the byte bound */
    uint64_t expirations;    /* entries found past their TTL */
    uint64_t invalidations;  /* cache_del calls that removed something */
    uint64_t loads;          /* loader runs */
    uint64_t load_errors;    /* loader runs that failed */
    uint64_t coalesced;      /* callers that waited for another caller's load */
    uint64_t entries, bytes; /* current */
    uint64_t max_bytes;
};

struct cache_ops {
    int (*get)(struct cache *c, const char *key, struct buf *out);
    int (*set)(struct cache *c, const char *key, const void *data, size_t len, int ttl_ms);
    int (*get_or_load)(struct cache *c, const char *key, cache_load_fn load, void *ctx, int ttl_ms,
                       struct buf *out);
    void (*del)(struct cache *c, const char *key);
    void (*clear)(struct cache *c);
    void (*stats)(struct cache *c, struct cache_stats *out);
    void (*free)(struct cache *c);
};

/* The common header of every implementation. */
struct cache {
    const struct cache_ops *ops;
    char name[32]; /* metrics label cache="…" */
    char layer[8]; /* metrics label layer="l1" */
};

/* Appends the value to out and returns 0 on a hit; ERR_NOTFOUND on a miss. */
static inline int cache_get(struct cache *c, const char *key, struct buf *out)
{
    return c->ops->get(c, key, out);
}
/* Stores a copy (ttl_ms > 0). ERR_TOOBIG when the entry could never fit (not stored). */
static inline int cache_set(struct cache *c, const char *key, const void *data, size_t len,
                            int ttl_ms)
{
    return c->ops->set(c, key, data, len, ttl_ms);
}
/* Hit: appends the value. Miss: single-flight load, store (ttl_ms), append. */
static inline int cache_get_or_load(struct cache *c, const char *key, cache_load_fn load, void *ctx,
                                    int ttl_ms, struct buf *out)
{
    return c->ops->get_or_load(c, key, load, ctx, ttl_ms, out);
}
static inline void cache_del(struct cache *c, const char *key) { c->ops->del(c, key); }
static inline void cache_clear(struct cache *c) { c->ops->clear(c); }
static inline void cache_get_stats(struct cache *c, struct cache_stats *out)
{
    c->ops->stats(c, out);
}
/* NULL is a no-op. No call may be running on the cache. */
void cache_free(struct cache *c);

/* The in-process L1. max_bytes > 0; shards is rounded up to a power of two (0 = 16). Keys
 * are at most 1 KiB. Registers itself for cache_metrics_write(); NULL on allocation failure. */
struct cache *cache_l1_new(const char *name, size_t max_bytes, unsigned shards);

/* A metrics writer (metrics_add_writer(cache_metrics_write, NULL)) for every live cache:
 * emporium_cache_{hits,misses,evictions,expirations,invalidations,loads,load_errors,
 * coalesced}_total and emporium_cache_{entries,bytes,max_bytes}, labelled
 * {cache="…",layer="…"}. */
void cache_metrics_write(struct buf *out, void *ctx);

#endif
