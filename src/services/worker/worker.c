/* SPDX-License-Identifier: MIT */
/* worker.c — the event machinery of a process: the bus adapter, the outbox relay and the
 * consumers (docs/events.md).
 *
 * The bus is the embedded durable log in the "events" database, or Kafka when
 * EMPORIUM_KAFKA_BROKERS is set (bus.h). `emporium serve` runs the relay and, off the
 * request threads, the consumers named by EMPORIUM_CONSUMERS (default all; "none" leaves them
 * to `emporium worker`). `emporium worker [--consumers LIST] [--relay]` runs consumers (and,
 * with --relay, the relay) as a process of its own, until SIGTERM or SIGINT.
 *
 * The service is named "worker" so that it comes last in the registry: its on_serve() runs
 * after every other service's init() registered its consumers, and its deinit() runs first,
 * so no consumer thread is left calling into a service that is being torn down. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emporium/app.h"
#include "emporium/buf.h"
#include "emporium/bus.h"
#include "emporium/err.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "emporium/outbox.h"
#define EMPORIUM_SERVICE_NO_HTTP /* no routes: nothing HTTP here */
#include "emporium/service.h"

struct worker_ctx {
    struct app *app;
    struct bus *bus;
    struct outbox_relay *relay;
    struct bus_runner *runner;
};

static struct worker_ctx *ctx_of(struct app *app) { return app_service_ctx(app, "worker"); }

static void write_metrics(struct buf *out, void *vctx)
{
    struct app *app = vctx;
    struct worker_ctx *w = ctx_of(app);
    if (!w)
        return;
    if (w->relay) {
        struct outbox_relay_stats st;
        outbox_relay_stats(w->relay, &st);
        buf_printf(out,
                   "# HELP emporium_outbox_pending Outbox rows not yet published to the bus.\n"
                   "# TYPE emporium_outbox_pending gauge\nemporium_outbox_pending %lld\n"
                   "# HELP emporium_outbox_oldest_age_seconds Age of the oldest unpublished "
                   "outbox row.\n# TYPE emporium_outbox_oldest_age_seconds gauge\n"
                   "emporium_outbox_oldest_age_seconds %.3f\n"
                   "# HELP emporium_outbox_published_total Outbox rows published by this "
                   "process's relay.\n# TYPE emporium_outbox_published_total counter\n"
                   "emporium_outbox_published_total %lld\n"
                   "# HELP emporium_outbox_publish_failures_total Relay batches the bus did not "
                   "acknowledge (retried).\n# TYPE emporium_outbox_publish_failures_total counter\n"
                   "emporium_outbox_publish_failures_total %lld\n",
                   (long long)st.pending, (double)st.oldest_age_ms / 1000.0,
                   (long long)st.published, (long long)st.failures);
    }
    if (w->runner)
        bus_runner_write_metrics(w->runner, out);
}

static int worker_init(struct app *app)
{
    const struct config *cfg = app_config(app);
    struct worker_ctx *w = calloc(1, sizeof *w);
    if (!w)
        return ERR_NOMEM;
    w->app = app;
    int rc = cfg->kafka_brokers ? bus_kafka_new(cfg->kafka_brokers, cfg->kafka_partitions, &w->bus)
                                : bus_log_new(app_db(app, "events"), cfg->kafka_partitions,
                                              cfg->event_retention_hours, &w->bus);
    if (rc == 0)
        rc = app_set_service_ctx(app, "worker", w);
    if (rc == 0)
        rc = metrics_add_writer(write_metrics, app);
    if (rc < 0) {
        app_set_service_ctx(app, "worker", NULL);
        bus_free(w->bus);
        free(w);
        return rc;
    }
    log_info("events: bus %s (%s)", w->bus->ops->name,
             cfg->kafka_brokers ? "EMPORIUM_KAFKA_BROKERS" : "the events database");
    return 0;
}

