/* SPDX-License-Identifier: MIT */
/* consumers.c — runs the registered consumers: one thread and one consumer group per consumer
 * name (see emporium/bus.h).
 *
 * Each thread polls its group's topics, parses the CloudEvents envelope and hands it to every
 * handler registered for that consumer and topic. Only when all of them returned 0 does the
 * message count as applied; otherwise the consumer commits what it applied before it, rewinds
 * to the message and retries it after a backoff (100 ms doubling to 5 s), so a consumer whose
 * database is down falls behind and catches up, and nothing is skipped. A message that is not
 * a CloudEvents envelope can never be applied: it is logged and committed (skipped).
 *
 * Offsets are committed per batch, not per message: while messages keep arriving, the
 * thread applies up to BATCH_MAX of them (or for BATCH_MS) and then commits the last applied
 * offset of each partition once. An offset commit is a write of its own (a transaction in
 * the events database, a synchronous round trip to Kafka), so per message it cost as much as
 * the handler's own work. A crash between a handler's commit and the offset's means the
 * event is delivered again — up to one batch of them now: handlers are idempotent. (A batch
 * that has caught up does not wait for more: under load each fetch finds what arrived
 * during the last batch anyway. Waiting 20 ms for more was tried and measured worse: the
 * log adapter also answers 0 at the end of each fetched page, so a group that was behind
 * waited too, and `notification` fell ~50,000 messages behind in a place-order row.) */
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
#define BATCH_MAX 256 /* messages applied before their offsets are committed */
#define BATCH_MS 100  /* ... or this long after the first of them */
#define BATCH_PARTS 32

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

/* Whether a subscription's types (NULL: every type) include type[0..len). */
static bool type_in(const char *const *types, const char *type, size_t len)
{
    if (!types)
        return true;
    for (const char *const *t = types; *t; t++)
        if (strlen(*t) == len && !memcmp(*t, type, len))
            return true;
    return false;
}

/* Whether some handler of `consumer` (NULL: of any) for m's topic may want m: true unless
 * every one of them names its types (bus_subscribe_types) and m's type, read without parsing
 * the message, is none of them. */
static bool wanted(const char *consumer, const struct bus_msg *m)
{
    const struct bus__sub *subs;
    int n = bus__subs(&subs);
    const char *type = NULL;
    size_t tlen = 0;
    bool peeked = false;
    for (int i = 0; i < n; i++) {
        if ((consumer && strcmp(subs[i].consumer, consumer) != 0) ||
            strcmp(subs[i].topic, m->topic) != 0)
            continue;
        if (!subs[i].types)
            return true;
        if (!peeked) {
            peeked = true;
            if (bus_event_type(m->value, m->len, &type, &tlen) < 0)
                return true; /* the parse says what it is */
        }
        if (type_in(subs[i].types, type, tlen))
            return true;
    }
    return false;
}

