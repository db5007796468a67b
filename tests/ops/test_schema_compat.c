/* SPDX-License-Identifier: MIT */
/* test_schema_compat.c — `emporium migrate --plan` and the newer-schema rule (issue 17),
 * through the CLI and `serve` of the real binary, on SQLite and PostgreSQL:
 *
 *   - on a fresh database the plan lists every migration per logical database (expand or
 *     contract) and applies nothing (a second plan still lists them);
 *   - after `migrate`, every database is "up to date";
 *   - a newer program's expand migration (a schema_migrations row above what this program
 *     knows, marked readable by it in schema_compat) is run on, with a warning: plan exit 0,
 *     `serve` starts and answers;
 *   - a newer program's contract migration (min_reader above this program) is refused: plan
 *     exit 1 naming it, `migrate` and `serve` exit non-zero and say why; nothing is changed.
 *
 * The "newer program" is simulated by writing its bookkeeping rows with the database API
 * (what such a program's db_migrate writes); the two-binary upgrade under load is
 * test_upgrade (make chaos). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "emporium/db.h"
#include "harness.h"

static const char *const env[] = {"EMPORIUM_RATE_LIMITS=off", NULL};

static struct db *open_orders(struct th_server *s)
{
    struct db *db = NULL;
    struct db_options opt = {
        .url = s->db_url[0] ? s->db_url : NULL, .data_dir = s->data_dir, .pool_size = 1};
    assert_int_equal(db_open(&db, "orders_0", &opt), 0);
    return db;
}

static void exec1(struct db *db, const char *sql, int64_t a, int64_t b)
{
    struct db_val args[2] = {DB_INT(a), DB_INT(b)};
    int n = (int)(strchr(sql, '$') ? (strstr(sql, "$2") ? 2 : 1) : 0);
    assert_true(db_query_once(db, sql, n, args, NULL) >= 0);
}

static int plan(struct th_server *s, char **out)
{
    const char *args[] = {"migrate", "--plan", NULL};
    return th_cli(s, args, out);
}

/* One service's databases only (a fresh PostgreSQL database costs a second or two). */
static int plan_users(struct th_server *s, char **out)
{
    const char *args[] = {"migrate", "--plan", "--services", "user", NULL};
    return th_cli(s, args, out);
}

static void test_plan_and_newer_schema(void **state)
{
    (void)state;
    struct th_server s;
    char *out = NULL;
    assert_int_equal(th_start(&s, env, NULL), 0);
    assert_int_equal(th_stop(&s), 0);

    /* Everything applied by serve: up to date. */
    assert_int_equal(plan(&s, &out), 0);
    assert_non_null(strstr(out, "DATABASE"));
    assert_non_null(strstr(out, "orders_0"));
    assert_null(strstr(out, "to apply"));
    assert_non_null(strstr(out, "up to date"));
    free(out);

    struct db *db = open_orders(&s);
    int known = db_schema_version(db);
    assert_true(known >= 1);
    assert_int_equal(db_schema_min_reader(db), 0); /* every migration so far is an expand */

    /* A newer program applied an expand: this one runs on it. */
    exec1(db, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", known + 1, 1);
    exec1(db, "INSERT INTO schema_compat (version, min_reader) VALUES ($1, $2)", known + 1, 0);
    assert_int_equal(plan(&s, &out), 0);
    assert_non_null(strstr(out, "this one runs on it"));
    free(out);
    assert_int_equal(th_restart(&s, env, NULL), 0);
    struct th_resp r;
    assert_int_equal(th_req(&s, "GET", "/ready", NULL, NULL, &r), 0);
    assert_int_equal(r.status, 200);
    th_resp_free(&r);
    assert_int_equal(th_stop(&s), 0);

    /* A newer program applied a contract: this one refuses, changes nothing. */
    exec1(db, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", known + 2, 1);
    exec1(db, "INSERT INTO schema_compat (version, min_reader) VALUES ($1, $2)", known + 2,
          known + 2);
    assert_int_equal(db_schema_min_reader(db), known + 2);
    assert_int_equal(plan(&s, &out), 1);
    assert_non_null(strstr(out, "this one refuses to start"));
    free(out);
    const char *migrate[] = {"migrate", NULL};
    assert_int_not_equal(th_cli(&s, migrate, &out), 0);
    assert_non_null(strstr(out, "refusing to start"));
    free(out);
    /* serve refuses too (th_restart prints the log and returns -1; the data stays). */
    assert_int_equal(th_restart(&s, env, NULL), -1);
    assert_int_equal(s.pid, 0);
    assert_int_equal(db_schema_version(db), known + 2);

    /* Rolled forward past it (here: the rows taken back out), this program starts again. */
    exec1(db, "DELETE FROM schema_compat WHERE version > $1", known, 0);
    exec1(db, "DELETE FROM schema_migrations WHERE version > $1", known, 0);
    db_close(db);
    assert_int_equal(th_restart(&s, env, NULL), 0);
    assert_int_equal(th_stop(&s), 0);
    th_cleanup(&s);
}

static void test_plan_applies_nothing(void **state)
{
    (void)state;
    struct th_server s;
    char *out = NULL;
    assert_int_equal(th_start(&s, env, NULL), 0);
    assert_int_equal(th_stop(&s), 0);
    /* A database this program does not have yet: a fresh, separate data dir / prefix. */
    struct th_server fresh = s;
    size_t dl = strlen(s.data_dir);
    assert_true(dl + 7 < sizeof fresh.data_dir);
    memcpy(fresh.data_dir + dl, "/fresh", 7);
    if (s.db_url[0]) {
        char *q = strrchr(fresh.db_url, '/');
        assert_non_null(q);
        size_t room = sizeof fresh.db_url - (size_t)(q + 1 - fresh.db_url);
        const char *base = strrchr(s.db_url, '/') + 1;
        assert_true(strlen(base) + 6 < room);
        memcpy(q + 1 + strlen(base), "fresh", 6);
    }
    for (int round = 0; round < 2; round++) { /* twice: the first applied nothing */
        assert_int_equal(plan_users(&fresh, &out), 0);
        assert_non_null(strstr(out, "users          migration 1   expand"));
        assert_null(strstr(out, "orders_0"));
        assert_non_null(strstr(out, "to apply"));
        free(out);
    }
    th_cleanup(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_and_newer_schema),
        cmocka_unit_test(test_plan_applies_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
