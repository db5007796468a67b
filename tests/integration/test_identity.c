/* SPDX-License-Identifier: MIT */
/* test_identity.c — the identity API, auth middleware, limits and bad input, through HTTP
 * against the real binary (SQLite or PostgreSQL per EMPORIUM_TEST_BACKEND). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <curl/curl.h>

#include "emporium/db.h"
#include "emporium/ratelimit.h"
#include "emporium/svc/user.h"
#include "harness.h"

static struct th_server srv;

static int setup(void **state)
{
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};
    return th_start(&srv, env, NULL) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    int rc = th_stop(&srv);
    th_cleanup(&srv);
    return rc == 0 ? 0 : -1; /* a non-zero exit also catches sanitizer reports */
}

static void test_register_login_me_logout(void **state)
{
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/register", NULL, &r,
                             "{\"email\":\"  Alice@Example.COM \",\"password\":\"correct "
                             "horse\",\"name\":\"Alice\"}"),
                     0);
    assert_int_equal(r.status, 201);
    assert_string_equal(th_jstr(r.json, "user.email"), "alice@example.com");
    assert_string_equal(th_jstr(r.json, "user.role"), "customer");
    assert_string_equal(th_jstr(r.json, "user.tier"), "standard");
    assert_non_null(th_jstr(r.json, "user.id"));
    assert_non_null(th_jstr(r.json, "expires_at"));
    assert_true(strlen(th_jstr(r.json, "token")) >= 40);
    char id[32];
    snprintf(id, sizeof id, "%s", th_jstr(r.json, "user.id"));
    th_resp_free(&r);

    /* Same email in another case is the same account. */
    assert_int_equal(
        th_call(&srv, "POST", "/api/v1/auth/register", NULL, &r,
                "{\"email\":\"ALICE@example.com\",\"password\":\"another pass\",\"name\":\"A2\"}"),
        0);
    assert_true(th_is_error(&r, 409, "email_taken", NULL));
    th_resp_free(&r);

    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/login", NULL, &r,
                             "{\"email\":\"alice@example.com\",\"password\":\"correct horse\"}"),
                     0);
    assert_int_equal(r.status, 200);
    char *token = strdup(th_jstr(r.json, "token"));
    th_resp_free(&r);

    assert_int_equal(th_call(&srv, "GET", "/api/v1/users/me", token, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "id"), id);
    assert_string_equal(th_jstr(r.json, "email"), "alice@example.com");
    assert_string_equal(th_jstr(r.json, "name"), "Alice");
    assert_string_equal(th_jstr(r.json, "role"), "customer");
    assert_string_equal(th_jstr(r.json, "tier"), "standard");
    assert_null(json_object_get(r.json, "password_hash"));
    th_resp_free(&r);

    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/logout", token, &r, NULL), 0);
    assert_int_equal(r.status, 204);
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", "/api/v1/users/me", token, &r, NULL), 0);
    assert_true(th_is_error(&r, 401, "unauthorized", NULL));
    th_resp_free(&r);
    free(token);
}

static void test_bad_credentials(void **state)
{
    char *t = th_register(&srv, "bob@example.com", "bobs password");
    assert_non_null(t);
    free(t);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/login", NULL, &r,
                             "{\"email\":\"bob@example.com\",\"password\":\"wrong password\"}"),
                     0);
    assert_true(th_is_error(&r, 401, "invalid_credentials", NULL));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/login", NULL, &r,
                             "{\"email\":\"nobody@example.com\",\"password\":\"whatever1\"}"),
                     0);
    assert_true(th_is_error(&r, 401, "invalid_credentials", NULL));
    th_resp_free(&r);
}

static void test_tokens(void **state)
{
    struct th_resp r;
    assert_int_equal(th_call(&srv, "GET", "/api/v1/users/me", NULL, &r, NULL), 0);
    assert_true(th_is_error(&r, 401, "unauthorized", "Authorization"));
    th_resp_free(&r);
    assert_int_equal(
        th_call(&srv, "GET", "/api/v1/users/me", "not-a-real-token-but-long-enough", &r, NULL), 0);
    assert_true(th_is_error(&r, 401, "unauthorized", "Authorization"));
    th_resp_free(&r);
    const char *basic[] = {"Authorization: Basic Zm9vOmJhcg==", NULL};
    assert_int_equal(th_req(&srv, "GET", "/api/v1/users/me", NULL, basic, &r), 0);
    assert_true(th_is_error(&r, 401, "unauthorized", "Authorization"));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/logout", NULL, &r, NULL), 0);
    assert_true(th_is_error(&r, 401, NULL, NULL));
    th_resp_free(&r);
}

