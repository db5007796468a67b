/* SPDX-License-Identifier: MIT */
/* svc/analytics.h — the analytics service's client interface: sales figures for operators.
 *
 * Figures are net of cancellations and refunds: an order counts from its order.paid event
 * until its order.cancelled event (svc/recommendation.h), which takes its revenue, units and
 * order count back out of the day and categories it was counted in. */
#ifndef EMPORIUM_SVC_ANALYTICS_H
#define EMPORIUM_SVC_ANALYTICS_H
#include <stdint.h>

struct app;

#define ANALYTICS_MAX_DAYS 366 /* widest report */

enum analytics_group { ANALYTICS_BY_DAY, ANALYTICS_BY_CATEGORY };

struct analytics_row {
    char key[72]; /* the day (YYYY-MM-DD, UTC) or the category slug */
    char currency[4];
    int64_t revenue; /* minor units of currency */
    int64_t orders, units;
};

struct analytics_report {
    int n;
    struct analytics_row *rows; /* yours: analytics_report_free() */
};

/* YYYY-MM-DD → days since 1970-01-01, or -1 when it is not a real date in 1970..9999. */
long analytics_parse_day(const char *s);

/* Sales from day `from` to day `to` (YYYY-MM-DD, inclusive, at most ANALYTICS_MAX_DAYS),
 * one row per group and currency (sums never mix currencies), ordered by key then currency.
 * ERR_INVALID for bad dates or range. */
int analytics_sales(struct app *app, const char *from, const char *to, enum analytics_group g,
                    struct analytics_report *out);
void analytics_report_free(struct analytics_report *r);

#endif
