/* SPDX-License-Identifier: MIT */
/* test_cli.c — the `emporium` command line as an operator meets it: help per command, both
 * flag forms, exit codes (0 done, 1 failed, 2 usage or configuration), what goes to stdout
 * (command output) and what to stderr (diagnostics, logs), settings validated at start, the
 * start-up line, the log formats, and background jobs that run under `serve` only.
 *
 * Every case runs the real binary with a clean environment (no EMPORIUM_* from the caller)
 * and captures stdout and stderr separately. */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <setjmp.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "emporium/app.h"
#include "emporium/config.h"
#include "emporium/err.h"
#include "emporium/timer.h"
#include "harness.h"

extern char **environ;

static char tmp_root[64];

struct run {
    int status; /* exit status, or -1 when killed by a signal */
    char *out, *err;
};

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    size_t got = p ? fread(p, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!p)
        return NULL;
    p[got] = 0;
    return p;
}

/* Runs EMPORIUM_BIN with args (NULL-terminated) and the extra "NAME=value" env (may be NULL)
 * on top of the caller's environment without any EMPORIUM_* variable. */
static struct run run_cmd(const char *const *env, const char *const *args)
{
    struct run r = {-1, NULL, NULL};
    char outp[128], errp[128];
    snprintf(outp, sizeof outp, "%s/stdout", tmp_root);
    snprintf(errp, sizeof errp, "%s/stderr", tmp_root);
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)EMPORIUM_BIN;
    for (int i = 0; args[i] && n < 62; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    char *envp[256];
    int ne = 0;
    for (char **e = environ; *e && ne < 200; e++)
        if (strncmp(*e, "EMPORIUM_", 9) != 0)
            envp[ne++] = *e;
    for (int i = 0; env && env[i] && ne < 254; i++)
        envp[ne++] = (char *)env[i];
    envp[ne] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int rc = posix_spawn(&pid, EMPORIUM_BIN, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(rc, 0);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = slurp(outp);
    r.err = slurp(errp);
    assert_non_null(r.out);
    assert_non_null(r.err);
    return r;
}

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define ENV(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A path under the temp root that does not exist yet. */
static const char *fresh_dir(const char *name)
{
    static char path[8][160];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 160, "%s/%s", tmp_root, name);
    return p;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void expect_usage_error(struct run *r, const char *needle1, const char *needle2)
{
    if (r->status != 2 || !strstr(r->err, needle1) || (needle2 && !strstr(r->err, needle2)) ||
        r->out[0])
        fprintf(stderr,
                "expected exit 2 with '%s'%s%s on stderr and nothing on stdout; got %d\n"
                "stdout: %s\nstderr: %s\n",
                needle1, needle2 ? " and " : "", needle2 ? needle2 : "", r->status, r->out, r->err);
    assert_int_equal(r->status, 2);
    assert_non_null(strstr(r->err, needle1));
    if (needle2)
        assert_non_null(strstr(r->err, needle2));
    assert_string_equal(r->out, "");
}

static void test_version_and_help(void **state)
{
    struct run r = run_cmd(NULL, ARGS("--version"));
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "emporium " EMPORIUM_VERSION "\n");
    assert_string_equal(r.err, "");
    run_free(&r);
    r = run_cmd(NULL, ARGS("version"));
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "emporium " EMPORIUM_VERSION "\n");
    run_free(&r);

    r = run_cmd(NULL, ARGS("--help"));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "serve"));
    assert_non_null(strstr(r.out, "migrate"));
    assert_non_null(strstr(r.out, "user"));
    assert_string_equal(r.err, "");
    run_free(&r);
    r = run_cmd(NULL, ARGS("-h"));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: emporium"));
    run_free(&r);

    /* No command: the usage on stderr, exit 2. */
    r = run_cmd(NULL, (const char *const[]){NULL});
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "usage: emporium"));
    run_free(&r);
}

