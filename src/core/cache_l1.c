/* SPDX-License-Identifier: MIT */
/* cache_l1.c — the in-process cache (see emporium/cache.h).
 *
 * 2^k shards chosen by the top bits of a 64-bit key hash; each shard has its own mutex, a
 * chained hash table (low bits), an intrusive LRU list and a byte budget of max_bytes/2^k.
 * A get moves the entry to the front of its shard's LRU; a set that overflows the budget
 * evicts from the back. Expired entries are dropped when found (lazy expiry) and by the LRU
 * sweep when they reach the back. In-flight loads (single-flight) live on a short list per
 * shard: a caller that misses first looks there and waits on the flight's condition
 * variable instead of loading again. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/cache.h"
#include "emporium/err.h"
#include "emporium/id.h"

#define L1_KEY_MAX 1024
#define L1_ENTRY_OVERHEAD (sizeof(struct l1_entry) + 16)

struct l1_entry {
    struct l1_entry *hnext;       /* hash chain */
    struct l1_entry *prev, *next; /* LRU: head = most recent */
    uint64_t hash;
    int64_t expires; /* mono ms */
    size_t klen, vlen;
    char data[]; /* key, NUL, value */
};

struct l1_flight {
    struct l1_flight *next;
    uint64_t hash;
    char *key;
    pthread_cond_t cv;
    int refs;      /* leader + waiters */
    bool done;     /* leader finished */
    bool detached; /* invalidated while loading: do not store, no longer findable */
    int rc;
    char *val;
    size_t vlen;
};

struct l1_shard {
    pthread_mutex_t mu;
    struct l1_entry **buckets;
    size_t nbuckets, count;
    size_t bytes, max_bytes;
    struct l1_entry *head, *tail;
    struct l1_flight *flights;
    uint64_t hits, misses, evictions, expirations, invalidations, loads, load_errors, coalesced;
    char pad[64];
};

struct l1 {
    struct cache base;
    unsigned nshards, shift;
    size_t max_bytes;
    struct l1_shard *shards;
};

/* Live caches of every layer, for cache_metrics_write (cache__register). */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cache *reg_head;

void cache__register(struct cache *c)
{
    pthread_mutex_lock(&reg_mu);
    c->reg_next = reg_head;
    reg_head = c;
    pthread_mutex_unlock(&reg_mu);
}

void cache__unregister(struct cache *c)
{
    pthread_mutex_lock(&reg_mu);
    for (struct cache **pp = &reg_head; *pp; pp = &(*pp)->reg_next)
        if (*pp == c) {
            *pp = c->reg_next;
            break;
        }
    pthread_mutex_unlock(&reg_mu);
}

static uint64_t key_hash(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, then a finaliser to spread the bits */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)k[i]) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static struct l1 *l1_of(struct cache *c) { return (struct l1 *)c; }

static struct l1_shard *shard_of(struct l1 *l, uint64_t h)
{
    return &l->shards[l->shift >= 64 ? 0 : h >> l->shift];
}

static size_t entry_cost(size_t klen, size_t vlen) { return L1_ENTRY_OVERHEAD + klen + vlen; }

/* ---- shard internals (shard lock held) ------------------------------------------------ */

static void lru_unlink(struct l1_shard *s, struct l1_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct l1_shard *s, struct l1_entry *e)
{
    e->prev = NULL;
    e->next = s->head;
    if (s->head)
        s->head->prev = e;
    s->head = e;
    if (!s->tail)
        s->tail = e;
}

