/* SPDX-License-Identifier: MIT */
/* test_order_events_unit.c — the analytics service as a consumer of the order events, in
 * process: order.paid and order.cancelled are published on the bus exactly as the order
 * service publishes them (svc/recommendation.h), and the figures are read through the
 * analytics client interface (svc/analytics.h). Sales are net of cancellations and refunds,
 * once per order, in the day the order was counted; a cancellation of an order never counted
 * changes nothing, and neither does its late order.paid. Runs on SQLite (temp data dir) or
 * PostgreSQL (EMPORIUM_TEST_BACKEND=postgres, a fresh database prefix). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/svc/analytics.h"
#include "emporium/svc/recommendation.h"
#include "harness.h"
#include "unit_app.h"

static struct th_unit_app ua;
static struct app *app;

static int setup(void **state)
{
    /* the consumers alone: without the catalog every line's category is "unknown" */
    if (th_unit_app_config(&ua, "oe", "analytics,recommendation") < 0)
        return -1;
    if (th_unit_app_open(&ua) < 0)
        return -1;
    app = ua.app;
    return 0;
}

static int teardown(void **state) { return th_unit_app_close(&ua); }

static void day_of(int64_t ms, char out[11])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 11, "%Y-%m-%d", &tm);
}

/* Delivers a raw message of the order-events topic to every consumer, as the runner does. */
static void deliver(const char *key, const char *value, size_t len)
{
    struct bus_msg m = {
        .topic = BUS_TOPIC_ORDER, .key = key, .key_len = strlen(key), .value = value, .len = len};
    assert_int_equal(bus_dispatch(NULL, &m), 0);
}

/* Delivers an order event (a CloudEvents envelope) as the order service's outbox writes it.
 * lines: "product:qty:price,…". */
static void publish(const char *type, const char *event_id, int64_t order_id, int64_t at,
                    const char *lines, int refunded)
{
    char body[2048], oid[21], ts[32];
    id_format(order_id, oid);
    int n = snprintf(body, sizeof body,
                     "{\"specversion\":\"1.0\",\"id\":\"%s\",\"source\":\"/emporium/order\","
                     "\"type\":\"%s\",\"subject\":\"%s\",\"time\":\"%s\","
                     "\"datacontenttype\":\"application/json\",\"data\":{\"order_id\":\"%s\","
                     "\"user_id\":\"7\",\"total\":{\"amount\":0,\"currency\":\"USD\"},\"items\":[",
                     event_id, type, oid, time_format(at, ts), oid);
    const char *p = lines;
    for (int i = 0; p && *p; i++) {
        long long pid, price;
        int q, used;
        assert_int_equal(sscanf(p, "%lld:%d:%lld%n", &pid, &q, &price, &used), 3);
        n += snprintf(body + n, sizeof body - (size_t)n,
                      "%s{\"product_id\":\"%lld\",\"quantity\":%d,\"unit_price\":%lld}",
                      i ? "," : "", pid, q, price);
        p += used;
        if (*p == ',')
            p++;
    }
    n += snprintf(body + n, sizeof body - (size_t)n, "]");
    if (refunded >= 0)
        n += snprintf(body + n, sizeof body - (size_t)n, ",\"refunded\":%s",
                      refunded ? "true" : "false");
    n += snprintf(body + n, sizeof body - (size_t)n, "}}");
    deliver(oid, body, (size_t)n);
}

/* The figures of one day (group by day): revenue, orders, units; zeros when no row. */
static void figures(const char *day, int64_t *revenue, int64_t *orders, int64_t *units)
{
    struct analytics_report rep;
    assert_int_equal(analytics_sales(app, day, day, ANALYTICS_BY_DAY, &rep), 0);
    *revenue = *orders = *units = 0;
    assert_true(rep.n <= 1);
    if (rep.n == 1) {
        assert_string_equal(rep.rows[0].key, day);
        assert_string_equal(rep.rows[0].currency, "USD");
        *revenue = rep.rows[0].revenue;
        *orders = rep.rows[0].orders;
        *units = rep.rows[0].units;
    }
    analytics_report_free(&rep);
}

#define ASSERT_FIGURES(day, rev, ord, un)                                                          \
    do {                                                                                           \
        int64_t r_, o_, u_;                                                                        \
        figures(day, &r_, &o_, &u_);                                                               \
        assert_int_equal(r_, rev);                                                                 \
        assert_int_equal(o_, ord);                                                                 \
        assert_int_equal(u_, un);                                                                  \
    } while (0)

