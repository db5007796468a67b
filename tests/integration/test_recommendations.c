/* SPDX-License-Identifier: MIT */
/* test_recommendations.c — GET /products/{id}/recommendations learns from paid orders:
 * bought-together first (most often first), then the category's best sellers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "events_wait.h"
#include "harness.h"

static struct th_server srv;
static char *admin;

static int setup(void **state) { return th_suite_start(&srv, &admin); }

static int teardown(void **state) { return th_suite_stop(&srv, admin); }

static void product(const char *sku, const char *category, char id[32])
{
    struct th_resp r;
    assert_int_equal(
        th_call(&srv, "POST", "/api/v1/products", admin, &r,
                "{\"sku\":\"%s\",\"name\":\"Item %s\",\"description\":\"d\","
                "\"category\":\"%s\",\"price\":{\"amount\":1000,\"currency\":\"USD\"}}",
                sku, sku, category),
        0);
    assert_int_equal(r.status, 201);
    snprintf(id, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    char path[80];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", id);
    assert_int_equal(th_call(&srv, "PUT", path, admin, &r, "{\"available\":100}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

/* One user buys the given products (quantity each) with a good card; returns the user's
 * token (free it) and the order id in oid. */
static char *buy_order(int n, const char *const *ids, int quantity, char oid[32]);

static void buy(int n, const char *const *ids, int quantity)
{
    char oid[32];
    free(buy_order(n, ids, quantity, oid));
}

