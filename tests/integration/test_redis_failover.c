/* SPDX-License-Identifier: MIT */
/* test_redis_failover.c — a Redis Cluster master killed (SIGKILL) under load.
 *
 * Uses the cluster of scripts/test-servers.sh (EMPORIUM_TEST_REDIS_CLUSTER; exits 77
 * without it). Four threads write and read their own keys, spread over every slot, through
 * one client. The master of a chosen key is killed; its replica is promoted by the cluster
 * (cluster-node-timeout 5 s). What must hold:
 *   - no call returns a wrong value: a read gives nothing or a value its thread wrote (writes
 *     the dead master had not replicated may be lost: Redis replication is asynchronous);
 *     failed calls fail with ERR_UNAVAILABLE, nothing crashes or hangs;
 *   - the client finds the promoted replica by itself: the chosen key, then every thread,
 *     succeeds again (60 s deadline, polled);
 *   - the killed node, restarted with its own configuration, rejoins as a replica; the test
 *     waits until the cluster is whole again (3 masters with a replica each) so that later
 *     tests find it as they expect. */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/redis.h"
#include "redis_cluster.h"

static const char *cluster_seeds;
static char run_id[32];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

struct worker {
    struct redis *r;
    int id;
    atomic_bool *stop;
    atomic_long ok, unavailable, wrong, other;
    atomic_long ok_after; /* successes since `mark` was raised */
    atomic_bool *mark;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    long seq = 0;
    while (!atomic_load(w->stop)) {
        char k[64], v[64];
        int key = (int)(seq % 64);
        snprintf(k, sizeof k, "t:%s:f%d:%d", run_id, w->id, key);
        snprintf(v, sizeof v, "%d:%ld", w->id, seq);
        const char *set[] = {"SET", k, v};
        struct redisReply *rep = NULL;
        int rc = redis_command(w->r, k, strlen(k), 3, set, NULL, &rep);
        bool ok = rc == 0 && rep->type == REDIS_REPLY_STATUS;
        if (rc == ERR_UNAVAILABLE)
            atomic_fetch_add(&w->unavailable, 1);
        else if (!ok)
            atomic_fetch_add(&w->other, 1);
        redis_reply_free(rep);
        rep = NULL;
        const char *get[] = {"GET", k};
        rc = redis_command(w->r, k, strlen(k), 2, get, NULL, &rep);
        if (rc == 0 && rep->type == REDIS_REPLY_STRING) {
            /* A value of this thread for this key, never a later one than written. */
            int tid = -1;
            long s = -1;
            if (sscanf(rep->str, "%d:%ld", &tid, &s) != 2 || tid != w->id || s > seq ||
                s % 64 != key)
                atomic_fetch_add(&w->wrong, 1);
            else if (ok) {
                atomic_fetch_add(&w->ok, 1);
                if (atomic_load(w->mark))
                    atomic_fetch_add(&w->ok_after, 1);
            }
        } else if (rc == ERR_UNAVAILABLE) {
            atomic_fetch_add(&w->unavailable, 1);
        } else if (!(rc == 0 && rep->type == REDIS_REPLY_NIL)) {
            atomic_fetch_add(&w->other, 1);
        }
        redis_reply_free(rep);
        seq++;
    }
    return NULL;
}

/* The load: file-level, so a failed assertion (cmocka leaves the test function by longjmp)
 * still finds the threads to stop in teardown() before anything they use goes away. */
static struct {
    struct redis *r;
    atomic_bool stop, mark;
    struct worker w[4];
    pthread_t th[4];
    int started;
} load;

static void load_stop(void)
{
    atomic_store(&load.stop, true);
    for (int i = 0; i < load.started; i++)
        pthread_join(load.th[i], NULL);
    load.started = 0;
}

/* Prints every thread's counters (what a failed wait saw). */
static void load_print(const char *what)
{
    printf("%s:\n", what);
    for (int i = 0; i < 4; i++)
        printf("  thread %d: ok %ld (after the mark %ld), unavailable %ld, wrong %ld, other %ld\n",
               i, atomic_load(&load.w[i].ok), atomic_load(&load.w[i].ok_after),
               atomic_load(&load.w[i].unavailable), atomic_load(&load.w[i].wrong),
               atomic_load(&load.w[i].other));
    if (load.r) {
        struct redis_stats st;
        redis_get_stats(load.r, &st);
        printf("  client: %llu map reloads, %llu moved\n", (unsigned long long)st.map_reloads,
               (unsigned long long)st.moved);
    }
    fflush(stdout);
}

