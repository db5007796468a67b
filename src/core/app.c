/* SPDX-License-Identifier: MIT */
/* app.c — the application context: databases, limiter, service lifecycle.
 *
 * app_new() opens every logical database that the selected services declare (a database
 * declared by two services is opened once), applies each service's migrations, then calls
 * every selected service's init() in registry order. app_free() undoes it in reverse. */
#include "emporium/app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/bus.h"
#include "emporium/err.h"
#include "emporium/log.h"
#include "emporium/metrics.h"
#include "emporium/ratelimit.h"
#include "emporium/redis.h"
#define EMPORIUM_SERVICE_NO_HTTP /* core: no HTTP types here */
#include "emporium/service.h"
#include "emporium/timer.h"
#include "emporium/trace.h"

#define APP_MAX_DBS 64
#define APP_MAX_SERVICES 32

struct app {
    const struct config *cfg;
    struct db *dbs[APP_MAX_DBS];
    int n_dbs;
    struct ratelimit *rl;
    struct redis *redis; /* NULL: no Redis configured */
    int n_inited;        /* services whose init() ran (index into services_all) */
    struct timers *timers;
    app_authenticate_fn authenticate; /* set by the user service's init() */
    struct {
        const char *service; /* static (the service's name) */
        void *ctx;
    } ctx[APP_MAX_SERVICES];
    int n_ctx;
};

int app_set_service_ctx(struct app *app, const char *service, void *ctx)
{
    for (int i = 0; i < app->n_ctx; i++)
        if (!strcmp(app->ctx[i].service, service)) {
            app->ctx[i].ctx = ctx;
            return 0;
        }
    if (app->n_ctx == APP_MAX_SERVICES)
        return ERR_NOMEM;
    app->ctx[app->n_ctx].service = service;
    app->ctx[app->n_ctx++].ctx = ctx;
    return 0;
}

void *app_service_ctx(const struct app *app, const char *service)
{
    for (int i = 0; i < app->n_ctx; i++)
        if (!strcmp(app->ctx[i].service, service))
            return app->ctx[i].ctx;
    return NULL;
}

int app_set_authenticator(struct app *app, app_authenticate_fn fn)
{
    if (fn && app->authenticate)
        return ERR_CONFLICT;
    app->authenticate = fn;
    return 0;
}

int app_authenticate(struct app *app, const char *token, struct app_identity *out)
{
    if (!app->authenticate)
        return ERR_UNAUTHORIZED;
    return app->authenticate(app, token, out);
}

struct timers *app_timers(struct app *app) { return app->timers; }
int app_start_timers(struct app *app) { return timers_start(app->timers, app); }

bool app_has_service(const struct app *app, const char *name)
{
    return config_runs_service(app->cfg, name);
}

struct db *app_db(struct app *app, const char *name)
{
    for (int i = 0; i < app->n_dbs; i++)
        if (!strcmp(db_name(app->dbs[i]), name))
            return app->dbs[i];
    return NULL;
}

struct db *app_db_shard(struct app *app, const char *base, int i)
{
    char name[64];
    snprintf(name, sizeof name, "%s_%d", base, i);
    return app_db(app, name);
}

int app_db_count(const struct app *app) { return app->n_dbs; }
struct db *app_db_at(struct app *app, int i)
{
    return i >= 0 && i < app->n_dbs ? app->dbs[i] : NULL;
}
const struct config *app_config(const struct app *app) { return app->cfg; }
struct ratelimit *app_ratelimit(struct app *app) { return app->rl; }
struct redis *app_redis(struct app *app) { return app->redis; }

/* The Redis client when EMPORIUM_REDIS_URL / _CLUSTER is set, and the rate limits on it
 * (local limits while it is down). Connecting happens on first use: a Redis that is down at
 * start is a degraded shop (/ready says so), not a failed start. */
