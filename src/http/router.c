/* SPDX-License-Identifier: MIT */
/* router.c — the route table: every service's static routes, matched segment by segment.
 *
 * Built once at start-up from services_all[] (only the selected services) plus the
 * operational routes, then read-only, so matching takes no lock. A route pattern is split
 * into segments; "{name}" matches any one non-empty segment. Literal routes are tried before
 * parameterised ones only by table order, so services list their literal paths first
 * (e.g. /products/search before /products/{id}). With a few dozen routes a linear scan is
 * cheaper than any index.
 *
 * Each route also learns its query parameters from the OpenAPI document built from the
 * *.openapi.json fragments (operation and path-level parameters, `in: query`, $refs into
 * components/parameters resolved), so an unknown parameter can be refused with 400 like an
 * unknown body field, and the document stays the one place that lists them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/server.h"
#include "emporium/service.h"
#include "http_internal.h"

static struct http_route_entry *routes;
static int n_routes;

static int router_add(const char *service, const struct http_route *r, int *cap)
{
    if (n_routes == *cap) {
        int ncap = *cap ? *cap * 2 : 64;
        struct http_route_entry *n = realloc(routes, (size_t)ncap * sizeof *n);
        if (!n)
            return ERR_NOMEM;
        routes = n;
        *cap = ncap;
    }
    struct http_route_entry *e = &routes[n_routes];
    memset(e, 0, sizeof *e);
    e->service = service;
    e->route = *r;
    e->index = n_routes;
    const char *p = r->pattern;
    while (*p == '/') {
        p++;
        if (e->n_segs == 12)
            return ERR_INVALID;
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        e->segs[e->n_segs] = p;
        e->seg_lens[e->n_segs] = len;
        e->n_segs++;
        p += len;
    }
    n_routes++;
    return 0;
}

/* Adds the query parameters in `params` (an OpenAPI parameters array) to e. */
static int add_query_params(struct http_route_entry *e, json_t *params, json_t *components)
{
    size_t i;
    json_t *p;
    json_array_foreach (params, i, p) {
        const char *ref = json_string_value(json_object_get(p, "$ref"));
        static const char prefix[] = "#/components/parameters/";
        if (ref && !strncmp(ref, prefix, sizeof prefix - 1))
            p = json_object_get(json_object_get(components, "parameters"), ref + sizeof prefix - 1);
        const char *in = json_string_value(json_object_get(p, "in"));
        const char *name = json_string_value(json_object_get(p, "name"));
        if (!in || strcmp(in, "query") != 0 || !name)
            continue;
        char **q = realloc(e->query, (size_t)(e->n_query + 1) * sizeof *q);
        if (!q)
            return ERR_NOMEM;
        e->query = q;
        if (!(q[e->n_query] = strdup(name)))
            return ERR_NOMEM;
        e->n_query++;
    }
    return 0;
}

static int load_query_params(void)
{
    json_t *doc = http_openapi_document();
    if (!doc)
        return 0; /* the unit test checks the document; routes stay unchecked */
    json_t *paths = json_object_get(doc, "paths");
    json_t *components = json_object_get(doc, "components");
    int rc = 0;
    for (int i = 0; rc == 0 && i < n_routes; i++) {
        struct http_route_entry *e = &routes[i];
        json_t *item = json_object_get(paths, e->route.pattern);
        char method[16];
        size_t k = 0;
        for (; e->route.method[k] && k < sizeof method - 1; k++)
            method[k] = (char)(e->route.method[k] | 0x20);
        method[k] = 0;
        json_t *op = json_object_get(item, method);
        if (!op)
            continue;
        e->query_documented = true;
        rc = add_query_params(e, json_object_get(item, "parameters"), components);
        if (rc == 0)
            rc = add_query_params(e, json_object_get(op, "parameters"), components);
    }
    json_decref(doc);
    return rc;
}

