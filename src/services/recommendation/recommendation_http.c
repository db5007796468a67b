/* SPDX-License-Identifier: MIT */
/* recommendation_http.c — GET /api/v1/products/{id}/recommendations: parse, call
 * recommendation_list(), render. */
#include <jansson.h>
#include <stdbool.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/flags.h"
#include "emporium/http.h"
#include "emporium/id.h"
#include "recommendation_internal.h"

static int h_recommendations(struct http_req *req)
{
    int64_t id;
    if (id_parse(http_param(req, "id"), &id) < 0)
        return http_fail(req, ERR_INVALID, "id", "must be a product id");
    int limit;
    int rc = http_query_limit(req, REC_DEFAULT_LIMIT, RECOMMENDATION_MAX, &limit);
    if (rc < 0)
        return rc;
    struct recommendation recs[RECOMMENDATION_MAX];
    int n = 0;
    /* Behind the "recommendations" feature flag: off for this caller, the block is empty
     * (the product is still checked, so an unknown id stays a 404). */
    const struct config *cfg = app_config(http_app(req));
    bool on = flag_on(cfg, "recommendations", http_auth(req)->user_id);
    rc = recommendation_list(http_app(req), id, on ? limit : 0, recs, &n);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, ERR_NOTFOUND, "id", "no such product");
    if (rc < 0)
        return rc;
    json_t *items = json_array();
    for (int i = 0; i < n; i++) {
        const struct product_info *p = &recs[i].product;
        char idbuf[21];
        json_array_append_new(items, json_pack("{s:s,s:s,s:s,s:s,s:{s:I,s:s},s:s}", "id",
                                               id_format(p->id, idbuf), "sku", p->sku, "name",
                                               p->name, "category", p->category, "price", "amount",
                                               (json_int_t)p->price, "currency", p->currency,
                                               "reason", recs[i].reason));
    }
    /* A partial rollout makes the answer depend on the caller: no shared caching then. */
    int pct = flag_percent(cfg, "recommendations");
    http_add_header(req, "Cache-Control",
                    pct == 0 || pct == 100 ? "public, max-age=60" : "private, max-age=60");
    return http_reply_json(req, 200, json_pack("{s:o}", "items", items));
}

static const struct http_route routes[] = {
    {"GET", "/api/v1/products/{id}/recommendations", h_recommendations, 0},
    {NULL, NULL, NULL, 0},
};

const struct service service_recommendation = {
    .name = "recommendation",
    .routes = routes,
    .dbs = recommendation__dbs,
    .init = recommendation__init,
    .deinit = recommendation__deinit,
};
