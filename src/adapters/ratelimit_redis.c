/* SPDX-License-Identifier: MIT */
/* ratelimit_redis.c — the rate-limiter port on Redis: token buckets shared by processes.
 *
 * A bucket is a Redis hash {t: tokens, l: last_ms} under prefix + key. One Lua script reads,
 * refills, takes and writes it, so the check-and-spend is atomic on the server however many
 * processes race for the same bucket (a script runs alone on its node; one key, so one slot
 * in a cluster). The arithmetic is the in-process store's (ratelimit_mem.c): refill by
 * elapsed * rate up to burst, a clock that steps back refills nothing, denials and peeks write
 * nothing. The hash expires when it would have refilled, plus a second: a full bucket and no
 * bucket are the same, so expiry loses nothing and Redis memory stays bounded by the active
 * clients.
 *
 * When Redis fails (down, timeout, a script error), the call is answered by the local store
 * and Redis is left alone for RL_RETRY_MS; the switch each way is logged once. */
#include <hiredis/hiredis.h>
#include <math.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "emporium/ratelimit.h"
#include "emporium/redis.h"

enum {
    RL_RETRY_MS = 1000,
    RL_PREFIX_MAX = 64,
    RL_KEY_MAX = 200, /* longer keys: a readable prefix and a hash */
    RL_KEY_KEEP = 96,
};

/* KEYS[1] the bucket; ARGV rate, burst, now_ms, take (1/0). Returns {allowed, tokens} with
 * tokens as a string (a Lua number returned to Redis is truncated to an integer). */
static const char rl_script[] =
    "local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])\n"
    "local b = redis.call('HMGET', KEYS[1], 't', 'l')\n"
    "local tokens, last = burst, now\n"
    "if b[1] and b[2] then\n"
    "  tokens, last = tonumber(b[1]), tonumber(b[2])\n"
    "  if now > last then tokens = tokens + (now - last) / 1000 * rate end\n"
    "  if tokens > burst then tokens = burst end\n"
    "end\n"
    "local allowed = tokens >= 1\n"
    "if ARGV[4] == '1' and allowed then\n"
    "  tokens = tokens - 1\n"
    "  if last > now then now = last end\n"
    "  redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'l',\n"
    "             string.format('%.0f', now))\n"
    "  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)\n"
    "end\n"
    "return {allowed and 1 or 0, string.format('%.17g', tokens)}\n";

struct rl_redis {
    struct ratelimit rl; /* rl.self points here */
    struct redis *r;
    struct ratelimit *local;
    char prefix[RL_PREFIX_MAX];
    _Atomic int64_t retry_at; /* mono_ms: Redis is skipped before this */
    atomic_bool healthy;
    _Atomic uint64_t remote, fallback;
};

static void rl_fill(struct rl_result *out, bool allowed, double tokens, double rate, double burst)
{
    double reset = (burst - tokens) / rate;
    out->allowed = allowed;
    out->limit = burst;
    out->remaining = tokens;
    out->reset_seconds = reset > 0 ? reset : 0;
    out->retry_after = allowed ? 0 : (1.0 - tokens) / rate;
}

/* prefix + key, long keys folded to a prefix and a hash; out holds RL_PREFIX_MAX + RL_KEY_MAX. */
static void rl_key(const struct rl_redis *m, const char *key, char *out, size_t cap)
{
    size_t len = strlen(key);
    if (len <= RL_KEY_MAX) {
        snprintf(out, cap, "%s%s", m->prefix, key);
        return;
    }
    unsigned char h[16];
    char hex[33];
    crypto_generichash(h, sizeof h, (const unsigned char *)key, len, NULL, 0);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    snprintf(out, cap, "%s%.*s#%s", m->prefix, RL_KEY_KEEP, key, hex);
}

