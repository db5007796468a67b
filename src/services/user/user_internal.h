/* SPDX-License-Identifier: MIT */
/* user_internal.h — shared between the user service's own files only (never included by
 * another service: they use include/emporium/svc/user.h). No HTTP types here. */
#ifndef EMPORIUM_USER_INTERNAL_H
#define EMPORIUM_USER_INTERNAL_H
#include <stdbool.h>
#include <stdint.h>

#include "emporium/db.h"
#include "emporium/svc/user.h"

#define SESSION_CACHE_MS 5000 /* how long a process trusts a verified session */

struct app;
struct app_identity;
struct cli_command;
struct service_db;

/* The service's state, kept in the app (app_service_ctx). */
struct user_sessions;
struct app_identity;
struct user_ctx {
    struct ratelimit *throttle;     /* failed-login buckets */
    struct user_sessions *sessions; /* user_session.c */
};

/* --- user.c (domain) --- */
int user__init(struct app *app);
void user__deinit(struct app *app);
/* The in-process authenticator: resolves a bearer token (app.h's app_authenticate_fn). */
int user__verify_token(struct app *app, const char *token, struct app_identity *out);
/* Trims and lower-cases an email address; ERR_INVALID when it is not one. */
int user__normalize_email(const char *in, char out[USER_EMAIL_MAX + 1]);

/* --- user_session.c: the session store (database or Redis) and the process cache --- */
int user__sessions_init(struct app *app, struct user_ctx *ctx);
void user__sessions_deinit(struct user_ctx *ctx);
/* SHA-256 of a token: hex, and the raw bytes when raw != NULL. */
void user__token_hash(const char *token, char hex[65], unsigned char raw[32]);
/* A new session for u into *s: in Redis when configured (unless in_db), else a row on c. */
int user__session_open(struct app *app, struct db_conn *c, const struct user *u, bool in_db,
                       struct user_session *s);
/* The authenticator: ERR_UNAUTHORIZED (unknown, expired), ERR_UNAVAILABLE (store down). */
int user__session_lookup(struct app *app, const char *token, struct app_identity *out);
/* Drops every cached session of user_id here, and writes the event that drops them in the
 * other processes (on c, inside the caller's transaction): for a password or role change. */
int user__sessions_forget_user(struct app *app, struct db_conn *c, int64_t user_id);
void user__session_sweep(struct app *app, void *unused);

/* --- user_store.c (SQL) --- the caller holds the connection. */
#define USER_HASH_MAX 128 /* crypto_pwhash_STRBYTES */
extern const struct service_db user__dbs[];
/* ERR_CONFLICT when the email is taken. */
int user_store_insert(struct db_conn *c, const struct user *u, const char *pw_hash);
/* Like user_store_insert, but an existing email is not an error: *inserted says which, and
 * u->id is set to the existing account's id. */
int user_store_insert_or_get(struct db_conn *c, struct user *u, const char *pw_hash,
                             bool *inserted);
/* ERR_NOTFOUND when absent. pw_hash may be NULL. */
int user_store_by_email(struct db_conn *c, const char *email, struct user *out,
                        char pw_hash[USER_HASH_MAX]);
int user_store_by_id(struct db_conn *c, int64_t id, struct user *out);
/* out[i] = the account ids[i], or all zero (id 0) when there is none; one statement. */
int user_store_by_ids(struct db_conn *c, enum db_dialect d, const int64_t *ids, int n,
                      struct user *out);
int user_store_session_add(struct db_conn *c, const char *token_hash_hex, int64_t user_id,
                           int64_t created_at, int64_t expires_at);
int user_store_session_delete(struct db_conn *c, const char *token_hash_hex);
/* The unexpired session's account: ERR_NOTFOUND when none. */
int user_store_session_user(struct db_conn *c, const char *token_hash_hex, int64_t now,
                            int64_t *user_id, enum user_role *role, enum user_tier *tier,
                            int64_t *expires_at);
/* The generation of the Redis session copies; bump: start a new one first. */
int user_store_session_generation(struct db_conn *c, bool bump, int64_t *out);
/* Deletes at most `max` sessions expired at `now`; returns how many. */
int user_store_sessions_sweep(struct db_conn *c, int64_t now, int max);

/* --- user_remote.c: the authenticator of a process without the user service --- */
int user__remote_init(struct app *app);
void user__remote_deinit(struct app *app);

/* --- user_cli.c --- */
extern const struct cli_command user__cli;
int user__command(struct app *app, int argc, char **argv);

#endif
