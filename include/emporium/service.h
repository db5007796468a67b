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
#include <stdbool.h>

#include "emporium/db.h"
/* Transitional: services whose domain files still use HTTP types get emporium/http.h from
 * here. A layered service defines EMPORIUM_SERVICE_NO_HTTP before including this header
 * (src/services/user does); remove this include once every service is layered. */
#ifndef EMPORIUM_SERVICE_NO_HTTP
#include "emporium/http.h"
#endif

struct app;
struct http_route;

struct service_db {
    const char *name; /* logical database, e.g. "users"; "orders_%d" is sharded */
    int shards;       /* 0 = not sharded; else name is a printf pattern with %d */
    const struct db_migration *migrations;
    int n_migrations;
};

/* A command-line flag of a command, declared so that main.c can check every argument before
 * anything is opened (a wrong value never touches the data dir), accept both --flag=value
 * and --flag value, and print the command's own --help. */
struct cli_flag {
    const char *name;  /* "--products" */
    const char *value; /* placeholder of its value ("N", "FILE"); NULL = a switch */
    const char *help;  /* one line */
    long min, max;     /* min < max: the value must be an integer from min to max */
    bool required;
};

/* `emporium <name> …`, or a subcommand (`emporium user create …`). The command function
 * gets argv normalised to {name, [subcommand,] --flag, value, …}: only declared flags, each
 * value a separate argument, already range-checked. */
struct cli_command {
    const char *name;
    const char *summary;          /* one line for `emporium --help` */
    const char *example;          /* a whole command line, e.g. "emporium seed --products 500" */
    const struct cli_flag *flags; /* terminated by {NULL}; may be NULL */
    const struct cli_command *subcommands; /* terminated by {NULL}; NULL when none */
};

struct service {
    const char *name;                /* "user" — also the rate-limit and metrics label */
    const struct http_route *routes; /* terminated by an entry with method == NULL */
    const struct service_db *dbs;    /* terminated by an entry with name == NULL; may be NULL */
    int (*init)(struct app *app);    /* may be NULL; register timer jobs (timer.h) here */
    /* An `emporium <command> …` subcommand this service provides (e.g. "user", "seed"), run
     * with the app open (databases migrated, init() done, no HTTP server, no timer jobs).
     * argv[0] is the command name. Returns a process exit status. Both may be NULL. */
    const char *command;
    int (*run_command)(struct app *app, int argc, char **argv);
    const char *command_help; /* one line for `emporium --help` (when cli is NULL) */
    /* The command's flags and help; when NULL, arguments go unchecked to run_command. */
    const struct cli_command *cli;
    /* Called by `emporium serve` after init() and before listening (e.g. the demo catalog);
     * may be NULL. A negative return aborts the start. */
    int (*on_serve)(struct app *app);
    void (*deinit)(struct app *app); /* may be NULL */
    /* Instead of init()/deinit() when the service does NOT run in this process: sets up its
     * client over HTTP where the app needs more than a per-call choice (the user service's
     * remote authenticator). Both may be NULL; a negative return aborts the start. */
    int (*init_remote)(struct app *app);
    void (*deinit_remote)(struct app *app);
};

/* The generated registry: every service, in a stable order, NULL-terminated. */
extern const struct service *const services_all[];

#endif
