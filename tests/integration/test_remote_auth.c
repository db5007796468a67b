/* SPDX-License-Identifier: MIT */
/* test_remote_auth.c — the remote authenticator (docs/topology.md): a process without the
 * user service (here `--services cart,inventory`) checks bearer tokens at a user process
 * (EMPORIUM_USER_URL) through the internal route POST /internal/v1/user/sessions/verify.
 *
 * Two real servers: U runs every service (the accounts live there), S runs cart and
 * inventory only. Through S's own routes: a customer is authenticated as a customer (403 on
 * an admin route, not 401), an admin as an admin, an unknown token is 401; the internal route
 * wants the internal token and names the field at fault; a logout at U takes effect at S
 * within the cache TTL; U frozen (SIGSTOP) makes S answer 503 within its upstream deadline
 * for a token it has not cached — never a 401 that would make a client drop a good token —
 * and S recovers when U runs again; no token ever reaches either log. Waits are for
 * conditions with generous deadlines. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>

#include "harness.h"

#define INTERNAL_TOKEN "remote-auth-test-internal-token-0123"
#define CACHE_SECONDS "1"

static struct th_server U, S;
static char *admin_token;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The status of an admin-only route of S (inventory of a product S does not know): 401 not
 * authenticated, 403 a customer, 404 an admin, 503 the user service unreachable. */
static long admin_route(const char *token)
{
    struct th_resp r;
    if (th_call(&S, "GET", "/api/v1/inventory/1", token, &r, NULL) < 0)
        return -1;
    long st = r.status;
    th_resp_free(&r);
    return st;
}

/* Polls admin_route(token) until it answers `want`, for at most `seconds`. */
static long wait_status(const char *token, long want, double seconds)
{
    double end = now_s() + seconds;
    long st;
    while ((st = admin_route(token)) != want && now_s() < end)
        usleep(100 * 1000);
    return st;
}

/* Whether every thread of pid is stopped (state T in /proc): kill(SIGSTOP) returns before
 * the threads running on other CPUs have stopped. */
static bool all_stopped(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return false;
    bool all = true;
    struct dirent *e;
    while (all && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char stat[400], buf[512];
        snprintf(stat, sizeof stat, "%s/%s/stat", path, e->d_name);
        FILE *f = fopen(stat, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = 0;
        const char *p = strrchr(buf, ')'); /* "pid (comm) S …" */
        all = p && p[1] == ' ' && p[2] == 'T';
    }
    closedir(d);
    return all;
}

static int setup(void **state)
{
    (void)state;
    const char *env_u[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_INTERNAL_TOKEN=" INTERNAL_TOKEN,
                           NULL};
    if (th_start(&U, env_u, NULL) < 0 || !(admin_token = th_admin_token(&U)))
        return -1;
    char user_url[128];
    snprintf(user_url, sizeof user_url, "EMPORIUM_USER_URL=%s", U.base_url);
    const char *env_s[] = {"EMPORIUM_RATE_LIMITS=off",
                           "EMPORIUM_INTERNAL_TOKEN=" INTERNAL_TOKEN,
                           user_url,
                           "EMPORIUM_USER_AUTH_CACHE_SECONDS=" CACHE_SECONDS,
                           "EMPORIUM_UPSTREAM_TIMEOUT_MS=1500",
                           NULL};
    const char *args_s[] = {"--services", "cart,inventory", NULL};
    return th_start(&S, env_s, args_s);
}

static int teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (S.pid > 0 && th_stop(&S) != 0)
        rc = -1;
    th_cleanup(&S);
    if (th_suite_stop(&U, admin_token) != 0)
        rc = -1;
    return rc;
}

