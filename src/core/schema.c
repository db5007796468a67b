/* SPDX-License-Identifier: MIT */
/* schema.c — `emporium migrate --plan` (see schema.h). It opens each database and reads its
 * schema_migrations / schema_compat tables; it never applies a migration (an absent database
 * is created empty by db_open, as `serve` would, and reported at version 0). */
#include "emporium/schema.h"

#include <stdbool.h>
#include <string.h>

#include "emporium/config.h"
#include "emporium/db.h"
#include "emporium/err.h"
#define EMPORIUM_SERVICE_NO_HTTP /* core: no HTTP types here */
#include "emporium/service.h"

/* The first statement of a migration, on one line, at most 70 characters. */
static void first_statement(const char *sql, char *buf, size_t cap)
{
    size_t k = 0;
    for (const char *p = sql ? sql : ""; *p && *p != ';' && k + 1 < cap; p++) {
        char ch = (*p == '\n' || *p == '\t') ? ' ' : *p;
        if (ch == ' ' && (k == 0 || buf[k - 1] == ' '))
            continue;
        buf[k++] = ch;
    }
    buf[k] = 0;
    if (k + 1 >= cap && cap > 4)
        memcpy(buf + cap - 4, "...", 4);
}

static int plan_one(const struct config *cfg, const char *name, const struct service_db *sd,
                    FILE *out)
{
    struct db *db;
    struct db_options opt = {.url = cfg->database_url, .data_dir = cfg->data_dir, .pool_size = 1};
    int rc = db_open(&db, name, &opt);
    if (rc < 0) {
        fprintf(out, "%-16s cannot open: %s\n", name, err_str(rc));
        return 1;
    }
    int have = db_schema_version(db), floor = have < 0 ? have : db_schema_min_reader(db);
    int n = sd->n_migrations, bad = 0;
    bool pg = db_dialect(db) == DB_POSTGRES;
    db_close(db);
    if (have < 0 || floor < 0) {
        fprintf(out, "%-16s cannot read its schema version: %s\n", name,
                err_str(have < 0 ? have : floor));
        return 1;
    }
    if (have == n) {
        fprintf(out, "%-16s %-7d %-8d up to date\n", name, have, n);
    } else if (have < n) {
        fprintf(out, "%-16s %-7d %-8d %d to apply\n", name, have, n, n - have);
        for (int v = have + 1; v <= n; v++) {
            const struct db_migration *m = &sd->migrations[v - 1];
            char what[72];
            first_statement(pg && m->pg ? m->pg : m->sql, what, sizeof what);
            fprintf(out, "  %-14s migration %-3d %-8s %s\n", name, v,
                    m->contract ? "contract" : "expand", what);
        }
    } else if (floor <= n) {
        fprintf(out,
                "%-16s %-7d %-8d newer than this program; readable by programs that know %d or "
                "more: this one runs on it\n",
                name, have, n, floor);
    } else {
        fprintf(out,
                "%-16s %-7d %-8d newer than this program; needs one that knows %d or more: this "
                "one refuses to start\n",
                name, have, n, floor);
        bad = 1;
    }
    return bad;
}

int schema_plan(const struct config *cfg, FILE *out)
{
    int bad = 0;
    fprintf(out, "%-16s %-7s %-8s %s\n", "DATABASE", "SCHEMA", "PROGRAM", "PLAN (nothing applied)");
    for (int s = 0; services_all[s]; s++) {
        const struct service *svc = services_all[s];
        if (!config_runs_service(cfg, svc->name) || !svc->dbs)
            continue;
        for (const struct service_db *sd = svc->dbs; sd->name; sd++) {
            if (sd->n_migrations <= 0)
                continue;
            if (sd->shards == 0) {
                bad |= plan_one(cfg, sd->name, sd, out);
                continue;
            }
            for (int i = 0; i < sd->shards; i++) {
                char name[64];
                snprintf(name, sizeof name, "%s_%d", sd->name, i);
                bad |= plan_one(cfg, name, sd, out);
            }
        }
    }
    fflush(out);
    return bad;
}
