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

#include <cmocka.h>

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
                             "{\"email\":\"  Alice@Example.COM \",\"password\":\"correct horse\",\"name\":\"Alice\"}"), 0);
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
    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/register", NULL, &r,
                             "{\"email\":\"ALICE@example.com\",\"password\":\"another pass\",\"name\":\"A2\"}"), 0);
    assert_true(th_is_error(&r, 409, "email_taken", NULL));
    th_resp_free(&r);

    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/login", NULL, &r,
                             "{\"email\":\"alice@example.com\",\"password\":\"correct horse\"}"), 0);
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
                             "{\"email\":\"bob@example.com\",\"password\":\"wrong password\"}"), 0);
    assert_true(th_is_error(&r, 401, "invalid_credentials", NULL));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/login", NULL, &r,
                             "{\"email\":\"nobody@example.com\",\"password\":\"whatever1\"}"), 0);
    assert_true(th_is_error(&r, 401, "invalid_credentials", NULL));
    th_resp_free(&r);
}

static void test_tokens(void **state)
{
    struct th_resp r;
    assert_int_equal(th_call(&srv, "GET", "/api/v1/users/me", NULL, &r, NULL), 0);
    assert_true(th_is_error(&r, 401, "unauthorized", "Authorization"));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", "/api/v1/users/me", "not-a-real-token-but-long-enough", &r, NULL), 0);
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
        {"{\"email\":5,\"password\":\"carols password\",\"name\":\"C\"}", 400, "validation_failed", "email"},
        {"{\"email\":\"carol@example.com\",\"password\":12345678,\"name\":\"C\"}", 400, "validation_failed", "password"},
        {"{\"email\":\"carol@example.com\",\"name\":\"C\"}", 400, "validation_failed", "password"},
        {"{\"password\":\"carols password\",\"name\":\"C\"}", 400, "validation_failed", "email"},
        {"{\"email\":\"carol@example.com\",\"password\":\"carols password\"}", 400, "validation_failed", "name"},
        {"{\"email\":\"carol@example.com\",\"password\":\"carols password\",\"name\":\"C\",\"role\":\"admin\"}", 400, "validation_failed", "role"},
        {"{\"email\":\"not-an-email\",\"password\":\"carols password\",\"name\":\"C\"}", 400, "validation_failed", "email"},
        {"{\"email\":\"carol@example.com\",\"password\":\"short\",\"name\":\"C\"}", 400, "validation_failed", "password"},
        {"{\"email\":\"carol@example.com\",\"password\":\"carols password\",\"name\":\"\"}", 400, "validation_failed", "name"},
        {"{\"email\":\"carol@example.com\",\"email\":\"x@example.com\",\"password\":\"carols password\",\"name\":\"C\"}", 400, "invalid_json", NULL},
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
    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/register", NULL, &r,
                             "{\"email\":\"%s@example.com\",\"password\":\"carols password\",\"name\":\"C\"}", big), 0);
    assert_true(th_is_error(&r, 400, "validation_failed", "email"));
    th_resp_free(&r);
    big[200] = 0;
    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/register", NULL, &r,
                             "{\"email\":\"carol@example.com\",\"password\":\"%s\",\"name\":\"C\"}", big), 0);
    assert_true(th_is_error(&r, 400, "validation_failed", "password"));
    th_resp_free(&r);
    /* Invalid UTF-8 inside a JSON string. */
    const char bad_utf8[] = "{\"email\":\"carol@example.com\",\"password\":\"carols \xff\xfe pass\",\"name\":\"C\"}";
    assert_int_equal(th_req(&srv, "POST", "/api/v1/auth/register", bad_utf8, NULL, &r), 0);
    assert_true(th_is_error(&r, 400, "invalid_json", NULL));
    th_resp_free(&r);
    /* Wrong content type. */
    const char *ct[] = {"Content-Type: text/plain", NULL};
    assert_int_equal(th_req(&srv, "POST", "/api/v1/auth/register",
                            "{\"email\":\"carol@example.com\",\"password\":\"carols password\",\"name\":\"C\"}", ct, &r), 0);
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
                             "{\"email\":\"carol@example.com\",\"password\":\"carols password\"}"), 0);
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
        assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/login", NULL, &r,
                                 "{\"email\":\"dave@example.com\",\"password\":\"wrong password\"}"), 0);
        assert_int_equal(r.status, 401);
        th_resp_free(&r);
    }
    /* Even the right password is refused now (EMPORIUM_RATE_LIMITS=off does not lift it). */
    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/login", NULL, &r,
                             "{\"email\":\"dave@example.com\",\"password\":\"daves password\"}"), 0);
    assert_true(th_is_error(&r, 429, "too_many_failures", NULL));
    char buf[32];
    assert_non_null(th_header(&r, "Retry-After", buf, sizeof buf));
    assert_true(atoi(buf) >= 1);
    th_resp_free(&r);
}

static void test_request_ids_and_errors(void **state)
{
    struct th_resp r;
    const char *hdrs[] = {"X-Request-Id: my-request-42",
                          "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", NULL};
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
    const char *bad_role[] = {"user", "create", "--email", "x@example.com", "--password-file",
                              "/nonexistent", "--role", "root", NULL};
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
        cmocka_unit_test(test_request_ids_and_errors),
        cmocka_unit_test(test_sessions_survive_restart),
        cmocka_unit_test(test_admin_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
