/* SPDX-License-Identifier: MIT */
/* test_cache.c — the in-process L1 cache: hits and misses, TTL, the byte bound and LRU order,
 * single-flight loading, invalidation racing a load, metrics, and a multi-threaded stress run
 * (meant for the sanitizer build). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "emporium/cache.h"
#include "emporium/err.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_basic(void **state)
{
    struct cache *c = cache_l1_new("t_basic", 1 << 20, 4);
    assert_non_null(c);
    struct buf b = BUF_INIT(0);
    assert_int_equal(cache_get(c, "k", &b), ERR_NOTFOUND);
    assert_int_equal(cache_set(c, "k", "hello", 5, 10000), 0);
    assert_int_equal(cache_get(c, "k", &b), 0);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.p, "hello", 5);
    buf_free(&b);
    /* replace */
    assert_int_equal(cache_set(c, "k", "bye", 3, 10000), 0);
    assert_int_equal(cache_get(c, "k", &b), 0);
    assert_int_equal(b.len, 3);
    buf_free(&b);
    /* empty values are values */
    assert_int_equal(cache_set(c, "empty", "", 0, 10000), 0);
    assert_int_equal(cache_get(c, "empty", &b), 0);
    assert_int_equal(b.len, 0);
    buf_free(&b);
    cache_del(c, "k");
    assert_int_equal(cache_get(c, "k", &b), ERR_NOTFOUND);
    cache_del(c, "never there"); /* harmless */
    assert_int_equal(cache_set(c, "bad ttl", "x", 1, 0), ERR_INVALID);
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.invalidations, 1);
    assert_int_equal(st.entries, 1);
    cache_clear(c);
    cache_get_stats(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    cache_free(c);
    cache_free(NULL);
}

static void test_ttl(void **state)
{
    struct cache *c = cache_l1_new("t_ttl", 1 << 20, 1);
    struct buf b = BUF_INIT(0);
    assert_int_equal(cache_set(c, "short", "1", 1, 30), 0);
    assert_int_equal(cache_set(c, "long", "2", 1, 10000), 0);
    assert_int_equal(cache_get(c, "short", &b), 0);
    sleep_ms(60);
    assert_int_equal(cache_get(c, "short", &b), ERR_NOTFOUND);
    assert_int_equal(cache_get(c, "long", &b), 0);
    buf_free(&b);
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.expirations, 1);
    assert_int_equal(st.entries, 1);
    cache_free(c);
}

static void test_bound_and_lru(void **state)
{
    /* one shard of 16 KiB; ~1 KiB values */
    struct cache *c = cache_l1_new("t_lru", 16 * 1024, 1);
    char val[1000];
    memset(val, 'v', sizeof val);
    struct buf b = BUF_INIT(0);
    assert_int_equal(cache_set(c, "hot", val, sizeof val, 10000), 0);
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        assert_int_equal(cache_set(c, k, val, sizeof val, 10000), 0);
        /* touching "hot" keeps it at the front of the LRU */
        assert_int_equal(cache_get(c, "hot", &b), 0);
        b.len = 0;
        struct cache_stats st;
        cache_get_stats(c, &st);
        assert_true(st.bytes <= 16 * 1024);
    }
    buf_free(&b);
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_true(st.evictions >= 80);
    assert_true(st.entries >= 10 && st.entries <= 16);
    assert_int_equal(cache_get(c, "hot", &b), 0);
    assert_int_equal(cache_get(c, "k99", &b), 0);           /* the newest survives */
    assert_int_equal(cache_get(c, "k0", &b), ERR_NOTFOUND); /* the oldest went first */
    buf_free(&b);
    /* an entry bigger than half the budget is refused, not stored */
    char *big = calloc(1, 10 * 1024);
    assert_int_equal(cache_set(c, "big", big, 10 * 1024, 10000), ERR_TOOBIG);
    assert_int_equal(cache_get(c, "big", &b), ERR_NOTFOUND);
    free(big);
    cache_free(c);
}

/* ---- single-flight ---------------------------------------------------------------------- */

/* The loader blocks on a gate the test opens, so the test decides when a load finishes and
 * can wait (on counters, with a generous deadline) until the other callers really are
 * waiting for it: the hand-off is then certain, not a matter of thread timing. */
struct loader {
    atomic_int calls;
    bool gated;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    int fail; /* error to return, 0 = succeed */
    char value[32];
};

static void loader_init(struct loader *l, bool gated, int fail, const char *value)
{
    atomic_init(&l->calls, 0);
    l->gated = gated;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->open = false;
    l->fail = fail;
    snprintf(l->value, sizeof l->value, "%s", value);
}

