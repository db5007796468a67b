/* SPDX-License-Identifier: MIT */
/* main.c — the `emporium` command: serve, migrate, and the services' own subcommands
 * (user, seed, …). Configuration comes from EMPORIUM_* variables; flags override them. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <sodium.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/log.h"
#include "emporium/server.h"
#include "emporium/service.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: emporium <command> [options]\n\n"
            "commands:\n"
            "  serve     run the shop's HTTP API (default: every service, embedded SQLite)\n"
            "  migrate   create or upgrade every database, then exit\n"
            "  openapi   print the OpenAPI 3.1 document of every route\n");
    for (int s = 0; services_all[s]; s++)
        if (services_all[s]->command)
            fprintf(f, "  %-9s %s\n", services_all[s]->command,
                    services_all[s]->command_help ? services_all[s]->command_help : "");
    fprintf(f,
            "\noptions (each also an environment variable):\n"
            "  --listen ADDR:PORT   EMPORIUM_LISTEN        (default 0.0.0.0:8080)\n"
            "  --data-dir DIR       EMPORIUM_DATA_DIR      (default ./data; SQLite files)\n"
            "  --services LIST      EMPORIUM_SERVICES      (default all; e.g. order,inventory)\n"
            "  --threads N          EMPORIUM_THREADS       (default: CPU count)\n"
            "  --no-demo            EMPORIUM_DEMO=off      (no demo catalog on an empty shop)\n"
            "                       EMPORIUM_DATABASE_URL  postgresql://… (default: embedded SQLite)\n"
            "                       EMPORIUM_RATE_LIMITS=off, EMPORIUM_ACCESS_LOG=off, …\n"
            "  --help, --version\n"
            "See README.md for every setting.\n");
}

/* Pulls the global flags out of argv (in place); what remains is the command's. */
static int take_global_flags(struct config *cfg, int *argc, char **argv)
{
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        const char *a = argv[i];
        const char **target = NULL;
        if (!strcmp(a, "--listen"))
            target = &cfg->listen;
        else if (!strcmp(a, "--data-dir"))
            target = &cfg->data_dir;
        else if (!strcmp(a, "--services"))
            target = &cfg->services;
        if (target || !strcmp(a, "--threads")) {
            if (i + 1 >= *argc) {
                fprintf(stderr, "emporium: %s needs a value\n", a);
                return ERR_INVALID;
            }
            if (target) {
                *target = argv[++i];
            } else {
                char *end;
                long n = strtol(argv[++i], &end, 10);
                if (*end || n < 1 || n > 256) {
                    fprintf(stderr, "emporium: --threads must be 1 to 256\n");
                    return ERR_INVALID;
                }
                cfg->threads = (int)n;
            }
            continue;
        }
        if (!strcmp(a, "--no-demo")) {
            cfg->demo = false;
            continue;
        }
        argv[out++] = argv[i];
    }
    *argc = out;
    return 0;
}

static int cmd_serve(struct config *cfg)
{
    /* Block the stop signals in every thread (the pool inherits the mask); main waits. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct app *app;
    if (app_new(&app, cfg) < 0)
        return 1;
    for (int s = 0; services_all[s]; s++) {
        const struct service *svc = services_all[s];
        if (svc->on_serve && app_has_service(app, svc->name) && svc->on_serve(app) < 0) {
            app_free(app);
            return 1;
        }
    }
    struct http_server *srv;
    if (http_server_start(&srv, app) < 0) {
        app_free(app);
        return 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    log_info("received %s, draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    http_server_stop(srv);
    app_free(app);
    log_info("stopped");
    return 0;
}

static int cmd_migrate(struct config *cfg)
{
    struct app *app;
    if (app_new(&app, cfg) < 0)
        return 1;
    for (int i = 0; i < app_db_count(app); i++) {
        struct db *db = app_db_at(app, i);
        printf("%-14s schema version %d\n", db_name(db), db_schema_version(db));
    }
    app_free(app);
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "openapi")) {
        /* The same document GET /openapi.json serves, for linters and client generators. */
        json_t *doc = http_openapi_document();
        if (!doc || json_dumpf(doc, stdout, JSON_INDENT(2)) != 0) {
            json_decref(doc);
            return 1;
        }
        putchar('\n');
        json_decref(doc);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("emporium %s\n", EMPORIUM_VERSION);
        return 0;
    }
    struct config cfg;
    if (config_from_env(&cfg) < 0)
        return 2;
    int cargc = argc - 1;
    char **cargv = argv + 1;
    if (take_global_flags(&cfg, &cargc, cargv) < 0)
        return 2;
    for (int i = 1; i < cargc; i++)
        if (!strcmp(cargv[i], "--help") || !strcmp(cargv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    if (!strcmp(cfg.log_level, "debug"))
        log_set_level(LOG_DEBUG);
    else if (!strcmp(cfg.log_level, "warn"))
        log_set_level(LOG_WARN);
    else if (!strcmp(cfg.log_level, "error"))
        log_set_level(LOG_ERROR);
    if (sodium_init() < 0) {
        fprintf(stderr, "emporium: libsodium failed to initialise\n");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc;
    if (!strcmp(cmd, "serve")) {
        if (cargc > 1) {
            fprintf(stderr, "emporium serve: unexpected argument %s\n", cargv[1]);
            return 2;
        }
        rc = cmd_serve(&cfg);
    } else if (!strcmp(cmd, "migrate")) {
        rc = cmd_migrate(&cfg);
    } else {
        rc = -1;
        for (int s = 0; services_all[s]; s++) {
            const struct service *svc = services_all[s];
            if (!svc->command || strcmp(svc->command, cmd) != 0)
                continue;
            struct app *app;
            if (app_new(&app, &cfg) < 0) {
                rc = 1;
                break;
            }
            rc = svc->run_command(app, cargc, cargv);
            app_free(app);
            break;
        }
        if (rc == -1) {
            fprintf(stderr, "emporium: unknown command '%s'\n\n", cmd);
            usage(stderr);
            rc = 2;
        }
    }
    curl_global_cleanup();
    return rc;
}