/* Every bad-input case gets a 4xx JSON error naming the problem and writes nothing. */
static void test_bad_input(void **state)
{
    static const struct {
        const char *body;
        long status;
        const char *code;
        const char *field;
    } cases[] = {
        {"{\"email\":\"carol@example.com\",", 400, "invalid_json", NULL},
        {"[1,2,3]", 400, "validation_failed", "body"},
        {"\"just a string\"", 400, "validation_failed", "body"},
        {"", 400, "validation_failed", "body"},
        {"{\"email\":5,\"password\":\"carols password\",\"name\":\"C\"}", 400, "validation_failed",
         "email"},
        {"{\"email\":\"carol@example.com\",\"password\":12345678,\"name\":\"C\"}", 400,
         "validation_failed", "password"},
        {"{\"email\":\"carol@example.com\",\"name\":\"C\"}", 400, "validation_failed", "password"},
        {"{\"password\":\"carols password\",\"name\":\"C\"}", 400, "validation_failed", "email"},
        {"{\"email\":\"carol@example.com\",\"password\":\"carols password\"}", 400,
         "validation_failed", "name"},
        {"{\"email\":\"carol@example.com\",\"password\":\"carols "
         "password\",\"name\":\"C\",\"role\":\"admin\"}",
         400, "validation_failed", "role"},
        {"{\"email\":\"not-an-email\",\"password\":\"carols password\",\"name\":\"C\"}", 400,
         "validation_failed", "email"},
        {"{\"email\":\"carol@example.com\",\"password\":\"short\",\"name\":\"C\"}", 400,
         "validation_failed", "password"},
        {"{\"email\":\"carol@example.com\",\"password\":\"carols password\",\"name\":\"\"}", 400,
         "validation_failed", "name"},
        {"{\"email\":\"carol@example.com\",\"email\":\"x@example.com\",\"password\":\"carols "
         "password\",\"name\":\"C\"}",
         400, "invalid_json", NULL},
    };
    struct th_resp r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(th_req(&srv, "POST", "/api/v1/auth/register", cases[i].body, NULL, &r), 0);
        if (!th_is_error(&r, cases[i].status, cases[i].code, cases[i].field))
            fail_msg("case %zu: %s", i, cases[i].body);
        th_resp_free(&r);
    }
    /* Overlong email (300 chars) and password (200 chars). */
    char big[1024];
    memset(big, 'a', 300);
    big[300] = 0;
    assert_int_equal(
        th_call(&srv, "POST", "/api/v1/auth/register", NULL, &r,
                "{\"email\":\"%s@example.com\",\"password\":\"carols password\",\"name\":\"C\"}",
                big),
        0);
    assert_true(th_is_error(&r, 400, "validation_failed", "email"));
    th_resp_free(&r);
    big[200] = 0;
    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/register", NULL, &r,
                             "{\"email\":\"carol@example.com\",\"password\":\"%s\",\"name\":\"C\"}",
                             big),
                     0);
    assert_true(th_is_error(&r, 400, "validation_failed", "password"));
    th_resp_free(&r);
    /* Invalid UTF-8 inside a JSON string. */
    const char bad_utf8[] =
        "{\"email\":\"carol@example.com\",\"password\":\"carols \xff\xfe pass\",\"name\":\"C\"}";
    assert_int_equal(th_req(&srv, "POST", "/api/v1/auth/register", bad_utf8, NULL, &r), 0);
    assert_true(th_is_error(&r, 400, "invalid_json", NULL));
    th_resp_free(&r);
    /* Wrong content type. */
    const char *ct[] = {"Content-Type: text/plain", NULL};
    assert_int_equal(
        th_req(&srv, "POST", "/api/v1/auth/register",
               "{\"email\":\"carol@example.com\",\"password\":\"carols password\",\"name\":\"C\"}",
               ct, &r),
        0);
    assert_true(th_is_error(&r, 415, "unsupported_media_type", NULL));
    th_resp_free(&r);
    /* A body over 1 MiB. */
    size_t n = 2 * 1024 * 1024;
    char *huge = malloc(n + 64);
    assert_non_null(huge);
    int off = sprintf(huge, "{\"email\":\"carol@example.com\",\"name\":\"");
    memset(huge + off, 'x', n);
    strcpy(huge + off + n, "\"}");
    assert_int_equal(th_req(&srv, "POST", "/api/v1/auth/register", huge, NULL, &r), 0);
    assert_true(th_is_error(&r, 413, "too_large", NULL));
    th_resp_free(&r);
    free(huge);

    /* Nothing was written: carol has no account, and can still register. */
    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/login", NULL, &r,
                             "{\"email\":\"carol@example.com\",\"password\":\"carols password\"}"),
                     0);
    assert_true(th_is_error(&r, 401, NULL, NULL));
    th_resp_free(&r);
    char *t = th_register(&srv, "carol@example.com", "carols password");
    assert_non_null(t);
    free(t);
}