/* Each command has its own help: its flags, no one else's, and an example. */
static void test_command_help(void **state)
{
    struct run r = run_cmd(NULL, ARGS("serve", "--help"));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "--listen"));
    assert_non_null(strstr(r.out, "example:"));
    assert_non_null(strstr(r.out, "EMPORIUM_LOG_FORMAT")); /* the settings table */
    assert_non_null(strstr(r.out, "EMPORIUM_THREADS"));
    run_free(&r);

    r = run_cmd(NULL, ARGS("migrate", "-h"));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "--data-dir"));
    assert_null(strstr(r.out, "--listen"));
    assert_non_null(strstr(r.out, "example:"));
    run_free(&r);

    r = run_cmd(NULL, ARGS("seed", "--help"));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "--products"));
    assert_null(strstr(r.out, "--listen"));
    assert_non_null(strstr(r.out, "example:"));
    run_free(&r);

    /* openapi --help is help, not the 37 KB document. */
    r = run_cmd(NULL, ARGS("openapi", "--help"));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: emporium openapi"));
    assert_true(r.out[0] != '{');
    assert_true(strlen(r.out) < 2000);
    run_free(&r);

    r = run_cmd(NULL, ARGS("user", "--help"));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "create"));
    assert_non_null(strstr(r.out, "bulk-create"));
    run_free(&r);
    r = run_cmd(NULL, ARGS("user", "create", "--help"));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "--name"));
    assert_non_null(strstr(r.out, "--password-file"));
    assert_non_null(strstr(r.out, "example:"));
    run_free(&r);
    r = run_cmd(NULL, ARGS("user", "bulk-create", "-h"));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "--count"));
    assert_non_null(strstr(r.out, "--tokens-out"));
    run_free(&r);
    /* `help <command>` is `<command> --help`. */
    r = run_cmd(NULL, ARGS("help", "seed"));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "--products"));
    run_free(&r);
}

static void test_unknown_commands_and_flags(void **state)
{
    const char *dir = fresh_dir("never-created");
    struct run r = run_cmd(NULL, ARGS("frobnicate"));
    expect_usage_error(&r, "unknown command", "frobnicate");
    run_free(&r);
    r = run_cmd(NULL, ARGS("migrate", "--bogus", "--data-dir", dir));
    expect_usage_error(&r, "--bogus", NULL);
    run_free(&r);
    r = run_cmd(NULL, ARGS("serve", "extra", "--data-dir", dir));
    expect_usage_error(&r, "extra", NULL);
    run_free(&r);
    r = run_cmd(NULL, ARGS("user", "frob", "--data-dir", dir));
    expect_usage_error(&r, "unknown subcommand", "frob");
    run_free(&r);
    r = run_cmd(NULL, ARGS("user", "create", "--password-file", "/nonexistent", "--data-dir", dir));
    expect_usage_error(&r, "--email", "required");
    run_free(&r);
    r = run_cmd(NULL, ARGS("serve", "--no-demo=yes", "--data-dir", dir));
    expect_usage_error(&r, "--no-demo", "no value");
    run_free(&r);
    r = run_cmd(NULL, ARGS("serve", "--listen"));
    expect_usage_error(&r, "--listen", "needs a value");
    run_free(&r);
    /* None of these touched the data dir. */
    assert_false(exists(dir));
}

/* A wrong value says what was wrong and exits 2 before anything is opened. */
static void test_bad_values_fail_before_opening(void **state)
{
    const char *dir = fresh_dir("seed-never-created");
    struct run r = run_cmd(NULL, ARGS("seed", "--products", "abc", "--data-dir", dir));
    expect_usage_error(&r, "--products", "abc");
    assert_non_null(strstr(r.err, "integer"));
    run_free(&r);
    r = run_cmd(NULL, ARGS("seed", "--products=0", "--data-dir", dir));
    expect_usage_error(&r, "--products", "1 to 10000000");
    run_free(&r);
    r = run_cmd(
        NULL, ARGS("user", "bulk-create", "--count=x", "--password-file", "-", "--data-dir", dir));
    expect_usage_error(&r, "--count", NULL);
    run_free(&r);
    assert_false(exists(dir));
}

