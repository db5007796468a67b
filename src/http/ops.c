/* SPDX-License-Identifier: MIT */
/* ops.c — operational endpoints: /health, /ready, /metrics, /openapi.json.
 *
 * /openapi.json is merged once from the embedded fragments (src/http/core.openapi.json and
 * each service's <name>.openapi.json) and served from a cached string. */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "emporium/app.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/flags.h"
#include "emporium/metrics.h"
#include "emporium/redis.h"
#include "emporium/server.h"
#include "http_internal.h"

struct asset {
    const char *name;
    const char *text;
};
extern const struct asset assets_openapi[];

static int h_health(struct http_req *req)
{
    static const char body[] = "{\"status\":\"ok\"}";
    return http_reply_raw(req, 200, "application/json", body, sizeof body - 1, false);
}

static int h_ready(struct http_req *req)
{
    struct app *app = http_app(req);
    if (http__draining) { /* stopping: the balancer should send elsewhere */
        http_add_header(req, "Retry-After", "5");
        return http_fail_code(req, ERR_UNAVAILABLE, "not_ready",
                              json_pack("{s:[s]}", "down", "draining"), "shutting down");
    }
    json_t *down = json_array();
    for (int i = 0; i < app_db_count(app); i++) {
        struct db *db = app_db_at(app, i);
        if (db_ping(db) < 0)
            json_array_append_new(down, json_sprintf("database %s", db_name(db)));
    }
    if (json_array_size(down) == 0) {
        json_decref(down);
        /* Redis is a shared speed-up, not a dependency: without it reads go to the databases
         * and rate limits are per process. Ready, but say so. */
        struct redis *redis = app_redis(app);
        if (redis && redis_ping(redis) < 0)
            return http_reply_json(
                req, 200, json_pack("{s:s,s:[s]}", "status", "ready", "degraded", "redis"));
        return http_reply_json(req, 200, json_pack("{s:s}", "status", "ready"));
    }
    http_add_header(req, "Retry-After", "5");
    return http_fail_code(req, ERR_UNAVAILABLE, "not_ready", json_pack("{s:o}", "down", down),
                          "dependencies down");
}

static void write_db_metrics(struct buf *out, struct app *app)
{
    buf_puts(out, "# HELP emporium_db_connections Database connections by state.\n"
                  "# TYPE emporium_db_connections gauge\n");
    for (int i = 0; i < app_db_count(app); i++) {
        struct db *db = app_db_at(app, i);
        int in_use = 0, idle = 0;
        db_pool_stats(db, &in_use, &idle);
        buf_printf(out, "emporium_db_connections{db=\"%s\",state=\"in_use\"} %d\n", db_name(db),
                   in_use);
        buf_printf(out, "emporium_db_connections{db=\"%s\",state=\"idle\"} %d\n", db_name(db),
                   idle);
    }
    if (app_db_count(app) == 0)
        return;
    /* Group commit at work: intents per batch (the SQLite writer, or PostgreSQL's shared
     * commits: db_query_many_shared), and on SQLite the WAL pages per commit. */
    bool sqlite = db_dialect(app_db_at(app, 0)) == DB_SQLITE;
    static const struct {
        const char *name, *help;
        size_t off;
    } c[] = {
        {"emporium_db_write_batches_total",
         "Commits of group commit (SQLite writer, PostgreSQL shared commits).",
         offsetof(struct db_write_stats, batches)},
        {"emporium_db_write_intents_total", "Write intents (calls) committed by group commit.",
         offsetof(struct db_write_stats, intents)},
        {"emporium_db_commits_total", "SQLite commits, by any connection.",
         offsetof(struct db_write_stats, commits)},
        {"emporium_db_wal_frames_total", "SQLite WAL frames (pages) written by commits.",
         offsetof(struct db_write_stats, wal_frames)},
    };
    int n = app_db_count(app);
    struct db_write_stats *st = calloc((size_t)n, sizeof *st);
    if (!st)
        return;
    for (int i = 0; i < n; i++) /* once per database: each metric's samples go together */
        db_write_stats(app_db_at(app, i), &st[i]);
    for (size_t k = 0; k < (sqlite ? sizeof c / sizeof c[0] : 2); k++) {
        buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", c[k].name, c[k].help, c[k].name);
        for (int i = 0; i < n; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&st[i] + c[k].off, sizeof v);
            buf_printf(out, "%s{db=\"%s\"} %llu\n", c[k].name, db_name(app_db_at(app, i)),
                       (unsigned long long)v);
        }
    }
    free(st);
}

