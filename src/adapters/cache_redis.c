/* SPDX-License-Identifier: MIT */
/* cache_redis.c — the cache port on Redis (the L2) and the tiered cache (L1 over L2).
 *
 * Every L2 value starts with one type byte: 'v' then the cached bytes, or 't' alone, a
 * tombstone. An invalidation writes the tombstone for TOMB_MS instead of deleting the key,
 * and a loader's result is stored with SET NX: a reader that loaded the old row before a
 * writer committed, and tries to store it after the writer's invalidation, finds the
 * tombstone and stores nothing. (A plain DEL would let that stale value in for a whole TTL.)
 * Readers treat a tombstone as a miss. TOMB_MS is far above any load, so the race is closed
 * in practice; the L2's TTL bounds what remains.
 *
 * Redis going away must not make invalidations vanish: a tombstone that cannot be written is
 * kept in a small list, retried before each later use, and its key reads as a miss until
 * then. When the list is full the L2 is bypassed for one TTL, after which every entry that an
 * unwritten tombstone should have covered has expired on its own.
 *
 * Lists (cache_redis_generation/_bump, cache_redis_single_flight): a generation number lives
 * in Redis (prefix + "gen:" + name, INCR on every write that changes lists) and list keys
 * carry it, so one INCR makes every list of every process unreachable at once; the old
 * entries age out by their TTL. A bump that fails bypasses the L2 for one TTL (an entry of
 * the old generation may otherwise be read again). With single flight on, a miss first takes
 * a short lock key (SET NX PX); the holder loads and stores while the others poll for the
 * value (backing off from 1 to 32 ms) until it appears, the lock goes, or the wait is over,
 * and only then load themselves: a cold list under load reaches the database once, across
 * processes (within one process the L1 above already coalesces).
 *
 * The tiered cache adds nothing but routing: its get_or_load is the L1's, single-flight and
 * all, with a loader that asks the L2 (which asks the real loader on a miss). */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emporium/cache.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/redis.h"

enum {
    TOMB_MS = 5000,
    PENDING_MAX = 64,
    PREFIX_MAX = 64,
    KEY_MAX = 1024,
};

struct l2 {
    struct cache base;
    struct redis *r;
    char prefix[PREFIX_MAX];
    int ttl_ms;
    pthread_mutex_t mu; /* the pending invalidations */
    char *pending[PENDING_MAX];
    int n_pending;
    _Atomic int64_t bypass_until; /* mono_ms */
    int sf_wait_ms;               /* cache_redis_single_flight; 0: off */
    _Atomic uint64_t hits, misses, loads, load_errors, invalidations, errors, coalesced;
};

static struct l2 *l2_of(struct cache *c) { return (struct l2 *)c; }

/* prefix + key into buf; false when too long. */
static bool full_key(const struct l2 *l, const char *key, char *buf, size_t cap)
{
    return (size_t)snprintf(buf, cap, "%s%s", l->prefix, key) < cap;
}

/* SET key <tomb> PX TOMB_MS; 0 or the client's error. */
static int write_tomb(struct l2 *l, const char *key)
{
    char k[PREFIX_MAX + KEY_MAX + 1], px[16];
    if (!full_key(l, key, k, sizeof k))
        return ERR_TOOBIG;
    snprintf(px, sizeof px, "%d", TOMB_MS);
    const char *argv[] = {"SET", k, "t", "PX", px};
    struct redisReply *rep;
    int rc = redis_command(l->r, k, strlen(k), 5, argv, NULL, &rep);
    if (rc == 0) {
        rc = rep->type == REDIS_REPLY_STATUS ? 0 : ERR_INTERNAL;
        redis_reply_free(rep);
    }
    return rc;
}

/* Retries the pending invalidations; false when `key` is still one of them. */
static bool flush_pending(struct l2 *l, const char *key)
{
    pthread_mutex_lock(&l->mu);
    bool clean = true;
    for (int i = 0; i < l->n_pending;) {
        if (write_tomb(l, l->pending[i]) == 0) {
            free(l->pending[i]);
            l->pending[i] = l->pending[--l->n_pending];
            continue;
        }
        if (key && !strcmp(key, l->pending[i]))
            clean = false;
        i++;
    }
    pthread_mutex_unlock(&l->mu);
    return clean;
}

