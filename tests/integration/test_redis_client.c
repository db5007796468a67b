/* SPDX-License-Identifier: MIT */
/* test_redis_client.c — the Redis client (src/adapters/redis.c) against real servers.
 *
 * Needs the servers of scripts/test-servers.sh: EMPORIUM_TEST_REDIS_URL (one server),
 * EMPORIUM_TEST_REDIS_CLUSTER (3 masters + 3 replicas) and EMPORIUM_TEST_REDIS_SPARE_PORT (a
 * free port where this test starts, kills and restarts its own redis-server). Without them
 * it says so and exits 77 (skipped).
 *
 * - keyslot: the documented values (foo = 12182, {tag} hashing).
 * - standalone: binary-safe round trips, error replies, the pool bound under 16 threads,
 *   reconnect after the server killed every connection (CLIENT KILL), command timeout (and
 *   the back-off after it: the next call fails at once, a later one works).
 * - down: a server that is not there fails fast; started, it answers; killed, calls fail;
 *   restarted, the same client reconnects (waits are polls with a 60 s deadline).
 * - cluster: keys spread over the three masters; a slot migrated during the test with
 *   CLUSTER SETSLOT IMPORTING/MIGRATING + MIGRATE answers -ASK for the moved key (followed),
 *   and after SETSLOT NODE answers -MOVED (followed, map updated); values stay readable. */
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

#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/redis.h"

static const char *redis_url, *cluster_seeds;
static int spare_port;
static char run_id[32]; /* keys of this run: runs never see each other's keys */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* SET/GET/DEL helpers through the client. */
static int r_set(struct redis *r, const char *k, const char *v)
{
    const char *argv[] = {"SET", k, v};
    struct redisReply *rep;
    int rc = redis_command(r, k, strlen(k), 3, argv, NULL, &rep);
    if (rc == 0) {
        rc = rep->type == REDIS_REPLY_STATUS ? 0 : ERR_INTERNAL;
        redis_reply_free(rep);
    }
    return rc;
}

/* 0 and the value in buf, ERR_NOTFOUND for nil, or the client's error. */
static int r_get(struct redis *r, const char *k, char *buf, size_t cap)
{
    const char *argv[] = {"GET", k};
    struct redisReply *rep;
    int rc = redis_command(r, k, strlen(k), 2, argv, NULL, &rep);
    if (rc < 0)
        return rc;
    if (rep->type == REDIS_REPLY_STRING)
        snprintf(buf, cap, "%.*s", (int)rep->len, rep->str);
    else
        rc = rep->type == REDIS_REPLY_NIL ? ERR_NOTFOUND : ERR_INTERNAL;
    redis_reply_free(rep);
    return rc;
}

static struct redis *open_url(const char *url, int pool, int timeout_ms)
{
    struct redis_options o = {.url = url, .pool_size = pool, .timeout_ms = timeout_ms};
    struct redis *r = NULL;
    char why[96];
    assert_int_equal(redis_open(&o, &r, why, sizeof why), 0);
    return r;
}

static struct redis *open_cluster(void)
{
    struct redis_options o = {.cluster = cluster_seeds, .pool_size = 4, .timeout_ms = 2000};
    struct redis *r = NULL;
    char why[96];
    assert_int_equal(redis_open(&o, &r, why, sizeof why), 0);
    return r;
}

/* A direct hiredis connection (the test's own view of a server, not the client under test). */
static redisContext *direct(int port)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    return c;
}

static void test_keyslot(void **state)
{
    assert_int_equal(redis_keyslot("foo", 3), 12182);
    assert_int_equal(redis_keyslot("123456789", 9), 0x31C3 & 16383);
    assert_int_equal(redis_keyslot("{user1000}.following", 20), redis_keyslot("user1000", 8));
    assert_int_equal(redis_keyslot("foo{}{bar}", 10), redis_keyslot("foo{}{bar}", 10));
    assert_int_not_equal(redis_keyslot("foo{}{bar}", 10), redis_keyslot("bar", 3));
    assert_int_equal(redis_keyslot("foo{{bar}}zap", 13), redis_keyslot("{bar", 4));
}

