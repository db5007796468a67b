/* SPDX-License-Identifier: MIT */
/* test_cart.c — the cart API through HTTP against the real binary (SQLite or PostgreSQL per
 * EMPORIUM_TEST_BACKEND): user and guest carts, every endpoint and its bad input, limits,
 * the guest-cart merge on login and on register, isolation between users, concurrent adds,
 * persistence across a restart and a kill -9 mid-load. Products are made through the catalog's admin API. */
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "emporium/db.h"
#include "harness.h"

static struct th_server srv;
static char *admin;
static char pa[32], pb[32], pc[32], p_hidden[32], p_eur[32];

/* Creates a product; returns its id in out. */
static void make_product(const char *sku, long price, const char *currency, bool active,
                         char out[32])
{
    struct th_resp r;
    assert_int_equal(
        th_call(&srv, "POST", "/api/v1/products", admin, &r,
                "{\"sku\":\"%s\",\"name\":\"Item %s\",\"description\":\"d\","
                "\"category\":\"stuff\",\"price\":{\"amount\":%ld,\"currency\":\"%s\"},"
                "\"active\":%s}",
                sku, sku, price, currency, active ? "true" : "false"),
        0);
    if (r.status != 201)
        fail_msg("create product %s: %ld %s", sku, r.status, r.body);
    snprintf(out, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
}

static int setup(void **state)
{
    if (th_suite_start(&srv, &admin) != 0) /* the harness passes --no-demo itself */
        return -1;
    make_product("CART-A", 1250, "USD", true, pa);
    make_product("CART-B", 399, "USD", true, pb);
    make_product("CART-C", 10000, "USD", true, pc);
    make_product("CART-HIDDEN", 500, "USD", false, p_hidden);
    make_product("CART-EUR", 700, "EUR", true, p_eur);
    return 0;
}

static int teardown(void **state) { return th_suite_stop(&srv, admin); }

/* ---- helpers ---- */

/* A request as a guest with token (NULL: none) or as a user (bearer). */
static void cart_req(const char *method, const char *path, const char *bearer, const char *token,
                     const char *body, struct th_resp *r)
{
    char auth[256], tok[256];
    const char *h[3] = {NULL, NULL, NULL};
    int n = 0;
    if (bearer) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
        h[n++] = auth;
    }
    if (token) {
        snprintf(tok, sizeof tok, "X-Cart-Token: %s", token);
        h[n++] = tok;
    }
    assert_int_equal(th_req(&srv, method, path, body, h, r), 0);
}

static json_t *line_of(json_t *cart, const char *product_id)
{
    json_t *items = json_object_get(cart, "items");
    size_t i;
    json_t *it;
    json_array_foreach (items, i, it) {
        if (!strcmp(json_string_value(json_object_get(it, "product_id")), product_id))
            return it;
    }
    return NULL;
}

static long long qty_of(json_t *cart, const char *product_id)
{
    json_t *l = line_of(cart, product_id);
    return l ? json_integer_value(json_object_get(l, "quantity")) : 0;
}

static void add(const char *bearer, const char *token, const char *pid, int q, long status,
                struct th_resp *r)
{
    char body[128];
    snprintf(body, sizeof body, "{\"product_id\":\"%.64s\",\"quantity\":%d}", pid, q);
    cart_req("POST", "/api/v1/cart/items", bearer, token, body, r);
    if (r->status != status)
        fail_msg("add %s x%d: %ld %s", pid, q, r->status, r->body);
}

/* Copies tmpl into out with "PID" replaced by pid. */
static void subst(const char *tmpl, const char *pid, char *out, size_t cap)
{
    const char *at = strstr(tmpl, "PID");
    if (!at)
        snprintf(out, cap, "%s", tmpl);
    else
        snprintf(out, cap, "%.*s%s%s", (int)(at - tmpl), tmpl, pid, at + 3);
}

/* ---- tests ---- */

