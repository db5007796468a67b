/* SPDX-License-Identifier: MIT */
/* reqmetrics.c — per-route request counters and latency histograms, lock-free.
 *
 * One slot per route (plus one for requests that matched no route), each with a counter per
 * status code that we ever answer with and a cumulative-ready histogram. Updates are relaxed
 * atomic adds, so the hot path takes no lock; a scrape reads them without stopping writers. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/err.h"
#include "http_internal.h"

static const int status_codes[] = {200, 201, 204, 304, 400, 401, 402, 403, 404,
                                   405, 409, 413, 415, 429, 431, 499, 500, 503};
#define N_STATUS (int)(sizeof status_codes / sizeof status_codes[0])
static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define N_BOUNDS (int)(sizeof bounds / sizeof bounds[0])

struct route_stats {
    _Atomic uint64_t by_status[N_STATUS + 1]; /* last: other */
    _Atomic uint64_t buckets[N_BOUNDS + 1];   /* non-cumulative; last: above every bound */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_us;
};

static struct route_stats *stats;
static int n_stats;
static _Atomic long inflight_gauge;

int http__metrics_init(int n_routes)
{
    stats = calloc((size_t)n_routes + 1, sizeof *stats);
    if (!stats)
        return ERR_NOMEM;
    n_stats = n_routes + 1;
    return 0;
}

void http__metrics_free(void)
{
    free(stats);
    stats = NULL;
    n_stats = 0;
}

void http__metrics_inflight(int delta)
{
    atomic_fetch_add_explicit(&inflight_gauge, delta, memory_order_relaxed);
}

void http__metrics_observe(int route_index, int status, int64_t dur_us)
{
    if (!stats)
        return;
    struct route_stats *s = &stats[route_index < 0 ? n_stats - 1 : route_index];
    int si = N_STATUS;
    for (int i = 0; i < N_STATUS; i++)
        if (status_codes[i] == status) {
            si = i;
            break;
        }
    atomic_fetch_add_explicit(&s->by_status[si], 1, memory_order_relaxed);
    double secs = (double)dur_us / 1e6;
    int b = 0;
    while (b < N_BOUNDS && secs > bounds[b])
        b++;
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum_us, (uint64_t)dur_us, memory_order_relaxed);
}

static void route_labels(int i, const char **route, const char **method)
{
    if (i == n_stats - 1) {
        *route = "unmatched";
        *method = "any";
        return;
    }
    const struct http_route_entry *e = http__route_at(i);
    *route = e->route.pattern;
    *method = e->route.method;
}

void http__metrics_write(struct buf *out)
{
    if (!stats)
        return;
    buf_puts(
        out,
        "# HELP emporium_http_requests_total HTTP requests answered, by route, method and status.\n"
        "# TYPE emporium_http_requests_total counter\n");
    for (int i = 0; i < n_stats; i++) {
        const char *route, *method;
        route_labels(i, &route, &method);
        for (int s = 0; s <= N_STATUS; s++) {
            uint64_t v = atomic_load_explicit(&stats[i].by_status[s], memory_order_relaxed);
            if (!v)
                continue;
            if (s < N_STATUS)
                buf_printf(
                    out,
                    "emporium_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
                    route, method, status_codes[s], (unsigned long long)v);
            else
                buf_printf(out,
                           "emporium_http_requests_total{route=\"%s\",method=\"%s\",status="
                           "\"other\"} %llu\n",
                           route, method, (unsigned long long)v);
        }
    }
    buf_puts(out, "# HELP emporium_http_request_duration_seconds Time from the first byte of a "
                  "request to its completion.\n"
                  "# TYPE emporium_http_request_duration_seconds histogram\n");
    for (int i = 0; i < n_stats; i++) {
        uint64_t count = atomic_load_explicit(&stats[i].count, memory_order_relaxed);
        if (!count)
            continue;
        const char *route, *method;
        route_labels(i, &route, &method);
        uint64_t cum = 0;
        for (int b = 0; b < N_BOUNDS; b++) {
            cum += atomic_load_explicit(&stats[i].buckets[b], memory_order_relaxed);
            buf_printf(out,
                       "emporium_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\","
                       "le=\"%g\"} %llu\n",
                       route, method, bounds[b], (unsigned long long)cum);
        }
        cum += atomic_load_explicit(&stats[i].buckets[N_BOUNDS], memory_order_relaxed);
        /* +Inf must equal _count: both come from the same buckets. */
        buf_printf(out,
                   "emporium_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\",le=\"+"
                   "Inf\"} %llu\n",
                   route, method, (unsigned long long)cum);
        buf_printf(out,
                   "emporium_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\"} %.6f\n",
                   route, method,
                   (double)atomic_load_explicit(&stats[i].sum_us, memory_order_relaxed) / 1e6);
        buf_printf(
            out, "emporium_http_request_duration_seconds_count{route=\"%s\",method=\"%s\"} %llu\n",
            route, method, (unsigned long long)cum);
    }
    buf_printf(
        out,
        "# HELP emporium_http_requests_in_flight Requests being handled now.\n"
        "# TYPE emporium_http_requests_in_flight gauge\nemporium_http_requests_in_flight %ld\n",
        atomic_load_explicit(&inflight_gauge, memory_order_relaxed));
}