static void test_oversize_headers(void **state)
{
    char *h = malloc(20000 + 32);
    assert_non_null(h);
    strcpy(h, "X-Padding: ");
    memset(h + 11, 'p', 20000);
    h[20011] = 0;
    const char *hdrs[] = {h, NULL};
    struct th_resp r;
    assert_int_equal(th_req(&srv, "GET", "/api/v1/users/me", NULL, hdrs, &r), 0);
    assert_true(th_is_error(&r, 431, "headers_too_large", NULL));
    th_resp_free(&r);
    free(h);
}

static void test_login_throttle(void **state)
{
    char *t = th_register(&srv, "dave@example.com", "daves password");
    assert_non_null(t);
    free(t);
    struct th_resp r;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(
            th_call(&srv, "POST", "/api/v1/auth/login", NULL, &r,
                    "{\"email\":\"dave@example.com\",\"password\":\"wrong password\"}"),
            0);
        assert_int_equal(r.status, 401);
        th_resp_free(&r);
    }
    /* Even the right password is refused now (EMPORIUM_RATE_LIMITS=off does not lift it). */
    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/login", NULL, &r,
                             "{\"email\":\"dave@example.com\",\"password\":\"daves password\"}"),
                     0);
    assert_true(th_is_error(&r, 429, "too_many_failures", NULL));
    char buf[32];
    assert_non_null(th_header(&r, "Retry-After", buf, sizeof buf));
    assert_true(atoi(buf) >= 1);
    th_resp_free(&r);
}

/* POST /auth/login from a given loopback source address (all of 127/8 is loopback on Linux,
 * so binding the client socket to 127.0.0.N makes the server see another client). Returns
 * the HTTP status, or -1 on a transport error. */
static size_t discard(char *p, size_t size, size_t n, void *ud) { return size * n; }

