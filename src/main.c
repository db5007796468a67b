/* SPDX-License-Identifier: MIT */
/* main.c — the `emporium` command: serve, migrate, openapi, version, and the services' own
 * commands (user, seed, …).
 *
 * Conventions (clig.dev): `emporium <command> --help` (or -h) prints that command's flags and
 * an example on stdout; `--flag=value` and `--flag value` both work; every argument is
 * checked before anything is opened, and an unknown command or flag, a missing or wrong
 * value, or a bad EMPORIUM_* setting exits 2 with the reason on stderr. Logs and diagnostics
 * go to stderr; a command's output (tables, JSON) goes to stdout. Exit status: 0 done, 1
 * failed, 2 usage or configuration error. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <sodium.h>

#include "emporium/app.h"
#include "emporium/backup.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/log.h"
#include "emporium/schema.h"
#include "emporium/server.h"
#include "emporium/service.h"

#define MAX_ARGS 128

/* Flags that set a configuration value; the same names as the EMPORIUM_* variables. */
static const struct {
    const char *flag, *var;
} config_flags[] = {
    {"--listen", "EMPORIUM_LISTEN"},
    {"--data-dir", "EMPORIUM_DATA_DIR"},
    {"--services", "EMPORIUM_SERVICES"},
    {"--threads", "EMPORIUM_THREADS"},
};

static const struct cli_flag serve_flags[] = {
    {"--listen", "ADDR:PORT", "address to listen on (EMPORIUM_LISTEN; default 0.0.0.0:8080)", 0, 0,
     false},
    {"--data-dir", "DIR", "SQLite files (EMPORIUM_DATA_DIR; default ./data)", 0, 0, false},
    {"--services", "LIST",
     "services to run, e.g. product,inventory (EMPORIUM_SERVICES; default all)", 0, 0, false},
    {"--threads", "N", "HTTP worker threads, 0 = automatic (EMPORIUM_THREADS)", 0, 256, false},
    {"--no-demo", NULL, "no demo catalog on an empty shop (EMPORIUM_DEMO=off)", 0, 0, false},
    {NULL, NULL, NULL, 0, 0, false},
};
static const struct cli_flag migrate_flags[] = {
    {"--data-dir", "DIR", "SQLite files (EMPORIUM_DATA_DIR; default ./data)", 0, 0, false},
    {"--services", "LIST", "only these services' databases (EMPORIUM_SERVICES; default all)", 0, 0,
     false},
    {"--plan", NULL, "print what would run, per database and migration; apply nothing", 0, 0,
     false},
    {NULL, NULL, NULL, 0, 0, false},
};
/* Every service command also takes --data-dir. */
static const struct cli_flag data_dir_flag = {
    "--data-dir", "DIR", "SQLite files (EMPORIUM_DATA_DIR; default ./data)", 0, 0, false};

static const struct cli_command cmd_serve_cli = {
    "serve", "run the shop's HTTP API (every service, embedded SQLite by default)",
    "emporium serve --listen 127.0.0.1:8080 --data-dir /var/lib/emporium", serve_flags, NULL};
static const struct cli_command cmd_migrate_cli = {
    "migrate", "create or upgrade every database, print their schema versions, exit",
    "EMPORIUM_DATABASE_URL=postgresql://shop@db/shop emporium migrate", migrate_flags, NULL};
static const struct cli_command cmd_openapi_cli = {
    "openapi", "print the OpenAPI 3.1 document of every route (JSON)",
    "emporium openapi > openapi.json", NULL, NULL};
static const struct cli_command cmd_version_cli = {"version", "print the version",
                                                   "emporium version", NULL, NULL};

static const struct cli_command *const builtins[] = {&cmd_serve_cli, &cmd_migrate_cli,
                                                     &cmd_openapi_cli, &cmd_version_cli};
#define N_BUILTINS (sizeof builtins / sizeof builtins[0])