static void test_options(void **state)
{
    struct redis *r = NULL;
    char why[96];
    struct redis_options bad[] = {
        {.url = "http://x"},
        {.url = "redis://"},
        {.url = "redis://h:0"},
        {.url = "redis://h:6379/99"},
        {.cluster = "a:1,,b"},
        {.cluster = "a:99999"},
        {.url = "redis://h", .cluster = "h:1"},
        {0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(redis_open(&bad[i], &r, why, sizeof why), ERR_INVALID);
    /* A password never shows in the message. */
    struct redis_options pw = {.url = "redis://:s3cret@/x"};
    assert_int_equal(redis_open(&pw, &r, why, sizeof why), ERR_INVALID);
    assert_null(strstr(why, "s3cret"));
    struct redis_options ok = {.url = "redis://:pw@127.0.0.1:1/3"};
    assert_int_equal(redis_open(&ok, &r, why, sizeof why), 0);
    assert_false(redis_is_cluster(r));
    redis_close(r);
}

static void test_standalone_roundtrip(void **state)
{
    struct redis *r = open_url(redis_url, 4, 2000);
    char k[64], v[64];
    snprintf(k, sizeof k, "t:%s:rt", run_id);
    assert_int_equal(r_get(r, k, v, sizeof v), ERR_NOTFOUND);
    assert_int_equal(r_set(r, k, "hello"), 0);
    assert_int_equal(r_get(r, k, v, sizeof v), 0);
    assert_string_equal(v, "hello");
    /* Binary-safe: a NUL inside the value. */
    const char bin[] = {'a', 0, 'b'};
    const char *argv[] = {"SET", k, bin};
    size_t lens[] = {3, strlen(k), 3};
    struct redisReply *rep;
    assert_int_equal(redis_command(r, k, strlen(k), 3, argv, lens, &rep), 0);
    redis_reply_free(rep);
    const char *get[] = {"GET", k};
    assert_int_equal(redis_command(r, k, strlen(k), 2, get, NULL, &rep), 0);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_int_equal(rep->len, 3);
    assert_memory_equal(rep->str, bin, 3);
    redis_reply_free(rep);
    /* An error reply is a reply, not a failure. */
    const char *bad[] = {"INCR", k};
    assert_int_equal(redis_command(r, k, strlen(k), 2, bad, NULL, &rep), 0);
    assert_int_equal(rep->type, REDIS_REPLY_ERROR);
    redis_reply_free(rep);
    const char *del[] = {"DEL", k};
    assert_int_equal(redis_command(r, k, strlen(k), 2, del, NULL, &rep), 0);
    assert_int_equal(rep->integer, 1);
    redis_reply_free(rep);
    assert_int_equal(redis_ping(r), 0);
    /* A script, twice: the first by EVAL (learning its digest), then EVALSHA. */
    static const char script[] = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    const char *keys[] = {k};
    const char *args[] = {"5"};
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(redis_script(r, script, 1, keys, 1, args, &rep), 0);
        assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
        assert_int_equal(rep->integer, 5 * i);
        redis_reply_free(rep);
    }
    /* SCRIPT FLUSH: EVALSHA answers NOSCRIPT, the client falls back to EVAL. */
    redisContext *c = direct(atoi(strrchr(redis_url, ':') + 1));
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    redisFree(c);
    assert_int_equal(redis_script(r, script, 1, keys, 1, args, &rep), 0);
    assert_int_equal(rep->integer, 15);
    redis_reply_free(rep);
    assert_int_equal(redis_command(r, k, strlen(k), 2, del, NULL, &rep), 0);
    redis_reply_free(rep);
    redis_close(r);
}

struct hammer {
    struct redis *r;
    int id, errors;
};

static void *hammer(void *arg)
{
    struct hammer *h = arg;
    char k[64], v[32], got[32];
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof k, "t:%s:h%d", run_id, h->id);
        snprintf(v, sizeof v, "%d", i);
        if (r_set(h->r, k, v) < 0 || r_get(h->r, k, got, sizeof got) < 0 || strcmp(v, got))
            h->errors++;
    }
    const char *del[] = {"DEL", k};
    struct redisReply *rep;
    if (redis_command(h->r, k, strlen(k), 2, del, NULL, &rep) == 0)
        redis_reply_free(rep);
    return NULL;
}

static void test_pool_bound(void **state)
{
    /* 16 threads, 2 connections: everyone waits their turn, nobody fails (the wait is
     * bounded by the 5 s timeout, far above a local round trip). */
    struct redis *r = open_url(redis_url, 2, 5000);
    pthread_t th[16];
    struct hammer h[16];
    for (int i = 0; i < 16; i++) {
        h[i] = (struct hammer){r, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &h[i]), 0);
    }
    for (int i = 0; i < 16; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(h[i].errors, 0);
    }
    struct redis_stats st;
    redis_get_stats(r, &st);
    assert_true(st.connects <= 2);
    assert_true(st.open <= 2);
    assert_true(st.commands >= 16 * 400);
    redis_close(r);
}

