/* SPDX-License-Identifier: MIT */
/* test_orders.c — the checkout through HTTP against the real binary (SQLite or PostgreSQL):
 * the saga and its compensations, idempotency (replay, reuse, 20 concurrent duplicates),
 * no overselling (100 concurrent buyers for 5 units), bad input, ownership, and a SIGKILL
 * in the middle of a load followed by a restart. */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "events_wait.h"
#include "harness.h"

static struct th_server srv;
static char *admin;
static int seq;

#define CARD_OK "4242424242424242"
#define ADDR                                                                                       \
    "{\"name\":\"Ada Lovelace\",\"line1\":\"1 Analytical "                                         \
    "St\",\"city\":\"London\",\"postal_code\":\"N1 9GU\",\"country\":\"GB\"}"

static const char *const base_env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};

static int setup(void **state)
{
    if (th_start(&srv, base_env, NULL) != 0)
        return -1;
    admin = th_admin_token(&srv);
    return admin ? 0 : -1;
}

static int teardown(void **state) { return th_suite_stop(&srv, admin); }

/* --- helpers --- */

static void make_product(struct th_server *s, const char *adm, long price, int weight, char id[32])
{
    struct th_resp r;
    char sku[32];
    snprintf(sku, sizeof sku, "ORD-%d-%d", (int)getpid(), ++seq);
    assert_int_equal(
        th_call(s, "POST", "/api/v1/products", adm, &r,
                "{\"sku\":\"%s\",\"name\":\"Thing %s\",\"description\":\"d\","
                "\"category\":\"things\",\"price\":{\"amount\":%ld,\"currency\":\"USD\"},"
                "\"weight_grams\":%d}",
                sku, sku, price, weight),
        0);
    if (r.status != 201)
        fprintf(stderr, "create product: %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 201);
    snprintf(id, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
}

static void set_stock(struct th_server *s, const char *adm, const char *pid, long n)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", pid);
    struct th_resp r;
    assert_int_equal(th_call(s, "PUT", path, adm, &r, "{\"available\":%ld}", n), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

static void stock(struct th_server *s, const char *adm, const char *pid, long *avail,
                  long *reserved)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/inventory/%s", pid);
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", path, adm, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    *avail = th_jint(r.json, "available", -1);
    if (reserved)
        *reserved = th_jint(r.json, "reserved", -1);
    th_resp_free(&r);
}

static long avail_of(const char *pid)
{
    long a;
    stock(&srv, admin, pid, &a, NULL);
    return a;
}

static void add_cart(struct th_server *s, const char *tok, const char *pid, int q)
{
    struct th_resp r;
    assert_int_equal(th_call(s, "POST", "/api/v1/cart/items", tok, &r,
                             "{\"product_id\":\"%s\",\"quantity\":%d}", pid, q),
                     0);
    if (r.status != 200)
        fprintf(stderr, "add to cart: %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

static char *user(struct th_server *s)
{
    char email[64];
    snprintf(email, sizeof email, "buyer%d-%d@example.com", (int)getpid(),
             __atomic_add_fetch(&seq, 1, __ATOMIC_SEQ_CST));
    char *t = th_register(s, email, "buyer password");
    assert_non_null(t);
    return t;
}

/* POST /orders with key (NULL: no header) and a body from parts. */
static int place_raw(struct th_server *s, const char *tok, const char *key, const char *body,
                     struct th_resp *r)
{
    char auth[256], k[400];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
    snprintf(k, sizeof k, "Idempotency-Key: %s", key ? key : "");
    const char *h[] = {auth, key ? k : NULL, NULL};
    return th_req(s, "POST", "/api/v1/orders", body, h, r);
}

static int place(struct th_server *s, const char *tok, const char *key, const char *card,
                 struct th_resp *r)
{
    char body[1024];
    snprintf(body, sizeof body,
             "{\"shipping_address\":" ADDR ",\"payment\":{\"card_number\":\"%s\",\"exp_month\":12,"
             "\"exp_year\":2030,\"cvc\":\"123\"},\"shipping_method\":\"standard\"}",
             card);
    return place_raw(s, tok, key, body, r);
}

static int count_orders(struct th_server *s, const char *tok)
{
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", "/api/v1/orders?limit=100", tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    int n = (int)json_array_size(json_object_get(r.json, "items"));
    th_resp_free(&r);
    return n;
}

/* Number of operations of `kind` over the order's payments (admin audit endpoint). */
static int payment_ops(struct th_server *s, const char *adm, const char *order_id, const char *kind)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/admin/payments?order_id=%s", order_id);
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", path, adm, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    int n = 0;
    json_t *items = json_object_get(r.json, "items"), *p, *op;
    size_t i, j;
    json_array_foreach (items, i, p) {
        json_array_foreach (json_object_get(p, "operations"), j, op) {
            if (!strcmp(json_string_value(json_object_get(op, "kind")), kind) &&
                !strcmp(json_string_value(json_object_get(op, "status")), "succeeded"))
                n++;
        }
    }
    th_resp_free(&r);
    return n;
}

static bool has_event(struct th_server *s, const char *adm, const char *order_id, const char *type)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/admin/orders/%s/events", order_id);
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", path, adm, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    bool found = false;
    json_t *e;
    size_t i;
    json_array_foreach (json_object_get(r.json, "items"), i, e)
        found = found || !strcmp(json_string_value(json_object_get(e, "type")), type);
    th_resp_free(&r);
    return found;
}

/* --- tests --- */

static void test_checkout_happy_path(void **state)
{
    char pid[32], pid2[32];
    make_product(&srv, admin, 1999, 300, pid);
    make_product(&srv, admin, 500, 0, pid2);
    set_stock(&srv, admin, pid, 10);
    set_stock(&srv, admin, pid2, 3);
    char *tok = user(&srv);
    add_cart(&srv, tok, pid, 2);
    add_cart(&srv, tok, pid2, 1);

    struct th_resp r, again;
    assert_int_equal(place(&srv, tok, "happy-1", CARD_OK, &r), 0);
    if (r.status != 201)
        fprintf(stderr, "place: %ld %s\n", r.status, r.body);
    assert_int_equal(r.status, 201);
    assert_string_equal(th_jstr(r.json, "status"), "paid");
    assert_int_equal(th_jint(r.json, "subtotal.amount", 0), 2 * 1999 + 500);
    long ship = th_jint(r.json, "shipping.amount", 0);
    assert_true(ship > 0);
    assert_int_equal(th_jint(r.json, "total.amount", 0), 2 * 1999 + 500 + ship);
    assert_string_equal(th_jstr(r.json, "total.currency"), "USD");
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 2);
    assert_non_null(th_jstr(r.json, "created_at"));
    assert_string_equal(th_jstr(r.json, "payment.last4"), "4242");
    assert_null(strstr(r.body, CARD_OK));
    char id[32], loc[96], want[96];
    snprintf(id, sizeof id, "%s", th_jstr(r.json, "id"));
    /* 201 names the new resource. */
    snprintf(want, sizeof want, "/api/v1/orders/%s", id);
    assert_non_null(th_header(&r, "Location", loc, sizeof loc));
    assert_string_equal(loc, want);

    /* Paid orders take their items out of available stock at once. */
    assert_int_equal(avail_of(pid), 8);
    assert_int_equal(avail_of(pid2), 2);
    /* ... and the catalog shows both figures (its copies of the two lines' stock change in
     * one transaction, from one stock.changed message naming both). */
    const char *pids[] = {pid, pid2};
    long catalog[] = {8, 2};
    for (int i = 0; i < 2; i++) {
        char ppath[96];
        snprintf(ppath, sizeof ppath, "/api/v1/products/%s", pids[i]);
        struct th_resp p;
        assert_int_equal(th_call(&srv, "GET", ppath, NULL, &p, NULL), 0);
        assert_int_equal(p.status, 200);
        assert_int_equal(th_jint(p.json, "stock.available", -1), catalog[i]);
        th_resp_free(&p);
    }
    /* /metrics counts the business: orders by status, payments by outcome, cart adds. */
    struct th_resp m;
    assert_int_equal(th_req(&srv, "GET", "/metrics", NULL, NULL, &m), 0);
    assert_int_equal(m.status, 200);
    assert_non_null(strstr(m.body, "emporium_orders_total{status=\"placed\"} "));
    assert_non_null(strstr(m.body, "emporium_orders_total{status=\"paid\"} "));
    assert_non_null(strstr(m.body, "emporium_payments_total{outcome=\"authorized\"} "));
    assert_non_null(strstr(m.body, "emporium_payments_total{outcome=\"captured\"} "));
    assert_non_null(strstr(m.body, "emporium_cart_adds_total{cart=\"customer\"} "));
    th_resp_free(&m);
    /* The cart is empty. */
    struct th_resp c;
    assert_int_equal(th_call(&srv, "GET", "/api/v1/cart", tok, &c, NULL), 0);
    assert_int_equal(json_array_size(json_object_get(c.json, "items")), 0);
    th_resp_free(&c);

    /* Same key, same body: the same status and body, nothing new. */
    assert_int_equal(place(&srv, tok, "happy-1", CARD_OK, &again), 0);
    assert_int_equal(again.status, 201);
    assert_string_equal(again.body, r.body);
    assert_non_null(th_header(&again, "Location", loc, sizeof loc));
    assert_string_equal(loc, want);
    th_resp_free(&again);
    /* Same key, different body. */
    assert_int_equal(place(&srv, tok, "happy-1", "5555555555554444", &again), 0);
    assert_true(th_is_error(&again, 409, "idempotency_key_reused", NULL));
    th_resp_free(&again);
    assert_int_equal(count_orders(&srv, tok), 1);
    assert_int_equal(avail_of(pid), 8);
    th_resp_free(&r);

    /* GET: shipment and history. */
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s", id);
    assert_int_equal(th_call(&srv, "GET", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "status"), "paid");
    assert_non_null(th_jstr(r.json, "shipment.tracking_number"));
    assert_non_null(th_jstr(r.json, "shipment.carrier"));
    assert_string_equal(th_jstr(r.json, "shipment.status"), "label_created");
    assert_string_equal(th_jstr(r.json, "payment.status"), "captured");
    json_t *hist = json_object_get(r.json, "history");
    assert_int_equal(json_array_size(hist), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(hist, 0), "status")),
                        "pending");
    assert_string_equal(json_string_value(json_object_get(json_array_get(hist, 1), "status")),
                        "paid");
    th_resp_free(&r);
    /* An admin sees it; another customer gets 404. */
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    char *other = user(&srv);
    assert_int_equal(th_call(&srv, "GET", path, other, &r, NULL), 0);
    assert_true(th_is_error(&r, 404, "not_found", NULL));
    th_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", id);
    assert_int_equal(th_call(&srv, "POST", path, other, &r, NULL), 0);
    assert_true(th_is_error(&r, 404, "not_found", NULL));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", "/api/v1/orders/12345", tok, &r, NULL), 0);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", "/api/v1/orders/nope", tok, &r, NULL), 0);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    assert_int_equal(count_orders(&srv, other), 0);

    /* Outbox and payment audit. */
    assert_true(has_event(&srv, admin, id, "order.placed"));
    assert_true(has_event(&srv, admin, id, "order.paid"));
    assert_int_equal(payment_ops(&srv, admin, id, "authorize"), 1);
    assert_int_equal(payment_ops(&srv, admin, id, "capture"), 1);

    /* Listing, newest first, with a cursor. */
    add_cart(&srv, tok, pid, 1);
    assert_int_equal(place(&srv, tok, "happy-2", CARD_OK, &r), 0);
    assert_int_equal(r.status, 201);
    char id2[32];
    snprintf(id2, sizeof id2, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", "/api/v1/orders?limit=1", tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(json_array_get(json_object_get(r.json, "items"), 0), "id"), id2);
    char cur[64];
    snprintf(cur, sizeof cur, "%s", th_jstr(r.json, "next_cursor"));
    th_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/orders?limit=1&cursor=%s", cur);
    assert_int_equal(th_call(&srv, "GET", path, tok, &r, NULL), 0);
    assert_string_equal(th_jstr(json_array_get(json_object_get(r.json, "items"), 0), "id"), id);
    assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", "/api/v1/orders?limit=0", tok, &r, NULL), 0);
    assert_true(th_is_error(&r, 400, NULL, "limit"));
    th_resp_free(&r);
    /* Admin list across shards. */
    assert_int_equal(
        th_call(&srv, "GET", "/api/v1/admin/orders?status=paid&limit=100", admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_true(json_array_size(json_object_get(r.json, "items")) >= 2);
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", "/api/v1/admin/orders?status=bogus", admin, &r, NULL), 0);
    assert_true(th_is_error(&r, 400, NULL, "status"));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", "/api/v1/admin/orders", tok, &r, NULL), 0);
    assert_int_equal(r.status, 403);
    th_resp_free(&r);

    /* Cancel before shipping: stock back, payment refunded. */
    snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", id);
    assert_int_equal(th_call(&srv, "POST", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "status"), "cancelled");
    th_resp_free(&r);
    assert_int_equal(avail_of(pid), 9); /* 10 - 2 - 1 + 2 */
    assert_int_equal(avail_of(pid2), 3);
    assert_int_equal(payment_ops(&srv, admin, id, "refund"), 1);
    assert_true(has_event(&srv, admin, id, "order.cancelled"));
    /* Cancelling twice is harmless. */
    assert_int_equal(th_call(&srv, "POST", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(avail_of(pid), 9);
    assert_int_equal(payment_ops(&srv, admin, id, "refund"), 1);
    free(tok);
    free(other);
}

static void test_declined_cards(void **state)
{
    char pid[32];
    make_product(&srv, admin, 1000, 100, pid);
    set_stock(&srv, admin, pid, 4);
    char *tok = user(&srv);
    add_cart(&srv, tok, pid, 2);
    static const struct {
        const char *card, *reason;
        bool retryable;
    } cases[] = {
        {"4000000000000002", "card_declined", false},
        {"4000000000009995", "insufficient_funds", false},
        {"4000000000000119", "processing_error", true},
    };
    for (int i = 0; i < 3; i++) {
        char key[32];
        snprintf(key, sizeof key, "decline-%d", i);
        struct th_resp r, again;
        assert_int_equal(place(&srv, tok, key, cases[i].card, &r), 0);
        /* The error envelope: error.code is the reason, error.retryable, the failed order
         * under error.order. */
        assert_true(th_is_error(&r, 402, cases[i].reason, NULL));
        json_t *err = json_object_get(r.json, "error");
        assert_true(json_is_boolean(json_object_get(err, "retryable")));
        assert_int_equal(json_is_true(json_object_get(err, "retryable")), cases[i].retryable);
        assert_string_equal(th_jstr(r.json, "error.order.status"), "failed");
        assert_string_equal(th_jstr(r.json, "error.order.failure_reason"), cases[i].reason);
        assert_int_equal(json_is_true(json_object_get(json_object_get(err, "order"), "retryable")),
                         cases[i].retryable);
        assert_null(json_object_get(r.json, "status"));
        /* Stock back where it was. */
        long a, res;
        stock(&srv, admin, pid, &a, &res);
        assert_int_equal(a, 4);
        assert_int_equal(res, 0);
        /* The replay is the same 402. */
        assert_int_equal(place(&srv, tok, key, cases[i].card, &again), 0);
        assert_int_equal(again.status, 402);
        assert_string_equal(again.body, r.body);
        char path[96];
        snprintf(path, sizeof path, "/api/v1/orders/%s", th_jstr(r.json, "error.order.id"));
        th_resp_free(&again);
        assert_int_equal(th_call(&srv, "GET", path, tok, &again, NULL), 0);
        assert_string_equal(th_jstr(again.json, "status"), "failed");
        assert_string_equal(th_jstr(again.json, "payment.status"), "failed");
        th_resp_free(&again);
        assert_true(has_event(&srv, admin, th_jstr(r.json, "error.order.id"), "order.failed"));
        assert_int_equal(payment_ops(&srv, admin, th_jstr(r.json, "error.order.id"), "capture"), 0);
        th_resp_free(&r);
    }
    /* The cart is kept after a failure; a good card then succeeds. */
    struct th_resp r;
    assert_int_equal(place(&srv, tok, "decline-ok", CARD_OK, &r), 0);
    assert_int_equal(r.status, 201);
    th_resp_free(&r);
    assert_int_equal(avail_of(pid), 2);
    free(tok);
}

static void test_bad_input(void **state)
{
    char pid[32];
    make_product(&srv, admin, 700, 100, pid);
    set_stock(&srv, admin, pid, 5);
    char *tok = user(&srv);
    struct th_resp r;

    /* Empty cart. */
    assert_int_equal(place(&srv, tok, "empty-1", CARD_OK, &r), 0);
    assert_true(th_is_error(&r, 400, "cart_empty", NULL));
    th_resp_free(&r);
    add_cart(&srv, tok, pid, 1);

    /* Missing, empty, overlong, non-printable key. */
    assert_int_equal(place(&srv, tok, NULL, CARD_OK, &r), 0);
    assert_true(th_is_error(&r, 400, NULL, "Idempotency-Key"));
    th_resp_free(&r);
    char longkey[200];
    memset(longkey, 'k', 129);
    longkey[129] = 0;
    assert_int_equal(place(&srv, tok, longkey, CARD_OK, &r), 0);
    assert_true(th_is_error(&r, 400, NULL, "Idempotency-Key"));
    th_resp_free(&r);
    longkey[128] = 0; /* 128 is fine, checked below with a bad card so nothing happens */

    static const struct {
        const char *body, *field;
    } bad[] = {
        {"{\"shipping_address\":{\"name\":\"A\",\"line1\":\"l\",\"city\":\"c\",\"postal_code\":"
         "\"1\",\"country\":\"XX\"},"
         "\"payment\":{\"card_number\":\"" CARD_OK
         "\",\"exp_month\":1,\"exp_year\":2030,\"cvc\":\"123\"}}",
         "shipping_address.country"},
        {"{\"shipping_address\":{\"name\":\"A\",\"line1\":\"l\",\"city\":\"c\",\"postal_code\":"
         "\"1\",\"country\":\"USA\"},"
         "\"payment\":{\"card_number\":\"" CARD_OK
         "\",\"exp_month\":1,\"exp_year\":2030,\"cvc\":\"123\"}}",
         "shipping_address.country"},
        {"{\"shipping_address\":{\"line1\":\"l\",\"city\":\"c\",\"postal_code\":\"1\",\"country\":"
         "\"US\"},"
         "\"payment\":{\"card_number\":\"" CARD_OK
         "\",\"exp_month\":1,\"exp_year\":2030,\"cvc\":\"123\"}}",
         "shipping_address.name"},
        {"{\"payment\":{\"card_number\":\"" CARD_OK
         "\",\"exp_month\":1,\"exp_year\":2030,\"cvc\":\"123\"}}",
         "shipping_address"},
        {"{\"shipping_address\":" ADDR ",\"payment\":{\"card_number\":\"4242424242424241\",\"exp_"
         "month\":1,\"exp_year\":2030,\"cvc\":\"123\"}}",
         "payment.card_number"},
        {"{\"shipping_address\":" ADDR
         ",\"payment\":{\"card_number\":\"42\",\"exp_month\":1,\"exp_year\":2030,\"cvc\":\"123\"}}",
         "payment.card_number"},
        {"{\"shipping_address\":" ADDR ",\"payment\":{\"card_number\":\"" CARD_OK
         "\",\"exp_month\":13,\"exp_year\":2030,\"cvc\":\"123\"}}",
         "payment.exp_month"},
        {"{\"shipping_address\":" ADDR ",\"payment\":{\"card_number\":\"" CARD_OK
         "\",\"exp_month\":1,\"exp_year\":2030,\"cvc\":\"12\"}}",
         "payment.cvc"},
        {"{\"shipping_address\":" ADDR ",\"payment\":{\"card_number\":\"" CARD_OK
         "\",\"exp_month\":1,\"exp_year\":2030,\"cvc\":\"123\"},\"shipping_method\":\"teleport\"}",
         "shipping_method"},
        {"{\"shipping_address\":" ADDR "}", "payment"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(place_raw(&srv, tok, "bad-1", bad[i].body, &r), 0);
        if (!th_is_error(&r, 400, NULL, bad[i].field))
            fprintf(stderr, "case %zu: %ld %s\n", i, r.status, r.body);
        assert_true(th_is_error(&r, 400, NULL, bad[i].field));
        th_resp_free(&r);
    }
    /* An expired card. */
    assert_int_equal(place_raw(&srv, tok, "bad-1",
                               "{\"shipping_address\":" ADDR
                               ",\"payment\":{\"card_number\":\"" CARD_OK
                               "\",\"exp_month\":1,\"exp_year\":2020,\"cvc\":\"123\"}}",
                               &r),
                     0);
    assert_int_equal(r.status, 400);
    assert_string_equal(th_jstr(r.json, "error.code"), "card_expired");
    th_resp_free(&r);
    /* Overlong address line. */
    char body[2048], line[400];
    memset(line, 'x', 300);
    line[300] = 0;
    snprintf(body, sizeof body,
             "{\"shipping_address\":{\"name\":\"A\",\"line1\":\"%s\",\"city\":\"c\",\"postal_"
             "code\":\"1\",\"country\":\"US\"},"
             "\"payment\":{\"card_number\":\"" CARD_OK
             "\",\"exp_month\":1,\"exp_year\":2030,\"cvc\":\"123\"}}",
             line);
    assert_int_equal(place_raw(&srv, tok, "bad-1", body, &r), 0);
    assert_true(th_is_error(&r, 400, NULL, "shipping_address.line1"));
    th_resp_free(&r);
    /* Nothing changed: no order, stock intact, and the key was never taken. */
    assert_int_equal(count_orders(&srv, tok), 0);
    assert_int_equal(avail_of(pid), 5);
    assert_int_equal(place(&srv, tok, "bad-1", CARD_OK, &r), 0);
    assert_int_equal(r.status, 201);
    th_resp_free(&r);
    /* No auth. */
    assert_int_equal(th_call(&srv, "POST", "/api/v1/orders", NULL, &r, "{}"), 0);
    assert_int_equal(r.status, 401);
    th_resp_free(&r);
    free(tok);
}

/* --- concurrency --- */

struct buyer {
    struct th_server *s;
    char *token;
    const char *key;
    long status;
    char order_id[32];
    char body[4096];
};

static void *buyer_register(void *arg)
{
    struct buyer *b = arg;
    b->token = user(b->s);
    return NULL;
}

static void *buyer_place(void *arg)
{
    struct buyer *b = arg;
    struct th_resp r;
    char key[64];
    snprintf(key, sizeof key, "%s", b->key ? b->key : "buy-1");
    if (place(b->s, b->token, key, CARD_OK, &r) != 0) {
        b->status = -1;
        return NULL;
    }
    b->status = r.status;
    if (r.status == 201)
        snprintf(b->order_id, sizeof b->order_id, "%s", th_jstr(r.json, "id"));
    snprintf(b->body, sizeof b->body, "%s", r.body);
    th_resp_free(&r);
    return NULL;
}

/* Registers n users from 10 threads at a time (argon2 makes each take tens of ms). */
static void register_many(struct th_server *s, struct buyer *b, int n)
{
    for (int i = 0; i < n; i += 10) {
        pthread_t t[10];
        int k = n - i < 10 ? n - i : 10;
        for (int j = 0; j < k; j++) {
            b[i + j].s = s;
            pthread_create(&t[j], NULL, buyer_register, &b[i + j]);
        }
        for (int j = 0; j < k; j++)
            pthread_join(t[j], NULL);
    }
}

static void test_hundred_buyers_five_units(void **state)
{
    enum { N = 100 };
    char pid[32];
    make_product(&srv, admin, 2500, 200, pid);
    set_stock(&srv, admin, pid, 200);
    struct buyer *b = calloc(N, sizeof *b);
    register_many(&srv, b, N);
    for (int i = 0; i < N; i++)
        add_cart(&srv, b[i].token, pid, 1);
    set_stock(&srv, admin, pid, 5);

    pthread_t t[N];
    for (int i = 0; i < N; i++)
        pthread_create(&t[i], NULL, buyer_place, &b[i]);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    int ok = 0, oos = 0;
    for (int i = 0; i < N; i++) {
        if (b[i].status == 201)
            ok++;
        else if (b[i].status == 409 && strstr(b[i].body, "\"out_of_stock\"") &&
                 strstr(b[i].body, pid))
            oos++;
        else
            fprintf(stderr, "buyer %d: %ld %s\n", i, b[i].status, b[i].body);
    }
    assert_int_equal(ok, 5);
    assert_int_equal(oos, N - 5);
    long a, res;
    stock(&srv, admin, pid, &a, &res);
    assert_int_equal(a, 0);
    assert_int_equal(res, 0);
    for (int i = 0; i < N; i++)
        free(b[i].token);
    free(b);
}

static void test_twenty_duplicates_one_order(void **state)
{
    enum { N = 20 };
    char pid[32];
    make_product(&srv, admin, 1500, 200, pid);
    set_stock(&srv, admin, pid, 10);
    char *tok = user(&srv);
    add_cart(&srv, tok, pid, 2);
    struct buyer b[N];
    memset(b, 0, sizeof b);
    pthread_t t[N];
    for (int i = 0; i < N; i++) {
        b[i].s = &srv;
        b[i].token = tok;
        b[i].key = "dup-key-1";
        pthread_create(&t[i], NULL, buyer_place, &b[i]);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    const char *first = NULL;
    for (int i = 0; i < N; i++) {
        /* Every answer is the one order's 201, or "still running, retry". */
        if (b[i].status == 201) {
            if (!first)
                first = b[i].order_id;
            assert_string_equal(b[i].order_id, first);
        } else {
            if (!(b[i].status == 409 && strstr(b[i].body, "request_in_progress")))
                fprintf(stderr, "dup %d: %ld %s\n", i, b[i].status, b[i].body);
            assert_true(b[i].status == 409 && strstr(b[i].body, "request_in_progress"));
        }
    }
    assert_non_null(first);
    assert_int_equal(count_orders(&srv, tok), 1);
    assert_int_equal(payment_ops(&srv, admin, first, "authorize"), 1);
    assert_int_equal(payment_ops(&srv, admin, first, "capture"), 1);
    assert_int_equal(avail_of(pid), 8);
    free(tok);
}

/* --- crash --- */

/* Orders acknowledged (201) by all loaders so far: the crash test kills the server only
 * after some have been, whatever the speed of the machine. */
static atomic_int loaders_acked;

struct loader {
    struct th_server *s;
    char *token;
    const char *pid;
    int n_ok;
    char ids[64][32];
};

static void *loader_main(void *arg)
{
    struct loader *l = arg;
    for (int i = 0; i < 64; i++) {
        struct th_resp r;
        char key[32];
        if (th_call(l->s, "POST", "/api/v1/cart/items", l->token, &r,
                    "{\"product_id\":\"%s\",\"quantity\":1}", l->pid) != 0)
            return NULL; /* the server died */
        th_resp_free(&r);
        snprintf(key, sizeof key, "load-%d", i);
        if (place(l->s, l->token, key, CARD_OK, &r) != 0)
            return NULL;
        if (r.status == 201) {
            snprintf(l->ids[l->n_ok++], 32, "%s", th_jstr(r.json, "id"));
            atomic_fetch_add(&loaders_acked, 1);
        }
        th_resp_free(&r);
    }
    return NULL;
}

/* Counts the paid orders and the units they hold (each unit costs 1000). */
static void paid_units(struct th_server *s, const char *adm, long *paid, long *units)
{
    struct th_resp r;
    char cursor[64] = "";
    *paid = *units = 0;
    for (;;) {
        char path[160];
        snprintf(path, sizeof path, "/api/v1/admin/orders?status=paid&limit=100%s%s",
                 cursor[0] ? "&cursor=" : "", cursor);
        assert_int_equal(th_call(s, "GET", path, adm, &r, NULL), 0);
        assert_int_equal(r.status, 200);
        json_t *o;
        size_t i;
        json_array_foreach (json_object_get(r.json, "items"), i, o) {
            (*paid)++;
            *units += th_jint(o, "subtotal.amount", 0) / 1000;
        }
        const char *next = th_jstr(r.json, "next_cursor");
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        th_resp_free(&r);
        if (!cursor[0])
            break;
    }
}

static void test_sigkill_mid_load(void **state)
{
    enum { L = 8 };
    struct th_server s2;
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_PAYMENT_LATENCY_MS=5", NULL};
    assert_int_equal(th_start(&s2, env, NULL), 0);
    char *adm = th_admin_token(&s2);
    assert_non_null(adm);
    char pid[32];
    make_product(&s2, adm, 1000, 100, pid);
    set_stock(&s2, adm, pid, 100000);
    struct buyer reg[L];
    memset(reg, 0, sizeof reg);
    register_many(&s2, reg, L);
    struct loader l[L];
    memset(l, 0, sizeof l);
    pthread_t t[L];
    for (int i = 0; i < L; i++) {
        l[i].s = &s2;
        l[i].token = reg[i].token;
        l[i].pid = pid; /* each loader refills its cart with one unit before each order */
    }
    atomic_store(&loaders_acked, 0);
    for (int i = 0; i < L; i++)
        pthread_create(&t[i], NULL, loader_main, &l[i]);
    /* Kill mid-stream: once 16 orders were acknowledged (at most 8 x 64 can be), with a
     * generous deadline for slow machines and sanitizer builds. */
    for (int i = 0; i < 1200 && atomic_load(&loaders_acked) < 16; i++)
        usleep(100 * 1000);
    assert_true(atomic_load(&loaders_acked) >= 16);
    th_kill(&s2);
    for (int i = 0; i < L; i++)
        pthread_join(t[i], NULL);

    /* Restart with a short pending timeout so recovery fails what the crash left pending. */
    const char *env2[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_ORDER_PENDING_TIMEOUT_SECONDS=1",
                          "EMPORIUM_ORDER_SWEEP_SECONDS=1", NULL};
    sleep(1);
    assert_int_equal(th_restart(&s2, env2, NULL), 0);
    int acknowledged = 0;
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < l[i].n_ok; j++) {
            char path[96];
            snprintf(path, sizeof path, "/api/v1/orders/%s", l[i].ids[j]);
            struct th_resp r;
            assert_int_equal(th_call(&s2, "GET", path, l[i].token, &r, NULL), 0);
            assert_int_equal(r.status, 200);
            assert_string_equal(th_jstr(r.json, "status"), "paid");
            th_resp_free(&r);
            assert_true(has_event(&s2, adm, l[i].ids[j], "order.placed"));
            assert_true(has_event(&s2, adm, l[i].ids[j], "order.paid"));
            assert_int_equal(payment_ops(&s2, adm, l[i].ids[j], "capture"), 1);
            acknowledged++;
        }
    }
    /* Nothing stays reserved and every unit that left stock belongs to an order that is
     * paid, once the sweep has failed the abandoned orders and given their stock back. It
     * compensates them one by one, so `reserved` can reach 0 while a confirmed reservation
     * of an abandoned order is still to be released: wait for both (at most 60 s). */
    long a = 0, res = -1, paid = 0, units = 0;
    for (int i = 0; i < 600; i++) {
        stock(&s2, adm, pid, &a, &res);
        paid_units(&s2, adm, &paid, &units);
        if (res == 0 && 100000 - a == units)
            break;
        usleep(100 * 1000);
    }
    assert_int_equal(res, 0);
    struct th_resp r;
    fprintf(stderr, "sigkill: %d acknowledged, %ld paid, %ld units sold\n", acknowledged, paid,
            units);
    assert_int_equal(100000 - a, units);
    assert_true(paid >= acknowledged);
    assert_true(acknowledged > 0);
    assert_int_equal(th_call(&s2, "GET", "/api/v1/admin/orders?status=pending", adm, &r, NULL), 0);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    th_resp_free(&r);
    for (int i = 0; i < L; i++)
        free(reg[i].token);
    free(adm);
    assert_int_equal(th_stop(&s2), 0);
    th_cleanup(&s2);
}

/* The catalog's price changed after the cart was filled: checkout refuses with 409
 * price_changed naming the line and its new price, nothing is reserved or charged, the cart
 * shows the new price, and the retry (same key) succeeds at that price. */
static void test_price_changed(void **state)
{
    char pid[32], pid2[32];
    make_product(&srv, admin, 16099, 100, pid);
    make_product(&srv, admin, 250, 100, pid2);
    set_stock(&srv, admin, pid, 5);
    set_stock(&srv, admin, pid2, 5);
    char *tok = user(&srv);
    add_cart(&srv, tok, pid, 1);
    add_cart(&srv, tok, pid2, 2);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/products/%s", pid);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "PATCH", path, admin, &r,
                             "{\"price\":{\"amount\":500699,\"currency\":\"USD\"}}"),
                     0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    assert_int_equal(place(&srv, tok, "price-1", CARD_OK, &r), 0);
    if (!th_is_error(&r, 409, "price_changed", NULL))
        fail_msg("checkout after a price change: %ld %s", r.status, r.body);
    json_t *lines = json_object_get(json_object_get(r.json, "error"), "lines");
    assert_int_equal(json_array_size(lines), 1); /* only the changed line */
    json_t *l = json_array_get(lines, 0);
    assert_string_equal(th_jstr(l, "product_id"), pid);
    assert_int_equal(th_jint(l, "previous_price.amount", 0), 16099);
    assert_int_equal(th_jint(l, "unit_price.amount", 0), 500699);
    assert_string_equal(th_jstr(l, "unit_price.currency"), "USD");
    th_resp_free(&r);
    /* Nothing happened: no order, no stock held. */
    assert_int_equal(count_orders(&srv, tok), 0);
    long a, res;
    stock(&srv, admin, pid, &a, &res);
    assert_int_equal(a, 5);
    assert_int_equal(res, 0);
    /* The cart shows the new price. */
    assert_int_equal(th_call(&srv, "GET", "/api/v1/cart", tok, &r, NULL), 0);
    assert_int_equal(th_jint(r.json, "subtotal.amount", 0), 500699 + 2 * 250);
    th_resp_free(&r);
    /* The retry succeeds at the price shown. */
    assert_int_equal(place(&srv, tok, "price-1", CARD_OK, &r), 0);
    if (r.status != 201)
        fail_msg("retry: %ld %s", r.status, r.body);
    assert_int_equal(th_jint(r.json, "subtotal.amount", 0), 500699 + 2 * 250);
    th_resp_free(&r);
    free(tok);
}

/* Today's revenue and order count from the sales report (analytics). */
static void sales_today(long *revenue, long *orders)
{
    char today[11], path[160];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(today, sizeof today, "%Y-%m-%d", &tm);
    snprintf(path, sizeof path, "/api/v1/admin/analytics/sales?from=%s&to=%s", today, today);
    struct th_resp r;
    assert_true(th_events_settled(&srv, 60)); /* consumers run off the request threads */
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    json_t *day = json_array_get(json_object_get(r.json, "items"), 0);
    *revenue = day ? (long)th_jint(day, "revenue.amount", 0) : 0;
    *orders = day ? (long)th_jint(day, "orders", 0) : 0;
    th_resp_free(&r);
}

/* A cancelled (refunded) order is published as order.cancelled after the cancel commits:
 * the sales report, which counted its order.paid, takes it back out. */
static void test_cancel_leaves_revenue(void **state)
{
    char pid[32];
    make_product(&srv, admin, 2500, 100, pid);
    set_stock(&srv, admin, pid, 10);
    char *tok = user(&srv);
    add_cart(&srv, tok, pid, 2);
    long rev0, n0, rev1, n1, rev2, n2;
    sales_today(&rev0, &n0);
    struct th_resp r;
    assert_int_equal(place(&srv, tok, "revenue-1", CARD_OK, &r), 0);
    assert_int_equal(r.status, 201);
    long total = (long)th_jint(r.json, "subtotal.amount", 0);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s/cancel", th_jstr(r.json, "id"));
    th_resp_free(&r);
    sales_today(&rev1, &n1);
    assert_int_equal(rev1 - rev0, total);
    assert_int_equal(n1 - n0, 1);
    assert_int_equal(th_call(&srv, "POST", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "payment.status"), "refunded");
    th_resp_free(&r);
    sales_today(&rev2, &n2);
    assert_int_equal(rev2, rev0);
    assert_int_equal(n2, n0);
    /* A second cancel publishes nothing more. */
    assert_int_equal(th_call(&srv, "POST", path, tok, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    sales_today(&rev2, &n2);
    assert_int_equal(rev2, rev0);
    free(tok);
}

/* A cart in a currency shipping is not priced in: 409, nothing reserved, no order. */
static void test_currency_unsupported(void **state)
{
    struct th_resp r;
    assert_int_equal(
        th_call(&srv, "POST", "/api/v1/products", admin, &r,
                "{\"sku\":\"EUR-%d\",\"name\":\"Euro Thing\",\"description\":\"d\","
                "\"category\":\"things\",\"price\":{\"amount\":1000,\"currency\":\"EUR\"}}",
                (int)getpid()),
        0);
    assert_int_equal(r.status, 201);
    char pid[32];
    snprintf(pid, sizeof pid, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    set_stock(&srv, admin, pid, 3);
    char *tok = user(&srv);
    add_cart(&srv, tok, pid, 1);
    assert_int_equal(place(&srv, tok, "eur-1", "4242424242424242", &r), 0);
    assert_true(th_is_error(&r, 409, "currency_unsupported", NULL));
    th_resp_free(&r);
    assert_int_equal(avail_of(pid), 3);
    assert_int_equal(count_orders(&srv, tok), 0);
    free(tok);
}

/* The server dies while the provider captures (the payment is `capturing`: the provider may
 * have taken the money, nothing recorded it). Recovery fails the order and compensates with
 * a refund, never a void of an authorization that may be gone. */
struct slow_place {
    struct th_server *s;
    char *token;
};

static void *slow_place_main(void *arg)
{
    struct slow_place *p = arg;
    struct th_resp r;
    if (place(p->s, p->token, "capturing-1", CARD_OK, &r) == 0)
        th_resp_free(&r); /* normally the server is killed first */
    return NULL;
}

static const char *payment_status(struct th_server *s, const char *adm, const char *order_id,
                                  char *out, size_t cap)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/admin/payments?order_id=%s", order_id);
    struct th_resp r;
    out[0] = 0;
    if (th_call(s, "GET", path, adm, &r, NULL) == 0) {
        const char *st = th_jstr(json_array_get(json_object_get(r.json, "items"), 0), "status");
        snprintf(out, cap, "%s", st ? st : "");
        th_resp_free(&r);
    }
    return out;
}

static void test_crash_while_capturing_refunds(void **state)
{
    struct th_server s2;
    /* Each provider call takes 5 s: a wide window to see `capturing` on a loaded machine. */
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_PAYMENT_LATENCY_MS=5000", NULL};
    assert_int_equal(th_start(&s2, env, NULL), 0);
    char *adm = th_admin_token(&s2);
    assert_non_null(adm);
    char pid[32];
    make_product(&s2, adm, 1000, 100, pid);
    set_stock(&s2, adm, pid, 10);
    struct slow_place p = {.s = &s2, .token = user(&s2)};
    add_cart(&s2, p.token, pid, 2);
    pthread_t t;
    pthread_create(&t, NULL, slow_place_main, &p);
    /* Find the pending order, then wait (at most 120 s) until its payment is capturing. */
    char id[32] = "", st[32] = "";
    for (int i = 0; i < 1200 && strcmp(st, "capturing") != 0; i++) {
        if (!id[0]) {
            struct th_resp r;
            assert_int_equal(
                th_call(&s2, "GET", "/api/v1/admin/orders?status=pending", adm, &r, NULL), 0);
            const char *o = th_jstr(json_array_get(json_object_get(r.json, "items"), 0), "id");
            snprintf(id, sizeof id, "%s", o ? o : "");
            th_resp_free(&r);
        }
        if (id[0])
            payment_status(&s2, adm, id, st, sizeof st);
        if (strcmp(st, "capturing") != 0)
            usleep(100 * 1000);
    }
    if (strcmp(st, "capturing") != 0)
        fail_msg("order '%s': payment status '%s', never capturing", id, st);
    th_kill(&s2);
    pthread_join(t, NULL);

    const char *env2[] = {"EMPORIUM_RATE_LIMITS=off", "EMPORIUM_ORDER_PENDING_TIMEOUT_SECONDS=1",
                          "EMPORIUM_ORDER_SWEEP_SECONDS=1", NULL};
    assert_int_equal(th_restart(&s2, env2, NULL), 0);
    for (int i = 0; i < 600 && strcmp(payment_status(&s2, adm, id, st, sizeof st), "refunded"); i++)
        usleep(100 * 1000);
    assert_string_equal(st, "refunded");
    assert_int_equal(payment_ops(&s2, adm, id, "refund"), 1);
    assert_int_equal(payment_ops(&s2, adm, id, "void"), 0);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/orders/%s", id);
    struct th_resp r;
    assert_int_equal(th_call(&s2, "GET", path, p.token, &r, NULL), 0);
    assert_string_equal(th_jstr(r.json, "status"), "failed");
    th_resp_free(&r);
    long a, res;
    for (int i = 0; i < 600; i++) {
        stock(&s2, adm, pid, &a, &res);
        if (a == 10 && res == 0)
            break;
        usleep(100 * 1000);
    }
    assert_int_equal(a, 10);
    assert_int_equal(res, 0);
    free(p.token);
    free(adm);
    assert_int_equal(th_stop(&s2), 0);
    th_cleanup(&s2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkout_happy_path),
        cmocka_unit_test(test_declined_cards),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_currency_unsupported),
        cmocka_unit_test(test_price_changed),
        cmocka_unit_test(test_cancel_leaves_revenue),
        cmocka_unit_test(test_twenty_duplicates_one_order),
        cmocka_unit_test(test_hundred_buyers_five_units),
        cmocka_unit_test(test_sigkill_mid_load),
        cmocka_unit_test(test_crash_while_capturing_refunds),
    };
    if (getenv("TH_TEST_FILTER")) /* run one test while iterating: TH_TEST_FILTER=name */
        cmocka_set_test_filter(getenv("TH_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
