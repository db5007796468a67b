/* SPDX-License-Identifier: MIT */
/* test_ops.c — /health, /ready, /metrics (checked by promtool), /openapi.json, rate limits
 * and graceful shutdown, through HTTP against the real binary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "harness.h"

static void test_health_ready(void **state)
{
    struct th_server s;
    assert_int_equal(th_start(&s, NULL, NULL), 0);
    struct th_resp r;
    assert_int_equal(th_req(&s, "GET", "/health", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "status"), "ok");
    th_resp_free(&r);
    assert_int_equal(th_req(&s, "GET", "/ready", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(th_req(&s, "GET", "/openapi.json", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "openapi"), "3.1.0");
    assert_non_null(json_object_get(json_object_get(r.json, "paths"), "/api/v1/auth/login"));
    th_resp_free(&r);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

/* A TCP relay between the server and PostgreSQL that the test can cut, so /ready sees its
 * database go away and come back. One thread, poll over every pair. */
struct relay {
    int listen_fd, port, upstream_port;
    atomic_bool cut, stop;
    pthread_t thread;
};

static int relay_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void *relay_main(void *arg)
{
    struct relay *r = arg;
    enum { MAXP = 64 };
    int a[MAXP], b[MAXP], n = 0;
    while (!atomic_load(&r->stop)) {
        if (atomic_load(&r->cut)) { /* drop every relayed connection, refuse new ones */
            for (int i = 0; i < n; i++)
                close(a[i]), close(b[i]);
            n = 0;
        }
        struct pollfd p[1 + 2 * MAXP];
        p[0] = (struct pollfd){.fd = r->listen_fd, .events = POLLIN};
        for (int i = 0; i < n; i++) {
            p[1 + 2 * i] = (struct pollfd){.fd = a[i], .events = POLLIN};
            p[2 + 2 * i] = (struct pollfd){.fd = b[i], .events = POLLIN};
        }
        int polled = n; /* pairs accepted below were not polled this round */
        if (poll(p, (nfds_t)(1 + 2 * n), 20) <= 0)
            continue;
        if (p[0].revents & POLLIN) {
            int c = accept(r->listen_fd, NULL, NULL);
            int u =
                c >= 0 && !atomic_load(&r->cut) && n < MAXP ? relay_connect(r->upstream_port) : -1;
            if (u >= 0) {
                a[n] = c;
                b[n] = u;
                n++;
            } else if (c >= 0) {
                close(c);
            }
        }
        for (int i = polled - 1; i >= 0; i--) {
            bool dead = false;
            for (int side = 0; side < 2 && !dead; side++) {
                short ev = p[1 + 2 * i + side].revents;
                if (!ev)
                    continue;
                char buf[16384];
                ssize_t got = read(side ? b[i] : a[i], buf, sizeof buf);
                if (got <= 0 || write(side ? a[i] : b[i], buf, (size_t)got) != got)
                    dead = true;
            }
            if (dead) {
                close(a[i]);
                close(b[i]);
                a[i] = a[n - 1];
                b[i] = b[n - 1];
                n--;
            }
        }
    }
    for (int i = 0; i < n; i++)
        close(a[i]), close(b[i]);
    return NULL;
}

