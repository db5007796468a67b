/* SPDX-License-Identifier: MIT */
/* consumers.c — runs the registered consumers: one thread and one consumer group per consumer
 * name (see emporium/bus.h).
 *
 * Each thread polls its group's topics, parses the CloudEvents envelope and hands it to every
 * handler registered for that consumer and topic. Only when all of them returned 0 is the
 * offset committed; otherwise the consumer rewinds to the message and retries it after a
 * backoff (100 ms doubling to 5 s), so a consumer whose database is down falls behind and
 * catches up, and nothing is skipped. A message that is not a CloudEvents envelope can never
 * be applied: it is logged and committed (skipped). A crash between a handler's commit and
 * the offset's means the event is delivered again: handlers are idempotent. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emporium/buf.h"
#include "emporium/bus.h"
#include "emporium/err.h"
#include "emporium/log.h"
#include "emporium/trace.h"
#include "bus_internal.h"

#define MAX_RUNNERS 16

struct worker {
    struct bus_runner *r;
    char name[32];
    pthread_t th;
    bool started;
    _Atomic int64_t applied;
};

struct bus_runner {
    struct bus *bus;
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct worker w[MAX_RUNNERS];
    int n;
};

/* Sleeps ms unless the runner is stopping. */
static void pause_ms(struct bus_runner *r, int ms) { bus__pause_ms(&r->mu, &r->cv, &r->stop, ms); }

int bus_dispatch(const char *consumer, const struct bus_msg *m)
{
    struct bus_event ev;
    const char *who = consumer ? consumer : "*";
    if (bus_event_parse(m, &ev) < 0) {
        log_warn("consumer %s: %s[%d]@%lld is not a CloudEvents envelope: skipped", who, m->topic,
                 m->partition, (long long)m->offset);
        return 0;
    }
    /* The consumer span: a child of the span that wrote the event (its envelope's
     * traceparent), current while the handlers run, so what they call or write continues
     * the trace. */
    struct trace_span span;
    char name[96];
    snprintf(name, sizeof name, "process %s", m->topic);
    trace_span_begin(&span, TRACE_CONSUMER, name, ev.traceparent);
    trace_span_enter(&span);
    const struct bus__sub *subs;
    int n = bus__subs(&subs), rc = 0;
    for (int i = 0; i < n && rc >= 0; i++)
        if ((!consumer || !strcmp(subs[i].consumer, consumer)) && !strcmp(subs[i].topic, m->topic))
            rc = subs[i].fn(subs[i].ctx, &ev);
    if (rc < 0)
        log_warn("consumer %s: event %s (%s) not applied, will retry: %s", who, ev.id, ev.type,
                 err_str(rc));
    if (span.rec) {
        trace_span_str(&span, "messaging.operation.type", "process");
        trace_span_str(&span, "messaging.destination.name", m->topic);
        trace_span_str(&span, "messaging.consumer.group.name", who);
        trace_span_str(&span, "messaging.message.id", ev.id);
        trace_span_int(&span, "messaging.destination.partition.id", m->partition);
        trace_span_str(&span, "cloudevents.event_type", ev.type);
        if (rc < 0)
            trace_span_error(&span, err_str(rc));
    }
    trace_span_end(&span);
    json_decref(ev.doc);
    return rc;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct bus_runner *r = w->r;
    const struct bus__sub *subs;
    int n = bus__subs(&subs), nt = 0;
    const char *topics[8];
    for (int i = 0; i < n && nt < 8; i++) {
        if (strcmp(subs[i].consumer, w->name) != 0)
            continue;
        bool dup = false;
        for (int j = 0; j < nt && !dup; j++)
            dup = !strcmp(topics[j], subs[i].topic);
        if (!dup)
            topics[nt++] = subs[i].topic;
    }
    struct bus_consumer *c = NULL;
    int backoff = 100;
    while (!atomic_load(&r->stop) && !c) {
        int rc = r->bus->ops->consumer_open(r->bus, w->name, topics, nt, &c);
        if (rc < 0) {
            log_warn("consumer %s: cannot join its group: %s", w->name, err_str(rc));
            pause_ms(r, backoff);
            backoff = backoff < 5000 ? backoff * 2 : 5000;
        }
    }
    backoff = 100;
    while (c && !atomic_load(&r->stop)) {
        struct bus_msg m;
        int rc = r->bus->ops->poll(c, 200, &m);
        if (rc == 0)
            continue;
        if (rc < 0) {
            log_warn("consumer %s: poll failed: %s", w->name, err_str(rc));
            pause_ms(r, backoff);
            backoff = backoff < 5000 ? backoff * 2 : 5000;
            continue;
        }
        rc = bus_dispatch(w->name, &m);
        if (rc >= 0)
            rc = r->bus->ops->commit(c, &m);
        if (rc < 0) {
            r->bus->ops->rewind(c, &m);
            pause_ms(r, backoff);
            backoff = backoff < 5000 ? backoff * 2 : 5000;
            continue;
        }
        backoff = 100;
        atomic_fetch_add(&w->applied, 1);
    }
    if (c)
        r->bus->ops->consumer_close(c);
    return NULL;
}

