/* SPDX-License-Identifier: MIT */
/* service.h — how a service plugs into the binary.
 *
 * Each folder src/services/<name>/ defines one `const struct service service_<name>`. The
 * build generates the registry from the folder names, so adding a service never edits a
 * shared file. Its OpenAPI paths live next to it in <name>.openapi.json (a document with
 * "paths" and optionally "components"), embedded at build time and merged into
 * /openapi.json. Lifecycle: every service's init() runs once at start-up (after the app's
 * databases are open and migrated), routes are then served, deinit() runs at shutdown. */
#ifndef EMPORIUM_SERVICE_H
#define EMPORIUM_SERVICE_H
#include "emporium/db.h"
#include "emporium/http.h"

struct service_db {
    const char *name;   /* logical database, e.g. "users"; "orders_%d" is sharded */
    int shards;         /* 0 = not sharded; else name is a printf pattern with %d */
    const struct db_migration *migrations;
    int n_migrations;
};

struct service {
    const char *name;                /* "user" — also the rate-limit and metrics label */
    const struct http_route *routes; /* terminated by an entry with method == NULL */
    const struct service_db *dbs;    /* terminated by an entry with name == NULL; may be NULL */
    int (*init)(struct app *app);    /* may be NULL */
    /* An `emporium <command> …` subcommand this service provides (e.g. "user", "seed"), run
     * with the app open (databases migrated, init() done, no HTTP server). argv[0] is the
     * command name. Returns a process exit status. Both may be NULL. */
    const char *command;
    int (*run_command)(struct app *app, int argc, char **argv);
    const char *command_help; /* one line for `emporium --help` */
    /* Called by `emporium serve` after init() and before listening (e.g. the demo catalog);
     * may be NULL. A negative return aborts the start. */
    int (*on_serve)(struct app *app);
    void (*deinit)(struct app *app); /* may be NULL */
};

/* The generated registry: every service, in a stable order, NULL-terminated. */
extern const struct service *const services_all[];

#endif
