/* SPDX-License-Identifier: MIT */
/* test_redis_failover.c — a Redis Cluster master killed (SIGKILL) under load.
 *
 * Uses the cluster of scripts/test-servers.sh (EMPORIUM_TEST_REDIS_CLUSTER; exits 77
 * without it). Four threads write and read their own keys, spread over every slot, through
 * one client. The master of a chosen key is killed; its replica is promoted by the cluster
 * (cluster-node-timeout 2 s). What must hold:
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

static const char *cluster_seeds;
static char run_id[32];

/* The killed node's configuration, to start it again (also after a failed assertion). */
static struct {
    bool killed;
    char port[16], dir[512], node_timeout[16], cport[16], conf[128], logfile[600], pidfile[600];
} victim_cfg;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static redisContext *direct(int port)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* One CONFIG GET value of the node on port, into buf. */
static void config_get(int port, const char *name, char *buf, size_t cap)
{
    redisContext *c = direct(port);
    assert_non_null(c);
    redisReply *rep = redisCommand(c, "CONFIG GET %s", name);
    assert_true(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2);
    snprintf(buf, cap, "%s", rep->element[1]->str);
    freeReplyObject(rep);
    redisFree(c);
}

static long long info_int(int port, const char *field)
{
    redisContext *c = direct(port);
    assert_non_null(c);
    redisReply *rep = redisCommand(c, "INFO");
    assert_true(rep && rep->type == REDIS_REPLY_STRING);
    const char *p = strstr(rep->str, field);
    assert_non_null(p);
    long long v = atoll(p + strlen(field) + 1);
    freeReplyObject(rep);
    redisFree(c);
    return v;
}

/* The port of the master serving `slot`, asked of any node that answers. */
static int master_of(const int *ports, int n, unsigned slot)
{
    for (int i = 0; i < n; i++) {
        redisContext *c = direct(ports[i]);
        if (!c)
            continue;
        redisReply *rep = redisCommand(c, "CLUSTER SLOTS");
        int port = -1;
        for (size_t j = 0; rep && rep->type == REDIS_REPLY_ARRAY && j < rep->elements; j++) {
            redisReply *e = rep->element[j];
            if ((long long)slot >= e->element[0]->integer &&
                (long long)slot <= e->element[1]->integer)
                port = (int)e->element[2]->element[1]->integer;
        }
        freeReplyObject(rep);
        redisFree(c);
        if (port > 0)
            return port;
    }
    return -1;
}

/* Whether every node answers, says cluster_state:ok, and the cluster has 3 masters and 3
 * connected replicas. */
static bool cluster_whole(const int *ports, int n)
{
    for (int i = 0; i < n; i++) {
        redisContext *c = direct(ports[i]);
        if (!c)
            return false;
        redisReply *info = redisCommand(c, "CLUSTER INFO");
        redisReply *nodes = redisCommand(c, "CLUSTER NODES");
        bool ok = info && info->type == REDIS_REPLY_STRING &&
                  strstr(info->str, "cluster_state:ok") && nodes &&
                  nodes->type == REDIS_REPLY_STRING;
        int masters = 0, replicas = 0;
        for (const char *p = ok ? nodes->str : NULL; p && *p;
             p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
            const char *eol = strchr(p, '\n');
            size_t len = eol ? (size_t)(eol - p) : strlen(p);
            char line[512];
            snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1),
                     p);
            if (strstr(line, "fail") || strstr(line, "disconnected"))
                continue;
            masters += strstr(line, "master") != NULL;
            replicas += strstr(line, "slave") != NULL;
        }
        freeReplyObject(info);
        freeReplyObject(nodes);
        redisFree(c);
        if (!ok || masters != 3 || replicas != 3)
            return false;
    }
    return true;
}

