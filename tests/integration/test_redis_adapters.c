/* SPDX-License-Identifier: MIT */
/* test_redis_adapters.c — the rate limiter and the cache on Redis, against real servers.
 *
 * Same servers as test_redis_client.c (exits 77 when scripts/test-servers.sh gave none).
 *
 * Rate limits: the Redis store gives exactly the in-process store's numbers for the same
 * calls (one server and the cluster); two stores on two clients (as two processes would be)
 * share one budget, also when 8 threads race on it; with Redis absent the local fallback
 * answers and still limits, and once a server appears the store goes back to Redis.
 * Cache: a value loaded through one tiered cache is an L2 hit for another (the loader runs
 * once); only the shared key prefixes reach Redis; an invalidation that lands while another
 * reader is loading the old row keeps that row out of the L2 (tombstone + SET NX); an
 * invalidation made while Redis is down is written when it is back (with its saved data,
 * the old value included), before anything is read from it. */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "emporium/cache.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/ratelimit.h"
#include "emporium/redis.h"

#define RL_EPS 1e-9

static const char *redis_url, *cluster_seeds;
static int spare_port;
static char run_id[32], spare_dir[64];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct redis *open_client(const char *url, const char *cluster, int timeout_ms)
{
    struct redis_options o = {
        .url = url, .cluster = cluster, .pool_size = 4, .timeout_ms = timeout_ms};
    struct redis *r = NULL;
    char why[96];
    assert_int_equal(redis_open(&o, &r, why, sizeof why), 0);
    return r;
}

static struct ratelimit *rl_on(struct redis *r, const char *tag)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "t:%s:%s:", run_id, tag);
    struct ratelimit *rl = ratelimit_redis_new(r, prefix, ratelimit_mem_new(1000));
    assert_non_null(rl);
    return rl;
}

/* The call sequence of test_ratelimit.c's first tests, run on any store. */
static void contract(struct ratelimit *rl)
{
    struct rl_result r;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(ratelimit_take(rl, "ip:1", 1.0, 5, 1000, &r), 0);
        assert_true(r.allowed);
        assert_float_equal(r.limit, 5, RL_EPS);
        assert_float_equal(r.remaining, 4 - i, RL_EPS);
        assert_float_equal(r.reset_seconds, i + 1, RL_EPS);
    }
    assert_int_equal(ratelimit_take(rl, "ip:1", 1.0, 5, 1000, &r), 0);
    assert_false(r.allowed);
    assert_float_equal(r.retry_after, 1, RL_EPS);
    /* refill: 2 per second */
    for (int i = 0; i < 3; i++)
        assert_int_equal(ratelimit_take(rl, "k", 2.0, 3, 0, &r), 0);
    assert_int_equal(ratelimit_take(rl, "k", 2.0, 3, 250, &r), 0);
    assert_false(r.allowed);
    assert_float_equal(r.remaining, 0.5, RL_EPS);
    assert_float_equal(r.retry_after, 0.25, RL_EPS);
    assert_int_equal(ratelimit_take(rl, "k", 2.0, 3, 500, &r), 0);
    assert_true(r.allowed);
    assert_float_equal(r.remaining, 0, RL_EPS);
    /* a clock that steps back refills nothing */
    assert_int_equal(ratelimit_take(rl, "k", 2.0, 3, 100, &r), 0);
    assert_false(r.allowed);
    /* peek does not take */
    assert_int_equal(ratelimit_peek(rl, "p", 1.0, 2, 0, &r), 0);
    assert_true(r.allowed);
    assert_float_equal(r.remaining, 2, RL_EPS);
    assert_int_equal(ratelimit_take(rl, "p", 1.0, 2, 0, &r), 0);
    assert_int_equal(ratelimit_peek(rl, "p", 1.0, 2, 500, &r), 0);
    assert_float_equal(r.remaining, 1.5, RL_EPS);
    /* keys are independent; long keys work */
    assert_int_equal(ratelimit_take(rl, "other", 1.0, 1, 1000, &r), 0);
    assert_true(r.allowed);
    char lk[600];
    memset(lk, 'x', sizeof lk - 1);
    lk[sizeof lk - 1] = 0;
    assert_int_equal(ratelimit_take(rl, lk, 1.0, 1, 0, &r), 0);
    assert_true(r.allowed);
    assert_int_equal(ratelimit_take(rl, lk, 1.0, 1, 0, &r), 0);
    assert_false(r.allowed);
    lk[sizeof lk - 2] = 'y'; /* differs only past the kept prefix */
    assert_int_equal(ratelimit_take(rl, lk, 1.0, 1, 0, &r), 0);
    assert_true(r.allowed);
    /* bad arguments */
    assert_int_equal(ratelimit_take(rl, "k", 0, 1, 0, &r), ERR_INVALID);
    assert_int_equal(ratelimit_take(rl, "k", 1, 0, 0, &r), ERR_INVALID);
}

