/* SPDX-License-Identifier: MIT */
/* harness.h — test support: start the real `emporium` binary and talk HTTP to it.
 *
 * th_start() runs `build/emporium serve` (the binary of the same build, so the sanitizer
 * build tests the sanitizer binary) on a free loopback port with a fresh data dir. The
 * storage backend comes from EMPORIUM_TEST_BACKEND: "sqlite" (default) or "postgres", in
 * which case EMPORIUM_TEST_PG_URL names a server and a fresh database prefix is chosen per
 * th_start(), so tests never see each other's data. Responses are parsed with jansson. */
#ifndef EMPORIUM_TEST_HARNESS_H
#define EMPORIUM_TEST_HARNESS_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct th_server {
    pid_t pid;
    int port;
    char base_url[64];  /* "http://127.0.0.1:PORT" */
    char data_dir[256]; /* fresh temp dir, removed by th_stop() */
    char db_url[512];   /* "" for sqlite, else the postgres URL given to the server */
    char log_path[300]; /* server stdout+stderr */
};

struct th_resp {
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    json_t *json;  /* parsed body when it is JSON, else NULL */
    char *headers; /* raw response header block */
};

/* Starts a server; extra_env is a NULL-terminated list of "NAME=value" (may be NULL);
 * extra_args are extra command-line arguments after `serve` (NULL-terminated, may be NULL).
 * Waits until /health answers (10 s). Returns 0 or -1 (the log is printed). */
int th_start(struct th_server *s, const char *const *extra_env, const char *const *extra_args);
/* Like th_start but reuses s->data_dir / s->db_url from a previous (stopped or killed) run. */
int th_restart(struct th_server *s, const char *const *extra_env, const char *const *extra_args);
/* The emporium binary of the next th_start/th_restart/th_cli calls: path, or NULL for this
 * build's (the default). For upgrade drills that run an older build beside this one. */
void th_use_binary(const char *path);
/* SIGTERM, waits up to 30 s; returns the exit status (0 expected), or -1. Keeps the data. */
int th_stop(struct th_server *s);
/* SIGKILL and reap. */
void th_kill(struct th_server *s);
/* Removes the data dir (and drops the postgres databases it created). */
void th_cleanup(struct th_server *s);

/* Runs `build/emporium ARGS…` with the server's data dir / db url (e.g. migrate, user create);
 * returns its exit status; its output goes to *out when out != NULL (free()). */
int th_cli(struct th_server *s, const char *const *args, char **out);
/* th_cli() with extra "NAME=value" environment entries (NULL-terminated, may be NULL). */
int th_cli_env(struct th_server *s, const char *const *extra_env, const char *const *args,
               char **out);

/* One HTTP request. headers: NULL-terminated "Name: value" list or NULL. body may be NULL.
 * Returns 0 (then fill *r, free with th_resp_free) or -1 on a transport error. */
int th_req(struct th_server *s, const char *method, const char *path, const char *body,
           const char *const *headers, struct th_resp *r);
/* Convenience: request with optional bearer token; body is a printf format (NULL = none). */
int th_call(struct th_server *s, const char *method, const char *path, const char *token,
            struct th_resp *r, const char *body_fmt, ...) __attribute__((format(printf, 6, 7)));
/* Header value from the response (case-insensitive name), copied into buf; NULL if absent. */
const char *th_header(const struct th_resp *r, const char *name, char *buf, size_t cap);
void th_resp_free(struct th_resp *r);

/* Registers a user through the API and returns its token (malloc'd) or NULL. */
char *th_register(struct th_server *s, const char *email, const char *password);
/* Creates an admin with the CLI (`user create --role admin`) and logs in; token malloc'd. */
char *th_admin_token(struct th_server *s);

/* What most suites share: th_start() with EMPORIUM_RATE_LIMITS=off and an admin token in
 * *admin (malloc'd). Returns 0 or -1 (for a cmocka group setup). */
int th_suite_start(struct th_server *s, char **admin);
/* Frees admin, stops (SIGTERM) and cleans up; 0 only when the server exited 0, so a
 * sanitizer report at exit fails the group teardown. */
int th_suite_stop(struct th_server *s, char *admin);

/* For tests that open the library (app_new) instead of a server: when EMPORIUM_TEST_BACKEND
 * is postgres, writes EMPORIUM_TEST_PG_URL with a fresh database prefix <tag><pid>_<random>
 * to out and returns 1; on SQLite returns 0 (out is ""); -1 when the URL is missing or too
 * long. */
int th_backend_db_url(const char *tag, char *out, size_t cap);

/* JSON path helpers: th_jstr(r->json, "user.email") -> string or NULL; th_jint likewise. */
const char *th_jstr(json_t *root, const char *path);
long long th_jint(json_t *root, const char *path, long long dflt);

/* Checks the error body shape {"error":{"code","message"[,"field"]}} and its code/field
 * (field may be NULL to not check). */
bool th_is_error(const struct th_resp *r, long status, const char *code, const char *field);

#endif
