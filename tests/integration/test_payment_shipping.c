/* SPDX-License-Identifier: MIT */
/* test_payment_shipping.c — shipping quotes, shipments and tracking events moving the order,
 * cancel before/after shipping, and the payment audit (brand + last4 only, never the number,
 * not even in the log), through HTTP against the real binary on either backend. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "events_wait.h"
#include "harness.h"

static struct th_server srv;
static char *admin;
static int seq;

#define CARD "4242424242424242"
#define ADDR                                                                                       \
    "{\"name\":\"Grace Hopper\",\"line1\":\"1 Navy "                                               \
    "Way\",\"city\":\"Arlington\",\"postal_code\":\"22201\",\"country\":\"US\"}"

static int setup(void **state) { return th_suite_start(&srv, &admin); }

static int teardown(void **state) { return th_suite_stop(&srv, admin); }

static void make_product(long price, int weight, char id[32])
{
    struct th_resp r;
    char sku[32];
    snprintf(sku, sizeof sku, "PS-%d-%d", (int)getpid(), ++seq);
    assert_int_equal(
        th_call(&srv, "POST", "/api/v1/products", admin, &r,
                "{\"sku\":\"%s\",\"name\":\"Parcel %s\",\"description\":\"d\","
                "\"category\":\"parcels\",\"price\":{\"amount\":%ld,\"currency\":\"USD\"},"
                "\"weight_grams\":%d}",
                sku, sku, price, weight),
        0);
    assert_int_equal(r.status, 201);
    snprintf(id, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", id);
    assert_int_equal(th_call(&srv, "PUT", path, admin, &r, "{\"available\":50}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

static long available(const char *pid)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", pid);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    long a = th_jint(r.json, "available", -1);
    th_resp_free(&r);
    return a;
}

/* A paid order of `q` units of pid for a new user; returns the order id, *token the user. */
static void paid_order(const char *pid, int q, char id[32], char **token)
{
    char email[64];
    snprintf(email, sizeof email, "ship%d-%d@example.com", (int)getpid(), ++seq);
    *token = th_register(&srv, email, "shipping password");
    assert_non_null(*token);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", "/api/v1/cart/items", *token, &r,
                             "{\"product_id\":\"%s\",\"quantity\":%d}", pid, q),
                     0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    char auth[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", *token);
    const char *h[] = {auth, "Idempotency-Key: ship-order-1", NULL};
    assert_int_equal(th_req(&srv, "POST", "/api/v1/orders",
                            "{\"shipping_address\":" ADDR ",\"payment\":{\"card_number\":\"" CARD
                            "\",\"exp_month\":6,\"exp_year\":2031,\"cvc\":\"4321\"},"
                            "\"shipping_method\":\"express\"}",
                            h, &r),
                     0);
    assert_int_equal(r.status, 201);
    snprintf(id, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
}

static void get_order(const char *id, const char *token, struct th_resp *r)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s", id);
    assert_int_equal(th_call(&srv, "GET", path, token, r, NULL), 0);
    assert_int_equal(r->status, 200);
}

static int event(const char *shipment, const char *token, const char *body, struct th_resp *r)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/shipments/%s/events", shipment);
    return th_call(&srv, "POST", path, token, r, "%s", body);
}