static void usage(FILE *f)
{
    fprintf(f,
            "emporium %s — an e-commerce platform in one binary\n\n"
            "usage: emporium <command> [flags]\n\ncommands:\n",
            EMPORIUM_VERSION);
    for (size_t i = 0; i < N_BUILTINS; i++)
        fprintf(f, "  %-9s %s\n", builtins[i]->name, builtins[i]->summary);
    for (int s = 0; services_all[s]; s++) {
        const struct service *svc = services_all[s];
        if (!svc->command)
            continue;
        fprintf(f, "  %-9s %s\n", svc->command,
                svc->cli            ? svc->cli->summary
                : svc->command_help ? svc->command_help
                                    : "");
    }
    fprintf(f, "  %-9s %s\n  %-9s %s\n", "backup", "consistent online copy of every database",
            "restore", "install a backup into a new data dir");
    fprintf(f, "\n  emporium <command> --help   flags and an example of one command\n"
               "  emporium serve --help       also every EMPORIUM_* setting\n"
               "  emporium --version\n\n"
               "Settings come from EMPORIUM_* environment variables; flags win over them.\n");
}

static void print_flags(FILE *f, const struct cli_flag *flags, bool with_data_dir)
{
    const struct cli_flag *extra[2] = {with_data_dir ? &data_dir_flag : NULL, NULL};
    for (int pass = 0; pass < 2; pass++) {
        for (const struct cli_flag *fl = pass ? extra[0] : flags; fl && fl->name;
             fl = pass ? NULL : fl + 1) {
            char left[64];
            snprintf(left, sizeof left, "%s%s%s", fl->name, fl->value ? " " : "",
                     fl->value ? fl->value : "");
            fprintf(f, "  %-26s %s%s", left, fl->help, fl->required ? " (required)" : "");
            if (fl->min < fl->max)
                fprintf(f, " [%ld..%ld]", fl->min, fl->max);
            fputc('\n', f);
        }
    }
}

/* `emporium <cmd> [sub] --help` on stdout. */
static void command_help(FILE *f, const char *cmd, const struct cli_command *c, bool service,
                         const char *one_line)
{
    if (!c) {
        fprintf(f, "usage: emporium %s [arguments]\n\n%s\n", cmd, one_line ? one_line : "");
        return;
    }
    if (c->subcommands) {
        fprintf(f, "usage: emporium %s <subcommand> [flags]\n\n%s\n\nsubcommands:\n", cmd,
                c->summary);
        for (const struct cli_command *s = c->subcommands; s->name; s++)
            fprintf(f, "  %-12s %s\n", s->name, s->summary);
        fprintf(f, "\n  emporium %s <subcommand> --help   its flags and an example\n", cmd);
        if (c->example)
            fprintf(f, "\nexample:\n  %s\n", c->example);
        return;
    }
    fprintf(f, "usage: %s%s%s [flags]\n\n%s\n", "emporium ", cmd, "", c->summary);
    bool has_flags = (c->flags && c->flags->name) || service;
    if (has_flags) {
        fputs("\nflags:\n", f);
        print_flags(f, c->flags, service);
    }
    fputs("  -h, --help                 this help\n", f);
    if (c->example)
        fprintf(f, "\nexample:\n  %s\n", c->example);
    if (c == &cmd_serve_cli) {
        fputs("\nsettings (environment; a bad value stops the server, exit 2):\n", f);
        config_print_settings(f);
    }
}

static const struct cli_flag *find_flag(const struct cli_flag *flags, const char *name, size_t len,
                                        bool service)
{
    for (const struct cli_flag *fl = flags; fl && fl->name; fl++)
        if (strlen(fl->name) == len && !strncmp(fl->name, name, len))
            return fl;
    if (service && strlen(data_dir_flag.name) == len && !strncmp(data_dir_flag.name, name, len))
        return &data_dir_flag;
    return NULL;
}

static bool is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

