/* SPDX-License-Identifier: MIT */
/* unit_app.h — test support for unit tests that drive the library directly (no server
 * process): an app over a fresh data dir and, when EMPORIUM_TEST_BACKEND=postgres, over
 * databases with a fresh prefix on the test server (th_backend_db_url). */
#ifndef EMPORIUM_TEST_UNIT_APP_H
#define EMPORIUM_TEST_UNIT_APP_H
#include "emporium/app.h"
#include "emporium/config.h"

struct th_unit_app {
    struct config cfg; /* cfg.data_dir and cfg.database_url point into this struct */
    struct app *app;
    char data_dir[256];
    char pg_url[512];
    bool pg; /* the databases are PostgreSQL's */
};

/* Fills u->cfg from the environment with only `services` (no demo catalog), a fresh data dir
 * /tmp/emp-<tag>-XXXXXX and the test backend's databases (prefix <tag><pid>_<random>).
 * The caller may adjust u->cfg, then th_unit_app_open(). 0, or -1 on failure. */
int th_unit_app_config(struct th_unit_app *u, const char *tag, const char *services);
/* app_new() over u->cfg into u->app: 0 or -1. */
int th_unit_app_open(struct th_unit_app *u);
/* app_free(), then the data dir removed: 0 or -1. */
int th_unit_app_close(struct th_unit_app *u);

#endif