static void loader_open(struct loader *l)
{
    pthread_mutex_lock(&l->mu);
    l->open = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static void loader_deinit(struct loader *l)
{
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
}

static int gated_load(void *ctx, const char *key, struct buf *out)
{
    struct loader *l = ctx;
    atomic_fetch_add(&l->calls, 1);
    if (l->gated) {
        pthread_mutex_lock(&l->mu);
        while (!l->open)
            pthread_cond_wait(&l->cv, &l->mu);
        pthread_mutex_unlock(&l->mu);
    }
    if (l->fail)
        return l->fail;
    buf_puts(out, l->value);
    return 0;
}

/* Waits (up to 30 s) until the loader runs `calls` times or the cache counts `coalesced`
 * waiters; -1 means ignore. Fails the test at the deadline. */
static void wait_for(struct cache *c, struct loader *l, int calls, long coalesced)
{
    for (int i = 0; i < 30000; i++) {
        struct cache_stats st;
        cache_get_stats(c, &st);
        if ((calls < 0 || atomic_load(&l->calls) >= calls) &&
            (coalesced < 0 || (long)st.coalesced >= coalesced))
            return;
        sleep_ms(1);
    }
    fail_msg("the loader/waiters did not arrive within 30 s");
}

struct sf_arg {
    struct cache *c;
    struct loader *l;
    const char *key;
    int rc;
    char got[32];
};

static void *sf_thread(void *p)
{
    struct sf_arg *a = p;
    struct buf b = BUF_INIT(0);
    a->rc = cache_get_or_load(a->c, a->key, gated_load, a->l, 10000, &b);
    if (a->rc == 0)
        snprintf(a->got, sizeof a->got, "%.*s", (int)b.len, b.p ? b.p : "");
    buf_free(&b);
    return NULL;
}

static void test_single_flight(void **state)
{
    struct cache *c = cache_l1_new("t_sf", 1 << 20, 8);
    struct loader l;
    loader_init(&l, true, 0, "loaded");
    enum { T = 16 };
    pthread_t th[T];
    struct sf_arg args[T];
    /* The leader starts the load and blocks in the loader; then T-1 more callers arrive and
     * must all wait for that one load (coalesced), none of them load or hit. */
    args[0] = (struct sf_arg){.c = c, .l = &l, .key = "cold"};
    pthread_create(&th[0], NULL, sf_thread, &args[0]);
    wait_for(c, &l, 1, -1);
    for (int i = 1; i < T; i++) {
        args[i] = (struct sf_arg){.c = c, .l = &l, .key = "cold"};
        pthread_create(&th[i], NULL, sf_thread, &args[i]);
    }
    wait_for(c, &l, -1, T - 1);
    loader_open(&l);
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&l.calls), 1);
    for (int i = 0; i < T; i++) {
        assert_int_equal(args[i].rc, 0);
        assert_string_equal(args[i].got, "loaded");
    }
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_int_equal(st.loads, 1);
    assert_int_equal(st.coalesced, T - 1); /* the value was handed to every waiter */
    assert_int_equal(st.hits, 0);
    assert_int_equal(st.misses, T);
    /* now a hit, no load */
    struct buf b = BUF_INIT(0);
    assert_int_equal(cache_get_or_load(c, "cold", gated_load, &l, 10000, &b), 0);
    assert_int_equal(atomic_load(&l.calls), 1);
    buf_free(&b);
    loader_deinit(&l);

    /* errors reach every waiter and are not cached */
    struct loader bad;
    loader_init(&bad, true, ERR_UNAVAILABLE, "");
    args[0] = (struct sf_arg){.c = c, .l = &bad, .key = "broken"};
    pthread_create(&th[0], NULL, sf_thread, &args[0]);
    wait_for(c, &bad, 1, -1);
    for (int i = 1; i < 4; i++) {
        args[i] = (struct sf_arg){.c = c, .l = &bad, .key = "broken"};
        pthread_create(&th[i], NULL, sf_thread, &args[i]);
    }
    wait_for(c, &bad, -1, T - 1 + 3);
    loader_open(&bad);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].rc, ERR_UNAVAILABLE);
    }
    assert_int_equal(atomic_load(&bad.calls), 1);
    bad.fail = 0;
    snprintf(bad.value, sizeof bad.value, "recovered");
    assert_int_equal(cache_get_or_load(c, "broken", gated_load, &bad, 10000, &b), 0);
    assert_int_equal(atomic_load(&bad.calls), 2);
    buf_free(&b);
    loader_deinit(&bad);
    cache_free(c);
}

/* A write that commits and invalidates while a reader is loading the old row must win: the
 * old row is not stored, and the next reader loads again. */