/* Whether reads may use the L2 now (and, for key, whether it has no failed invalidation). */
static bool usable(struct l2 *l, const char *key)
{
    if (mono_ms() < atomic_load(&l->bypass_until))
        return false;
    pthread_mutex_lock(&l->mu);
    int n = l->n_pending;
    pthread_mutex_unlock(&l->mu);
    return n == 0 || flush_pending(l, key);
}

/* GET of a full key: 0 and the value appended, ERR_NOTFOUND (nothing, or a tombstone), or
 * the client's error (counted). */
static int raw_get(struct l2 *l, const char *k, struct buf *out)
{
    const char *argv[] = {"GET", k};
    struct redisReply *rep;
    int rc = redis_command(l->r, k, strlen(k), 2, argv, NULL, &rep);
    if (rc < 0) {
        atomic_fetch_add(&l->errors, 1);
        return rc;
    }
    rc = ERR_NOTFOUND;
    if (rep->type == REDIS_REPLY_STRING && rep->len >= 1 && rep->str[0] == 'v') {
        buf_append(out, rep->str + 1, rep->len - 1);
        rc = out->err ? ERR_NOMEM : 0;
    } else if (rep->type == REDIS_REPLY_ERROR) {
        atomic_fetch_add(&l->errors, 1);
    }
    redis_reply_free(rep);
    return rc;
}

static int l2_get(struct cache *c, const char *key, struct buf *out)
{
    struct l2 *l = l2_of(c);
    char k[PREFIX_MAX + KEY_MAX + 1];
    if (!usable(l, key) || !full_key(l, key, k, sizeof k)) {
        atomic_fetch_add(&l->misses, 1);
        return ERR_NOTFOUND;
    }
    int rc = raw_get(l, k, out);
    if (rc != 0 && rc != ERR_NOMEM)
        rc = ERR_NOTFOUND;
    atomic_fetch_add(rc == 0 ? &l->hits : &l->misses, 1);
    return rc;
}

/* SET key 'v'+data PX ttl [NX]. */
static int store(struct l2 *l, const char *key, const void *data, size_t len, bool nx)
{
    char k[PREFIX_MAX + KEY_MAX + 1], px[16];
    if (!full_key(l, key, k, sizeof k))
        return ERR_TOOBIG;
    char *v = malloc(len + 1);
    if (!v)
        return ERR_NOMEM;
    v[0] = 'v';
    memcpy(v + 1, data, len);
    snprintf(px, sizeof px, "%d", l->ttl_ms);
    const char *argv[] = {"SET", k, v, "PX", px, "NX"};
    size_t lens[] = {3, strlen(k), len + 1, 2, strlen(px), 2};
    struct redisReply *rep;
    int rc = redis_command(l->r, k, lens[1], nx ? 6 : 5, argv, lens, &rep);
    free(v);
    if (rc < 0) {
        atomic_fetch_add(&l->errors, 1);
        return rc;
    }
    redis_reply_free(rep);
    return 0;
}

static int l2_set(struct cache *c, const char *key, const void *data, size_t len, int ttl_ms)
{
    struct l2 *l = l2_of(c);
    if (!usable(l, key))
        return 0; /* a value it may hide is about to be invalidated anyway */
    int rc = store(l, key, data, len, false);
    return rc == ERR_TOOBIG || rc == ERR_NOMEM ? rc : 0;
}

/* Single flight across processes: 1 when we hold the lock on key (and must load), 0 when
 * another holder's value was found and appended to out, ERR_NOTFOUND when we should load
 * without the lock (it went, the wait is over, or Redis failed). */