static int start(struct worker_ctx *w, bool relay, const char *consumers)
{
    int rc = 0;
    if (relay)
        rc = outbox_relay_start(w->app, w->bus, &w->relay);
    /* "none" still runs the broadcast consumers (bus_subscribe_broadcast): no name matches. */
    if (rc == 0)
        rc = bus_runner_start(w->bus, consumers, &w->runner);
    return rc;
}

static int worker_on_serve(struct app *app)
{
    struct worker_ctx *w = ctx_of(app);
    return w ? start(w, true, app_config(app)->consumers) : 0;
}

static void worker_deinit(struct app *app)
{
    struct worker_ctx *w = ctx_of(app);
    if (!w)
        return;
    bus_runner_stop(w->runner);
    outbox_relay_stop(w->relay);
    bus_free(w->bus);
    app_set_service_ctx(app, "worker", NULL);
    free(w);
}

static int stop_pipe[2] = {-1, -1};

static void on_stop_signal(int sig)
{
    unsigned char b = (unsigned char)sig;
    ssize_t n = write(stop_pipe[1], &b, 1);
    (void)n;
}

static int worker_command(struct app *app, int argc, char **argv)
{
    struct worker_ctx *w = ctx_of(app);
    const char *list = NULL;
    bool relay = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--consumers") && i + 1 < argc)
            list = argv[++i];
        else if (!strcmp(argv[i], "--relay"))
            relay = true;
    }
    if (list && strcmp(list, "all") != 0 && strcmp(list, "none") != 0) {
        for (const char *p = list; *p;) {
            const char *e = strchr(p, ',');
            size_t l = e ? (size_t)(e - p) : strlen(p);
            char name[32];
            snprintf(name, sizeof name, "%.*s", (int)(l < 31 ? l : 31), p);
            if (!l || !bus_consumer_known(name)) {
                char known[256];
                bus_consumer_names(known, sizeof known);
                fprintf(stderr, "emporium worker: --consumers: unknown consumer '%s' (known: %s)\n",
                        name, known);
                return 2;
            }
            p += l + (e ? 1 : 0);
        }
    }
    if (!w) {
        fprintf(stderr, "emporium worker: the worker service is not selected (--services)\n");
        return 2;
    }
    /* Threads started before this point (by services' init) may take the signal: a handler
     * that writes to a pipe works whichever thread runs it. */
    if (pipe(stop_pipe) < 0)
        return 1;
    struct sigaction sa = {.sa_handler = on_stop_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    int rc = start(w, relay, list);
    if (rc < 0) {
        fprintf(stderr, "emporium worker: cannot start: %s\n", err_str(rc));
        return 1;
    }
    char names[256];
    bus_consumer_names(names, sizeof names);
    log_info("worker: running (consumers %s%s)", list ? list : names, relay ? ", relay" : "");
    unsigned char sig = 0;
    while (read(stop_pipe[0], &sig, 1) < 0 && errno == EINTR)
        ;
    log_info("worker: stopping (signal %d)", (int)sig);
    bus_runner_stop(w->runner);
    w->runner = NULL;
    outbox_relay_stop(w->relay);
    w->relay = NULL;
    return 0;
}

static const struct db_migration events_migrations[] = {
    {.sql = BUS_LOG_MIGRATION},
};

static const struct service_db worker_dbs[] = {
    {"events", 0, events_migrations, 1},
    {NULL, 0, NULL, 0},
};

static const struct cli_flag worker_flags[] = {
    {"--consumers", "LIST", "consumers to run: all (default), or a comma list (analytics,...)", 0,
     0, false},
    {"--relay", NULL, "also run the outbox relay (serve runs it by default)", 0, 0, false},
    {NULL, NULL, NULL, 0, 0, false},
};

static const struct cli_command worker_cli = {
    "worker",
    "run event consumers (and optionally the outbox relay) until SIGTERM",
    "emporium worker --consumers analytics,recommendation",
    worker_flags,
    NULL,
};

const struct service service_worker = {
    .name = "worker",
    .routes = NULL,
    .dbs = worker_dbs,
    .init = worker_init,
    .command = "worker",
    .run_command = worker_command,
    .cli = &worker_cli,
    .on_serve = worker_on_serve,
    .deinit = worker_deinit,
};
