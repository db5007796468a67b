/* SPDX-License-Identifier: MIT */
/* test_harness_smoke.c — the harness itself: start the real binary, ask /health, stop it.
 *
 * The smallest end-to-end check that tests/support works against the built `emporium`: a
 * server comes up on a fresh port and data dir, answers GET /health with 200 and an
 * X-Request-Id, echoes a request id the client sends, and exits 0 on SIGTERM. If this fails,
 * every other integration test will too, so it is worth reading its output first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static void test_health_and_clean_stop(void **state)
{
    struct th_server s;
    struct th_resp r;
    char id[128];

    assert_int_equal(th_start(&s, NULL, NULL), 0);
    assert_true(s.port > 0);

    assert_int_equal(th_req(&s, "GET", "/health", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(th_header(&r, "X-Request-Id", id, sizeof id));
    assert_true(id[0] != '\0');
    th_resp_free(&r);

    /* A client-supplied request id comes back unchanged (case-insensitive header name). */
    assert_int_equal(th_req(&s, "GET", "/health", NULL,
                            (const char *const[]){"X-Request-Id: smoke-test-1", NULL}, &r),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(th_header(&r, "x-request-id", id, sizeof id));
    assert_string_equal(id, "smoke-test-1");
    th_resp_free(&r);

    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_clean_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