static int h_metrics(struct http_req *req)
{
    struct buf out = BUF_INIT(0);
    metrics_write_process(&out);
    write_db_metrics(&out, http_app(req));
    metrics_write_all(&out);
    metrics_write_counters(&out);
    size_t len;
    char *s = buf_steal(&out, &len);
    if (!s)
        return ERR_NOMEM;
    int rc = http_reply_raw(req, 200, "text/plain; version=0.0.4; charset=utf-8", s, len, true);
    free(s);
    return rc;
}

json_t *http_openapi_document(void)
{
    json_t *doc = NULL;
    for (const struct asset *a = assets_openapi; a->name; a++)
        if (!strcmp(a->name, "core"))
            doc = json_loads(a->text, 0, NULL);
    if (!doc)
        return NULL;
    json_t *paths = json_object_get(doc, "paths");
    json_t *comps = json_object_get(doc, "components");
    for (const struct asset *a = assets_openapi; a->name; a++) {
        if (!strcmp(a->name, "core"))
            continue;
        json_error_t je;
        json_t *frag = json_loads(a->text, 0, &je);
        if (!frag)
            continue; /* the unit test checks every fragment parses */
        json_object_update(paths, json_object_get(frag, "paths"));
        /* Merge each components section (schemas, parameters, responses, …). */
        const char *section;
        json_t *members;
        json_object_foreach (json_object_get(frag, "components"), section, members) {
            json_t *into = json_object_get(comps, section);
            if (!into)
                json_object_set(comps, section, members);
            else
                json_object_update(into, members);
        }
        json_decref(frag);
    }
    return doc;
}

static char *openapi_text;
static size_t openapi_len;
static pthread_once_t openapi_once = PTHREAD_ONCE_INIT;

static void openapi_build(void)
{
    json_t *doc = http_openapi_document();
    if (doc) {
        openapi_text = json_dumps(doc, JSON_COMPACT);
        openapi_len = openapi_text ? strlen(openapi_text) : 0;
        json_decref(doc);
    }
}

__attribute__((destructor)) static void openapi_free(void) { free(openapi_text); }

static int h_openapi(struct http_req *req)
{
    pthread_once(&openapi_once, openapi_build);
    if (!openapi_text)
        return ERR_INTERNAL;
    http_add_header(req, "Cache-Control", "public, max-age=300");
    return http_reply_raw(req, 200, "application/json", openapi_text, openapi_len, false);
}

/* The feature flags, their rollout, and whether each is on for the calling admin. */
static int h_flags(struct http_req *req)
{
    const struct config *cfg = app_config(http_app(req));
    int64_t me = http_auth(req)->user_id;
    json_t *list = json_array();
    for (int i = 0; i < flags_count(); i++) {
        struct flag_info fi;
        flags_get(cfg, i, &fi);
        json_array_append_new(list, json_pack("{s:s,s:s,s:i,s:b}", "name", fi.name, "description",
                                              fi.description, "percent", fi.percent,
                                              "enabled_for_you", flag_on(cfg, fi.name, me)));
    }
    return http_reply_json(req, 200, json_pack("{s:o}", "flags", list));
}

const struct http_route http__ops_routes[] = {
    {"GET", "/health", h_health, ROUTE_NOLIMIT | ROUTE_NOLOG},
    {"GET", "/ready", h_ready, ROUTE_NOLIMIT | ROUTE_NOLOG},
    {"GET", "/metrics", h_metrics, ROUTE_NOLIMIT | ROUTE_NOLOG},
    {"GET", "/openapi.json", h_openapi, ROUTE_NOLIMIT},
    {"GET", "/api/v1/admin/flags", h_flags, ROUTE_ADMIN},
    {NULL, NULL, NULL, 0},
};
