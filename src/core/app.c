/* SPDX-License-Identifier: MIT */
/* app.c — the application context: databases, limiter, service lifecycle.
 *
 * app_new() opens every logical database that the selected services declare (a database
 * declared by two services is opened once), applies each service's migrations (on
 * PostgreSQL several databases at once: app_open_dbs), then calls every selected service's
 * init() in registry order. app_free() undoes it in reverse. */
#include "emporium/app.h"

#include <pthread.h>
#include <stdatomic.h>
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
    /* Grows at run time too (app_db_attach): a slot is filled before the count that makes
     * it visible is stored (release), and readers load the count first (acquire). */
    _Atomic int n_dbs;
    pthread_mutex_t attach_mu; /* serializes app_db_attach */
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
    int n = atomic_load_explicit(&app->n_dbs, memory_order_acquire);
    for (int i = 0; i < n; i++)
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

int app_db_count(const struct app *app)
{
    return atomic_load_explicit(&app->n_dbs, memory_order_acquire);
}
struct db *app_db_at(struct app *app, int i)
{
    return i >= 0 && i < app_db_count(app) ? app->dbs[i] : NULL;
}

int app_db_attach(struct app *app, struct db *db)
{
    pthread_mutex_lock(&app->attach_mu);
    int n = atomic_load_explicit(&app->n_dbs, memory_order_relaxed), rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        if (!strcmp(db_name(app->dbs[i]), db_name(db)))
            rc = ERR_CONFLICT;
    if (rc == 0 && n == APP_MAX_DBS)
        rc = ERR_NOMEM;
    if (rc == 0) {
        app->dbs[n] = db;
        atomic_store_explicit(&app->n_dbs, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&app->attach_mu);
    return rc;
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

/* One logical database to open: its name and every declaration of it (a database declared
 * by two services is opened once, and each declaration's migrations applied in registry
 * order), then what became of it. */
struct app_open_job {
    char name[64];
    const struct service_db *sd[APP_MAX_SERVICES];
    int nsd;
    struct db *db;
    int rc;
};

struct app_opener {
    const struct config *cfg;
    struct app_open_job *jobs;
    int njobs;
    _Atomic int next;    /* the next job a thread takes */
    _Atomic bool failed; /* one failed: the jobs not started yet are left alone */
};

static void app_open_one(const struct config *cfg, struct app_open_job *j)
{
    struct db_options opt = {
        .url = cfg->database_url,
        .data_dir = cfg->data_dir,
        .pool_size = cfg->db_pool_size,
        .replica_urls = cfg->database_replica_urls,
        .replica_max_lag_ms = cfg->replica_max_lag_ms,
        .prepare = cfg->db_prepare,
    };
    j->rc = db_open(&j->db, j->name, &opt);
    if (j->rc < 0) {
        log_error("cannot open database %s: %s", j->name, err_str(j->rc));
        return;
    }
    for (int k = 0; k < j->nsd && j->rc == 0; k++) {
        if (j->sd[k]->n_migrations <= 0)
            continue;
        int rc = db_migrate(j->db, j->sd[k]->migrations, j->sd[k]->n_migrations);
        if (rc < 0) {
            log_error("migrating database %s failed: %s", j->name, err_str(rc));
            j->rc = rc;
        }
    }
}

static void *app_open_main(void *arg)
{
    struct app_opener *o = arg;
    for (int i; !atomic_load(&o->failed) && (i = atomic_fetch_add(&o->next, 1)) < o->njobs;) {
        app_open_one(o->cfg, &o->jobs[i]);
        if (o->jobs[i].rc < 0)
            atomic_store(&o->failed, true);
    }
    return NULL;
}

static int app_add_job(struct app_open_job *jobs, int *njobs, const char *name,
                       const struct service_db *sd)
{
    struct app_open_job *j = NULL;
    for (int i = 0; i < *njobs && !j; i++)
        if (!strcmp(jobs[i].name, name))
            j = &jobs[i];
    if (!j) {
        if (*njobs == APP_MAX_DBS)
            return ERR_NOMEM;
        j = &jobs[(*njobs)++];
        snprintf(j->name, sizeof j->name, "%s", name);
    }
    if (j->nsd == APP_MAX_SERVICES)
        return ERR_NOMEM;
    j->sd[j->nsd++] = sd;
    return 0;
}

/* Opens (creating when missing) and migrates every database the selected services declare.
 * On PostgreSQL each one costs several round trips (and, the first time, a CREATE DATABASE
 * and a new server process), all waiting on the server: up to APP_OPEN_THREADS of them are
 * opened at once, each database by one thread, so what happens to one database happens in
 * the same order as before. Embedded SQLite opens local files: one at a time, in this
 * thread. app->dbs keeps the declaration order either way; on a failure the first failed
 * database's error is returned (each failure is logged) and the ones opened are closed by
 * app_free. */
#define APP_OPEN_THREADS 6
static int app_open_dbs(struct app *app, const struct config *cfg)
{
    struct app_open_job *jobs = calloc(APP_MAX_DBS, sizeof *jobs);
    if (!jobs)
        return ERR_NOMEM;
    int njobs = 0, rc = 0;
    for (int s = 0; rc == 0 && services_all[s]; s++) {
        const struct service *svc = services_all[s];
        if (!app_has_service(app, svc->name) || !svc->dbs)
            continue;
        for (const struct service_db *sd = svc->dbs; rc == 0 && sd->name; sd++) {
            if (sd->shards == 0) {
                rc = app_add_job(jobs, &njobs, sd->name, sd);
                continue;
            }
            for (int i = 0; rc == 0 && i < sd->shards; i++) {
                char name[64];
                snprintf(name, sizeof name, "%s_%d", sd->name, i);
                rc = app_add_job(jobs, &njobs, name, sd);
            }
        }
    }
    if (rc < 0) {
        free(jobs);
        return rc;
    }
    const char *url = cfg->database_url;
    bool pg = url && (!strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13));
    struct app_opener o = {.cfg = cfg, .jobs = jobs, .njobs = njobs};
    pthread_t th[APP_OPEN_THREADS];
    int nth = 0;
    while (pg && nth < APP_OPEN_THREADS && nth < njobs - 1 &&
           pthread_create(&th[nth], NULL, app_open_main, &o) == 0)
        nth++;
    app_open_main(&o); /* this thread takes jobs too (all of them without helpers) */
    for (int i = 0; i < nth; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < njobs; i++) {
        if (jobs[i].db)
            app->dbs[atomic_fetch_add(&app->n_dbs, 1)] = jobs[i].db;
        if (rc == 0 && jobs[i].rc < 0)
            rc = jobs[i].rc;
    }
    free(jobs);
    return rc;
}

int app_new(struct app **out, const struct config *cfg)
{
    struct app *app = calloc(1, sizeof *app);
    if (!app)
        return ERR_NOMEM;
    pthread_mutex_init(&app->attach_mu, NULL);
    app->cfg = cfg;
    app->rl = ratelimit_mem_new(200000);
    app->timers = timers_new();
    int rc = app->rl && app->timers ? 0 : ERR_NOMEM;
    (void)trace_start(cfg); /* before the services: consumers start in their init() */
    if (rc == 0)
        rc = app_open_redis(app, cfg);
    if (rc == 0)
        rc = app_open_dbs(app, cfg);
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
    for (int i = app_db_count(app) - 1; i >= 0; i--)
        db_close(app->dbs[i]);
    ratelimit_free(app->rl);
    redis_close(app->redis); /* after every user of it */
    timers_free(app->timers);
    pthread_mutex_destroy(&app->attach_mu);
    free(app);
}
