/* SPDX-License-Identifier: MIT */
/* ratelimit.h — the rate-limiter port (token buckets keyed by string).
 *
 * One interface, several stores: the in-process one (ratelimit_mem_new) now, a Redis one
 * shared by many pods later. A bucket holds up to `burst` tokens and refills at `rate`
 * tokens per second; each take costs one token. */
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