/* Every EMPORIUM_* setting and flag is validated at start, naming the setting and the
 * accepted values; the process exits 2 and creates nothing. */
static void test_settings_validated(void **state)
{
    const char *dir = fresh_dir("serve-never-created");
    char dd[200];
    snprintf(dd, sizeof dd, "EMPORIUM_DATA_DIR=%s", dir);
    static const struct {
        const char *env, *flag, *flag_value, *needle, *accepted;
    } cases[] = {
        {"EMPORIUM_SERVICES=foo", "--services", "foo", "unknown service 'foo'", "inventory"},
        {"EMPORIUM_SERVICES=user,,cart", "--services", "user,,cart", "empty entry", "analytics"},
        {"EMPORIUM_LOG_LEVEL=verbose", NULL, NULL, "EMPORIUM_LOG_LEVEL=verbose", "debug, info"},
        {"EMPORIUM_LOG_FORMAT=xml", NULL, NULL, "EMPORIUM_LOG_FORMAT=xml", "text or json"},
        {"EMPORIUM_RATE_LIMITS=maybe", NULL, NULL, "EMPORIUM_RATE_LIMITS=maybe", "on, off"},
        {"EMPORIUM_ACCESS_LOG=nope", NULL, NULL, "EMPORIUM_ACCESS_LOG", "true, false"},
        {"EMPORIUM_DEMO=2", NULL, NULL, "EMPORIUM_DEMO", "1 or 0"},
        {"EMPORIUM_THREADS=abc", "--threads", "abc", "not", "0 to 256"},
        {"EMPORIUM_THREADS=257", "--threads", "257", "257", "0 to 256"},
        {"EMPORIUM_THREADS=-1", "--threads", "-1", "-1", "0 to 256"},
        {"EMPORIUM_DB_POOL_SIZE=0", NULL, NULL, "EMPORIUM_DB_POOL_SIZE", "1 to 512"},
        {"EMPORIUM_MAX_BODY=10", NULL, NULL, "EMPORIUM_MAX_BODY", "1024"},
        {"EMPORIUM_SESSION_TTL_HOURS=12h", NULL, NULL, "EMPORIUM_SESSION_TTL_HOURS", "integer"},
        {"EMPORIUM_PAYMENT_LATENCY_MS=-5", NULL, NULL, "EMPORIUM_PAYMENT_LATENCY_MS", "0 to 60000"},
        {"EMPORIUM_PRODUCT_CACHE_MB=lots", NULL, NULL, "EMPORIUM_PRODUCT_CACHE_MB", "integer"},
        {"EMPORIUM_ORDER_SWEEP_SECONDS=0", NULL, NULL, "EMPORIUM_ORDER_SWEEP_SECONDS", "1 to 3600"},
        {"EMPORIUM_RL_ANON=fast", NULL, NULL, "EMPORIUM_RL_ANON", "RATE:BURST"},
        {"EMPORIUM_LISTEN=nowhere", "--listen", "nowhere", "nowhere", "ADDR:PORT"},
        {"EMPORIUM_LISTEN=127.0.0.1:99999", "--listen", "1.2.3:80", ":", "ADDR:PORT"},
        {"EMPORIUM_DATABASE_URL=mysql://secret@db/x", NULL, NULL, "EMPORIUM_DATABASE_URL",
         "postgresql://"},
        {"EMPORIUM_CORS_ORIGINS=example.com", NULL, NULL, "EMPORIUM_CORS_ORIGINS", "http(s)://"},
        {"EMPORIUM_TRUSTED_PROXIES=10.0.0.0/33", NULL, NULL, "EMPORIUM_TRUSTED_PROXIES", "CIDR"},
        {"EMPORIUM_TRUSTED_PROXIES=gateway", NULL, NULL, "EMPORIUM_TRUSTED_PROXIES", "CIDR"},
        {"EMPORIUM_FEATURE_FLAGS=recommendations=101", NULL, NULL, "EMPORIUM_FEATURE_FLAGS",
         "flag=percent"},
        {"EMPORIUM_FEATURE_FLAGS=warp=50", NULL, NULL, "EMPORIUM_FEATURE_FLAGS", "recommendations"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct run r = run_cmd(ENV(cases[i].env, dd), ARGS("serve"));
        expect_usage_error(&r, cases[i].needle, cases[i].accepted);
        /* The variable is named (the message starts with it or its value). */
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(strchr(cases[i].env, '=') - cases[i].env),
                 cases[i].env);
        assert_non_null(strstr(r.err, name));
        run_free(&r);
        /* The flag takes the same values: both of its forms, for a few cases. */
        if (cases[i].flag && (i == 0 || i == 7 || i == 8 || i == 17)) {
            char both[128];
            snprintf(both, sizeof both, "%s=%s", cases[i].flag, cases[i].flag_value);
            r = run_cmd(ENV(dd), ARGS("serve", both));
            expect_usage_error(&r, cases[i].flag, cases[i].accepted);
            run_free(&r);
            r = run_cmd(ENV(dd), ARGS("serve", cases[i].flag, cases[i].flag_value));
            expect_usage_error(&r, cases[i].flag, cases[i].accepted);
            run_free(&r);
        }
    }
    /* --help still works with a bad setting in the environment. */
    struct run h = run_cmd(ENV("EMPORIUM_LOG_LEVEL=loud"), ARGS("serve", "--help"));
    assert_int_equal(h.status, 0);
    assert_non_null(strstr(h.out, "--listen"));
    run_free(&h);
    h = run_cmd(ENV("EMPORIUM_THREADS=x"), ARGS("user", "create", "--help"));
    assert_int_equal(h.status, 0);
    assert_non_null(strstr(h.out, "--email"));
    run_free(&h);
    /* The database URL is never echoed (it may carry a password). */
    struct run r =
        run_cmd(ENV("EMPORIUM_DATABASE_URL=mysql://u:hunter2@db/x", dd), ARGS("migrate"));
    assert_int_equal(r.status, 2);
    assert_null(strstr(r.err, "hunter2"));
    run_free(&r);
    /* Settings are checked for every command that opens the shop, not only serve. */
    r = run_cmd(ENV("EMPORIUM_LOG_LEVEL=loud", dd), ARGS("migrate"));
    expect_usage_error(&r, "EMPORIUM_LOG_LEVEL", "debug");
    run_free(&r);
    assert_false(exists(dir));

    /* A misspelt variable is pointed out (a warning; the command still runs). */
    const char *ok = fresh_dir("typo-data");
    char okdd[200];
    snprintf(okdd, sizeof okdd, "EMPORIUM_DATA_DIR=%s", ok);
    r = run_cmd(ENV("EMPORIUM_LOG_LEVL=debug", okdd), ARGS("migrate"));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.err, "EMPORIUM_LOG_LEVL"));
    run_free(&r);
}

