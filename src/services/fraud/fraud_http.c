/* SPDX-License-Identifier: MIT */
/* fraud_http.c — GET /api/v1/admin/fraud/assessments/{id}: an order's fraud assessment for
 * the review queue (parse, call fraud_assessment_get(), render); and the service definition.
 * The queue itself and the approve/reject actions are the order service's routes
 * (/api/v1/admin/orders?status=on_hold, …/approve, …/reject). */
#include <string.h>

#include <jansson.h>

#include "emporium/err.h"
#include "emporium/http.h"
#include "emporium/id.h"
#include "fraud_internal.h"

static int h_assessment(struct http_req *req)
{
    int64_t id;
    if (id_parse(http_param(req, "id"), &id) < 0)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such assessment");
    struct fraud_assessment a;
    int rc = fraud_assessment_get(http_app(req), id, &a);
    if (rc == ERR_NOTFOUND)
        return http_fail(req, ERR_NOTFOUND, NULL, "no such assessment");
    if (rc < 0)
        return rc;
    json_t *reasons = json_array();
    for (const char *s = a.reasons; *s;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        json_array_append_new(reasons, json_stringn(s, len));
        s += len + (e ? 1 : 0);
    }
    char oid[21], uid[21], ts[32];
    http_add_header(req, "Cache-Control", "private, no-store");
    return http_reply_json(req, 200,
                           json_pack("{s:s,s:s,s:i,s:b,s:o,s:s}", "order_id",
                                     id_format(a.order_id, oid), "user_id",
                                     id_format(a.user_id, uid), "score", a.score, "hold", a.hold,
                                     "reasons", reasons, "assessed_at", time_format(a.at, ts)));
}

static const struct http_route routes[] = {
    {"GET", "/api/v1/admin/fraud/assessments/{id}", h_assessment, ROUTE_ADMIN},
    {NULL, NULL, NULL, 0},
};

const struct service service_fraud = {
    .name = "fraud",
    .routes = routes,
    .dbs = fraud__dbs,
    .init = fraud__init,
    .deinit = fraud__deinit,
};