/* Checks args (after the command and subcommand words) against c's flags; applies the
 * configuration flags to cfg; appends the command's own flags, normalised, to out.
 * Returns 0, 1 when --help was printed, or 2 (message printed). */
static int parse_flags(const char *what, const struct cli_command *c, bool service, int argc,
                       char **argv, struct config *cfg, char **out, int *n_out)
{
    bool seen_required[32] = {false};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a))
            return 1;
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            fprintf(stderr, "emporium %s: unexpected argument '%s' (see emporium %s --help)\n",
                    what, a, what);
            return 2;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const struct cli_flag *fl = find_flag(c->flags, a, len, service);
        if (!fl) {
            fprintf(stderr, "emporium %s: unknown flag %.*s (see emporium %s --help)\n", what,
                    (int)len, a, what);
            return 2;
        }
        const char *value = NULL;
        if (!fl->value) {
            if (eq) {
                fprintf(stderr, "emporium %s: %s takes no value\n", what, fl->name);
                return 2;
            }
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        }
        if (fl->value && (!value || !*value)) {
            fprintf(stderr, "emporium %s: %s needs a value (%s)\n", what, fl->name, fl->value);
            return 2;
        }
        if (fl->value && fl->min < fl->max) {
            char *end;
            long n = strtol(value, &end, 10);
            if (end == value || *end || n < fl->min || n > fl->max) {
                fprintf(stderr,
                        "emporium %s: %s %s is not valid: expected an integer from %ld to %ld\n",
                        what, fl->name, value, fl->min, fl->max);
                return 2;
            }
        }
        if (c->flags) {
            long idx = fl - c->flags;
            if (idx >= 0 && idx < 32 && fl != &data_dir_flag)
                seen_required[idx] = true;
        }
        /* Configuration flags go to cfg, the command's own to its argv. */
        bool is_config = false;
        for (size_t k = 0; k < sizeof config_flags / sizeof config_flags[0]; k++)
            if (!strcmp(fl->name, config_flags[k].flag)) {
                is_config = true;
                if (config_set(cfg, config_flags[k].var, value, fl->name) < 0)
                    return 2;
            }
        if (!strcmp(fl->name, "--no-demo")) {
            cfg->demo = false;
            is_config = true;
        }
        if (is_config)
            continue;
        if (*n_out + 2 >= MAX_ARGS) {
            fprintf(stderr, "emporium %s: too many arguments\n", what);
            return 2;
        }
        out[(*n_out)++] = (char *)fl->name;
        if (value)
            out[(*n_out)++] = (char *)value;
    }
    int idx = 0;
    for (const struct cli_flag *fl = c->flags; fl && fl->name; fl++, idx++)
        if (fl->required && idx < 32 && !seen_required[idx]) {
            fprintf(stderr, "emporium %s: %s %s is required (see emporium %s --help)\n", what,
                    fl->name, fl->value ? fl->value : "", what);
            return 2;
        }
    return 0;
}

/* "0.0.0.0:8080" with the port actually bound. */
static void listen_address(const struct config *cfg, int port, char *buf, size_t cap)
{
    const char *colon = strrchr(cfg->listen, ':');
    int hl = colon ? (int)(colon - cfg->listen) : 0;
    snprintf(buf, cap, "%.*s:%d", hl ? hl : 7, hl ? cfg->listen : "0.0.0.0", port);
}

