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
 * The Redis L2 (cache_redis_new, src/adapters/cache_redis.c) implements the same operations
 * behind `struct cache_ops`, shared by every process on that Redis; the tiered cache
 * (cache_tiered_new) asks L1, then L2, then the loader, filling both. Every function is
 * thread-safe. */
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
    uint64_t errors;         /* store calls that failed (L2: Redis down), served as misses */
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
    char name[32];          /* metrics label cache="…" */
    char layer[8];          /* metrics label layer="l1" */
    struct cache *reg_next; /* the metrics registry's list (cache__register) */
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

struct redis;
/* The Redis L2: values under prefix + key with a TTL of ttl_ms (the per-call TTLs are for
 * L1s; an L2 entry lives ttl_ms whatever the caller asks). A get or set that fails (Redis
 * down) counts an error and is a miss / a no-op. cache_del writes a short-lived tombstone
 * (5 s) instead of deleting, and a load stores its result only where nothing is (SET NX), so
 * a reader that loaded the old row just before a writer's invalidation cannot put it back.
 * An invalidation that fails is kept (up to 64 keys) and retried before the next use; those
 * keys read as misses meanwhile, and past 64 the whole L2 is bypassed for ttl_ms (every
 * entry written before the outage has expired by then). cache_clear forgets the pending
 * invalidations only: entries of a shared Redis age out by their TTL. get_or_load is not
 * single-flight across threads (the tiered cache's L1 is) unless cache_redis_single_flight()
 * turns on its cross-process form. `r` is borrowed and must outlive
 * the cache. Registers for metrics (layer "l2"); NULL on allocation failure. */
struct cache *cache_redis_new(struct redis *r, const char *name, const char *prefix, int ttl_ms);
/* Cross-process single flight for this L2's get_or_load: a miss takes a lock key for at most
 * wait_ms; the others wait (polling) up to wait_ms for the holder's value before loading
 * themselves. 0 turns it off (the default). Call before the cache is used. */
void cache_redis_single_flight(struct cache *l2, int wait_ms);
/* A generation number kept in this L2's Redis (prefix + "gen:" + name; 0 when none yet), for
 * keys that a write must invalidate all at once (lists). ERR_UNAVAILABLE when Redis fails or
 * the L2 is bypassed: do not use the L2 then. */
int cache_redis_generation(struct cache *l2, const char *name, uint64_t *out);
/* INCR of that number. When it fails the L2 is bypassed for its TTL (logged), so no entry
 * of the old generation is read again; returns the error. */
int cache_redis_bump(struct cache *l2, const char *name);
/* L1 in front of L2 (both owned: freed with it). Keys starting with one of `shared`
 * (NULL-terminated; NULL = every key) go through both layers, others through L1 alone; an L1
 * entry of a shared key lives at most l1_ttl_cap_ms (0 = no cap), which bounds how long
 * another process may serve a value that an invalidation elsewhere removed from L2. Not
 * registered itself (its layers are). NULL on failure (both layers are freed then). */
struct cache *cache_tiered_new(struct cache *l1, struct cache *l2, const char *const *shared,
                               int l1_ttl_cap_ms);

/* For implementations: join/leave the list cache_metrics_write() reports. */
void cache__register(struct cache *c);
void cache__unregister(struct cache *c);

/* A metrics writer (metrics_add_writer(cache_metrics_write, NULL)) for every live cache:
 * emporium_cache_{hits,misses,evictions,expirations,invalidations,loads,load_errors,
 * coalesced,errors}_total, emporium_cache_{entries,bytes,max_bytes} and
 * emporium_cache_hit_ratio (hits / lookups since start), labelled
 * {cache="…",layer="…"}. */
void cache_metrics_write(struct buf *out, void *ctx);

#endif
