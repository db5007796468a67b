/* SPDX-License-Identifier: MIT */
/* test_catalog.c — the catalog through HTTP against the real binary (SQLite or PostgreSQL per
 * EMPORIUM_TEST_BACKEND): admin writes and who may make them, reads with ETag/304, no stale
 * cache after a write, search relevance, filters and sorts together, keyset pagination over
 * 1,000 seeded products (also while writes happen), categories, bad input, cache hit counters
 * per layer. With Redis (EMPORIUM_TEST_REDIS_URL) and PostgreSQL, processes share list and
 * search pages through the L2: a cold page is computed once for several processes asking at
 * the same moment (single flight), a write makes every process's pages unreachable at once
 * (the generation in Redis), and with Redis down lists come from the database. */
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

#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "harness.h"

static struct th_server srv;
static char *admin, *customer;

static int setup(void **state)
{
    /* no rate limits: test_search_sees_write_under_load searches from several threads */
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};
    if (th_start(&srv, env, NULL) != 0)
        return -1;
    /* 1,000 products for the pagination walks, seeded by the CLI before any request, so
     * nothing the server caches predates them (a CLI seed is another process: the running
     * server's L1 learns about it only when entries expire) */
    const char *args[] = {"seed", "--products", "1000", "--categories", "8", "--seed", "7", NULL};
    char *out = NULL;
    int rc = th_cli(&srv, args, &out);
    if (rc != 0)
        fprintf(stderr, "seed: %d %s\n", rc, out ? out : "");
    free(out);
    if (rc != 0)
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

/* Creates a product; returns its id (static buffer rotation) or fails the test. */
static const char *create(const char *sku, const char *name, const char *desc, const char *cat,
                          long price)
{
    static char ids[8][32];
    static int next;
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", "/api/v1/products", admin, &r,
                             "{\"sku\":\"%s\",\"name\":\"%s\",\"description\":\"%s\","
                             "\"category\":\"%s\",\"price\":{\"amount\":%ld,\"currency\":\"USD\"}}",
                             sku, name, desc, cat, price),
                     0);
    if (r.status != 201)
        fail_msg("create %s: %ld %s", sku, r.status, r.body);
    char *out = ids[next++ % 8];
    snprintf(out, 32, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    return out;
}

static void get_ok(const char *path, struct th_resp *r)
{
    assert_int_equal(th_call(&srv, "GET", path, NULL, r, NULL), 0);
    if (r->status != 200)
        fail_msg("GET %s: %ld %s", path, r->status, r->body);
}

static void test_write_auth(void **state)
{
    struct th_resp r;
    const char *body =
        "{\"sku\":\"AUTH-1\",\"name\":\"x\",\"category\":\"misc\",\"price\":{\"amount\":1}}";
    assert_int_equal(th_call(&srv, "POST", "/api/v1/products", NULL, &r, "%s", body), 0);
    assert_true(th_is_error(&r, 401, "unauthorized", NULL));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "POST", "/api/v1/products", customer, &r, "%s", body), 0);
    assert_true(th_is_error(&r, 403, "forbidden", NULL));
    th_resp_free(&r);
    char path[80];
    const char *id = create("AUTH-2", "Auth Widget", "", "misc", 100);
    snprintf(path, sizeof path, "/api/v1/products/%s", id);
    assert_int_equal(th_call(&srv, "PATCH", path, customer, &r, "{\"name\":\"hacked\"}"), 0);
    assert_true(th_is_error(&r, 403, "forbidden", NULL));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "DELETE", path, customer, &r, NULL), 0);
    assert_true(th_is_error(&r, 403, "forbidden", NULL));
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "DELETE", path, NULL, &r, NULL), 0);
    assert_true(th_is_error(&r, 401, "unauthorized", NULL));
    th_resp_free(&r);
    get_ok(path, &r);
    assert_string_equal(th_jstr(r.json, "name"), "Auth Widget");
    th_resp_free(&r);
    /* no such category was created by the refused writes */
    get_ok("/api/v1/categories", &r);
    assert_null(strstr(r.body, "hacked"));
    th_resp_free(&r);
}

