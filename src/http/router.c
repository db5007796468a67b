/* SPDX-License-Identifier: MIT */
/* router.c — the route table: every service's static routes, matched segment by segment.
 *
 * Built once at start-up from services_all[] (only the selected services) plus the
 * operational routes, then read-only, so matching takes no lock. A route pattern is split
 * into segments; "{name}" matches any one non-empty segment. Literal routes are tried before
 * parameterised ones only by table order, so services list their literal paths first
 * (e.g. /products/search before /products/{id}). With a few dozen routes a linear scan is
 * cheaper than any index. */
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
    return rc;
}

void http__router_free(void)
{
    free(routes);
    routes = NULL;
    n_routes = 0;
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

void http_routes_foreach(void (*fn)(const char *service, const struct http_route *r, void *ctx),
                         void *ctx)
{
    for (const struct http_route *r = http__ops_routes; r->method; r++)
        fn("ops", r, ctx);
    for (int s = 0; services_all[s]; s++)
        for (const struct http_route *r = services_all[s]->routes; r && r->method; r++)
            fn(services_all[s]->name, r, ctx);
}
