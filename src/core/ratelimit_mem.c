/* SPDX-License-Identifier: MIT */
/* ratelimit_mem.c — the in-process rate-limiter store: sharded, bounded token buckets.
 *
 * Keys are hashed with a per-instance SipHash key (libsodium crypto_shorthash), so a client
 * cannot pick keys that all land in one shard or one probe chain. The top bits of the hash
 * choose one of up to 64 shards, each a mutex and an open-addressing (linear probing) table
 * whose slot array is allocated once, at twice the shard's key budget, so probes stay short
 * and the table never grows. The budgets of all shards add up to max_keys: that, plus keys
 * folded to at most RL_KEY_MAX bytes, is the memory bound, whatever the clients send.
 *
 * A bucket is (tokens, last_ms). It is brought up to date lazily on each call: tokens grow by
 * elapsed * rate up to burst. Time comes from the caller (now_ms), so tests are deterministic;
 * a clock that steps back simply refills nothing. A bucket that has refilled to burst is the
 * same as no bucket, which is what makes eviction safe: when a shard is at its budget, a
 * sample of its buckets is looked at, and a full-again one is dropped (lossless), else the
 * least recently used of the sample (approximate LRU, as Redis does). A peek never inserts. */
#include "emporium/ratelimit.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/err.h"

enum {
    RL_SHARDS_MAX = 64,      /* power of two */
    RL_SAMPLE = 8,           /* buckets looked at to choose an eviction victim */
    RL_KEY_MAX = 128,        /* longer keys are folded to a prefix and a keyed hash */
    RL_KEY_PREFIX = 96,      /* bytes of a long key kept verbatim (for readability) */
    RL_DEFAULT_KEYS = 65536, /* max_keys == 0 */
};

struct rl_bucket {
    char *key; /* NULL: empty slot; else owned (malloc'd) */
    uint64_t hash;
    uint64_t used;   /* shard tick of the last take/peek: the LRU order */
    int64_t last_ms; /* when tokens was last brought up to date */
    double tokens;
    double rate, burst; /* as last given: needed to tell whether it has refilled */
};

/* Aligned to a cache line so two shards' mutexes never share one. */
struct rl_shard {
    alignas(64) pthread_mutex_t mu;
    struct rl_bucket *slots;
    uint32_t mask;  /* slot count - 1 (slot count is a power of two) */
    uint32_t count; /* occupied slots */
    uint32_t cap;   /* this shard's share of max_keys; count <= cap <= (mask + 1) / 2 */
    uint64_t tick;  /* LRU clock: counts uses, independent of now_ms */
    uint64_t rng;   /* xorshift state for the eviction sample's start */
};

struct rl_mem {
    struct ratelimit rl; /* what ratelimit_mem_new hands out; rl.self points here */
    struct rl_shard *shards;
    unsigned nshards;
    unsigned shard_shift; /* 64 - log2(nshards); unused when nshards == 1 */
    unsigned char seed[crypto_shorthash_KEYBYTES];      /* table hash */
    unsigned char fold_seed[crypto_shorthash_KEYBYTES]; /* long-key folding */
};

/* Module-internal, for tests: how many buckets are stored now (takes every shard lock). */
unsigned rl__mem_count(const struct ratelimit *rl);

static uint64_t rl_hash(const unsigned char *seed, const char *key, size_t len)
{
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t h;

    crypto_shorthash(out, (const unsigned char *)key, len, seed);
    memcpy(&h, out, sizeof h);
    return h;
}

/* Long keys (a client-supplied email in a key, say) would make the per-bucket memory
 * client-controlled; keep a readable prefix plus a keyed hash of the whole key instead.
 * buf must hold RL_KEY_MAX + 1 bytes. */
static const char *rl_fold(const struct rl_mem *m, const char *key, size_t len, char *buf)
{
    uint64_t h = rl_hash(m->fold_seed, key, len);

    memcpy(buf, key, RL_KEY_PREFIX);
    snprintf(buf + RL_KEY_PREFIX, RL_KEY_MAX + 1 - RL_KEY_PREFIX, "#%016llx",
             (unsigned long long)h);
    return buf;
}

static uint64_t rl_rand(struct rl_shard *sh)
{
    uint64_t x = sh->rng;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    sh->rng = x;
    return x;
}