static int app_open_redis(struct app *app, const struct config *cfg)
{
    if (!cfg->redis_url && !cfg->redis_cluster)
        return 0;
    struct redis_options o = {.url = cfg->redis_url,
                              .cluster = cfg->redis_cluster,
                              .password = cfg->redis_password,
                              .pool_size = cfg->redis_pool_size,
                              .timeout_ms = cfg->redis_timeout_ms};
    char why[96] = "";
    int rc = redis_open(&o, &app->redis, why, sizeof why);
    if (rc < 0) {
        log_error("redis: %s", why);
        return rc;
    }
    rc = metrics_add_writer(redis_metrics_write, app->redis);
    if (rc < 0)
        return rc;
    if (cfg->redis_rate_limits) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%srl:", cfg->redis_prefix);
        app->rl = ratelimit_redis_new(app->redis, prefix, app->rl);
        if (!app->rl)
            return ERR_NOMEM;
    }
    log_info("redis: %s (rate limits %s)", redis_is_cluster(app->redis) ? "cluster" : "one server",
             cfg->redis_rate_limits ? "shared through it" : "per process");
    return 0;
}

static int app_open_db(struct app *app, const char *name, const struct service_db *sd)
{
    struct db *db = app_db(app, name);
    if (!db) {
        if (app->n_dbs == APP_MAX_DBS)
            return ERR_NOMEM;
        struct db_options opt = {
            .url = app->cfg->database_url,
            .data_dir = app->cfg->data_dir,
            .pool_size = app->cfg->db_pool_size,
            .replica_urls = app->cfg->database_replica_urls,
            .replica_max_lag_ms = app->cfg->replica_max_lag_ms,
        };
        int rc = db_open(&db, name, &opt);
        if (rc < 0) {
            log_error("cannot open database %s: %s", name, err_str(rc));
            return rc;
        }
        app->dbs[app->n_dbs++] = db;
    }
    if (sd->n_migrations > 0) {
        int rc = db_migrate(db, sd->migrations, sd->n_migrations);
        if (rc < 0) {
            log_error("migrating database %s failed: %s", name, err_str(rc));
            return rc;
        }
    }
    return 0;
}

int app_new(struct app **out, const struct config *cfg)
{
    struct app *app = calloc(1, sizeof *app);
    if (!app)
        return ERR_NOMEM;
    app->cfg = cfg;
    app->rl = ratelimit_mem_new(200000);
    app->timers = timers_new();
    int rc = app->rl && app->timers ? 0 : ERR_NOMEM;
    (void)trace_start(cfg); /* before the services: consumers start in their init() */
    if (rc == 0)
        rc = app_open_redis(app, cfg);
    for (int s = 0; rc == 0 && services_all[s]; s++) {
        const struct service *svc = services_all[s];
        if (!app_has_service(app, svc->name) || !svc->dbs)
            continue;
        for (const struct service_db *sd = svc->dbs; rc == 0 && sd->name; sd++) {
            if (sd->shards == 0) {
                rc = app_open_db(app, sd->name, sd);
                continue;
            }
            for (int i = 0; rc == 0 && i < sd->shards; i++) {
                char name[64];
                snprintf(name, sizeof name, "%s_%d", sd->name, i);
                rc = app_open_db(app, name, sd);
            }
        }
    }
    for (int s = 0; rc == 0 && services_all[s]; s++) {
        const struct service *svc = services_all[s];
        bool here = app_has_service(app, svc->name);
        if ((here && svc->init) || (!here && svc->init_remote)) {
            rc = here ? svc->init(app) : svc->init_remote(app);
            if (rc < 0) {
                log_error("service %s failed to start: %s", svc->name, err_str(rc));
                break;
            }
        }
        app->n_inited = s + 1;
    }
    if (rc < 0) {
        app_free(app);
        return rc;
    }
    *out = app;
    return 0;
}

void app_free(struct app *app)
{
    if (!app)
        return;
    /* Jobs stop (a running one finishes) before the services they belong to. */
    timers_stop(app->timers);
    for (int s = app->n_inited - 1; s >= 0; s--) {
        const struct service *svc = services_all[s];
        if (app_has_service(app, svc->name) && svc->deinit)
            svc->deinit(app);
        else if (!app_has_service(app, svc->name) && svc->deinit_remote)
            svc->deinit_remote(app);
    }
    bus_reset();  /* subscriptions belong to the services just stopped */
    trace_stop(); /* sends the spans still queued */
    for (int i = app->n_dbs - 1; i >= 0; i--)
        db_close(app->dbs[i]);
    ratelimit_free(app->rl);
    redis_close(app->redis); /* after every user of it */
    timers_free(app->timers);
    free(app);
}
