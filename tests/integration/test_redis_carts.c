/* SPDX-License-Identifier: MIT */
/* test_redis_carts.c — carts and sessions in Redis through the real `emporium serve`.
 *
 * Needs the servers of scripts/test-servers.sh (exits 77 without them): the standalone
 * Redis (EMPORIUM_TEST_REDIS_URL), the Redis Cluster (EMPORIUM_TEST_REDIS_CLUSTER) and the
 * spare port (EMPORIUM_TEST_REDIS_SPARE_PORT), where this test runs a Redis of its own that it
 * stops and starts. The backend is EMPORIUM_TEST_BACKEND's (sqlite or postgres).
 *
 * - A Redis that lost a cart (the key deleted) or went back in time (an older copy put
 *   back) does not lose an acknowledged line: the cart is read from the database again.
 * - Redis stopped: cart routes and authenticated requests answer 503 with Retry-After (not
 *   401), /ready says "degraded": ["redis"], bad input is still a 400 naming the field;
 *   Redis started again (empty): the same token and the same cart work again.
 * - Turning Redis on and off logs nobody out, and a session revoked while Redis was off
 *   stays revoked when it is turned on again.
 * - PostgreSQL only: two processes share sessions and carts; a logout on one is refused on
 *   the other within the session cache's bound (polled).
 * - A master of the Redis Cluster killed (SIGKILL) while shoppers add to their carts: every
 *   answer is 200 or 503, carts work again after the failover, and every acknowledged add
 *   is in the cart afterwards. The node is restarted and the test waits for a whole cluster. */
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "emporium/redis.h"
#include "harness.h"
#include "redis_cluster.h"

static const char *redis_url, *cluster_seeds;
static int redis_port, spare_port;
static char run_id[32];
static char spare_dir[128];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- shop helpers ---- */

static void make_product(struct th_server *s, const char *admin, const char *sku, char out[32])
{
    struct th_resp r;
    assert_int_equal(th_call(s, "POST", "/api/v1/products", admin, &r,
                             "{\"sku\":\"%s\",\"name\":\"Item %s\",\"description\":\"d\","
                             "\"category\":\"stuff\",\"price\":{\"amount\":100,\"currency\":"
                             "\"USD\"},\"active\":true}",
                             sku, sku),
                     0);
    if (r.status != 201)
        fail_msg("create product %s: %ld %s", sku, r.status, r.body);
    snprintf(out, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
}

static long add(struct th_server *s, const char *bearer, const char *pid, int q,
                struct th_resp *out)
{
    struct th_resp r;
    if (th_call(s, "POST", "/api/v1/cart/items", bearer, &r,
                "{\"product_id\":\"%s\",\"quantity\":%d}", pid, q) != 0)
        return -1;
    long st = r.status;
    if (out)
        *out = r;
    else
        th_resp_free(&r);
    return st;
}

static long long qty_of(json_t *cart, const char *pid)
{
    size_t i;
    json_t *it;
    json_array_foreach (json_object_get(cart, "items"), i, it)
        if (!strcmp(json_string_value(json_object_get(it, "product_id")), pid))
            return json_integer_value(json_object_get(it, "quantity"));
    return 0;
}

/* GET /api/v1/cart as bearer: the quantity of pid, or -status when not 200. */
static long long cart_qty(struct th_server *s, const char *bearer, const char *pid)
{
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", "/api/v1/cart", bearer, &r, NULL), 0);
    long long q = r.status == 200 ? qty_of(r.json, pid) : -r.status;
    th_resp_free(&r);
    return q;
}

static long status_of(struct th_server *s, const char *method, const char *path, const char *bearer)
{
    struct th_resp r;
    assert_int_equal(th_call(s, method, path, bearer, &r, NULL), 0);
    long st = r.status;
    th_resp_free(&r);
    return st;
}

/* Deletes every key of the standalone Redis matching pattern. */
static void delete_keys(const char *pattern)
{
    redisContext *c = th_rc_direct(redis_port);
    assert_non_null(c);
    redisReply *rep = redisCommand(c, "KEYS %s", pattern);
    assert_true(rep && rep->type == REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < rep->elements; i++)
        freeReplyObject(redisCommand(c, "DEL %s", rep->element[i]->str));
    freeReplyObject(rep);
    redisFree(c);
}

/* ---- a Redis of our own on the spare port ---- */

static void spare_start(void)
{
    char port[16], pidfile[200], logfile[200];
    snprintf(port, sizeof port, "%d", spare_port);
    snprintf(pidfile, sizeof pidfile, "%s/redis.pid", spare_dir);
    snprintf(logfile, sizeof logfile, "%s/redis.log", spare_dir);
    fflush(stdout);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(126);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--daemonize",
               "yes", "--save", "", "--appendonly", "no", "--dir", spare_dir, "--pidfile", pidfile,
               "--logfile", logfile, (char *)NULL);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int64_t deadline = mono() + 30000;
    redisContext *c;
    while (!(c = th_rc_direct(spare_port))) {
        assert_true(mono() < deadline);
        sleep_ms(50);
    }
    redisFree(c);
}