/* Tokens in b at now_ms under the given parameters (a lowered burst clamps at once). */
static double rl_refilled(const struct rl_bucket *b, double rate, double burst, int64_t now_ms)
{
    double t = b->tokens;

    if (now_ms > b->last_ms)
        t += (double)(now_ms - b->last_ms) / 1000.0 * rate;
    return t < burst ? t : burst;
}

static struct rl_bucket *rl_find(struct rl_shard *sh, uint64_t h, const char *key)
{
    /* Terminates: the load factor is at most 1/2, so an empty slot is always reached. */
    for (uint32_t i = (uint32_t)h & sh->mask;; i = (i + 1) & sh->mask) {
        struct rl_bucket *b = &sh->slots[i];
        if (!b->key)
            return NULL;
        if (b->hash == h && strcmp(b->key, key) == 0)
            return b;
    }
}

/* Backward-shift deletion: no tombstones, so probe chains never rot under churn (the
 * eviction path deletes on every insert once a shard is at its budget). */
static void rl_remove(struct rl_shard *sh, uint32_t hole)
{
    free(sh->slots[hole].key);
    sh->slots[hole].key = NULL;
    sh->count--;
    for (uint32_t j = (hole + 1) & sh->mask; sh->slots[j].key; j = (j + 1) & sh->mask) {
        uint32_t home = (uint32_t)sh->slots[j].hash & sh->mask;
        /* The entry at j may fill the hole when the hole lies on its probe path home..j. */
        if (((j - home) & sh->mask) >= ((j - hole) & sh->mask)) {
            sh->slots[hole] = sh->slots[j];
            sh->slots[j].key = NULL;
            hole = j;
        }
    }
}

static void rl_evict_one(struct rl_shard *sh, int64_t now_ms)
{
    uint32_t i = (uint32_t)rl_rand(sh) & sh->mask, victim = UINT32_MAX;
    uint64_t oldest = UINT64_MAX;
    unsigned seen = 0;

    for (uint32_t n = 0; n <= sh->mask && seen < RL_SAMPLE; n++, i = (i + 1) & sh->mask) {
        const struct rl_bucket *b = &sh->slots[i];
        if (!b->key)
            continue;
        seen++;
        if (rl_refilled(b, b->rate, b->burst, now_ms) >= b->burst) {
            victim = i; /* full again: forgetting it changes nothing */
            break;
        }
        if (b->used < oldest) {
            oldest = b->used;
            victim = i;
        }
    }
    assert(victim != UINT32_MAX); /* only called with count == cap >= 1 */
    rl_remove(sh, victim);
}

/* Returns the new bucket (fields other than key/hash left for the caller) or NULL (no memory). */
static struct rl_bucket *rl_insert(struct rl_shard *sh, uint64_t h, const char *key, size_t len,
                                   int64_t now_ms)
{
    char *copy = malloc(len + 1);
    uint32_t i;

    if (!copy)
        return NULL;
    memcpy(copy, key, len + 1);
    if (sh->count >= sh->cap)
        rl_evict_one(sh, now_ms);
    for (i = (uint32_t)h & sh->mask; sh->slots[i].key; i = (i + 1) & sh->mask)
        ;
    sh->slots[i] = (struct rl_bucket){.key = copy, .hash = h, .last_ms = now_ms};
    sh->count++;
    return &sh->slots[i];
}

static void rl_fill(struct rl_result *out, bool allowed, double tokens, double rate, double burst)
{
    double reset = (burst - tokens) / rate;

    out->allowed = allowed;
    out->limit = burst;
    out->remaining = tokens;
    out->reset_seconds = reset > 0 ? reset : 0;
    out->retry_after = allowed ? 0 : (1.0 - tokens) / rate;
}

static int rl_mem_op(void *self, const char *key, double rate, double burst, int64_t now_ms,
                     struct rl_result *out, bool take)
{
    struct rl_mem *m = self;
    char folded[RL_KEY_MAX + 1];
    struct rl_shard *sh;
    struct rl_bucket *b;
    double tokens;
    bool allowed;
    size_t len;
    uint64_t h;

    /* A zero rate would mean an infinite Retry-After; NaN would poison the bucket. */
    if (!key || !out || !isfinite(rate) || !isfinite(burst) || rate <= 0 || burst <= 0)
        return ERR_INVALID;
    len = strlen(key);
    if (len > RL_KEY_MAX) {
        key = rl_fold(m, key, len, folded);
        len = strlen(key);
    }
    h = rl_hash(m->seed, key, len);
    sh = &m->shards[m->nshards > 1 ? (unsigned)(h >> m->shard_shift) : 0];

