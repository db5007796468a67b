/* SPDX-License-Identifier: MIT */
/* unit_app.c — see unit_app.h. */
#include "unit_app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

int th_unit_app_config(struct th_unit_app *u, const char *tag, const char *services)
{
    memset(u, 0, sizeof *u);
    if (config_from_env(&u->cfg) < 0)
        return -1;
    snprintf(u->data_dir, sizeof u->data_dir, "/tmp/emp-%s-XXXXXX", tag);
    if (!mkdtemp(u->data_dir))
        return -1;
    int pg = th_backend_db_url(tag, u->pg_url, sizeof u->pg_url);
    if (pg < 0)
        return -1;
    u->pg = pg == 1;
    u->cfg.data_dir = u->data_dir;
    u->cfg.database_url = u->pg ? u->pg_url : NULL;
    u->cfg.services = services;
    u->cfg.demo = false;
    return 0;
}

int th_unit_app_open(struct th_unit_app *u) { return app_new(&u->app, &u->cfg) == 0 ? 0 : -1; }

int th_unit_app_close(struct th_unit_app *u)
{
    app_free(u->app);
    u->app = NULL;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", u->data_dir);
    return system(cmd) == 0 ? 0 : -1;
}
