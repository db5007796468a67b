/* SPDX-License-Identifier: MIT */
/* test_core.c — unit tests of core pieces: arenas, buffers, ids, config parsing, error names, and
 * the OpenAPI document covering every route that exists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "emporium/arena.h"
#include "emporium/buf.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/flags.h"
#include "emporium/id.h"
#include "emporium/metrics.h"
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

static void test_buf_fixed_and_escape_max(void **state)
{
    char line[16];
    struct buf f = BUF_FIXED(line);
    buf_puts(&f, "0123456789");
    assert_int_equal(f.err, 0);
    assert_ptr_equal(f.p, line);
    assert_string_equal(line, "0123456789");
    buf_puts(&f, "abcde"); /* 15 bytes + NUL: exactly fits */
    assert_int_equal(f.err, 0);
    assert_string_equal(line, "0123456789abcde");
    buf_puts(&f, "x"); /* never reallocates caller storage */
    assert_int_equal(f.err, ERR_TOOBIG);
    assert_ptr_equal(f.p, line);
    buf_free(&f); /* resets, frees nothing */
    assert_int_equal(f.len, 0);
    assert_int_equal(f.err, 0);

    /* DEL and every control character are escaped. */
    struct buf e = BUF_INIT(0);
    buf_json_escape(&e, "a\x7f\tb\r");
    assert_string_equal(e.p, "a\\u007f\\tb\\r");
    buf_free(&e);

    /* The limit cuts before an escape sequence that would not fit, never inside it. */
    struct buf b = BUF_INIT(0);
    assert_int_equal(buf_json_escape_max(&b, "ab\"cd", 3), 2);
    assert_string_equal(b.p, "ab");
    assert_int_equal(b.err, 0);
    buf_free(&b);
    assert_int_equal(buf_json_escape_max(&b, "ab\"cd", 4), 3);
    assert_string_equal(b.p, "ab\\\"");
    buf_free(&b);
    /* … nor inside a UTF-8 character: "é" is two bytes. */
    assert_int_equal(buf_json_escape_max(&b, "a\xc3\xa9z", 2), 1);
    assert_string_equal(b.p, "a");
    buf_free(&b);
    assert_int_equal(buf_json_escape_max(&b, "a\xc3\xa9z", 3), 3);
    assert_string_equal(b.p, "a\xc3\xa9");
    buf_free(&b);
    /* A truncated sequence at the end of the input is copied as it is, not overrun. */
    assert_int_equal(buf_json_escape_max(&b, "a\xe2\x82", 10), 3);
    assert_int_equal(b.len, 3);
    buf_free(&b);
    /* Escaping into a fixed buffer with a budget leaves room for what follows. */
    char small[12];
    struct buf s = BUF_FIXED(small);
    buf_puts(&s, "[");
    buf_json_escape_max(&s, "\n\n\n\n\n\n", 8);
    buf_puts(&s, "]");
    assert_int_equal(s.err, 0);
    assert_string_equal(small, "[\\n\\n\\n\\n]");
}

static int cleanup_log[8];
static int n_cleanups;
static struct arena *cleanup_arena;

static void record_cleanup(void *arg) { cleanup_log[n_cleanups++] = (int)(intptr_t)arg; }

/* A cleanup that registers another one while the arena is being freed: it runs too. */
static void cleanup_that_defers(void *arg)
{
    record_cleanup(arg);
    assert_int_equal(arena_defer(cleanup_arena, record_cleanup, (void *)(intptr_t)99), 0);
}

