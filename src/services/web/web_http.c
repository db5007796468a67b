/* SPDX-License-Identifier: MIT */
/* web_http.c — the storefront (/) and the back office (/admin/): pages, assets, security headers.
 *
 * Both are single pages that draw themselves with the public JSON API (/api/v1/…), so this
 * service owns no database and no business logic. Every page path (/, /search,
 * /products/{id}, /admin/orders/{id}, …) answers with the same HTML document of its side;
 * the script reads location.pathname. The documents and their assets are compiled in
 * (scripts/web-build.sh → build/gen/web_assets.c):
 *   - assets have content-hashed names, so they are `public, max-age=31536000, immutable`;
 *   - HTML is `no-cache` (revalidated each time), so a new build is picked up at once;
 *   - both carry an ETag per representation and answer If-None-Match with 304;
 *   - the brotli or gzip variant made at build time is chosen by Accept-Encoding, with
 *     `Vary: Accept-Encoding` so a CDN keeps them apart.
 * Pages carry a strict Content-Security-Policy (scripts and styles from this origin only, no
 * inline script, no other host) and the usual hardening headers.
 *
 * Product pictures: the demo catalog's image_url is /images/products/<SKU>.jpg; a product
 * created in the back office gets /images/products/<id>.svg. Both are answered with an SVG
 * (the extension is only a name: the Content-Type says what it is). With an id the picture is
 * drawn from the product's name and category (svc/product.h); that client interface has no
 * lookup by SKU, so a SKU's picture is drawn from the SKU alone. The ETag is a hash of the
 * bytes, and the image carries its own CSP so opening it directly can run nothing. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/http.h"
#include "emporium/id.h"
#include "emporium/service.h"
#include "emporium/svc/product.h"
#include "web_internal.h"

#define WEB_CSP                                                                                    \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "                    \
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; "               \
    "frame-ancestors 'none'"

static void security_headers(struct http_req *req, bool html)
{
    http_add_header(req, "X-Content-Type-Options", "nosniff");
    if (html) {
        http_add_header(req, "Content-Security-Policy", WEB_CSP);
        http_add_header(req, "X-Frame-Options", "DENY");
        http_add_header(req, "Referrer-Policy", "same-origin");
        http_add_header(req, "Permissions-Policy",
                        "camera=(), microphone=(), geolocation=(), payment=()");
        http_add_header(req, "Cross-Origin-Opener-Policy", "same-origin");
    } else {
        http_add_header(req, "Cross-Origin-Resource-Policy", "same-origin");
    }
}

/* q-value of `coding` in an Accept-Encoding list: -1 when not listed (nor "*"). */
static double coding_q(const char *list, const char *coding)
{
    double star = -1, q_found = -1;
    size_t clen = strlen(coding);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *tok = p;
        while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        size_t tlen = (size_t)(p - tok);
        double q = 1.0;
        /* parameters up to the next comma; only q matters */
        while (*p && *p != ',') {
            if ((*p == 'q' || *p == 'Q') && p[1] == '=') {
                q = 0;
                const char *v = p + 2;
                if (*v == '1')
                    q = 1.0;
                else if (*v == '0' && v[1] == '.') {
                    double scale = 0.1;
                    for (v += 2; *v >= '0' && *v <= '9' && scale > 0.0001; v++, scale /= 10)
                        q += (*v - '0') * scale;
                }
                p = v;
                continue;
            }
            p++;
        }
        if (tlen == clen && strncasecmp(tok, coding, clen) == 0)
            q_found = q;
        else if (tlen == 1 && tok[0] == '*')
            star = q;
    }
    return q_found >= 0 ? q_found : star;
}

enum web_encoding web__pick_encoding(const struct web_asset *a, const char *ae)
{
    if (!ae)
        return WEB_IDENTITY;
    if (a->br && coding_q(ae, "br") > 0)
        return WEB_BR;
    if (a->gz && (coding_q(ae, "gzip") > 0 || coding_q(ae, "x-gzip") > 0))
        return WEB_GZIP;
    return WEB_IDENTITY;
}

bool web__etag_matches(const char *inm, const char *etag)
{
    if (!inm)
        return false;
    size_t elen = strlen(etag);
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *tok = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        size_t tlen = (size_t)(p - tok);
        if (tlen == elen && memcmp(tok, etag, elen) == 0)
            return true;
    }
    return false;
}

static const struct web_asset *asset_find(const char *url)
{
    for (const struct web_asset *a = web_assets; a->url; a++)
        if (!strcmp(a->url, url))
            return a;
    return NULL;
}