static bool in_list(const char *list, const char *name)
{
    if (!list || !*list || !strcmp(list, "all"))
        return true;
    size_t nl = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == nl && !strncmp(p, name, l))
            return true;
        p += l + (e ? 1 : 0);
    }
    return false;
}

int bus_runner_start(struct bus *b, const char *list, struct bus_runner **out)
{
    *out = NULL;
    struct bus_runner *r = calloc(1, sizeof *r);
    if (!r)
        return ERR_NOMEM;
    r->bus = b;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    const struct bus__sub *subs;
    int n = bus__subs(&subs);
    for (int i = 0; i < n; i++) {
        bool dup = false;
        for (int j = 0; j < r->n && !dup; j++)
            dup = !strcmp(r->w[j].name, subs[i].consumer);
        if (dup || (!subs[i].broadcast && !in_list(list, subs[i].consumer)) || r->n == MAX_RUNNERS)
            continue;
        struct worker *w = &r->w[r->n++];
        w->r = r;
        snprintf(w->name, sizeof w->name, "%s", subs[i].consumer);
    }
    for (int i = 0; i < r->n; i++) {
        if (pthread_create(&r->w[i].th, NULL, worker_main, &r->w[i]) != 0) {
            bus_runner_stop(r);
            return ERR_NOMEM;
        }
        r->w[i].started = true;
    }
    *out = r;
    return 0;
}

void bus_runner_stop(struct bus_runner *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    atomic_store(&r->stop, true);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < r->n; i++)
        if (r->w[i].started)
            pthread_join(r->w[i].th, NULL);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

int64_t bus_runner_applied(struct bus_runner *r, const char *consumer)
{
    for (int i = 0; r && i < r->n; i++)
        if (!strcmp(r->w[i].name, consumer))
            return atomic_load(&r->w[i].applied);
    return -1;
}

void bus_runner_write_metrics(struct bus_runner *r, struct buf *out)
{
    const struct bus__sub *subs;
    int n = bus__subs(&subs);
    buf_puts(out, "# HELP emporium_consumer_lag Messages not yet processed by a consumer group, "
                  "per topic.\n# TYPE emporium_consumer_lag gauge\n");
    for (int i = 0; r && i < r->n; i++)
        for (int k = 0; k < n; k++) {
            if (strcmp(subs[k].consumer, r->w[i].name) != 0)
                continue;
            bool dup = false;
            for (int j = 0; j < k && !dup; j++)
                dup = !strcmp(subs[j].consumer, subs[k].consumer) &&
                      !strcmp(subs[j].topic, subs[k].topic);
            int64_t lag = dup ? -1 : r->bus->ops->lag(r->bus, r->w[i].name, subs[k].topic);
            if (lag >= 0)
                buf_printf(out, "emporium_consumer_lag{group=\"%s\",topic=\"%s\"} %lld\n",
                           r->w[i].name, subs[k].topic, (long long)lag);
        }
    buf_puts(out, "# HELP emporium_consumer_events_total Events applied (or skipped as not "
                  "theirs) by each consumer group in this process.\n"
                  "# TYPE emporium_consumer_events_total counter\n");
    for (int i = 0; r && i < r->n; i++)
        buf_printf(out, "emporium_consumer_events_total{group=\"%s\"} %lld\n", r->w[i].name,
                   (long long)atomic_load(&r->w[i].applied));
}