static void log_started(struct app *app, const struct config *cfg, int port)
{
    char services[512] = "", listen[96], url[512];
    size_t len = 0;
    for (int s = 0; services_all[s]; s++)
        if (app_has_service(app, services_all[s]->name) && len + 32 < sizeof services)
            len += (size_t)snprintf(services + len, sizeof services - len, "%s%s", len ? "," : "",
                                    services_all[s]->name);
    listen_address(cfg, port, listen, sizeof listen);
    bool pg = cfg->database_url != NULL;
    log_event("emporium.started", LOG_S("version", EMPORIUM_VERSION),
              LOG_S("backend", config_backend(cfg)),
              LOG_S(pg ? "database" : "data_dir",
                    pg ? config_redacted_url(cfg, url, sizeof url) : cfg->data_dir),
              LOG_S("services", services), LOG_I("workers", config_worker_threads(cfg)),
              LOG_S("listen", listen));
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
    /* Background jobs run in `serve` only, once everything they touch is up. */
    if (app_start_timers(app) < 0) {
        log_error("cannot start the background job thread");
        http_server_stop(srv);
        app_free(app);
        return 1;
    }
    log_started(app, cfg, http_server_port(srv));
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
    /* The table is the command's output (stdout); the migration log lines go to stderr. */
    printf("%-16s %s\n", "DATABASE", "SCHEMA VERSION");
    for (int i = 0; i < app_db_count(app); i++) {
        struct db *db = app_db_at(app, i);
        printf("%-16s %d\n", db_name(db), db_schema_version(db));
    }
    fflush(stdout);
    app_free(app);
    return 0;
}

static int cmd_openapi(void)
{
    /* The same document GET /openapi.json serves, for linters and client generators. */
    json_t *doc = http_openapi_document();
    if (!doc || json_dumpf(doc, stdout, JSON_INDENT(2)) != 0) {
        json_decref(doc);
        fprintf(stderr, "emporium openapi: cannot build the document\n");
        return 1;
    }
    putchar('\n');
    json_decref(doc);
    return 0;
}

static const struct service *find_service_command(const char *cmd)
{
    for (int s = 0; services_all[s]; s++)
        if (services_all[s]->command && !strcmp(services_all[s]->command, cmd))
            return services_all[s];
    return NULL;
}

static const struct cli_command *find_builtin(const char *cmd)
{
    for (size_t i = 0; i < N_BUILTINS; i++)
        if (!strcmp(builtins[i]->name, cmd))
            return builtins[i];
    return NULL;
}