/* Waits (polling, 120 s) until every thread has at least n successes (after the mark when
 * after is set); fails with the counters otherwise. */
static void wait_successes(long n, bool after, const char *what)
{
    int64_t deadline = mono_ms() + 120000;
    for (;;) {
        bool all = true;
        for (int i = 0; i < 4; i++)
            all = all && atomic_load(after ? &load.w[i].ok_after : &load.w[i].ok) >= n;
        if (all)
            return;
        if (mono_ms() >= deadline) {
            load_print(what);
            fail_msg("%s: not every thread had %ld successes within 120 s", what, n);
        }
        sleep_ms(10);
    }
}

static int teardown(void **state)
{
    (void)state;
    load_stop();
    th_rc_restart(); /* a failed test must not leave the shared cluster short of a node */
    if (load.r)
        redis_close(load.r);
    load.r = NULL;
    return 0;
}

static void test_master_killed_under_load(void **state)
{
    int ports[TH_RC_NODES];
    th_rc_ports(cluster_seeds, ports);
    th_rc_wait_whole(ports, 120000); /* an earlier test may still be settling */
    struct redis_options o = {.cluster = cluster_seeds, .pool_size = 4, .timeout_ms = 500};
    char why[96];
    assert_int_equal(redis_open(&o, &load.r, why, sizeof why), 0);
    struct redis *r = load.r;

    char key[64];
    snprintf(key, sizeof key, "t:%s:victim", run_id);
    unsigned slot = redis_keyslot(key, strlen(key));
    int victim = th_rc_master_of(ports, slot);
    assert_true(victim > 0);

    struct worker *w = load.w;
    for (int i = 0; i < 4; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].r = r;
        w[i].id = i;
        w[i].stop = &load.stop;
        w[i].mark = &load.mark;
        assert_int_equal(pthread_create(&load.th[i], NULL, work, &w[i]), 0);
        load.started = i + 1;
    }
    /* Load runs; then the master goes, mid-load. */
    wait_successes(200, false, "before the kill");
    th_rc_kill(victim);

    /* The chosen key's slot is served again: by the promoted replica. */
    int64_t deadline = mono_ms() + 120000;
    for (;;) {
        const char *set[] = {"SET", key, "after"};
        struct redisReply *rep = NULL;
        int rc = redis_command(r, key, strlen(key), 3, set, NULL, &rep);
        bool ok = rc == 0 && rep->type == REDIS_REPLY_STATUS;
        redis_reply_free(rep);
        if (ok)
            break;
        assert_true(rc == 0 || rc == ERR_UNAVAILABLE);
        assert_true(mono_ms() < deadline);
        sleep_ms(50);
    }
    /* and the cluster says so (every node learns it by gossip, so ask until one does) */
    while (th_rc_master_of(ports, slot) == victim) {
        assert_true(mono_ms() < deadline);
        sleep_ms(50);
    }
    /* Every thread works again. */
    atomic_store(&load.mark, true);
    wait_successes(50, true, "after the failover");
    load_stop();
    load_print("the load");
    long unavailable = 0;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(atomic_load(&w[i].wrong), 0);
        assert_int_equal(atomic_load(&w[i].other), 0);
        unavailable += atomic_load(&w[i].unavailable);
    }
    struct redis_stats st;
    redis_get_stats(r, &st);
    printf("failover: %ld calls unavailable during it, %llu map reloads, %llu moved\n", unavailable,
           (unsigned long long)st.map_reloads, (unsigned long long)st.moved);
    assert_true(st.map_reloads >= 2);

    /* The killed node comes back with its own configuration and rejoins as a replica. */
    th_rc_restart();
    th_rc_wait_whole(ports, 120000);
    const char *del[] = {"DEL", key};
    struct redisReply *rep = NULL;
    assert_int_equal(redis_command(r, key, strlen(key), 2, del, NULL, &rep), 0);
    redis_reply_free(rep);
}

int main(void)
{
    cluster_seeds = getenv("EMPORIUM_TEST_REDIS_CLUSTER");
    if (!cluster_seeds) {
        printf("skipped: EMPORIUM_TEST_REDIS_CLUSTER not set "
               "(scripts/test-servers.sh starts the servers)\n");
        return 77;
    }
    snprintf(run_id, sizeof run_id, "%d.%lld", (int)getpid(), (long long)now_ms());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_master_killed_under_load, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
