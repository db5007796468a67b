/* SPDX-License-Identifier: MIT */
/* inventory.c — the inventory service: its database, its lifecycle and the reservation
 * sweeper.
 *
 * The logic lives in inventory_store.c (svc/inventory.h) and the admin routes in
 * inventory_http.c. Reservations expire on their own: a background thread started by init()
 * wakes every INVENTORY_SWEEP_MS and releases up to INVENTORY_SWEEP_BATCH expired active
 * reservations (more rounds follow at once while it finds full batches). Expired
 * reservations are also released lazily when touched (confirm, or a reserve that finds
 * stock short). Several processes may sweep one database: each release is a conditional
 * state transition, so a reservation is given back exactly once. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include "emporium/app.h"
#include "emporium/err.h"
#include "emporium/log.h"
#include "emporium/outbox.h"
#include "emporium/service.h"
#include "inventory_internal.h"

static pthread_t sweeper;
static bool sweeper_running;
static bool sweeper_stop;
static pthread_mutex_t sweeper_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sweeper_cv;

static void *sweeper_main(void *arg)
{
    struct app *app = arg;
    pthread_mutex_lock(&sweeper_mu);
    while (!sweeper_stop) {
        pthread_mutex_unlock(&sweeper_mu);
        int n;
        do {
            n = inventory__sweep(app, INVENTORY_SWEEP_BATCH);
            if (n > 0)
                log_info("inventory: released %d expired reservation(s)", n);
        } while (n >= INVENTORY_SWEEP_BATCH && !__atomic_load_n(&sweeper_stop, __ATOMIC_RELAXED));
        if (n < 0 && n != ERR_UNAVAILABLE)
            log_warn("inventory: sweeping expired reservations failed: %s", err_str(n));
        pthread_mutex_lock(&sweeper_mu);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)INVENTORY_SWEEP_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        while (!sweeper_stop && pthread_cond_timedwait(&sweeper_cv, &sweeper_mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&sweeper_mu);
    return NULL;
}

static int inventory_init(struct app *app)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sweeper_cv, &ca);
    pthread_condattr_destroy(&ca);
    sweeper_stop = false;
    if (pthread_create(&sweeper, NULL, sweeper_main, app) != 0) {
        pthread_cond_destroy(&sweeper_cv);
        return ERR_NOMEM;
    }
    sweeper_running = true;
    return 0;
}

static void inventory_deinit(struct app *app)
{
    if (!sweeper_running)
        return;
    pthread_mutex_lock(&sweeper_mu);
    __atomic_store_n(&sweeper_stop, true, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&sweeper_cv);
    pthread_mutex_unlock(&sweeper_mu);
    pthread_join(sweeper, NULL);
    pthread_cond_destroy(&sweeper_cv);
    sweeper_running = false;
}

static const struct db_migration inventory_migrations[] = {
    {.sql = "CREATE TABLE inventory ("
            " product_id BIGINT PRIMARY KEY,"
            " available BIGINT NOT NULL CHECK (available >= 0),"
            " reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),"
            " updated_at BIGINT NOT NULL);"
            "CREATE TABLE reservations ("
            " id BIGINT PRIMARY KEY,"
            " status TEXT NOT NULL CHECK (status IN ('active', 'confirmed', 'released')),"
            " created_at BIGINT NOT NULL,"
            " expires_at BIGINT NOT NULL,"
            " updated_at BIGINT NOT NULL);"
            "CREATE INDEX reservations_expiry ON reservations (status, expires_at);"
            "CREATE TABLE reservation_items ("
            " reservation_id BIGINT NOT NULL REFERENCES reservations(id) ON DELETE CASCADE,"
            " product_id BIGINT NOT NULL,"
            " quantity INTEGER NOT NULL CHECK (quantity > 0),"
            " PRIMARY KEY (reservation_id, product_id));"},
    {.sql = OUTBOX_MIGRATION},
};

static const struct service_db inventory_dbs[] = {
    {"inventory", 0, inventory_migrations,
     sizeof inventory_migrations / sizeof inventory_migrations[0]},
    {NULL, 0, NULL, 0},
};

const struct service service_inventory = {
    .name = "inventory",
    .routes = inventory__routes,
    .dbs = inventory_dbs,
    .init = inventory_init,
    .deinit = inventory_deinit,
};