/* Logging and libraries, once the configuration is known. */
static int start_process(const struct config *cfg)
{
    log_set_level(cfg->log_level);
    log_set_format(cfg->log_format);
    if (sodium_init() < 0) {
        fprintf(stderr, "emporium: libsodium failed to initialise\n");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static int run_service_command(const struct service *svc, struct config *cfg, int argc, char **argv)
{
    const char *cmd = argv[0];
    const struct cli_command *c = svc->cli;
    char *out[MAX_ARGS];
    int n_out = 0;
    out[n_out++] = (char *)cmd;
    char what[96];
    snprintf(what, sizeof what, "%s", cmd);
    int rest = 1;
    if (!c) {
        /* Undeclared flags: only --help is ours; the command checks the rest. */
        for (int i = 1; i < argc; i++)
            if (is_help(argv[i])) {
                command_help(stdout, cmd, NULL, true, svc->command_help);
                return 0;
            }
        if (config_from_env(cfg) < 0)
            return 2;
        /* The configuration flags are still ours; the rest goes through as given. */
        for (int i = 1; i < argc && n_out + 1 < MAX_ARGS; i++) {
            bool taken = false;
            for (size_t k = 0; k < sizeof config_flags / sizeof config_flags[0]; k++) {
                size_t fl = strlen(config_flags[k].flag);
                if (strncmp(argv[i], config_flags[k].flag, fl) != 0 ||
                    (argv[i][fl] && argv[i][fl] != '='))
                    continue;
                const char *v = argv[i][fl] ? argv[i] + fl + 1 : i + 1 < argc ? argv[++i] : NULL;
                if (config_set(cfg, config_flags[k].var, v, config_flags[k].flag) < 0)
                    return 2;
                taken = true;
            }
            if (!taken && !strcmp(argv[i], "--no-demo")) {
                cfg->demo = false;
                taken = true;
            }
            if (!taken)
                out[n_out++] = argv[i];
        }
        out[n_out] = NULL;
        if (start_process(cfg))
            return 1;
        struct app *app;
        if (app_new(&app, cfg) < 0)
            return 1;
        int rc = svc->run_command(app, n_out, out);
        app_free(app);
        return rc;
    }
    if (c->subcommands) {
        if (argc < 2 || is_help(argv[1])) {
            command_help(argc < 2 ? stderr : stdout, cmd, c, true, NULL);
            return argc < 2 ? 2 : 0;
        }
        const struct cli_command *sub = NULL;
        for (const struct cli_command *s = c->subcommands; s->name; s++)
            if (!strcmp(s->name, argv[1]))
                sub = s;
        if (!sub) {
            fprintf(stderr, "emporium %s: unknown subcommand '%s' (see emporium %s --help)\n", cmd,
                    argv[1], cmd);
            return 2;
        }
        out[n_out++] = argv[1];
        snprintf(what, sizeof what, "%s %s", cmd, sub->name);
        c = sub;
        rest = 2;
    }
    /* --help works whatever the environment holds. */
    for (int i = rest; i < argc; i++)
        if (is_help(argv[i])) {
            command_help(stdout, what, c, true, NULL);
            return 0;
        }
    if (config_from_env(cfg) < 0)
        return 2;
    int rc = parse_flags(what, c, true, argc - rest, argv + rest, cfg, out, &n_out);
    if (rc == 1) {
        command_help(stdout, what, c, true, NULL);
        return 0;
    }
    if (rc)
        return rc;
    out[n_out] = NULL;
    if (start_process(cfg))
        return 1;
    struct app *app;
    if (app_new(&app, cfg) < 0)
        return 1;
    rc = svc->run_command(app, n_out, out);
    app_free(app);
    return rc;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (is_help(cmd) || !strcmp(cmd, "help")) {
        if (argc > 2 && strcmp(cmd, "help") == 0) {
            /* `emporium help seed` = `emporium seed --help` */
            char *again[] = {argv[0], argv[2], "--help", NULL};
            return main(3, again);
        }
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("emporium %s\n", EMPORIUM_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "backup") || !strcmp(cmd, "restore"))
        return backup_command(argc - 1, argv + 1);
    struct config cfg;
    config_defaults(&cfg);
    const struct cli_command *b = find_builtin(cmd);
    if (!b) {
        const struct service *svc = find_service_command(cmd);
        if (!svc) {
            fprintf(stderr, "emporium: unknown command '%s' (see emporium --help)\n", cmd);
            return 2;
        }
        int rc = run_service_command(svc, &cfg, argc - 1, argv + 1);
        curl_global_cleanup();
        return rc;
    }
    /* --help works whatever the environment holds. */
    for (int i = 2; i < argc; i++)
        if (is_help(argv[i])) {
            command_help(stdout, cmd, b, false, NULL);
            return 0;
        }
    /* Built-in commands: environment first, then flags (which win). */
    bool needs_config = b == &cmd_serve_cli || b == &cmd_migrate_cli;
    if (needs_config && config_from_env(&cfg) < 0)
        return 2;
    char *out[MAX_ARGS];
    int n_out = 0;
    int rc = parse_flags(cmd, b, false, argc - 2, argv + 2, &cfg, out, &n_out);
    if (rc == 1) {
        command_help(stdout, cmd, b, false, NULL);
        return 0;
    }
    if (rc)
        return rc;
    if (b == &cmd_version_cli) {
        printf("emporium %s\n", EMPORIUM_VERSION);
        return 0;
    }
    if (b == &cmd_openapi_cli)
        return cmd_openapi();
    if (start_process(&cfg))
        return 1;
    if (b == &cmd_migrate_cli && n_out > 0 && !strcmp(out[0], "--plan"))
        rc = schema_plan(&cfg, stdout); /* src/core/schema.c */
    else
        rc = b == &cmd_serve_cli ? cmd_serve(&cfg) : cmd_migrate(&cfg);
    curl_global_cleanup();
    return rc;
}