    pthread_mutex_lock(&sh->mu);
    b = rl_find(sh, h, key);
    tokens = b ? rl_refilled(b, rate, burst, now_ms) : burst;
    allowed = tokens >= 1.0;
    if (take) {
        if (allowed)
            tokens -= 1.0;
        /* Denied with no bucket means burst < 1: the bucket stays "full", nothing to keep. */
        if (!b && allowed) {
            b = rl_insert(sh, h, key, len, now_ms);
            if (!b) {
                pthread_mutex_unlock(&sh->mu);
                return ERR_NOMEM;
            }
        }
        if (b) {
            b->tokens = tokens;
            if (now_ms > b->last_ms)
                b->last_ms = now_ms;
            b->rate = rate;
            b->burst = burst;
        }
    }
    if (b)
        b->used = ++sh->tick;
    pthread_mutex_unlock(&sh->mu);

    rl_fill(out, allowed, tokens, rate, burst);
    return 0;
}

static int rl_mem_take(void *self, const char *key, double rate, double burst, int64_t now_ms,
                       struct rl_result *out)
{
    return rl_mem_op(self, key, rate, burst, now_ms, out, true);
}

static int rl_mem_peek(void *self, const char *key, double rate, double burst, int64_t now_ms,
                       struct rl_result *out)
{
    return rl_mem_op(self, key, rate, burst, now_ms, out, false);
}

static void rl_mem_free(void *self)
{
    struct rl_mem *m = self;

    if (!m)
        return;
    for (unsigned s = 0; s < m->nshards; s++) {
        struct rl_shard *sh = &m->shards[s];
        if (sh->slots) {
            for (uint32_t i = 0; i <= sh->mask; i++)
                free(sh->slots[i].key);
            free(sh->slots);
        }
        pthread_mutex_destroy(&sh->mu);
    }
    free(m->shards);
    free(m);
}

static const struct ratelimit_ops rl_mem_ops = {
    .take = rl_mem_take,
    .peek = rl_mem_peek,
    .free = rl_mem_free,
};

struct ratelimit *ratelimit_mem_new(unsigned max_keys)
{
    struct rl_mem *m;
    unsigned bits = 0;

    if (sodium_init() < 0)
        return NULL;
    if (max_keys == 0)
        max_keys = RL_DEFAULT_KEYS;
    m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    /* Fewer shards than keys would leave shards with no budget at all. */
    m->nshards = RL_SHARDS_MAX;
    while (m->nshards > 1 && m->nshards > max_keys)
        m->nshards /= 2;
    while ((1u << bits) < m->nshards)
        bits++;
    m->shard_shift = 64 - bits;
    m->shards = aligned_alloc(alignof(struct rl_shard), m->nshards * sizeof *m->shards);
    if (!m->shards) {
        free(m);
        return NULL;
    }
    memset(m->shards, 0, m->nshards * sizeof *m->shards);
    randombytes_buf(m->seed, sizeof m->seed);
    randombytes_buf(m->fold_seed, sizeof m->fold_seed);

    for (unsigned s = 0; s < m->nshards; s++) {
        struct rl_shard *sh = &m->shards[s];
        /* Spread the remainder so the shard budgets add up to exactly max_keys. */
        uint32_t cap = max_keys / m->nshards + (s < max_keys % m->nshards ? 1 : 0);
        size_t nslots = 2;

        while (nslots < 2 * (size_t)cap)
            nslots *= 2;
        pthread_mutex_init(&sh->mu, NULL);
        sh->cap = cap;
        sh->mask = (uint32_t)(nslots - 1);
        sh->rng = 0x9e3779b97f4a7c15ull ^ (s + 1); /* nonzero; determinism is fine here */
        sh->slots = calloc(nslots, sizeof *sh->slots);
        if (!sh->slots) {
            m->nshards = s + 1; /* free() below walks only the initialised shards */
            rl_mem_free(m);
            return NULL;
        }
    }
    m->rl.ops = &rl_mem_ops;
    m->rl.self = m;
    return &m->rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (rl)
        rl->ops->free(rl->self);
}

unsigned rl__mem_count(const struct ratelimit *rl)
{
    struct rl_mem *m = rl->self;
    unsigned n = 0;

    for (unsigned s = 0; s < m->nshards; s++) {
        pthread_mutex_lock(&m->shards[s].mu);
        n += m->shards[s].count;
        pthread_mutex_unlock(&m->shards[s].mu);
    }
    return n;
}
