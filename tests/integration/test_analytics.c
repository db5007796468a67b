/* SPDX-License-Identifier: MIT */
/* test_analytics.c — GET /admin/analytics/sales counts paid orders by day and category, net
 * of cancellations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "events_wait.h"
#include "harness.h"

static struct th_server srv;
static char *admin;

static int setup(void **state) { return th_suite_start(&srv, &admin); }

static int teardown(void **state) { return th_suite_stop(&srv, admin); }

static void product(const char *sku, const char *category, long price, char id[32])
{
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", "/api/v1/products", admin, &r,
                             "{\"sku\":\"%s\",\"name\":\"Item %s\",\"description\":\"d\","
                             "\"category\":\"%s\",\"price\":{\"amount\":%ld,\"currency\":\"USD\"}}",
                             sku, sku, category, price),
                     0);
    assert_int_equal(r.status, 201);
    snprintf(id, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    char path[80];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", id);
    assert_int_equal(th_call(&srv, "PUT", path, admin, &r, "{\"available\":100}"), 0);
    th_resp_free(&r);
}

/* Places and pays an order of q x pid; the order id into oid (may be NULL) when 201. */
static void order_id(const char *tok, const char *pid, int q, const char *card, long want,
                     char oid[32]);

static void order(const char *tok, const char *pid, int q, const char *card, long want)
{
    order_id(tok, pid, q, card, want, NULL);
}

static void order_id(const char *tok, const char *pid, int q, const char *card, long want,
                     char oid[32])
{
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", "/api/v1/cart/items", tok, &r,
                             "{\"product_id\":\"%s\",\"quantity\":%d}", pid, q),
                     0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    static int key;
    char auth[160], idem[48];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    snprintf(idem, sizeof idem, "Idempotency-Key: an-%d", ++key);
    const char *h[] = {auth, "Content-Type: application/json", idem, NULL};
    char body[512];
    snprintf(
        body, sizeof body,
        "{\"shipping_address\":{\"name\":\"A\",\"line1\":\"1 Road\",\"city\":\"Town\","
        "\"postal_code\":\"12345\",\"country\":\"US\"},\"payment\":{\"card_number\":\"%s\","
        "\"exp_month\":12,\"exp_year\":2040,\"cvc\":\"123\"},\"shipping_method\":\"standard\"}",
        card);
    assert_int_equal(th_req(&srv, "POST", "/api/v1/orders", body, h, &r), 0);
    assert_int_equal(r.status, want);
    if (oid)
        snprintf(oid, 32, "%s", want == 201 ? th_jstr(r.json, "id") : "");
    th_resp_free(&r);
    if (want != 201) { /* leave the cart empty for the next order */
        char path[96];
        snprintf(path, sizeof path, "/api/v1/cart/items/%s", pid);
        assert_int_equal(th_call(&srv, "DELETE", path, tok, &r, NULL), 0);
        th_resp_free(&r);
    }
}

static void test_sales_by_day_and_category(void **state)
{
    char lamp[32], mug[32];
    product("AN-LAMP", "lighting", 2500, lamp);
    product("AN-MUG", "kitchen", 1000, mug);
    char *tok = th_register(&srv, "analyst-buyer@example.com", "buyer password");
    assert_non_null(tok);
    order(tok, lamp, 2, "4242424242424242", 201);
    order(tok, mug, 3, "4242424242424242", 201);
    order(tok, lamp, 1, "4000000000000002", 402); /* declined: not a sale */

    char today[11];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(today, sizeof today, "%Y-%m-%d", &tm);
    struct th_resp r;
    char path[160];
    snprintf(path, sizeof path, "/api/v1/admin/analytics/sales?from=%s&to=%s&group_by=category",
             today, today);
    assert_true(th_events_settled(&srv, 60));
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 2);
    json_t *k = json_array_get(items, 0), *l = json_array_get(items, 1);
    assert_string_equal(th_jstr(k, "category"), "kitchen");
    assert_int_equal(th_jint(k, "revenue.amount", -1), 3000);
    assert_string_equal(th_jstr(k, "revenue.currency"), "USD");
    assert_int_equal(th_jint(k, "units", -1), 3);
    assert_int_equal(th_jint(k, "orders", -1), 1);
    assert_string_equal(th_jstr(l, "category"), "lighting");
    assert_int_equal(th_jint(l, "revenue.amount", -1), 5000);
    assert_int_equal(th_jint(l, "units", -1), 2);
    th_resp_free(&r);

    assert_int_equal(th_call(&srv, "GET", "/api/v1/admin/analytics/sales", admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "group_by"), "day");
    items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(th_jstr(json_array_get(items, 0), "day"), today);
    assert_int_equal(th_jint(json_array_get(items, 0), "revenue.amount", -1), 8000);
    assert_int_equal(th_jint(json_array_get(items, 0), "orders", -1), 2);
    assert_int_equal(th_jint(json_array_get(items, 0), "units", -1), 5);
    th_resp_free(&r);

    /* customers may not read it */
    assert_int_equal(th_call(&srv, "GET", "/api/v1/admin/analytics/sales", tok, &r, NULL), 0);
    assert_true(th_is_error(&r, 403, "forbidden", NULL));
    th_resp_free(&r);
    free(tok);
}