/* 0 with *out filled from Redis, or a negative code (the caller falls back). */
static int rl_remote(struct rl_redis *m, const char *key, double rate, double burst, int64_t now_ms,
                     bool take, struct rl_result *out)
{
    char k[RL_PREFIX_MAX + RL_KEY_MAX + 40], a_rate[32], a_burst[32], a_now[24];
    rl_key(m, key, k, sizeof k);
    snprintf(a_rate, sizeof a_rate, "%.17g", rate);
    snprintf(a_burst, sizeof a_burst, "%.17g", burst);
    snprintf(a_now, sizeof a_now, "%lld", (long long)now_ms);
    const char *keys[] = {k};
    const char *args[] = {a_rate, a_burst, a_now, take ? "1" : "0"};
    struct redisReply *rep = NULL;
    int rc = redis_script(m->r, rl_script, 1, keys, 4, args, &rep);
    if (rc < 0)
        return rc;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_STRING) {
        if (rep->type == REDIS_REPLY_ERROR)
            log_warn("rate limits: redis script failed: %s", rep->str);
        redis_reply_free(rep);
        return ERR_INTERNAL;
    }
    bool allowed = rep->element[0]->integer == 1;
    double tokens = strtod(rep->element[1]->str, NULL);
    redis_reply_free(rep);
    if (!isfinite(tokens))
        return ERR_INTERNAL;
    rl_fill(out, allowed, tokens, rate, burst);
    return 0;
}

static int rl_redis_op(void *self, const char *key, double rate, double burst, int64_t now_ms,
                       struct rl_result *out, bool take)
{
    struct rl_redis *m = self;
    if (!key || !out || !isfinite(rate) || !isfinite(burst) || rate <= 0 || burst <= 0)
        return ERR_INVALID;
    int64_t t = mono_ms();
    if (t >= atomic_load(&m->retry_at)) {
        int rc = rl_remote(m, key, rate, burst, now_ms, take, out);
        if (rc == 0) {
            atomic_fetch_add(&m->remote, 1);
            if (!atomic_exchange(&m->healthy, true))
                log_info("rate limits: redis answers again, limits are shared");
            metrics_count("emporium_ratelimit_decisions_total", "redis");
            return 0;
        }
        atomic_store(&m->retry_at, t + RL_RETRY_MS);
        if (atomic_exchange(&m->healthy, false))
            log_warn("rate limits: redis unavailable (%s), using this process's local limits",
                     err_str(rc));
    }
    atomic_fetch_add(&m->fallback, 1);
    metrics_count("emporium_ratelimit_decisions_total", "local");
    return take ? ratelimit_take(m->local, key, rate, burst, now_ms, out)
                : ratelimit_peek(m->local, key, rate, burst, now_ms, out);
}

static int rl_redis_take(void *self, const char *key, double rate, double burst, int64_t now_ms,
                         struct rl_result *out)
{
    return rl_redis_op(self, key, rate, burst, now_ms, out, true);
}

static int rl_redis_peek(void *self, const char *key, double rate, double burst, int64_t now_ms,
                         struct rl_result *out)
{
    return rl_redis_op(self, key, rate, burst, now_ms, out, false);
}

static void rl_redis_free(void *self)
{
    struct rl_redis *m = self;
    if (!m)
        return;
    ratelimit_free(m->local);
    free(m);
}

static const struct ratelimit_ops rl_redis_ops = {
    .take = rl_redis_take,
    .peek = rl_redis_peek,
    .free = rl_redis_free,
};

struct ratelimit *ratelimit_redis_new(struct redis *r, const char *prefix, struct ratelimit *local)
{
    if (!r || !local || !prefix || strlen(prefix) >= RL_PREFIX_MAX || sodium_init() < 0) {
        ratelimit_free(local);
        return NULL;
    }
    struct rl_redis *m = calloc(1, sizeof *m);
    if (!m) {
        ratelimit_free(local);
        return NULL;
    }
    m->r = r;
    m->local = local;
    snprintf(m->prefix, sizeof m->prefix, "%s", prefix);
    atomic_store(&m->healthy, true);
    m->rl.ops = &rl_redis_ops;
    m->rl.self = m;
    metrics_counter_declare("emporium_ratelimit_decisions_total", "store",
                            "Rate-limit decisions by the store that made them (redis, or the "
                            "local fallback while Redis is unavailable).");
    return &m->rl;
}

void ratelimit_redis_counts(const struct ratelimit *rl, uint64_t *remote, uint64_t *fallback,
                            bool *healthy)
{
    const struct rl_redis *m = rl && rl->ops == &rl_redis_ops ? rl->self : NULL;
    *remote = m ? atomic_load(&m->remote) : 0;
    *fallback = m ? atomic_load(&m->fallback) : 0;
    *healthy = m ? atomic_load(&m->healthy) : true;
}