static int flight(struct l2 *l, const char *key, char lock[], struct buf *out)
{
    char k[PREFIX_MAX + KEY_MAX + 1], px[16], token[24];
    if (!full_key(l, key, k, sizeof k) ||
        (size_t)snprintf(lock, PREFIX_MAX + KEY_MAX + 8, "%slock:%s", l->prefix, key) >=
            (size_t)PREFIX_MAX + KEY_MAX + 8)
        return ERR_NOTFOUND;
    snprintf(px, sizeof px, "%d", l->sf_wait_ms);
    snprintf(token, sizeof token, "%lld", (long long)mono_ms());
    const char *argv[] = {"SET", lock, token, "PX", px, "NX"};
    struct redisReply *rep;
    if (redis_command(l->r, lock, strlen(lock), 6, argv, NULL, &rep) < 0) {
        atomic_fetch_add(&l->errors, 1);
        return ERR_NOTFOUND;
    }
    bool mine = rep->type == REDIS_REPLY_STATUS;
    redis_reply_free(rep);
    if (mine)
        return 1;
    /* Another process loads: wait for its value while its lock lives. */
    int64_t deadline = mono_ms() + l->sf_wait_ms;
    for (int pause = 1; mono_ms() < deadline; pause = pause < 32 ? pause * 2 : 32) {
        struct timespec ts = {0, (long)pause * 1000000L};
        nanosleep(&ts, NULL);
        size_t mark = out->len;
        int rc = raw_get(l, k, out);
        if (rc == 0) {
            atomic_fetch_add(&l->coalesced, 1);
            return 0;
        }
        out->len = mark;
        if (rc != ERR_NOTFOUND)
            return ERR_NOTFOUND;
        const char *ex[] = {"EXISTS", lock};
        if (redis_command(l->r, lock, strlen(lock), 2, ex, NULL, &rep) < 0)
            return ERR_NOTFOUND;
        bool held = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
        redis_reply_free(rep);
        if (!held) { /* gone: its value may have landed just before */
            rc = raw_get(l, k, out);
            if (rc == 0) {
                atomic_fetch_add(&l->coalesced, 1);
                return 0;
            }
            out->len = mark;
            return ERR_NOTFOUND;
        }
    }
    return ERR_NOTFOUND;
}

static int l2_get_or_load(struct cache *c, const char *key, cache_load_fn load, void *ctx,
                          int ttl_ms, struct buf *out)
{
    struct l2 *l = l2_of(c);
    size_t mark = out->len;
    if (l2_get(c, key, out) == 0)
        return 0;
    out->len = mark;
    char lock[PREFIX_MAX + KEY_MAX + 8];
    int held = 0;
    if (l->sf_wait_ms > 0 && usable(l, key)) {
        held = flight(l, key, lock, out);
        if (held == 0)
            return 0;
        held = held == 1;
    }
    atomic_fetch_add(&l->loads, 1);
    int rc = load(ctx, key, out);
    if (rc == 0 && out->err)
        rc = ERR_NOMEM;
    if (rc < 0)
        atomic_fetch_add(&l->load_errors, 1);
    else if (usable(l, key))
        store(l, key, out->p + mark, out->len - mark, true);
    if (held) {
        const char *argv[] = {"DEL", lock};
        struct redisReply *rep;
        if (redis_command(l->r, lock, strlen(lock), 2, argv, NULL, &rep) == 0)
            redis_reply_free(rep);
    }
    return rc;
}

static void l2_del(struct cache *c, const char *key)
{
    struct l2 *l = l2_of(c);
    atomic_fetch_add(&l->invalidations, 1);
    if (write_tomb(l, key) == 0)
        return;
    atomic_fetch_add(&l->errors, 1);
    pthread_mutex_lock(&l->mu);
    bool known = false;
    for (int i = 0; i < l->n_pending && !known; i++)
        known = !strcmp(l->pending[i], key);
    char *copy = known ? NULL : strdup(key);
    if (!known && copy && l->n_pending < PENDING_MAX) {
        l->pending[l->n_pending++] = copy;
        copy = NULL;
    } else if (!known) {
        /* Too many (or no memory): ignore the L2 until all it holds has expired. */
        atomic_store(&l->bypass_until, mono_ms() + l->ttl_ms);
        for (int i = 0; i < l->n_pending; i++)
            free(l->pending[i]);
        l->n_pending = 0;
        log_warn("cache %s: too many invalidations failed on redis; "
                 "its L2 is bypassed for %d s",
                 l->base.name, l->ttl_ms / 1000);
    }
    free(copy);
    pthread_mutex_unlock(&l->mu);
}

