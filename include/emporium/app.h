/* SPDX-License-Identifier: MIT */
/* app.h — the application context shared by every service in one process.
 *
 * Built once by `emporium serve` (or a test) from the configuration, it owns the open
 * logical databases, the rate limiter and the metrics registry. Everything here is safe to
 * use from any worker thread after app_start() returned. */
#ifndef EMPORIUM_APP_H
#define EMPORIUM_APP_H
#include <stdbool.h>
#include "emporium/config.h"
#include "emporium/db.h"

struct app;
struct ratelimit;

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
struct ratelimit *app_ratelimit(struct app *app);
/* Whether service `name` runs in this process (--services). */
bool app_has_service(const struct app *app, const char *name);
/* A service's own state (its context, allocated by its init() and freed by its deinit()),
 * so that no service keeps module state in file-level globals. `service` must outlive the
 * app (a string literal). Set from init() only; read from any thread after start-up.
 * app_service_ctx() returns NULL when none was set. */
int app_set_service_ctx(struct app *app, const char *service, void *ctx);
void *app_service_ctx(struct app *app, const char *service);

#endif
