/* SPDX-License-Identifier: MIT */
/* analytics_http.c — GET /api/v1/admin/analytics/sales: parse, call analytics_sales(),
 * render. */
#include <string.h>

#include <jansson.h>

#include "emporium/err.h"
#include "emporium/http.h"
#include "analytics_internal.h"

static int h_sales(struct http_req *req)
{
    const char *from = http_query(req, "from"), *to = http_query(req, "to");
    const char *group = http_query(req, "group_by");
    char dfrom[11], dto[11];
    analytics__default_range(dfrom, dto);
    if (!from)
        from = dfrom;
    if (!to)
        to = dto;
    if (!group)
        group = "day";
    long f = analytics_parse_day(from), t = analytics_parse_day(to);
    if (f < 0)
        return http_fail(req, ERR_INVALID, "from", "must be a date YYYY-MM-DD");
    if (t < 0)
        return http_fail(req, ERR_INVALID, "to", "must be a date YYYY-MM-DD");
    if (t < f)
        return http_fail(req, ERR_INVALID, "to", "must not be before from");
    if (t - f >= ANALYTICS_MAX_DAYS)
        return http_fail(req, ERR_INVALID, "to", "the range is at most %d days",
                         ANALYTICS_MAX_DAYS);
    enum analytics_group g;
    if (!strcmp(group, "day"))
        g = ANALYTICS_BY_DAY;
    else if (!strcmp(group, "category"))
        g = ANALYTICS_BY_CATEGORY;
    else
        return http_fail(req, ERR_INVALID, "group_by", "must be day or category");
    struct analytics_report rep;
    int rc = analytics_sales(http_app(req), from, to, g, &rep);
    if (rc < 0)
        return rc;
    json_t *items = json_array();
    for (int r = 0; r < rep.n; r++) {
        const struct analytics_row *row = &rep.rows[r];
        json_array_append_new(
            items, json_pack("{s:s,s:{s:I,s:s},s:I,s:I}", group, row->key, "revenue", "amount",
                             (json_int_t)row->revenue, "currency", row->currency, "orders",
                             (json_int_t)row->orders, "units", (json_int_t)row->units));
    }
    analytics_report_free(&rep);
    http_add_header(req, "Cache-Control", "private, no-store");
    return http_reply_json(
        req, 200,
        json_pack("{s:s,s:s,s:s,s:o}", "from", from, "to", to, "group_by", group, "items", items));
}

static const struct http_route routes[] = {
    {"GET", "/api/v1/admin/analytics/sales", h_sales, ROUTE_ADMIN},
    {NULL, NULL, NULL, 0},
};

const struct service service_analytics = {
    .name = "analytics",
    .routes = routes,
    .dbs = analytics__dbs,
    .init = analytics__init,
    .deinit = analytics__deinit,
};
