/* SPDX-License-Identifier: MIT */
/* ratelimit.h — the rate-limiter port (token buckets keyed by string).
 *
 * One interface, two stores: the in-process one (ratelimit_mem_new) and the Redis one
 * (ratelimit_redis_new) that every process sharing the Redis shares, so a user's budget
 * holds across pods. A bucket holds up to `burst` tokens and refills at `rate` tokens per
 * second; each take costs one token. Both stores compute the same numbers from the same
 * calls: the time is the caller's now_ms (wall-clock milliseconds, so processes agree). */
#ifndef EMPORIUM_RATELIMIT_H
#define EMPORIUM_RATELIMIT_H
#include <stdbool.h>
#include <stdint.h>

struct rl_result {
    bool allowed;
    double limit;         /* the burst (RateLimit-Limit) */
    double remaining;     /* tokens left after this take (RateLimit-Remaining) */
    double reset_seconds; /* until the bucket is full again (RateLimit-Reset) */
    double retry_after;   /* when !allowed: seconds until one token is available */
};

struct ratelimit_ops {
    int (*take)(void *self, const char *key, double rate, double burst, int64_t now_ms,
                struct rl_result *out);
    /* Looks without taking (throttles that charge only on failure). */
    int (*peek)(void *self, const char *key, double rate, double burst, int64_t now_ms,
                struct rl_result *out);
    void (*free)(void *self);
};

struct ratelimit {
    const struct ratelimit_ops *ops;
    void *self;
};

/* In-process store: sharded hash of buckets, at most max_keys (old full buckets evicted). */
struct ratelimit *ratelimit_mem_new(unsigned max_keys);

struct redis;
/* Redis store: one hash per bucket, key prefix + key (long keys hashed), updated by one Lua
 * script (atomic: concurrent takes of many processes never overspend), with a TTL of the time
 * the bucket needs to refill (a full bucket is no bucket). `r` is borrowed and must outlive
 * the store; `local` (owned: freed with the store) answers while Redis fails — the first
 * failure logs a warning, Redis is retried after a second, and the recovery is logged too.
 * Local answers are per process: with N processes the fallback budget is N times the limit.
 * NULL on allocation failure (local is freed then too). */
struct ratelimit *ratelimit_redis_new(struct redis *r, const char *prefix, struct ratelimit *local);
/* For a Redis store: takes answered by Redis and by the local fallback so far, and whether
 * the last call reached Redis. Other stores: all zero/true. */
void ratelimit_redis_counts(const struct ratelimit *rl, uint64_t *remote, uint64_t *fallback,
                            bool *healthy);
void ratelimit_free(struct ratelimit *rl); /* NULL is a no-op */
static inline int ratelimit_take(struct ratelimit *rl, const char *key, double rate, double burst,
                                 int64_t now_ms, struct rl_result *out)
{
    return rl->ops->take(rl->self, key, rate, burst, now_ms, out);
}
static inline int ratelimit_peek(struct ratelimit *rl, const char *key, double rate, double burst,
                                 int64_t now_ms, struct rl_result *out)
{
    return rl->ops->peek(rl->self, key, rate, burst, now_ms, out);
}

#endif