static int send_asset(struct http_req *req, const struct web_asset *a)
{
    enum web_encoding enc = web__pick_encoding(a, http_header(req, "Accept-Encoding"));
    static const char *const suffix[] = {"", "-gz", "-br"};
    char etag[64];
    snprintf(etag, sizeof etag, "\"%s%s\"", a->etag, suffix[enc]);
    bool html = !a->immutable;
    http_add_header(req, "Cache-Control",
                    html ? "no-cache" : "public, max-age=31536000, immutable");
    http_add_header(req, "ETag", etag);
    http_add_header(req, "Vary", "Accept-Encoding");
    security_headers(req, html);
    if (web__etag_matches(http_header(req, "If-None-Match"), etag))
        return http_reply_raw(req, 304, NULL, "", 0, false);
    const unsigned char *data = a->raw;
    size_t len = a->raw_len;
    if (enc == WEB_BR)
        data = a->br, len = a->br_len, http_add_header(req, "Content-Encoding", "br");
    else if (enc == WEB_GZIP)
        data = a->gz, len = a->gz_len, http_add_header(req, "Content-Encoding", "gzip");
    return http_reply_raw(req, 200, a->type, (const char *)data, len, false);
}

static int h_shop_page(struct http_req *req) { return send_asset(req, asset_find("/")); }
static int h_admin_page(struct http_req *req) { return send_asset(req, asset_find("/admin/")); }

static int h_asset(struct http_req *req)
{
    char url[160];
    snprintf(url, sizeof url, "/assets/%s", http_param(req, "file"));
    const struct web_asset *a = asset_find(url);
    if (!a)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such asset");
    return send_asset(req, a);
}

/* GET /images/products/{file} */
static int h_image(struct http_req *req)
{
    const char *file = http_param(req, "file");
    const char *dot = strrchr(file, '.');
    if (!dot || (strcmp(dot, ".jpg") && strcmp(dot, ".svg") && strcmp(dot, ".png")))
        return http_fail(req, ERR_NOTFOUND, NULL, "no such image");
    char key[80];
    size_t klen = (size_t)(dot - file);
    if (klen == 0 || klen >= sizeof key)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such image");
    for (size_t i = 0; i < klen; i++) {
        char c = file[i];
        if (!(isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.'))
            return http_fail(req, ERR_NOTFOUND, NULL, "no such image");
    }
    memcpy(key, file, klen);
    key[klen] = 0;

    struct app *app = http_app(req);
    struct product_info info;
    const char *name = "", *category = "";
    int64_t id;
    bool all_digits = strspn(key, "0123456789") == klen;
    if (all_digits) {
        /* by id: the product must exist (hidden ones keep their picture for the back office) */
        if (!app_has_service(app, "product") || id_parse(key, &id) < 0)
            return http_fail(req, ERR_NOTFOUND, NULL, "no such image");
        int rc = product_get_info(app, id, &info);
        if (rc == ERR_NOTFOUND)
            return http_fail(req, ERR_NOTFOUND, NULL, "no such product");
        if (rc < 0)
            return rc;
        name = info.name;
        category = info.category;
    }
    char svg[8192];
    size_t len = web__product_svg(svg, sizeof svg, key, name, category);
    if (len == 0)
        return ERR_INTERNAL;
    char etag[32];
    snprintf(etag, sizeof etag, "\"i%016llx\"", (unsigned long long)web__hash(svg));
    /* Names can change (by id), so an hour, then revalidate with the ETag. */
    http_add_header(req, "Cache-Control", "public, max-age=3600");
    http_add_header(req, "ETag", etag);
    http_add_header(req, "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'");
    security_headers(req, false);
    if (web__etag_matches(http_header(req, "If-None-Match"), etag))
        return http_reply_raw(req, 304, NULL, "", 0, false);
    return http_reply_raw(req, 200, "image/svg+xml", svg, len, true);
}

/* Page routes answer GET (and HEAD) with the side's document; the browser-side router
 * reads the path (and its own query parameters; others are ignored). No rate limit: these
 * are static bytes, cheaper than the limiter. */
#define PAGE(path, fn)                                                                             \
    {                                                                                              \
        "GET", path, fn, ROUTE_NOLIMIT | ROUTE_PAGE                                                \
    }
static const struct http_route web_routes[] = {
    PAGE("/", h_shop_page),
    PAGE("/search", h_shop_page),
    PAGE("/products/{id}", h_shop_page),
    PAGE("/cart", h_shop_page),
    PAGE("/checkout", h_shop_page),
    PAGE("/orders", h_shop_page),
    PAGE("/orders/{id}", h_shop_page),
    PAGE("/signin", h_shop_page),
    PAGE("/signup", h_shop_page),
    PAGE("/admin", h_admin_page),
    PAGE("/admin/{page}", h_admin_page),
    PAGE("/admin/{page}/{id}", h_admin_page),
    {"GET", "/assets/{file}", h_asset, ROUTE_NOLIMIT},
    {"GET", "/images/products/{file}", h_image, 0},
    {NULL, NULL, NULL, 0},
};

const struct service service_web = {
    .name = "web",
    .routes = web_routes,
};