/* migrate: the version table on stdout, its logs on stderr; both flag forms. */
static void test_migrate_streams(void **state)
{
    char arg[200];
    snprintf(arg, sizeof arg, "--data-dir=%s", fresh_dir("m1"));
    struct run r = run_cmd(NULL, ARGS("migrate", arg));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "SCHEMA VERSION"));
    assert_non_null(strstr(r.out, "users"));
    assert_non_null(strstr(r.out, "products"));
    assert_null(strstr(r.out, "\"level\"")); /* no log line mixed into the table */
    assert_non_null(strstr(r.err, "applied migration"));
    run_free(&r);
    assert_true(exists(fresh_dir("m1")));

    /* The space form and --services (only those databases). */
    r = run_cmd(NULL, ARGS("migrate", "--data-dir", fresh_dir("m2"), "--services", "user"));
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "users"));
    assert_null(strstr(r.out, "products"));
    run_free(&r);
}

/* Fatal errors go to stderr, never to stdout. */
static void test_openapi_stdout(void **state)
{
    struct run r = run_cmd(NULL, ARGS("openapi"));
    assert_int_equal(r.status, 0);
    json_error_t e;
    json_t *doc = json_loads(r.out, 0, &e);
    assert_non_null(doc);
    assert_non_null(json_object_get(doc, "paths"));
    json_decref(doc);
    assert_string_equal(r.err, "");
    run_free(&r);
}

