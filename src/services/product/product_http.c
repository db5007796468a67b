/* SPDX-License-Identifier: MIT */
/* product_http.c — the catalog's routes: parse, call product.c / product_search.c, render.
 * The only file of the service that includes emporium/http.h; it holds no SQL. Reads are
 * ready "<etag>\n<json>" bytes from the domain (the L1 caches them), replied with their ETag
 * and 304 on If-None-Match. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/http.h"
#include "emporium/id.h"
#include "emporium/upstream.h"
#include "product_internal.h"

#define CC_PRODUCT "public, max-age=60"
#define CC_CATEGORIES "public, max-age=60"
#define CC_LIST "public, max-age=10"

/* True when the If-None-Match header value lists etag (or is "*"). */
static bool etag_matches(const char *header, const char *etag)
{
    if (!header)
        return false;
    size_t n = strlen(etag);
    for (const char *p = header; *p;) {
        while (*p == ' ' || *p == ',' || *p == '\t')
            p++;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (!strncmp(p, etag, n) && (p[n] == 0 || p[n] == ',' || p[n] == ' '))
            return true;
        while (*p && *p != ',')
            p++;
    }
    return false;
}

/* Replies with "<etag>\n<json>", honouring If-None-Match. */
static int reply_tagged(struct http_req *req, const char *data, size_t len, const char *cc)
{
    const char *nl = memchr(data, '\n', len);
    if (!nl || nl - data >= 24)
        return ERR_INTERNAL;
    char etag[24];
    memcpy(etag, data, (size_t)(nl - data));
    etag[nl - data] = 0;
    http_add_header(req, "ETag", etag);
    http_add_header(req, "Cache-Control", cc);
    if (etag_matches(http_header(req, "If-None-Match"), etag))
        return ERR_NOT_MODIFIED;
    size_t off = (size_t)(nl - data) + 1;
    return http_reply_raw(req, 200, "application/json", data + off, len - off, true);
}

static int parse_id_param(struct http_req *req, int64_t *id)
{
    if (id_parse(http_param(req, "id"), id) < 0)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such product");
    return 0;
}

/* ---- GET /products/{id}, GET /categories ---------------------------------------------- */

static int h_get(struct http_req *req)
{
    int64_t id;
    int rc = parse_id_param(req, &id);
    if (rc < 0)
        return rc;
    struct buf b = BUF_INIT(0);
    rc = product__get_bytes(http_app(req), id, &b);
    bool hidden = rc == 0 && b.len > 1 && b.p[0] != 'A';
    if (hidden && http_auth(req)->role != ROLE_ADMIN)
        rc = ERR_NOTFOUND; /* hidden products are visible to admins only */
    if (rc == ERR_NOTFOUND) {
        buf_free(&b);
        return http_fail(req, ERR_NOTFOUND, NULL, "no such product");
    }
    if (rc == 0)
        rc = reply_tagged(req, b.p + 1, b.len - 1, hidden ? "private, no-store" : CC_PRODUCT);
    buf_free(&b);
    return rc;
}

static int h_categories(struct http_req *req)
{
    struct buf b = BUF_INIT(0);
    int rc = product__categories_bytes(http_app(req), &b);
    if (rc == 0)
        rc = reply_tagged(req, b.p, b.len, CC_CATEGORIES);
    buf_free(&b);
    return rc;
}

/* ---- GET /products: list and search --------------------------------------------------- */

static int parse_money_param(struct http_req *req, const char *name, int64_t *out)
{
    const char *v = http_query(req, name);
    *out = -1;
    if (!v)
        return 0;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || errno || n < 0 || n > PRODUCT_PRICE_MAX || !isdigit((unsigned char)v[0]))
        return http_fail(req, ERR_INVALID, name, "must be a whole number of minor units, 0 to %lld",
                         PRODUCT_PRICE_MAX);
    *out = n;
    return 0;
}