static int dispatch(const char *consumer, const struct bus_msg *m)
{
    struct bus_event ev;
    const char *who = consumer ? consumer : "*";
    if (!wanted(consumer, m))
        return 0; /* no handler here acts on its type: applied as it is */
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
        if ((!consumer || !strcmp(subs[i].consumer, consumer)) &&
            !strcmp(subs[i].topic, m->topic) && type_in(subs[i].types, ev.type, strlen(ev.type)))
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

int bus_dispatch(const char *consumer, const struct bus_msg *m)
{
    int rc = dispatch(consumer, m), f = bus__flush(consumer);
    return rc < 0 ? rc : f;
}

/* The applied messages whose offsets are not committed yet: the last one per partition. */
struct batch {
    struct bus *bus;
    struct bus_consumer *c;
    const char *name;
    int n;            /* messages applied since the last commit */
    int64_t first_ms; /* when the first of them was applied */
    int parts;
    struct {
        char topic[64];
        int partition;
        int64_t first;  /* the first applied message of the batch in this partition */
        int64_t offset; /* the last */
    } last[BATCH_PARTS];
};

static int64_t mono_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Ends the batch: runs the consumer's batch end (bus_subscribe_flush), then commits its
 * offsets. When the batch end fails, none of its work may count: every partition is rewound
 * to the batch's first message there. When the offsets' commit (one for every partition)
 * fails, every partition is rewound to the message after the batch (what was applied is
 * durable; it comes again only after a restart, from the older committed offset). On either
 * failure `unapplied` (a message polled but not applied yet, or NULL) is rewound first, so
 * the partitions' rewinds win. The batch is empty afterwards. */
static int batch_commit(struct batch *bt, const struct bus_msg *unapplied)
{
    if (bt->n == 0)
        return 0;
    int rc = bus__flush(bt->name);
    if (rc < 0) {
        log_warn("consumer %s: the batch end failed, its %d messages come again: %s", bt->name,
                 bt->n, err_str(rc));
        if (unapplied)
            bt->bus->ops->rewind(bt->c, unapplied);
        for (int i = 0; i < bt->parts; i++) {
            struct bus_msg m = {.topic = bt->last[i].topic,
                                .partition = bt->last[i].partition,
                                .offset = bt->last[i].first};
            bt->bus->ops->rewind(bt->c, &m);
        }
        bt->n = bt->parts = 0;
        return rc;
    }
    /* Every partition's last message in one commit (one statement on the log). */
    struct bus_msg ms[BATCH_PARTS];
    for (int i = 0; i < bt->parts; i++)
        ms[i] = (struct bus_msg){.topic = bt->last[i].topic,
                                 .partition = bt->last[i].partition,
                                 .offset = bt->last[i].offset};
    rc = bt->bus->ops->commit(bt->c, ms, bt->parts);
    if (rc < 0) {
        log_warn("consumer %s: commit of %d partitions failed: %s", bt->name, bt->parts,
                 err_str(rc));
        if (unapplied)
            bt->bus->ops->rewind(bt->c, unapplied);
        for (int i = 0; i < bt->parts; i++) {
            ms[i].offset++; /* the next message to read, not one applied */
            bt->bus->ops->rewind(bt->c, &ms[i]);
        }
    }
    bt->n = bt->parts = 0;
    return rc;
}

/* Records m as applied; commits the batch first when m's partition has no slot left. */
static int batch_add(struct batch *bt, const struct bus_msg *m)
{
    size_t tl = strlen(m->topic);
    if (tl >= sizeof bt->last[0].topic) { /* no topic is named that long; commit it now */
        bt->n++;
        int rc = batch_commit(bt, NULL);
        return rc < 0 ? rc : bt->bus->ops->commit(bt->c, m, 1);
    }
    int i = 0;
    while (i < bt->parts &&
           (bt->last[i].partition != m->partition || strcmp(bt->last[i].topic, m->topic) != 0))
        i++;
    if (i == BATCH_PARTS) {
        int rc = batch_commit(bt, NULL);
        if (rc < 0)
            return rc;
        i = 0;
    }
    if (i == bt->parts) {
        memcpy(bt->last[i].topic, m->topic, tl + 1);
        bt->last[i].partition = m->partition;
        bt->last[i].first = m->offset;
        bt->parts++;
    }
    bt->last[i].offset = m->offset;
    if (bt->n++ == 0)
        bt->first_ms = mono_now_ms();
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    log_thread_name("c-", w->name);
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
    struct batch bt = {.bus = r->bus, .c = c, .name = w->name};
    while (c && !atomic_load(&r->stop)) {
        struct bus_msg m;
        /* Only a batch already open polls without waiting: the rest waits for messages. */
        int rc = r->bus->ops->poll(c, bt.n ? 0 : 200, &m);
        if (rc <= 0 || bt.n >= BATCH_MAX || mono_now_ms() - bt.first_ms >= BATCH_MS) {
            if (batch_commit(&bt, rc > 0 ? &m : NULL) < 0) { /* m, not applied, comes again */
                pause_ms(r, backoff);
                backoff = backoff < 5000 ? backoff * 2 : 5000;
                continue;
            }
        }
        if (rc == 0)
            continue;
        if (rc < 0) {
            log_warn("consumer %s: poll failed: %s", w->name, err_str(rc));
            pause_ms(r, backoff);
            backoff = backoff < 5000 ? backoff * 2 : 5000;
            continue;
        }
        rc = dispatch(w->name, &m);
        if (rc >= 0)
            rc = batch_add(&bt, &m);
        if (rc < 0) {
            /* What was applied before m is committed (on a failure it comes again too). */
            if (batch_commit(&bt, &m) == 0)
                r->bus->ops->rewind(c, &m);
            pause_ms(r, backoff);
            backoff = backoff < 5000 ? backoff * 2 : 5000;
            continue;
        }
        backoff = 100;
        atomic_fetch_add(&w->applied, 1);
    }
    if (c)
        batch_commit(&bt, NULL);
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