static void test_rl_contract(void **state)
{
    /* The reference: the in-process store. */
    struct ratelimit *mem = ratelimit_mem_new(1000);
    contract(mem);
    ratelimit_free(mem);
    for (int mode = 0; mode < 2; mode++) {
        struct redis *r =
            mode ? open_client(NULL, cluster_seeds, 2000) : open_client(redis_url, NULL, 2000);
        struct ratelimit *rl = rl_on(r, mode ? "contract-c" : "contract-s");
        contract(rl);
        uint64_t remote, fallback;
        bool healthy;
        ratelimit_redis_counts(rl, &remote, &fallback, &healthy);
        assert_int_equal(remote, 19);  /* every valid call of contract() */
        assert_int_equal(fallback, 0); /* every answer above came from Redis */
        assert_true(healthy);
        ratelimit_free(rl);
        redis_close(r);
    }
}

struct racer {
    struct ratelimit *rl;
    int allowed;
};

static void *race(void *arg)
{
    struct racer *x = arg;
    struct rl_result r;
    for (int i = 0; i < 50; i++)
        if (ratelimit_take(x->rl, "shared", 1e-6, 40, 5000, &r) == 0 && r.allowed)
            x->allowed++;
    return NULL;
}

static void test_rl_shared_budget(void **state)
{
    /* Two stores on two clients: two processes' view of one user. */
    struct redis *ra = open_client(NULL, cluster_seeds, 2000);
    struct redis *rb = open_client(NULL, cluster_seeds, 2000);
    struct ratelimit *a = rl_on(ra, "shared"), *b = rl_on(rb, "shared");
    struct rl_result r;
    int allowed = 0;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(ratelimit_take(i % 2 ? a : b, "u:1", 1e-6, 10, 1000, &r), 0);
        allowed += r.allowed;
    }
    assert_int_equal(allowed, 10); /* one budget of 10, not 10 each */
    /* 8 threads on the two stores race for 40 tokens: exactly 40 are granted. */
    pthread_t th[8];
    struct racer x[8];
    for (int i = 0; i < 8; i++) {
        x[i] = (struct racer){i % 2 ? a : b, 0};
        assert_int_equal(pthread_create(&th[i], NULL, race, &x[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        total += x[i].allowed;
    }
    assert_int_equal(total, 40);
    ratelimit_free(a);
    ratelimit_free(b);
    redis_close(ra);
    redis_close(rb);
}

static pid_t spare_start(void)
{
    char port[16];
    snprintf(port, sizeof port, "%d", spare_port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* dies with the test, and holds none of its output pipes */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", spare_dir, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void spare_kill(pid_t pid)
{
    kill(pid, SIGCONT);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
}

static void wait_ping(struct redis *r)
{
    int64_t deadline = mono_ms() + 60000;
    while (redis_ping(r) != 0) {
        assert_true(mono_ms() < deadline);
        sleep_ms(50);
    }
}

static void test_rl_fallback_and_back(void **state)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", spare_port);
    struct redis *r = open_client(url, NULL, 300);
    struct ratelimit *rl = rl_on(r, "fallback");
    struct rl_result res;
    uint64_t remote, fallback;
    bool healthy;
    /* No server: the local store answers, and it still limits. */
    int64_t now = now_ms();
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ratelimit_take(rl, "ip:9", 1e-6, 3, now, &res), 0);
        assert_true(res.allowed);
    }
    assert_int_equal(ratelimit_take(rl, "ip:9", 1e-6, 3, now, &res), 0);
    assert_false(res.allowed);
    ratelimit_redis_counts(rl, &remote, &fallback, &healthy);
    assert_int_equal(remote, 0);
    assert_int_equal(fallback, 4);
    assert_false(healthy);
    /* A server appears: within the retry period (1 s) the store is back on Redis, where this
     * key has a fresh budget. */
    pid_t pid = spare_start();
    wait_ping(r);
    int64_t deadline = mono_ms() + 60000;
    do {
        assert_true(mono_ms() < deadline);
        sleep_ms(20);
        assert_int_equal(ratelimit_take(rl, "ip:10", 1e-6, 3, now, &res), 0);
        ratelimit_redis_counts(rl, &remote, &fallback, &healthy);
    } while (remote == 0);
    assert_true(healthy);
    assert_true(res.allowed);
    spare_kill(pid);
    ratelimit_free(rl);
    redis_close(r);
}

/* ---- cache ------------------------------------------------------------------------------ */

struct loader {
    int calls;
    const char *value;
    struct cache *invalidate; /* when set: cache_del(key) on it while "loading" */
};

static int load(void *vctx, const char *key, struct buf *out)
{
    struct loader *l = vctx;
    l->calls++;
    if (l->invalidate)
        cache_del(l->invalidate, key); /* a writer commits and invalidates meanwhile */
    buf_puts(out, l->value);
    return out->err ? ERR_NOMEM : 0;
}

static struct cache *tiered(struct redis *r, const char *prefix, int cap_ms)
{
    static const char *const shared[] = {"p:", NULL};
    struct cache *c =
        cache_tiered_new(cache_l1_new("t_product", 1 << 20, 4),
                         cache_redis_new(r, "t_product", prefix, 60000), shared, cap_ms);
    assert_non_null(c);
    return c;
}

static bool redis_has(struct redis *r, const char *key)
{
    const char *argv[] = {"EXISTS", key};
    struct redisReply *rep;
    assert_int_equal(redis_command(r, key, strlen(key), 2, argv, NULL, &rep), 0);
    bool has = rep->integer == 1;
    redis_reply_free(rep);
    return has;
}

static void test_cache_shared_between_processes(void **state)
{
    char prefix[64], full[128];
    snprintf(prefix, sizeof prefix, "t:%s:cache:", run_id);
    struct redis *ra = open_client(NULL, cluster_seeds, 2000);
    struct redis *rb = open_client(NULL, cluster_seeds, 2000);
    struct cache *a = tiered(ra, prefix, 5000), *b = tiered(rb, prefix, 5000);
    struct loader l = {0, "{\"id\":1}", NULL};
    struct buf out = BUF_INIT(0);
    assert_int_equal(cache_get_or_load(a, "p:1", load, &l, 300000, &out), 0);
    assert_int_equal(l.calls, 1);
    out.len = 0;
    /* The other process: its L1 is cold, the L2 has it, the database is not asked. */
    assert_int_equal(cache_get_or_load(b, "p:1", load, &l, 300000, &out), 0);
    assert_int_equal(l.calls, 1);
    assert_int_equal(out.len, 8);
    assert_memory_equal(out.p, "{\"id\":1}", 8);
    out.len = 0;
    /* A key outside the shared prefixes stays in L1. */
    assert_int_equal(cache_get_or_load(a, "i:1", load, &l, 300000, &out), 0);
    assert_int_equal(l.calls, 2);
    snprintf(full, sizeof full, "%si:1", prefix);
    assert_false(redis_has(ra, full));
    snprintf(full, sizeof full, "%sp:1", prefix);
    assert_true(redis_has(ra, full));
    /* An invalidation in a: the L2 holds a tombstone, a fresh process loads again. */
    cache_del(a, "p:1");
    struct cache *c = tiered(rb, prefix, 5000);
    out.len = 0;
    l.value = "{\"id\":1,\"v\":2}";
    assert_int_equal(cache_get_or_load(c, "p:1", load, &l, 300000, &out), 0);
    assert_int_equal(l.calls, 3);
    /* The L2 metrics count: b and c hit/missed on layer l2. */
    struct cache_stats st;
    cache_get_stats(c, &st); /* the tiered cache reports its L1 */
    assert_int_equal(st.misses, 1);
    buf_free(&out);
    cache_free(a);
    cache_free(b);
    cache_free(c);
    redis_close(ra);
    redis_close(rb);
}

static void test_cache_invalidation_beats_stale_fill(void **state)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "t:%s:stale:", run_id);
    struct redis *ra = open_client(redis_url, NULL, 2000);
    struct redis *rb = open_client(redis_url, NULL, 2000);
    struct cache *writer = tiered(ra, prefix, 5000), *reader = tiered(rb, prefix, 5000);
    /* The reader misses and loads the old row; the writer's invalidation lands before the
     * reader stores it. The old row must not reach the L2. */
    struct loader slow = {0, "old", writer};
    struct buf out = BUF_INIT(0);
    assert_int_equal(cache_get_or_load(reader, "p:7", load, &slow, 300000, &out), 0);
    assert_memory_equal(out.p, "old", 3); /* the reader's own caller gets what it read */
    out.len = 0;
    struct loader fresh = {0, "new", NULL};
    struct cache *third = tiered(rb, prefix, 5000);
    assert_int_equal(cache_get_or_load(third, "p:7", load, &fresh, 300000, &out), 0);
    assert_int_equal(fresh.calls, 1); /* not served "old" from the L2 */
    assert_int_equal(out.len, 3);
    assert_memory_equal(out.p, "new", 3);
    buf_free(&out);
    cache_free(writer);
    cache_free(reader);
    cache_free(third);
    redis_close(ra);
    redis_close(rb);
}