static void test_invalidate_during_load(void **state)
{
    struct cache *c = cache_l1_new("t_race", 1 << 20, 2);
    struct loader l;
    loader_init(&l, true, 0, "old");
    struct sf_arg a = {.c = c, .l = &l, .key = "p:1"};
    pthread_t th;
    pthread_create(&th, NULL, sf_thread, &a);
    wait_for(c, &l, 1, -1); /* the load is in flight (blocked in the loader) */
    cache_del(c, "p:1");
    /* a reader arriving after the invalidation does not join the stale load */
    struct loader fresh;
    loader_init(&fresh, false, 0, "new");
    struct buf b = BUF_INIT(0);
    assert_int_equal(cache_get_or_load(c, "p:1", gated_load, &fresh, 10000, &b), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.p, "new", 3);
    assert_int_equal(atomic_load(&fresh.calls), 1);
    buf_free(&b);
    loader_open(&l);
    pthread_join(th, NULL);
    assert_int_equal(a.rc, 0);
    assert_string_equal(a.got, "old"); /* it asked before the write finished */
    assert_int_equal(cache_get(c, "p:1", &b), 0);
    assert_memory_equal(b.p, "new", 3); /* the stale load did not overwrite */
    buf_free(&b);
    loader_deinit(&l);
    loader_deinit(&fresh);
    cache_free(c);
}

static void test_metrics(void **state)
{
    struct cache *c = cache_l1_new("t_metrics", 1 << 20, 2);
    struct buf b = BUF_INIT(0);
    cache_get(c, "nope", &b);
    cache_metrics_write(&b, NULL);
    assert_int_equal(b.err, 0);
    assert_non_null(strstr(b.p, "# TYPE emporium_cache_hits_total counter"));
    assert_non_null(strstr(b.p, "emporium_cache_misses_total{cache=\"t_metrics\",layer=\"l1\"} 1"));
    assert_non_null(
        strstr(b.p, "emporium_cache_evictions_total{cache=\"t_metrics\",layer=\"l1\"} 0"));
    assert_non_null(
        strstr(b.p, "emporium_cache_max_bytes{cache=\"t_metrics\",layer=\"l1\"} 1048576"));
    /* one HELP/TYPE per family however many caches exist */
    struct cache *d = cache_l1_new("t_metrics2", 1 << 20, 2);
    b.len = 0;
    cache_metrics_write(&b, NULL);
    char *first = strstr(b.p, "# TYPE emporium_cache_hits_total");
    assert_non_null(first);
    assert_null(strstr(first + 1, "# TYPE emporium_cache_hits_total"));
    buf_free(&b);
    cache_free(d);
    cache_free(c);
}

/* ---- stress --------------------------------------------------------------------------- */

struct stress_arg {
    struct cache *c;
    unsigned seed;
    long lookups; /* get_or_load calls made */
    long wrong;   /* values that were not what the key holds (checked in the main thread) */
};

static int stress_load(void *ctx, const char *key, struct buf *out)
{
    buf_puts(out, key);
    buf_puts(out, "-value");
    return 0;
}

static void *stress_thread(void *p)
{
    struct stress_arg *a = p;
    struct buf b = BUF_INIT(0);
    for (int i = 0; i < 20000; i++) {
        unsigned r = rand_r(&a->seed);
        char key[24];
        snprintf(key, sizeof key, "key-%u", r % 500);
        b.len = 0;
        switch (r % 10) {
        case 0:
            cache_del(a->c, key);
            break;
        case 1: {
            char v[300];
            memset(v, 'x', (r >> 8) % sizeof v);
            cache_set(a->c, key, v, (r >> 8) % sizeof v, 1 + (int)(r % 50));
            break;
        }
        case 2:
            if (r % 1000 == 2)
                cache_clear(a->c);
            break;
        default:
            a->lookups++;
            /* a value is either the loader's (key-N-value) or a set's (x…) */
            if (cache_get_or_load(a->c, key, stress_load, NULL, 1 + (int)(r % 100), &b) != 0)
                a->wrong++;
            else if (b.len > 0 && b.p[0] == 'k' &&
                     !(b.len == strlen(key) + 6 && !memcmp(b.p, key, strlen(key))))
                a->wrong++;
            else if (b.len > 0 && b.p[0] != 'k' && b.p[0] != 'x')
                a->wrong++;
        }
    }
    buf_free(&b);
    return NULL;
}

static void test_stress(void **state)
{
    struct cache *c = cache_l1_new("t_stress", 64 * 1024, 8);
    enum { T = 8 };
    pthread_t th[T];
    struct stress_arg a[T];
    for (int i = 0; i < T; i++) {
        a[i] = (struct stress_arg){c, (unsigned)i * 7919u + 1, 0, 0};
        pthread_create(&th[i], NULL, stress_thread, &a[i]);
    }
    long lookups = 0, wrong = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        lookups += a[i].lookups;
        wrong += a[i].wrong;
    }
    assert_int_equal(wrong, 0);
    struct cache_stats st;
    cache_get_stats(c, &st);
    assert_true(st.bytes <= 64 * 1024);
    /* Every lookup was counted exactly once, as a hit or a miss, and only misses load. */
    assert_true(lookups > 0);
    assert_int_equal(st.hits + st.misses, (uint64_t)lookups);
    assert_true(st.hits > 0 && st.misses > 0);
    assert_true(st.loads <= st.misses);
    assert_int_equal(st.loads + st.coalesced, st.misses);
    cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_bound_and_lru),
        cmocka_unit_test(test_single_flight),
        cmocka_unit_test(test_invalidate_during_load),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