static void test_arena(void **state)
{
    arena_free(NULL); /* a no-op */
    struct arena *a = arena_new();
    assert_non_null(a);
    size_t start = arena_bytes(a);
    assert_true(start > 0);

    /* Many small allocations: zeroed, aligned, distinct, all writable to the end. */
    unsigned char *p[500];
    for (int i = 0; i < 500; i++) {
        size_t n = (size_t)(i % 37) + 1;
        p[i] = arena_alloc(a, n);
        assert_non_null(p[i]);
        assert_int_equal((uintptr_t)p[i] % _Alignof(max_align_t), 0);
        for (size_t k = 0; k < n; k++)
            assert_int_equal(p[i][k], 0);
        memset(p[i], i & 0xff, n);
    }
    for (int i = 0; i < 500; i++)
        for (size_t k = 0; k < (size_t)(i % 37) + 1; k++)
            assert_int_equal(p[i][k], i & 0xff); /* nothing overlapped */
    assert_true(arena_bytes(a) > start);         /* it grew past the first region */

    /* A large block gets its own chunk, zeroed. */
    size_t before = arena_bytes(a);
    unsigned char *big = arena_alloc(a, 1 << 20);
    assert_non_null(big);
    assert_int_equal(big[0], 0);
    assert_int_equal(big[(1 << 20) - 1], 0);
    memset(big, 0xab, 1 << 20);
    assert_true(arena_bytes(a) >= before + (1 << 20));
    /* … and small allocations keep working after it. */
    assert_non_null(arena_alloc(a, 8));

    /* Zero bytes: a valid, distinct pointer. Impossible sizes: NULL, arena still usable. */
    void *z1 = arena_alloc(a, 0), *z2 = arena_alloc(a, 0);
    assert_non_null(z1);
    assert_ptr_not_equal(z1, z2);
    assert_null(arena_alloc(a, SIZE_MAX));
    assert_null(arena_alloc(a, SIZE_MAX - 8));
    assert_non_null(arena_alloc(a, 16));

    /* Strings. */
    assert_null(arena_strdup(a, NULL));
    char *s = arena_strdup(a, "hello");
    assert_string_equal(s, "hello");
    assert_string_equal(arena_strndup(a, "hello world", 5), "hello");
    assert_string_equal(arena_printf(a, "%s-%d", "order", 42), "order-42");
    char longer[1000];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = 0;
    char *lp = arena_printf(a, "<%s>", longer); /* beyond the small stack buffer */
    assert_int_equal(strlen(lp), 1001);
    assert_int_equal(lp[0], '<');
    assert_int_equal(lp[1000], '>');

    /* Cleanups run when the arena is freed, last registered first. */
    n_cleanups = 0;
    cleanup_arena = a;
    assert_int_equal(arena_defer(a, record_cleanup, (void *)(intptr_t)1), 0);
    assert_int_equal(arena_defer(a, cleanup_that_defers, (void *)(intptr_t)2), 0);
    assert_int_equal(arena_defer(a, record_cleanup, (void *)(intptr_t)3), 0);
    assert_int_equal(n_cleanups, 0); /* nothing runs before the free */
    arena_free(a);
    assert_int_equal(n_cleanups, 4);
    assert_int_equal(cleanup_log[0], 3);
    assert_int_equal(cleanup_log[1], 2);
    assert_int_equal(cleanup_log[2], 99); /* registered during the free: runs next */
    assert_int_equal(cleanup_log[3], 1);
}

struct count_ctx {
    int n;
};

static void *count_many(void *arg)
{
    struct count_ctx *c = arg;
    for (int i = 0; i < c->n; i++) {
        metrics_count("emporium_test_orders_total", i % 2 ? "paid" : "cancelled");
        metrics_count("emporium_test_orders_total", "paid");
    }
    return NULL;
}