/* The JSON log line that starts with "ts" and names the event. */
static json_t *find_json_event(const char *log, const char *event)
{
    for (const char *p = log; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n > 0 && p[0] == '{') {
            json_t *o = json_loadb(p, n, 0, NULL);
            const char *ev = json_string_value(json_object_get(o, "event"));
            if (ev && !strcmp(ev, event))
                return o;
            json_decref(o);
        }
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

/* serve: the start-up line names version, backend, data dir or database, services, workers
 * and the address; logs are JSON when not on a terminal (the harness writes them to a file). */
static void test_startup_line_json(void **state)
{
    struct th_server s;
    const char *const env[] = {"EMPORIUM_SERVICES=user,product,inventory", NULL};
    const char *const args[] = {"--threads=3", NULL};
    assert_int_equal(th_start(&s, env, args), 0);
    assert_int_equal(th_stop(&s), 0);
    char *log = slurp(s.log_path);
    json_t *ev = find_json_event(log, "emporium.started");
    if (!ev)
        fprintf(stderr, "no emporium.started event in:\n%s\n", log);
    assert_non_null(ev);
    assert_string_equal(json_string_value(json_object_get(ev, "version")), EMPORIUM_VERSION);
    assert_string_equal(json_string_value(json_object_get(ev, "level")), "info");
    const char *backend = getenv("EMPORIUM_TEST_BACKEND");
    bool pg = backend && !strcmp(backend, "postgres");
    assert_string_equal(json_string_value(json_object_get(ev, "backend")),
                        pg ? "postgres" : "sqlite");
    if (pg)
        assert_non_null(json_string_value(json_object_get(ev, "database")));
    else
        assert_string_equal(json_string_value(json_object_get(ev, "data_dir")), s.data_dir);
    assert_string_equal(json_string_value(json_object_get(ev, "services")),
                        "inventory,product,user");
    assert_int_equal(json_integer_value(json_object_get(ev, "workers")), 3);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s.port);
    assert_string_equal(json_string_value(json_object_get(ev, "listen")), listen);
    json_decref(ev);
    /* Every line the server wrote is one JSON object (the harness' own marker lines aside). */
    for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "==== harness", 12))
            continue;
        json_t *o = json_loads(line, 0, NULL);
        if (!o)
            fprintf(stderr, "not a JSON log line: %s\n", line);
        assert_non_null(o);
        assert_non_null(json_object_get(o, "ts"));
        json_decref(o);
    }
    free(log);
    th_cleanup(&s);
}

/* EMPORIUM_LOG_FORMAT=text: one readable line per event. */
static void test_text_log_format(void **state)
{
    struct th_server s;
    const char *const env[] = {"EMPORIUM_LOG_FORMAT=text", NULL};
    assert_int_equal(th_start(&s, env, NULL), 0);
    struct th_resp r;
    assert_int_equal(th_req(&s, "GET", "/api/v1/users/me", NULL, NULL, &r), 0);
    th_resp_free(&r);
    assert_int_equal(th_stop(&s), 0);
    char *log = slurp(s.log_path);
    const char *line = strstr(log, " emporium.started ");
    if (!line)
        fprintf(stderr, "no text start-up line in:\n%s\n", log);
    assert_non_null(line);
    assert_non_null(strstr(line, "INFO"));
    assert_non_null(strstr(line, "version=" EMPORIUM_VERSION));
    assert_non_null(strstr(line, "workers="));
    /* The access line too is text: "… INFO  access method=GET path=/api/v1/users/me …" */
    const char *acc = strstr(log, " access method=GET path=/api/v1/users/me ");
    if (!acc)
        fprintf(stderr, "no text access line in:\n%s\n", log);
    assert_non_null(acc);
    assert_non_null(strstr(acc, " status=401 "));
    assert_null(strstr(log, "{\"ts\""));
    free(log);
    th_cleanup(&s);
}