static void test_reconnect_after_kill(void **state)
{
    struct redis *r = open_url(redis_url, 2, 2000);
    char k[64], v[32];
    snprintf(k, sizeof k, "t:%s:rc", run_id);
    assert_int_equal(r_set(r, k, "1"), 0);
    struct redis_stats before, after;
    redis_get_stats(r, &before);
    /* The server closes every normal client connection (ours is idle in the pool). */
    redisContext *c = direct(atoi(strrchr(redis_url, ':') + 1));
    redisReply *kr = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
    assert_non_null(kr);
    assert_true(kr->integer >= 1);
    freeReplyObject(kr);
    redisFree(c);
    /* The next command notices, reconnects and succeeds: the caller sees nothing. */
    assert_int_equal(r_get(r, k, v, sizeof v), 0);
    assert_string_equal(v, "1");
    redis_get_stats(r, &after);
    assert_true(after.connects > before.connects);
    assert_int_equal(after.failures, before.failures);
    const char *del[] = {"DEL", k};
    struct redisReply *rep;
    assert_int_equal(redis_command(r, k, strlen(k), 2, del, NULL, &rep), 0);
    redis_reply_free(rep);
    redis_close(r);
}

static void test_command_timeout(void **state)
{
    /* BLPOP blocks on the server for 3 s; the client gives up after 200 ms. */
    struct redis *r = open_url(redis_url, 2, 200);
    char k[64];
    snprintf(k, sizeof k, "t:%s:empty", run_id);
    const char *argv[] = {"BLPOP", k, "3"};
    struct redisReply *rep = NULL;
    int64_t t0 = mono_ms();
    assert_int_equal(redis_command(r, k, strlen(k), 3, argv, NULL, &rep), ERR_UNAVAILABLE);
    assert_null(rep);
    assert_true(mono_ms() - t0 < 3000);
    /* The node is in its back-off: the next call fails at once instead of waiting. */
    t0 = mono_ms();
    assert_int_equal(redis_ping(r), ERR_UNAVAILABLE);
    assert_true(mono_ms() - t0 < 100);
    /* Then it is tried again, on a fresh connection (the timed-out one was dropped). */
    int64_t deadline = mono_ms() + 60000;
    while (redis_ping(r) != 0)
        assert_true(mono_ms() < deadline);
    redis_close(r);
}

/* ---- a server of our own on the spare port ---------------------------------------------- */

static char spare_dir[64];

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
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
}

/* Polls until redis_ping succeeds (the client's back-off is at most 2 s); 60 s deadline. */
static void wait_ping(struct redis *r)
{
    int64_t deadline = mono_ms() + 60000;
    while (redis_ping(r) != 0) {
        assert_true(mono_ms() < deadline);
        sleep_ms(50);
    }
}

static void test_down_and_back(void **state)
{
    char url[64], k[64], v[32];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", spare_port);
    snprintf(k, sizeof k, "t:%s:down", run_id);
    struct redis *r = open_url(url, 2, 500);
    /* Nothing listens: a fast failure, and the node's back-off makes the next one instant. */
    assert_int_equal(r_set(r, k, "x"), ERR_UNAVAILABLE);
    int64_t t0 = mono_ms();
    assert_int_equal(r_get(r, k, v, sizeof v), ERR_UNAVAILABLE);
    assert_true(mono_ms() - t0 < 400);

    pid_t pid = spare_start();
    wait_ping(r);
    assert_int_equal(r_set(r, k, "1"), 0);
    spare_kill(pid);
    /* The pooled connection is dead: the command fails (no server to retry on). */
    int64_t deadline = mono_ms() + 60000;
    while (r_get(r, k, v, sizeof v) != ERR_UNAVAILABLE)
        assert_true(mono_ms() < deadline);
    assert_int_equal(redis_ping(r), ERR_UNAVAILABLE);

    pid = spare_start();
    wait_ping(r);
    /* A fresh server (no persistence): the key is gone, the client works again. */
    assert_int_equal(r_get(r, k, v, sizeof v), ERR_NOTFOUND);
    assert_int_equal(r_set(r, k, "2"), 0);
    assert_int_equal(r_get(r, k, v, sizeof v), 0);
    assert_string_equal(v, "2");
    spare_kill(pid);
    redis_close(r);
}

/* ---- cluster ---------------------------------------------------------------------------- */

struct master {
    int port;
    char id[48];
};