static struct l1_entry **find_slot(struct l1_shard *s, uint64_t h, const char *key, size_t klen)
{
    struct l1_entry **pp = &s->buckets[h & (s->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->hnext)
        if ((*pp)->hash == h && (*pp)->klen == klen && !memcmp((*pp)->data, key, klen))
            return pp;
    return pp;
}

static void entry_remove(struct l1_shard *s, struct l1_entry *e)
{
    struct l1_entry **pp = find_slot(s, e->hash, e->data, e->klen);
    if (*pp == e)
        *pp = e->hnext;
    lru_unlink(s, e);
    s->count--;
    s->bytes -= entry_cost(e->klen, e->vlen);
    free(e);
}

static void maybe_grow(struct l1_shard *s)
{
    if (s->count < s->nbuckets)
        return;
    size_t nb = s->nbuckets * 2;
    struct l1_entry **b = calloc(nb, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct l1_entry *e = s->buckets[i];
        while (e) {
            struct l1_entry *n = e->hnext;
            size_t j = e->hash & (nb - 1);
            e->hnext = b[j];
            b[j] = e;
            e = n;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
}

/* Inserts or replaces; evicts from the LRU tail to stay within the budget. */
static int shard_put(struct l1_shard *s, uint64_t h, const char *key, size_t klen, const void *val,
                     size_t vlen, int ttl_ms, int64_t now)
{
    size_t cost = entry_cost(klen, vlen);
    struct l1_entry **pp = find_slot(s, h, key, klen);
    if (*pp)
        entry_remove(s, *pp);
    if (cost > s->max_bytes / 2)
        return ERR_TOOBIG; /* would flush most of the shard for one entry */
    struct l1_entry *e = malloc(sizeof *e + klen + 1 + vlen);
    if (!e)
        return ERR_NOMEM;
    e->hash = h;
    e->klen = klen;
    e->vlen = vlen;
    e->expires = now + ttl_ms;
    memcpy(e->data, key, klen);
    e->data[klen] = 0;
    if (vlen)
        memcpy(e->data + klen + 1, val, vlen);
    while (s->tail && s->bytes + cost > s->max_bytes) {
        if (s->tail->expires <= now)
            s->expirations++;
        else
            s->evictions++;
        entry_remove(s, s->tail);
    }
    maybe_grow(s);
    pp = &s->buckets[h & (s->nbuckets - 1)];
    e->hnext = *pp;
    *pp = e;
    lru_push_front(s, e);
    s->count++;
    s->bytes += cost;
    return 0;
}

/* Hit: appends the value, moves the entry to the front. */
static bool shard_lookup(struct l1_shard *s, uint64_t h, const char *key, size_t klen, int64_t now,
                         struct buf *out)
{
    struct l1_entry **pp = find_slot(s, h, key, klen);
    struct l1_entry *e = *pp;
    if (!e)
        return false;
    if (e->expires <= now) {
        s->expirations++;
        entry_remove(s, e);
        return false;
    }
    if (s->head != e) {
        lru_unlink(s, e);
        lru_push_front(s, e);
    }
    buf_append(out, e->data + e->klen + 1, e->vlen);
    return true;
}

static void flight_unref(struct l1_flight *f)
{
    if (--f->refs > 0)
        return;
    pthread_cond_destroy(&f->cv);
    free(f->key);
    free(f->val);
    free(f);
}

static void flight_detach(struct l1_shard *s, struct l1_flight *f)
{
    for (struct l1_flight **pp = &s->flights; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    f->detached = true;
}

/* ---- operations ----------------------------------------------------------------------- */

static int l1_get(struct cache *c, const char *key, struct buf *out)
{
    struct l1 *l = l1_of(c);
    size_t klen = strlen(key);
    uint64_t h = key_hash(key, klen);
    struct l1_shard *s = shard_of(l, h);
    int64_t now = mono_ms();
    pthread_mutex_lock(&s->mu);
    bool hit = shard_lookup(s, h, key, klen, now, out);
    if (hit)
        s->hits++;
    else
        s->misses++;
    pthread_mutex_unlock(&s->mu);
    if (hit && out->err)
        return out->err;
    return hit ? 0 : ERR_NOTFOUND;
}

static int l1_set(struct cache *c, const char *key, const void *data, size_t len, int ttl_ms)
{
    struct l1 *l = l1_of(c);
    size_t klen = strlen(key);
    if (klen > L1_KEY_MAX || ttl_ms <= 0)
        return ERR_INVALID;
    uint64_t h = key_hash(key, klen);
    struct l1_shard *s = shard_of(l, h);
    pthread_mutex_lock(&s->mu);
    /* A plain set supersedes any load in flight for the key. */
    for (struct l1_flight *f = s->flights; f; f = f->next)
        if (f->hash == h && !strcmp(f->key, key)) {
            flight_detach(s, f);
            break;
        }
    int rc = shard_put(s, h, key, klen, data, len, ttl_ms, mono_ms());
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int l1_get_or_load(struct cache *c, const char *key, cache_load_fn load, void *ctx,
                          int ttl_ms, struct buf *out)
{
    struct l1 *l = l1_of(c);
    size_t klen = strlen(key);
    if (klen > L1_KEY_MAX || ttl_ms <= 0)
        return ERR_INVALID;
    uint64_t h = key_hash(key, klen);
    struct l1_shard *s = shard_of(l, h);
    pthread_mutex_lock(&s->mu);
    if (shard_lookup(s, h, key, klen, mono_ms(), out)) {
        s->hits++;
        pthread_mutex_unlock(&s->mu);
        return out->err;
    }
    s->misses++;
    struct l1_flight *f = s->flights;
    while (f && !(f->hash == h && !strcmp(f->key, key)))
        f = f->next;
    if (f) { /* somebody is loading it: wait for the result */
        s->coalesced++;
        f->refs++;
        while (!f->done)
            pthread_cond_wait(&f->cv, &s->mu);
        int rc = f->rc;
        if (rc == 0)
            buf_append(out, f->val, f->vlen);
        flight_unref(f);
        pthread_mutex_unlock(&s->mu);
        return rc < 0 ? rc : out->err;
    }
    f = calloc(1, sizeof *f);
    char *kcopy = f ? strdup(key) : NULL;
    if (!f || !kcopy) {
        free(f);
        pthread_mutex_unlock(&s->mu);
        return ERR_NOMEM;
    }
    f->key = kcopy;
    f->hash = h;
    f->refs = 1;
    pthread_cond_init(&f->cv, NULL);
    f->next = s->flights;
    s->flights = f;
    s->loads++;
    pthread_mutex_unlock(&s->mu);

    struct buf val = BUF_INIT(0);
    int rc = load(ctx, key, &val);
    if (rc == 0 && val.err)
        rc = val.err;

    pthread_mutex_lock(&s->mu);
    if (rc < 0)
        s->load_errors++;
    if (!f->detached) {
        flight_detach(s, f);
        if (rc == 0)
            shard_put(s, h, key, klen, val.p, val.len, ttl_ms, mono_ms());
    }
    f->rc = rc;
    f->done = true;
    if (f->refs > 1 && rc == 0) {
        f->vlen = val.len;
        f->val = buf_steal(&val, NULL);
        if (!f->val && f->vlen)
            f->rc = ERR_NOMEM;
        if (f->val)
            buf_append(out, f->val, f->vlen);
    } else if (rc == 0) {
        buf_append(out, val.p, val.len);
    }
    if (f->rc < 0) /* handing the value to the waiters ran out of memory: fail us too */
        rc = f->rc;
    pthread_cond_broadcast(&f->cv);
    flight_unref(f);
    pthread_mutex_unlock(&s->mu);
    buf_free(&val);
    return rc < 0 ? rc : out->err;
}

static void l1_del(struct cache *c, const char *key)
{
    struct l1 *l = l1_of(c);
    size_t klen = strlen(key);
    uint64_t h = key_hash(key, klen);
    struct l1_shard *s = shard_of(l, h);
    pthread_mutex_lock(&s->mu);
    struct l1_entry **pp = find_slot(s, h, key, klen);
    if (*pp) {
        entry_remove(s, *pp);
        s->invalidations++;
    }
    for (struct l1_flight *f = s->flights; f; f = f->next)
        if (f->hash == h && !strcmp(f->key, key)) {
            flight_detach(s, f);
            break;
        }
    pthread_mutex_unlock(&s->mu);
}

static void shard_clear(struct l1_shard *s)
{
    while (s->head)
        entry_remove(s, s->head);
    while (s->flights)
        flight_detach(s, s->flights);
}

static void l1_clear(struct cache *c)
{
    struct l1 *l = l1_of(c);
    for (unsigned i = 0; i < l->nshards; i++) {
        pthread_mutex_lock(&l->shards[i].mu);
        shard_clear(&l->shards[i]);
        pthread_mutex_unlock(&l->shards[i].mu);
    }
}

static void l1_stats(struct cache *c, struct cache_stats *o)
{
    struct l1 *l = l1_of(c);
    memset(o, 0, sizeof *o);
    o->max_bytes = l->max_bytes;
    for (unsigned i = 0; i < l->nshards; i++) {
        struct l1_shard *s = &l->shards[i];
        pthread_mutex_lock(&s->mu);
        o->hits += s->hits;
        o->misses += s->misses;
        o->evictions += s->evictions;
        o->expirations += s->expirations;
        o->invalidations += s->invalidations;
        o->loads += s->loads;
        o->load_errors += s->load_errors;
        o->coalesced += s->coalesced;
        o->entries += s->count;
        o->bytes += s->bytes;
        pthread_mutex_unlock(&s->mu);
    }
}

static void l1_free(struct cache *c)
{
    struct l1 *l = l1_of(c);
    cache__unregister(c);
    for (unsigned i = 0; i < l->nshards; i++) {
        struct l1_shard *s = &l->shards[i];
        shard_clear(s);
        free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    free(l->shards);
    free(l);
}

static const struct cache_ops l1_ops = {
    .get = l1_get,
    .set = l1_set,
    .get_or_load = l1_get_or_load,
    .del = l1_del,
    .clear = l1_clear,
    .stats = l1_stats,
    .free = l1_free,
};

struct cache *cache_l1_new(const char *name, size_t max_bytes, unsigned shards)
{
    if (!max_bytes)
        return NULL;
    unsigned n = 1, bits = 0;
    if (!shards)
        shards = 16;
    while (n < shards && n < 1024) {
        n <<= 1;
        bits++;
    }
    struct l1 *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->base.ops = &l1_ops;
    snprintf(l->base.name, sizeof l->base.name, "%s", name ? name : "default");
    snprintf(l->base.layer, sizeof l->base.layer, "l1");
    l->nshards = n;
    l->shift = bits ? 64 - bits : 64;
    l->max_bytes = max_bytes;
    l->shards = calloc(n, sizeof *l->shards);
    if (!l->shards) {
        free(l);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        struct l1_shard *s = &l->shards[i];
        pthread_mutex_init(&s->mu, NULL);
        s->max_bytes = max_bytes / n ? max_bytes / n : 1;
        s->nbuckets = 64;
        s->buckets = calloc(s->nbuckets, sizeof *s->buckets);
        if (!s->buckets) {
            l->nshards = i + 1;
            l1_free(&l->base);
            return NULL;
        }
    }
    cache__register(&l->base);
    return &l->base;
}

void cache_free(struct cache *c)
{
    if (c)
        c->ops->free(c);
}

void cache_metrics_write(struct buf *out, void *ctx)
{
    static const struct {
        const char *name, *type, *help;
        size_t off;
    } fam[] = {
#define F(n, t, h) {"emporium_cache_" #n, t, h, offsetof(struct cache_stats, n)}
        F(hits, "counter", "Cache lookups that found a live entry."),
        F(misses, "counter", "Cache lookups that found nothing."),
        F(evictions, "counter", "Entries evicted by the byte bound (LRU)."),
        F(expirations, "counter", "Entries dropped because their TTL passed."),
        F(invalidations, "counter", "Entries removed by an explicit invalidation."),
        F(loads, "counter", "Loader runs on a miss (single-flight: one per cold key)."),
        F(load_errors, "counter", "Loader runs that failed."),
        F(coalesced, "counter", "Misses that waited for another caller's load."),
        F(errors, "counter", "Store calls that failed (a remote layer down: served as misses)."),
        F(entries, "gauge", "Entries held."),
        F(bytes, "gauge", "Bytes held, keys and overhead included."),
        F(max_bytes, "gauge", "The byte bound."),
#undef F
    };
    enum { NF = sizeof fam / sizeof fam[0] };
    pthread_mutex_lock(&reg_mu);
    int n = 0;
    for (struct cache *l = reg_head; l; l = l->reg_next)
        n++;
    struct cache_stats *st = n ? calloc((size_t)n, sizeof *st) : NULL;
    const struct cache **who = n ? calloc((size_t)n, sizeof *who) : NULL;
    if (n && (!st || !who)) {
        pthread_mutex_unlock(&reg_mu);
        free(st);
        free(who);
        return;
    }
    int i = 0;
    for (struct cache *l = reg_head; l; l = l->reg_next, i++) {
        l->ops->stats(l, &st[i]);
        who[i] = l;
    }
    for (size_t f = 0; f < NF && n; f++) {
        const char *suffix = !strcmp(fam[f].type, "counter") ? "_total" : "";
        buf_printf(out, "# HELP %s%s %s\n# TYPE %s%s %s\n", fam[f].name, suffix, fam[f].help,
                   fam[f].name, suffix, fam[f].type);
        for (int k = 0; k < n; k++) {
            uint64_t v;
            memcpy(&v, (const char *)&st[k] + fam[f].off, sizeof v);
            buf_printf(out, "%s%s{cache=\"%s\",layer=\"%s\"} %llu\n", fam[f].name, suffix,
                       who[k]->name, who[k]->layer, (unsigned long long)v);
        }
    }
    /* The seed's key figure, per layer: hits / lookups since start (0 before the first). */
    if (n)
        buf_puts(out, "# HELP emporium_cache_hit_ratio Share of lookups that hit, since start.\n"
                      "# TYPE emporium_cache_hit_ratio gauge\n");
    for (int k = 0; k < n; k++) {
        uint64_t looked = st[k].hits + st[k].misses;
        buf_printf(out, "emporium_cache_hit_ratio{cache=\"%s\",layer=\"%s\"} %.4f\n", who[k]->name,
                   who[k]->layer, looked ? (double)st[k].hits / (double)looked : 0.0);
    }
    pthread_mutex_unlock(&reg_mu);
    free(st);
    free(who);
}