/* Roles come across: customer 403, admin 404 (allowed, no such stock row), bad token 401. */
static void test_roles_through_the_remote(void **state)
{
    (void)state;
    char *tok = th_register(&U, "remote-roles@example.com", "a good password 1");
    assert_non_null(tok);
    assert_int_equal(admin_route(tok), 403);
    assert_int_equal(admin_route(admin_token), 404);
    assert_int_equal(admin_route("not-a-session-token-at-all-0123456789abc"), 401);
    assert_int_equal(admin_route(NULL), 401);
    /* A customer route of S: the cart is the caller's own. */
    struct th_resp r;
    assert_int_equal(th_call(&S, "GET", "/api/v1/cart", tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    free(tok);
}

/* The internal route itself: the internal token first, then the bearer token. */
static void test_internal_route(void **state)
{
    (void)state;
    char *tok = th_register(&U, "remote-internal@example.com", "a good password 1");
    assert_non_null(tok);
    char body[256];
    snprintf(body, sizeof body, "{\"token\":\"%s\"}", tok);
    const char *json = "Content-Type: application/json";
    const char *none[] = {json, NULL};
    const char *wrong[] = {json, "X-Internal-Token: wrong-token-wrong-token", NULL};
    const char *good[] = {json, "X-Internal-Token: " INTERNAL_TOKEN, NULL};
    struct th_resp r;
    const char *path = "/internal/v1/user/sessions/verify";

    assert_int_equal(th_req(&U, "POST", path, body, none, &r), 0);
    assert_true(th_is_error(&r, 401, NULL, "X-Internal-Token"));
    th_resp_free(&r);
    assert_int_equal(th_req(&U, "POST", path, body, wrong, &r), 0);
    assert_true(th_is_error(&r, 403, NULL, "X-Internal-Token"));
    th_resp_free(&r);

    assert_int_equal(th_req(&U, "POST", path, body, good, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "role"), "customer");
    assert_string_equal(th_jstr(r.json, "tier"), "standard");
    const char *uid = th_jstr(r.json, "user_id");
    assert_non_null(uid);
    char uid_copy[24];
    snprintf(uid_copy, sizeof uid_copy, "%s", uid);
    th_resp_free(&r);
    assert_int_equal(th_call(&U, "GET", "/api/v1/users/me", tok, &r, NULL), 0);
    assert_string_equal(th_jstr(r.json, "id"), uid_copy);
    th_resp_free(&r);

    assert_int_equal(th_req(&U, "POST", path,
                            "{\"token\":\"not-a-session-token-at-all-0123456789abc\"}", good, &r),
                     0);
    assert_true(th_is_error(&r, 401, NULL, "token"));
    th_resp_free(&r);
    assert_int_equal(th_req(&U, "POST", path, "{\"tok\":\"x\"}", good, &r), 0);
    assert_int_equal(r.status, 400);
    th_resp_free(&r);
    free(tok);
}

/* A logout at the user process takes effect at S within the cache TTL (1 s here). */
static void test_logout_reaches_the_remote(void **state)
{
    (void)state;
    char *tok = th_register(&U, "remote-logout@example.com", "a good password 1");
    assert_non_null(tok);
    assert_int_equal(admin_route(tok), 403); /* now cached at S */
    struct th_resp r;
    assert_int_equal(th_call(&U, "POST", "/api/v1/auth/logout", tok, &r, NULL), 0);
    assert_int_equal(r.status, 204);
    th_resp_free(&r);
    double t0 = now_s();
    assert_int_equal(wait_status(tok, 401, 60), 401);
    /* Bounded by the TTL: well within it plus a generous margin for a loaded machine. */
    assert_true(now_s() - t0 < 30);
    free(tok);
}

/* The user process frozen: S answers 503 (with Retry-After) for a token it has not cached,
 * within its deadline; then recovers when the user process runs again. */
static void test_user_process_unreachable(void **state)
{
    (void)state;
    char *tok = th_register(&U, "remote-down@example.com", "a good password 1");
    assert_non_null(tok);
    assert_int_equal(kill(U.pid, SIGSTOP), 0);
    double end = now_s() + 30;
    while (!all_stopped(U.pid) && now_s() < end)
        usleep(10 * 1000);
    assert_true(all_stopped(U.pid));
    struct th_resp r;
    assert_int_equal(th_call(&S, "GET", "/api/v1/inventory/1", tok, &r, NULL), 0);
    assert_true(th_is_error(&r, 503, NULL, NULL));
    char ra[16];
    assert_non_null(th_header(&r, "Retry-After", ra, sizeof ra));
    th_resp_free(&r);
    assert_int_equal(kill(U.pid, SIGCONT), 0);
    /* The breaker may be open for a moment: wait for the acceptance. */
    assert_int_equal(wait_status(tok, 403, 60), 403);
    free(tok);
}

/* No bearer token of this run in either server's log. */
static void test_tokens_never_logged(void **state)
{
    (void)state;
    char *tok = th_register(&U, "remote-log@example.com", "a good password 1");
    assert_non_null(tok);
    assert_int_equal(admin_route(tok), 403);
    const char *logs[] = {U.log_path, S.log_path};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(logs[i], "r");
        assert_non_null(f);
        char line[8192];
        while (fgets(line, sizeof line, f)) {
            assert_null(strstr(line, tok));
            assert_null(strstr(line, admin_token));
        }
        fclose(f);
    }
    free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roles_through_the_remote),
        cmocka_unit_test(test_internal_route),
        cmocka_unit_test(test_logout_reaches_the_remote),
        cmocka_unit_test(test_user_process_unreachable),
        cmocka_unit_test(test_tokens_never_logged),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
