/* SPDX-License-Identifier: MIT */
/* analytics.c — sales figures for operators: revenue, orders and units by day or category.
 *
 * Owns the `analytics` database: one fact row per order line (order, UTC day, category,
 * product, units, revenue in minor units, currency) plus the ids of the events applied. Facts
 * come from "order.paid" events on the `order-events` topic (svc/recommendation.h), applied
 * in one transaction with the event id so a redelivery changes nothing. The seed puts
 * analytics in MongoDB; here the facts live behind the same db port as everything else, and
 * the document-store adapter can take them over without changing this endpoint. Revenue is
 * reported per currency: sums never mix currencies. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"
#include "emporium/service.h"
#include "emporium/svc/product.h"
#include "emporium/svc/recommendation.h"

#define AN_MAX_ITEMS 100
#define AN_MAX_DAYS 366 /* widest report */

static struct app *an_app;

static struct db *an_db(struct app *app) { return app_db(app, "analytics"); }

static void day_of(int64_t ms, char out[11])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 11, "%04u-%02u-%02u", (unsigned)(tm.tm_year + 1900) % 10000u,
             (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u);
}

static void on_order_event(void *ctx, const char *topic, const char *key, const char *payload,
                           size_t len)
{
    json_t *ev = json_loadb(payload, len, 0, NULL);
    if (!ev)
        return;
    const char *type = json_string_value(json_object_get(ev, "type"));
    const char *event_id = json_string_value(json_object_get(ev, "event_id"));
    const char *currency = json_string_value(json_object_get(ev, "currency"));
    int64_t order_id;
    json_t *items = json_object_get(ev, "items");
    if (!type || strcmp(type, "order.paid") != 0 || !event_id || !currency ||
        id_parse(json_string_value(json_object_get(ev, "order_id")), &order_id) < 0 ||
        !json_is_array(items)) {
        json_decref(ev);
        return;
    }
    char day[11];
    day_of(json_integer_value(json_object_get(ev, "at")), day);
    struct db_conn *c = NULL;
    int rc = db_conn_take(an_db(an_app), &c);
    if (rc < 0)
        c = NULL;
    if (rc == 0 && (rc = db_begin(c)) == 0) {
        struct db_val e[] = {DB_TEXT(event_id), DB_INT(now_ms())};
        rc = db_query(c,
                      "INSERT INTO applied_events (event_id, applied_at) VALUES ($1, $2) "
                      "ON CONFLICT (event_id) DO NOTHING",
                      2, e, NULL);
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it) {
            if (rc <= 0 || i >= AN_MAX_ITEMS)
                break;
            int64_t pid;
            json_int_t q = json_integer_value(json_object_get(it, "quantity"));
            json_int_t price = json_integer_value(json_object_get(it, "unit_price"));
            if (id_parse(json_string_value(json_object_get(it, "product_id")), &pid) < 0 || q <= 0)
                continue;
            struct product_info info;
            const char *category = product_get_info(an_app, pid, &info) == 0 ? info.category : "unknown";
            struct db_val f[] = {DB_INT(order_id), DB_INT((int64_t)i), DB_TEXT(day),
                                 DB_TEXT(category), DB_INT(pid), DB_INT(q),
                                 DB_INT((int64_t)q * price), DB_TEXT(currency)};
            rc = db_query(c,
                          "INSERT INTO sales_facts (order_id, line, day, category, product_id, "
                          "units, revenue, currency) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                          8, f, NULL);
            if (rc == 0)
                rc = 1; /* keep going */
        }
        if (rc > 0) /* the event id was new and every line went in */
            rc = db_commit(c);
        else
            db_rollback(c);
    }
    if (rc < 0)
        log_warn("analytics: event %s not applied: %s", event_id, err_str(rc));
    db_conn_give(c);
    json_decref(ev);
}

/* YYYY-MM-DD -> Unix days, or -1. */
static long parse_day(const char *s)
{
    int y, m, d;
    char extra;
    if (!s || strlen(s) != 10)
        return -1;
    for (int i = 0; i < 10; i++) /* digits and the two dashes only: sscanf takes signs */
        if (i == 4 || i == 7 ? s[i] != '-' : !isdigit((unsigned char)s[i]))
            return -1;
    if (sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3 || m < 1 ||
        m > 12 || d < 1 || d > 31 || y < 1970 || y > 9999)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    time_t t = timegm(&tm);
    struct tm back;
    gmtime_r(&t, &back);
    if (back.tm_mday != d) /* 2026-02-30 */
        return -1;
    return (long)(t / 86400);
}

