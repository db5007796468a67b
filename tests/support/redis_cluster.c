/* SPDX-License-Identifier: MIT */
/* redis_cluster.c — see redis_cluster.h. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "emporium/id.h"
#include "redis_cluster.h"

/* The killed node's configuration, to start it again (also after a failed assertion). */
static struct {
    bool killed;
    char port[16], dir[512], node_timeout[16], cport[16], conf[128], logfile[600], pidfile[600];
} victim;

static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

redisContext *th_rc_direct(int port)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    if (c)
        redisSetTimeout(c, tv);
    return c;
}

void th_rc_ports(const char *seeds, int ports[TH_RC_NODES])
{
    const char *colon = strchr(seeds, ':');
    assert_non_null(colon);
    int base = atoi(colon + 1);
    for (int i = 0; i < TH_RC_NODES; i++)
        ports[i] = base + i;
}

int th_rc_master_of(const int ports[TH_RC_NODES], unsigned slot)
{
    for (int i = 0; i < TH_RC_NODES; i++) {
        redisContext *c = th_rc_direct(ports[i]);
        if (!c)
            continue;
        redisReply *rep = redisCommand(c, "CLUSTER SLOTS");
        int port = -1;
        for (size_t j = 0; rep && rep->type == REDIS_REPLY_ARRAY && j < rep->elements; j++) {
            redisReply *e = rep->element[j];
            if (e->type == REDIS_REPLY_ARRAY && e->elements >= 3 &&
                (long long)slot >= e->element[0]->integer &&
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

/* Whether this node, a replica, has its master link up and no sync in progress; true for
 * a master. */
static bool replication_settled(redisContext *c)
{
    redisReply *rep = redisCommand(c, "INFO replication");
    bool ok = rep && rep->type == REDIS_REPLY_STRING &&
              (strstr(rep->str, "role:master") || (strstr(rep->str, "master_link_status:up") &&
                                                   strstr(rep->str, "master_sync_in_progress:0")));
    freeReplyObject(rep);
    return ok;
}

bool th_rc_whole(const int ports[TH_RC_NODES])
{
    for (int i = 0; i < TH_RC_NODES; i++) {
        redisContext *c = th_rc_direct(ports[i]);
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
        ok = ok && masters == 3 && replicas == 3 && replication_settled(c);
        freeReplyObject(info);
        freeReplyObject(nodes);
        redisFree(c);
        if (!ok)
            return false;
    }
    return true;
}

void th_rc_wait_whole(const int ports[TH_RC_NODES], int timeout_ms)
{
    int64_t deadline = mono_ms() + timeout_ms;
    while (!th_rc_whole(ports)) {
        if (mono_ms() >= deadline)
            fail_msg("the test Redis Cluster did not become whole (3 masters, 3 replicas in "
                     "sync) within %d s",
                     timeout_ms / 1000);
        pause_ms(100);
    }
}

static void config_get(int port, const char *name, char *buf, size_t cap)
{
    redisContext *c = th_rc_direct(port);
    assert_non_null(c);
    redisReply *rep = redisCommand(c, "CONFIG GET %s", name);
    assert_true(rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2);
    snprintf(buf, cap, "%s", rep->element[1]->str);
    freeReplyObject(rep);
    redisFree(c);
}

static long long node_pid(int port)
{
    redisContext *c = th_rc_direct(port);
    assert_non_null(c);
    redisReply *rep = redisCommand(c, "INFO server");
    assert_true(rep && rep->type == REDIS_REPLY_STRING);
    const char *p = strstr(rep->str, "process_id:");
    assert_non_null(p);
    long long v = atoll(p + strlen("process_id:"));
    freeReplyObject(rep);
    redisFree(c);
    return v;
}

void th_rc_kill(int port)
{
    assert_false(victim.killed);
    snprintf(victim.port, sizeof victim.port, "%d", port);
    config_get(port, "dir", victim.dir, sizeof victim.dir);
    config_get(port, "cluster-node-timeout", victim.node_timeout, sizeof victim.node_timeout);
    config_get(port, "cluster-port", victim.cport, sizeof victim.cport);
    config_get(port, "cluster-config-file", victim.conf, sizeof victim.conf);
    config_get(port, "logfile", victim.logfile, sizeof victim.logfile);
    config_get(port, "pidfile", victim.pidfile, sizeof victim.pidfile);
    pid_t pid = (pid_t)node_pid(port);
    assert_true(pid > 1);
    assert_int_equal(kill(pid, SIGKILL), 0);
    victim.killed = true;
}

void th_rc_restart(void)
{
    if (!victim.killed)
        return;
    victim.killed = false;
    fflush(stdout); /* not twice: the child would flush our buffer too */
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        execlp("redis-server", "redis-server", "--port", victim.port, "--bind", "127.0.0.1",
               "--daemonize", "yes", "--save", "", "--appendonly", "no", "--dir", victim.dir,
               "--pidfile", victim.pidfile, "--logfile", victim.logfile, "--cluster-enabled", "yes",
               "--cluster-config-file", victim.conf, "--cluster-node-timeout", victim.node_timeout,
               "--cluster-port", victim.cport, (char *)NULL);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