static void test_cache_invalidation_survives_outage(void **state)
{
    char url[64], prefix[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", spare_port);
    snprintf(prefix, sizeof prefix, "t:%s:outage:", run_id);
    pid_t pid = spare_start();
    struct redis *ra = open_client(url, NULL, 200);
    struct redis *rb = open_client(url, NULL, 200);
    wait_ping(ra);
    struct cache *a = tiered(ra, prefix, 5000), *b = tiered(rb, prefix, 5000);
    struct loader l = {0, "v1", NULL};
    struct buf out = BUF_INIT(0);
    assert_int_equal(cache_get_or_load(a, "p:3", load, &l, 300000, &out), 0);
    /* Redis goes away with its data saved, so the old value comes back with it. */
    struct timeval tv = {5, 0};
    redisContext *dc = redisConnectWithTimeout("127.0.0.1", spare_port, tv);
    assert_true(dc && !dc->err);
    redisReply *saved = redisCommand(dc, "SAVE");
    assert_true(saved && saved->type == REDIS_REPLY_STATUS);
    freeReplyObject(saved);
    redisFree(dc);
    spare_kill(pid);
    cache_del(a, "p:3"); /* refused: kept as pending */
    struct cache_stats st;
    pid = spare_start(); /* loads the saved data: p:3 is v1 again in Redis */
    wait_ping(ra);
    /* The next use of a's L2 writes the pending tombstone first: a does not read the old
     * value back from Redis (its L1 entry went at once), it loads the new row... */
    out.len = 0;
    l.value = "v2";
    assert_int_equal(cache_get_or_load(a, "p:3", load, &l, 300000, &out), 0);
    assert_int_equal(l.calls, 2);
    assert_int_equal(out.len, 2);
    assert_memory_equal(out.p, "v2", 2);
    cache_get_stats(a, &st);
    assert_int_equal(st.misses, 2);
    /* ...and another process finds the tombstone, not v1. */
    struct cache *l2b = cache_redis_new(rb, "t_probe", prefix, 60000);
    assert_non_null(l2b);
    out.len = 0;
    assert_int_equal(cache_get(l2b, "p:3", &out), ERR_NOTFOUND);
    struct loader l3 = {0, "v2", NULL};
    assert_int_equal(cache_get_or_load(b, "p:3", load, &l3, 300000, &out), 0);
    assert_int_equal(l3.calls, 1);
    buf_free(&out);
    cache_free(l2b);
    cache_free(a);
    cache_free(b);
    spare_kill(pid);
    redis_close(ra);
    redis_close(rb);
}

int main(void)
{
    redis_url = getenv("EMPORIUM_TEST_REDIS_URL");
    cluster_seeds = getenv("EMPORIUM_TEST_REDIS_CLUSTER");
    const char *sp = getenv("EMPORIUM_TEST_REDIS_SPARE_PORT");
    if (!redis_url || !cluster_seeds || !sp) {
        printf("skipped: EMPORIUM_TEST_REDIS_URL/_CLUSTER/_SPARE_PORT not set "
               "(scripts/test-servers.sh starts the servers)\n");
        return 77;
    }
    spare_port = atoi(sp);
    snprintf(run_id, sizeof run_id, "%d.%lld", (int)getpid(), (long long)now_ms());
    snprintf(spare_dir, sizeof spare_dir, "/tmp/emp-redis-spare.%d", (int)getpid());
    mkdir(spare_dir, 0700);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rl_contract),
        cmocka_unit_test(test_rl_shared_budget),
        cmocka_unit_test(test_rl_fallback_and_back),
        cmocka_unit_test(test_cache_shared_between_processes),
        cmocka_unit_test(test_cache_invalidation_beats_stale_fill),
        cmocka_unit_test(test_cache_invalidation_survives_outage),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char dump[96];
    snprintf(dump, sizeof dump, "%s/dump.rdb", spare_dir);
    unlink(dump);
    rmdir(spare_dir);
    return rc;
}