static int h_sales(struct http_req *req)
{
    const char *from = http_query(req, "from"), *to = http_query(req, "to");
    const char *group = http_query(req, "group_by");
    char today[11], month_ago[11];
    day_of(now_ms(), today);
    day_of(now_ms() - 29LL * 86400 * 1000, month_ago);
    if (!from)
        from = month_ago;
    if (!to)
        to = today;
    if (!group)
        group = "day";
    long f = parse_day(from), t = parse_day(to);
    if (f < 0)
        return http_fail(req, ERR_INVALID, "from", "must be a date YYYY-MM-DD");
    if (t < 0)
        return http_fail(req, ERR_INVALID, "to", "must be a date YYYY-MM-DD");
    if (t < f)
        return http_fail(req, ERR_INVALID, "to", "must not be before from");
    if (t - f >= AN_MAX_DAYS)
        return http_fail(req, ERR_INVALID, "to", "the range is at most %d days", AN_MAX_DAYS);
    const char *col;
    if (!strcmp(group, "day"))
        col = "day";
    else if (!strcmp(group, "category"))
        col = "category";
    else
        return http_fail(req, ERR_INVALID, "group_by", "must be day or category");
    char sql[400];
    /* col is one of two fixed column names, never client text. */
    snprintf(sql, sizeof sql,
             "SELECT %s, currency, SUM(revenue), COUNT(DISTINCT order_id), SUM(units) "
             "FROM sales_facts WHERE day >= $1 AND day <= $2 GROUP BY %s, currency "
             "ORDER BY %s, currency",
             col, col, col);
    struct db_conn *c;
    int rc = db_conn_take(an_db(http_app(req)), &c);
    if (rc < 0)
        return rc;
    struct db_rows *rows = NULL;
    struct db_val a[] = {DB_TEXT(from), DB_TEXT(to)};
    rc = db_query(c, sql, 2, a, &rows);
    db_conn_give(c);
    if (rc < 0)
        return rc;
    json_t *items = json_array();
    for (int r = 0; r < db_rows_count(rows); r++)
        json_array_append_new(items,
                              json_pack("{s:s,s:{s:I,s:s},s:I,s:I}", col, db_get(rows, r, 0),
                                        "revenue", "amount", (json_int_t)db_get_i64(rows, r, 2),
                                        "currency", db_get(rows, r, 1), "orders",
                                        (json_int_t)db_get_i64(rows, r, 3), "units",
                                        (json_int_t)db_get_i64(rows, r, 4)));
    db_rows_free(rows);
    http_add_header(req, "Cache-Control", "private, no-store");
    return http_reply_json(req, 200, json_pack("{s:s,s:s,s:s,s:o}", "from", from, "to", to,
                                               "group_by", group, "items", items));
}

static int an_init(struct app *app)
{
    an_app = app;
    return bus_subscribe(RECOMMENDATION_TOPIC, on_order_event, NULL);
}

static const struct db_migration an_migrations[] = {
    {.sql = "CREATE TABLE sales_facts ("
            " order_id BIGINT NOT NULL,"
            " line INTEGER NOT NULL,"
            " day TEXT NOT NULL,"
            " category TEXT NOT NULL,"
            " product_id BIGINT NOT NULL,"
            " units BIGINT NOT NULL,"
            " revenue BIGINT NOT NULL,"
            " currency TEXT NOT NULL,"
            " PRIMARY KEY (order_id, line));"
            "CREATE INDEX sales_facts_day ON sales_facts (day);"
            "CREATE TABLE applied_events ("
            " event_id TEXT PRIMARY KEY,"
            " applied_at BIGINT NOT NULL);"},
};

static const struct service_db an_dbs[] = {
    {"analytics", 0, an_migrations, sizeof an_migrations / sizeof an_migrations[0]},
    {NULL, 0, NULL, 0},
};

static const struct http_route an_routes[] = {
    {"GET", "/api/v1/admin/analytics/sales", h_sales, ROUTE_ADMIN},
    {NULL, NULL, NULL, 0},
};

const struct service service_analytics = {
    .name = "analytics",
    .routes = an_routes,
    .dbs = an_dbs,
    .init = an_init,
};