static void test_user_cart_endpoints(void **state)
{
    char *u = th_register(&srv, "ann@example.com", "anns password");
    assert_non_null(u);
    struct th_resp r;
    cart_req("GET", "/api/v1/cart", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    assert_int_equal(th_jint(r.json, "subtotal.amount", -1), 0);
    assert_string_equal(th_jstr(r.json, "subtotal.currency"), "USD");
    assert_int_equal(th_jint(r.json, "item_count", -1), 0);
    char buf[128];
    assert_null(th_header(&r, "X-Cart-Token", buf, sizeof buf)); /* users need none */
    assert_null(json_object_get(r.json, "cart_token"));
    th_resp_free(&r);

    add(u, NULL, pa, 2, 200, &r);
    th_resp_free(&r);
    add(u, NULL, pb, 1, 200, &r);
    th_resp_free(&r);
    add(u, NULL, pa, 3, 200, &r); /* adds to the line */
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 2);
    json_t *la = line_of(r.json, pa);
    assert_non_null(la);
    assert_string_equal(json_string_value(json_object_get(la, "name")), "Item CART-A");
    assert_int_equal(qty_of(r.json, pa), 5);
    assert_int_equal(th_jint(la, "unit_price.amount", -1), 1250);
    assert_string_equal(th_jstr(la, "unit_price.currency"), "USD");
    assert_int_equal(th_jint(la, "line_total.amount", -1), 6250);
    assert_int_equal(th_jint(r.json, "subtotal.amount", -1), 6250 + 399);
    assert_int_equal(th_jint(r.json, "item_count", -1), 6);
    /* Lines keep the order they were added in. */
    assert_string_equal(th_jstr(r.json, "items.0.product_id"), pa);
    th_resp_free(&r);

    char path[96];
    snprintf(path, sizeof path, "/api/v1/cart/items/%s", pa);
    cart_req("PATCH", path, u, NULL, "{\"quantity\":7}", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(qty_of(r.json, pa), 7);
    assert_int_equal(th_jint(r.json, "subtotal.amount", -1), 7 * 1250 + 399);
    th_resp_free(&r);
    cart_req("PATCH", path, u, NULL, "{\"quantity\":0}", &r); /* 0 removes */
    assert_int_equal(r.status, 200);
    assert_null(line_of(r.json, pa));
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    th_resp_free(&r);
    cart_req("PATCH", path, u, NULL, "{\"quantity\":1}", &r); /* gone now */
    assert_true(th_is_error(&r, 404, "not_in_cart", "product_id"));
    th_resp_free(&r);

    snprintf(path, sizeof path, "/api/v1/cart/items/%s", pb);
    cart_req("DELETE", path, u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    assert_int_equal(th_jint(r.json, "subtotal.amount", -1), 0);
    th_resp_free(&r);
    cart_req("DELETE", path, u, NULL, NULL, &r); /* idempotent */
    assert_int_equal(r.status, 200);
    th_resp_free(&r);

    /* The price is the one read at add time. */
    add(u, NULL, pc, 1, 200, &r);
    th_resp_free(&r);
    char ppath[96];
    snprintf(ppath, sizeof ppath, "/api/v1/products/%s", pc);
    assert_int_equal(th_call(&srv, "PATCH", ppath, admin, &r,
                             "{\"price\":{\"amount\":12000,\"currency\":\"USD\"}}"),
                     0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    cart_req("GET", "/api/v1/cart", u, NULL, NULL, &r);
    assert_int_equal(th_jint(line_of(r.json, pc), "unit_price.amount", -1), 10000);
    th_resp_free(&r);
    /* Adding again reads the catalog again. */
    add(u, NULL, pc, 1, 200, &r);
    assert_int_equal(th_jint(line_of(r.json, pc), "unit_price.amount", -1), 12000);
    assert_int_equal(qty_of(r.json, pc), 2);
    th_resp_free(&r);
    free(u);
}

static void test_guest_cart(void **state)
{
    struct th_resp r;
    char tok[128], tok2[128], buf[128];
    /* First contact: an empty cart and a token in the header and the body. */
    cart_req("GET", "/api/v1/cart", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(th_header(&r, "X-Cart-Token", tok, sizeof tok));
    assert_string_equal(th_jstr(r.json, "cart_token"), tok);
    assert_true(strlen(tok) >= 32);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    th_resp_free(&r);

    add(NULL, tok, pa, 2, 200, &r);
    assert_string_equal(th_header(&r, "X-Cart-Token", buf, sizeof buf), tok);
    th_resp_free(&r);
    add(NULL, tok, pb, 4, 200, &r);
    th_resp_free(&r);
    cart_req("GET", "/api/v1/cart", NULL, tok, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(qty_of(r.json, pa), 2);
    assert_int_equal(qty_of(r.json, pb), 4);
    assert_int_equal(th_jint(r.json, "subtotal.amount", -1), 2 * 1250 + 4 * 399);
    th_resp_free(&r);

    /* A first add without a token issues one too; the two guests do not see each other. */
    add(NULL, NULL, pc, 1, 200, &r);
    assert_non_null(th_header(&r, "X-Cart-Token", tok2, sizeof tok2));
    assert_string_not_equal(tok, tok2);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    th_resp_free(&r);
    cart_req("GET", "/api/v1/cart", NULL, tok2, NULL, &r);
    assert_int_equal(qty_of(r.json, pc), 1);
    assert_int_equal(qty_of(r.json, pa), 0);
    th_resp_free(&r);

    /* A token the server never issued is replaced by a fresh one, with an empty cart. */
    static const char *const forged[] = {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "short",
                                         "../../etc/passwd"};
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
        cart_req("GET", "/api/v1/cart", NULL, forged[i], NULL, &r);
        assert_int_equal(r.status, 200);
        assert_non_null(th_header(&r, "X-Cart-Token", buf, sizeof buf));
        assert_string_not_equal(buf, forged[i]);
        assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
        th_resp_free(&r);
    }
    /* A guest editing another guest's line through its own token touches nothing. */
    char path[96];
    snprintf(path, sizeof path, "/api/v1/cart/items/%s", pa);
    cart_req("PATCH", path, NULL, tok2, "{\"quantity\":9}", &r);
    assert_true(th_is_error(&r, 404, "not_in_cart", "product_id"));
    th_resp_free(&r);
    cart_req("DELETE", path, NULL, tok2, NULL, &r);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    cart_req("GET", "/api/v1/cart", NULL, tok, NULL, &r);
    assert_int_equal(qty_of(r.json, pa), 2);
    th_resp_free(&r);
}

static void test_bad_input(void **state)
{
    char *u = th_register(&srv, "bea@example.com", "beas password");
    assert_non_null(u);
    struct th_resp r;
    add(u, NULL, pa, 1, 200, &r);
    th_resp_free(&r);

    char body[512];
    const struct {
        const char *fmt; /* PID = a valid product id */
        long status;
        const char *code;
        const char *field;
    } cases[] = {
        {"{\"product_id\":\"PID\",\"quantity\":0}", 400, "validation_failed", "quantity"},
        {"{\"product_id\":\"PID\",\"quantity\":-3}", 400, "validation_failed", "quantity"},
        {"{\"product_id\":\"PID\",\"quantity\":100}", 400, "validation_failed", "quantity"},
        {"{\"product_id\":\"PID\",\"quantity\":4294967297}", 400, "validation_failed", "quantity"},
        {"{\"product_id\":\"PID\",\"quantity\":1.5}", 400, "validation_failed", "quantity"},
        {"{\"product_id\":\"PID\",\"quantity\":1e300}", 400, "validation_failed", "quantity"},
        {"{\"product_id\":\"PID\",\"quantity\":\"2\"}", 400, "validation_failed", "quantity"},
        {"{\"product_id\":\"PID\",\"quantity\":true}", 400, "validation_failed", "quantity"},
        {"{\"product_id\":\"PID\"}", 400, "validation_failed", "quantity"},
        {"{\"product_id\":\"PID\",\"quantity\":1,\"price\":1}", 400, "validation_failed", "price"},
        {"{\"quantity\":1}", 400, "validation_failed", "product_id"},
        {"{\"product_id\":null,\"quantity\":1}", 400, "validation_failed", "product_id"},
        {"{\"product_id\":\"abc\",\"quantity\":1}", 400, "validation_failed", "product_id"},
        {"{\"product_id\":\"-5\",\"quantity\":1}", 400, "validation_failed", "product_id"},
        {"{\"product_id\":\"0\",\"quantity\":1}", 400, "validation_failed", "product_id"},
        {"{\"product_id\":\"99999999999999999999999\",\"quantity\":1}", 400, "validation_failed",
         "product_id"},
        {"{\"product_id\":[1],\"quantity\":1}", 400, "validation_failed", "product_id"},
        {"{\"product_id\":1.5,\"quantity\":1}", 400, "validation_failed", "product_id"},
        {"[1]", 400, "validation_failed", "body"},
        {"{\"product_id\":", 400, "invalid_json", NULL},
        {"{\"product_id\":\"123456789\",\"quantity\":1}", 404, "product_not_found", "product_id"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        subst(cases[i].fmt, pb, body, sizeof body);
        cart_req("POST", "/api/v1/cart/items", u, NULL, body, &r);
        if (!th_is_error(&r, cases[i].status, cases[i].code, cases[i].field))
            fail_msg("case %zu: %s -> %ld %s", i, body, r.status, r.body);
        th_resp_free(&r);
    }
    /* Unknown names the product; inactive is unknown to buyers. */
    cart_req("POST", "/api/v1/cart/items", u, NULL, "{\"product_id\":\"123456789\",\"quantity\":1}",
             &r);
    assert_string_equal(th_jstr(r.json, "error.product_id"), "123456789");
    th_resp_free(&r);
    snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", p_hidden);
    cart_req("POST", "/api/v1/cart/items", u, NULL, body, &r);
    assert_true(th_is_error(&r, 404, "product_not_found", "product_id"));
    th_resp_free(&r);
    /* A line holds at most 99 in total. */
    add(u, NULL, pa, 98, 200, &r);
    th_resp_free(&r);
    snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", pa);
    cart_req("POST", "/api/v1/cart/items", u, NULL, body, &r);
    assert_true(th_is_error(&r, 400, "validation_failed", "quantity"));
    th_resp_free(&r);
    /* One currency per cart. */
    snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", p_eur);
    cart_req("POST", "/api/v1/cart/items", u, NULL, body, &r);
    assert_true(th_is_error(&r, 409, "currency_mismatch", NULL));
    th_resp_free(&r);

    /* PATCH / DELETE. */
    char path[96];
    snprintf(path, sizeof path, "/api/v1/cart/items/%s", pa);
    static const char *const pbad[][2] = {
        {"{\"quantity\":-1}", "quantity"},
        {"{\"quantity\":100}", "quantity"},
        {"{\"quantity\":2.5}", "quantity"},
        {"{}", "quantity"},
        {"{\"quantity\":1,\"product_id\":\"1\"}", "product_id"},
    };
    for (size_t i = 0; i < sizeof pbad / sizeof pbad[0]; i++) {
        cart_req("PATCH", path, u, NULL, pbad[i][0], &r);
        if (!th_is_error(&r, 400, "validation_failed", pbad[i][1]))
            fail_msg("patch %s -> %ld %s", pbad[i][0], r.status, r.body);
        th_resp_free(&r);
    }
    static const char *const bad_ids[] = {"abc", "-1", "0", "1.5", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        char p[128];
        snprintf(p, sizeof p, "/api/v1/cart/items/%s", bad_ids[i]);
        cart_req("PATCH", p, u, NULL, "{\"quantity\":1}", &r);
        assert_true(th_is_error(&r, 400, "validation_failed", "product_id"));
        th_resp_free(&r);
        cart_req("DELETE", p, u, NULL, NULL, &r);
        assert_true(th_is_error(&r, 400, "validation_failed", "product_id"));
        th_resp_free(&r);
    }
    cart_req("GET", "/api/v1/cart", "not-a-real-token-but-long-enough", NULL, NULL, &r);
    assert_true(th_is_error(&r, 401, "unauthorized", "Authorization"));
    th_resp_free(&r);
    cart_req("PUT", "/api/v1/cart", u, NULL, "{}", &r);
    assert_true(th_is_error(&r, 405, "method_not_allowed", NULL));
    th_resp_free(&r);

    /* Nothing of that changed the cart. */
    cart_req("GET", "/api/v1/cart", u, NULL, NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_int_equal(qty_of(r.json, pa), 99);
    th_resp_free(&r);
    free(u);
}

static void test_line_cap(void **state)
{
    char *u = th_register(&srv, "cat@example.com", "cats password");
    assert_non_null(u);
    struct th_resp r;
    char ids[101][32];
    for (int i = 0; i < 101; i++) {
        char sku[32];
        snprintf(sku, sizeof sku, "CAP-%03d", i);
        make_product(sku, 100 + i, "USD", true, ids[i]);
    }
    for (int i = 0; i < 100; i++) {
        add(u, NULL, ids[i], 1, 200, &r);
        th_resp_free(&r);
    }
    char body[128];
    snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", ids[100]);
    cart_req("POST", "/api/v1/cart/items", u, NULL, body, &r);
    assert_true(th_is_error(&r, 409, "cart_full", NULL));
    th_resp_free(&r);
    add(u, NULL, ids[5], 2, 200, &r); /* an existing line can still grow */
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 100);
    assert_int_equal(qty_of(r.json, ids[5]), 3);
    assert_int_equal(th_jint(r.json, "item_count", -1), 102);
    th_resp_free(&r);
    free(u);
}

static void test_merge_on_login_and_register(void **state)
{
    struct th_resp r;
    /* An existing user with A x98 and C x1. */
    char *u = th_register(&srv, "dan@example.com", "dans password");
    assert_non_null(u);
    add(u, NULL, pa, 98, 200, &r);
    th_resp_free(&r);
    add(u, NULL, pc, 1, 200, &r);
    th_resp_free(&r);

    /* A guest fills a cart, then logs in with its token. */
    char tok[128];
    add(NULL, NULL, pa, 5, 200, &r);
    assert_non_null(th_header(&r, "X-Cart-Token", tok, sizeof tok));
    th_resp_free(&r);
    add(NULL, tok, pb, 2, 200, &r);
    th_resp_free(&r);
    char hdr[256];
    snprintf(hdr, sizeof hdr, "X-Cart-Token: %s", tok);
    const char *h[] = {hdr, NULL};
    assert_int_equal(th_req(&srv, "POST", "/api/v1/auth/login",
                            "{\"email\":\"dan@example.com\",\"password\":\"dans password\"}", h,
                            &r),
                     0);
    assert_int_equal(r.status, 200);
    char *u2 = strdup(th_jstr(r.json, "token"));
    th_resp_free(&r);
    cart_req("GET", "/api/v1/cart", u2, NULL, NULL, &r);
    assert_int_equal(qty_of(r.json, pa), 99); /* 98 + 5, capped */
    assert_int_equal(qty_of(r.json, pb), 2);
    assert_int_equal(qty_of(r.json, pc), 1);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 3);
    th_resp_free(&r);
    /* The guest cart is gone; logging in again with it merges nothing twice. */
    cart_req("GET", "/api/v1/cart", NULL, tok, NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    th_resp_free(&r);
    assert_int_equal(th_req(&srv, "POST", "/api/v1/auth/login",
                            "{\"email\":\"dan@example.com\",\"password\":\"dans password\"}", h,
                            &r),
                     0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    cart_req("GET", "/api/v1/cart", u, NULL, NULL, &r);
    assert_int_equal(qty_of(r.json, pb), 2);
    th_resp_free(&r);

    /* Register with a guest token: the new account starts with the guest's cart. */
    char tok2[128];
    add(NULL, NULL, pc, 3, 200, &r);
    assert_non_null(th_header(&r, "X-Cart-Token", tok2, sizeof tok2));
    th_resp_free(&r);
    snprintf(hdr, sizeof hdr, "X-Cart-Token: %s", tok2);
    assert_int_equal(
        th_req(&srv, "POST", "/api/v1/auth/register",
               "{\"email\":\"eve@example.com\",\"password\":\"eves password\",\"name\":\"Eve\"}", h,
               &r),
        0);
    assert_int_equal(r.status, 201);
    char *u3 = strdup(th_jstr(r.json, "token"));
    th_resp_free(&r);
    cart_req("GET", "/api/v1/cart", u3, NULL, NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_int_equal(qty_of(r.json, pc), 3);
    /* The price the catalog has now (the add read it). */
    struct th_resp pr;
    char ppath[96];
    snprintf(ppath, sizeof ppath, "/api/v1/products/%s", pc);
    assert_int_equal(th_call(&srv, "GET", ppath, NULL, &pr, NULL), 0);
    assert_int_equal(th_jint(r.json, "subtotal.amount", -1),
                     3 * th_jint(pr.json, "price.amount", -1));
    th_resp_free(&pr);
    th_resp_free(&r);

    /* A forged token at login is ignored; the login still succeeds. */
    const char *hf[] = {"X-Cart-Token: forged-token", NULL};
    assert_int_equal(th_req(&srv, "POST", "/api/v1/auth/login",
                            "{\"email\":\"eve@example.com\",\"password\":\"eves password\"}", hf,
                            &r),
                     0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    free(u);
    free(u2);
    free(u3);
}

/* A guest line in another currency than the user's cart is dropped by the merge, so a cart
 * never mixes currencies. */
static void test_merge_keeps_one_currency(void **state)
{
    struct th_resp r;
    char *u = th_register(&srv, "erin-merge@example.com", "erins password");
    assert_non_null(u);
    add(u, NULL, pa, 1, 200, &r); /* USD */
    th_resp_free(&r);
    char tok[128];
    add(NULL, NULL, p_eur, 2, 200, &r);
    assert_non_null(th_header(&r, "X-Cart-Token", tok, sizeof tok));
    th_resp_free(&r);
    char hdr[256];
    snprintf(hdr, sizeof hdr, "X-Cart-Token: %s", tok);
    const char *h[] = {hdr, NULL};
    assert_int_equal(
        th_req(&srv, "POST", "/api/v1/auth/login",
               "{\"email\":\"erin-merge@example.com\",\"password\":\"erins password\"}", h, &r),
        0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    cart_req("GET", "/api/v1/cart", u, NULL, NULL, &r);
    assert_int_equal(qty_of(r.json, pa), 1);
    assert_int_equal(qty_of(r.json, p_eur), 0);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_string_equal(th_jstr(r.json, "subtotal.currency"), "USD");
    th_resp_free(&r);
    free(u);
}

static void test_users_isolated(void **state)
{
    char *u1 = th_register(&srv, "fay@example.com", "fays password");
    char *u2 = th_register(&srv, "gus@example.com", "guss password");
    assert_non_null(u1);
    assert_non_null(u2);
    struct th_resp r;
    add(u1, NULL, pa, 4, 200, &r);
    th_resp_free(&r);
    cart_req("GET", "/api/v1/cart", u2, NULL, NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    th_resp_free(&r);
    char path[96];
    snprintf(path, sizeof path, "/api/v1/cart/items/%s", pa);
    cart_req("PATCH", path, u2, NULL, "{\"quantity\":1}", &r);
    assert_true(th_is_error(&r, 404, "not_in_cart", "product_id"));
    th_resp_free(&r);
    cart_req("DELETE", path, u2, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    /* A user's token with a guest token: the user's cart wins, the guest's is untouched. */
    char tok[128];
    add(NULL, NULL, pb, 1, 200, &r);
    assert_non_null(th_header(&r, "X-Cart-Token", tok, sizeof tok));
    th_resp_free(&r);
    cart_req("GET", "/api/v1/cart", u2, tok, NULL, &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    th_resp_free(&r);
    cart_req("GET", "/api/v1/cart", u1, NULL, NULL, &r);
    assert_int_equal(qty_of(r.json, pa), 4);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    th_resp_free(&r);
    free(u1);
    free(u2);
}

struct adder {
    const char *token;
    long status;
};

static void *adder_main(void *arg)
{
    struct adder *a = arg;
    struct th_resp r;
    a->status = -1;
    if (th_call(&srv, "POST", "/api/v1/cart/items", a->token, &r,
                "{\"product_id\":\"%s\",\"quantity\":5}", pb) == 0) {
        a->status = r.status;
        th_resp_free(&r);
    }
    return NULL;
}

/* 20 concurrent adds of 5 to one line: the 99 cap holds, exactly 19 succeed. */
static void test_concurrent_adds(void **state)
{
    char *u = th_register(&srv, "hal@example.com", "hals password");
    assert_non_null(u);
    enum { N = 20 };
    struct adder a[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        a[i] = (struct adder){.token = u};
        assert_int_equal(pthread_create(&th[i], NULL, adder_main, &a[i]), 0);
    }
    int ok = 0, refused = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += a[i].status == 200;
        refused += a[i].status == 400;
    }
    assert_int_equal(ok, 19);
    assert_int_equal(refused, 1);
    struct th_resp r;
    cart_req("GET", "/api/v1/cart", u, NULL, NULL, &r);
    assert_int_equal(qty_of(r.json, pb), 95);
    th_resp_free(&r);
    free(u);
}

/* Many carts at once (on PostgreSQL, one batch of set statements for all of them): each
 * add gets its own cart's outcome. Half the users hold 95 of the line, so their add of 5 is
 * refused (400); the other half's is applied; nobody's cart changes because of another's. */
static void test_concurrent_carts(void **state)
{
    enum { N = 12 };
    char *u[N];
    struct adder a[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        char email[64];
        snprintf(email, sizeof email, "many-%d@example.com", i);
        assert_non_null(u[i] = th_register(&srv, email, "a good password"));
        if (i % 2 == 0) {
            struct th_resp r;
            add(u[i], NULL, pb, 95, 200, &r);
            th_resp_free(&r);
        }
    }
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            a[i] = (struct adder){.token = u[i]};
            assert_int_equal(pthread_create(&th[i], NULL, adder_main, &a[i]), 0);
        }
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            assert_int_equal(a[i].status, i % 2 == 0 ? 400 : 200);
        }
    }
    for (int i = 0; i < N; i++) {
        struct th_resp r;
        cart_req("GET", "/api/v1/cart", u[i], NULL, NULL, &r);
        assert_int_equal(qty_of(r.json, pb), i % 2 == 0 ? 95 : 15);
        assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
        th_resp_free(&r);
        free(u[i]);
    }
}

static void test_survives_restart(void **state)
{
    char *u = th_register(&srv, "ida@example.com", "idas password");
    assert_non_null(u);
    struct th_resp r;
    add(u, NULL, pa, 3, 200, &r);
    th_resp_free(&r);
    char tok[128];
    add(NULL, NULL, pb, 6, 200, &r);
    assert_non_null(th_header(&r, "X-Cart-Token", tok, sizeof tok));
    th_resp_free(&r);

    assert_int_equal(th_stop(&srv), 0);
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};
    const char *args[] = {"--no-demo", NULL};
    assert_int_equal(th_restart(&srv, env, args), 0);

    cart_req("GET", "/api/v1/cart", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(qty_of(r.json, pa), 3);
    th_resp_free(&r);
    /* The guest token is still accepted (the signing secret is in the database). */
    cart_req("GET", "/api/v1/cart", NULL, tok, NULL, &r);
    assert_int_equal(r.status, 200);
    char buf[128];
    assert_string_equal(th_header(&r, "X-Cart-Token", buf, sizeof buf), tok);
    assert_int_equal(qty_of(r.json, pb), 6);
    th_resp_free(&r);
    free(u);
}

/* A shopper of test_killed_mid_load: adds one of pa or pb (alternately) until told to stop
 * or the server is gone; counts what was acknowledged and what was sent. */
struct shopper {
    const char *token;
    _Atomic long acked[2], sent[2];
    _Atomic bool *stop;
};

static void *shopper_main(void *arg)
{
    struct shopper *s = arg;
    for (int i = 0; i < 190 && !atomic_load(s->stop); i++) { /* 95 a line: under the cap */
        int k = i % 2;
        struct th_resp r;
        atomic_fetch_add(&s->sent[k], 1);
        if (th_call(&srv, "POST", "/api/v1/cart/items", s->token, &r,
                    "{\"product_id\":\"%s\",\"quantity\":1}", k ? pb : pa) != 0)
            break; /* the server is gone */
        if (r.status == 200)
            atomic_fetch_add(&s->acked[k], 1);
        th_resp_free(&r);
    }
    return NULL;
}

/* kill -9 while four shoppers add: after a restart every acknowledged add is in the cart
 * (and nothing that was never sent). Carts in memory (embedded), in the database, or in
 * Redis: the answer comes only after the durable write. */
static void test_killed_mid_load(void **state)
{
    enum { N = 4 };
    struct shopper sh[N];
    pthread_t th[N];
    char *tokens[N];
    _Atomic bool stop = false;
    for (int i = 0; i < N; i++) {
        char email[64];
        snprintf(email, sizeof email, "kill%d@example.com", i);
        tokens[i] = th_register(&srv, email, "a long password");
        assert_non_null(tokens[i]);
        memset(&sh[i], 0, sizeof sh[i]);
        sh[i].token = tokens[i];
        sh[i].stop = &stop;
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_create(&th[i], NULL, shopper_main, &sh[i]), 0);
    /* Mid-load: once some adds were acknowledged (bounded: the shoppers stop by themselves). */
    long acked = 0;
    for (int spins = 0; acked < 40 && spins < 600; spins++) {
        acked = 0;
        for (int i = 0; i < N; i++)
            acked += atomic_load(&sh[i].acked[0]) + atomic_load(&sh[i].acked[1]);
        if (acked < 40)
            usleep(100 * 1000);
    }
    assert_true(acked >= 40);
    th_kill(&srv);
    atomic_store(&stop, true);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};
    const char *args[] = {"--no-demo", NULL};
    assert_int_equal(th_restart(&srv, env, args), 0);
    for (int i = 0; i < N; i++) {
        struct th_resp r;
        cart_req("GET", "/api/v1/cart", tokens[i], NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        for (int k = 0; k < 2; k++) {
            long long q = qty_of(r.json, k ? pb : pa);
            if (q < atomic_load(&sh[i].acked[k]) || q > atomic_load(&sh[i].sent[k]))
                fail_msg("shopper %d line %d: %lld in the cart, %ld acknowledged, %ld sent", i, k,
                         q, atomic_load(&sh[i].acked[k]), atomic_load(&sh[i].sent[k]));
        }
        th_resp_free(&r);
        free(tokens[i]);
    }
}

/* Moves the last change of carts back by `days`, straight in the server's carts database
 * (the only way a test can let 30 days pass): token_hex names a guest cart, else user_cart
 * is true for every user cart. */
static void age_carts(const char *token, int days)
{
    struct db_options opt = {.url = srv.db_url[0] ? srv.db_url : NULL, .data_dir = srv.data_dir};
    struct db *db;
    assert_int_equal(db_open(&db, "carts", &opt), 0);
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    int64_t back = (int64_t)days * 86400 * 1000;
    int rc;
    if (token) {
        unsigned char h[crypto_hash_sha256_BYTES];
        char hex[65];
        crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
        sodium_bin2hex(hex, sizeof hex, h, sizeof h);
        struct db_val a[] = {DB_INT(back), DB_TEXT(hex)};
        rc = db_query(c, "UPDATE carts SET updated_at = updated_at - $1 WHERE token_hash = $2", 2,
                      a, NULL);
    } else {
        struct db_val a[] = {DB_INT(back)};
        rc = db_query(c, "UPDATE carts SET updated_at = updated_at - $1 WHERE user_id IS NOT NULL",
                      1, a, NULL);
    }
    assert_true(rc >= 1);
    db_conn_give(c);
    db_close(db);
}

/* Guest carts idle longer than EMPORIUM_GUEST_CART_TTL_DAYS (default 30) are swept by the
 * server's background job; younger guest carts and every user's cart stay. */
static void test_guest_carts_expire(void **state)
{
    char *u = th_register(&srv, "old-user@example.com", "old users password");
    assert_non_null(u);
    struct th_resp r;
    char old_tok[128], young_tok[128];
    add(NULL, NULL, pa, 2, 200, &r);
    assert_non_null(th_header(&r, "X-Cart-Token", old_tok, sizeof old_tok));
    th_resp_free(&r);
    add(NULL, NULL, pb, 1, 200, &r);
    assert_non_null(th_header(&r, "X-Cart-Token", young_tok, sizeof young_tok));
    th_resp_free(&r);
    add(u, NULL, pc, 1, 200, &r);
    th_resp_free(&r);
    age_carts(old_tok, 31);
    age_carts(young_tok, 29);
    age_carts(NULL, 400); /* user carts never expire */

    /* The job runs when the server starts serving, then periodically. */
    assert_int_equal(th_stop(&srv), 0);
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};
    const char *args[] = {"--no-demo", NULL};
    assert_int_equal(th_restart(&srv, env, args), 0);
    long long left = -1;
    for (int i = 0; i < 600; i++) { /* at most 60 s */
        cart_req("GET", "/api/v1/cart", NULL, old_tok, NULL, &r);
        assert_int_equal(r.status, 200);
        left = qty_of(r.json, pa);
        th_resp_free(&r);
        if (left == 0)
            break;
        usleep(100 * 1000);
    }
    assert_int_equal(left, 0);
    cart_req("GET", "/api/v1/cart", NULL, young_tok, NULL, &r);
    assert_int_equal(qty_of(r.json, pb), 1);
    th_resp_free(&r);
    cart_req("GET", "/api/v1/cart", u, NULL, NULL, &r);
    assert_int_equal(qty_of(r.json, pc), 1);
    th_resp_free(&r);
    free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_cart_endpoints),
        cmocka_unit_test(test_guest_cart),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_line_cap),
        cmocka_unit_test(test_merge_on_login_and_register),
        cmocka_unit_test(test_merge_keeps_one_currency),
        cmocka_unit_test(test_users_isolated),
        cmocka_unit_test(test_concurrent_adds),
        cmocka_unit_test(test_concurrent_carts),
        cmocka_unit_test(test_survives_restart),
        cmocka_unit_test(test_killed_mid_load),
        cmocka_unit_test(test_guest_carts_expire),
    };
    if (getenv("TH_TEST_FILTER")) /* run one test while iterating: TH_TEST_FILTER=name */
        cmocka_set_test_filter(getenv("TH_TEST_FILTER"));
    return cmocka_run_group_tests(tests, setup, teardown);
}