static void test_metrics_counters(void **state)
{
    assert_int_equal(metrics_counter_declare("emporium_test_orders_total", "status",
                                             "Orders by status reached."),
                     0);
    assert_int_equal(metrics_counter_declare("bad name", "status", "x"), ERR_INVALID);
    assert_int_equal(metrics_counter_declare("emporium_ok_total", "bad-label", "x"), ERR_INVALID);
    /* Four threads count at once; nothing is lost. */
    pthread_t t[4];
    struct count_ctx c = {.n = 5000};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, count_many, &c), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(metrics_counter_value("emporium_test_orders_total", "paid"), 4 * 7500);
    assert_int_equal(metrics_counter_value("emporium_test_orders_total", "cancelled"), 4 * 2500);
    assert_int_equal(metrics_counter_value("emporium_test_orders_total", "refunded"), 0);
    /* An undeclared family still counts, under a generic label; odd values are escaped. */
    metrics_count_add("emporium_test_cart_adds_total", "gu\"est\\\n", 3);
    struct buf out = BUF_INIT(0);
    metrics_write_counters(&out);
    metrics_write_process(&out);
    assert_int_equal(out.err, 0);
    assert_non_null(strstr(out.p, "# HELP emporium_test_orders_total Orders by status reached.\n"
                                  "# TYPE emporium_test_orders_total counter\n"));
    assert_non_null(strstr(out.p, "emporium_test_orders_total{status=\"paid\"} 30000\n"));
    assert_non_null(strstr(out.p, "emporium_test_orders_total{status=\"cancelled\"} 10000\n"));
    assert_non_null(strstr(out.p, "# TYPE emporium_test_cart_adds_total counter\n"));
    assert_non_null(strstr(out.p, "emporium_test_cart_adds_total{kind=\"gu\\\"est\\\\\\n\"} 3\n"));
    assert_non_null(strstr(out.p, "emporium_build_info{version=\"" EMPORIUM_VERSION "\"} 1\n"));
    buf_free(&out);
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
    /* Ids of one shard strictly increase in the order they are made, also past the 16-bit
     * sequence's wrap (200,000 ids cross it at least twice, each within a millisecond full
     * of other ids): an aggregate's events are published in id order. */
    prev = id_new(3);
    for (int i = 0; i < 200000; i++) {
        int64_t id = id_new(3);
        if (id <= prev)
            fail_msg("id %lld made after %lld sorts before it", (long long)id, (long long)prev);
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
    /* The slow-work pool: 48 on either backend, unless set. */
    config_defaults(&cfg);
    assert_int_equal(config_offload_threads(&cfg), 48);
    cfg.database_url = "postgresql://localhost/shop";
    assert_int_equal(config_offload_threads(&cfg), 48);
    setenv("EMPORIUM_OFFLOAD_THREADS", "5", 1);
    assert_int_equal(config_from_env(&cfg), 0);
    assert_int_equal(config_offload_threads(&cfg), 5);
    setenv("EMPORIUM_OFFLOAD_THREADS", "-1", 1);
    assert_int_equal(config_from_env(&cfg), ERR_INVALID);
    unsetenv("EMPORIUM_OFFLOAD_THREADS");
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

/* A flag at p % is on for about p % of users, for the same users every time, and raising p
 * only adds users. */
static void test_feature_flags(void **state)
{
    (void)state;
    struct config c;
    config_defaults(&c);
    assert_int_equal(flag_percent(&c, "recommendations"), 100);
    assert_true(flag_on(&c, "recommendations", 42));
    assert_false(flag_on(&c, "no-such-flag", 42));
    const char *bad = NULL;
    assert_int_equal(flags_validate("recommendations=30,nope=1", &bad), ERR_INVALID);
    assert_string_equal(bad, "nope=1");
    assert_int_equal(flags_validate("recommendations=", NULL), ERR_INVALID);
    assert_int_equal(flags_validate("recommendations=-1", NULL), ERR_INVALID);
    c.feature_flags = "recommendations=0";
    assert_false(flag_on(&c, "recommendations", 42));
    int on30 = 0, on60 = 0;
    for (int64_t u = 1; u <= 20000; u++) {
        c.feature_flags = "recommendations=30";
        bool a = flag_on(&c, "recommendations", u);
        assert_true(a == flag_on(&c, "recommendations", u)); /* stable */
        c.feature_flags = "recommendations=60";
        bool b = flag_on(&c, "recommendations", u);
        assert_true(!a || b); /* never flips off when raised */
        on30 += a;
        on60 += b;
    }
    assert_in_range(on30, 5400, 6600); /* 30 % of 20,000 ± 10 % */
    assert_in_range(on60, 11400, 12600);
    struct flag_info fi;
    flags_get(&c, 0, &fi);
    assert_string_equal(fi.name, "recommendations");
    assert_int_equal(fi.percent, 60);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_buf_fixed_and_escape_max),
        cmocka_unit_test(test_arena),
        cmocka_unit_test(test_metrics_counters),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_feature_flags),
        cmocka_unit_test(test_err_names),
        cmocka_unit_test(test_openapi_covers_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