static int parse_query(struct http_req *req, struct product_query *o)
{
    memset(o, 0, sizeof *o);
    const char *q = http_query(req, "q");
    if (q && strlen(q) > PRODUCT_Q_MAX)
        return http_fail(req, ERR_INVALID, "q", "at most %d characters", PRODUCT_Q_MAX);
    if (product__query_words(o, q) < 0)
        return http_fail(req, ERR_INVALID, "q", "must be UTF-8 text");
    const char *cat = http_query(req, "category");
    if (cat && *cat) {
        if (!product__slug_ok(cat))
            return http_fail(req, ERR_INVALID, "category", "is not a category slug");
        snprintf(o->category, sizeof o->category, "%s", cat);
    }
    int rc;
    if ((rc = parse_money_param(req, "min_price", &o->min_price)) < 0)
        return rc;
    if ((rc = parse_money_param(req, "max_price", &o->max_price)) < 0)
        return rc;
    if (o->min_price >= 0 && o->max_price >= 0 && o->max_price < o->min_price)
        return http_fail(req, ERR_INVALID, "max_price", "must not be below min_price");
    const char *st = http_query(req, "in_stock");
    if (st) {
        if (!strcmp(st, "true") || !strcmp(st, "1"))
            o->in_stock = true;
        else if (strcmp(st, "false") && strcmp(st, "0"))
            return http_fail(req, ERR_INVALID, "in_stock", "must be true or false");
    }
    const char *sort = http_query(req, "sort");
    if (!sort || !*sort || !strcmp(sort, "relevance")) /* empty q: newest first */
        o->sort = o->nwords ? PRODUCT_SORT_RELEVANCE : PRODUCT_SORT_NEWEST;
    else if (!strcmp(sort, "newest"))
        o->sort = PRODUCT_SORT_NEWEST;
    else if (!strcmp(sort, "price_asc"))
        o->sort = PRODUCT_SORT_PRICE_ASC;
    else if (!strcmp(sort, "price_desc"))
        o->sort = PRODUCT_SORT_PRICE_DESC;
    else
        return http_fail(req, ERR_INVALID, "sort",
                         "must be relevance, price_asc, price_desc or newest");
    if ((rc = http_query_limit(req, 20, 100, &o->limit)) < 0)
        return rc;
    const char *cur = http_query(req, "cursor");
    if (cur && product__query_cursor(o, cur) < 0)
        return http_fail(req, ERR_INVALID, "cursor", "is not a cursor from this listing");
    return 0;
}

static int h_list(struct http_req *req)
{
    struct product_query q;
    int rc = parse_query(req, &q);
    if (rc < 0)
        return rc;
    struct buf b = BUF_INIT(0);
    rc = product__search(http_app(req), &q, &b);
    if (rc == 0)
        rc = reply_tagged(req, b.p, b.len, CC_LIST);
    buf_free(&b);
    return rc;
}

/* ---- writes --------------------------------------------------------------------------- */

