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
     * client has the response: poll briefly for the third one. */
    for (int tries = 0;; tries++) {
        assert_int_equal(th_req(&s, "GET", "/metrics", NULL, NULL, &r), 0);
        assert_int_equal(r.status, 200);
        if (strstr(r.body, "status=\"401\"} 3\n") || tries == 50)
            break;
        th_resp_free(&r);
        usleep(20000);
    }
    char ct[128];
    assert_non_null(th_header(&r, "Content-Type", ct, sizeof ct));
    assert_non_null(strstr(ct, "text/plain"));
    assert_non_null(strstr(r.body, "emporium_http_requests_total{route=\"/api/v1/users/me\",method=\"GET\",status=\"401\"} 3\n"));
    assert_non_null(strstr(r.body, "emporium_http_request_duration_seconds_bucket{route=\"/api/v1/users/me\",method=\"GET\",le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(r.body, "emporium_http_request_duration_seconds_count{route=\"/api/v1/users/me\",method=\"GET\"} 3\n"));
    assert_non_null(strstr(r.body, "emporium_http_requests_in_flight "));
    assert_non_null(strstr(r.body, "emporium_db_connections{db=\"users\",state=\"in_use\"}"));
    assert_non_null(strstr(r.body, "process_resident_memory_bytes "));
    assert_non_null(strstr(r.body, "process_cpu_seconds_total "));
    assert_non_null(strstr(r.body, "process_open_fds "));

    /* The real checker: promtool (Debian prometheus) must find nothing to complain about. */
    if (access("/usr/bin/promtool", X_OK) == 0) {
        char path[400];
        snprintf(path, sizeof path, "%s/metrics.txt", s.data_dir);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fwrite(r.body, 1, r.len, f);
        fclose(f);
        char cmd[600];
        snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
        int rc = system(cmd);
        assert_int_equal(rc, 0);
    } else {
        fprintf(stderr, "promtool not installed: metrics lint skipped\n");
    }
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

static void test_rate_limits(void **state)
{
    struct th_server s;
    const char *env[] = {"EMPORIUM_RL_ANON=0.01:3", "EMPORIUM_RL_USER=0.01:4",
                         "EMPORIUM_RL_PREMIUM=0.01:8", NULL};
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
    const char *mk1[] = {"user", "create", "--email", "std@example.com", "--password-file", pw, NULL};
    const char *mk2[] = {"user", "create", "--email", "vip@example.com", "--password-file", pw,
                         "--tier", "premium", NULL};
    assert_int_equal(th_cli(&s, mk1, NULL), 0);
    assert_int_equal(th_cli(&s, mk2, NULL), 0);
    /* Logins come from the anonymous bucket of the "user" service, which is spent: use a
     * restarted server (fresh buckets, same data) to log in once each. */
    assert_int_equal(th_stop(&s), 0);
    assert_int_equal(th_restart(&s, env, NULL), 0);
    char *tok[2];
    const char *emails[] = {"std@example.com", "vip@example.com"};
    for (int u = 0; u < 2; u++) {
        assert_int_equal(th_call(&s, "POST", "/api/v1/auth/login", NULL, &r,
                                 "{\"email\":\"%s\",\"password\":\"a long password\"}", emails[u]), 0);
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
        cmocka_unit_test(test_rate_limits),
        cmocka_unit_test(test_request_id_echo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