static void spare_stop(void)
{
    redisContext *c = th_rc_direct(spare_port);
    if (!c)
        return;
    freeReplyObject(redisCommand(c, "SHUTDOWN NOSAVE"));
    redisFree(c);
    int64_t deadline = mono() + 30000;
    while ((c = th_rc_direct(spare_port)) && mono() < deadline) {
        redisFree(c);
        sleep_ms(50);
    }
    if (c)
        redisFree(c);
}

static int spare_teardown(void **state)
{
    spare_stop(); /* a failed test must not leave it running */
    return 0;
}

/* ---- tests ---- */

/* Redis loses a cart, or goes back to an older copy of it: the database's copy wins. */
static void test_lost_and_stale_copies(void **state)
{
    char url[160], prefix[64], pattern[80];
    snprintf(url, sizeof url, "EMPORIUM_REDIS_URL=%s", redis_url);
    snprintf(prefix, sizeof prefix, "EMPORIUM_REDIS_PREFIX=t%s:lost:", run_id);
    snprintf(pattern, sizeof pattern, "t%s:lost:cart:*", run_id);
    const char *env[] = {url, prefix, "EMPORIUM_RATE_LIMITS=off", NULL};
    struct th_server s;
    assert_int_equal(th_start(&s, env, NULL), 0);
    char *admin = th_admin_token(&s);
    assert_non_null(admin);
    char pa[32], pb[32];
    make_product(&s, admin, "RC-A", pa);
    make_product(&s, admin, "RC-B", pb);
    char *u = th_register(&s, "lost@example.com", "a long password");
    assert_non_null(u);
    assert_int_equal(add(&s, u, pa, 2, NULL), 200);
    assert_int_equal(add(&s, u, pb, 1, NULL), 200);

    /* The key is gone: read again from the database. */
    delete_keys(pattern);
    assert_int_equal(cart_qty(&s, u, pa), 2);
    assert_int_equal(cart_qty(&s, u, pb), 1);
    assert_int_equal(add(&s, u, pa, 1, NULL), 200);
    assert_int_equal(cart_qty(&s, u, pa), 3);

    /* An older copy put back (as after a failover that had not replicated the last
     * changes): the acknowledged lines are still there, and changes go on from them. */
    redisContext *c = th_rc_direct(redis_port);
    assert_non_null(c);
    redisReply *keys = redisCommand(c, "KEYS %s", pattern);
    assert_true(keys && keys->type == REDIS_REPLY_ARRAY && keys->elements == 1);
    char key[200];
    snprintf(key, sizeof key, "%s", keys->element[0]->str);
    freeReplyObject(keys);
    redisReply *dump = redisCommand(c, "DUMP %s", key);
    assert_true(dump && dump->type == REDIS_REPLY_STRING);
    assert_int_equal(add(&s, u, pb, 4, NULL), 200); /* 5 of b */
    assert_int_equal(add(&s, u, pa, 1, NULL), 200); /* 4 of a */
    freeReplyObject(redisCommand(c, "DEL %s", key));
    redisReply *rest = redisCommand(c, "RESTORE %s 0 %b", key, dump->str, dump->len);
    assert_true(rest && rest->type == REDIS_REPLY_STATUS);
    freeReplyObject(rest);
    freeReplyObject(dump);
    redisFree(c);
    assert_int_equal(cart_qty(&s, u, pb), 5);
    assert_int_equal(cart_qty(&s, u, pa), 4);
    assert_int_equal(add(&s, u, pb, 1, NULL), 200);
    assert_int_equal(cart_qty(&s, u, pb), 6);
    free(u);
    free(admin);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

/* Redis stops: 503 with Retry-After, never 401; it starts again (empty): all works again. */
static void test_redis_stopped_and_started(void **state)
{
    spare_start();
    char url[96], prefix[64];
    snprintf(url, sizeof url, "EMPORIUM_REDIS_URL=redis://127.0.0.1:%d", spare_port);
    snprintf(prefix, sizeof prefix, "EMPORIUM_REDIS_PREFIX=t%s:down:", run_id);
    const char *env[] = {url, prefix, "EMPORIUM_RATE_LIMITS=off", "EMPORIUM_REDIS_TIMEOUT_MS=200",
                         NULL};
    struct th_server s;
    assert_int_equal(th_start(&s, env, NULL), 0);
    char *admin = th_admin_token(&s);
    assert_non_null(admin);
    char pa[32];
    make_product(&s, admin, "RD-A", pa);
    char *u = th_register(&s, "down@example.com", "a long password");
    assert_non_null(u);
    assert_int_equal(add(&s, u, pa, 2, NULL), 200);
    struct th_resp r;
    assert_int_equal(add(&s, NULL, pa, 1, &r), 200); /* a guest */
    char tok[128], hdr[200];
    assert_non_null(th_header(&r, "X-Cart-Token", tok, sizeof tok));
    th_resp_free(&r);
    snprintf(hdr, sizeof hdr, "X-Cart-Token: %s", tok);

    spare_stop();
    /* The session may be in this process's cache for a few seconds: wait for the 503. */
    int64_t deadline = mono() + 60000;
    long st;
    while ((st = status_of(&s, "GET", "/api/v1/cart", u)) == 200) {
        assert_true(mono() < deadline);
        sleep_ms(100);
    }
    assert_int_equal(th_call(&s, "GET", "/api/v1/cart", u, &r, NULL), 0);
    assert_true(th_is_error(&r, 503, "unavailable", NULL));
    char ra[16];
    assert_non_null(th_header(&r, "Retry-After", ra, sizeof ra));
    th_resp_free(&r);
    /* The session itself: once this process's cache lets go of it (5 s), 503 — not 401. */
    while (status_of(&s, "GET", "/api/v1/users/me", u) == 200) {
        assert_true(mono() < deadline);
        sleep_ms(100);
    }
    assert_int_equal(th_call(&s, "GET", "/api/v1/users/me", u, &r, NULL), 0);
    assert_true(th_is_error(&r, 503, "unavailable", NULL));
    assert_non_null(th_header(&r, "Retry-After", ra, sizeof ra));
    th_resp_free(&r);
    /* Guests too, and sign-in. */
    const char *gh[] = {hdr, NULL};
    char body[96];
    snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", pa);
    assert_int_equal(th_req(&s, "POST", "/api/v1/cart/items", body, gh, &r), 0);
    assert_true(th_is_error(&r, 503, "unavailable", NULL));
    assert_non_null(th_header(&r, "Retry-After", ra, sizeof ra));
    th_resp_free(&r);
    assert_int_equal(th_req(&s, "GET", "/api/v1/cart", NULL, gh, &r), 0);
    assert_int_equal(r.status, 503);
    th_resp_free(&r);
    assert_int_equal(th_call(&s, "POST", "/api/v1/auth/login", NULL, &r,
                             "{\"email\":\"down@example.com\",\"password\":\"a long password\"}"),
                     0);
    assert_int_equal(r.status, 503);
    th_resp_free(&r);
    /* Bad input is still refused before anything is asked of Redis. */
    assert_int_equal(
        th_req(&s, "POST", "/api/v1/cart/items", "{\"product_id\":\"x\",\"quantity\":1}", gh, &r),
        0);
    assert_true(th_is_error(&r, 400, "validation_failed", "product_id"));
    th_resp_free(&r);
    assert_int_equal(th_call(&s, "GET", "/ready", NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r.json, "degraded"), 0)),
                        "redis");
    th_resp_free(&r);

    /* Started again, empty: the session (its database copy) and the carts are all there. */
    spare_start();
    deadline = mono() + 60000;
    while (cart_qty(&s, u, pa) != 2) {
        assert_true(mono() < deadline);
        sleep_ms(100);
    }
    assert_int_equal(add(&s, u, pa, 1, NULL), 200);
    assert_int_equal(cart_qty(&s, u, pa), 3);
    assert_int_equal(th_req(&s, "GET", "/api/v1/cart", NULL, gh, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(qty_of(r.json, pa), 1);
    th_resp_free(&r);
    assert_int_equal(status_of(&s, "GET", "/api/v1/users/me", u), 200);
    free(u);
    free(admin);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
    spare_stop();
}

/* Redis turned on, off and on again: nobody is logged out, a revoked session stays so. */
static void test_sessions_redis_on_off(void **state)
{
    char url[160], prefix[64];
    snprintf(url, sizeof url, "EMPORIUM_REDIS_URL=%s", redis_url);
    snprintf(prefix, sizeof prefix, "EMPORIUM_REDIS_PREFIX=t%s:onoff:", run_id);
    const char *off[] = {
        "EMPORIUM_REDIS_URL=", "EMPORIUM_REDIS_CLUSTER=", "EMPORIUM_RATE_LIMITS=off", NULL};
    const char *on[] = {url, "EMPORIUM_REDIS_CLUSTER=", prefix, "EMPORIUM_RATE_LIMITS=off", NULL};
    struct th_server s;
    assert_int_equal(th_start(&s, off, NULL), 0);
    char *t1 = th_register(&s, "onoff@example.com", "a long password");
    assert_non_null(t1);
    assert_int_equal(th_stop(&s), 0);

    assert_int_equal(th_restart(&s, on, NULL), 0);
    assert_int_equal(status_of(&s, "GET", "/api/v1/users/me", t1), 200); /* from before */
    struct th_resp r;
    assert_int_equal(th_call(&s, "POST", "/api/v1/auth/login", NULL, &r,
                             "{\"email\":\"onoff@example.com\",\"password\":\"a long password\"}"),
                     0);
    assert_int_equal(r.status, 200);
    char *t2 = strdup(th_jstr(r.json, "token"));
    th_resp_free(&r);
    assert_int_equal(status_of(&s, "GET", "/api/v1/users/me", t2), 200);
    assert_int_equal(th_stop(&s), 0);

    assert_int_equal(th_restart(&s, off, NULL), 0);
    assert_int_equal(status_of(&s, "GET", "/api/v1/users/me", t2), 200); /* opened in Redis */
    assert_int_equal(status_of(&s, "POST", "/api/v1/auth/logout", t2), 204);
    assert_int_equal(status_of(&s, "GET", "/api/v1/users/me", t2), 401);
    assert_int_equal(th_stop(&s), 0);

    assert_int_equal(th_restart(&s, on, NULL), 0);
    assert_int_equal(status_of(&s, "GET", "/api/v1/users/me", t2), 401); /* Redis's copy: old */
    assert_int_equal(status_of(&s, "GET", "/api/v1/users/me", t1), 200);
    free(t1);
    free(t2);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

/* Two processes, one set of databases and one Redis: a session and a cart are shared, and a
 * logout through one is refused by the other once its session cache drops the entry (the
 * session.revoked event, or at the latest its 5 s lifetime). */
static void test_two_processes(void **state)
{
    const char *backend = getenv("EMPORIUM_TEST_BACKEND");
    if (!backend || strcmp(backend, "postgres") != 0) {
        printf("skipped: two processes share one set of databases only on PostgreSQL\n");
        skip();
    }
    char cluster[256], prefix[64];
    snprintf(cluster, sizeof cluster, "EMPORIUM_REDIS_CLUSTER=%s", cluster_seeds);
    snprintf(prefix, sizeof prefix, "EMPORIUM_REDIS_PREFIX=t%s:two:", run_id);
    const char *env[] = {cluster, "EMPORIUM_REDIS_URL=", prefix, "EMPORIUM_RATE_LIMITS=off", NULL};
    struct th_server a, b;
    assert_int_equal(th_start(&a, env, NULL), 0);
    b = a;
    b.pid = 0;
    assert_int_equal(th_restart(&b, env, NULL), 0);
    char *admin = th_admin_token(&a);
    assert_non_null(admin);
    char pa[32];
    make_product(&a, admin, "R2-A", pa);
    char *u = th_register(&a, "two@example.com", "a long password");
    assert_non_null(u);
    assert_int_equal(add(&a, u, pa, 2, NULL), 200);
    assert_int_equal(add(&b, u, pa, 3, NULL), 200);
    assert_int_equal(cart_qty(&a, u, pa), 5);
    assert_int_equal(cart_qty(&b, u, pa), 5);
    assert_int_equal(status_of(&a, "POST", "/api/v1/auth/logout", u), 204);
    assert_int_equal(status_of(&a, "GET", "/api/v1/users/me", u), 401);
    int64_t t0 = mono(), deadline = t0 + 60000;
    while (status_of(&b, "GET", "/api/v1/users/me", u) != 401) {
        assert_true(mono() < deadline);
        sleep_ms(20);
    }
    printf("logout seen by the other process after %lld ms\n", (long long)(mono() - t0));
    free(u);
    free(admin);
    assert_int_equal(th_stop(&b), 0);
    assert_int_equal(th_stop(&a), 0);
    th_cleanup(&a);
}

/* ---- a cluster master killed mid-load ---- */

#define SHOPPERS 4
#define LINES 40 /* products a shopper rotates over: 99 a line is far away */

struct shopper {
    struct th_server *s;
    const char *token;
    const char (*pids)[32];
    atomic_bool *stop, *mark;
    atomic_long acked[LINES], sent[LINES];
    atomic_long ok, unavailable, other, ok_after;
};

static void *shopper_main(void *arg)
{
    struct shopper *sh = arg;
    for (long i = 0; i < 20000 && !atomic_load(sh->stop); i++) {
        int k = (int)(i % LINES);
        atomic_fetch_add(&sh->sent[k], 1);
        long st = add(sh->s, sh->token, sh->pids[k], 1, NULL);
        if (st == 200) {
            atomic_fetch_add(&sh->acked[k], 1);
            atomic_fetch_add(&sh->ok, 1);
            if (atomic_load(sh->mark))
                atomic_fetch_add(&sh->ok_after, 1);
        } else if (st == 503) {
            atomic_fetch_add(&sh->unavailable, 1);
        } else {
            atomic_fetch_add(&sh->other, 1);
        }
        if (st == 503)
            sleep_ms(20); /* as a client honouring Retry-After would, only shorter */
        if (atomic_load(&sh->sent[k]) >= 95) /* stay under the per-line cap */
            break;
    }
    return NULL;
}

/* The shoppers: file-level, so a failed assertion (cmocka leaves the test by longjmp) still
 * finds the threads to stop in kill_teardown() before what they use goes away. */
static struct {
    atomic_bool stop, mark;
    struct shopper sh[SHOPPERS];
    pthread_t th[SHOPPERS];
    int started;
    struct th_server srv;
    char pids[LINES][32];
} load;

static void load_stop(void)
{
    atomic_store(&load.stop, true);
    for (int i = 0; i < load.started; i++)
        pthread_join(load.th[i], NULL);
    load.started = 0;
}

static int kill_teardown(void **state)
{
    (void)state;
    load_stop();
    th_rc_restart(); /* the shared cluster must not stay short of a node */
    return 0;
}

static void test_master_killed_mid_load(void **state)
{
    int ports[TH_RC_NODES];
    th_rc_ports(cluster_seeds, ports);
    th_rc_wait_whole(ports, 120000); /* an earlier test may still be settling */
    int64_t deadline;
    char cluster[256], prefix[64];
    snprintf(cluster, sizeof cluster, "EMPORIUM_REDIS_CLUSTER=%s", cluster_seeds);
    snprintf(prefix, sizeof prefix, "EMPORIUM_REDIS_PREFIX=t%s:kill:", run_id);
    const char *env[] = {cluster,
                         "EMPORIUM_REDIS_URL=",
                         prefix,
                         "EMPORIUM_RATE_LIMITS=off",
                         "EMPORIUM_REDIS_TIMEOUT_MS=300",
                         NULL};
    struct th_server *srv = &load.srv;
    assert_int_equal(th_start(srv, env, NULL), 0);
    char *admin = th_admin_token(srv);
    assert_non_null(admin);
    char(*pids)[32] = load.pids;
    for (int i = 0; i < LINES; i++) {
        char sku[32];
        snprintf(sku, sizeof sku, "RK-%d", i);
        make_product(srv, admin, sku, pids[i]);
    }
    char *tokens[SHOPPERS];
    int64_t uid0 = 0;
    for (int i = 0; i < SHOPPERS; i++) {
        char email[64];
        snprintf(email, sizeof email, "kill%d@example.com", i);
        tokens[i] = th_register(srv, email, "a long password");
        assert_non_null(tokens[i]);
    }
    struct th_resp r;
    assert_int_equal(th_call(srv, "GET", "/api/v1/users/me", tokens[0], &r, NULL), 0);
    uid0 = atoll(th_jstr(r.json, "id"));
    th_resp_free(&r);
    /* The victim: the master of shopper 0's cart (its key's tag is "u<user id>"). */
    char tag[32];
    snprintf(tag, sizeof tag, "u%lld", (long long)uid0);
    unsigned slot = redis_keyslot(tag, strlen(tag));
    int vport = th_rc_master_of(ports, slot);
    assert_true(vport > 0);

    struct shopper *sh = load.sh;
    for (int i = 0; i < SHOPPERS; i++) {
        memset(&sh[i], 0, sizeof sh[i]);
        sh[i] = (struct shopper){.s = srv,
                                 .token = tokens[i],
                                 .pids = (const char(*)[32])pids,
                                 .stop = &load.stop,
                                 .mark = &load.mark};
        assert_int_equal(pthread_create(&load.th[i], NULL, shopper_main, &sh[i]), 0);
        load.started = i + 1;
    }
    deadline = mono() + 120000;
    while (atomic_load(&sh[0].ok) < 30) {
        assert_true(mono() < deadline);
        sleep_ms(10);
    }
    th_rc_kill(vport);
    /* After the failover (the replica promoted) shopper 0's cart works again. */
    deadline = mono() + 120000;
    while (th_rc_master_of(ports, slot) == vport) {
        assert_true(mono() < deadline);
        sleep_ms(50);
    }
    atomic_store(&load.mark, true);
    while (atomic_load(&sh[0].ok_after) < 10 && atomic_load(&sh[0].sent[LINES - 1]) < 95) {
        assert_true(mono() < deadline);
        sleep_ms(20);
    }
    load_stop();
    long unavailable = 0;
    for (int i = 0; i < SHOPPERS; i++) {
        assert_int_equal(atomic_load(&sh[i].other), 0);
        unavailable += atomic_load(&sh[i].unavailable);
    }
    assert_true(atomic_load(&sh[0].ok_after) >= 10);
    printf("failover: %ld adds answered 503 during it\n", unavailable);
    /* Every acknowledged add is in the cart (the cluster may still be settling: 503 is
     * retried; nothing else is accepted). */
    for (int i = 0; i < SHOPPERS; i++) {
        json_t *cart = NULL;
        deadline = mono() + 60000;
        for (;;) {
            assert_int_equal(th_call(srv, "GET", "/api/v1/cart", tokens[i], &r, NULL), 0);
            if (r.status == 200)
                break;
            assert_int_equal(r.status, 503);
            th_resp_free(&r);
            assert_true(mono() < deadline);
            sleep_ms(100);
        }
        cart = r.json;
        for (int k = 0; k < LINES; k++) {
            long long q = qty_of(cart, pids[k]);
            if (q < atomic_load(&sh[i].acked[k]) || q > atomic_load(&sh[i].sent[k]))
                fail_msg("shopper %d, product %d: %lld in the cart, %ld acknowledged, %ld sent", i,
                         k, q, atomic_load(&sh[i].acked[k]), atomic_load(&sh[i].sent[k]));
        }
        th_resp_free(&r);
        free(tokens[i]);
    }
    free(admin);
    assert_int_equal(th_stop(srv), 0);
    th_cleanup(srv);
    th_rc_restart();
    th_rc_wait_whole(ports, 120000);
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
    const char *colon = strrchr(redis_url, ':');
    redis_port = colon ? atoi(colon + 1) : 6379;
    spare_port = atoi(sp);
    snprintf(run_id, sizeof run_id, "%d_%ld", (int)getpid(), (long)time(NULL));
    snprintf(spare_dir, sizeof spare_dir, "/tmp/emporium-redis-carts.%d", (int)getpid());
    if (mkdir(spare_dir, 0700) != 0) {
        perror(spare_dir);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lost_and_stale_copies),
        cmocka_unit_test_teardown(test_redis_stopped_and_started, spare_teardown),
        cmocka_unit_test(test_sessions_redis_on_off),
        cmocka_unit_test(test_two_processes),
        cmocka_unit_test_teardown(test_master_killed_mid_load, kill_teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", spare_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", spare_dir);
    return rc;
}