static int read_input(struct http_req *req, json_t *body, bool create, struct product_input *in)
{
    static const char *const allowed[] = {"sku",           "name",   "description", "category",
                                          "category_name", "price",  "image_url",   "attributes",
                                          "weight_grams",  "active", NULL};
    memset(in, 0, sizeof *in);
    in->active = -1;
    int rc = http_json_only(req, body, allowed);
    if (rc < 0)
        return rc;
    if ((rc = http_json_string(req, body, "sku", create, 1, PRODUCT_SKU_MAX, &in->sku)) < 0)
        return rc;
    if (in->sku && !product__sku_ok(in->sku))
        return http_fail(req, ERR_INVALID, "sku", "letters, digits, '-', '_' and '.' only");
    if ((rc = http_json_string(req, body, "name", create, 1, PRODUCT_NAME_MAX, &in->name)) < 0)
        return rc;
    if ((rc = http_json_string(req, body, "description", false, 0, PRODUCT_DESC_MAX,
                               &in->description)) < 0)
        return rc;
    if ((rc = http_json_string(req, body, "category", create, 1, PRODUCT_SLUG_MAX, &in->category)) <
        0)
        return rc;
    if (in->category && !product__slug_ok(in->category))
        return http_fail(req, ERR_INVALID, "category",
                         "a slug: lower-case letters, digits and inner '-'");
    if ((rc = http_json_string(req, body, "category_name", false, 1, PRODUCT_CATNAME_MAX,
                               &in->category_name)) < 0)
        return rc;
    if ((rc = http_json_string(req, body, "image_url", false, 0, PRODUCT_URL_MAX, &in->image_url)) <
        0)
        return rc;
    if (in->image_url && in->image_url[0] && strncmp(in->image_url, "https://", 8) &&
        strncmp(in->image_url, "http://", 7) && in->image_url[0] != '/')
        return http_fail(req, ERR_INVALID, "image_url", "must be an http(s) URL or a path");
    json_t *price = json_object_get(body, "price");
    if (price && !json_is_null(price)) {
        if (!json_is_object(price))
            return http_fail(req, ERR_INVALID, "price",
                             "must be {\"amount\": <minor units>, \"currency\": \"USD\"}");
        static const char *const pallowed[] = {"amount", "currency", NULL};
        if ((rc = http_json_only(req, price, pallowed)) < 0)
            return rc;
        json_t *amount = json_object_get(price, "amount");
        if (!json_is_integer(amount) || json_integer_value(amount) < 0 ||
            json_integer_value(amount) > PRODUCT_PRICE_MAX)
            return http_fail(req, ERR_INVALID, "price.amount",
                             "must be an integer number of minor units, 0 to %lld",
                             PRODUCT_PRICE_MAX);
        in->price = json_integer_value(amount);
        in->has_price = true;
        /* Without a currency, a create is in USD and an update keeps the product's
         * currency: {"price":{"amount":1200}} changes the amount only. */
        json_t *cur = json_object_get(price, "currency");
        in->currency = create ? "USD" : NULL;
        if (cur) {
            const char *s = json_string_value(cur);
            if (!s || strlen(s) != 3 || !isupper((unsigned char)s[0]) ||
                !isupper((unsigned char)s[1]) || !isupper((unsigned char)s[2]))
                return http_fail(req, ERR_INVALID, "price.currency",
                                 "must be an ISO 4217 code like \"USD\"");
            in->currency = s;
        }
    } else if (create) {
        return http_fail(req, ERR_INVALID, "price", "is required");
    }
    if ((rc = http_json_int(req, body, "weight_grams", false, 0, 1000000000, &in->weight)) < 0)
        return rc;
    in->has_weight = json_object_get(body, "weight_grams") &&
                     !json_is_null(json_object_get(body, "weight_grams"));
    json_t *active = json_object_get(body, "active");
    if (active && !json_is_null(active)) {
        if (!json_is_boolean(active))
            return http_fail(req, ERR_INVALID, "active", "must be true or false");
        in->active = json_is_true(active);
    }
    json_t *attrs = json_object_get(body, "attributes");
    if (attrs && !json_is_null(attrs)) {
        if (!json_is_object(attrs))
            return http_fail(req, ERR_INVALID, "attributes", "must be a JSON object");
        in->attributes = json_dumps(attrs, JSON_COMPACT | JSON_SORT_KEYS);
        if (!in->attributes)
            return ERR_NOMEM;
        if (strlen(in->attributes) > PRODUCT_ATTRS_MAX)
            return http_fail(req, ERR_INVALID, "attributes", "at most %d bytes of JSON",
                             PRODUCT_ATTRS_MAX);
    }
    if (!create && json_object_size(body) == 0)
        return http_fail(req, ERR_INVALID, "body", "nothing to update");
    return 0;
}

/* The written product, with its ETag; never cached by clients. */
static int reply_written(struct http_req *req, int status, struct buf *json)
{
    char etag[24];
    product__etag(json->p, json->len, etag);
    http_add_header(req, "ETag", etag);
    http_add_header(req, "Cache-Control", "no-store");
    return http_reply_raw(req, status, "application/json", json->p, json->len, true);
}