static int relay_start(struct relay *r, int upstream_port)
{
    memset(r, 0, sizeof *r);
    r->upstream_port = upstream_port;
    r->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(r->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(r->listen_fd, 64) != 0 ||
        getsockname(r->listen_fd, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    r->port = ntohs(sa.sin_port);
    return pthread_create(&r->thread, NULL, relay_main, r);
}

static void relay_stop(struct relay *r)
{
    atomic_store(&r->stop, true);
    pthread_join(r->thread, NULL);
    close(r->listen_fd);
}

/* /ready answers 503 naming the databases while PostgreSQL is unreachable, 200 again after. */
static void test_ready_reports_down_database(void **state)
{
    const char *backend = getenv("EMPORIUM_TEST_BACKEND");
    const char *pg = getenv("EMPORIUM_TEST_PG_URL");
    if (!backend || strcmp(backend, "postgres") != 0 || !pg) {
        fprintf(stderr, "skipped: an embedded SQLite file cannot become unreachable\n");
        skip();
    }
    /* postgresql://user@127.0.0.1:PORT/db -> PORT */
    const char *colon = strrchr(pg, ':');
    assert_non_null(colon);
    int pg_port = atoi(colon + 1);
    assert_true(pg_port > 0);
    struct relay relay;
    assert_int_equal(relay_start(&relay, pg_port), 0);
    char url[512];
    snprintf(url, sizeof url, "%.*s:%d%s", (int)(colon - pg), pg, relay.port, strchr(colon, '/'));
    char *saved = strdup(pg);
    setenv("EMPORIUM_TEST_PG_URL", url, 1);
    struct th_server s;
    int rc = th_start(&s, NULL, NULL);
    setenv("EMPORIUM_TEST_PG_URL", saved, 1);
    free(saved);
    assert_int_equal(rc, 0);

    struct th_resp r;
    assert_int_equal(th_req(&s, "GET", "/ready", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    atomic_store(&relay.cut, true);
    /* The relay drops its connections on its next round: wait for /ready to notice. */
    for (int i = 0; i < 3000; i++) {
        assert_int_equal(th_req(&s, "GET", "/ready", NULL, NULL, &r), 0);
        if (r.status == 503)
            break;
        th_resp_free(&r);
        usleep(20000);
    }
    assert_true(th_is_error(&r, 503, "not_ready", NULL));
    json_t *down = json_object_get(json_object_get(r.json, "error"), "down");
    assert_true(json_array_size(down) >= 1);
    bool users = false;
    for (size_t i = 0; i < json_array_size(down); i++)
        if (!strcmp(json_string_value(json_array_get(down, i)), "database users"))
            users = true;
    assert_true(users);
    char buf[16];
    assert_non_null(th_header(&r, "Retry-After", buf, sizeof buf));
    th_resp_free(&r);
    /* The process stays alive (liveness is not readiness). */
    assert_int_equal(th_req(&s, "GET", "/health", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    atomic_store(&relay.cut, false);
    bool ready = false;
    for (int i = 0; i < 100 && !ready; i++) {
        assert_int_equal(th_req(&s, "GET", "/ready", NULL, NULL, &r), 0);
        ready = r.status == 200;
        th_resp_free(&r);
        if (!ready)
            usleep(50000);
    }
    assert_true(ready);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
    relay_stop(&relay);
}

/* The value of the /metrics sample named `series` (its whole name with labels, e.g.
 * "emporium_orders_total{status=\"placed\"}"); -1 when it is absent or /metrics did not
 * answer. */
static long metric(struct th_server *s, const char *series)
{
    struct th_resp r;
    if (th_req(s, "GET", "/metrics", NULL, NULL, &r) != 0)
        return -1;
    char line[200];
    snprintf(line, sizeof line, "\n%s ", series);
    const char *p = r.status == 200 ? strstr(r.body, line) : NULL;
    long n = p ? strtol(p + strlen(line), NULL, 10) : -1;
    th_resp_free(&r);
    return n;
}

/* Polls (60 s at most) until the sample `series` reaches at least `want`. */
static bool wait_metric(struct th_server *s, const char *series, long want)
{
    for (int i = 0; i < 30000; i++) {
        if (metric(s, series) >= want)
            return true;
        usleep(2000);
    }
    return false;
}

struct slow_order {
    struct th_server *s;
    const char *token;
    struct th_resp r;
    int rc;
};

static void *place_slow_order(void *arg)
{
    struct slow_order *o = arg;
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    char auth[200];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->token);
    const char *h[] = {hdrs[0], auth, "Idempotency-Key: drain-1", NULL};
    o->rc = th_req(o->s, "POST", "/api/v1/orders",
                   "{\"shipping_address\":{\"name\":\"D\",\"line1\":\"1 Road\",\"city\":\"Town\","
                   "\"postal_code\":\"12345\",\"country\":\"US\"},\"payment\":{\"card_number\":"
                   "\"4242424242424242\",\"exp_month\":12,\"exp_year\":2040,\"cvc\":\"123\"},"
                   "\"shipping_method\":\"standard\"}",
                   h, &o->r);
    return NULL;
}

/* SIGTERM while a request is running: the request completes (201) and the process exits 0. */
static void test_sigterm_drains_in_flight(void **state)
{
    struct th_server s;
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_PAYMENT_LATENCY_MS=800", NULL};
    assert_int_equal(th_start(&s, env, NULL), 0);
    char *adm = th_admin_token(&s);
    assert_non_null(adm);
    struct th_resp r;
    assert_int_equal(
        th_call(&s, "POST", "/api/v1/products", adm, &r,
                "{\"sku\":\"DRAIN-1\",\"name\":\"Drain Lamp\",\"description\":\"d\","
                "\"category\":\"lighting\",\"price\":{\"amount\":1000,\"currency\":\"USD\"}}"),
        0);
    assert_int_equal(r.status, 201);
    char pid[32], path[64];
    snprintf(pid, sizeof pid, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/inventory/%s", pid);
    assert_int_equal(th_call(&s, "PUT", path, adm, &r, "{\"available\":5}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    char *tok = th_register(&s, "drain@example.com", "drain password");
    assert_non_null(tok);
    assert_int_equal(th_call(&s, "POST", "/api/v1/cart/items", tok, &r,
                             "{\"product_id\":\"%s\",\"quantity\":1}", pid),
                     0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    struct slow_order o = {.s = &s, .token = tok};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, place_slow_order, &o), 0);
    /* SIGTERM once the server has placed the order: it then waits 800 ms on the slow
     * provider. (Counting requests in flight raced: a finished /metrics request can still
     * be counted while the next one runs, which looked like the order before it was sent.) */
    assert_true(wait_metric(&s, "emporium_orders_total{status=\"placed\"}", 1));
    kill(s.pid, SIGTERM);
    pthread_join(t, NULL);
    assert_int_equal(o.rc, 0);
    if (o.r.status != 201)
        fail_msg("in-flight order during SIGTERM: %ld %s", o.r.status, o.r.body);
    th_resp_free(&o.r);
    assert_int_equal(th_stop(&s), 0); /* reaps the exit status: 0 */
    free(tok);
    free(adm);
    th_cleanup(&s);
}

/* A process that runs only some services answers for the others with 503, never crashes. */
static void test_partial_services(void **state)
{
    struct th_server s;
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};
    assert_int_equal(th_start(&s, env, NULL), 0);
    char *adm = th_admin_token(&s);
    assert_non_null(adm);
    struct th_resp r;
    assert_int_equal(
        th_call(&s, "POST", "/api/v1/products", adm, &r,
                "{\"sku\":\"PART-1\",\"name\":\"Part Lamp\",\"description\":\"d\","
                "\"category\":\"lighting\",\"price\":{\"amount\":1000,\"currency\":\"USD\"}}"),
        0);
    assert_int_equal(r.status, 201);
    char pid[32], path[80];
    snprintf(pid, sizeof pid, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/inventory/%s", pid);
    assert_int_equal(th_call(&s, "PUT", path, adm, &r, "{\"available\":5}"), 0);
    th_resp_free(&r);
    char *tok = th_register(&s, "partial@example.com", "partial password");
    assert_non_null(tok);
    assert_int_equal(th_call(&s, "POST", "/api/v1/cart/items", tok, &r,
                             "{\"product_id\":\"%s\",\"quantity\":1}", pid),
                     0);
    th_resp_free(&r);
    struct slow_order o = {.s = &s, .token = tok};
    place_slow_order(&o);
    assert_int_equal(o.r.status, 201);
    char oid[32];
    snprintf(oid, sizeof oid, "%s", th_jstr(o.r.json, "id"));
    th_resp_free(&o.r);
    assert_int_equal(th_stop(&s), 0);

    /* The order service without shipping and payment in this process. */
    const char *args[] = {"--services", "user,order,inventory,cart,product", NULL};
    assert_int_equal(th_restart(&s, env, args), 0);
    snprintf(path, sizeof path, "/api/v1/orders/%s", oid);
    assert_int_equal(th_call(&s, "GET", path, tok, &r, NULL), 0);
    assert_true(r.status == 200 || r.status == 503);
    th_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", oid);
    assert_int_equal(th_call(&s, "POST", path, tok, &r, NULL), 0);
    assert_true(r.status == 200 || r.status == 503);
    th_resp_free(&r);
    assert_int_equal(th_req(&s, "GET", "/health", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(th_stop(&s), 0);
    free(tok);
    free(adm);
    th_cleanup(&s);
}

/* EMPORIUM_MAX_CONNECTIONS bounds open connections: past it the server stops accepting (new
 * clients wait in the kernel's backlog, served by nobody), and serves again once some close. */
static void test_connection_limit(void **state)
{
    struct th_server s;
    const char *env[] = {"EMPORIUM_MAX_CONNECTIONS=16", NULL};
    assert_int_equal(th_start(&s, env, NULL), 0);
    int fds[16];
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 16; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof sa), 0);
    }
    /* The server accepts in arrival order, so the 17th connection comes after these 16 and
     * gets no answer while they stay open … */
    int extra = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(extra, (struct sockaddr *)&sa, sizeof sa), 0);
    static const char get[] = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(write(extra, get, sizeof get - 1), (ssize_t)(sizeof get - 1));
    struct pollfd p = {.fd = extra, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 700), 0);
    /* … and is served once they close. */
    for (int i = 0; i < 16; i++)
        close(fds[i]);
    assert_int_equal(poll(&p, 1, 60000), 1);
    char buf[64] = {0};
    assert_true(read(extra, buf, sizeof buf - 1) > 12);
    assert_memory_equal(buf, "HTTP/1.1 200", 12);
    close(extra);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

static void test_metrics_promtool(void **state)
{
    struct th_server s;
    assert_int_equal(th_start(&s, NULL, NULL), 0);
    struct th_resp r;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(th_req(&s, "GET", "/api/v1/users/me", NULL, NULL, &r), 0);
        th_resp_free(&r);
    }
    /* Requests are counted when MHD reports them complete, which can be a moment after the
     * client has the response: poll for the third one (30 s at most, a busy machine). */
    for (int tries = 0;; tries++) {
        assert_int_equal(th_req(&s, "GET", "/metrics", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        if (strstr(r.body, "status=\"401\"} 3\n") || tries == 1500)
            break;
        th_resp_free(&r);
        usleep(20000);
    }
    char ct[128];
    assert_non_null(th_header(&r, "Content-Type", ct, sizeof ct));
    assert_non_null(strstr(ct, "text/plain"));
    assert_non_null(strstr(r.body, "emporium_http_requests_total{route=\"/api/v1/users/"
                                   "me\",method=\"GET\",status=\"401\"} 3\n"));
    assert_non_null(strstr(r.body, "emporium_http_request_duration_seconds_bucket{route=\"/api/v1/"
                                   "users/me\",method=\"GET\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(r.body, "emporium_http_request_duration_seconds_count{route=\"/api/v1/"
                                   "users/me\",method=\"GET\"} 3\n"));
    assert_non_null(strstr(r.body, "emporium_http_requests_in_flight "));
    assert_non_null(strstr(r.body, "emporium_db_connections{db=\"users\",state=\"in_use\"}"));
    const char *backend = getenv("EMPORIUM_TEST_BACKEND");
    if (!backend || strcmp(backend, "postgres") != 0) {
        /* SQLite: group commit at work, per database; the users' migrations committed */
        assert_non_null(strstr(r.body, "emporium_db_write_batches_total{db=\"carts\"} "));
        assert_non_null(strstr(r.body, "emporium_db_write_intents_total{db=\"carts\"} "));
        assert_non_null(strstr(r.body, "emporium_db_wal_frames_total{db=\"users\"} "));
        const char *commits = strstr(r.body, "emporium_db_commits_total{db=\"users\"} ");
        assert_non_null(commits);
        assert_true(atol(strchr(commits, '}') + 2) > 0);
    } else {
        assert_null(strstr(r.body, "emporium_db_commits_total"));
    }
    assert_non_null(strstr(r.body, "process_resident_memory_bytes "));
    assert_non_null(strstr(r.body, "process_cpu_seconds_total "));
    assert_non_null(strstr(r.body, "process_open_fds "));

    /* The real checker: promtool (Debian prometheus, which `make test` installs) must find
     * nothing to complain about. Without promtool this test fails: a skipped lint is no lint. */
    int have = system("command -v promtool >/dev/null 2>&1");
    if (have != 0)
        fail_msg(
            "promtool is not installed (Debian package prometheus; scripts/bootstrap.sh test)");
    char path[400];
    snprintf(path, sizeof path, "%s/metrics.txt", s.data_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(r.body, 1, r.len, f), r.len);
    assert_int_equal(fclose(f), 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
    int rc = system(cmd);
    assert_int_equal(rc, 0);
    th_resp_free(&r);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

/* API.md: every response carries X-Request-Id, echoed when the client sent one. Ids of up
 * to 128 printable characters are echoed (a 100-character id used to be replaced); longer
 * ones are replaced by a generated id. */
static void test_request_id_echo(void **state)
{
    struct th_server s;
    assert_int_equal(th_start(&s, NULL, NULL), 0);
    char id[129], hdr[160], got[256];
    memset(id, 'r', 100);
    id[100] = 0;
    snprintf(hdr, sizeof hdr, "X-Request-Id: %s", id);
    const char *const h1[] = {hdr, NULL};
    struct th_resp r;
    assert_int_equal(th_req(&s, "GET", "/health", NULL, h1, &r), 0);
    assert_non_null(th_header(&r, "X-Request-Id", got, sizeof got));
    assert_string_equal(got, id);
    th_resp_free(&r);
    char longid[201], lhdr[240];
    memset(longid, 'q', 200);
    longid[200] = 0;
    snprintf(lhdr, sizeof lhdr, "X-Request-Id: %s", longid);
    const char *const h2[] = {lhdr, NULL};
    assert_int_equal(th_req(&s, "GET", "/health", NULL, h2, &r), 0);
    assert_non_null(th_header(&r, "X-Request-Id", got, sizeof got));
    assert_true(strlen(got) > 0 && strlen(got) <= 128);
    th_resp_free(&r);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

/* "EMPORIUM_REDIS_PREFIX=…" for a server whose rate-limit budgets must start full. With Redis,
 * the buckets are shared by every process on the same prefix, also one after another (as
 * they must be), so each such server gets a prefix of its own. */
static const char *own_budgets(char *buf, size_t cap)
{
    static int n;
    const char *base = getenv("EMPORIUM_REDIS_PREFIX");
    snprintf(buf, cap, "EMPORIUM_REDIS_PREFIX=%sops%d_%d:", base ? base : "", (int)getpid(), ++n);
    return buf;
}

static void test_rate_limits(void **state)
{
    struct th_server s;
    char prefix[96];
    const char *env[] = {"EMPORIUM_RL_ANON=0.01:3", "EMPORIUM_RL_USER=0.01:4",
                         "EMPORIUM_RL_PREMIUM=0.01:8", own_budgets(prefix, sizeof prefix), NULL};
    assert_int_equal(th_start(&s, env, NULL), 0);
    struct th_resp r;
    char buf[64];
    /* Anonymous: 3 requests per address per service, then 429 with the headers. */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(th_req(&s, "POST", "/api/v1/auth/login", "{}", NULL, &r), 0);
        assert_int_equal(r.status, 400);
        assert_non_null(th_header(&r, "RateLimit-Limit", buf, sizeof buf));
        assert_string_equal(buf, "3");
        assert_non_null(th_header(&r, "RateLimit-Remaining", buf, sizeof buf));
        assert_int_equal(atoi(buf), 2 - i);
        th_resp_free(&r);
    }
    assert_int_equal(th_req(&s, "POST", "/api/v1/auth/login", "{}", NULL, &r), 0);
    assert_true(th_is_error(&r, 429, "rate_limited", NULL));
    assert_non_null(th_header(&r, "Retry-After", buf, sizeof buf));
    assert_true(atoi(buf) >= 1);
    assert_non_null(th_header(&r, "RateLimit-Reset", buf, sizeof buf));
    th_resp_free(&r);
    /* Health is never limited. */
    assert_int_equal(th_req(&s, "GET", "/health", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    /* Users: standard gets 4, premium 8 (users created by the CLI, login throttle apart). */
    char pw[400];
    snprintf(pw, sizeof pw, "%s/pw", s.data_dir);
    FILE *f = fopen(pw, "w");
    assert_non_null(f);
    fputs("a long password\n", f);
    fclose(f);
    const char *mk1[] = {"user", "create", "--email", "std@example.com", "--password-file",
                         pw,     NULL};
    const char *mk2[] = {"user",   "create",  "--email", "vip@example.com", "--password-file", pw,
                         "--tier", "premium", NULL};
    assert_int_equal(th_cli(&s, mk1, NULL), 0);
    assert_int_equal(th_cli(&s, mk2, NULL), 0);
    /* Logins come from the anonymous bucket of the "user" service, which is spent: use a
     * restarted server (fresh buckets, same data) to log in once each. */
    assert_int_equal(th_stop(&s), 0);
    own_budgets(prefix, sizeof prefix);
    assert_int_equal(th_restart(&s, env, NULL), 0);
    char *tok[2];
    const char *emails[] = {"std@example.com", "vip@example.com"};
    for (int u = 0; u < 2; u++) {
        assert_int_equal(th_call(&s, "POST", "/api/v1/auth/login", NULL, &r,
                                 "{\"email\":\"%s\",\"password\":\"a long password\"}", emails[u]),
                         0);
        assert_int_equal(r.status, 200);
        tok[u] = strdup(th_jstr(r.json, "token"));
        th_resp_free(&r);
    }
    int limits[] = {4, 8};
    for (int u = 0; u < 2; u++) {
        for (int i = 0; i < limits[u]; i++) {
            assert_int_equal(th_call(&s, "GET", "/api/v1/users/me", tok[u], &r, NULL), 0);
            assert_int_equal(r.status, 200);
            th_resp_free(&r);
        }
        assert_int_equal(th_call(&s, "GET", "/api/v1/users/me", tok[u], &r, NULL), 0);
        assert_true(th_is_error(&r, 429, "rate_limited", NULL));
        th_resp_free(&r);
        free(tok[u]);
    }
    assert_int_equal(th_stop(&s), 0);

    /* EMPORIUM_RATE_LIMITS=off lifts every limit. */
    const char *off[] = {"EMPORIUM_RL_ANON=0.01:3", "EMPORIUM_RATE_LIMITS=off", NULL};
    assert_int_equal(th_restart(&s, off, NULL), 0);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(th_req(&s, "POST", "/api/v1/auth/login", "{}", NULL, &r), 0);
        assert_int_equal(r.status, 400);
        th_resp_free(&r);
    }
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_ready),
        cmocka_unit_test(test_metrics_promtool),
        cmocka_unit_test(test_ready_reports_down_database),
        cmocka_unit_test(test_sigterm_drains_in_flight),
        cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_partial_services),
        cmocka_unit_test(test_rate_limits),
        cmocka_unit_test(test_request_id_echo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
