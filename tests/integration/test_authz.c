/* SPDX-License-Identifier: MIT */
/* test_authz.c — the authorization matrix: every route of every service × {anonymous,
 * customer, another customer, premium customer, admin}, against the real server.
 *
 * The routes come from the route tables themselves (http_routes_foreach over services_all[]
 * and the operational routes): a route that is not in the table below fails the test, so a
 * new endpoint cannot ship without someone writing down who may call it. The table is
 * checked against each route's flags too (ROUTE_AUTH: anonymous gets 401; ROUTE_ADMIN:
 * anonymous 401 and every non-admin 403; no flag: anonymous is not refused), and then every
 * cell is one real request whose status must be the one written down. Owner-specific
 * resources (orders) are the customer's: the other customer and the premium customer get
 * 404 for them, as if they did not exist; the admin may read and cancel them.
 *
 * Requests run role by role in the order anonymous, other, premium, customer, admin, so the
 * owner's state-changing calls (cancel) come after the others were refused, and logout is
 * checked last (it ends each role's session). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "emporium/http.h"
#include "emporium/server.h"
#include "harness.h"

enum { ANON, CUSTOMER, OTHER, PREMIUM, ADMIN, N_ROLES };
static const char *const role_names[N_ROLES] = {"anonymous", "customer", "other customer",
                                                "premium", "admin"};
/* The order in which roles call a route (see the file comment). */
static const int role_order[N_ROLES] = {ANON, OTHER, PREMIUM, CUSTOMER, ADMIN};

/* One route: the request made for it and the status each role must get.
 * Placeholders in path and body: {order} the customer's order (read), {cancel} an order of
 * the customer that the calling role may cancel (one for the customer, another for the
 * admin), {shipment} the shipment of a third order of the customer, {product} a product,
 * {victim} a product only the admin's DELETE removes, {n} a number unique per request,
 * {email} the customer's email, {asset} the first /assets/ URL the storefront page names. */
struct authz_case {
    const char *method, *pattern;
    const char *path, *body;
    int expect[N_ROLES]; /* anonymous, customer, other, premium, admin */
};

#define CUSTOMER_EMAIL "authz-customer@example.com"
#define PASSWORD "authz password 1"

