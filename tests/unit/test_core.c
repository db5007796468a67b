/* SPDX-License-Identifier: MIT */
/* test_core.c — unit tests of core pieces: buffers, ids, config parsing, error names, and
 * the OpenAPI document covering every route that exists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "emporium/buf.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/server.h"

static void test_buf(void **state)
{
    struct buf b = BUF_INIT(16);
    buf_puts(&b, "hello ");
    buf_printf(&b, "%d", 42);
    assert_int_equal(b.err, 0);
    assert_string_equal(b.p, "hello 42");
    buf_puts(&b, "this overflows the cap");
    assert_int_equal(b.err, ERR_TOOBIG);
    assert_null(buf_steal(&b, NULL));
    struct buf e = BUF_INIT(0);
    buf_json_escape(&e, "a\"b\\c\n\x01");
    size_t len;
    char *s = buf_steal(&e, &len);
    assert_string_equal(s, "a\\\"b\\\\c\\n\\u0001");
    free(s);
    struct buf big = BUF_INIT(0);
    for (int i = 0; i < 1000; i++)
        buf_printf(&big, "%0300d", i);
    assert_int_equal(big.len, 300000);
    buf_free(&big);
}

static void test_ids(void **state)
{
    int64_t prev = 0;
    for (int i = 0; i < 10000; i++) {
        int64_t id = id_new((unsigned)(i % 6));
        assert_true(id > 0);
        assert_int_equal(id_shard(id), (unsigned)(i % 6));
        if (i % 6 == 0 && prev)
            assert_true(id >> 22 >= prev >> 22); /* time part never goes back */
        prev = id;
    }
    int64_t v;
    char buf[21];
    assert_int_equal(id_parse(id_format(1234567890123LL, buf), &v), 0);
    assert_int_equal(v, 1234567890123LL);
    assert_int_equal(id_parse("0", &v), ERR_INVALID);
    assert_int_equal(id_parse("-5", &v), ERR_INVALID);
    assert_int_equal(id_parse("12abc", &v), ERR_INVALID);
    assert_int_equal(id_parse("99999999999999999999999", &v), ERR_INVALID);
    assert_int_equal(id_parse("", &v), ERR_INVALID);
    char ts[32];
    assert_string_equal(time_format(0, ts), "1970-01-01T00:00:00.000Z");
    assert_string_equal(time_format(1700000000123LL, ts), "2023-11-14T22:13:20.123Z");
    assert_string_equal(time_format(1700000000999LL, ts), "2023-11-14T22:13:20.999Z");
    assert_string_equal(time_format(1700000001005LL, ts), "2023-11-14T22:13:21.005Z");
}

static void test_config(void **state)
{
    double r, b;
    assert_int_equal(config_parse_rate("50:100", &r, &b), 0);
    assert_true(r == 50 && b == 100);
    assert_int_equal(config_parse_rate("0.5:3", &r, &b), 0);
    assert_int_equal(config_parse_rate("50", &r, &b), ERR_INVALID);
    assert_int_equal(config_parse_rate("-1:5", &r, &b), ERR_INVALID);
    assert_int_equal(config_parse_rate("5:0", &r, &b), ERR_INVALID);
    assert_int_equal(config_parse_rate("a:b", &r, &b), ERR_INVALID);
    setenv("EMPORIUM_THREADS", "many", 1);
    struct config cfg;
    assert_int_equal(config_from_env(&cfg), ERR_INVALID);
    unsetenv("EMPORIUM_THREADS");
    setenv("EMPORIUM_RATE_LIMITS", "off", 1);
    assert_int_equal(config_from_env(&cfg), 0);
    assert_false(cfg.rate_limits);
    assert_string_equal(cfg.listen, "0.0.0.0:8080");
    assert_int_equal(cfg.max_body, 1024 * 1024);
    unsetenv("EMPORIUM_RATE_LIMITS");
}

static void test_err_names(void **state)
{
    assert_string_equal(err_name(ERR_NOTFOUND), "not_found");
    assert_string_equal(err_name(ERR_INVALID), "validation_failed");
    assert_string_equal(err_name(12345), "internal");
}

static void check_route(const char *service, const struct http_route *r, void *ctx)
{
    json_t *paths = ctx;
    json_t *item = json_object_get(paths, r->pattern);
    if (!item)
        fail_msg("route %s %s (service %s) is missing from the OpenAPI document", r->method,
                 r->pattern, service);
    char method[16];
    size_t i = 0;
    for (; r->method[i] && i < sizeof method - 1; i++)
        method[i] = (char)(r->method[i] | 0x20);
    method[i] = 0;
    if (!json_object_get(item, method))
        fail_msg("%s %s is missing from the OpenAPI document", r->method, r->pattern);
}

static void test_openapi_covers_routes(void **state)
{
    json_t *doc = http_openapi_document();
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
    http_routes_foreach(check_route, json_object_get(doc, "paths"));
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_err_names),
        cmocka_unit_test(test_openapi_covers_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