static void test_quotes(void **state)
{
    char light[32], heavy[32];
    make_product(1000, 200, light);
    make_product(1000, 4000, heavy);
    struct th_resp r;
    assert_int_equal(
        th_call(
            &srv, "POST", "/api/v1/shipping/quotes", NULL, &r,
            "{\"items\":[{\"product_id\":\"%s\",\"quantity\":1}],\"address\":{\"country\":\"us\"}}",
            light),
        0);
    assert_int_equal(r.status, 200);
    json_t *opts = json_object_get(r.json, "options");
    assert_int_equal(json_array_size(opts), 2);
    assert_string_equal(th_jstr(json_array_get(opts, 0), "method"), "standard");
    assert_string_equal(th_jstr(json_array_get(opts, 1), "method"), "express");
    long std_us = th_jint(json_array_get(opts, 0), "price.amount", 0);
    long exp_us = th_jint(json_array_get(opts, 1), "price.amount", 0);
    assert_true(std_us > 0 && exp_us > std_us);
    assert_string_equal(th_jstr(json_array_get(opts, 0), "price.currency"), "USD");
    assert_non_null(th_jstr(json_array_get(opts, 0), "carrier"));
    assert_true(th_jint(json_array_get(opts, 0), "estimated_days", 0) >
                th_jint(json_array_get(opts, 1), "estimated_days", 0));
    th_resp_free(&r);

    /* Heavier costs more, farther costs more. */
    assert_int_equal(
        th_call(
            &srv, "POST", "/api/v1/shipping/quotes", NULL, &r,
            "{\"items\":[{\"product_id\":\"%s\",\"quantity\":2}],\"address\":{\"country\":\"US\"}}",
            heavy),
        0);
    assert_int_equal(r.status, 200);
    assert_true(th_jint(json_array_get(json_object_get(r.json, "options"), 0), "price.amount", 0) >
                std_us);
    th_resp_free(&r);
    assert_int_equal(
        th_call(
            &srv, "POST", "/api/v1/shipping/quotes", NULL, &r,
            "{\"items\":[{\"product_id\":\"%s\",\"quantity\":1}],\"address\":{\"country\":\"JP\"}}",
            light),
        0);
    assert_int_equal(r.status, 200);
    assert_true(th_jint(json_array_get(json_object_get(r.json, "options"), 0), "price.amount", 0) >
                std_us);
    th_resp_free(&r);

    /* Bad input. */
    static const struct {
        const char *fmt, *field;
    } bad[] = {
        {"{\"items\":[{\"product_id\":\"%s\",\"quantity\":1}],\"address\":{\"country\":\"ZZ\"}}",
         "address.country"},
        {"{\"items\":[{\"product_id\":\"%s\",\"quantity\":1}],\"address\":{}}", "address.country"},
        {"{\"items\":[{\"product_id\":\"%s\",\"quantity\":1}]}", "address"},
        {"{\"items\":[{\"product_id\":\"%s\",\"quantity\":0}],\"address\":{\"country\":\"US\"}}",
         "items[0].quantity"},
        {"{\"items\":[{\"product_id\":\"%s\",\"quantity\":100}],\"address\":{\"country\":\"US\"}}",
         "items[0].quantity"},
        {"{\"items\":[{\"product_id\":\"%s\",\"quantity\":1},{\"product_id\":\"99999\","
         "\"quantity\":1}],\"address\":{\"country\":\"US\"}}",
         "items[1].product_id"},
        {"{\"items\":[],\"address\":{\"country\":\"US\"}}", "items"},
        {"{\"items\":[{\"product_id\":\"%s\",\"quantity\":1}],\"address\":{\"country\":\"US\","
         "\"planet\":\"Mars\"}}",
         "address.planet"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[512];
        const char *hole = strstr(bad[i].fmt, "%s");
        if (hole)
            snprintf(body, sizeof body, "%.*s%s%s", (int)(hole - bad[i].fmt), bad[i].fmt, light,
                     hole + 2);
        else
            snprintf(body, sizeof body, "%s", bad[i].fmt);
        assert_int_equal(th_call(&srv, "POST", "/api/v1/shipping/quotes", NULL, &r, "%s", body), 0);
        if (!th_is_error(&r, 400, NULL, bad[i].field))
            fprintf(stderr, "quote case %zu: %ld %s\n", i, r.status, r.body);
        assert_true(th_is_error(&r, 400, NULL, bad[i].field));
        th_resp_free(&r);
    }
}

static void test_shipment_moves_order(void **state)
{
    char pid[32], id[32], *tok;
    make_product(2000, 500, pid);
    paid_order(pid, 2, id, &tok);
    struct th_resp r;
    get_order(id, tok, &r);
    assert_string_equal(th_jstr(r.json, "shipment.status"), "label_created");
    assert_string_equal(th_jstr(r.json, "shipment.method"), "express");
    char sid[32];
    snprintf(sid, sizeof sid, "%s", th_jstr(r.json, "shipment.id"));
    th_resp_free(&r);

    /* Only admins (carriers) post events; bad bodies are 400; unknown shipments 404. */
    assert_int_equal(event(sid, tok, "{\"status\":\"in_transit\"}", &r), 0);
    assert_int_equal(r.status, 403);
    th_resp_free(&r);
    assert_int_equal(event(sid, admin, "{\"status\":\"lost\"}", &r), 0);
    assert_true(th_is_error(&r, 400, NULL, "status"));
    th_resp_free(&r);
    assert_int_equal(event(sid, admin, "{\"status\":\"in_transit\",\"at\":\"yesterday\"}", &r), 0);
    assert_true(th_is_error(&r, 400, NULL, "at"));
    th_resp_free(&r);
    /* a one-digit offset once made the parser step past the end of the string */
    assert_int_equal(
        event(sid, admin, "{\"status\":\"in_transit\",\"at\":\"2026-05-01T10:00:00+5:3\"}", &r), 0);
    assert_true(th_is_error(&r, 400, NULL, "at"));
    th_resp_free(&r);
    assert_int_equal(event("123456", admin, "{\"status\":\"in_transit\"}", &r), 0);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);

    assert_int_equal(
        event(sid, admin, "{\"status\":\"in_transit\",\"at\":\"2026-11-28T10:00:00Z\"}", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "status"), "in_transit");
    assert_string_equal(th_jstr(r.json, "order_id"), id);
    th_resp_free(&r);
    /* Repeating an event is harmless. */
    assert_int_equal(event(sid, admin, "{\"status\":\"in_transit\"}", &r), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    /* the order follows the shipment's event (consumer group "order", off the request) */
    assert_true(th_events_settled(&srv, 60));
    get_order(id, tok, &r);
    assert_string_equal(th_jstr(r.json, "status"), "shipped");
    assert_string_equal(th_jstr(r.json, "shipment.status"), "in_transit");
    json_t *hist = json_object_get(r.json, "history");
    assert_string_equal(th_jstr(json_array_get(hist, json_array_size(hist) - 1), "status"),
                        "shipped");
    assert_string_equal(th_jstr(json_array_get(hist, json_array_size(hist) - 1), "at"),
                        "2026-11-28T10:00:00.000Z");
    th_resp_free(&r);

    /* Too late to cancel: 409, nothing changes. */
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", id);
    long before = available(pid);
    assert_int_equal(th_call(&srv, "POST", path, tok, &r, NULL), 0);
    assert_true(th_is_error(&r, 409, "order_shipped", NULL));
    th_resp_free(&r);
    assert_int_equal(available(pid), before);

    assert_int_equal(event(sid, admin, "{\"status\":\"delivered\"}", &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "events")), 3);
    th_resp_free(&r);
    get_order(id, tok, &r);
    assert_string_equal(th_jstr(r.json, "status"), "delivered");
    th_resp_free(&r);
    /* No going back. */
    assert_int_equal(event(sid, admin, "{\"status\":\"in_transit\"}", &r), 0);
    assert_true(th_is_error(&r, 409, "invalid_transition", NULL));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "POST", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 409);
    th_resp_free(&r);

    /* The order's outbox has the whole story. */
    snprintf(path, sizeof path, "/api/v1/admin/orders/%s/events", id);
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    json_t *items = json_object_get(r.json, "items");
    static const char *const want[] = {"order.placed", "order.paid", "order.shipped",
                                       "order.delivered"};
    assert_int_equal(json_array_size(items), 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(th_jstr(json_array_get(items, (size_t)i), "type"), want[i]);
    /* each a CloudEvents envelope: subject = the order, id = the event id */
    for (int i = 0; i < 4; i++) {
        json_t *e = json_array_get(items, (size_t)i);
        assert_string_equal(th_jstr(e, "payload.specversion"), "1.0");
        assert_string_equal(th_jstr(e, "payload.subject"), id);
        assert_string_equal(th_jstr(e, "payload.id"), th_jstr(e, "event_id"));
        assert_string_equal(th_jstr(e, "payload.type"), want[i]);
        assert_string_equal(th_jstr(e, "payload.source"), "/emporium/order");
        assert_string_equal(th_jstr(e, "payload.data.order_id"), id);
    }
    th_resp_free(&r);
    free(tok);
}