static void restart_victim(void)
{
    if (!victim_cfg.killed)
        return;
    victim_cfg.killed = false;
    fflush(stdout); /* not twice: the child would flush our buffer too */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        execlp("redis-server", "redis-server", "--port", victim_cfg.port, "--bind", "127.0.0.1",
               "--daemonize", "yes", "--save", "", "--appendonly", "no", "--dir", victim_cfg.dir,
               "--pidfile", victim_cfg.pidfile, "--logfile", victim_cfg.logfile,
               "--cluster-enabled", "yes", "--cluster-config-file", victim_cfg.conf,
               "--cluster-node-timeout", victim_cfg.node_timeout, "--cluster-port",
               victim_cfg.cport, (char *)NULL);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int teardown(void **state)
{
    restart_victim(); /* a failed test must not leave the shared cluster short of a node */
    return 0;
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

static void test_master_killed_under_load(void **state)
{
    int ports[6];
    int base = atoi(strchr(cluster_seeds, ':') + 1); /* the first node; six in a row */
    for (int i = 0; i < 6; i++)
        ports[i] = base + i;
    int64_t deadline = mono_ms() + 60000;
    while (!cluster_whole(ports, 6)) { /* an earlier run may still be settling */
        assert_true(mono_ms() < deadline);
        sleep_ms(100);
    }
    struct redis_options o = {.cluster = cluster_seeds, .pool_size = 4, .timeout_ms = 500};
    struct redis *r = NULL;
    char why[96];
    assert_int_equal(redis_open(&o, &r, why, sizeof why), 0);

    char key[64];
    snprintf(key, sizeof key, "t:%s:victim", run_id);
    unsigned slot = redis_keyslot(key, strlen(key));
    int victim = master_of(ports, 6, slot);
    assert_true(victim > 0);
    snprintf(victim_cfg.port, sizeof victim_cfg.port, "%d", victim);
    config_get(victim, "dir", victim_cfg.dir, sizeof victim_cfg.dir);
    config_get(victim, "cluster-node-timeout", victim_cfg.node_timeout,
               sizeof victim_cfg.node_timeout);
    config_get(victim, "cluster-port", victim_cfg.cport, sizeof victim_cfg.cport);
    config_get(victim, "cluster-config-file", victim_cfg.conf, sizeof victim_cfg.conf);
    config_get(victim, "logfile", victim_cfg.logfile, sizeof victim_cfg.logfile);
    config_get(victim, "pidfile", victim_cfg.pidfile, sizeof victim_cfg.pidfile);
    pid_t pid = (pid_t)info_int(victim, "process_id");
    assert_true(pid > 1);

    atomic_bool stop = false, mark = false;
    struct worker w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].r = r;
        w[i].id = i;
        w[i].stop = &stop;
        w[i].mark = &mark;
        assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    /* Load runs; then the master goes, mid-load. */
    deadline = mono_ms() + 60000;
    while (atomic_load(&w[0].ok) < 200 || atomic_load(&w[3].ok) < 200)
        assert_true(mono_ms() < deadline);
    assert_int_equal(kill(pid, SIGKILL), 0);
    victim_cfg.killed = true;

    /* The chosen key's slot is served again: by the promoted replica. */
    deadline = mono_ms() + 60000;
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
    while (master_of(ports, 6, slot) == victim)
        assert_true(mono_ms() < deadline);
    /* Every thread works again. */
    atomic_store(&mark, true);
    deadline = mono_ms() + 60000;
    for (int i = 0; i < 4; i++)
        while (atomic_load(&w[i].ok_after) < 50)
            assert_true(mono_ms() < deadline);
    atomic_store(&stop, true);
    long unavailable = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
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
    restart_victim();
    deadline = mono_ms() + 90000;
    while (!cluster_whole(ports, 6)) {
        assert_true(mono_ms() < deadline);
        sleep_ms(100);
    }
    const char *del[] = {"DEL", key};
    struct redisReply *rep = NULL;
    assert_int_equal(redis_command(r, key, strlen(key), 2, del, NULL, &rep), 0);
    redis_reply_free(rep);
    redis_close(r);
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
