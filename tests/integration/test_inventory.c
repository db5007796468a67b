/* SPDX-License-Identifier: MIT */
/* test_inventory.c — the inventory admin API through HTTP against the real binary (SQLite or
 * PostgreSQL per EMPORIUM_TEST_BACKEND): set/get, roles, bad input, concurrent writers, the
 * catalog's stock figure following, persistence. Reservations themselves are reached only
 * through the library API; tests/unit/test_inventory_unit.c drives them under concurrency. */
#include <pthread.h>
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
static char *admin;
static char *customer;

static int setup(void **state)
{
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};
    const char *args[] = {"--no-demo", NULL};
    if (th_start(&srv, env, args) != 0)
        return -1;
    admin = th_admin_token(&srv);
    customer = th_register(&srv, "shopper@example.com", "shopper password");
    return admin && customer ? 0 : -1;
}

static int teardown(void **state)
{
    free(admin);
    free(customer);
    int rc = th_stop(&srv);
    th_cleanup(&srv);
    return rc == 0 ? 0 : -1;
}

/* Creates a product through the catalog's admin API; returns its id (static buffer). */
static const char *make_product(const char *sku)
{
    static char id[32];
    struct th_resp r;
    assert_int_equal(
        th_call(&srv, "POST", "/api/v1/products", admin, &r,
                "{\"sku\":\"%s\",\"name\":\"Thing %s\",\"description\":\"d\","
                "\"category\":\"things\",\"price\":{\"amount\":1250,\"currency\":\"USD\"}}",
                sku, sku),
        0);
    if (r.status != 201)
        fail_msg("create product: %ld %s", r.status, r.body);
    snprintf(id, sizeof id, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    return id;
}

static void test_set_get(void **state)
{
    char id[32], path[96];
    snprintf(id, sizeof id, "%s", make_product("INV-1"));
    snprintf(path, sizeof path, "/api/v1/inventory/%s", id);
    struct th_resp r;

    /* Never set: zero, not an error. */
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "product_id"), id);
    assert_int_equal(th_jint(r.json, "available", -1), 0);
    assert_int_equal(th_jint(r.json, "reserved", -1), 0);
    th_resp_free(&r);

    assert_int_equal(th_call(&srv, "PUT", path, admin, &r, "{\"available\":42}"), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(th_jint(r.json, "available", -1), 42);
    assert_int_equal(th_jint(r.json, "reserved", -1), 0);
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(th_jint(r.json, "available", -1), 42);
    th_resp_free(&r);

    /* The catalog shows the new figure. */
    char ppath[96];
    snprintf(ppath, sizeof ppath, "/api/v1/products/%s", id);
    assert_int_equal(th_call(&srv, "GET", ppath, NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(th_jint(r.json, "stock.available", -1), 42);
    th_resp_free(&r);

    assert_int_equal(th_call(&srv, "PUT", path, admin, &r, "{\"available\":0}"), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(th_jint(r.json, "available", -1), 0);
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", ppath, NULL, &r, NULL), 0);
    assert_int_equal(th_jint(r.json, "stock.available", -1), 0);
    th_resp_free(&r);
}

static void test_roles(void **state)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", make_product("INV-2"));
    struct th_resp r;
    assert_int_equal(th_call(&srv, "GET", path, NULL, &r, NULL), 0);
    assert_true(th_is_error(&r, 401, "unauthorized", NULL));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "PUT", path, NULL, &r, "{\"available\":5}"), 0);
    assert_true(th_is_error(&r, 401, "unauthorized", NULL));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", path, customer, &r, NULL), 0);
    assert_true(th_is_error(&r, 403, "forbidden", NULL));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "PUT", path, customer, &r, "{\"available\":5}"), 0);
    assert_true(th_is_error(&r, 403, "forbidden", NULL));
    th_resp_free(&r);
    /* Nothing changed. */
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(th_jint(r.json, "available", -1), 0);
    th_resp_free(&r);
}