static void test_cancel_before_shipping(void **state)
{
    char pid[32], id[32], *tok;
    make_product(3000, 500, pid);
    paid_order(pid, 3, id, &tok);
    assert_int_equal(available(pid), 47);
    struct th_resp r;
    get_order(id, tok, &r);
    char sid[32];
    snprintf(sid, sizeof sid, "%s", th_jstr(r.json, "shipment.id"));
    th_resp_free(&r);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", id);
    assert_int_equal(th_call(&srv, "POST", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "status"), "cancelled");
    assert_string_equal(th_jstr(r.json, "shipment.status"), "cancelled");
    assert_string_equal(th_jstr(r.json, "payment.status"), "refunded");
    th_resp_free(&r);
    assert_int_equal(available(pid), 50);
    /* The carrier can no longer move it. */
    assert_int_equal(event(sid, admin, "{\"status\":\"in_transit\"}", &r), 0);
    assert_true(th_is_error(&r, 409, "invalid_transition", NULL));
    th_resp_free(&r);
    get_order(id, tok, &r);
    assert_string_equal(th_jstr(r.json, "status"), "cancelled");
    th_resp_free(&r);
    free(tok);
}

static void test_payment_audit(void **state)
{
    char pid[32], id[32], *tok;
    make_product(1234, 100, pid);
    paid_order(pid, 1, id, &tok);
    struct th_resp r;
    char path[96];
    snprintf(path, sizeof path, "/api/v1/admin/payments?order_id=%s", id);
    assert_int_equal(th_call(&srv, "GET", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 403);
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", "/api/v1/admin/payments", admin, &r, NULL), 0);
    assert_true(th_is_error(&r, 400, NULL, "order_id"));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    json_t *p = json_array_get(json_object_get(r.json, "items"), 0);
    assert_non_null(p);
    assert_string_equal(th_jstr(p, "status"), "captured");
    assert_string_equal(th_jstr(p, "brand"), "visa");
    assert_string_equal(th_jstr(p, "last4"), "4242");
    assert_int_equal(json_array_size(json_object_get(p, "operations")), 2);
    assert_null(strstr(r.body, CARD));
    /* The CVC is never stored or shown: no "cvc" field and no string
     * value "4321" (ids and times may contain those digits). */
    assert_null(strstr(r.body, "cvc"));
    assert_null(strstr(r.body, "\"4321\""));
    th_resp_free(&r);
    free(tok);

    /* Neither the card number nor the CVC ever reaches the server's log. */
    FILE *f = fopen(srv.log_path, "r");
    assert_non_null(f);
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        assert_null(strstr(line, CARD));
        assert_null(strstr(line, "4000000000000002"));
    }
    fclose(f);
}

