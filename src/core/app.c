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
#include "emporium/ratelimit.h"
#include "emporium/service.h"

#define APP_MAX_DBS 64

#define APP_MAX_SVC_CTX 32

struct app {
    const struct config *cfg;
    struct db *dbs[APP_MAX_DBS];
    int n_dbs;
    struct ratelimit *rl;
    int n_inited; /* services whose init() ran (index into services_all) */
    struct {
        const char *name;
        void *ctx;
    } svc_ctx[APP_MAX_SVC_CTX]; /* each service's own state, set by its init() */
    int n_svc_ctx;
};

int app_set_service_ctx(struct app *app, const char *service, void *ctx)
{
    for (int i = 0; i < app->n_svc_ctx; i++)
        if (!strcmp(app->svc_ctx[i].name, service)) {
            app->svc_ctx[i].ctx = ctx;
            return 0;
        }
    if (app->n_svc_ctx == APP_MAX_SVC_CTX)
        return ERR_NOMEM;
    app->svc_ctx[app->n_svc_ctx].name = service;
    app->svc_ctx[app->n_svc_ctx++].ctx = ctx;
    return 0;
}

void *app_service_ctx(struct app *app, const char *service)
{
    for (int i = 0; i < app->n_svc_ctx; i++)
        if (!strcmp(app->svc_ctx[i].name, service))
            return app->svc_ctx[i].ctx;
    return NULL;
}

bool app_has_service(const struct app *app, const char *name)
{
    const char *list = app->cfg->services;
    if (!list || !*list || !strcmp(list, "all"))
        return true;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !strncmp(p, name, n))
            return true;
        if (!end)
            break;
        p = end + 1;
    }
    return false;
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
struct db *app_db_at(struct app *app, int i) { return i >= 0 && i < app->n_dbs ? app->dbs[i] : NULL; }
const struct config *app_config(const struct app *app) { return app->cfg; }
struct ratelimit *app_ratelimit(struct app *app) { return app->rl; }

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
    int rc = app->rl ? 0 : ERR_NOMEM;
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
        if (app_has_service(app, svc->name) && svc->init) {
            rc = svc->init(app);
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
    for (int s = app->n_inited - 1; s >= 0; s--) {
        const struct service *svc = services_all[s];
        if (app_has_service(app, svc->name) && svc->deinit)
            svc->deinit(app);
    }
    bus_reset(); /* subscriptions belong to the services just stopped */
    for (int i = app->n_dbs - 1; i >= 0; i--)
        db_close(app->dbs[i]);
    ratelimit_free(app->rl);
    free(app);
}