static void l2_clear(struct cache *c)
{
    struct l2 *l = l2_of(c);
    pthread_mutex_lock(&l->mu);
    for (int i = 0; i < l->n_pending; i++)
        free(l->pending[i]);
    l->n_pending = 0;
    pthread_mutex_unlock(&l->mu);
}

static void l2_stats(struct cache *c, struct cache_stats *o)
{
    struct l2 *l = l2_of(c);
    memset(o, 0, sizeof *o);
    o->hits = atomic_load(&l->hits);
    o->misses = atomic_load(&l->misses);
    o->loads = atomic_load(&l->loads);
    o->load_errors = atomic_load(&l->load_errors);
    o->invalidations = atomic_load(&l->invalidations);
    o->errors = atomic_load(&l->errors);
    o->coalesced = atomic_load(&l->coalesced);
}

static void l2_free(struct cache *c)
{
    struct l2 *l = l2_of(c);
    cache__unregister(c);
    l2_clear(c);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static const struct cache_ops l2_ops = {
    .get = l2_get,
    .set = l2_set,
    .get_or_load = l2_get_or_load,
    .del = l2_del,
    .clear = l2_clear,
    .stats = l2_stats,
    .free = l2_free,
};

struct cache *cache_redis_new(struct redis *r, const char *name, const char *prefix, int ttl_ms)
{
    if (!r || !prefix || strlen(prefix) >= PREFIX_MAX || ttl_ms <= 0)
        return NULL;
    struct l2 *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->base.ops = &l2_ops;
    snprintf(l->base.name, sizeof l->base.name, "%s", name ? name : "default");
    snprintf(l->base.layer, sizeof l->base.layer, "l2");
    l->r = r;
    snprintf(l->prefix, sizeof l->prefix, "%s", prefix);
    l->ttl_ms = ttl_ms;
    pthread_mutex_init(&l->mu, NULL);
    cache__register(&l->base);
    return &l->base;
}

void cache_redis_single_flight(struct cache *c, int wait_ms)
{
    if (c && c->ops == &l2_ops)
        l2_of(c)->sf_wait_ms = wait_ms > 0 ? wait_ms : 0;
}

/* prefix + "gen:" + name into k; false when too long. */
static bool gen_key(const struct l2 *l, const char *name, char *k, size_t cap)
{
    return (size_t)snprintf(k, cap, "%sgen:%s", l->prefix, name) < cap;
}

int cache_redis_generation(struct cache *c, const char *name, uint64_t *out)
{
    *out = 0;
    if (!c || c->ops != &l2_ops)
        return ERR_INVALID;
    struct l2 *l = l2_of(c);
    char k[PREFIX_MAX + 80];
    if (!gen_key(l, name, k, sizeof k))
        return ERR_TOOBIG;
    if (mono_ms() < atomic_load(&l->bypass_until))
        return ERR_UNAVAILABLE;
    const char *argv[] = {"GET", k};
    struct redisReply *rep;
    int rc = redis_command(l->r, k, strlen(k), 2, argv, NULL, &rep);
    if (rc < 0) {
        atomic_fetch_add(&l->errors, 1);
        return rc;
    }
    if (rep->type == REDIS_REPLY_STRING)
        *out = strtoull(rep->str, NULL, 10);
    else if (rep->type != REDIS_REPLY_NIL)
        rc = ERR_INTERNAL;
    redis_reply_free(rep);
    return rc;
}

int cache_redis_bump(struct cache *c, const char *name)
{
    if (!c || c->ops != &l2_ops)
        return ERR_INVALID;
    struct l2 *l = l2_of(c);
    char k[PREFIX_MAX + 80];
    if (!gen_key(l, name, k, sizeof k))
        return ERR_TOOBIG;
    atomic_fetch_add(&l->invalidations, 1);
    const char *argv[] = {"INCR", k};
    struct redisReply *rep;
    int rc = redis_command(l->r, k, strlen(k), 2, argv, NULL, &rep);
    if (rc == 0) {
        rc = rep->type == REDIS_REPLY_INTEGER ? 0 : ERR_INTERNAL;
        redis_reply_free(rep);
    }
    if (rc < 0) {
        /* The old generation's entries must not be read again: ignore the L2 until every
         * one of them has expired. */
        atomic_fetch_add(&l->errors, 1);
        atomic_store(&l->bypass_until, mono_ms() + l->ttl_ms);
        log_warn("cache %s: generation %s not bumped on redis (%s); its L2 is bypassed for %d s",
                 l->base.name, name, err_str(rc), l->ttl_ms / 1000);
    }
    return rc;
}

/* ---- tiered ----------------------------------------------------------------------------- */

struct tiered {
    struct cache base;
    struct cache *l1, *l2;
    const char *const *shared;
    int cap_ms;
};

static struct tiered *t_of(struct cache *c) { return (struct tiered *)c; }

static bool is_shared(const struct tiered *t, const char *key)
{
    if (!t->shared)
        return true;
    for (const char *const *p = t->shared; *p; p++)
        if (!strncmp(key, *p, strlen(*p)))
            return true;
    return false;
}

static int l1_ttl(const struct tiered *t, int ttl_ms)
{
    return t->cap_ms > 0 && ttl_ms > t->cap_ms ? t->cap_ms : ttl_ms;
}

static int t_get(struct cache *c, const char *key, struct buf *out)
{
    struct tiered *t = t_of(c);
    if (cache_get(t->l1, key, out) == 0)
        return 0;
    return is_shared(t, key) ? cache_get(t->l2, key, out) : ERR_NOTFOUND;
}

static int t_set(struct cache *c, const char *key, const void *data, size_t len, int ttl_ms)
{
    struct tiered *t = t_of(c);
    if (!is_shared(t, key))
        return cache_set(t->l1, key, data, len, ttl_ms);
    int rc = cache_set(t->l1, key, data, len, l1_ttl(t, ttl_ms));
    int rc2 = cache_set(t->l2, key, data, len, ttl_ms);
    return rc < 0 ? rc : rc2;
}

struct t_load {
    struct tiered *t;
    cache_load_fn load;
    void *ctx;
    int ttl_ms;
};

static int t_loader(void *vctx, const char *key, struct buf *out)
{
    struct t_load *tl = vctx;
    return cache_get_or_load(tl->t->l2, key, tl->load, tl->ctx, tl->ttl_ms, out);
}

static int t_get_or_load(struct cache *c, const char *key, cache_load_fn load, void *ctx,
                         int ttl_ms, struct buf *out)
{
    struct tiered *t = t_of(c);
    if (!is_shared(t, key))
        return cache_get_or_load(t->l1, key, load, ctx, ttl_ms, out);
    struct t_load tl = {t, load, ctx, ttl_ms};
    return cache_get_or_load(t->l1, key, t_loader, &tl, l1_ttl(t, ttl_ms), out);
}

static void t_del(struct cache *c, const char *key)
{
    struct tiered *t = t_of(c);
    cache_del(t->l1, key);
    if (is_shared(t, key))
        cache_del(t->l2, key);
}

static void t_clear(struct cache *c)
{
    struct tiered *t = t_of(c);
    cache_clear(t->l1);
    cache_clear(t->l2);
}

static void t_stats(struct cache *c, struct cache_stats *o) { cache_get_stats(t_of(c)->l1, o); }

static void t_free(struct cache *c)
{
    struct tiered *t = t_of(c);
    cache_free(t->l1);
    cache_free(t->l2);
    free(t);
}

static const struct cache_ops tiered_ops = {
    .get = t_get,
    .set = t_set,
    .get_or_load = t_get_or_load,
    .del = t_del,
    .clear = t_clear,
    .stats = t_stats,
    .free = t_free,
};

struct cache *cache_tiered_new(struct cache *l1, struct cache *l2, const char *const *shared,
                               int l1_ttl_cap_ms)
{
    struct tiered *t = l1 && l2 && l1_ttl_cap_ms >= 0 ? calloc(1, sizeof *t) : NULL;
    if (!t) {
        cache_free(l1);
        cache_free(l2);
        return NULL;
    }
    t->base.ops = &tiered_ops;
    snprintf(t->base.name, sizeof t->base.name, "%s", l1->name);
    snprintf(t->base.layer, sizeof t->base.layer, "l1+l2");
    t->l1 = l1;
    t->l2 = l2;
    t->shared = shared;
    t->cap_ms = l1_ttl_cap_ms;
    return &t->base;
}