static void test_crud_etag_no_stale(void **state)
{
    struct th_resp r;
    const char *id =
        create("CRUD-1", "Walnut Serving Board", "Oiled walnut.", "kitchen-test", 3499);
    char path[80], etag[64], etag2[64];
    snprintf(path, sizeof path, "/api/v1/products/%s", id);
    get_ok(path, &r);
    assert_string_equal(th_jstr(r.json, "id"), id);
    assert_string_equal(th_jstr(r.json, "sku"), "CRUD-1");
    assert_string_equal(th_jstr(r.json, "category"), "kitchen-test");
    assert_int_equal(th_jint(r.json, "price.amount", -1), 3499);
    assert_string_equal(th_jstr(r.json, "price.currency"), "USD");
    assert_int_equal(th_jint(r.json, "stock.available", -1), 0);
    assert_non_null(th_jstr(r.json, "created_at"));
    assert_non_null(th_jstr(r.json, "updated_at"));
    assert_non_null(th_header(&r, "ETag", etag, sizeof etag));
    char cc[64];
    assert_non_null(th_header(&r, "Cache-Control", cc, sizeof cc));
    assert_non_null(strstr(cc, "max-age"));
    th_resp_free(&r);

    /* 304 on If-None-Match, twice (the second from the cache) */
    char inm[96];
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *h[] = {inm, NULL};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(th_req(&srv, "GET", path, NULL, h, &r), 0);
        assert_int_equal(r.status, 304);
        assert_int_equal(r.len, 0);
        th_resp_free(&r);
    }
    /* warm the cache, then write: the very next read sees the write */
    for (int i = 0; i < 3; i++) {
        get_ok(path, &r);
        th_resp_free(&r);
    }
    assert_int_equal(
        th_call(&srv, "PATCH", path, admin, &r,
                "{\"price\":{\"amount\":2999,\"currency\":\"USD\"},\"name\":\"Walnut Board\"}"),
        0);
    assert_int_equal(r.status, 200);
    assert_int_equal(th_jint(r.json, "price.amount", -1), 2999);
    th_resp_free(&r);
    get_ok(path, &r);
    assert_int_equal(th_jint(r.json, "price.amount", -1), 2999);
    assert_string_equal(th_jstr(r.json, "name"), "Walnut Board");
    assert_string_equal(th_jstr(r.json, "description"), "Oiled walnut."); /* untouched */
    assert_non_null(th_header(&r, "ETag", etag2, sizeof etag2));
    assert_string_not_equal(etag, etag2);
    th_resp_free(&r);
    /* the old ETag no longer matches */
    assert_int_equal(th_req(&srv, "GET", path, NULL, h, &r), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    /* lists see it at once too */
    get_ok("/api/v1/products?q=walnut%20board&category=kitchen-test", &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    assert_int_equal(
        th_jint(json_array_get(json_object_get(r.json, "items"), 0), "price.amount", -1), 2999);
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "PATCH", path, admin, &r, "{\"price\":{\"amount\":1999}}"), 0);
    th_resp_free(&r);
    get_ok("/api/v1/products?q=walnut%20board&category=kitchen-test", &r);
    assert_int_equal(
        th_jint(json_array_get(json_object_get(r.json, "items"), 0), "price.amount", -1), 1999);
    th_resp_free(&r);

    /* bad updates: a clear 400, nothing written */
    static const char *const bad[][2] = {
        {"{\"colour\":\"red\"}", "colour"},
        {"{\"price\":{\"amount\":-5}}", "price.amount"},
        {"{\"price\":{\"amount\":\"12\"}}", "price.amount"},
        {"{\"price\":{\"amount\":100,\"currency\":\"dollars\"}}", "price.currency"},
        {"{\"name\":\"\"}", "name"},
        {"{\"category\":\"Not A Slug\"}", "category"},
        {"{\"name\":\"ok\",\"stock\":5}", "stock"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(th_call(&srv, "PATCH", path, admin, &r, "%s", bad[i][0]), 0);
        if (!th_is_error(&r, 400, NULL, bad[i][1]))
            fail_msg("PATCH %s: %ld %s", bad[i][0], r.status, r.body);
        th_resp_free(&r);
    }
    assert_int_equal(th_call(&srv, "PATCH", path, admin, &r, "{}"), 0);
    assert_int_equal(r.status, 400);
    th_resp_free(&r);
    get_ok(path, &r);
    assert_int_equal(th_jint(r.json, "price.amount", -1), 1999);
    assert_string_equal(th_jstr(r.json, "name"), "Walnut Board");
    th_resp_free(&r);

    /* duplicate SKU: 409 on create and on update */
    assert_int_equal(th_call(&srv, "POST", "/api/v1/products", admin, &r,
                             "{\"sku\":\"CRUD-1\",\"name\":\"Dup\",\"category\":\"kitchen-test\","
                             "\"price\":{\"amount\":1}}"),
                     0);
    assert_true(th_is_error(&r, 409, "sku_taken", NULL));
    th_resp_free(&r);
    const char *other = create("CRUD-2", "Other Board", "", "kitchen-test", 100);
    char opath[80];
    snprintf(opath, sizeof opath, "/api/v1/products/%s", other);
    assert_int_equal(th_call(&srv, "PATCH", opath, admin, &r, "{\"sku\":\"CRUD-1\"}"), 0);
    assert_true(th_is_error(&r, 409, "sku_taken", NULL));
    th_resp_free(&r);

    /* bad creates */
    static const char *const badc[][2] = {
        {"{\"sku\":\"C-3\",\"name\":\"x\",\"category\":\"a\"}", "price"},
        {"{\"sku\":\"C-3\",\"name\":\"x\",\"category\":\"a\",\"price\":{\"amount\":-1}}",
         "price.amount"},
        {"{\"sku\":\"C 3\",\"name\":\"x\",\"category\":\"a\",\"price\":{\"amount\":1}}", "sku"},
        {"{\"sku\":\"C-3\",\"category\":\"a\",\"price\":{\"amount\":1}}", "name"},
        {"{\"sku\":\"C-3\",\"name\":\"x\",\"category\":\"a\",\"price\":{\"amount\":1},\"id\":"
         "\"5\"}",
         "id"},
    };
    for (size_t i = 0; i < sizeof badc / sizeof badc[0]; i++) {
        assert_int_equal(th_call(&srv, "POST", "/api/v1/products", admin, &r, "%s", badc[i][0]), 0);
        if (!th_is_error(&r, 400, NULL, badc[i][1]))
            fail_msg("POST %s: %ld %s", badc[i][0], r.status, r.body);
        th_resp_free(&r);
    }

    /* delete: gone from reads and lists at once */
    assert_int_equal(th_call(&srv, "DELETE", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 204);
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", path, NULL, &r, NULL), 0);
    assert_true(th_is_error(&r, 404, "not_found", NULL));
    th_resp_free(&r);
    get_ok("/api/v1/products?q=walnut%20board&category=kitchen-test", &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "DELETE", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", "/api/v1/products/notanid", NULL, &r, NULL), 0);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
}

static void test_stock_and_hidden(void **state)
{
    struct th_resp r;
    const char *id = create("STOCK-1", "Stocky Gadget", "", "stock-test", 500);
    char path[80], ipath[80];
    snprintf(path, sizeof path, "/api/v1/products/%s", id);
    snprintf(ipath, sizeof ipath, "/api/v1/inventory/%s", id);
    get_ok(path, &r); /* cached with stock 0 */
    th_resp_free(&r);
    get_ok("/api/v1/products?category=stock-test&in_stock=true", &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    th_resp_free(&r);
    /* Every build has the inventory service: a 404 here is a failure, not a reason to stop. */
    assert_int_equal(th_call(&srv, "PUT", ipath, admin, &r, "{\"available\":7}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    get_ok(path, &r);
    assert_int_equal(th_jint(r.json, "stock.available", -1), 7);
    th_resp_free(&r);
    get_ok("/api/v1/products?category=stock-test&in_stock=true", &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    th_resp_free(&r);

    /* hidden: gone for shoppers, still there for admins */
    assert_int_equal(th_call(&srv, "PATCH", path, admin, &r, "{\"active\":false}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", path, NULL, &r, NULL), 0);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "GET", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    assert_true(json_is_false(json_object_get(r.json, "active")));
    th_resp_free(&r);
    get_ok("/api/v1/products?category=stock-test", &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    th_resp_free(&r);
}

static void test_relevance(void **state)
{
    struct th_resp r;
    /* one matches in the description only, one in the name; created in that order so that
     * neither the id nor the insertion order explains the ranking */
    const char *desc_id =
        create("REL-1", "Plain Lantern", "Pairs with any zorblax decor.", "rel-test", 1000);
    const char *name_id =
        strdup(create("REL-2", "Zorblax Lantern", "A plain lantern.", "rel-test", 2000));
    create("REL-3", "Unrelated Thing", "Nothing to see.", "rel-test", 3000);
    get_ok("/api/v1/products?q=zorblax", &r);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_string_equal(th_jstr(json_array_get(items, 0), "id"), name_id);
    assert_string_equal(th_jstr(json_array_get(items, 1), "id"), desc_id);
    th_resp_free(&r);
    /* prefix match on the last word, as the user types; case does not matter */
    get_ok("/api/v1/products?q=ZORBL", &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 2);
    assert_string_equal(th_jstr(json_array_get(json_object_get(r.json, "items"), 0), "id"),
                        name_id);
    th_resp_free(&r);
    /* every word must match */
    get_ok("/api/v1/products?q=zorblax%20lantern%20plain", &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 2);
    th_resp_free(&r);
    get_ok("/api/v1/products?q=zorblax%20unrelated", &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    th_resp_free(&r);
    /* relevance with a filter and a different sort */
    get_ok("/api/v1/products?q=zorblax&sort=price_desc", &r);
    assert_string_equal(th_jstr(json_array_get(json_object_get(r.json, "items"), 0), "id"),
                        name_id);
    th_resp_free(&r);
    get_ok("/api/v1/products?q=zorblax&sort=price_asc", &r);
    assert_string_equal(th_jstr(json_array_get(json_object_get(r.json, "items"), 0), "id"),
                        desc_id);
    th_resp_free(&r);
    get_ok("/api/v1/products?q=zorblax&max_price=1500", &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    th_resp_free(&r);
    /* FTS syntax in q is inert: no error, no injection */
    static const char *const weird[] = {"%22zorblax",
                                        "zorblax%22",
                                        "zorb*",
                                        "*",
                                        "zorblax%20NEAR(lantern",
                                        "(zorblax",
                                        "zorblax)",
                                        "zorblax%20OR%20unrelated",
                                        "NOT%20zorblax",
                                        "%22%22%22",
                                        "-zorblax",
                                        "zorblax%20AND",
                                        "col:zorblax",
                                        "%5E",
                                        "%27%3B%20DROP%20TABLE%20products%3B--",
                                        "zorblax%20%26%20%7C%20!",
                                        "%E2%80%9Czorblax%E2%80%9D",
                                        NULL};
    for (int i = 0; weird[i]; i++) {
        char p[200];
        snprintf(p, sizeof p, "/api/v1/products?q=%s", weird[i]);
        assert_int_equal(th_call(&srv, "GET", p, NULL, &r, NULL), 0);
        if (r.status != 200)
            fail_msg("q=%s: %ld %s", weird[i], r.status, r.body);
        th_resp_free(&r);
    }
    get_ok("/api/v1/products?q=%22zorblax%22%20NEAR(", &r);
    th_resp_free(&r);
    get_ok("/api/v1/products?q=(zorblax", &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 2);
    th_resp_free(&r);
    free((void *)name_id);
}

/* A price object without a currency changes the amount only: the product keeps its
 * currency (it used to become USD). On create, a price without a currency is USD. */
static void test_patch_keeps_currency(void **state)
{
    struct th_resp r;
    assert_int_equal(
        th_call(&srv, "POST", "/api/v1/products", admin, &r,
                "{\"sku\":\"CUR-1\",\"name\":\"Euro Kettle\",\"category\":\"cur-test\","
                "\"price\":{\"amount\":1000,\"currency\":\"EUR\"}}"),
        0);
    assert_int_equal(r.status, 201);
    char id[32], path[80];
    snprintf(id, sizeof id, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    snprintf(path, sizeof path, "/api/v1/products/%s", id);
    assert_int_equal(th_call(&srv, "PATCH", path, admin, &r, "{\"price\":{\"amount\":1200}}"), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(th_jint(r.json, "price.amount", -1), 1200);
    assert_string_equal(th_jstr(r.json, "price.currency"), "EUR");
    th_resp_free(&r);
    get_ok(path, &r);
    assert_int_equal(th_jint(r.json, "price.amount", -1), 1200);
    assert_string_equal(th_jstr(r.json, "price.currency"), "EUR");
    th_resp_free(&r);
    /* other fields leave the price alone; an explicit currency changes it */
    assert_int_equal(th_call(&srv, "PATCH", path, admin, &r, "{\"name\":\"Euro Kettle 2\"}"), 0);
    assert_string_equal(th_jstr(r.json, "price.currency"), "EUR");
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "PATCH", path, admin, &r,
                             "{\"price\":{\"amount\":1300,\"currency\":\"GBP\"}}"),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "price.currency"), "GBP");
    th_resp_free(&r);
    get_ok(path, &r);
    assert_int_equal(th_jint(r.json, "price.amount", -1), 1300);
    assert_string_equal(th_jstr(r.json, "price.currency"), "GBP");
    th_resp_free(&r);
    /* create without a currency: USD */
    const char *usd = create("CUR-2", "Dollar Kettle", "", "cur-test", 500);
    snprintf(path, sizeof path, "/api/v1/products/%s", usd);
    get_ok(path, &r);
    assert_string_equal(th_jstr(r.json, "price.currency"), "USD");
    th_resp_free(&r);
}

/* Symbols without letters or digits are not search words: "lamp — desk" finds what
 * "lamp desk" finds (a lone dash used to be a word that matched nothing). */
static void test_symbols_are_not_words(void **state)
{
    create("SYM-1", "Quixwood Desk Lamp", "A lamp for the desk.", "sym-test", 1000);
    create("SYM-2", "Quixwood Floor Lamp", "Stands on the floor.", "sym-test", 2000);
    create("SYM-3", "Quixwood Desk", "A desk, no lamp in the name.", "sym-test", 3000);
    struct th_resp r;
    get_ok("/api/v1/products?q=quixwood%20lamp%20desk", &r);
    size_t want = json_array_size(json_object_get(r.json, "items"));
    char *want_body = strdup(r.body);
    th_resp_free(&r);
    assert_int_equal(want, 2);
    static const char *const spaced[] = {
        "quixwood%20lamp%20%E2%80%94%20desk",       /* em dash */
        "quixwood%20lamp%20%E2%80%93%20desk",       /* en dash */
        "quixwood%20lamp%E2%80%94desk",             /* em dash, no spaces */
        "quixwood%20lamp%20%C2%B7%20desk",          /* middle dot */
        "%C2%AB%20quixwood%20lamp%20desk%20%C2%BB", /* guillemets */
        "quixwood%C2%A0lamp%C2%A0desk",             /* no-break spaces */
        "quixwood%20lamp%20%E2%80%A6%20desk",       /* ellipsis */
        "quixwood%20lamp%20%F0%9F%99%82%20desk",    /* an emoji */
        "quixwood%20lamp%20%E2%86%92%20desk",       /* an arrow */
        "quixwood%20%E3%80%81lamp%E3%80%82desk",    /* CJK punctuation */
        "quixwood%20lamp%20-%20desk",
        NULL};
    for (int i = 0; spaced[i]; i++) {
        char p[200];
        snprintf(p, sizeof p, "/api/v1/products?q=%s", spaced[i]);
        get_ok(p, &r);
        if (strcmp(r.body, want_body) != 0)
            fail_msg("q=%s: %s, want %s", spaced[i], r.body, want_body);
        th_resp_free(&r);
    }
    free(want_body);
    /* a query of symbols only has no words: the plain listing, not an empty result */
    get_ok("/api/v1/products?q=%E2%80%94&category=sym-test", &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 3);
    th_resp_free(&r);
    /* letters outside ASCII still make words */
    create("SYM-4",
           "Quixwood \xc3\xbc"
           "berlamp",
           "", "sym-test", 4000);
    get_ok("/api/v1/products?q=quixwood%20%C3%BCberlamp", &r);
    assert_non_null(strstr(r.body, "SYM-4"));
    th_resp_free(&r);
}

static void test_filters_and_sorts(void **state)
{
    struct th_resp r;
    static const long prices[] = {500, 1500, 2500, 3500, 4500, 1500};
    for (int i = 0; i < 6; i++) {
        char sku[32], name[64];
        snprintf(sku, sizeof sku, "FS-%d", i);
        snprintf(name, sizeof name, "Filter Gizmo %d", i);
        create(sku, name, "gizmo for filters", i < 5 ? "fs-one" : "fs-two", prices[i]);
    }
    get_ok("/api/v1/products?category=fs-one&min_price=1500&max_price=3500&sort=price_desc", &r);
    json_t *items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 3);
    assert_int_equal(th_jint(json_array_get(items, 0), "price.amount", 0), 3500);
    assert_int_equal(th_jint(json_array_get(items, 2), "price.amount", 0), 1500);
    th_resp_free(&r);
    get_ok("/api/v1/products?q=gizmo&sort=price_asc&min_price=1500", &r);
    items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 5);
    long prev = 0;
    for (size_t i = 0; i < json_array_size(items); i++) {
        long p = (long)th_jint(json_array_get(items, i), "price.amount", 0);
        assert_true(p >= prev);
        prev = p;
    }
    th_resp_free(&r);
    get_ok("/api/v1/products?category=fs-one&sort=newest", &r);
    items = json_object_get(r.json, "items");
    assert_int_equal(json_array_size(items), 5);
    assert_string_equal(th_jstr(json_array_get(items, 0), "sku"), "FS-4");
    assert_string_equal(th_jstr(json_array_get(items, 4), "sku"), "FS-0");
    th_resp_free(&r);
    get_ok("/api/v1/products?category=fs-two", &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 1);
    th_resp_free(&r);
    get_ok("/api/v1/products?category=no-such-category", &r);
    assert_int_equal(json_array_size(json_object_get(r.json, "items")), 0);
    assert_true(json_is_null(json_object_get(r.json, "next_cursor")));
    th_resp_free(&r);
    /* ETag/304 on lists */
    char etag[64], inm[96];
    get_ok("/api/v1/products?category=fs-one", &r);
    assert_non_null(th_header(&r, "ETag", etag, sizeof etag));
    th_resp_free(&r);
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *h[] = {inm, NULL};
    assert_int_equal(th_req(&srv, "GET", "/api/v1/products?category=fs-one", NULL, h, &r), 0);
    assert_int_equal(r.status, 304);
    th_resp_free(&r);

    /* categories with counts, ETag and 304 */
    get_ok("/api/v1/categories", &r);
    json_t *cats = json_object_get(r.json, "items");
    long one = -1, two = -1;
    for (size_t i = 0; i < json_array_size(cats); i++) {
        json_t *c = json_array_get(cats, i);
        if (!strcmp(th_jstr(c, "slug"), "fs-one"))
            one = (long)th_jint(c, "product_count", -1);
        if (!strcmp(th_jstr(c, "slug"), "fs-two")) {
            two = (long)th_jint(c, "product_count", -1);
            assert_string_equal(th_jstr(c, "name"), "Fs Two");
        }
    }
    assert_int_equal(one, 5);
    assert_int_equal(two, 1);
    assert_non_null(th_header(&r, "ETag", etag, sizeof etag));
    th_resp_free(&r);
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    assert_int_equal(th_req(&srv, "GET", "/api/v1/categories", NULL, h, &r), 0);
    assert_int_equal(r.status, 304);
    th_resp_free(&r);
    create("FS-9", "Filter Gizmo 9", "", "fs-two", 100);
    assert_int_equal(th_req(&srv, "GET", "/api/v1/categories", NULL, h, &r), 0);
    assert_int_equal(r.status, 200); /* the count changed */
    assert_non_null(strstr(r.body, "\"slug\":\"fs-two\",\"name\":\"Fs Two\",\"product_count\":2"));
    th_resp_free(&r);
}

static void test_bad_list_input(void **state)
{
    static const char *const bad[][2] = {
        {"sort=cheapest", "sort"},
        {"sort=PRICE_ASC", "sort"},
        {"min_price=-1", "min_price"},
        {"min_price=abc", "min_price"},
        {"max_price=12.5", "max_price"},
        {"max_price=", "max_price"},
        {"min_price=99999999999999999999", "min_price"},
        {"min_price=500&max_price=100", "max_price"},
        {"limit=0", "limit"},
        {"limit=101", "limit"},
        {"limit=-5", "limit"},
        {"limit=ten", "limit"},
        {"cursor=garbage!!", "cursor"},
        {"cursor=bjox", "cursor"},    /* base64url of "n:1" is bjox; n:1 with price sort */
        {"cursor=eno5OTk", "cursor"}, /* "z:999": unknown sort tag */
        {"cursor=", "cursor"},
        {"in_stock=maybe", "in_stock"},
        {"category=Not%20A%20Slug", "category"},
        {NULL, NULL},
    };
    struct th_resp r;
    for (int i = 0; bad[i][0]; i++) {
        char p[200];
        snprintf(p, sizeof p, "/api/v1/products?%s%s", bad[i][0],
                 !strcmp(bad[i][0], "cursor=bjox") ? "&sort=price_asc" : "");
        assert_int_equal(th_call(&srv, "GET", p, NULL, &r, NULL), 0);
        if (!th_is_error(&r, 400, "validation_failed", bad[i][1]))
            fail_msg("%s: %ld %s", p, r.status, r.body);
        th_resp_free(&r);
    }
    /* a valid cursor of newest is fine for newest */
    assert_int_equal(
        th_call(&srv, "GET", "/api/v1/products?cursor=bjox&sort=newest", NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    char q[300] = "/api/v1/products?q=";
    size_t n = strlen(q);
    for (int i = 0; i < 201; i++)
        q[n + (size_t)i] = 'a';
    q[n + 201] = 0;
    assert_int_equal(th_call(&srv, "GET", q, NULL, &r, NULL), 0);
    assert_true(th_is_error(&r, 400, "validation_failed", "q"));
    th_resp_free(&r);
    q[n + 200] = 0; /* exactly 200 is fine */
    assert_int_equal(th_call(&srv, "GET", q, NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

/* Walks every page of `query` and records the ids; fails on a duplicate. */
static int walk(const char *query, char ids[][24], int cap, int *pages)
{
    int n = 0;
    char cursor[256] = "";
    *pages = 0;
    for (;;) {
        char p[600];
        snprintf(p, sizeof p, "/api/v1/products?%s%s%s", query, cursor[0] ? "&cursor=" : "",
                 cursor);
        struct th_resp r;
        get_ok(p, &r);
        (*pages)++;
        json_t *items = json_object_get(r.json, "items");
        for (size_t i = 0; i < json_array_size(items); i++) {
            const char *id = th_jstr(json_array_get(items, i), "id");
            for (int k = 0; k < n; k++)
                if (!strcmp(ids[k], id))
                    fail_msg("%s: %s seen twice (page %d)", query, id, *pages);
            assert_true(n < cap);
            snprintf(ids[n++], 24, "%s", id);
        }
        const char *next = th_jstr(r.json, "next_cursor");
        if (!next) {
            th_resp_free(&r);
            break;
        }
        assert_true(json_array_size(items) > 0);
        snprintf(cursor, sizeof cursor, "%s", next);
        th_resp_free(&r);
    }
    return n;
}

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }

static void test_pagination_1000(void **state)
{
    static char a[1200][24], b[1200][24], c[1200][24];
    int pages;
    /* every seeded product exactly once, in three different orders; the seed's categories
     * are ones no other test uses */
    int total = 0;
    struct th_resp r;
    get_ok("/api/v1/categories", &r);
    json_t *cats = json_object_get(r.json, "items");
    static const char *const seeded[] = {"lighting",    "furniture", "kitchen",  "outdoor",
                                         "electronics", "apparel",   "footwear", "bags"};
    for (size_t i = 0; i < json_array_size(cats); i++)
        for (int k = 0; k < 8; k++)
            if (!strcmp(th_jstr(json_array_get(cats, i), "slug"), seeded[k]))
                total += (int)th_jint(json_array_get(cats, i), "product_count", 0);
    th_resp_free(&r);
    assert_int_equal(total, 1000);
    int na = 0, nb = 0;
    for (int k = 0; k < 8; k++) {
        char q[160];
        int got;
        snprintf(q, sizeof q, "category=%s&sort=price_asc&limit=37", seeded[k]);
        got = walk(q, a + na, 1200 - na, &pages);
        na += got;
        snprintf(q, sizeof q, "category=%s&sort=price_desc&limit=100", seeded[k]);
        got = walk(q, b + nb, 1200 - nb, &pages);
        nb += got;
    }
    assert_int_equal(na, 1000);
    assert_int_equal(nb, 1000);
    qsort(a, (size_t)na, 24, cmp_str);
    qsort(b, (size_t)nb, 24, cmp_str);
    for (int i = 0; i < 1000; i++)
        assert_string_equal(a[i], b[i]);
    for (int i = 1; i < 1000; i++)
        assert_string_not_equal(a[i - 1], a[i]);

    /* relevance pages of a common word: the same set as the newest walk, no duplicates */
    int nr = walk("q=lamp&limit=7", c, 1200, &pages);
    assert_true(nr > 10);
    int nn = walk("q=lamp&sort=newest&limit=50", b, 1200, &pages);
    assert_int_equal(nr, nn);
    qsort(c, (size_t)nr, 24, cmp_str);
    qsort(b, (size_t)nn, 24, cmp_str);
    for (int i = 0; i < nr; i++)
        assert_string_equal(c[i], b[i]);
}

static void test_pagination_during_writes(void **state)
{
    /* 60 products in one category; page through by price while, between pages, new
     * products (cheap and expensive) arrive and an already-seen product is deleted: every
     * product that existed for the whole walk is seen exactly once */
    char ids[60][24];
    for (int i = 0; i < 60; i++) {
        char sku[32], name[64];
        snprintf(sku, sizeof sku, "PW-%d", i);
        snprintf(name, sizeof name, "Paging Item %d", i);
        snprintf(ids[i], 24, "%s", create(sku, name, "", "paging-test", 100 + (i % 7) * 100));
    }
    static char seen[200][24];
    int n = 0;
    char cursor[256] = "";
    int pages = 0, extra = 0, ndeleted = 0;
    bool deleted[60] = {false};
    for (;;) {
        char p[400];
        snprintf(p, sizeof p, "/api/v1/products?category=paging-test&sort=price_asc&limit=9%s%s",
                 cursor[0] ? "&cursor=" : "", cursor);
        struct th_resp r;
        get_ok(p, &r);
        pages++;
        json_t *items = json_object_get(r.json, "items");
        for (size_t i = 0; i < json_array_size(items); i++) {
            const char *id = th_jstr(json_array_get(items, i), "id");
            for (int k = 0; k < n; k++)
                if (!strcmp(seen[k], id))
                    fail_msg("%s seen twice", id);
            snprintf(seen[n++], 24, "%s", id);
        }
        const char *next = th_jstr(r.json, "next_cursor");
        /* writes between pages: one at each end of the price range, one delete of an
         * already-seen product */
        char sku[32];
        snprintf(sku, sizeof sku, "PW-NEW-%d", extra++);
        create(sku, "Paging Newcomer", "", "paging-test", (extra % 2) ? 50 : 5000);
        /* delete the first seeded product this walk has already seen and not deleted yet */
        for (int k = 0; k < n; k++) {
            int j = 0;
            while (j < 60 && strcmp(ids[j], seen[k]) != 0)
                j++;
            if (j == 60 || deleted[j])
                continue;
            char dpath[80];
            snprintf(dpath, sizeof dpath, "/api/v1/products/%.23s", ids[j]);
            struct th_resp d;
            assert_int_equal(th_call(&srv, "DELETE", dpath, admin, &d, NULL), 0);
            assert_int_equal(d.status, 204);
            th_resp_free(&d);
            deleted[j] = true;
            ndeleted++;
            break;
        }
        if (!next) {
            th_resp_free(&r);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", next);
        th_resp_free(&r);
        assert_true(pages < 30);
    }
    for (int i = 0; i < 60; i++) {
        bool found = false;
        for (int k = 0; k < n && !found; k++)
            found = !strcmp(seen[k], ids[i]);
        if (!found)
            fail_msg("product %s was skipped", ids[i]);
    }
    /* the walk really ran under deletes: one a page, and they are gone */
    assert_int_equal(ndeleted, pages);
    struct th_resp r;
    for (int i = 0; i < 60; i++) {
        if (!deleted[i])
            continue;
        char dpath[80];
        snprintf(dpath, sizeof dpath, "/api/v1/products/%.23s", ids[i]);
        assert_int_equal(th_call(&srv, "GET", dpath, NULL, &r, NULL), 0);
        assert_int_equal(r.status, 404);
        th_resp_free(&r);
    }
}

/* q must be UTF-8 (PostgreSQL refuses invalid text: that was a 500); a word longer than the
 * 64-byte word cap is cut on a character boundary, never inside a UTF-8 sequence. */
static void test_q_utf8(void **state)
{
    static const char *const bad[] = {"%FF", "%C3", "lamp%C3%28", "%ED%A0%80", "%C0%AF", NULL};
    struct th_resp r;
    for (int i = 0; bad[i]; i++) {
        char p[200];
        snprintf(p, sizeof p, "/api/v1/products?q=%s", bad[i]);
        assert_int_equal(th_call(&srv, "GET", p, NULL, &r, NULL), 0);
        if (!th_is_error(&r, 400, "validation_failed", "q"))
            fail_msg("%s: %ld %s", p, r.status, r.body);
        th_resp_free(&r);
    }
    /* "aa" + 22 x U+20AC (3 bytes each): 68 bytes, cut to 64 would end in E2 82 */
    char p[400] = "/api/v1/products?q=aa";
    for (int i = 0; i < 22; i++)
        strcat(p, "%E2%82%AC");
    assert_int_equal(th_call(&srv, "GET", p, NULL, &r, NULL), 0);
    if (r.status != 200)
        fail_msg("long multi-byte word: %ld %s", r.status, r.body);
    th_resp_free(&r);
    create("UTF-1", "Caf\xc3\xa9 Grinder", "", "utf-test", 100);
    get_ok("/api/v1/products?q=caf%C3%A9", &r);
    assert_non_null(strstr(r.body, "UTF-1"));
    th_resp_free(&r);
}

/* Searches filter over an in-memory copy of price/active/stock that a search re-reads
 * after a write. A search that starts after an admin write returned must see it even while
 * another search is in the middle of that re-read (it used to skip the re-read as soon as
 * the other one had started, and cached the stale page for the new generation). */
static atomic_bool race_stop;
static void *race_searcher(void *arg)
{
    int limit = 1 + (int)(intptr_t)arg;
    while (!atomic_load(&race_stop)) {
        char p[120];
        snprintf(p, sizeof p, "/api/v1/products?q=quokkagadget&max_price=1000&limit=%d", limit);
        struct th_resp r;
        if (th_call(&srv, "GET", p, NULL, &r, NULL) == 0)
            th_resp_free(&r);
        limit = limit % 50 + 5;
    }
    return NULL;
}

static void test_search_sees_write_under_load(void **state)
{
    const char *pid = create("RACE-1", "Quokkagadget Prime", "", "race-test", 100);
    char id[32], path[80];
    snprintf(id, sizeof id, "%s", pid);
    snprintf(path, sizeof path, "/api/v1/products/%s", id);
    create("RACE-2", "Quokkagadget Spare", "", "race-test", 200);
    pthread_t th[3];
    atomic_store(&race_stop, false);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_searcher, (void *)(intptr_t)i), 0);
    int stale = 0, bad = 0;
    long bad_status = 0;
    for (int i = 0; i < 150 && !bad; i++) {
        bool cheap = i % 2 == 1;
        struct th_resp r;
        if (th_call(&srv, "PATCH", path, admin, &r, "{\"price\":{\"amount\":%d}}",
                    cheap ? 100 : 900000) != 0) {
            bad = -1;
            break;
        }
        if (r.status != 200)
            bad = 1, bad_status = r.status;
        th_resp_free(&r);
        if (bad || th_call(&srv, "GET", "/api/v1/products?q=quokkagadget&max_price=1000&limit=20",
                           NULL, &r, NULL) != 0) {
            bad = bad ? bad : -1;
            break;
        }
        if (r.status != 200)
            bad = 2, bad_status = r.status;
        else if ((strstr(r.body, id) != NULL) != cheap)
            stale++;
        th_resp_free(&r);
    }
    atomic_store(&race_stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    if (bad)
        fail_msg("request %d failed: status %ld", bad, bad_status);
    if (stale)
        fail_msg("%d of 150 searches right after a price change did not see it", stale);
}

static void test_metrics(void **state)
{
    struct th_resp r;
    get_ok("/metrics", &r);
    assert_non_null(strstr(r.body, "emporium_cache_hits_total{cache=\"product\",layer=\"l1\"}"));
    assert_non_null(strstr(r.body, "emporium_cache_misses_total{cache=\"product\",layer=\"l1\"}"));
    assert_non_null(
        strstr(r.body, "emporium_cache_evictions_total{cache=\"product\",layer=\"l1\"}"));
    /* the search match sets are a layer of their own (earlier tests searched: through it, or
     * through the in-memory index, which picks a page without a match set) */
    const char *m = strstr(r.body, "emporium_cache_misses_total{cache=\"search_matches\","
                                   "layer=\"l1\"} ");
    assert_non_null(m);
    const char *mem = strstr(r.body, "emporium_search_matches_total{engine=\"memory\"} ");
    assert_true(atoll(strchr(m, ' ') + 1) > 0 || (mem && atoll(strchr(mem, ' ') + 1) > 0));
    assert_non_null(
        strstr(r.body, "emporium_cache_hit_ratio{cache=\"search_matches\",layer=\"l1\"}"));
    th_resp_free(&r);
}

/* ---- the Redis L2 for lists -------------------------------------------------------------- */

/* The value of one /metrics sample ("name{labels}"); -1 when absent. */
static long long metric_of(struct th_server *s, const char *series)
{
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", "/metrics", NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    long long v = -1;
    size_t n = strlen(series);
    for (const char *p = r.body; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            v = atoll(p + n + 1);
    th_resp_free(&r);
    return v;
}

/* GET path on s: 200, and the first item's price (-1: no item). */
static long long first_price(struct th_server *s, const char *path)
{
    struct th_resp r;
    assert_int_equal(th_call(s, "GET", path, NULL, &r, NULL), 0);
    if (r.status != 200)
        fail_msg("GET %s: %ld %s", path, r.status, r.body);
    json_t *first = json_array_get(json_object_get(r.json, "items"), 0);
    long long p = first ? th_jint(first, "price.amount", -1) : -1;
    th_resp_free(&r);
    return p;
}

struct getter {
    struct th_server *s;
    const char *path;
    long long price;
};

static void *get_thread(void *arg)
{
    struct getter *g = arg;
    struct th_resp r;
    g->price = -2;
    if (th_call(g->s, "GET", g->path, NULL, &r, NULL) == 0) {
        json_t *first = json_array_get(json_object_get(r.json, "items"), 0);
        g->price = r.status == 200 && first ? th_jint(first, "price.amount", -1) : -3;
        th_resp_free(&r);
    }
    return NULL;
}

static long long mono_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void test_lists_l2_shared(void **state)
{
    const char *redis = getenv("EMPORIUM_TEST_REDIS_URL");
    const char *be = getenv("EMPORIUM_TEST_BACKEND");
    if (!redis || !be || strcmp(be, "postgres") != 0) {
        printf("skipped: the shared list cache needs Redis (EMPORIUM_TEST_REDIS_URL) and "
               "processes that share databases (PostgreSQL)\n");
        skip();
    }
    char url[160], prefix[80], cat[40], path[120], sku[40];
    snprintf(url, sizeof url, "EMPORIUM_REDIS_URL=%s", redis);
    snprintf(prefix, sizeof prefix, "EMPORIUM_REDIS_PREFIX=tcat%d_%ld:", (int)getpid(),
             (long)time(NULL));
    /* this Redis, whatever the run's variant configured (an empty setting is no setting) */
    const char *env[] = {url,
                         prefix,
                         "EMPORIUM_REDIS_CLUSTER=",
                         "EMPORIUM_RATE_LIMITS=off",
                         "EMPORIUM_REDIS_LIST_CACHE_TTL_SECONDS=30",
                         NULL};
    struct th_server a, b, c;
    assert_int_equal(th_start(&a, env, NULL), 0);
    char *adm = th_admin_token(&a);
    assert_non_null(adm);
    snprintf(cat, sizeof cat, "l2cat%d", (int)getpid());
    snprintf(sku, sizeof sku, "L2-%d", (int)getpid());
    struct th_resp r;
    assert_int_equal(th_call(&a, "POST", "/api/v1/products", adm, &r,
                             "{\"sku\":\"%s\",\"name\":\"Shared lamp\",\"description\":\"d\","
                             "\"category\":\"%s\",\"price\":{\"amount\":1000,"
                             "\"currency\":\"USD\"}}",
                             sku, cat),
                     0);
    assert_int_equal(r.status, 201);
    char pid[32], ppath[80];
    snprintf(pid, sizeof pid, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    b = a; /* the same databases and Redis, a second process */
    b.pid = 0;
    assert_int_equal(th_restart(&b, env, NULL), 0);

    /* Single flight: eight identical cold requests at once on two processes; the page is
     * computed once. A waiting process loads by itself when the holder's lock or its Redis
     * calls time out (by design, so a stalled holder costs a bounded wait), so a burst on a
     * loaded machine may load twice (once per process, never more): each burst asks a new
     * cold page (another limit) until one shows a single load, five at most. */
    const char *loads = "emporium_cache_loads_total{cache=\"product_lists\",layer=\"l2\"}";
    long long once = 0;
    for (int attempt = 0; attempt < 5 && !once; attempt++) {
        snprintf(path, sizeof path, "/api/v1/products?category=%s&sort=price_asc&limit=%d", cat,
                 10 + attempt);
        long long loads0 = metric_of(&a, loads) + metric_of(&b, loads);
        pthread_t th[8];
        struct getter g[8];
        for (int i = 0; i < 8; i++) {
            g[i] = (struct getter){i % 2 ? &b : &a, path, 0};
            assert_int_equal(pthread_create(&th[i], NULL, get_thread, &g[i]), 0);
        }
        for (int i = 0; i < 8; i++) {
            pthread_join(th[i], NULL);
            assert_int_equal(g[i].price, 1000);
        }
        long long n = metric_of(&a, loads) + metric_of(&b, loads) - loads0;
        assert_true(n >= 1 && n <= 2); /* at most once per process */
        once = n == 1;
        if (!once)
            printf("single flight: burst %d loaded the page in both processes\n", attempt);
    }
    assert_true(once);

    /* A write through a: a process that never saw the page before reads the new price at once
     * (without the generation it would get the old page from Redis), and b within its L1's 5 s. */
    snprintf(ppath, sizeof ppath, "/api/v1/products/%s", pid);
    assert_int_equal(th_call(&a, "PATCH", ppath, adm, &r, "{\"price\":{\"amount\":4242}}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    c = a;
    c.pid = 0;
    assert_int_equal(th_restart(&c, env, NULL), 0);
    assert_int_equal(first_price(&c, path), 4242);
    assert_int_equal(first_price(&a, path), 4242);
    long long deadline = mono_now_ms() + 60000;
    while (first_price(&b, path) != 4242) {
        assert_true(mono_now_ms() < deadline);
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    /* and c's next identical request is a hit of the L1 (the L2 was asked once) */
    assert_true(metric_of(&c, "emporium_cache_misses_total{cache=\"product_lists\","
                              "layer=\"l2\"}") >= 1);
    free(adm);
    assert_int_equal(th_stop(&c), 0);
    assert_int_equal(th_stop(&b), 0);
    assert_int_equal(th_stop(&a), 0);
    th_cleanup(&a);
}

/* Redis down: lists and searches come from the database. A write needs a session, and
 * sessions live in Redis when it is configured, so with Redis down the write is refused with
 * a retryable 503 and changes nothing. */
static void test_lists_redis_down(void **state)
{
    /* A port where no Redis can answer: bound here and never listened on, so a connection is
     * refused (the spare port of the test servers may host another suite's Redis meanwhile). */
    int hold = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof sa;
    assert_true(hold >= 0);
    assert_int_equal(bind(hold, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(hold, (struct sockaddr *)&sa, &salen), 0);
    /* First without Redis: an admin and a product. */
    const char *plain[] = {"EMPORIUM_RATE_LIMITS=off",
                           "EMPORIUM_REDIS_URL=", "EMPORIUM_REDIS_CLUSTER=", NULL};
    struct th_server s;
    assert_int_equal(th_start(&s, plain, NULL), 0);
    char *adm = th_admin_token(&s);
    assert_non_null(adm);
    struct th_resp r;
    assert_int_equal(th_call(&s, "POST", "/api/v1/products", adm, &r,
                             "{\"sku\":\"DOWN-1\",\"name\":\"Offline lamp\",\"description\":"
                             "\"d\",\"category\":\"down\",\"price\":{\"amount\":700,"
                             "\"currency\":\"USD\"}}"),
                     0);
    assert_int_equal(r.status, 201);
    char ppath[80];
    snprintf(ppath, sizeof ppath, "/api/v1/products/%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    /* Then with a Redis that does not answer. */
    char url[96];
    snprintf(url, sizeof url, "EMPORIUM_REDIS_URL=redis://127.0.0.1:%d", (int)ntohs(sa.sin_port));
    const char *env[] = {url,
                         "EMPORIUM_REDIS_CLUSTER=",
                         "EMPORIUM_RATE_LIMITS=off",
                         "EMPORIUM_REDIS_TIMEOUT_MS=200",
                         "EMPORIUM_REDIS_LIST_CACHE_TTL_SECONDS=30",
                         NULL};
    assert_int_equal(th_stop(&s), 0);
    assert_int_equal(th_restart(&s, env, NULL), 0);
    assert_int_equal(first_price(&s, "/api/v1/products?category=down"), 700);
    assert_int_equal(first_price(&s, "/api/v1/products?q=offline"), 700);
    assert_int_equal(th_call(&s, "PATCH", ppath, adm, &r, "{\"price\":{\"amount\":800}}"), 0);
    assert_int_equal(r.status, 503);
    char ra[16];
    assert_non_null(th_header(&r, "Retry-After", ra, sizeof ra));
    th_resp_free(&r);
    assert_int_equal(first_price(&s, "/api/v1/products?category=down"), 700);
    assert_int_equal(first_price(&s, "/api/v1/products?q=offline"), 700);
    free(adm);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
    close(hold);
}

/* The search index follows writes: a renamed product is found by its new name only, a
 * deleted one not at all, from the first search after each write. On SQLite the in-memory
 * index answers these (it is built at start; /metrics counts which engine answered). */
static long memory_matches(void)
{
    struct th_resp r;
    get_ok("/metrics", &r);
    const char *m = strstr(r.body, "emporium_search_matches_total{engine=\"memory\"} ");
    long n =
        m ? strtol(m + strlen("emporium_search_matches_total{engine=\"memory\"} "), NULL, 10) : 0;
    th_resp_free(&r);
    return n;
}

static size_t hits(const char *q)
{
    struct th_resp r;
    char p[200];
    snprintf(p, sizeof p, "/api/v1/products?q=%s&category=idx-test", q);
    get_ok(p, &r);
    size_t n = json_array_size(json_object_get(r.json, "items"));
    th_resp_free(&r);
    return n;
}

static void test_search_index_follows_writes(void **state)
{
    const char *be = getenv("EMPORIUM_TEST_BACKEND");
    bool sqlite = !be || strcmp(be, "postgres") != 0;
    const char *id = create("IDX-1", "Flumbrix Kettle", "Boils quietly.", "idx-test", 1500);
    char path[80];
    snprintf(path, sizeof path, "/api/v1/products/%s", id);
    /* wait (generously) until the index built at start answers */
    long before = 0;
    for (int i = 0; sqlite && i < 600 && (before = memory_matches()) == 0; i++) {
        assert_int_equal(hits("flumbrix"), 1);
        if (memory_matches() == 0)
            usleep(50 * 1000);
    }
    if (sqlite)
        assert_true(before > 0);
    assert_int_equal(hits("flumbrix"), 1);
    assert_int_equal(hits("flumbr"), 1);
    assert_int_equal(hits("kettle%20quiet"), 1); /* stemmed: quietly */
    struct th_resp r;
    assert_int_equal(th_call(&srv, "PATCH", path, admin, &r, "{\"name\":\"Gravlox Kettle\"}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(hits("flumbrix"), 0);
    assert_int_equal(hits("gravlox"), 1);
    assert_int_equal(hits("gravlox%20ket"), 1);
    assert_int_equal(th_call(&srv, "PATCH", path, admin, &r, "{\"description\":\"Whistles.\"}"), 0);
    th_resp_free(&r);
    assert_int_equal(hits("quietly"), 0);
    assert_int_equal(hits("whistl"), 1);
    assert_int_equal(th_call(&srv, "DELETE", path, admin, &r, NULL), 0);
    assert_int_equal(r.status, 204);
    th_resp_free(&r);
    assert_int_equal(hits("gravlox"), 0);
    if (sqlite)
        assert_true(memory_matches() >= before + 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_auth),
        cmocka_unit_test(test_crud_etag_no_stale),
        cmocka_unit_test(test_stock_and_hidden),
        cmocka_unit_test(test_relevance),
        cmocka_unit_test(test_filters_and_sorts),
        cmocka_unit_test(test_patch_keeps_currency),
        cmocka_unit_test(test_symbols_are_not_words),
        cmocka_unit_test(test_bad_list_input),
        cmocka_unit_test(test_pagination_1000),
        cmocka_unit_test(test_pagination_during_writes),
        cmocka_unit_test(test_q_utf8),
        cmocka_unit_test(test_search_sees_write_under_load),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_search_index_follows_writes),
        cmocka_unit_test(test_lists_l2_shared),
        cmocka_unit_test(test_lists_redis_down),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