static long login_from(const char *addr, const char *email, const char *password)
{
    CURL *c = curl_easy_init();
    if (!c)
        return -1;
    char url[128], body[256];
    snprintf(url, sizeof url, "%s/api/v1/auth/login", srv.base_url);
    snprintf(body, sizeof body, "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_INTERFACE, addr);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* Issue 9: five wrong passwords from one address used to lock the account for everyone.
 * Now the attacker's address is throttled for that account, and the owner, from another
 * address, still signs in. */
static void test_attacker_cannot_lock_out_owner(void **state)
{
    char *t = th_register(&srv, "frank@example.com", "franks password");
    assert_non_null(t);
    free(t);
    for (int i = 0; i < 5; i++)
        assert_int_equal(login_from("127.0.0.2", "frank@example.com", "wrong guess"), 401);
    /* The attacker is throttled, even with the right password, from that address… */
    assert_int_equal(login_from("127.0.0.2", "frank@example.com", "another guess"), 429);
    assert_int_equal(login_from("127.0.0.2", "frank@example.com", "franks password"), 429);
    /* …while the owner, from a fresh address, signs in. */
    assert_int_equal(login_from("127.0.0.3", "frank@example.com", "franks password"), 200);
    /* The address limit is per account: the attacker's address may still sign in to others. */
    char *g = th_register(&srv, "grace@example.com", "graces password");
    assert_non_null(g);
    free(g);
    assert_int_equal(login_from("127.0.0.2", "grace@example.com", "graces password"), 200);
}

/* Guessing from many addresses meets the slow per-account ceiling; the owner is not locked
 * out by a few dozen failures spread over addresses. */
static void test_distributed_guessing_hits_account_ceiling(void **state)
{
    char *t = th_register(&srv, "heidi@example.com", "heidis password");
    assert_non_null(t);
    free(t);
    /* 40 failures from 20 addresses, two each: under every limit. */
    char addr[32];
    for (int a = 0; a < 20; a++) {
        snprintf(addr, sizeof addr, "127.0.1.%d", a + 1);
        for (int i = 0; i < 2; i++)
            assert_int_equal(login_from(addr, "heidi@example.com", "wrong guess"), 401);
    }
    assert_int_equal(login_from("127.0.2.1", "heidi@example.com", "heidis password"), 200);
    /* Keep going from fresh addresses: the account ceiling (USER_THROTTLE_ACCOUNT_BURST
     * failures) stops the guessing, whatever the address. */
    long last = 401;
    int tries = 0;
    for (int a = 0; a < 60 && last == 401; a++) {
        snprintf(addr, sizeof addr, "127.0.3.%d", a + 1);
        last = login_from(addr, "heidi@example.com", "wrong guess");
        tries++;
    }
    assert_int_equal(last, 429);
    assert_true(40 + tries - 1 >= USER_THROTTLE_ACCOUNT_BURST);
}

/* The policy's arithmetic, with time simulated through the rate limiter's clock argument:
 * one wrong try every 30 s, for a day, from one address or from many, never empties the
 * account's bucket, so the owner is never locked out by it. */
static void test_throttle_policy_slow_guessing(void **state)
{
    struct ratelimit *rl = ratelimit_mem_new(1000);
    assert_non_null(rl);
    struct rl_result r;
    int64_t now = 1000000;
    for (int i = 0; i < 24 * 120; i++, now += 30 * 1000) {
        ratelimit_peek(rl, "acct", USER_THROTTLE_ACCOUNT_RATE, USER_THROTTLE_ACCOUNT_BURST, now,
                       &r);
        assert_true(r.allowed);
        ratelimit_take(rl, "acct", USER_THROTTLE_ACCOUNT_RATE, USER_THROTTLE_ACCOUNT_BURST, now,
                       &r);
    }
    /* And the owner's own try right after is allowed by the account bucket. */
    ratelimit_peek(rl, "acct", USER_THROTTLE_ACCOUNT_RATE, USER_THROTTLE_ACCOUNT_BURST, now, &r);
    assert_true(r.allowed);
    ratelimit_free(rl);
    /* The strict per (account, address) limit does stop a fast guesser. */
    assert_true(USER_THROTTLE_PAIR_BURST <= 10);
    assert_true(USER_THROTTLE_ACCOUNT_RATE > 1.0 / 30);
}

static long long count_sessions(struct db *db)
{
    struct db_conn *c;
    if (db_conn_take(db, &c) < 0)
        return -1;
    struct db_rows *rows = NULL;
    long long n = -1;
    if (db_query(c, "SELECT COUNT(*) FROM sessions", 0, NULL, &rows) >= 0 &&
        db_rows_count(rows) == 1)
        n = db_get_i64(rows, 0, 0);
    db_rows_free(rows);
    db_conn_give(c);
    return n;
}

/* Issue 9: expired sessions were never removed. A server with a 1 s sweep period deletes
 * them (the timer job), and leaves live ones alone. Sessions in the database: this server
 * runs without Redis even in the suite's Redis variants (there a session expires by its
 * Redis TTL, test_redis_carts.c). */
static void test_expired_sessions_swept(void **state)
{
    struct th_server s;
    const char *env[] = {"EMPORIUM_SESSION_SWEEP_SECONDS=1",
                         "EMPORIUM_REDIS_URL=", "EMPORIUM_REDIS_CLUSTER=", NULL};
    assert_int_equal(th_start(&s, env, NULL), 0);
    char *t1 = th_register(&s, "ivan@example.com", "ivans password");
    char *t2 = th_register(&s, "judy@example.com", "judys password");
    assert_non_null(t1);
    assert_non_null(t2);
    struct db *db;
    struct db_options opt = {
        .url = s.db_url[0] ? s.db_url : NULL, .data_dir = s.data_dir, .pool_size = 2};
    assert_int_equal(db_open(&db, "users", &opt), 0);
    assert_int_equal(count_sessions(db), 2);
    /* Ivan's session expires (as if 30 days had passed). */
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    assert_true(db_query(c,
                         "UPDATE sessions SET expires_at = 1 WHERE user_id = "
                         "(SELECT id FROM users WHERE email = 'ivan@example.com')",
                         0, NULL, NULL) == 1);
    db_conn_give(c);
    struct th_resp r;
    assert_int_equal(th_call(&s, "GET", "/api/v1/users/me", t1, &r, NULL), 0);
    assert_int_equal(r.status, 401);
    th_resp_free(&r);
    /* Wait (generously) for the sweep to delete it. */
    time_t deadline = time(NULL) + 30;
    while (count_sessions(db) != 1 && time(NULL) < deadline)
        usleep(50 * 1000);
    assert_int_equal(count_sessions(db), 1);
    assert_int_equal(th_call(&s, "GET", "/api/v1/users/me", t2, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    db_close(db);
    free(t1);
    free(t2);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

static void test_request_ids_and_errors(void **state)
{
    struct th_resp r;
    const char *hdrs[] = {"X-Request-Id: my-request-42",
                          "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          NULL};
    assert_int_equal(th_req(&srv, "GET", "/health", NULL, hdrs, &r), 0);
    assert_int_equal(r.status, 200);
    char buf[128];
    assert_string_equal(th_header(&r, "X-Request-Id", buf, sizeof buf), "my-request-42");
    assert_non_null(th_header(&r, "traceparent", buf, sizeof buf));
    assert_memory_equal(buf, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36);
    assert_string_not_equal(buf + 36, "00f067aa0ba902b7-01");
    th_resp_free(&r);
    assert_int_equal(th_req(&srv, "GET", "/no/such/thing", NULL, NULL, &r), 0);
    assert_true(th_is_error(&r, 404, "not_found", NULL));
    assert_non_null(th_header(&r, "X-Request-Id", buf, sizeof buf));
    assert_true(strlen(buf) >= 8);
    th_resp_free(&r);
    assert_int_equal(th_req(&srv, "DELETE", "/api/v1/auth/login", NULL, NULL, &r), 0);
    assert_true(th_is_error(&r, 405, "method_not_allowed", NULL));
    th_resp_free(&r);
}

static void test_sessions_survive_restart(void **state)
{
    char *t = th_register(&srv, "erin@example.com", "erins password");
    assert_non_null(t);
    assert_int_equal(th_stop(&srv), 0);
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};
    assert_int_equal(th_restart(&srv, env, NULL), 0);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "GET", "/api/v1/users/me", t, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "email"), "erin@example.com");
    th_resp_free(&r);
    free(t);
}

static void test_admin_cli(void **state)
{
    char *admin = th_admin_token(&srv);
    assert_non_null(admin);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "GET", "/api/v1/users/me", admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "role"), "admin");
    th_resp_free(&r);
    free(admin);
    char *out = NULL;
    const char *bad_role[] = {
        "user",   "create", "--email", "x@example.com", "--password-file", "/nonexistent",
        "--role", "root",   NULL};
    assert_int_equal(th_cli(&srv, bad_role, &out), 2);
    free(out);
    const char *help[] = {"--help", NULL};
    assert_int_equal(th_cli(&srv, help, &out), 0);
    assert_non_null(strstr(out, "serve"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_login_me_logout),
        cmocka_unit_test(test_bad_credentials),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_oversize_headers),
        cmocka_unit_test(test_login_throttle),
        cmocka_unit_test(test_attacker_cannot_lock_out_owner),
        cmocka_unit_test(test_distributed_guessing_hits_account_ceiling),
        cmocka_unit_test(test_throttle_policy_slow_guessing),
        cmocka_unit_test(test_expired_sessions_swept),
        cmocka_unit_test(test_request_ids_and_errors),
        cmocka_unit_test(test_sessions_survive_restart),
        cmocka_unit_test(test_admin_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