/* Background jobs run under `serve` (the session sweep shows in /metrics) and never during
 * `migrate` (the timer thread is only started by serve; debug logs say when it starts). */
static void test_timer_jobs_serve_only(void **state)
{
    struct th_server s;
    const char *const env[] = {"EMPORIUM_LOG_LEVEL=debug", "EMPORIUM_ACCESS_LOG=off", NULL};
    assert_int_equal(th_start(&s, env, NULL), 0);
    bool ran = false;
    time_t deadline = time(NULL) + 30;
    while (!ran && time(NULL) < deadline) {
        struct th_resp r;
        assert_int_equal(th_req(&s, "GET", "/metrics", NULL, NULL, &r), 0);
        const char *m = strstr(r.body, "emporium_timer_runs_total{job=\"user.session_sweep\"} ");
        ran = m && atoll(m + strlen("emporium_timer_runs_total{job=\"user.session_sweep\"} ")) >= 1;
        th_resp_free(&r);
        if (!ran)
            usleep(50 * 1000);
    }
    assert_true(ran);
    char *log = slurp(s.log_path);
    assert_non_null(strstr(log, "timer: started"));
    free(log);

    /* migrate, with debug logs: no job thread at all. */
    const char *const margs[] = {"migrate", NULL};
    char *out = NULL;
    assert_int_equal(th_stop(&s), 0);
    char dd[320];
    snprintf(dd, sizeof dd, "EMPORIUM_DATA_DIR=%s", s.data_dir);
    struct run r = run_cmd(ENV("EMPORIUM_LOG_LEVEL=debug", dd), margs);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "users"));
    assert_null(strstr(r.err, "timer: started"));
    run_free(&r);
    free(out);
    th_cleanup(&s);
}

/* The repository root, from this file's path (…/tests/integration/test_cli.c). */
static void repo_root(char *out, size_t cap)
{
    snprintf(out, cap, "%s", __FILE__);
    char *p = strstr(out, "/tests/integration/");
    assert_non_null(p);
    *p = 0;
}

static struct run run_sh(const char *script)
{
    const char *const args[] = {"-c", script, NULL};
    struct run r = {-1, NULL, NULL};
    char outp[128], errp[128];
    snprintf(outp, sizeof outp, "%s/stdout", tmp_root);
    snprintf(errp, sizeof errp, "%s/stderr", tmp_root);
    char *argv[] = {"/bin/sh", (char *)args[0], (char *)args[1], NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r.out = slurp(outp);
    r.err = slurp(errp);
    return r;
}

/* scripts/check-layering.sh on a copy of the tree: the user service is clean; deliberate
 * violations in the copy are each reported with their file and line, and fail the check. */
static void test_layering_check(void **state)
{
    char root[512], cmd[2048];
    repo_root(root, sizeof root);
    const char *copy = fresh_dir("layering");
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && cp -r '%s/src' '%s/' && '%s/scripts/check-layering.sh' '%s'", copy,
             root, copy, root, copy);
    struct run r = run_sh(cmd);
    /* Other services may still be in transition; the user service must not appear. */
    if (strstr(r.out, "src/services/user/"))
        fprintf(stderr, "%s", r.out);
    assert_null(strstr(r.out, "src/services/user/"));
    assert_true(r.status == 0 || r.status == 1);
    run_free(&r);