static const struct authz_case cases[] = {
    /* operations: open to everyone */
    {"GET", "/health", "/health", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/ready", "/ready", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/metrics", "/metrics", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/openapi.json", "/openapi.json", NULL, {200, 200, 200, 200, 200}},
    /* identity */
    {"POST",
     "/api/v1/auth/register",
     "/api/v1/auth/register",
     "{\"email\":\"authz-new-{n}@example.com\",\"password\":\"" PASSWORD "\",\"name\":\"N\"}",
     {201, 201, 201, 201, 201}},
    {"POST",
     "/api/v1/auth/login",
     "/api/v1/auth/login",
     "{\"email\":\"" CUSTOMER_EMAIL "\",\"password\":\"" PASSWORD "\"}",
     {200, 200, 200, 200, 200}},
    {"POST", "/api/v1/auth/logout", "/api/v1/auth/logout", NULL, {401, 204, 204, 204, 204}},
    {"GET", "/api/v1/users/me", "/api/v1/users/me", NULL, {401, 200, 200, 200, 200}},
    /* catalog: reads for everyone, writes for admins */
    {"GET", "/api/v1/products", "/api/v1/products", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/api/v1/products/{id}", "/api/v1/products/{product}", NULL, {200, 200, 200, 200, 200}},
    {"POST",
     "/api/v1/products",
     "/api/v1/products",
     "{\"sku\":\"AUTHZ-{n}\",\"name\":\"Authz lamp\",\"category\":\"authz\","
     "\"price\":{\"amount\":100,\"currency\":\"USD\"}}",
     {401, 403, 403, 403, 201}},
    {"PATCH",
     "/api/v1/products/{id}",
     "/api/v1/products/{product}",
     "{\"name\":\"Renamed\"}",
     {401, 403, 403, 403, 200}},
    {"DELETE",
     "/api/v1/products/{id}",
     "/api/v1/products/{victim}",
     NULL,
     {401, 403, 403, 403, 204}},
    {"GET", "/api/v1/categories", "/api/v1/categories", NULL, {200, 200, 200, 200, 200}},
    {"GET",
     "/api/v1/products/{id}/recommendations",
     "/api/v1/products/{product}/recommendations",
     NULL,
     {200, 200, 200, 200, 200}},
    /* carts: everyone has their own (guests by cart token); no cart is addressed by id */
    {"GET", "/api/v1/cart", "/api/v1/cart", NULL, {200, 200, 200, 200, 200}},
    {"POST",
     "/api/v1/cart/items",
     "/api/v1/cart/items",
     "{\"product_id\":\"{product}\",\"quantity\":1}",
     {200, 200, 200, 200, 200}},
    /* a guest without a cart token starts with an empty cart: the line is not there */
    {"PATCH",
     "/api/v1/cart/items/{product_id}",
     "/api/v1/cart/items/{product}",
     "{\"quantity\":2}",
     {404, 200, 200, 200, 200}},
    {"DELETE",
     "/api/v1/cart/items/{product_id}",
     "/api/v1/cart/items/{product}",
     NULL,
     {200, 200, 200, 200, 200}},
    /* inventory: admins only */
    {"GET",
     "/api/v1/inventory/{product_id}",
     "/api/v1/inventory/{product}",
     NULL,
     {401, 403, 403, 403, 200}},
    {"PUT",
     "/api/v1/inventory/{product_id}",
     "/api/v1/inventory/{product}",
     "{\"available\":500}",
     {401, 403, 403, 403, 200}},
    /* orders: a caller's own; another customer's order does not exist for them */
    {"POST",
     "/api/v1/orders",
     "/api/v1/orders",
     "{\"shipping_address\":{\"name\":\"A\",\"line1\":\"1 Main St\",\"city\":\"Springfield\","
     "\"postal_code\":\"12345\",\"country\":\"US\"},\"payment\":{\"card_number\":"
     "\"4242424242424242\",\"exp_month\":12,\"exp_year\":2035,\"cvc\":\"123\"},"
     "\"shipping_method\":\"standard\"}",
     {401, 201, 201, 201, 201}},
    {"GET", "/api/v1/orders", "/api/v1/orders", NULL, {401, 200, 200, 200, 200}},
    {"GET", "/api/v1/orders/{id}", "/api/v1/orders/{order}", NULL, {401, 200, 404, 404, 200}},
    {"POST",
     "/api/v1/orders/{id}/cancel",
     "/api/v1/orders/{cancel}/cancel",
     NULL,
     {401, 200, 404, 404, 200}},
    {"GET", "/api/v1/admin/orders", "/api/v1/admin/orders", NULL, {401, 403, 403, 403, 200}},
    {"GET",
     "/api/v1/admin/orders/{id}/events",
     "/api/v1/admin/orders/{order}/events",
     NULL,
     {401, 403, 403, 403, 200}},
    /* fraud review: admins only; {order} is paid, not held, so the admin gets 409 */
    {"POST",
     "/api/v1/admin/orders/{id}/approve",
     "/api/v1/admin/orders/{order}/approve",
     NULL,
     {401, 403, 403, 403, 409}},
    {"POST",
     "/api/v1/admin/orders/{id}/reject",
     "/api/v1/admin/orders/{order}/reject",
     NULL,
     {401, 403, 403, 403, 409}},
    {"GET",
     "/api/v1/admin/fraud/assessments/{id}",
     "/api/v1/admin/fraud/assessments/{order}",
     NULL,
     {401, 403, 403, 403, 200}},
    {"GET",
     "/api/v1/admin/payments",
     "/api/v1/admin/payments?order_id={order}",
     NULL,
     {401, 403, 403, 403, 200}},
    {"GET",
     "/api/v1/admin/analytics/sales",
     "/api/v1/admin/analytics/sales",
     NULL,
     {401, 403, 403, 403, 200}},
    {"GET", "/api/v1/admin/flags", "/api/v1/admin/flags", NULL, {401, 403, 403, 403, 200}},
/* internal routes between services (docs/topology.md): authenticated by the shared
     * X-Internal-Token, not by a user's bearer token, so no role gets past them (401: no
     * X-Internal-Token header); the gateway does not route /internal/ at all */
#define INTERNAL(m, p, path)                                                                       \
    {                                                                                              \
        m, p, path, (m)[0] == 'P' ? "{}" : NULL, { 401, 401, 401, 401, 401 }                       \
    }
    INTERNAL("POST", "/internal/v1/inventory/reservations", "/internal/v1/inventory/reservations"),
    INTERNAL("POST", "/internal/v1/inventory/reservations/{id}/confirm",
             "/internal/v1/inventory/reservations/1/confirm"),
    INTERNAL("POST", "/internal/v1/inventory/reservations/{id}/release",
             "/internal/v1/inventory/reservations/1/release"),
    INTERNAL("GET", "/internal/v1/inventory/levels/{product_id}",
             "/internal/v1/inventory/levels/1"),
    INTERNAL("POST", "/internal/v1/payment/authorizations", "/internal/v1/payment/authorizations"),
    INTERNAL("POST", "/internal/v1/payment/orders/{order_id}/capture",
             "/internal/v1/payment/orders/1/capture"),
    INTERNAL("POST", "/internal/v1/payment/orders/{order_id}/cancel",
             "/internal/v1/payment/orders/1/cancel"),
    INTERNAL("GET", "/internal/v1/payment/orders/{order_id}", "/internal/v1/payment/orders/1"),
    INTERNAL("GET", "/internal/v1/product/products/{id}", "/internal/v1/product/products/1"),
    INTERNAL("POST", "/internal/v1/user/sessions/verify", "/internal/v1/user/sessions/verify"),
    INTERNAL("POST", "/internal/v1/shipping/quotes", "/internal/v1/shipping/quotes"),
    INTERNAL("POST", "/internal/v1/shipping/shipments", "/internal/v1/shipping/shipments"),
    INTERNAL("GET", "/internal/v1/shipping/shipments/{order_id}",
             "/internal/v1/shipping/shipments/1"),
    INTERNAL("POST", "/internal/v1/shipping/shipments/{order_id}/cancel",
             "/internal/v1/shipping/shipments/1/cancel"),
#undef INTERNAL
    /* shipping: quotes for anyone, carrier events for admins */
    {"POST",
     "/api/v1/shipping/quotes",
     "/api/v1/shipping/quotes",
     "{\"items\":[{\"product_id\":\"{product}\",\"quantity\":1}],\"address\":{\"name\":\"A\","
     "\"line1\":\"1 Main St\",\"city\":\"Springfield\",\"postal_code\":\"12345\","
     "\"country\":\"US\"}}",
     {200, 200, 200, 200, 200}},
    {"POST",
     "/api/v1/shipments/{id}/events",
     "/api/v1/shipments/{shipment}/events",
     "{\"status\":\"in_transit\"}",
     {401, 403, 403, 403, 200}},
    /* the storefront and back-office pages: static documents for everyone (the pages call
     * the API, which is where the rules above apply) */
    {"GET", "/", "/", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/search", "/search?q=lamp", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/products/{id}", "/products/{product}", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/cart", "/cart", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/checkout", "/checkout", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/orders", "/orders", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/orders/{id}", "/orders/{order}", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/signin", "/signin", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/signup", "/signup", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/admin", "/admin", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/admin/{page}", "/admin/orders", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/admin/{page}/{id}", "/admin/orders/{order}", NULL, {200, 200, 200, 200, 200}},
    {"GET", "/assets/{file}", "{asset}", NULL, {200, 200, 200, 200, 200}},
    {"GET",
     "/images/products/{file}",
     "/images/products/{product}.svg",
     NULL,
     {200, 200, 200, 200, 200}},
};
#define N_CASES (sizeof cases / sizeof cases[0])

static struct th_server srv;
static char *admin;
static char *tokens[N_ROLES];
static char product[32], victim[32], order[32], cancel_customer[32], cancel_admin[32], shipment[32],
    asset[128];
static unsigned counter;

/* ---- the route tables ------------------------------------------------------------------ */

struct seen {
    int n;
    struct {
        const char *service;
        struct http_route r;
    } routes[256];
};

static void collect(const char *service, const struct http_route *r, void *ctx)
{
    struct seen *s = ctx;
    if (s->n < 256) {
        s->routes[s->n].service = service;
        s->routes[s->n].r = *r;
        s->n++;
    }
}

static const struct authz_case *find_case(const char *method, const char *pattern)
{
    for (size_t i = 0; i < N_CASES; i++)
        if (!strcmp(cases[i].method, method) && !strcmp(cases[i].pattern, pattern))
            return &cases[i];
    return NULL;
}

/* Every route is in the table, every table row is a route, and the table agrees with the
 * flags the router enforces. */
static void test_table_covers_every_route(void **state)
{
    struct seen s = {0};
    http_routes_foreach(collect, &s);
    assert_true(s.n > 20 && s.n < 256);
    int missing = 0, wrong = 0;
    for (int i = 0; i < s.n; i++) {
        const struct http_route *r = &s.routes[i].r;
        const struct authz_case *c = find_case(r->method, r->pattern);
        if (!c) {
            fprintf(stderr,
                    "route %s %s (service %s) is not in the authorization matrix of "
                    "tests/integration/test_authz.c: add who may call it\n",
                    r->method, r->pattern, s.routes[i].service);
            missing++;
            continue;
        }
        if (!strncmp(r->pattern, "/internal/", 10)) {
            /* service-to-service: the token header, not the route flags, decides */
            for (int role = ANON; role < N_ROLES; role++)
                if (c->expect[role] != 401) {
                    fprintf(stderr, "%s %s: an internal route, but the matrix expects %d for %s\n",
                            r->method, r->pattern, c->expect[role], role_names[role]);
                    wrong++;
                }
            continue;
        }
        bool auth = r->flags & (ROUTE_AUTH | ROUTE_ADMIN);
        if (auth != (c->expect[ANON] == 401)) {
            fprintf(stderr, "%s %s: flags say %s, the matrix expects %d for anonymous\n", r->method,
                    r->pattern, auth ? "ROUTE_AUTH" : "open", c->expect[ANON]);
            wrong++;
        }
        if (r->flags & ROUTE_ADMIN)
            for (int role = CUSTOMER; role <= PREMIUM; role++)
                if (c->expect[role] != 403) {
                    fprintf(stderr, "%s %s: ROUTE_ADMIN, but the matrix expects %d for %s\n",
                            r->method, r->pattern, c->expect[role], role_names[role]);
                    wrong++;
                }
        for (int role = CUSTOMER; role < N_ROLES; role++)
            if (c->expect[role] == 401) {
                fprintf(stderr, "%s %s: a valid token never gets 401 (%s)\n", r->method, r->pattern,
                        role_names[role]);
                wrong++;
            }
    }
    for (size_t i = 0; i < N_CASES; i++) {
        bool found = false;
        for (int j = 0; j < s.n && !found; j++)
            found = !strcmp(cases[i].method, s.routes[j].r.method) &&
                    !strcmp(cases[i].pattern, s.routes[j].r.pattern);
        if (!found) {
            fprintf(stderr, "matrix row %s %s names no route\n", cases[i].method, cases[i].pattern);
            wrong++;
        }
    }
    assert_int_equal(missing, 0);
    assert_int_equal(wrong, 0);
}

/* ---- the requests ---------------------------------------------------------------------- */

/* Expands the placeholders of tmpl for role into out. */
static void expand(const char *tmpl, int role, char *out, size_t cap)
{
    size_t o = 0;
    while (*tmpl && o + 1 < cap) {
        const char *v = NULL;
        size_t skip = 0;
        char num[24];
        static const struct {
            const char *name;
        } names[] = {{"{order}"},  {"{cancel}"}, {"{shipment}"}, {"{product}"},
                     {"{victim}"}, {"{n}"},      {"{email}"},    {"{asset}"}};
        for (size_t i = 0; i < sizeof names / sizeof names[0] && !v; i++) {
            size_t n = strlen(names[i].name);
            if (strncmp(tmpl, names[i].name, n) != 0)
                continue;
            skip = n;
            switch (i) {
            case 0:
                v = order;
                break;
            case 1:
                v = role == ADMIN ? cancel_admin : cancel_customer;
                break;
            case 2:
                v = shipment;
                break;
            case 3:
                v = product;
                break;
            case 4:
                v = victim;
                break;
            case 5:
                snprintf(num, sizeof num, "%u", ++counter);
                v = num;
                break;
            case 6:
                v = CUSTOMER_EMAIL;
                break;
            default:
                v = asset;
                break;
            }
        }
        if (!v) {
            out[o++] = *tmpl++;
            continue;
        }
        while (*v && o + 1 < cap)
            out[o++] = *v++;
        tmpl += skip;
    }
    out[o] = 0;
}

static int request(const char *method, const char *path, const char *token, const char *body,
                   struct th_resp *r)
{
    char auth[256], idem[64];
    const char *h[4];
    int n = 0;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        h[n++] = auth;
    }
    snprintf(idem, sizeof idem, "Idempotency-Key: authz-%u", ++counter);
    h[n++] = idem;
    h[n] = NULL;
    return th_req(&srv, method, path, body, h, r);
}

static void fill_cart(const char *token)
{
    struct th_resp r;
    char body[128];
    snprintf(body, sizeof body, "{\"product_id\":\"%s\",\"quantity\":1}", product);
    assert_int_equal(request("POST", "/api/v1/cart/items", token, body, &r), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
}

/* Places an order for token (filling its cart first); copies the order id. */
static void place(const char *token, char *id, size_t cap)
{
    struct th_resp r;
    char body[600];
    fill_cart(token);
    expand(find_case("POST", "/api/v1/orders")->body, CUSTOMER, body, sizeof body);
    assert_int_equal(request("POST", "/api/v1/orders", token, body, &r), 0);
    if (r.status != 201)
        fail_msg("placing an order: %ld %s", r.status, r.body);
    snprintf(id, cap, "%s", th_jstr(r.json, "id"));
    th_resp_free(&r);
}

static void copy_str(const char *v, char *out, size_t cap)
{
    assert_non_null(v);
    snprintf(out, cap, "%s", v);
}

static char *make_premium(void)
{
    char pwfile[sizeof srv.data_dir + 32], *out = NULL;
    snprintf(pwfile, sizeof pwfile, "%s/../premium.password", srv.data_dir);
    FILE *f = fopen(pwfile, "w");
    assert_non_null(f);
    fputs(PASSWORD, f);
    assert_int_equal(fclose(f), 0);
    int rc = th_cli(&srv,
                    (const char *const[]){"user", "create", "--email", "authz-premium@example.com",
                                          "--password-file", pwfile, "--tier", "premium", NULL},
                    &out);
    if (rc != 0)
        fail_msg("user create --tier premium exited %d: %s", rc, out ? out : "");
    free(out);
    struct th_resp r;
    assert_int_equal(th_call(&srv, "POST", "/api/v1/auth/login", NULL, &r,
                             "{\"email\":\"authz-premium@example.com\",\"password\":\"%s\"}",
                             PASSWORD),
                     0);
    assert_int_equal(r.status, 200);
    assert_string_equal(th_jstr(r.json, "user.tier"), "premium");
    char *tok = strdup(th_jstr(r.json, "token"));
    th_resp_free(&r);
    return tok;
}

static int setup(void **state)
{
    if (th_suite_start(&srv, &admin) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    for (int i = CUSTOMER; i < ADMIN; i++)
        free(tokens[i]);
    return th_suite_stop(&srv, admin);
}

static void test_matrix(void **state)
{
    struct th_resp r;
    tokens[ANON] = NULL;
    tokens[CUSTOMER] = th_register(&srv, CUSTOMER_EMAIL, PASSWORD);
    tokens[OTHER] = th_register(&srv, "authz-other@example.com", PASSWORD);
    tokens[PREMIUM] = make_premium();
    tokens[ADMIN] = admin;
    for (int i = 0; i < N_ROLES; i++)
        if (i != ANON)
            assert_non_null(tokens[i]);

            /* the fixtures */
#define MK                                                                                         \
    "{\"sku\":\"AUTHZ-%s\",\"name\":\"Authz %s\",\"category\":\"authz\","                          \
    "\"price\":{\"amount\":1999,\"currency\":\"USD\"}}"
    assert_int_equal(th_call(&srv, "POST", "/api/v1/products", admin, &r, MK, "P", "P"), 0);
    assert_int_equal(r.status, 201);
    copy_str(th_jstr(r.json, "id"), product, sizeof product);
    th_resp_free(&r);
    assert_int_equal(th_call(&srv, "POST", "/api/v1/products", admin, &r, MK, "V", "V"), 0);
    assert_int_equal(r.status, 201);
    copy_str(th_jstr(r.json, "id"), victim, sizeof victim);
    th_resp_free(&r);
    char ipath[96];
    snprintf(ipath, sizeof ipath, "/api/v1/inventory/%s", product);
    assert_int_equal(th_call(&srv, "PUT", ipath, admin, &r, "{\"available\":1000}"), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    place(tokens[CUSTOMER], order, sizeof order);
    place(tokens[CUSTOMER], cancel_customer, sizeof cancel_customer);
    place(tokens[CUSTOMER], cancel_admin, sizeof cancel_admin);
    char third[32], opath[96];
    place(tokens[CUSTOMER], third, sizeof third);
    snprintf(opath, sizeof opath, "/api/v1/orders/%s", third);
    assert_int_equal(th_call(&srv, "GET", opath, tokens[CUSTOMER], &r, NULL), 0);
    assert_int_equal(r.status, 200);
    copy_str(th_jstr(r.json, "shipment.id"), shipment, sizeof shipment);
    th_resp_free(&r);

    assert_int_equal(th_call(&srv, "GET", "/", NULL, &r, NULL), 0);
    assert_int_equal(r.status, 200);
    const char *a = strstr(r.body, "/assets/");
    assert_non_null(a);
    size_t alen = strcspn(a, "\"' >");
    assert_true(alen > 8 && alen < sizeof asset);
    memcpy(asset, a, alen);
    asset[alen] = 0;
    th_resp_free(&r);

    /* every route × every role; logout last */
    int failures = 0, checked = 0;
    const struct authz_case *logout = find_case("POST", "/api/v1/auth/logout");
    for (size_t k = 0; k <= N_CASES; k++) {
        const struct authz_case *c = k < N_CASES ? &cases[k] : logout;
        if (k < N_CASES && c == logout)
            continue;
        for (int ri = 0; ri < N_ROLES; ri++) {
            int role = role_order[ri];
            char path[256], body[1024];
            expand(c->path, role, path, sizeof path);
            if (c->body)
                expand(c->body, role, body, sizeof body);
            /* POST /orders needs something in the caller's cart to get past it */
            if (!strcmp(c->pattern, "/api/v1/orders") && !strcmp(c->method, "POST") && tokens[role])
                fill_cart(tokens[role]);
            assert_int_equal(request(c->method, path, tokens[role], c->body ? body : NULL, &r), 0);
            checked++;
            if (r.status != c->expect[role]) {
                fprintf(stderr, "%s %s as %s: expected %d, got %ld: %s\n", c->method, path,
                        role_names[role], c->expect[role], r.status, r.body);
                failures++;
            } else if (r.status >= 400 && !th_is_error(&r, r.status, NULL, NULL)) {
                failures++;
            }
            th_resp_free(&r);
        }
    }
    fprintf(stderr, "authorization matrix: %d requests, %d unexpected\n", checked, failures);
    assert_int_equal(checked, (int)(N_CASES * N_ROLES));
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_covers_every_route),
        cmocka_unit_test(test_matrix),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