/* Six concurrent cancels of one paid order: every one answers 200 with the cancelled order
 * (none 409 order_shipped), and the payment is refunded once, the stock released once. */
struct canceller {
    const char *path, *token;
    long status;
    char order_status[32];
};

static void *cancel_main(void *arg)
{
    struct canceller *c = arg;
    struct th_resp r;
    if (th_call(&srv, "POST", c->path, c->token, &r, NULL) != 0) {
        c->status = -1;
        return NULL;
    }
    c->status = r.status;
    const char *st = th_jstr(r.json, "status");
    snprintf(c->order_status, sizeof c->order_status, "%s", st ? st : r.body);
    th_resp_free(&r);
    return NULL;
}

static int payment_ops(const char *order_id, const char *kind)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/admin/payments?order_id=%s", order_id);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    int n = 0;
    json_t *p, *op;
    size_t i, j;
    json_array_foreach (json_object_get(r.json, "items"), i, p) {
        json_array_foreach (json_object_get(p, "operations"), j, op) {
            if (!strcmp(json_string_value(json_object_get(op, "kind")), kind))
                n++;
        }
    }
    th_resp_free(&r);
    return n;
}

static void test_concurrent_cancels(void **state)
{
    enum { N = 6 };
    for (int round = 0; round < 3; round++) {
        char pid[32], id[32], *tok;
        make_product(1500, 200, pid);
        paid_order(pid, 2, id, &tok);
        char path[96];
        snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", id);
        struct canceller c[N];
        pthread_t t[N];
        for (int i = 0; i < N; i++) {
            c[i] = (struct canceller){.path = path, .token = tok};
            pthread_create(&t[i], NULL, cancel_main, &c[i]);
        }
        for (int i = 0; i < N; i++)
            pthread_join(t[i], NULL);
        for (int i = 0; i < N; i++) {
            if (c[i].status != 200 || strcmp(c[i].order_status, "cancelled") != 0)
                fail_msg("cancel %d of round %d: %ld %s", i, round, c[i].status, c[i].order_status);
        }
        assert_int_equal(available(pid), 50);
        assert_int_equal(payment_ops(id, "refund"), 1);
        assert_int_equal(payment_ops(id, "void"), 0);
        free(tok);
    }
}