    /* Three violations: HTTP in the domain, a relative and a bare include of another
     * service's internal header; and an allowed include (HTTP in *_http.c) on top. */
    snprintf(cmd, sizeof cmd,
             "cd '%s/src/services/user' && "
             "printf '#include \"emporium/http.h\"\\n' >> user.c && "
             "printf '#include \"../cart/cart_internal.h\"\\n' >> user_store.c && "
             "printf '#include \"cart_internal.h\"\\n' >> user_cli.c && "
             "printf '#include \"emporium/http.h\"\\n' >> user_http.c && "
             "'%s/scripts/check-layering.sh' '%s'",
             copy, root, copy);
    r = run_sh(cmd);
    if (r.status != 1)
        fprintf(stderr, "stdout: %s\nstderr: %s\n", r.out, r.err);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "src/services/user/user.c:"));
    assert_non_null(strstr(r.out, "src/services/user/user_store.c:"));
    assert_non_null(strstr(r.out, "src/services/user/user_cli.c:"));
    assert_null(strstr(r.out, "src/services/user/user_http.c:"));
    assert_non_null(strstr(r.out, "cart service"));
    run_free(&r);
}

struct job_state {
    pthread_mutex_t mu;
    int runs;
    bool running;
};

static void count_job(struct app *app, void *ctx)
{
    struct job_state *js = ctx;
    pthread_mutex_lock(&js->mu);
    js->running = true;
    js->runs++;
    js->running = false;
    pthread_mutex_unlock(&js->mu);
}

/* The library contract behind `serve only`: app_new() (what migrate, seed and user run)
 * registers the services' jobs but starts no thread; only app_start_timers() does, and
 * app_free() stops and joins it. */
static void test_timer_facility(void **state)
{
    struct config cfg;
    config_defaults(&cfg);
    cfg.data_dir = fresh_dir("timer-lib");
    cfg.services = "user";
    struct app *app;
    assert_int_equal(app_new(&app, &cfg), 0);
    assert_false(timer_running(app));
    assert_int_equal(timer_runs(app, "user.session_sweep"), 0); /* registered, never run */
    assert_int_equal(timer_runs(app, "no.such.job"), -1);

    struct job_state js = {PTHREAD_MUTEX_INITIALIZER, 0, false};
    assert_int_equal(timer_add(app, "test.count", 1, count_job, &js), 0);
    assert_int_equal(timer_add(app, "test.count", 1, count_job, &js), ERR_CONFLICT);
    assert_int_equal(timer_add(app, "test.bad", 0, count_job, &js), ERR_INVALID);
    assert_int_equal(timer_runs(app, "test.count"), 0);

    assert_int_equal(app_start_timers(app), 0);
    assert_true(timer_running(app));
    time_t deadline = time(NULL) + 30;
    while (timer_runs(app, "test.count") < 3 && time(NULL) < deadline)
        usleep(1000);
    assert_true(timer_runs(app, "test.count") >= 3);
    assert_true(timer_runs(app, "user.session_sweep") >= 1); /* first run right at the start */
    app_free(app); /* joins the thread: no job runs after this */
    pthread_mutex_lock(&js.mu);
    int runs = js.runs;
    assert_false(js.running);
    pthread_mutex_unlock(&js.mu);
    assert_true(runs >= 3);
}

static int setup(void **state)
{
    snprintf(tmp_root, sizeof tmp_root, "/tmp/emp-cli-XXXXXX");
    return mkdtemp(tmp_root) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    /* The command line does not depend on the storage backend: on PostgreSQL only the
     * start-up line (which names the backend and the database) is checked again. */
    const char *backend = getenv("EMPORIUM_TEST_BACKEND");
    if (backend && !strcmp(backend, "postgres")) {
        const struct CMUnitTest pg_tests[] = {
            cmocka_unit_test(test_startup_line_json),
        };
        return cmocka_run_group_tests(pg_tests, setup, teardown);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version_and_help),
        cmocka_unit_test(test_command_help),
        cmocka_unit_test(test_unknown_commands_and_flags),
        cmocka_unit_test(test_bad_values_fail_before_opening),
        cmocka_unit_test(test_settings_validated),
        cmocka_unit_test(test_migrate_streams),
        cmocka_unit_test(test_openapi_stdout),
        cmocka_unit_test(test_startup_line_json),
        cmocka_unit_test(test_text_log_format),
        cmocka_unit_test(test_timer_jobs_serve_only),
        cmocka_unit_test(test_timer_facility),
        cmocka_unit_test(test_layering_check),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