static void test_bad_input(void **state)
{
    char id[32], path[96];
    snprintf(id, sizeof id, "%s", make_product("INV-3"));
    snprintf(path, sizeof path, "/api/v1/inventory/%s", id);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "PUT", path, admin, &r, "{\"available\":7}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    static const struct {
        const char *body;
        const char *code;
        const char *field;
    } cases[] = {
        {"{\"available\":-1}", "validation_failed", "available"},
        {"{\"available\":1.5}", "validation_failed", "available"},
        {"{\"available\":\"5\"}", "validation_failed", "available"},
        {"{\"available\":1000000001}", "validation_failed", "available"},
        {"{\"available\":null}", "validation_failed", "available"},
        {"{}", "validation_failed", "available"},
        {"{\"available\":5,\"reserved\":0}", "validation_failed", "reserved"},
        {"[5]", "validation_failed", "body"},
        {"{\"available\":", "invalid_json", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(th_call(&srv, "PUT", path, admin, &r, "%s", cases[i].body), 0);
        if (!th_is_error(&r, 400, cases[i].code, cases[i].field))
            fail_msg("case %zu: %s -> %ld %s", i, cases[i].body, r.status, r.body);
        th_resp_free(&r);
    }
    /* Malformed and unknown ids. */
    static const char *const bad_ids[] = {"abc", "-1", "0", "12x", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        char p[128];
        snprintf(p, sizeof p, "/api/v1/inventory/%s", bad_ids[i]);
        assert_int_equal(th_call(&srv, "GET", p, admin, &r, NULL), 0);
        if (!th_is_error(&r, 400, "validation_failed", "product_id"))
            fail_msg("id %s -> %ld %s", bad_ids[i], r.status, r.body);
        th_resp_free(&r);
        assert_int_equal(th_call(&srv, "PUT", p, admin, &r, "{\"available\":1}"), 0);
        assert_true(th_is_error(&r, 400, "validation_failed", "product_id"));
        th_resp_free(&r);
    }
    assert_int_equal(th_call(&srv, "GET", "/api/v1/inventory/123456789", admin, &r, NULL), 0);
    assert_true(th_is_error(&r, 404, "not_found", "product_id"));
    th_resp_free(&r);
    assert_int_equal(
        th_call(&srv, "PUT", "/api/v1/inventory/123456789", admin, &r, "{\"available\":3}"), 0);
    assert_true(th_is_error(&r, 404, "not_found", "product_id"));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "POST", path, admin, &r, "{\"available\":3}"), 0);
    assert_true(th_is_error(&r, 405, "method_not_allowed", NULL));
    th_resp_free(&r);
    /* Nothing of that changed the stock. */
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(th_jint(r.json, "available", -1), 7);
    assert_int_equal(th_jint(r.json, "reserved", -1), 0);
    th_resp_free(&r);
}

struct writer {
    char path[96];
    int value;
    long status;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct th_resp r;
    w->status = -1;
    if (th_call(&srv, "PUT", w->path, admin, &r, "{\"available\":%d}", w->value) == 0) {
        w->status = r.status;
        th_resp_free(&r);
    }
    return NULL;
}

/* 16 concurrent admin writes: all succeed, the stock ends at one of the written values and
 * the catalog agrees with the inventory. */
static void test_concurrent_writes(void **state)
{
    char id[32];
    snprintf(id, sizeof id, "%s", make_product("INV-4"));
    enum { N = 16 };
    struct writer w[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        snprintf(w[i].path, sizeof w[i].path, "/api/v1/inventory/%s", id);
        w[i].value = 100 + i;
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].status, 200);
    }
    struct th_resp r;
    assert_int_equal(th_call(&srv, "GET", w[0].path, admin, &r, NULL), 0);
    long long v = th_jint(r.json, "available", -1);
    assert_true(v >= 100 && v < 100 + N);
    assert_int_equal(th_jint(r.json, "reserved", -1), 0);
    th_resp_free(&r);
}

static void test_survives_restart(void **state)
{
    char id[32], path[96];
    snprintf(id, sizeof id, "%s", make_product("INV-5"));
    snprintf(path, sizeof path, "/api/v1/inventory/%s", id);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "PUT", path, admin, &r, "{\"available\":9}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(th_stop(&srv), 0);
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};
    const char *args[] = {"--no-demo", NULL};
    assert_int_equal(th_restart(&srv, env, args), 0);
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(th_jint(r.json, "available", -1), 9);
    th_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_get),          cmocka_unit_test(test_roles),
        cmocka_unit_test(test_bad_input),        cmocka_unit_test(test_concurrent_writes),
        cmocka_unit_test(test_survives_restart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