/* One card-brand function: a JCB card (35…) is "jcb" on the order and at payment alike
 * (once the order said "amex" and the payment "unknown"). */
static void test_card_brand_agrees(void **state)
{
    char pid[32], email[64];
    make_product(900, 100, pid);
    snprintf(email, sizeof email, "jcb%d-%d@example.com", (int)getpid(), ++seq);
    char *tok = th_register(&srv, email, "shipping password");
    assert_non_null(tok);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", "/api/v1/cart/items", tok, &r,
                             "{\"product_id\":\"%s\",\"quantity\":1}", pid),
                     0);
    th_resp_free(&r);
    char auth[256];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    const char *h[] = {auth, "Idempotency-Key: jcb-1", NULL};
    assert_int_equal(
        th_req(&srv, "POST", "/api/v1/orders",
               "{\"shipping_address\":" ADDR ",\"payment\":{\"card_number\":"
               "\"3566002020360505\",\"exp_month\":6,\"exp_year\":2031,\"cvc\":\"123\"}}",
               h, &r),
        0);
    assert_int_equal(r.status, 201);
    assert_string_equal(th_jstr(r.json, "payment.brand"), "jcb");
    char path[128];
    snprintf(path, sizeof path, "/api/v1/admin/payments?order_id=%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_string_equal(th_jstr(json_array_get(json_object_get(r.json, "items"), 0), "brand"),
                        "jcb");
    th_resp_free(&r);
    free(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quotes),
        cmocka_unit_test(test_shipment_moves_order),
        cmocka_unit_test(test_cancel_before_shipping),
        cmocka_unit_test(test_payment_audit),
        cmocka_unit_test(test_concurrent_cancels),
        cmocka_unit_test(test_card_brand_agrees),
    };
    if (getenv("TH_TEST_FILTER")) /* run one test while iterating: TH_TEST_FILTER=name */
        cmocka_set_test_filter(getenv("TH_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