int http__router_build(struct app *app)
{
    int cap = 0, rc = 0;
    for (const struct http_route *r = http__ops_routes; rc == 0 && r->method; r++)
        rc = router_add("ops", r, &cap);
    for (int s = 0; rc == 0 && services_all[s]; s++) {
        const struct service *svc = services_all[s];
        if (app && !app_has_service(app, svc->name))
            continue;
        for (const struct http_route *r = svc->routes; rc == 0 && r && r->method; r++)
            rc = router_add(svc->name, r, &cap);
    }
    if (rc == 0)
        rc = load_query_params();
    return rc;
}

void http__router_free(void)
{
    for (int i = 0; i < n_routes; i++) {
        for (int k = 0; k < routes[i].n_query; k++)
            free(routes[i].query[k]);
        free(routes[i].query);
    }
    free(routes);
    routes = NULL;
    n_routes = 0;
}

bool http__route_query_allowed(const struct http_route_entry *e, const char *name)
{
    if (!e->query_documented)
        return true;
    for (int i = 0; i < e->n_query; i++)
        if (!strcmp(e->query[i], name))
            return true;
    return false;
}

int http__route_count(void) { return n_routes; }
const struct http_route_entry *http__route_at(int i) { return &routes[i]; }

/* Matches path against e; fills req params when req != NULL. */
static bool route_match(const struct http_route_entry *e, const char *path, struct http_req *req)
{
    const char *p = path;
    int np = 0;
    for (int i = 0; i < e->n_segs; i++) {
        if (*p != '/')
            return false;
        p++;
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *seg = e->segs[i];
        size_t slen = e->seg_lens[i];
        if (slen >= 2 && seg[0] == '{' && seg[slen - 1] == '}') {
            if (len == 0 || np == HTTP_MAX_PARAMS)
                return false;
            if (req) {
                if (len >= sizeof req->params[np].value)
                    return false;
                req->params[np].name = seg + 1;
                req->params[np].name_len = slen - 2;
                memcpy(req->params[np].value, p, len);
                req->params[np].value[len] = 0;
            }
            np++;
        } else if (len != slen || memcmp(p, seg, len) != 0) {
            return false;
        }
        p += len;
    }
    if (*p != 0 && !(p[0] == '/' && p[1] == 0)) /* tolerate one trailing slash */
        return false;
    if (req)
        req->n_params = np;
    return true;
}

int http__route(struct http_req *req, const char *path)
{
    bool path_seen = false;
    for (int i = 0; i < n_routes; i++) {
        const struct http_route_entry *e = &routes[i];
        if (!route_match(e, path, NULL))
            continue;
        if (strcmp(e->route.method, req->method) != 0 &&
            !(strcmp(req->method, "HEAD") == 0 && strcmp(e->route.method, "GET") == 0)) {
            path_seen = true;
            continue;
        }
        /* The second pass copies the parameters; it fails only when one is too long. */
        if (!route_match(e, path, req))
            return ERR_NOTFOUND;
        req->route = e;
        return 0;
    }
    return path_seen ? ERR_METHOD : ERR_NOTFOUND;
}

int http__route_allow(const char *path, char *out, size_t cap)
{
    /* In a fixed order, whatever the route tables' order. */
    static const char *const order[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};
    bool have[6] = {false};
    int matched = 0;
    for (int i = 0; i < n_routes; i++) {
        if (!route_match(&routes[i], path, NULL))
            continue;
        matched++;
        for (int k = 0; k < 6; k++)
            if (!strcmp(routes[i].route.method, order[k]))
                have[k] = true;
    }
    have[1] = have[1] || have[0]; /* HEAD is served by every GET route */
    size_t len = 0;
    out[0] = 0;
    for (int k = 0; k < 6; k++)
        if (have[k])
            len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s, ", order[k]);
    snprintf(out + (len < cap ? len : cap - 1), len < cap ? cap - len : 1, "OPTIONS");
    return matched;
}

void http_routes_foreach(void (*fn)(const char *service, const struct http_route *r, void *ctx),
                         void *ctx)
{
    for (const struct http_route *r = http__ops_routes; r->method; r++)
        fn("ops", r, ctx);
    for (int s = 0; services_all[s]; s++)
        for (const struct http_route *r = services_all[s]->routes; r && r->method; r++)
            fn(services_all[s]->name, r, ctx);
}