/* The masters (port, node id) and the master owning `slot`, from CLUSTER SLOTS of a seed. */
static int masters(struct master *m, int cap, unsigned slot, int *owner)
{
    int seed = atoi(strchr(cluster_seeds, ':') + 1); /* the first seed's port */
    redisContext *c = direct(seed);
    redisReply *rep = redisCommand(c, "CLUSTER SLOTS");
    assert_non_null(rep);
    int n = 0;
    *owner = -1;
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *e = rep->element[i];
        int port = (int)e->element[2]->element[1]->integer;
        int found = -1;
        for (int j = 0; j < n; j++)
            if (m[j].port == port)
                found = j;
        if (found < 0 && n < cap) {
            m[n].port = port;
            snprintf(m[n].id, sizeof m[n].id, "%.*s", (int)e->element[2]->element[2]->len,
                     e->element[2]->element[2]->str);
            found = n++;
        }
        if ((long long)slot >= e->element[0]->integer && (long long)slot <= e->element[1]->integer)
            *owner = found;
    }
    freeReplyObject(rep);
    redisFree(c);
    return n;
}

static void on_node(int port, const char *fmt, ...)
{
    redisContext *c = direct(port);
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    assert_non_null(rep);
    if (rep->type == REDIS_REPLY_ERROR)
        fprintf(stderr, "node %d: %s\n", port, rep->str);
    assert_int_not_equal(rep->type, REDIS_REPLY_ERROR);
    freeReplyObject(rep);
    redisFree(c);
}

/* Moves every key of `slot` from src to dst, as a real slot migration does: other suites
 * share the cluster, and a key they left behind may hash to the same slot (src then refuses
 * to give the slot away while it holds it). */
static void migrate_slot_keys(const struct master *src, const struct master *dst, unsigned slot)
{
    int64_t deadline = mono_ms() + 60000;
    for (;;) {
        assert_true(mono_ms() < deadline);
        redisContext *c = direct(src->port);
        redisReply *rep = redisCommand(c, "CLUSTER GETKEYSINSLOT %u 100", slot);
        assert_non_null(rep);
        assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
        size_t n = rep->elements;
        for (size_t i = 0; i < n; i++)
            on_node(src->port, "MIGRATE 127.0.0.1 %d %b 0 5000", dst->port, rep->element[i]->str,
                    (size_t)rep->element[i]->len);
        freeReplyObject(rep);
        redisFree(c);
        if (n == 0)
            return;
    }
}

/* Until every master agrees that `slot` is owned by the node on `port` (gossip). */
static void wait_owner(const struct master *m, int n, unsigned slot, int port)
{
    int64_t deadline = mono_ms() + 60000;
    for (;;) {
        int agree = 0;
        for (int i = 0; i < n; i++) {
            redisContext *c = direct(m[i].port);
            redisReply *rep = redisCommand(c, "CLUSTER SLOTS");
            for (size_t j = 0; rep && j < rep->elements; j++) {
                redisReply *e = rep->element[j];
                if ((long long)slot >= e->element[0]->integer &&
                    (long long)slot <= e->element[1]->integer &&
                    e->element[2]->element[1]->integer == port)
                    agree++;
            }
            freeReplyObject(rep);
            redisFree(c);
        }
        if (agree == n)
            return;
        assert_true(mono_ms() < deadline);
        sleep_ms(20);
    }
}

static void test_cluster_spread(void **state)
{
    struct redis *r = open_cluster();
    assert_true(redis_is_cluster(r));
    char k[64], v[32];
    /* 60 keys land on all three masters; each reads back. */
    for (int i = 0; i < 60; i++) {
        snprintf(k, sizeof k, "t:%s:s%d", run_id, i);
        snprintf(v, sizeof v, "%d", i);
        assert_int_equal(r_set(r, k, v), 0);
    }
    for (int i = 0; i < 60; i++) {
        char got[32];
        snprintf(k, sizeof k, "t:%s:s%d", run_id, i);
        snprintf(v, sizeof v, "%d", i);
        assert_int_equal(r_get(r, k, got, sizeof got), 0);
        assert_string_equal(got, v);
        const char *del[] = {"DEL", k};
        struct redisReply *rep;
        assert_int_equal(redis_command(r, k, strlen(k), 2, del, NULL, &rep), 0);
        redis_reply_free(rep);
    }
    struct redis_stats st;
    redis_get_stats(r, &st);
    assert_true(st.map_reloads >= 1);
    assert_true(st.nodes >= 3);
    assert_int_equal(st.failures, 0);
    /* Keys with one {tag} share a slot, so a script may use both. */
    char k1[64], k2[64];
    snprintf(k1, sizeof k1, "{t:%s}:a", run_id);
    snprintf(k2, sizeof k2, "{t:%s}:b", run_id);
    static const char script[] = "redis.call('SET', KEYS[1], ARGV[1]) "
                                 "redis.call('SET', KEYS[2], ARGV[1]) "
                                 "return redis.call('DEL', KEYS[1], KEYS[2])";
    const char *keys[] = {k1, k2};
    const char *args[] = {"x"};
    struct redisReply *rep;
    assert_int_equal(redis_script(r, script, 2, keys, 1, args, &rep), 0);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep->integer, 2);
    redis_reply_free(rep);
    assert_int_equal(redis_ping(r), 0);
    redis_close(r);
}

