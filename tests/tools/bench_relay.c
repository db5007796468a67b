/* SPDX-License-Identifier: MIT */
/* bench_relay.c — events per second through the outbox relay, on either bus adapter.
 *
 * Usage: emporium-bench-relay [--events N] [--data-dir DIR]
 *   (EMPORIUM_KAFKA_BROKERS set: the Kafka adapter; else the embedded log; storage as
 *   configured by EMPORIUM_DATABASE_URL, SQLite under DIR by default)
 *
 * Writes N order events into the six orders outboxes (batches of 100 rows per transaction,
 * as checkouts would), then starts the relay and times it from the start until every row
 * is acknowledged by the bus and marked sent. Prints one line: events, seconds, events/s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "emporium/app.h"
#include "emporium/bus.h"
#include "emporium/config.h"
#include "emporium/db.h"
#include "emporium/id.h"
#include "emporium/outbox.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long n = 20000;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--events") && i + 1 < argc)
            n = atol(argv[++i]);
        else if (!strcmp(argv[i], "--data-dir") && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--events N] [--data-dir DIR]\n", argv[0]);
            return 2;
        }
    }
    char tmp[] = "/tmp/emp-benchrelay-XXXXXX";
    if (!dir && !(dir = mkdtemp(tmp)))
        return 1;
    struct config cfg;
    if (config_from_env(&cfg) < 0)
        return 2;
    cfg.data_dir = dir;
    cfg.services = "order,worker";
    cfg.consumers = "none";
    cfg.demo = false;
    struct app *app;
    if (app_new(&app, &cfg) < 0)
        return 1;
    json_t *data = json_pack("{s:s,s:s,s:{s:i,s:s}}", "order_id", "1", "status", "paid", "total",
                             "amount", 1000, "currency", "USD");
    for (long done = 0; done < n;) {
        int shard = (int)(done / 100 % 6);
        struct db_conn *c;
        if (db_conn_take(app_db_shard(app, "orders", shard), &c) < 0 || db_begin(c) < 0)
            return 1;
        for (int k = 0; k < 100 && done < n; k++, done++)
            if (outbox_add(c, (unsigned)shard, BUS_TOPIC_ORDER, "order", id_new((unsigned)shard),
                           "order.paid", data) < 0)
                return 1;
        if (db_commit(c) < 0)
            return 1;
        db_conn_give(c);
    }
    json_decref(data);
    struct bus *bus;
    int rc = cfg.kafka_brokers ? bus_kafka_new(cfg.kafka_brokers, cfg.kafka_partitions, &bus)
                               : bus_log_new(app_db(app, "events"), cfg.kafka_partitions,
                                             cfg.event_retention_hours, &bus);
    if (rc < 0)
        return 1;
    double t0 = now_s();
    struct outbox_relay *r;
    if (outbox_relay_start(app, bus, &r) < 0)
        return 1;
    struct outbox_relay_stats st = {0};
    while (st.published < n) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        outbox_relay_stats(r, &st);
    }
    double dt = now_s() - t0;
    outbox_relay_stop(r);
    printf("relay (%s): %ld events in %.3f s = %.0f events/s\n", bus->ops->name, n, dt,
           (double)n / dt);
    bus_free(bus);
    app_free(app);
    if (dir == tmp) {
        char cmd[96];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
        if (system(cmd) != 0)
            return 1;
    }
    return 0;
}