static char *buy_order(int n, const char *const *ids, int quantity, char oid[32])
{
    static int seq;
    char email[64];
    snprintf(email, sizeof email, "rec%d@example.com", ++seq);
    char *tok = th_register(&srv, email, "buyer password");
    assert_non_null(tok);
    struct th_resp r;
    for (int i = 0; i < n; i++) {
        assert_int_equal(th_call(&srv, "POST", "/api/v1/cart/items", tok, &r,
                                 "{\"product_id\":\"%s\",\"quantity\":%d}", ids[i], quantity),
                         0);
        assert_int_equal(r.status, 200);
        th_resp_free(&r);
    }
    char auth[160];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    const char *h[] = {auth, "Content-Type: application/json", "Idempotency-Key: rec-order", NULL};
    assert_int_equal(
        th_req(&srv, "POST", "/api/v1/orders",
               "{\"shipping_address\":{\"name\":\"R\",\"line1\":\"1 Road\",\"city\":\"Town\","
               "\"postal_code\":\"12345\",\"country\":\"US\"},\"payment\":{\"card_number\":"
               "\"4242424242424242\",\"exp_month\":12,\"exp_year\":2040,\"cvc\":\"123\"},"
               "\"shipping_method\":\"standard\"}",
               h, &r),
        0);
    if (r.status != 201)
        fail_msg("order: %ld %s", r.status, r.body);
    snprintf(oid, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    return tok;
}

static void test_bought_together_then_top_sellers(void **state)
{
    char a[32], b[32], c[32], d[32], e[32], other[32];
    product("REC-A", "kitchen", a);
    product("REC-B", "kitchen", b);
    product("REC-C", "kitchen", c);
    product("REC-D", "kitchen", d);
    product("REC-E", "kitchen", e);
    product("REC-X", "garden", other);
    const char *ab[] = {a, b}, *ac[] = {a, c}, *dd[] = {d}, *ee[] = {e}, *xx[] = {other};
    buy(2, ab, 1);
    buy(2, ab, 1);
    buy(2, ac, 1);
    buy(1, dd, 5);
    buy(1, ee, 2);
    buy(1, xx, 9); /* another category's best seller never shows */

    struct th_resp r;
    char path[96];
    snprintf(path, sizeof path, "/api/v1/products/%s/recommendations", a);
    assert_true(th_events_settled(&srv, 60));
    assert_int_equal(th_req(&srv, "GET", path, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 4);
    const char *want[][2] = {
        {b, "bought_together"}, {c, "bought_together"}, {d, "top_seller"}, {e, "top_seller"}};
    for (int i = 0; i < 4; i++) {
        json_t *it = json_array_get(items, (size_t)i);
        assert_string_equal(json_string_value(json_object_get(it, "id")), want[i][0]);
        assert_string_equal(json_string_value(json_object_get(it, "reason")), want[i][1]);
        assert_int_equal(th_jint(it, "price.amount", -1), 1000);
    }
    th_resp_free(&r);

    /* limit, and a product nobody bought with anything: only top sellers, never itself. */
    snprintf(path, sizeof path, "/api/v1/products/%s/recommendations?limit=1", d);
    assert_true(th_events_settled(&srv, 60));
    assert_int_equal(th_req(&srv, "GET", path, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(th_jstr(json_array_get(items, 0), "id"), a); /* 3 units, after D's 5 */
    th_resp_free(&r);

    /* A hidden product is not recommended. */
    snprintf(path, sizeof path, "/api/v1/products/%s", b);
    assert_int_equal(th_call(&srv, "PATCH", path, admin, &r, "{\"active\":false}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/products/%s/recommendations", a);
    assert_true(th_events_settled(&srv, 60));
    assert_int_equal(th_req(&srv, "GET", path, NULL, NULL, &r), 0);
    items = json_object_get(r.json, "items");
    for (size_t i = 0; i < json_array_size(items); i++)
        assert_string_not_equal(th_jstr(json_array_get(items, i), "id"), b);
    th_resp_free(&r);
}

/* The "recommendations" feature flag (EMPORIUM_FEATURE_FLAGS): at 0 % the block is empty
 * for everyone and an admin sees the rollout at /api/v1/admin/flags; a customer may not. */
static void test_feature_flag_off(void **state)
{
    char f[32], g[32];
    product("REC-F", "toys", f);
    product("REC-G", "toys", g);
    const char *fg[] = {f, g};
    buy(2, fg, 1);
    assert_true(th_events_settled(&srv, 60));
    char path[96];
    snprintf(path, sizeof path, "/api/v1/products/%s/recommendations", f);
    struct th_resp r;
    assert_int_equal(th_req(&srv, "GET", path, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_true(json_array_size(json_object_get(r.json, "items")) >= 1); /* on by default */
    th_resp_free(&r);

    assert_int_equal(th_stop(&srv), 0);
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_FEATURE_FLAGS=recommendations=0",
                         NULL};
    assert_int_equal(th_restart(&srv, env, NULL), 0);
    assert_int_equal(th_req(&srv, "GET", path, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    th_resp_free(&r);
    /* Still a 404 for a product that does not exist. */
    assert_int_equal(
        th_req(&srv, "GET", "/api/v1/products/123456789/recommendations", NULL, NULL, &r), 0);
    assert_true(th_is_error(&r, 404, "not_found", NULL));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", "/api/v1/admin/flags", admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    json_t *fl = json_array_get(json_object_get(r.json, "flags"), 0);
    assert_string_equal(th_jstr(fl, "name"), "recommendations");
    assert_int_equal(th_jint(fl, "percent", -1), 0);
    assert_true(json_is_false(json_object_get(fl, "enabled_for_you")));
    th_resp_free(&r);
    char *tok = th_register(&srv, "flags@example.com", "buyer password");
    assert_non_null(tok);
    assert_int_equal(th_call(&srv, "GET", "/api/v1/admin/flags", tok, &r, NULL), 0);
    assert_true(th_is_error(&r, 403, NULL, NULL));
    th_resp_free(&r);
    free(tok);

    /* Back to the defaults for the tests that follow. */
    assert_int_equal(th_stop(&srv), 0);
    const char *defaults[] = {"EMPORIUM_RATE_LIMITS=off", NULL};
    assert_int_equal(th_restart(&srv, defaults, NULL), 0);
}

/* A cancelled order stops counting: what was bought together only in orders that were
 * cancelled is no longer recommended, and its units leave the top sellers. */
static void test_cancelled_orders_stop_counting(void **state)
{
    char p[32], q[32], x[32];
    product("REC-CP", "rec-cancel", p);
    product("REC-CQ", "rec-cancel", q);
    product("REC-CX", "rec-cancel", x);
    const char *pq[] = {p, q}, *px[] = {p, x};
    char o1[32], o2[32], o3[32];
    char *t1 = buy_order(2, pq, 1, o1), *t2 = buy_order(2, pq, 1, o2);
    char *t3 = buy_order(2, px, 1, o3);
    struct th_resp r;
    char path[96];
    snprintf(path, sizeof path, "/api/v1/products/%s/recommendations", p);
    assert_true(th_events_settled(&srv, 60));
    assert_int_equal(th_req(&srv, "GET", path, NULL, NULL, &r), 0);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_string_equal(th_jstr(json_array_get(items, 0), "id"), q); /* 2 orders before 1 */
    assert_string_equal(th_jstr(json_array_get(items, 1), "id"), x);
    th_resp_free(&r);

    /* both orders with q are cancelled (the second one twice) */
    const char *const cancels[][2] = {{t1, o1}, {t2, o2}, {t2, o2}};
    for (int i = 0; i < 3; i++) {
        char cpath[96];
        snprintf(cpath, sizeof cpath, "/api/v1/orders/%s/cancel", cancels[i][1]);
        assert_int_equal(th_call(&srv, "POST", cpath, cancels[i][0], &r, NULL), 0);
        if (r.status != 200)
            fail_msg("cancel: %ld %s", r.status, r.body);
        th_resp_free(&r);
    }
    assert_true(th_events_settled(&srv, 60));
    assert_int_equal(th_req(&srv, "GET", path, NULL, NULL, &r), 0);
    items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(th_jstr(json_array_get(items, 0), "id"), x);
    assert_string_equal(th_jstr(json_array_get(items, 0), "reason"), "bought_together");
    th_resp_free(&r);
    /* from x's side: p still, bought together in the order that was kept; q nowhere */
    snprintf(path, sizeof path, "/api/v1/products/%s/recommendations", x);
    assert_true(th_events_settled(&srv, 60));
    assert_int_equal(th_req(&srv, "GET", path, NULL, NULL, &r), 0);
    items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(th_jstr(json_array_get(items, 0), "id"), p);
    th_resp_free(&r);
    free(t1);
    free(t2);
    free(t3);
}

static void test_bad_input(void **state)
{
    struct th_resp r;
    assert_int_equal(th_req(&srv, "GET", "/api/v1/products/abc/recommendations", NULL, NULL, &r),
                     0);
    assert_true(th_is_error(&r, 400, "validation_failed", "id"));
    th_resp_free(&r);
    assert_int_equal(
        th_req(&srv, "GET", "/api/v1/products/123456789/recommendations", NULL, NULL, &r), 0);
    assert_true(th_is_error(&r, 404, "not_found", NULL));
    th_resp_free(&r);
    char id[32], path[96];
    product("REC-L", "kitchen", id);
    snprintf(path, sizeof path, "/api/v1/products/%s/recommendations?limit=21", id);
    assert_true(th_events_settled(&srv, 60));
    assert_int_equal(th_req(&srv, "GET", path, NULL, NULL, &r), 0);
    assert_true(th_is_error(&r, 400, "validation_failed", "limit"));
    th_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bought_together_then_top_sellers),
        cmocka_unit_test(test_feature_flag_off),
        cmocka_unit_test(test_cancelled_orders_stop_counting),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