static void test_sales_net_of_cancellations(void **state)
{
    int64_t now = now_ms();
    char today[11];
    day_of(now, today);
    int64_t a = id_new(0), b = id_new(0);
    char ea[64], eb[64], ca[64];
    snprintf(ea, sizeof ea, "order-paid-%lld", (long long)a);
    snprintf(eb, sizeof eb, "order-paid-%lld", (long long)b);
    snprintf(ca, sizeof ca, "order-cancelled-%lld", (long long)a);

    publish("order.paid", ea, a, now, "101:2:1000,102:1:500", -1);
    ASSERT_FIGURES(today, 2500, 1, 3);
    publish("order.paid", eb, b, now, "101:1:700", -1);
    ASSERT_FIGURES(today, 3200, 2, 4);
    publish("order.paid", ea, a, now, "101:2:1000,102:1:500", -1); /* redelivered */
    ASSERT_FIGURES(today, 3200, 2, 4);

    /* A is cancelled and refunded: its revenue, units and order leave the figures */
    publish("order.cancelled", ca, a, now, "101:2:1000,102:1:500", 1);
    ASSERT_FIGURES(today, 700, 1, 1);
    /* the same cancellation again, and again under another event id: subtracted once */
    publish("order.cancelled", ca, a, now, "101:2:1000,102:1:500", 1);
    publish("order.cancelled", "another-id-for-the-same-cancel", a, now, "101:2:1000,102:1:500", 1);
    ASSERT_FIGURES(today, 700, 1, 1);
    /* a late redelivery of A's order.paid does not bring it back */
    publish("order.paid", ea, a, now, "101:2:1000,102:1:500", -1);
    ASSERT_FIGURES(today, 700, 1, 1);

    /* by category: the same net figures (no catalog here: "unknown") */
    struct analytics_report rep;
    assert_int_equal(analytics_sales(app, today, today, ANALYTICS_BY_CATEGORY, &rep), 0);
    assert_int_equal(rep.n, 1);
    assert_string_equal(rep.rows[0].key, "unknown");
    assert_int_equal(rep.rows[0].revenue, 700);
    assert_int_equal(rep.rows[0].orders, 1);
    assert_int_equal(rep.rows[0].units, 1);
    analytics_report_free(&rep);
}

static void test_cancel_of_uncounted_order_changes_nothing(void **state)
{
    int64_t now = now_ms();
    char today[11];
    day_of(now, today);
    int64_t before_r, before_o, before_u;
    figures(today, &before_r, &before_o, &before_u);
    /* never paid (e.g. rejected from fraud review): nothing to subtract */
    int64_t c = id_new(0);
    char ec[64], pc[64];
    snprintf(ec, sizeof ec, "order-cancelled-%lld", (long long)c);
    snprintf(pc, sizeof pc, "order-paid-%lld", (long long)c);
    publish("order.cancelled", ec, c, now, "103:4:900", 0);
    ASSERT_FIGURES(today, before_r, before_o, before_u);
    /* its order.paid arriving after the cancellation is not counted */
    publish("order.paid", pc, c, now, "103:4:900", -1);
    ASSERT_FIGURES(today, before_r, before_o, before_u);
}

static void test_cancel_subtracts_from_the_day_counted(void **state)
{
    /* paid two days ago, cancelled (not refunded: voided) today */
    int64_t now = now_ms(), then = now - 2LL * 86400 * 1000;
    char today[11], day[11];
    day_of(now, today);
    day_of(then, day);
    int64_t d = id_new(0);
    char ed[64], cd[64];
    snprintf(ed, sizeof ed, "order-paid-%lld", (long long)d);
    snprintf(cd, sizeof cd, "order-cancelled-%lld", (long long)d);
    int64_t tr, to, tu;
    figures(today, &tr, &to, &tu);
    publish("order.paid", ed, d, then, "104:3:1100", -1);
    ASSERT_FIGURES(day, 3300, 1, 3);
    publish("order.cancelled", cd, d, now, "104:3:1100", 0);
    ASSERT_FIGURES(day, 0, 0, 0);
    ASSERT_FIGURES(today, tr, to, tu); /* today's figures are not touched */
}

static void test_bad_events_change_nothing(void **state)
{
    int64_t now = now_ms();
    char today[11];
    day_of(now, today);
    int64_t r, o, u;
    figures(today, &r, &o, &u);
#define CE "{\"specversion\":\"1.0\",\"source\":\"/emporium/order\","
    static const char *const bad[] = {
        "not json",
        "{\"type\":\"order.paid\"}",                 /* not an envelope */
        CE "\"id\":\"x0\",\"type\":\"order.paid\"}", /* no data */
        CE "\"id\":\"x1\",\"type\":\"order.cancelled\",\"data\":{\"order_id\":\"abc\"}}",
        CE "\"id\":\"x2\",\"type\":\"order.shipped\",\"data\":{\"order_id\":\"5\",\"items\":[]}}",
        CE "\"id\":\"x3\",\"type\":\"order.paid\",\"time\":\"1970-01-01T00:00:00Z\","
           "\"data\":{\"order_id\":\"6\",\"total\":{\"amount\":5,\"currency\":\"USD\"},"
           "\"items\":[{\"product_id\":\"x\",\"quantity\":1,\"unit_price\":5},"
           "{\"product_id\":\"9\",\"quantity\":-1,\"unit_price\":5}]}}",
        NULL};
#undef CE
    for (int i = 0; bad[i]; i++)
        deliver("k", bad[i], strlen(bad[i]));
    ASSERT_FIGURES(today, r, o, u);
    /* the client interface refuses bad ranges */
    struct analytics_report rep;
    assert_int_equal(analytics_sales(app, "2026-02-30", today, ANALYTICS_BY_DAY, &rep),
                     ERR_INVALID);
    assert_int_equal(analytics_sales(app, "2020-01-01", "2026-01-01", ANALYTICS_BY_DAY, &rep),
                     ERR_INVALID);
    assert_int_equal(analytics_sales(app, today, "2000-01-01", ANALYTICS_BY_DAY, &rep),
                     ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sales_net_of_cancellations),
        cmocka_unit_test(test_cancel_of_uncounted_order_changes_nothing),
        cmocka_unit_test(test_cancel_subtracts_from_the_day_counted),
        cmocka_unit_test(test_bad_events_change_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