static int sku_conflict(struct http_req *req, const char *sku)
{
    return http_fail_code(req, ERR_CONFLICT, "sku_taken", json_pack("{s:s}", "field", "sku"),
                          "a product with SKU %s already exists", sku);
}

/* POST /products (create) and PATCH /products/{id}. */
static int write_product(struct http_req *req, bool create)
{
    int64_t id = 0;
    int rc = create ? 0 : parse_id_param(req, &id);
    if (rc < 0)
        return rc;
    json_t *body = http_json_body(req, &rc);
    if (!body)
        return rc;
    struct product_input in;
    struct buf json = BUF_INIT(0);
    int64_t admin = http_auth(req)->user_id;
    if ((rc = read_input(req, body, create, &in)) == 0) {
        rc = create ? product__create(http_app(req), admin, &in, &id, &json)
                    : product__update(http_app(req), admin, id, &in, &json);
        if (rc == ERR_CONFLICT)
            rc = sku_conflict(req, in.sku ? in.sku : "");
        else if (rc == ERR_NOTFOUND)
            rc = http_fail(req, ERR_NOTFOUND, NULL, "no such product");
    }
    if (rc == 0 && create) {
        char loc[64], ids[21];
        snprintf(loc, sizeof loc, "/api/v1/products/%s", id_format(id, ids));
        http_add_header(req, "Location", loc);
    }
    if (rc == 0)
        rc = reply_written(req, create ? 201 : 200, &json);
    product__input_free(&in);
    buf_free(&json);
    return rc;
}

static int h_create(struct http_req *req) { return write_product(req, true); }

static int h_update(struct http_req *req) { return write_product(req, false); }

static int h_delete(struct http_req *req)
{
    int64_t id;
    int rc = parse_id_param(req, &id);
    if (rc < 0)
        return rc;
    rc = product__delete(http_app(req), http_auth(req)->user_id, id);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such product");
    if (rc < 0)
        return rc;
    return http_reply_raw(req, 204, NULL, "", 0, false);
}

/* ---- internal route: product_get_info for other processes (product_remote.c) ---- */

static int h_int_info(struct http_req *req)
{
    int rc = http_internal_guard(req);
    if (rc < 0)
        return rc;
    const char *s = http_param(req, "id");
    int64_t id;
    if (!s || id_parse(s, &id) < 0 || id <= 0)
        return http_fail(req, ERR_INVALID, "id", "must be a product id");
    struct product_info p;
    rc = product_get_info(http_app(req), id, &p);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, rc, "id", "no such product");
    if (rc < 0)
        return rc;
    char pid[21];
    return http_reply_json(
        req, 200,
        json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:i,s:b}", "id", id_format(p.id, pid), "sku", p.sku,
                  "name", p.name, "category", p.category, "price", (json_int_t)p.price, "currency",
                  p.currency, "weight_grams", p.weight_grams, "active", p.active));
}

static const struct http_route routes[] = {
    {"GET", "/api/v1/products", h_list, 0},
    {"GET", "/api/v1/products/{id}", h_get, 0},
    {"POST", "/api/v1/products", h_create, ROUTE_ADMIN},
    {"PATCH", "/api/v1/products/{id}", h_update, ROUTE_ADMIN},
    {"DELETE", "/api/v1/products/{id}", h_delete, ROUTE_ADMIN},
    {"GET", "/api/v1/categories", h_categories, 0},
    {"GET", "/internal/v1/product/products/{id}", h_int_info, ROUTE_NOLIMIT},
    {NULL, NULL, NULL, 0},
};

const struct service service_product = {
    .name = "product",
    .routes = routes,
    .dbs = product__dbs,
    .init = product__init,
    .deinit = product__deinit,
    .command = "seed",
    .run_command = product__seed_command,
    .command_help = "generate a demo catalog: seed --products N [--categories M] [--seed S]",
    .cli = &product__seed_cli,
    .on_serve = product__on_serve,
};