/* The figures of one category today: revenue, orders, units (0 when no row). */
static void category_today(const char *category, long long *revenue, long long *orders,
                           long long *units)
{
    char today[11], path[200];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(today, sizeof today, "%Y-%m-%d", &tm);
    snprintf(path, sizeof path, "/api/v1/admin/analytics/sales?from=%s&to=%s&group_by=category",
             today, today);
    struct th_resp r;
    assert_true(th_events_settled(&srv, 60));
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    *revenue = *orders = *units = 0;
    json_t *items = json_object_get(r.json, "items");
    for (size_t i = 0; i < json_array_size(items); i++) {
        json_t *it = json_array_get(items, i);
        if (strcmp(th_jstr(it, "category"), category) != 0)
            continue;
        *revenue = th_jint(it, "revenue.amount", -1);
        *orders = th_jint(it, "orders", -1);
        *units = th_jint(it, "units", -1);
    }
    th_resp_free(&r);
}

static void cancel(const char *tok, const char *oid)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", oid);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", path, tok, &r, NULL), 0);
    if (r.status != 200)
        fail_msg("cancel %s: %ld %s", oid, r.status, r.body);
    assert_string_equal(th_jstr(r.json, "status"), "cancelled");
    th_resp_free(&r);
}

/* Sales are net of cancellations (refunded after capture): place, pay, cancel, and the
 * order's revenue, units and count leave the figures, once. */
static void test_sales_net_of_cancellations(void **state)
{
    char kettle[32], keep[32], drop[32];
    product("AN-KETTLE", "cancel-test", 1500, kettle);
    char *tok = th_register(&srv, "analyst-canceller@example.com", "buyer password");
    assert_non_null(tok);
    order_id(tok, kettle, 1, "4242424242424242", 201, keep);
    order_id(tok, kettle, 3, "4242424242424242", 201, drop);
    long long rev, ord, un;
    category_today("cancel-test", &rev, &ord, &un);
    assert_int_equal(rev, 6000);
    assert_int_equal(ord, 2);
    assert_int_equal(un, 4);

    cancel(tok, drop);
    category_today("cancel-test", &rev, &ord, &un);
    assert_int_equal(rev, 1500);
    assert_int_equal(ord, 1);
    assert_int_equal(un, 1);
    cancel(tok, drop); /* cancelling twice is one cancellation */
    category_today("cancel-test", &rev, &ord, &un);
    assert_int_equal(rev, 1500);
    assert_int_equal(ord, 1);
    assert_int_equal(un, 1);
    free(tok);
}

static void test_bad_input(void **state)
{
    static const struct {
        const char *query, *field;
    } cases[] = {
        {"from=2026-13-01", "from"},
        {"from=yesterday", "from"},
        {"from=2026-01-%2B1", "from"},
        {"to=2026-02-30", "to"},
        {"from=2026-05-02&to=2026-05-01", "to"},
        {"from=2020-01-01&to=2026-01-01", "to"},
        {"group_by=week", "group_by"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[160];
        snprintf(path, sizeof path, "/api/v1/admin/analytics/sales?%s", cases[i].query);
        struct th_resp r;
        assert_true(th_events_settled(&srv, 60));
        assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
        if (!th_is_error(&r, 400, "validation_failed", cases[i].field))
            fail_msg("case %s", cases[i].query);
        th_resp_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sales_by_day_and_category),
        cmocka_unit_test(test_sales_net_of_cancellations),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