static void test_cluster_ask_and_moved(void **state)
{
    struct redis *r = open_cluster();
    char ka[64], kb[64], v[32];
    snprintf(ka, sizeof ka, "{mig:%s}:a", run_id);
    snprintf(kb, sizeof kb, "{mig:%s}:b", run_id);
    unsigned slot = redis_keyslot(ka, strlen(ka));
    assert_int_equal(r_set(r, ka, "A"), 0); /* loads the map: it is now about to go stale */
    assert_int_equal(r_set(r, kb, "B"), 0);

    struct master m[8];
    int owner, n = masters(m, 8, slot, &owner);
    assert_int_equal(n, 3);
    assert_true(owner >= 0);
    const struct master *src = &m[owner], *dst = &m[(owner + 1) % n];

    /* Half-way through a migration: a is on dst, b still on src. */
    on_node(dst->port, "CLUSTER SETSLOT %u IMPORTING %s", slot, src->id);
    on_node(src->port, "CLUSTER SETSLOT %u MIGRATING %s", slot, dst->id);
    on_node(src->port, "MIGRATE 127.0.0.1 %d %s 0 5000", dst->port, ka);
    struct redis_stats s0, s1, s2;
    redis_get_stats(r, &s0);
    assert_int_equal(r_get(r, ka, v, sizeof v), 0); /* src: -ASK dst; dst: ASKING + GET */
    assert_string_equal(v, "A");
    assert_int_equal(r_get(r, kb, v, sizeof v), 0); /* still on src: no redirect */
    assert_string_equal(v, "B");
    redis_get_stats(r, &s1);
    assert_int_equal(s1.ask, s0.ask + 1);
    assert_int_equal(s1.moved, s0.moved);

    /* Finish: b moves too (with any other key of the slot), the slot is assigned to dst
     * everywhere. */
    migrate_slot_keys(src, dst, slot);
    on_node(dst->port, "CLUSTER SETSLOT %u NODE %s", slot, dst->id);
    on_node(src->port, "CLUSTER SETSLOT %u NODE %s", slot, dst->id);
    for (int i = 0; i < n; i++)
        if (i != owner && &m[i] != dst)
            on_node(m[i].port, "CLUSTER SETSLOT %u NODE %s", slot, dst->id);
    wait_owner(m, n, slot, dst->port);
    /* The client's map still says src: -MOVED, followed, and the map learns. */
    assert_int_equal(r_get(r, ka, v, sizeof v), 0);
    assert_string_equal(v, "A");
    redis_get_stats(r, &s2);
    assert_true(s2.moved >= s1.moved + 1);
    uint64_t moved = s2.moved;
    assert_int_equal(r_get(r, kb, v, sizeof v), 0);
    assert_string_equal(v, "B");
    assert_int_equal(r_set(r, kb, "B2"), 0);
    redis_get_stats(r, &s2);
    assert_int_equal(s2.moved, moved); /* the map is right now: no more redirects */
    assert_int_equal(s2.failures, 0);

    const char *del[] = {"DEL", ka, kb};
    struct redisReply *rep;
    assert_int_equal(redis_command(r, ka, strlen(ka), 3, del, NULL, &rep), 0);
    assert_int_equal(rep->integer, 2);
    redis_reply_free(rep);
    redis_close(r);
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
        cmocka_unit_test(test_keyslot),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_standalone_roundtrip),
        cmocka_unit_test(test_pool_bound),
        cmocka_unit_test(test_reconnect_after_kill),
        cmocka_unit_test(test_command_timeout),
        cmocka_unit_test(test_down_and_back),
        cmocka_unit_test(test_cluster_spread),
        cmocka_unit_test(test_cluster_ask_and_moved),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rmdir(spare_dir);
    return rc;
}
