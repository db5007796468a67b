/* SPDX-License-Identifier: MIT */
/* app.h — the application context shared by every service in one process.
 *
 * Built once by `emporium serve` (or a test) from the configuration, it owns the open
 * logical databases, the rate limiter and the metrics registry. Everything here is safe to
 * use from any worker thread after app_start() returned. */
#ifndef EMPORIUM_APP_H
#define EMPORIUM_APP_H
#include <stdbool.h>
#include <stdint.h>
#include "emporium/config.h"
#include "emporium/db.h"

struct app;
struct ratelimit;
struct redis;
struct timers;

/* Opens every database the selected services declare and applies migrations. */
int app_new(struct app **out, const struct config *cfg);
void app_free(struct app *app);
const struct config *app_config(const struct app *app);
/* A logical database by name ("users", "orders_3"); NULL when not opened. Borrowed. */
struct db *app_db(struct app *app, const char *name);
/* Shard `i` of a sharded database ("orders", 3 -> "orders_3"). */
struct db *app_db_shard(struct app *app, const char *base, int i);
int app_db_count(const struct app *app);
struct db *app_db_at(struct app *app, int i);
/* Adds a database opened after start (an order shard on another server, order_shards.c):
 * from then on app_db() finds it by its db_name(), the outbox relay visits it when its name
 * is a shard of a database with an outbox, and app_free() closes it. ERR_CONFLICT when one
 * of that name is open (the caller keeps db), ERR_NOMEM when the table is full. */
int app_db_attach(struct app *app, struct db *db);
struct ratelimit *app_ratelimit(struct app *app);
/* The Redis client (EMPORIUM_REDIS_URL / EMPORIUM_REDIS_CLUSTER), or NULL when none is set.
 * Lives as long as the app. */
struct redis *app_redis(struct app *app);
/* Whether service `name` runs in this process (--services). */
bool app_has_service(const struct app *app, const char *name);
/* --- per-service state: init() stores the service's context, its functions fetch it, and
 * deinit() frees it (app_free() does not), so that no service keeps module state in
 * file-level globals. `service` must outlive the app (a string literal). Set from init()
 * only; read from any thread after start-up. NULL when none was set. At most 32. --- */
int app_set_service_ctx(struct app *app, const char *service, void *ctx);
void *app_service_ctx(const struct app *app, const char *service);

/* --- bearer-token authentication: the user service registers, the HTTP core asks --- */
struct app_identity {
    int64_t user_id;
    bool admin;                   /* the admin role */
    bool premium;                 /* the premium tier */
    unsigned char token_hash[32]; /* SHA-256 of the accepted token */
};
/* Resolves a bearer token: 0 and *out filled, ERR_UNAUTHORIZED (unknown or expired) or
 * another ERR_* (e.g. ERR_UNAVAILABLE when the database is down). */
typedef int (*app_authenticate_fn)(struct app *app, const char *token, struct app_identity *out);
/* Registered once from a service's init(); ERR_CONFLICT when one is already registered. */
int app_set_authenticator(struct app *app, app_authenticate_fn fn);
/* Calls the registered authenticator; ERR_UNAUTHORIZED when none is (the user service does
 * not run in this process). */
int app_authenticate(struct app *app, const char *token, struct app_identity *out);

/* --- background jobs (timer.h) --- */
struct timers *app_timers(struct app *app);
/* Starts the background job thread: `emporium serve` only, after every service's init() and
 * on_serve(). app_free() stops it first. Returns 0 or ERR_NOMEM. */
int app_start_timers(struct app *app);

#endif
