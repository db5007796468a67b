/* SPDX-License-Identifier: MIT */
/* test_web.c — what the storefront's HTTP answers promise a browser and a CDN, against the
 * real binary: HTML pages with no-cache, an ETag (304 on If-None-Match) and a strict
 * Content-Security-Policy plus the hardening headers; assets under content-hashed names,
 * immutable for a year, in brotli or gzip as Accept-Encoding allows (Vary, one ETag per
 * variant, 304); product pictures as deterministic SVG under the image_url a product carries.
 * (The browser journeys are tests/e2e, run by scripts/web-e2e.sh.) The harness does not ask
 * libcurl to decode, so bodies arrive exactly as sent. */
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
static char prod_id[32];

static int setup(void **state)
{
    if (th_suite_start(&srv, &admin) != 0)
        return -1;
    struct th_resp r;
    if (th_call(&srv, "POST", "/api/v1/products", admin, &r,
                "{\"sku\":\"WEB-1\",\"name\":\"Tom & Jerry <Mug>\",\"category\":\"kitchen\","
                "\"price\":{\"amount\":1999,\"currency\":\"USD\"},"
                "\"image_url\":\"/images/products/WEB-1.jpg\"}") != 0 ||
        r.status != 201)
        return -1;
    snprintf(prod_id, sizeof prod_id, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
    return 0;
}

static int teardown(void **state) { return th_suite_stop(&srv, admin); }

static void get(const char *path, const char *h1, const char *h2, struct th_resp *r)
{
    const char *h[3] = {h1, h1 ? h2 : NULL, NULL};
    assert_int_equal(th_req(&srv, "GET", path, NULL, h, r), 0);
}

static void expect_header(const struct th_resp *r, const char *name, const char *want)
{
    char v[1024];
    const char *got = th_header(r, name, v, sizeof v);
    if (!got)
        fail_msg("no %s header", name);
    if (!strstr(got, want))
        fail_msg("%s is \"%s\", expected it to contain \"%s\"", name, got, want);
}

static void expect_no_header(const struct th_resp *r, const char *name)
{
    char v[256];
    if (th_header(r, name, v, sizeof v))
        fail_msg("unexpected %s: %s", name, v);
}

/* The asset URL in html that starts with prefix ("/assets/shop.") and ends with ext. */
static void asset_url(const char *html, const char *prefix, const char *ext, char *out, size_t cap)
{
    size_t el = strlen(ext);
    for (const char *p = html; (p = strstr(p, prefix)); p++) {
        const char *q = strchr(p, '"');
        assert_non_null(q);
        size_t n = (size_t)(q - p);
        if (n <= el || n >= cap || memcmp(q - el, ext, el) != 0)
            continue;
        memcpy(out, p, n);
        out[n] = 0;
        /* a content hash between the stem and the extension: shop.<10 hex>.js */
        assert_int_equal(n, strlen(prefix) + 10 + el);
        return;
    }
    fail_msg("no %s…%s in the page", prefix, ext);
}

static void test_pages(void **state)
{
    struct th_resp r;
    get("/", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    expect_header(&r, "Content-Type", "text/html");
    expect_header(&r, "Cache-Control", "no-cache");
    expect_header(&r, "Content-Security-Policy", "default-src 'none'");
    expect_header(&r, "Content-Security-Policy", "script-src 'self';");
    expect_header(&r, "Content-Security-Policy", "frame-ancestors 'none'");
    char csp[1024];
    th_header(&r, "Content-Security-Policy", csp, sizeof csp);
    assert_null(strstr(csp, "unsafe-inline"));
    assert_null(strstr(csp, "unsafe-eval"));
    assert_null(strstr(csp, "http")); /* no other host */
    expect_header(&r, "X-Content-Type-Options", "nosniff");
    expect_header(&r, "X-Frame-Options", "DENY");
    expect_header(&r, "Referrer-Policy", "same-origin");
    expect_header(&r, "Vary", "Accept-Encoding");
    expect_no_header(&r, "Content-Encoding");
    assert_non_null(strstr(r.body, "<main id=\"main\""));
    assert_non_null(strstr(r.body, "role=\"search\""));
    /* no inline script: every <script> has a src */
    for (const char *p = r.body; (p = strstr(p, "<script")); p++)
        assert_true(!strncmp(p, "<script src=\"/assets/", 21));
    char etag[128];
    assert_non_null(th_header(&r, "ETag", etag, sizeof etag));
    th_resp_free(&r);

    char inm[160];
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    get("/", inm, NULL, &r);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.len, 0);
    th_resp_free(&r);

    /* every storefront path is the same document; the back office has its own */
    static const char *const shop[] = {"/search?q=mug", "/products/123", "/cart",   "/checkout",
                                       "/orders",       "/orders/42",    "/signin", "/signup"};
    for (size_t i = 0; i < sizeof shop / sizeof *shop; i++) {
        get(shop[i], NULL, NULL, &r);
        if (r.status != 200 || !strstr(r.body, "/assets/shop."))
            fail_msg("%s: %ld", shop[i], r.status);
        expect_header(&r, "Content-Security-Policy", "frame-ancestors 'none'");
        th_resp_free(&r);
    }
    static const char *const back[] = {"/admin", "/admin/", "/admin/products", "/admin/orders/7"};
    for (size_t i = 0; i < sizeof back / sizeof *back; i++) {
        get(back[i], NULL, NULL, &r);
        if (r.status != 200 || !strstr(r.body, "/assets/admin."))
            fail_msg("%s: %ld", back[i], r.status);
        expect_header(&r, "Cache-Control", "no-cache");
        th_resp_free(&r);
    }
    /* paths nobody serves stay the API's JSON 404; pages answer GET only */
    get("/nowhere/at/all", NULL, NULL, &r);
    assert_true(th_is_error(&r, 404, "not_found", NULL));
    th_resp_free(&r);
    assert_int_equal(th_req(&srv, "POST", "/", "{}", NULL, &r), 0);
    assert_int_equal(r.status, 405);
    th_resp_free(&r);
}

static void test_assets(void **state)
{
    struct th_resp r;
    get("/", NULL, NULL, &r);
    char js[128], css[128];
    asset_url(r.body, "/assets/shop.", ".js", js, sizeof js);
    asset_url(r.body, "/assets/shop.", ".css", css, sizeof css);
    th_resp_free(&r);

    /* identity */
    struct th_resp id;
    get(js, NULL, NULL, &id);
    assert_int_equal(id.status, 200);
    expect_header(&id, "Content-Type", "text/javascript");
    expect_header(&id, "Cache-Control", "public, max-age=31536000, immutable");
    expect_header(&id, "Vary", "Accept-Encoding");
    expect_header(&id, "X-Content-Type-Options", "nosniff");
    expect_no_header(&id, "Content-Encoding");
    assert_true(id.len > 1000);
    assert_memory_equal(id.body, "'use strict';", 13);
    char etag_id[128];
    assert_non_null(th_header(&id, "ETag", etag_id, sizeof etag_id));

    /* gzip */
    struct th_resp gz;
    get(js, "Accept-Encoding: gzip", NULL, &gz);
    assert_int_equal(gz.status, 200);
    expect_header(&gz, "Content-Encoding", "gzip");
    expect_header(&gz, "Cache-Control", "immutable");
    assert_true(gz.len > 10 && gz.len < id.len);
    assert_int_equal((unsigned char)gz.body[0], 0x1f);
    assert_int_equal((unsigned char)gz.body[1], 0x8b);
    char etag_gz[128];
    assert_non_null(th_header(&gz, "ETag", etag_gz, sizeof etag_gz));
    assert_string_not_equal(etag_gz, etag_id); /* one ETag per representation */

    /* brotli is preferred when accepted, and smaller still */
    struct th_resp br;
    get(js, "Accept-Encoding: gzip, deflate, br", NULL, &br);
    assert_int_equal(br.status, 200);
    expect_header(&br, "Content-Encoding", "br");
    assert_true(br.len > 10 && br.len < gz.len);
    char etag_br[128];
    assert_non_null(th_header(&br, "ETag", etag_br, sizeof etag_br));
    assert_string_not_equal(etag_br, etag_gz);

    /* q=0 refuses a coding; "*" accepts the best */
    get(js, "Accept-Encoding: br;q=0, gzip;q=0.5", NULL, &r);
    expect_header(&r, "Content-Encoding", "gzip");
    assert_int_equal(r.len, gz.len);
    th_resp_free(&r);
    get(js, "Accept-Encoding: br;q=0, gzip;q=0", NULL, &r);
    expect_no_header(&r, "Content-Encoding");
    assert_int_equal(r.len, id.len);
    th_resp_free(&r);
    get(js, "Accept-Encoding: *", NULL, &r);
    expect_header(&r, "Content-Encoding", "br");
    th_resp_free(&r);
    get(js, "Accept-Encoding: identity", NULL, &r);
    expect_no_header(&r, "Content-Encoding");
    th_resp_free(&r);

    /* revalidation: the variant's own ETag gives 304, another variant's does not */
    char inm[160];
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag_br);
    get(js, inm, "Accept-Encoding: br", &r);
    assert_int_equal(r.status, 304);
    assert_int_equal(r.len, 0);
    expect_header(&r, "ETag", etag_br);
    expect_header(&r, "Cache-Control", "immutable");
    th_resp_free(&r);
    snprintf(inm, sizeof inm, "If-None-Match: \"nope\", W/%s", etag_gz);
    get(js, inm, "Accept-Encoding: gzip", &r);
    assert_int_equal(r.status, 304); /* a list, and weak comparison */
    th_resp_free(&r);
    get(js, inm, NULL, &r);
    assert_int_equal(r.status, 200); /* identity's ETag differs */
    assert_int_equal(r.len, id.len);
    th_resp_free(&r);

    /* CSS too; an unknown or stale name is a 404 */
    get(css, "Accept-Encoding: br", NULL, &r);
    assert_int_equal(r.status, 200);
    expect_header(&r, "Content-Type", "text/css");
    expect_header(&r, "Content-Encoding", "br");
    th_resp_free(&r);
    get("/assets/shop.0000000000.js", NULL, NULL, &r);
    assert_true(th_is_error(&r, 404, "not_found", NULL));
    th_resp_free(&r);
    get("/assets/..%2Fmain.c", NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    th_resp_free(&r);

    /* HEAD: the headers without the body */
    assert_int_equal(th_req(&srv, "HEAD", js, NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    expect_header(&r, "Cache-Control", "immutable");
    th_resp_free(&r);

    th_resp_free(&id);
    th_resp_free(&gz);
    th_resp_free(&br);
}

static void test_product_images(void **state)
{
    /* the SKU path a product's image_url names */
    struct th_resp a, b, r;
    get("/images/products/WEB-1.jpg", NULL, NULL, &a);
    assert_int_equal(a.status, 200);
    expect_header(&a, "Content-Type", "image/svg+xml");
    expect_header(&a, "Content-Security-Policy", "default-src 'none'");
    expect_header(&a, "X-Content-Type-Options", "nosniff");
    expect_header(&a, "Cache-Control", "public");
    assert_memory_equal(a.body, "<svg ", 5);
    assert_non_null(strstr(a.body, "</svg>"));
    get("/images/products/WEB-1.jpg", NULL, NULL, &b);
    assert_int_equal(b.len, a.len);
    assert_memory_equal(a.body, b.body, a.len); /* deterministic */
    char etag[64], inm[100];
    assert_non_null(th_header(&a, "ETag", etag, sizeof etag));
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    get("/images/products/WEB-1.jpg", inm, NULL, &r);
    assert_int_equal(r.status, 304);
    th_resp_free(&r);
    /* another product, another picture */
    get("/images/products/WEB-2.jpg", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(r.len != a.len || memcmp(r.body, a.body, a.len) != 0);
    th_resp_free(&r);
    th_resp_free(&a);
    th_resp_free(&b);

    /* by id: drawn from the product's name (XML-escaped) and category */
    char path[96];
    snprintf(path, sizeof path, "/images/products/%s.svg", prod_id);
    get(path, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "Tom &amp; Jerry &lt;Mug&gt;"));
    assert_null(strstr(r.body, "<Mug>"));
    assert_non_null(strstr(r.body, ">kitchen</text>"));
    assert_non_null(strstr(r.body, ">TJ</text>"));
    th_resp_free(&r);
    get("/images/products/999999999.svg", NULL, NULL, &r);
    assert_true(th_is_error(&r, 404, "not_found", NULL));
    th_resp_free(&r);

    /* names that are not pictures */
    static const char *const bad[] = {"/images/products/WEB-1", "/images/products/WEB-1.exe",
                                      "/images/products/.jpg", "/images/products/a%22b.jpg",
                                      "/images/products/a<b.svg"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        get(bad[i], NULL, NULL, &r);
        if (r.status != 404)
            fail_msg("%s: %ld", bad[i], r.status);
        th_resp_free(&r);
    }
}

/* The demo catalog's image_urls lead to pictures (the issue: they led nowhere). */
static void test_demo_catalog_images(void **state)
{
    /* `emporium seed` writes the same image_urls as the demo catalog; a restart makes the
     * running server's search see the rows another process wrote. */
    assert_int_equal(th_cli(&srv, (const char *[]){"seed", "--products", "3", NULL}, NULL), 0);
    assert_int_equal(th_stop(&srv), 0);
    const char *env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};
    assert_int_equal(th_restart(&srv, env, NULL), 0);
    struct th_resp r;
    get("/api/v1/products?limit=10", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *items = json_object_get(r.json, "items");
    size_t i;
    json_t *p;
    int seen = 0;
    json_array_foreach (items, i, p) {
        const char *url = json_string_value(json_object_get(p, "image_url"));
        if (!url || strncmp(url, "/images/products/EMP-", 21) != 0)
            continue;
        struct th_resp img;
        get(url, NULL, NULL, &img);
        if (img.status != 200 || strncmp(img.body, "<svg ", 5) != 0)
            fail_msg("%s: %ld", url, img.status);
        th_resp_free(&img);
        seen++;
    }
    th_resp_free(&r);
    assert_int_equal(seen, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages),
        cmocka_unit_test(test_assets),
        cmocka_unit_test(test_product_images),
        cmocka_unit_test(test_demo_catalog_images),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
