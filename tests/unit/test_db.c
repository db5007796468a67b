/* SPDX-License-Identifier: MIT */
/* test_db.c — unit tests of the storage port (emporium/db.h) on the backend under test.
 *
 * EMPORIUM_TEST_BACKEND picks the backend: "sqlite" (default) uses a fresh temporary data
 * directory; "postgres" uses EMPORIUM_TEST_PG_URL (normally through PgBouncer, see
 * scripts/test-servers.sh) with its dbname replaced by a fresh "tdb_<pid>_<random>", so runs
 * never see each other's data. Every test opens its own logical database. At the end the
 * PostgreSQL databases created by the run are dropped WITH (FORCE), which also ends the idle
 * server connections PgBouncer keeps to them; if that fails the run still passes and the
 * throwaway cluster takes them away when it is stopped.
 *
 * Worker threads never call cmocka asserts (they longjmp): they count failures, and the
 * main thread asserts on the counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "emporium/arena.h"
#include "emporium/db.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"

static bool t_pg;
static char t_dir[256];  /* sqlite data dir */
static char t_url[1024]; /* postgres URL with the run's base dbname */
static char t_base[64];  /* that base dbname */
static int t_seq;

/* ---- helpers ------------------------------------------------------------------------- */

/* Replaces the database part of a postgres URL (…/dbname?params) by `base`. */
static void url_with_dbname(const char *url, const char *base, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *slash = strchr(p, '/');
    const char *q = strchr(p, '?');
    if (slash && q && q < slash)
        slash = NULL;
    size_t head = slash ? (size_t)(slash - url) : (q ? (size_t)(q - url) : strlen(url));
    const char *rest = q ? q : "";
    snprintf(out, cap, "%.*s/%s%s", (int)head, url, base, rest);
}

/* EMPORIUM_DB_PREPARE=on (the suite's prepared variant, straight to PostgreSQL). */
static bool t_prepare(void)
{
    const char *p = getenv("EMPORIUM_DB_PREPARE");
    return t_pg && p && (!strcmp(p, "1") || !strcmp(p, "on") || !strcmp(p, "true"));
}

static struct db_options t_opts(void)
{
    struct db_options o = {0};
    if (t_pg)
        o.url = t_url;
    else
        o.data_dir = t_dir;
    o.prepare = t_prepare();
    return o;
}

/* Opens a fresh logical database for one test. */
static struct db *open_fresh(const char *tag)
{
    char name[48];
    snprintf(name, sizeof name, "%s_%d", tag, ++t_seq);
    struct db_options o = t_opts();
    struct db *db = NULL;
    int rc = db_open(&db, name, &o);
    assert_int_equal(rc, 0);
    assert_non_null(db);
    return db;
}

static int64_t scalar(struct db_conn *c, const char *sql, int n, const struct db_val *args)
{
    struct db_rows *r = NULL;
    int rc = db_query(c, sql, n, args, &r);
    assert_true(rc >= 0);
    assert_int_equal(db_rows_count(r), 1);
    int64_t v = db_get_i64(r, 0, 0);
    db_rows_free(r);
    return v;
}

static void exec_ok(struct db_conn *c, const char *sql)
{
    assert_int_equal(db_exec_script(c, sql), 0);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Drops every database of this run; connects to "postgres" through the same URL. */
static void pg_drop_run_databases(void)
{
    const char *const keys[] = {"dbname", "dbname", NULL};
    const char *const vals[] = {t_url, "postgres", NULL};
    PGconn *h = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(h) != CONNECTION_OK) {
        fprintf(stderr, "test_db: cleanup skipped: %s", PQerrorMessage(h));
        PQfinish(h);
        return;
    }
    char pattern[96];
    snprintf(pattern, sizeof pattern, "%s\\_%%", t_base);
    const char *pv[] = {pattern};
    PGresult *res = PQexecParams(h, "SELECT datname FROM pg_database WHERE datname LIKE $1", 1,
                                 NULL, pv, NULL, NULL, 0);
    for (int i = 0; PQresultStatus(res) == PGRES_TUPLES_OK && i < PQntuples(res); i++) {
        char sql[256];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)",
                 PQgetvalue(res, i, 0));
        PGresult *d = PQexec(h, sql);
        if (PQresultStatus(d) != PGRES_COMMAND_OK)
            fprintf(stderr, "test_db: %s: %s", sql, PQresultErrorMessage(d));
        PQclear(d);
    }
    PQclear(res);
    PQfinish(h);
}

static int group_setup(void **state)
{
    log_set_level(LOG_ERROR);
    const char *be = getenv("EMPORIUM_TEST_BACKEND");
    t_pg = be && strcmp(be, "postgres") == 0;
    if (t_pg) {
        const char *url = getenv("EMPORIUM_TEST_PG_URL");
        if (!url || !*url) {
            fprintf(stderr, "test_db: EMPORIUM_TEST_PG_URL is not set\n");
            return -1;
        }
        srand((unsigned)(time(NULL) ^ getpid()));
        snprintf(t_base, sizeof t_base, "tdb_%d_%d", (int)getpid(), rand() % 100000);
        url_with_dbname(url, t_base, t_url, sizeof t_url);
    } else {
        snprintf(t_dir, sizeof t_dir, "/tmp/emp-test-db-XXXXXX");
        if (!mkdtemp(t_dir))
            return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    if (t_pg)
        pg_drop_run_databases();
    else
        nftw(t_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_open_basics(void **state)
{
    struct db *db = open_fresh("basics");
    assert_int_equal(db_dialect(db), t_pg ? DB_POSTGRES : DB_SQLITE);
    assert_string_equal(db_name(db), "basics_1");
    assert_int_equal(db_ping(db), 0);

    int used = -1, idle = -1;
    db_pool_stats(db, &used, &idle);
    assert_int_equal(used, 0);
    assert_int_equal(idle, 1); /* db_open checks reachability with one connection */

    struct db_conn *a, *b;
    assert_int_equal(db_conn_take(db, &a), 0);
    assert_int_equal(db_conn_take(db, &b), 0); /* same thread, second lease: another conn */
    assert_ptr_not_equal(a, b);
    db_pool_stats(db, &used, &idle);
    assert_int_equal(used, 2);
    assert_int_equal(idle, 0);
    db_conn_give(b);
    db_conn_give(a);
    db_conn_give(NULL);
    db_pool_stats(db, &used, &idle);
    assert_int_equal(used, 0);
    assert_int_equal(idle, 2);
    db_close(db);
    db_close(NULL);

    struct db_options o = t_opts();
    struct db *bad = NULL;
    assert_int_equal(db_open(&bad, "no/slash", &o), ERR_INVALID);
    assert_int_equal(db_open(&bad, "", &o), ERR_INVALID);
    assert_null(bad);
    o.url = "mysql://x";
    assert_int_equal(db_open(&bad, "fine", &o), ERR_INVALID);
}

static const struct db_migration steps_v3[] = {
    {"CREATE TABLE m1 (id BIGINT PRIMARY KEY, v TEXT NOT NULL)", NULL, false},
    {"INSERT INTO m1 (id, v) VALUES (1, 'sqlite'); CREATE TABLE m2 (x INTEGER)",
     "INSERT INTO m1 (id, v) VALUES (1, 'postgres'); CREATE TABLE m2 (x INTEGER)", false},
    {"CREATE TABLE m3 (x INTEGER); INSERT INTO m3 (x) VALUES (3)", NULL, false},
};

static void test_migrate(void **state)
{
    struct db *db = open_fresh("mig");
    assert_int_equal(db_schema_version(db), 0);
    assert_int_equal(db_migrate(db, steps_v3, 2), 0);
    assert_int_equal(db_schema_version(db), 2);
    assert_int_equal(db_migrate(db, steps_v3, 2), 0); /* idempotent */
    assert_int_equal(db_schema_version(db), 2);

    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM m1", 0, NULL), 1);
    struct db_rows *r;
    assert_true(db_query(c, "SELECT v FROM m1 WHERE id = 1", 0, NULL, &r) >= 0);
    assert_string_equal(db_get(r, 0, 0), t_pg ? "postgres" : "sqlite"); /* pg variant used */
    db_rows_free(r);
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM schema_migrations", 0, NULL), 2);
    assert_true(scalar(c, "SELECT MIN(applied_at) FROM schema_migrations", 0, NULL) > 0);
    db_conn_give(c);

    /* A failing step leaves nothing behind and the version unchanged. */
    struct db_migration broken[3] = {
        steps_v3[0],
        steps_v3[1],
        {"CREATE TABLE m3 (x INTEGER); INSERT INTO nope VALUES (1)", NULL, false}};
    assert_true(db_migrate(db, broken, 3) < 0);
    assert_int_equal(db_schema_version(db), 2);
    assert_int_equal(db_conn_take(db, &c), 0);
    assert_int_equal(db_query(c, "SELECT COUNT(*) FROM m3", 0, NULL, NULL), ERR_INTERNAL);
    db_conn_give(c);

    assert_int_equal(db_migrate(db, steps_v3, 3), 0);
    assert_int_equal(db_schema_version(db), 3);
    assert_int_equal(db_conn_take(db, &c), 0);
    assert_int_equal(scalar(c, "SELECT x FROM m3", 0, NULL), 3);
    db_conn_give(c);
    /* An older program against a newer schema is not an error (rolling deploys) as long as
     * every migration it does not know was an expand. */
    assert_int_equal(db_schema_min_reader(db), 0);
    assert_int_equal(db_migrate(db, steps_v3, 1), 0);
    /* A contract migration (4) raises the floor to 4 and an expand after it (5) keeps it:
     * programs that know 3 or fewer migrations are refused, nothing applied by them. */
    struct db_migration v5[5] = {steps_v3[0],
                                 steps_v3[1],
                                 steps_v3[2],
                                 {"ALTER TABLE m3 ADD COLUMN y INTEGER", NULL, true},
                                 {"CREATE TABLE m5 (x INTEGER)", NULL, false}};
    assert_int_equal(db_migrate(db, v5, 5), 0);
    assert_int_equal(db_schema_version(db), 5);
    assert_int_equal(db_schema_min_reader(db), 4);
    assert_int_equal(db_migrate(db, steps_v3, 3), ERR_CONFLICT);
    assert_int_equal(db_migrate(db, v5, 4), 0); /* knows the contract: runs */
    assert_int_equal(db_schema_version(db), 5);
    db_close(db);
}

struct mig_arg {
    struct db *db;
    atomic_int *fails;
};

static void *mig_worker(void *p)
{
    struct mig_arg *a = p;
    if (db_migrate(a->db, steps_v3, 3) != 0)
        atomic_fetch_add(a->fails, 1);
    return NULL;
}

static void test_migrate_concurrent(void **state)
{
    struct db *db = open_fresh("migc");
    atomic_int fails = 0;
    struct mig_arg a = {db, &fails};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, mig_worker, &a), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&fails), 0);
    assert_int_equal(db_schema_version(db), 3);
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM m3", 0, NULL), 1); /* ran once */
    db_conn_give(c);
    db_close(db);
}

static void test_params_and_values(void **state)
{
    struct db *db = open_fresh("params");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE p (id BIGINT PRIMARY KEY, a TEXT, b BIGINT, c TEXT)");
    const char *odd = "it's \"quoted\"; -- not a comment \\ ünïcödé 日本語 🎉";
    const char *ins = "INSERT INTO p (id, a, b, c) VALUES ($1, $2, $3, $4)";
    struct db_val r1[] = {DB_INT(1), DB_TEXT(odd), DB_INT(INT64_MAX), DB_NULLV};
    struct db_val r2[] = {DB_INT(2), DB_TEXT(""), DB_INT(INT64_MIN), DB_TEXT("x")};
    struct db_val r3[] = {DB_INT(3), DB_TEXT(NULL), DB_INT(0), DB_TEXT("y")};
    struct db_val r4[] = {DB_INT(4), DB_TEXT("four"), DB_INT(3), DB_TEXT("y")};
    assert_int_equal(db_query(c, ins, 4, r1, NULL), 1);
    assert_int_equal(db_query(c, ins, 4, r2, NULL), 1);
    assert_int_equal(db_query(c, ins, 4, r3, NULL), 1);
    assert_int_equal(db_query(c, ins, 4, r4, NULL), 1);

    struct db_rows *r;
    assert_int_equal(db_query(c, "SELECT id, a, b, c FROM p ORDER BY id", 0, NULL, &r), 0);
    assert_int_equal(db_rows_count(r), 4);
    assert_int_equal(db_rows_cols(r), 4);
    assert_string_equal(db_get(r, 0, 1), odd);
    assert_true(db_get_i64(r, 0, 2) == INT64_MAX);
    assert_string_equal(db_get(r, 0, 2), "9223372036854775807");
    assert_true(db_is_null(r, 0, 3));
    assert_null(db_get(r, 0, 3));
    assert_string_equal(db_get(r, 1, 1), ""); /* empty text is not NULL */
    assert_false(db_is_null(r, 1, 1));
    assert_true(db_get_i64(r, 1, 2) == INT64_MIN);
    assert_string_equal(db_get(r, 1, 2), "-9223372036854775808");
    assert_true(db_is_null(r, 2, 1)); /* DB_TEXT(NULL) is NULL */
    assert_int_equal(db_get_i64(r, 2, 1), 0);
    /* out of range cells read as NULL rather than crashing */
    assert_null(db_get(r, 9, 0));
    assert_null(db_get(r, 0, 9));
    db_rows_free(r);

    /* The same $n twice, and parameters in a different order than they appear. */
    struct db_val two[] = {DB_INT(3), DB_TEXT("x")};
    assert_int_equal(
        db_query(c, "SELECT id FROM p WHERE c = $2 OR b = $1 OR id = $1 ORDER BY id", 2, two, &r),
        0);
    assert_int_equal(db_rows_count(r), 3);
    assert_int_equal(db_get_i64(r, 0, 0), 2);
    assert_int_equal(db_get_i64(r, 1, 0), 3);
    assert_int_equal(db_get_i64(r, 2, 0), 4);
    db_rows_free(r);

    /* Text equality with the odd string round-trips through a parameter. */
    struct db_val one[] = {DB_TEXT(odd)};
    assert_int_equal(scalar(c, "SELECT id FROM p WHERE a = $1", 1, one), 1);
    /* IS NULL with a NULL parameter matches nothing by "=" semantics. */
    struct db_val nul[] = {DB_NULLV};
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM p WHERE a = $1", 1, nul), 0);
    /* Integers compare with BIGINT columns at both extremes. */
    struct db_val mx[] = {DB_INT(INT64_MAX), DB_INT(INT64_MIN)};
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM p WHERE b = $1 OR b = $2", 2, mx), 2);
    /* A SELECT with no table and arithmetic on a parameter. */
    struct db_val n5[] = {DB_INT(5)};
    assert_int_equal(scalar(c, "SELECT $1 + 1", 1, n5), 6);
    /* Many parameters (past any small fixed buffer). */
    struct db_val many[20];
    char sql[512] = "SELECT COUNT(*) FROM p WHERE id IN (";
    for (int i = 0; i < 20; i++) {
        many[i] = DB_INT(i + 1);
        char piece[16];
        snprintf(piece, sizeof piece, "%s$%d", i ? ", " : "", i + 1);
        strcat(sql, piece);
    }
    strcat(sql, ")");
    assert_int_equal(scalar(c, sql, 20, many), 4);

    /* Parameters must be exactly $1..$n on both backends. */
    assert_true(db_query(c, "SELECT id FROM p WHERE id = $1", 2, two, NULL) < 0);
    assert_true(db_query(c, "SELECT id FROM p WHERE id = $2", 1, one, NULL) < 0);
    db_conn_give(c);
    db_close(db);
}

static void test_conflict(void **state)
{
    struct db *db = open_fresh("conflict");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE u (id BIGINT PRIMARY KEY, email TEXT NOT NULL);"
               "CREATE UNIQUE INDEX u_email ON u (email)");
    const char *ins = "INSERT INTO u (id, email) VALUES ($1, $2)";
    struct db_val a[] = {DB_INT(1), DB_TEXT("a@x")};
    struct db_val same_id[] = {DB_INT(1), DB_TEXT("b@x")};
    struct db_val same_email[] = {DB_INT(2), DB_TEXT("a@x")};
    assert_int_equal(db_query(c, ins, 2, a, NULL), 1);
    assert_int_equal(db_query(c, ins, 2, same_id, NULL), ERR_CONFLICT);
    assert_int_equal(db_query(c, ins, 2, same_email, NULL), ERR_CONFLICT);
    /* The portable way to tolerate duplicates: ON CONFLICT (both dialects). */
    assert_int_equal(db_query(c, "INSERT INTO u (id, email) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                              2, same_email, NULL),
                     0);
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM u", 0, NULL), 1);

    /* A conflict inside a transaction: PostgreSQL aborts the transaction (the commit then
     * fails), SQLite only the statement. Either way, callers should roll back. */
    assert_int_equal(db_begin(c), 0);
    struct db_val b[] = {DB_INT(5), DB_TEXT("e@x")};
    assert_int_equal(db_query(c, ins, 2, b, NULL), 1);
    assert_int_equal(db_query(c, ins, 2, a, NULL), ERR_CONFLICT);
    if (t_pg) {
        assert_true(db_commit(c) < 0);
        assert_int_equal(scalar(c, "SELECT COUNT(*) FROM u", 0, NULL), 1);
    } else {
        assert_int_equal(db_rollback(c), 0);
    }
    assert_int_equal(db_rollback(c), 0); /* nothing open: fine */
    db_conn_give(c);
    db_close(db);
}

static void test_transactions(void **state)
{
    struct db *db = open_fresh("tx");
    struct db_conn *c, *other;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE t (id BIGINT PRIMARY KEY)");
    assert_int_equal(db_rollback(c), 0); /* safe with no transaction */
    assert_true(db_commit(c) < 0);       /* a commit that commits nothing says so */

    assert_int_equal(db_begin(c), 0);
    assert_int_equal(db_query(c, "INSERT INTO t (id) VALUES (1)", 0, NULL, NULL), 1);
    assert_int_equal(db_rollback(c), 0);
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM t", 0, NULL), 0);

    assert_int_equal(db_begin(c), 0);
    assert_int_equal(db_query(c, "INSERT INTO t (id) VALUES (2)", 0, NULL, NULL), 1);
    /* Uncommitted work is invisible to another connection. */
    assert_int_equal(db_conn_take(db, &other), 0);
    assert_int_equal(scalar(other, "SELECT COUNT(*) FROM t", 0, NULL), 0);
    assert_int_equal(db_commit(c), 0);
    assert_int_equal(scalar(other, "SELECT COUNT(*) FROM t", 0, NULL), 1);
    db_conn_give(other);

    /* Giving a connection back with an open transaction rolls it back. */
    assert_int_equal(db_begin(c), 0);
    assert_int_equal(db_query(c, "INSERT INTO t (id) VALUES (3)", 0, NULL, NULL), 1);
    db_conn_give(c);
    int used, idle;
    db_pool_stats(db, &used, &idle);
    assert_int_equal(used, 0);
    for (int i = 0; i < 3; i++) { /* whichever connection we get back */
        assert_int_equal(db_conn_take(db, &c), 0);
        assert_int_equal(scalar(c, "SELECT COUNT(*) FROM t WHERE id = 3", 0, NULL), 0);
        assert_int_equal(db_begin(c), 0); /* and it is usable for a new transaction */
        assert_int_equal(db_rollback(c), 0);
        db_conn_give(c);
    }

    /* After an error in a transaction, rollback works on both backends. */
    assert_int_equal(db_conn_take(db, &c), 0);
    assert_int_equal(db_begin(c), 0);
    assert_int_equal(db_query(c, "SELECT nope FROM t", 0, NULL, NULL), ERR_INTERNAL);
    assert_int_equal(db_rollback(c), 0);
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM t", 0, NULL), 1);
    db_conn_give(c);
    db_close(db);
}

/* db_query_many: several statements in one call (one round trip on PostgreSQL). */
static void test_query_many(void **state)
{
    struct db *db = open_fresh("many");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT NOT NULL)");

    /* Atomic, outside a transaction: every statement runs, each with its own result. */
    struct db_val a1[] = {DB_INT(1), DB_TEXT("one")}, a2[] = {DB_INT(2), DB_TEXT("two")};
    struct db_rows *r = NULL;
    struct db_stmt st[] = {
        {.sql = "INSERT INTO t (id, v) VALUES ($1, $2)", .n = 2, .args = a1},
        {.sql = "INSERT INTO t (id, v) VALUES ($1, $2) RETURNING id",
         .n = 2,
         .args = a2,
         .out = &r},
        {.sql = "SELECT id, v FROM t ORDER BY id", .out = &r},
    };
    st[1].out = NULL;
    assert_int_equal(db_query_many(c, st, 3, true), 0);
    assert_int_equal(st[0].rc, 1);
    assert_int_equal(st[1].rc, 1);
    assert_int_equal(st[2].rc, 0);
    assert_int_equal(db_rows_count(r), 2);
    assert_string_equal(db_get(r, 1, 1), "two");
    db_rows_free(r);

    /* A failure in the middle: that error, the rest not run, nothing of the batch kept. */
    struct db_val a3[] = {DB_INT(3), DB_TEXT("three")};
    struct db_rows *after = NULL;
    struct db_stmt bad[] = {
        {.sql = "INSERT INTO t (id, v) VALUES ($1, $2)", .n = 2, .args = a3},
        {.sql = "INSERT INTO t (id, v) VALUES ($1, $2)", .n = 2, .args = a1},
        {.sql = "SELECT id FROM t", .out = &after},
    };
    assert_int_equal(db_query_many(c, bad, 3, true), ERR_CONFLICT);
    assert_int_equal(bad[1].rc, ERR_CONFLICT);
    assert_true(bad[0].rc < 0); /* rolled back with the rest */
    assert_true(bad[2].rc < 0);
    assert_null(after);
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM t", 0, NULL), 2);
    /* and the connection is still good */
    assert_int_equal(db_query(c, "SELECT 1", 0, NULL, NULL), 0);

    /* Inside a transaction the batch is part of it: a rollback undoes it, and the BEGIN of
     * a transaction whose first statement is a batch still happens. */
    assert_int_equal(db_begin(c), 0);
    assert_int_equal(db_query_many(c, bad, 1, true), 0);
    assert_int_equal(db_rollback(c), 0);
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM t", 0, NULL), 2);
    assert_int_equal(db_begin(c), 0);
    assert_int_equal(db_query_many(c, bad, 1, true), 0);
    assert_int_equal(db_query(c, "UPDATE t SET v = 'x' WHERE id = 3", 0, NULL, NULL), 1);
    assert_int_equal(db_commit(c), 0);
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM t WHERE v = 'x'", 0, NULL), 1);

    /* A transaction with nothing in it commits fine; one whose batch failed rolls back. */
    assert_int_equal(db_begin(c), 0);
    assert_int_equal(db_commit(c), 0);
    assert_int_equal(db_begin(c), 0);
    assert_int_equal(db_query_many(c, bad + 1, 1, true), ERR_CONFLICT);
    assert_int_equal(db_rollback(c), 0);
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM t", 0, NULL), 3);

    /* Reads, not atomic; a bad statement is an error, not a crash. */
    struct db_rows *x = NULL, *y = NULL;
    struct db_val k[] = {DB_INT(2)};
    struct db_stmt rd[] = {
        {.sql = "SELECT v FROM t WHERE id = $1", .n = 1, .args = k, .out = &x},
        {.sql = "SELECT COUNT(*) FROM t", .out = &y},
    };
    assert_int_equal(db_query_many(c, rd, 2, false), 0);
    assert_string_equal(db_get(x, 0, 0), "two");
    assert_int_equal(db_get_i64(y, 0, 0), 3);
    db_rows_free(x);
    db_rows_free(y);
    rd[1].sql = "SELECT nope FROM t";
    assert_int_equal(db_query_many(c, rd, 2, false), ERR_INTERNAL);
    assert_null(y);
    db_rows_free(x);
    assert_int_equal(db_query_many(c, rd, DB_STMT_MAX + 1, false), ERR_INVALID);
    db_conn_give(c);
    db_close(db);
}

static void test_affected_rows(void **state)
{
    struct db *db = open_fresh("affected");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE a (id BIGINT PRIMARY KEY, n INTEGER NOT NULL)");
    assert_int_equal(
        db_query(c, "INSERT INTO a (id, n) VALUES (1, 0), (2, 0), (3, 5)", 0, NULL, NULL), 3);
    assert_int_equal(db_query(c, "UPDATE a SET n = n + 1", 0, NULL, NULL), 3);
    struct db_val five[] = {DB_INT(5)};
    assert_int_equal(db_query(c, "UPDATE a SET n = 0 WHERE n > $1", 1, five, NULL), 1);
    assert_int_equal(db_query(c, "UPDATE a SET n = 0 WHERE id > 100", 0, NULL, NULL), 0);
    /* Statements that change nothing report 0, not the previous statement's count. */
    assert_int_equal(db_query(c, "SELECT * FROM a", 0, NULL, NULL), 0);
    assert_int_equal(db_query(c, "UPDATE a SET n = n + 1", 0, NULL, NULL), 3);
    assert_int_equal(db_query(c, "CREATE TABLE b (x INTEGER)", 0, NULL, NULL), 0);
    assert_int_equal(db_query(c, "UPDATE a SET n = n + 1", 0, NULL, NULL), 3);
    assert_int_equal(db_begin(c), 0); /* BEGIN after a write: 0 */
    assert_int_equal(db_query(c, "DELETE FROM a WHERE id = 1", 0, NULL, NULL), 1);
    assert_int_equal(db_query(c, "DELETE FROM a WHERE id = 1", 0, NULL, NULL), 0);
    assert_int_equal(db_commit(c), 0);
    /* UPSERT counts as one affected row on both. */
    assert_int_equal(db_query(c,
                              "INSERT INTO a (id, n) VALUES (2, 7) ON CONFLICT (id) DO "
                              "UPDATE SET n = excluded.n",
                              0, NULL, NULL),
                     1);
    assert_int_equal(scalar(c, "SELECT n FROM a WHERE id = 2", 0, NULL), 7);
    db_conn_give(c);
    db_close(db);
}

static void test_returning(void **state)
{
    struct db *db = open_fresh("ret");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE r (id BIGINT PRIMARY KEY, name TEXT, n BIGINT NOT NULL)");
    int64_t id = id_new(3);
    struct db_val args[] = {DB_INT(id), DB_TEXT("widget")};
    struct db_rows *r;
    assert_int_equal(db_query(c,
                              "INSERT INTO r (id, name, n) VALUES ($1, $2, 10) RETURNING id, "
                              "name, n",
                              2, args, &r),
                     1);
    assert_int_equal(db_rows_count(r), 1);
    assert_int_equal(db_rows_cols(r), 3);
    assert_true(db_get_i64(r, 0, 0) == id);
    assert_string_equal(db_get(r, 0, 1), "widget");
    db_rows_free(r);

    struct db_val dec[] = {DB_INT(id), DB_INT(4)};
    assert_int_equal(db_query(c, "UPDATE r SET n = n - $2 WHERE id = $1 RETURNING n", 2, dec, &r),
                     1);
    assert_int_equal(db_get_i64(r, 0, 0), 6);
    db_rows_free(r);
    /* No row matched: an empty result with its columns. */
    struct db_val none[] = {DB_INT(-1), DB_INT(1)};
    assert_int_equal(db_query(c, "UPDATE r SET n = n - $2 WHERE id = $1 RETURNING n", 2, none, &r),
                     0);
    assert_int_equal(db_rows_count(r), 0);
    assert_int_equal(db_rows_cols(r), 1);
    db_rows_free(r);
    assert_int_equal(db_query(c, "DELETE FROM r RETURNING id", 0, NULL, &r), 1);
    assert_true(db_get_i64(r, 0, 0) == id);
    db_rows_free(r);
    /* A statement without a result still yields (empty) rows when asked. */
    assert_int_equal(db_query(c, "DELETE FROM r", 0, NULL, &r), 0);
    assert_non_null(r);
    assert_int_equal(db_rows_count(r), 0);
    db_rows_free(r);
    db_conn_give(c);
    db_close(db);
}

static void test_scripts_and_errors(void **state)
{
    struct db *db = open_fresh("errs");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE s1 (x INTEGER);\n"
               "-- a comment\n"
               "INSERT INTO s1 (x) VALUES (1);\n"
               "INSERT INTO s1 (x) VALUES (2);\n");
    assert_int_equal(scalar(c, "SELECT SUM(x) FROM s1", 0, NULL), 3);
    assert_true(db_exec_script(c, "INSERT INTO s1 (x) VALUES (3); SELEKT 1") < 0);
    assert_int_equal(db_query(c, "SELEKT 1", 0, NULL, NULL), ERR_INTERNAL);
    assert_int_equal(db_query(c, "SELECT * FROM missing_table", 0, NULL, NULL), ERR_INTERNAL);
    /* db_query runs one statement; more is a bug on both backends. */
    assert_true(db_query(c, "SELECT 1; SELECT 2", 0, NULL, NULL) < 0);
    /* A trailing semicolon is fine. */
    assert_int_equal(db_query(c, "SELECT 1;", 0, NULL, NULL), 0);
    assert_int_equal(db_exec_script(c, "INSERT INTO s1 (x) VALUES ('x''y')") < 0, t_pg);
    db_conn_give(c);
    db_close(db);
}

static void test_statement_cache(void **state)
{
    struct db *db = open_fresh("cache");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE kv (id BIGINT PRIMARY KEY, v BIGINT)");
    assert_int_equal(db_query(c, "INSERT INTO kv (id, v) VALUES (1, 100)", 0, NULL, NULL), 1);
    /* A cached statement still sees schema changes, even one whose result changes shape
     * (PostgreSQL refuses to run such a prepared plan: it is prepared again). */
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM kv", 0, NULL), 1);
    struct db_val one[] = {DB_INT(1)};
    struct db_rows *r = NULL;
    for (int i = 0; i < 6; i++) { /* past the point where PostgreSQL settles on a plan */
        assert_int_equal(db_query(c, "SELECT * FROM kv WHERE id = $1", 1, one, &r), 0);
        assert_int_equal(db_rows_cols(r), 2);
        db_rows_free(r);
        r = NULL;
    }
    exec_ok(c, "ALTER TABLE kv ADD COLUMN w BIGINT");
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM kv", 0, NULL), 1);
    assert_int_equal(db_query(c, "SELECT * FROM kv WHERE id = $1", 1, one, &r), 0);
    assert_int_equal(db_rows_cols(r), 3);
    db_rows_free(r);
    r = NULL;
    /* and inside a transaction: the change is reported as busy (run it again) */
    exec_ok(c, "ALTER TABLE kv ADD COLUMN x BIGINT");
    assert_int_equal(db_begin(c), 0);
    int rc = db_query(c, "SELECT * FROM kv WHERE id = $1", 1, one, &r);
    if (t_prepare()) {
        assert_int_equal(rc, ERR_BUSY);
    } else {
        assert_int_equal(rc, 0);
        assert_int_equal(db_rows_cols(r), 4);
    }
    db_rows_free(r);
    r = NULL;
    db_rollback(c);
    assert_int_equal(db_query(c, "SELECT * FROM kv WHERE id = $1", 1, one, &r), 0);
    assert_int_equal(db_rows_cols(r), 4);
    db_rows_free(r);
    /* More distinct statements than the per-connection cache holds, twice over. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 300; i++) {
            char sql[96];
            snprintf(sql, sizeof sql, "SELECT v + %d FROM kv WHERE id = $1", i);
            assert_int_equal(scalar(c, sql, 1, one), 100 + i);
        }
    }
    db_conn_give(c);
    db_close(db);
}

/* Named prepared statements (EMPORIUM_DB_PREPARE, PostgreSQL): a statement whose Parse a
 * failing neighbour cut short is prepared again, and a connection whose server session ended
 * (the backend was terminated) prepares everything again on its new one. */
static void test_prepared_statements(void **state)
{
    if (!t_prepare())
        skip();
    struct db *db = open_fresh("prep");
    struct db_conn *c, *killer;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE kv (id BIGINT PRIMARY KEY, v BIGINT)");
    assert_int_equal(db_query(c, "INSERT INTO kv (id, v) VALUES (1, 100)", 0, NULL, NULL), 1);
    struct db_val one[] = {DB_INT(1)};
    const char *a = "SELECT v FROM kv WHERE id = $1", *b = "SELECT v + 1 FROM kv WHERE id = $1";
    struct db_rows *ra = NULL, *rb = NULL, *rx = NULL;
    struct db_stmt st[3] = {
        {.sql = a, .n = 1, .args = one, .out = &ra},
        {.sql = "SELECT v FROM no_such_table WHERE id = $1", .n = 1, .args = one, .out = &rx},
        {.sql = b, .n = 1, .args = one, .out = &rb},
    };
    assert_true(db_query_many(c, st, 3, false) < 0);
    db_rows_free(ra);
    db_rows_free(rb);
    db_rows_free(rx);
    assert_int_equal(scalar(c, a, 1, one), 100);
    assert_int_equal(scalar(c, b, 1, one), 101); /* its Parse never ran: prepared now */
    assert_int_equal(scalar(c, b, 1, one), 101);
    int64_t pid = scalar(c, "SELECT pg_backend_pid()", 0, NULL);
    assert_int_equal(db_conn_take(db, &killer), 0); /* a second connection */
    db_conn_give(c);
    struct db_val p[] = {DB_INT(pid)};
    assert_int_equal(
        scalar(killer,
               "SELECT CASE WHEN pg_terminate_backend(CAST($1 AS INTEGER)) THEN 1 ELSE 0 END", 1,
               p),
        1);
    /* The server ends the backend asynchronously: wait until it is gone. */
    for (int i = 0; i < 500; i++) {
        if (scalar(killer, "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1", 1, p) == 0)
            break;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(scalar(killer, "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1", 1, p),
                     0);
    /* The pool hands out its idle connections last in, first out: take both, the dead one
     * second. */
    struct db_conn *other;
    db_conn_give(killer);
    assert_int_equal(db_conn_take(db, &other), 0);
    assert_int_equal(db_conn_take(db, &c), 0); /* the dead one: it reconnects on first use */
    assert_int_equal(scalar(c, b, 1, one), 101);
    assert_int_equal(scalar(c, a, 1, one), 100);
    assert_true(scalar(c, "SELECT pg_backend_pid()", 0, NULL) != pid);
    db_conn_give(c);
    db_conn_give(other);
    db_close(db);
}

/* ---- concurrency --------------------------------------------------------------------- */

#define N_THREADS 8
#define N_INCR 200

struct worker {
    struct db *db;
    atomic_int *errors;
    atomic_int *wins;
    int attempts;
};

static int retry_sleep(int attempt)
{
    struct timespec ts = {0, (long)(1 + attempt % 10) * 1000000L};
    nanosleep(&ts, NULL);
    return attempt + 1;
}

/* One increment in its own transaction, retried as a whole on ERR_BUSY. */
static int increment_once(struct db *db)
{
    for (int attempt = 0; attempt < 200;) {
        struct db_conn *c;
        int rc = db_conn_take(db, &c);
        if (rc == ERR_UNAVAILABLE) { /* pool saturated for too long: just try again */
            attempt = retry_sleep(attempt);
            continue;
        }
        if (rc < 0)
            return rc;
        rc = db_begin(c);
        if (rc == 0) {
            rc = db_query(c, "UPDATE counter SET n = n + 1 WHERE id = $1", 1,
                          (struct db_val[]){DB_INT(1)}, NULL);
            if (rc == 1)
                rc = db_commit(c);
            else if (rc >= 0)
                rc = ERR_INTERNAL;
        }
        if (rc < 0)
            db_rollback(c);
        db_conn_give(c);
        if (rc != ERR_BUSY)
            return rc;
        attempt = retry_sleep(attempt);
    }
    return ERR_BUSY;
}

static void *counter_worker(void *p)
{
    struct worker *w = p;
    for (int i = 0; i < N_INCR; i++)
        if (increment_once(w->db) != 0)
            atomic_fetch_add(w->errors, 1);
    return NULL;
}

static void test_concurrent_counter(void **state)
{
    struct db *db = open_fresh("counter");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL);"
               "INSERT INTO counter (id, n) VALUES (1, 0)");
    db_conn_give(c);

    atomic_int errors = 0;
    struct worker w = {.db = db, .errors = &errors};
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, counter_worker, &w), 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&errors), 0);

    assert_int_equal(db_conn_take(db, &c), 0);
    assert_int_equal(scalar(c, "SELECT n FROM counter WHERE id = 1", 0, NULL), N_THREADS * N_INCR);
    db_conn_give(c);
    int used, idle;
    db_pool_stats(db, &used, &idle);
    assert_int_equal(used, 0);
    assert_true(idle >= 1 && idle <= N_THREADS + 1);
    db_close(db);
}

#define STOCK 100
#define STOCK_TRIES 40 /* per thread: 320 attempts for 100 units */

static void *stock_worker(void *p)
{
    struct worker *w = p;
    for (int i = 0; i < STOCK_TRIES; i++) {
        for (int attempt = 0;;) {
            struct db_conn *c;
            int rc = db_conn_take(w->db, &c);
            if (rc == 0) {
                /* Half the threads decrement inside a transaction, half in autocommit. */
                bool tx = (w->attempts++ & 1) != 0;
                if (tx)
                    rc = db_begin(c);
                if (rc == 0)
                    rc = db_query(c,
                                  "UPDATE stock SET avail = avail - 1 WHERE id = $1 AND "
                                  "avail >= 1",
                                  1, (struct db_val[]){DB_INT(7)}, NULL);
                if (rc >= 0) {
                    struct db_rows *r = NULL;
                    int q = db_query(c, "SELECT avail FROM stock WHERE id = 7", 0, NULL, &r);
                    if (q < 0 || db_get_i64(r, 0, 0) < 0)
                        atomic_fetch_add(w->errors, 1); /* negative stock: the bug we guard */
                    db_rows_free(r);
                }
                int won = rc;
                if (rc >= 0 && tx) {
                    int cr = db_commit(c);
                    if (cr < 0)
                        won = cr;
                }
                if (won < 0)
                    db_rollback(c);
                db_conn_give(c);
                rc = won;
            }
            if (rc == 1)
                atomic_fetch_add(w->wins, 1);
            if (rc == 0 || rc == 1)
                break;
            if ((rc != ERR_BUSY && rc != ERR_UNAVAILABLE) || attempt > 200) {
                atomic_fetch_add(w->errors, 1);
                break;
            }
            attempt = retry_sleep(attempt);
        }
    }
    return NULL;
}

static void test_concurrent_stock(void **state)
{
    struct db *db = open_fresh("stock");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE stock (id BIGINT PRIMARY KEY, avail INTEGER NOT NULL)");
    struct db_val init[] = {DB_INT(7), DB_INT(STOCK)};
    assert_int_equal(db_query(c, "INSERT INTO stock (id, avail) VALUES ($1, $2)", 2, init, NULL),
                     1);
    db_conn_give(c);

    atomic_int errors = 0, wins = 0;
    struct worker w[N_THREADS];
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        w[i] = (struct worker){.db = db, .errors = &errors, .wins = &wins, .attempts = i};
        assert_int_equal(pthread_create(&th[i], NULL, stock_worker, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&errors), 0);
    assert_int_equal(atomic_load(&wins), STOCK); /* every unit sold exactly once */
    assert_int_equal(db_conn_take(db, &c), 0);
    assert_int_equal(scalar(c, "SELECT avail FROM stock WHERE id = 7", 0, NULL), 0);
    db_conn_give(c);
    db_close(db);
}

/* Connections move between threads: one thread takes, another gives back and reuses. */
static void *take_worker(void *p)
{
    struct worker *w = p;
    for (int i = 0; i < 50; i++) {
        struct db_conn *c;
        if (db_conn_take(w->db, &c) != 0) {
            atomic_fetch_add(w->errors, 1);
            continue;
        }
        if (db_query(c, "SELECT 1", 0, NULL, NULL) != 0)
            atomic_fetch_add(w->errors, 1);
        db_conn_give(c);
    }
    return NULL;
}

static void test_many_threads_and_dbs(void **state)
{
    /* More databases than a thread remembers connections for, used from several threads. */
    enum { NDB = 20, NTH = 4 };
    struct db *dbs[NDB];
    for (int i = 0; i < NDB; i++)
        dbs[i] = open_fresh("many");
    atomic_int errors = 0;
    struct worker w[NDB];
    for (int round = 0; round < 2; round++) {
        pthread_t th[NTH];
        for (int t = 0; t < NTH; t++) {
            w[t] = (struct worker){.db = dbs[(t * 7 + round) % NDB], .errors = &errors};
            assert_int_equal(pthread_create(&th[t], NULL, take_worker, &w[t]), 0);
        }
        for (int t = 0; t < NTH; t++)
            pthread_join(th[t], NULL);
        for (int i = 0; i < NDB; i++)
            assert_int_equal(db_ping(dbs[i]), 0);
    }
    assert_int_equal(atomic_load(&errors), 0);
    for (int i = 0; i < NDB; i++)
        db_close(dbs[i]);
}

/* ---- backend specifics --------------------------------------------------------------- */

static void test_pool_limits(void **state)
{
    if (!t_pg) {
        /* SQLite never makes a taker wait: each lease gets a connection of its own. */
        struct db *db = open_fresh("pool");
        struct db_conn *c[3];
        for (int i = 0; i < 3; i++)
            assert_int_equal(db_conn_take(db, &c[i]), 0);
        int used, idle;
        db_pool_stats(db, &used, &idle);
        assert_int_equal(used, 3);
        for (int i = 0; i < 3; i++)
            db_conn_give(c[i]);
        db_close(db);
        return;
    }
    struct db_options o = t_opts();
    o.pool_size = 2;
    o.acquire_timeout_ms = 200;
    struct db *db = NULL;
    assert_int_equal(db_open(&db, "pool_small", &o), 0);
    struct db_conn *a, *b, *x;
    assert_int_equal(db_conn_take(db, &a), 0);
    assert_int_equal(db_conn_take(db, &b), 0);
    int64_t t0 = mono_ms();
    assert_int_equal(db_conn_take(db, &x), ERR_UNAVAILABLE);
    int64_t waited = mono_ms() - t0;
    assert_true(waited >= 150 && waited < 3000);
    int used, idle;
    db_pool_stats(db, &used, &idle);
    assert_int_equal(used, 2);
    assert_int_equal(idle, 0);
    db_conn_give(b);
    assert_int_equal(db_conn_take(db, &x), 0);
    assert_ptr_equal(x, b); /* the idle one is reused, no third connection */
    db_conn_give(x);
    db_conn_give(a);
    db_close(db);
}

static void test_query_once(void **state)
{
    struct db *db = open_fresh("once");
    assert_int_equal(
        db_query_once(db, "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT)", 0, NULL, NULL), 0);
    struct db_val args[2] = {DB_INT(7), DB_TEXT("seven")};
    assert_int_equal(db_query_once(db, "INSERT INTO t (id, name) VALUES ($1, $2)", 2, args, NULL),
                     1);
    struct db_rows *r = (struct db_rows *)&r; /* must be reset to NULL on failure */
    assert_int_equal(db_query_once(db, "SELECT name FROM t WHERE id = $1", 1, args, &r), 0);
    assert_int_equal(db_rows_count(r), 1);
    assert_string_equal(db_get(r, 0, 0), "seven");
    db_rows_free(r);
    /* A unique violation and a bad statement come back as db_query() reports them, with
     * *out NULL, and the connection is given back either way. */
    assert_int_equal(db_query_once(db, "INSERT INTO t (id, name) VALUES ($1, $2)", 2, args, NULL),
                     ERR_CONFLICT);
    r = (struct db_rows *)&r;
    assert_int_equal(db_query_once(db, "SELECT nope FROM t", 0, NULL, &r), ERR_INTERNAL);
    assert_null(r);
    int used, idle;
    db_pool_stats(db, &used, &idle);
    assert_int_equal(used, 0);
    db_close(db);
    /* The database of a service this process does not run. */
    r = (struct db_rows *)&r;
    assert_int_equal(db_query_once(NULL, "SELECT 1", 0, NULL, &r), ERR_UNAVAILABLE);
    assert_null(r);
}

struct held {
    struct db *db;
    struct arena *arena;
    int rc;
};

/* Leases a connection into the arena and leaves a write transaction open on it. */
static void *hold_in_arena(void *arg)
{
    struct held *h = arg;
    struct db_conn *c;
    h->rc = db_conn_take_in(h->arena, h->db, &c);
    if (h->rc == 0)
        h->rc = db_begin(c);
    if (h->rc == 0)
        h->rc = db_query(c, "INSERT INTO t (id) VALUES (2)", 0, NULL, NULL) == 1 ? 0 : -1;
    return NULL;
}

static void test_conn_take_in(void **state)
{
    struct db *db = open_fresh("takein");
    assert_int_equal(db_query_once(db, "CREATE TABLE t (id BIGINT PRIMARY KEY)", 0, NULL, NULL), 0);

    /* The lease lasts until the arena is freed, which gives it back and rolls back the
     * transaction left open on it. */
    struct arena *a = arena_new();
    assert_non_null(a);
    struct db_conn *c;
    assert_int_equal(db_conn_take_in(a, db, &c), 0);
    assert_non_null(c);
    assert_int_equal(db_begin(c), 0);
    assert_int_equal(db_query(c, "INSERT INTO t (id) VALUES (1)", 0, NULL, NULL), 1);
    int used, idle;
    db_pool_stats(db, &used, &idle);
    assert_int_equal(used, 1);
    arena_free(a);
    db_pool_stats(db, &used, &idle);
    assert_int_equal(used, 0);
    struct db_rows *r;
    assert_int_equal(db_query_once(db, "SELECT COUNT(*) FROM t", 0, NULL, &r), 0);
    assert_int_equal(db_get_i64(r, 0, 0), 0);
    db_rows_free(r);

    /* Taken on one thread, given back on another (an offloaded request's arena is freed by
     * the server thread): the writer lock of the abandoned transaction is released, so a
     * new write transaction here does not wait for it. */
    struct held h = {.db = db, .arena = arena_new()};
    assert_non_null(h.arena);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, hold_in_arena, &h), 0);
    pthread_join(th, NULL);
    assert_int_equal(h.rc, 0);
    arena_free(h.arena);
    db_pool_stats(db, &used, &idle);
    assert_int_equal(used, 0);
    int64_t t0 = mono_ms();
    assert_int_equal(db_conn_take(db, &c), 0);
    assert_int_equal(db_begin(c), 0);
    assert_true(mono_ms() - t0 < 4000); /* the lock wait gives up after 5 s */
    assert_int_equal(db_query(c, "INSERT INTO t (id) VALUES (2)", 0, NULL, NULL), 1);
    assert_int_equal(db_commit(c), 0);
    db_conn_give(c);

    /* An unavailable database: nothing registered, *out NULL. */
    a = arena_new();
    c = (struct db_conn *)&c;
    assert_int_equal(db_conn_take_in(a, NULL, &c), ERR_UNAVAILABLE);
    assert_null(c);
    arena_free(a);

    if (t_pg) {
        /* On a bounded pool the arena holds its lease: a second taker waits and times out
         * until the arena is freed. */
        struct db_options o = t_opts();
        o.pool_size = 1;
        o.acquire_timeout_ms = 200;
        struct db *small = NULL;
        assert_int_equal(db_open(&small, "takein_small", &o), 0);
        a = arena_new();
        assert_int_equal(db_conn_take_in(a, small, &c), 0);
        assert_int_equal(db_query_once(small, "SELECT 1", 0, NULL, NULL), ERR_UNAVAILABLE);
        arena_free(a);
        assert_int_equal(db_query_once(small, "SELECT 1", 0, NULL, NULL), 0);
        db_close(small);
    }
    db_close(db);
}

static void test_pg_unreachable(void **state)
{
    if (!t_pg) {
        skip();
        return;
    }
    struct db_options o = {.url = "postgresql://postgres@127.0.0.1:1/nothing"};
    struct db *db = NULL;
    assert_int_equal(db_open(&db, "down", &o), ERR_UNAVAILABLE);
    assert_null(db);
    o.url = "postgresql://postgres@127.0.0.1:1/bad-name";
    assert_int_equal(db_open(&db, "down", &o), ERR_INVALID);
}

static void test_sqlite_file(void **state)
{
    if (t_pg) {
        skip();
        return;
    }
    char dir[300];
    snprintf(dir, sizeof dir, "%s/nested/deeper", t_dir);
    struct db_options o = {.data_dir = dir};
    struct db *db = NULL;
    assert_int_equal(db_open(&db, "filedb", &o), 0);
    char path[400];
    snprintf(path, sizeof path, "%s/filedb.db", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    struct db_rows *r;
    assert_int_equal(db_query(c, "PRAGMA journal_mode", 0, NULL, &r), 0);
    assert_string_equal(db_get(r, 0, 0), "wal");
    db_rows_free(r);
    assert_int_equal(scalar(c, "PRAGMA foreign_keys", 0, NULL), 1);
    assert_int_equal(scalar(c, "PRAGMA synchronous", 0, NULL), 1); /* NORMAL */
    assert_int_equal(scalar(c, "PRAGMA busy_timeout", 0, NULL), 5000);
    /* Foreign keys are enforced. */
    exec_ok(c, "CREATE TABLE parent (id BIGINT PRIMARY KEY);"
               "CREATE TABLE child (id BIGINT PRIMARY KEY, p BIGINT REFERENCES parent (id))");
    assert_true(db_query(c, "INSERT INTO child (id, p) VALUES (1, 42)", 0, NULL, NULL) < 0);
    /* Reals come out as text too. */
    assert_int_equal(db_query(c, "SELECT 1.5", 0, NULL, &r), 0);
    assert_string_equal(db_get(r, 0, 0), "1.5");
    db_rows_free(r);
    db_conn_give(c);
    db_close(db);

    /* An unusable data dir fails at open, not on the first request. */
    o.data_dir = "/proc/emporium-cannot-be-here";
    assert_true(db_open(&db, "x", &o) < 0);
}

/* On SQLite a migration's BIGINT PRIMARY KEY is the table's rowid (one B-tree, not two):
 * the id reads back as the rowid, 64-bit ids included, and a duplicate still conflicts. */
static void test_migrate_rowid_ids(void **state)
{
    if (t_pg) {
        skip();
        return;
    }
    static const struct db_migration steps[] = {
        {.sql = "CREATE TABLE r1 (id BIGINT PRIMARY KEY, v TEXT NOT NULL);"
                "CREATE TABLE r2 (id BIGINT PRIMARY KEY, r1 BIGINT REFERENCES r1(id));"},
    };
    struct db *db = open_fresh("rowid");
    assert_int_equal(db_migrate(db, steps, 1), 0);
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "INSERT INTO r1 (id, v) VALUES (388421127757997458, 'a')");
    exec_ok(c, "INSERT INTO r2 (id, r1) VALUES (7, 388421127757997458)");
    assert_int_equal(scalar(c, "SELECT rowid = id FROM r1", 0, NULL), 1);
    assert_int_equal(scalar(c, "SELECT rowid FROM r2", 0, NULL), 7);
    /* No second index: the table's only B-tree is its own. */
    assert_int_equal(scalar(c,
                            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND "
                            "tbl_name IN ('r1', 'r2')",
                            0, NULL),
                     0);
    assert_true(
        db_query(c, "INSERT INTO r1 (id, v) VALUES (388421127757997458, 'b')", 0, NULL, NULL) < 0);
    db_conn_give(c);
    db_close(db);
}

static mode_t mode_of(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        fail_msg("%s: missing", path);
    return st.st_mode & 07777;
}

/* Issue 9: the data dir and the database files are the owner's only, whatever the umask. */
static void test_sqlite_file_modes(void **state)
{
    if (t_pg) {
        skip();
        return;
    }
    mode_t old = umask(022); /* the usual umask, which made them 0755 / 0644 */
    char dir[300], path[400];
    snprintf(dir, sizeof dir, "%s/private/data", t_dir);
    struct db_options o = {.data_dir = dir};
    struct db *db = NULL;
    assert_int_equal(db_open(&db, "secrets", &o), 0);
    assert_int_equal(db_query_once(db, "CREATE TABLE t (id BIGINT PRIMARY KEY)", 0, NULL, NULL), 0);
    assert_int_equal(db_query_once(db, "INSERT INTO t (id) VALUES (1)", 0, NULL, NULL), 1);
    assert_int_equal(mode_of(dir), 0700);
    snprintf(path, sizeof path, "%s/private", t_dir);
    assert_int_equal(mode_of(path), 0700); /* every directory it created */
    snprintf(path, sizeof path, "%s/secrets.db", dir);
    assert_int_equal(mode_of(path), 0600);
    snprintf(path, sizeof path, "%s/secrets.db-wal", dir); /* WAL mode, written: both exist */
    assert_int_equal(mode_of(path), 0600);
    snprintf(path, sizeof path, "%s/secrets.db-shm", dir);
    assert_int_equal(mode_of(path), 0600);
    db_close(db);

    /* Files of an older install, readable by everyone, are narrowed when opened. */
    snprintf(path, sizeof path, "%s/secrets.db", dir);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(db_open(&db, "secrets", &o), 0);
    assert_int_equal(mode_of(path), 0600);
    db_close(db);
    /* A directory that already existed is the operator's: left alone. */
    assert_int_equal(chmod(dir, 0750), 0);
    assert_int_equal(db_open(&db, "secrets", &o), 0);
    assert_int_equal(mode_of(dir), 0750);
    db_close(db);
    umask(old);
}

/* ---- group commit (db_write) ------------------------------------------------------------ */

#include <semaphore.h>

struct gc_intent {
    struct db_write_req w;
    int key;               /* row to insert */
    int outcome;           /* what fn returns after inserting: 0 keep, 1 no change, < 0 fail */
    sem_t *entered, *gate; /* non-NULL: fn signals entered, then waits for gate */
    int rc;                /* reported by done */
    sem_t *finished;
};

static int gc_fn(struct db_conn *c, void *ctx)
{
    struct gc_intent *g = ctx;
    int rc =
        db_query(c, "INSERT INTO gc (k) VALUES ($1)", 1, (struct db_val[]){DB_INT(g->key)}, NULL);
    if (rc < 0)
        return rc;
    if (g->entered) {
        sem_post(g->entered);
        while (sem_wait(g->gate) != 0)
            ;
    }
    return g->outcome;
}

static void gc_done(struct db_write_req *w, int rc)
{
    struct gc_intent *g = (struct gc_intent *)w;
    g->rc = rc;
    sem_post(g->finished);
}

static int64_t gc_count(struct db *db, const char *where)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM gc WHERE %s", where);
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    int64_t n = scalar(c, sql, 0, NULL);
    db_conn_give(c);
    return n;
}

/* Intents queued while the writer is busy commit together in the next batch, each with its
 * own outcome: a failing one (after writing) and a "no change" one leave no row, their
 * neighbours' rows are all there, and every caller hears back only after the commit. */
static void test_write_batch_outcomes(void **state)
{
    enum { N = 12 };
    struct db *db = open_fresh("gc");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE gc (k INTEGER PRIMARY KEY)");
    db_conn_give(c);

    sem_t entered, gate, finished;
    sem_init(&entered, 0, 0);
    sem_init(&gate, 0, 0);
    sem_init(&finished, 0, 0);
    struct gc_intent first = {.key = 1000, .finished = &finished};
    if (!t_pg) { /* on PostgreSQL a submit runs at once: nothing to hold the writer with */
        first.entered = &entered;
        first.gate = &gate;
    }
    first.w = (struct db_write_req){.fn = gc_fn, .ctx = &first, .done = gc_done};
    assert_int_equal(db_write_submit(db, &first.w), 0);
    if (!t_pg)
        while (sem_wait(&entered) != 0) /* the writer is inside the first batch now */
            ;
    struct gc_intent in[N];
    for (int i = 0; i < N; i++) {
        in[i] = (struct gc_intent){.key = i + 1, .finished = &finished};
        in[i].outcome = i == 3 ? ERR_INVALID : i == 7 ? 1 : 0;
        if (i == 9)
            in[i].key = 1000; /* a duplicate of the first intent's row: ERR_CONFLICT */
        in[i].w = (struct db_write_req){.fn = gc_fn, .ctx = &in[i], .done = gc_done};
        assert_int_equal(db_write_submit(db, &in[i].w), 0);
    }
    /* Nothing of the queued intents is visible before their batch committed. */
    if (!t_pg)
        assert_int_equal(gc_count(db, "k < 1000"), 0);
    if (!t_pg)
        sem_post(&gate);
    for (int i = 0; i < N + 1; i++)
        while (sem_wait(&finished) != 0)
            ;
    assert_int_equal(first.rc, 0);
    for (int i = 0; i < N; i++) {
        int want = i == 3 ? ERR_INVALID : i == 9 ? ERR_CONFLICT : 0;
        assert_int_equal(in[i].rc, want);
    }
    assert_int_equal(gc_count(db, "k < 1000"), N - 3); /* 4, 8 and 10 left nothing */
    assert_int_equal(gc_count(db, "k IN (4, 8)"), 0);
    assert_int_equal(gc_count(db, "k = 1000"), 1);
    struct db_write_stats st;
    db_write_stats(db, &st);
    if (!t_pg) {
        assert_int_equal(st.batches, 2); /* the first intent alone, then all the others */
        assert_int_equal(st.max_batch, N);
        assert_int_equal(st.intents, N + 1);
    } else {
        assert_int_equal(st.batches, 0);
    }
    sem_destroy(&entered);
    sem_destroy(&gate);
    sem_destroy(&finished);
    db_close(db);
}

/* ERR_BUSY from an intent runs it again (reset first); it commits once it succeeds. */
struct busy_ctx {
    int runs, resets, fail_first, key;
};
static int busy_fn(struct db_conn *c, void *ctx)
{
    struct busy_ctx *b = ctx;
    b->runs++;
    int rc =
        db_query(c, "INSERT INTO gc (k) VALUES ($1)", 1, (struct db_val[]){DB_INT(b->key)}, NULL);
    if (rc < 0)
        return rc;
    return b->runs <= b->fail_first ? ERR_BUSY : 0;
}
static void busy_reset(void *ctx) { ((struct busy_ctx *)ctx)->resets++; }

static void test_write_busy_retry(void **state)
{
    struct db *db = open_fresh("gcbusy");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE gc (k INTEGER PRIMARY KEY)");
    db_conn_give(c);
    struct busy_ctx b = {.fail_first = 2, .key = 7};
    assert_int_equal(db_write(db, busy_fn, busy_reset, &b), 0);
    assert_int_equal(b.runs, 3);
    assert_int_equal(b.resets, 3);
    assert_int_equal(gc_count(db, "k = 7"), 1);
    /* Busy every time: given up after 6 attempts, nothing kept. */
    struct busy_ctx always = {.fail_first = 100, .key = 8};
    assert_int_equal(db_write(db, busy_fn, NULL, &always), ERR_BUSY);
    assert_int_equal(always.runs, 6);
    assert_int_equal(gc_count(db, "k IN (7, 8)"), 1);
    db_close(db);
}

/* Many threads writing through db_write at once: every increment is there exactly once. */
#define GC_THREADS 8
#define GC_INCR 150
static int gc_incr_fn(struct db_conn *c, void *ctx)
{
    (void)ctx;
    int rc = db_query(c, "UPDATE counter SET n = n + 1 WHERE id = 1", 0, NULL, NULL);
    return rc == 1 ? 0 : rc < 0 ? rc : ERR_INTERNAL;
}
static void *gc_worker(void *p)
{
    struct worker *w = p;
    for (int i = 0; i < GC_INCR; i++)
        if (db_write(w->db, gc_incr_fn, NULL, NULL) != 0)
            atomic_fetch_add(w->errors, 1);
    return NULL;
}

static void test_write_concurrent(void **state)
{
    struct db *db = open_fresh("gccount");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE counter (id BIGINT PRIMARY KEY, n BIGINT NOT NULL);"
               "INSERT INTO counter (id, n) VALUES (1, 0)");
    db_conn_give(c);
    atomic_int errors = 0;
    struct worker w = {.db = db, .errors = &errors};
    pthread_t th[GC_THREADS];
    for (int i = 0; i < GC_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, gc_worker, &w), 0);
    for (int i = 0; i < GC_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&errors), 0);
    assert_int_equal(db_conn_take(db, &c), 0);
    assert_int_equal(scalar(c, "SELECT n FROM counter WHERE id = 1", 0, NULL),
                     GC_THREADS * GC_INCR);
    db_conn_give(c);
    struct db_write_stats st;
    db_write_stats(db, &st);
    if (!t_pg) {
        assert_int_equal(st.intents, GC_THREADS * GC_INCR);
        assert_true(st.batches >= 1 && st.batches <= st.intents);
        assert_true(st.max_batch <= GC_THREADS);
        /* every batch is a commit, and each wrote at least the counter's page */
        assert_true(st.commits >= st.batches);
        assert_true(st.wal_frames >= st.commits);
    }
    db_close(db);
}

/* db_query_many_shared: many threads' calls, some sharing a commit (PostgreSQL) or a writer
 * batch (SQLite); each caller gets its own statements' results and outcome. A call that fails
 * (its key exists) fails alone: every other call's row is there exactly once, and its read
 * in the same transaction saw its own insert. */
enum { SH_THREADS = 8, SH_CALLS = 60 };

struct sh_worker {
    struct db *db;
    int t;
    atomic_int *errors;
};

static void *sh_worker(void *p)
{
    struct sh_worker *w = p;
    for (int i = 0; i < SH_CALLS; i++) {
        bool dup = w->t == 0 && i % 7 == 3; /* key 1 exists: this call alone fails */
        int64_t k = dup ? 1 : 1000 + w->t * SH_CALLS + i;
        struct db_val a[] = {DB_INT(k), DB_INT(k * 3)};
        struct db_rows *r = NULL;
        struct db_stmt st[] = {
            {.sql = "INSERT INTO sh (k, v) VALUES ($1, $2)", .n = 2, .args = a},
            {.sql = "SELECT v FROM sh WHERE k = $1", .n = 1, .args = a, .out = &r},
        };
        int rc = db_query_many_shared(w->db, st, 2);
        bool ok =
            dup ? rc == ERR_CONFLICT && st[0].rc == ERR_CONFLICT && !r
                : rc == 0 && st[0].rc == 1 && db_rows_count(r) == 1 && db_get_i64(r, 0, 0) == k * 3;
        if (!ok)
            atomic_fetch_add(w->errors, 1);
        db_rows_free(r);
    }
    return NULL;
}

static void test_shared_commits(void **state)
{
    struct db *db = open_fresh("shared");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE sh (k BIGINT PRIMARY KEY, v BIGINT NOT NULL);"
               "INSERT INTO sh (k, v) VALUES (1, 0)");
    db_conn_give(c);
    struct db_stmt none[DB_STMT_MAX + 1] = {{.sql = "SELECT 1"}};
    assert_int_equal(db_query_many_shared(db, none, 0), ERR_INVALID);
    assert_int_equal(db_query_many_shared(db, none, DB_STMT_MAX + 1), ERR_INVALID);
    atomic_int errors = 0;
    struct sh_worker w[SH_THREADS];
    pthread_t th[SH_THREADS];
    for (int i = 0; i < SH_THREADS; i++) {
        w[i] = (struct sh_worker){db, i, &errors};
        assert_int_equal(pthread_create(&th[i], NULL, sh_worker, &w[i]), 0);
    }
    for (int i = 0; i < SH_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&errors), 0);
    int dups = 0;
    for (int i = 0; i < SH_CALLS; i++)
        dups += i % 7 == 3;
    assert_int_equal(db_conn_take(db, &c), 0);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sh", 0, NULL),
                     1 + SH_THREADS * SH_CALLS - dups);
    assert_int_equal(scalar(c, "SELECT count(*) FROM sh WHERE v = 3 * k", 0, NULL),
                     SH_THREADS * SH_CALLS - dups);
    db_conn_give(c);
    struct db_write_stats st;
    db_write_stats(db, &st);
    if (t_pg) { /* the combiner's counts: every call, in at most as many commits */
        assert_int_equal(st.intents, SH_THREADS * SH_CALLS);
        assert_true(st.batches >= 1 && st.batches <= st.intents);
        assert_true(st.max_batch >= 1 && st.max_batch <= SH_THREADS);
    }
    print_message("shared commits: %llu calls in %llu commits, at most %llu in one\n",
                  (unsigned long long)st.intents, (unsigned long long)st.batches,
                  (unsigned long long)st.max_batch);
    db_close(db);
}

/* PostgreSQL: a shared call that waits for a row lock another transaction holds leaves the
 * combiner after its lock_timeout and waits on its own thread, so it never holds up the
 * calls behind it. A and C wait for rows x1 and x2 hold, each started when the one before
 * has had time to lead a batch; B, started last, must still finish while both locks are
 * held (it waited forever behind A before), and A and C finish once the locks go. */
struct lt_call {
    struct db *db;
    const char *sql;
    int64_t k;
    int rc;
    atomic_int started, done;
};

static void *lt_run(void *p)
{
    struct lt_call *x = p;
    struct db_val a[] = {DB_INT(x->k)};
    struct db_stmt st = {.sql = x->sql, .n = 1, .args = a};
    atomic_store(&x->started, 1);
    x->rc = db_query_many_shared(x->db, &st, 1);
    if (x->rc == 0 && st.rc != 1)
        x->rc = ERR_INTERNAL;
    atomic_store(&x->done, 1);
    return NULL;
}

static bool lt_wait(atomic_int *flag, int ms)
{
    for (int i = 0; i < ms && !atomic_load(flag); i++)
        usleep(1000);
    return atomic_load(flag) != 0;
}

static void test_shared_lock_wait(void **state)
{
    if (!t_pg) {
        skip(); /* SQLite locks the whole file: its writer has no row locks to wait on */
        return;
    }
    struct db *db = open_fresh("sharedlock");
    struct db_conn *c, *x1, *x2;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE lt (k BIGINT PRIMARY KEY, v BIGINT NOT NULL);"
               "INSERT INTO lt (k, v) VALUES (5, 0), (6, 0)");
    db_conn_give(c);
    assert_int_equal(db_conn_take(db, &x1), 0);
    assert_int_equal(db_conn_take(db, &x2), 0);
    assert_int_equal(db_begin(x1), 0);
    assert_int_equal(db_query(x1, "UPDATE lt SET v = v + 1 WHERE k = 5", 0, NULL, NULL), 1);
    assert_int_equal(db_begin(x2), 0);
    assert_int_equal(db_query(x2, "UPDATE lt SET v = v + 1 WHERE k = 6", 0, NULL, NULL), 1);
    struct lt_call a = {.db = db, .sql = "UPDATE lt SET v = v + 10 WHERE k = $1", .k = 5};
    struct lt_call cc = {.db = db, .sql = "UPDATE lt SET v = v + 10 WHERE k = $1", .k = 6};
    struct lt_call b = {.db = db, .sql = "INSERT INTO lt (k, v) VALUES ($1, 0)", .k = 7};
    struct lt_call *calls[] = {&a, &cc, &b};
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, lt_run, calls[i]), 0);
        assert_true(lt_wait(&calls[i]->started, 10000));
        usleep(300 * 1000); /* time to lead a batch and wait in it */
    }
    assert_true(lt_wait(&b.done, 30000));
    assert_int_equal(b.rc, 0);
    assert_false(atomic_load(&a.done));
    assert_false(atomic_load(&cc.done));
    assert_int_equal(db_commit(x1), 0);
    db_conn_give(x1);
    assert_int_equal(db_commit(x2), 0);
    db_conn_give(x2);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(a.rc, 0);
    assert_int_equal(cc.rc, 0);
    assert_int_equal(db_conn_take(db, &c), 0);
    assert_int_equal(scalar(c, "SELECT v FROM lt WHERE k = 5", 0, NULL), 11);
    assert_int_equal(scalar(c, "SELECT v FROM lt WHERE k = 6", 0, NULL), 11);
    assert_int_equal(scalar(c, "SELECT count(*) FROM lt WHERE k = 7", 0, NULL), 1);
    db_conn_give(c);
    db_close(db);
}

/* db_batch_add_fn: a kept function runs in its place among the statements, in the batch's
 * one transaction; the batch frees its context whether it ran, failed or was dropped. */
static int kept_freed;

static void kept_free(void *ctx)
{
    kept_freed++;
    free(ctx);
}

static int kept_insert(struct db_conn *c, void *ctx)
{
    const int64_t *v = ctx;
    struct db_val a[] = {DB_INT(*v)};
    int rc = db_query(c, "INSERT INTO kept (seq, v) SELECT COUNT(*) + 1, $1 FROM kept", 1, a, NULL);
    return rc < 0 ? rc : 0;
}

static int batch_other_fn(struct db_conn *c, void *ctx) { return 0; }

static int64_t *kept_value(int64_t v)
{
    int64_t *p = malloc(sizeof *p);
    assert_non_null(p);
    *p = v;
    return p;
}

static void test_batch_functions(void **state)
{
    struct db *db = open_fresh("kept");
    struct db_conn *c;
    assert_int_equal(db_conn_take(db, &c), 0);
    exec_ok(c, "CREATE TABLE kept (seq BIGINT PRIMARY KEY, v BIGINT NOT NULL UNIQUE)");
    db_conn_give(c);
    struct db_batch *b = db_batch_new(db);
    assert_non_null(b);
    kept_freed = 0;
    struct db_val a1[] = {DB_INT(1)}, a3[] = {DB_INT(3)};
    const char *ins = "INSERT INTO kept (seq, v) SELECT COUNT(*) + 1, $1 FROM kept";
    assert_int_equal(db_batch_add(b, ins, 1, a1), 0);
    assert_int_equal(db_batch_add_fn(b, kept_insert, kept_value(2), kept_free), 0);
    assert_int_equal(db_batch_add(b, ins, 1, a3), 0);
    /* db_batch_last: the last entry's context while that entry is the function asked. */
    assert_null(db_batch_last(b, kept_insert)); /* a statement is last */
    int64_t *four = kept_value(4);
    assert_int_equal(db_batch_add_fn(b, kept_insert, four, kept_free), 0);
    assert_ptr_equal(db_batch_last(b, kept_insert), four);
    assert_null(db_batch_last(b, batch_other_fn));
    assert_int_equal(kept_freed, 0); /* kept until the batch runs */
    assert_int_equal(db_batch_run(b), 0);
    assert_int_equal(kept_freed, 2);
    assert_null(db_batch_last(b, kept_insert)); /* ran: gone */
    assert_int_equal(db_conn_take(db, &c), 0);
    /* in the order they were kept: each row numbered by the rows before it */
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM kept WHERE seq = v", 0, NULL), 4);
    db_conn_give(c);

    /* A failing function (a duplicate) fails the whole batch: nothing of it is written. */
    struct db_val a5[] = {DB_INT(5)};
    assert_int_equal(db_batch_add(b, ins, 1, a5), 0);
    assert_int_equal(db_batch_add_fn(b, kept_insert, kept_value(6), kept_free), 0);
    assert_int_equal(db_batch_add_fn(b, kept_insert, kept_value(2), kept_free), 0);
    assert_int_equal(db_batch_run(b), ERR_CONFLICT);
    assert_int_equal(kept_freed, 4);
    assert_int_equal(db_conn_take(db, &c), 0);
    assert_int_equal(scalar(c, "SELECT COUNT(*) FROM kept", 0, NULL), 4);
    db_conn_give(c);

    /* Dropped unrun: freed too. */
    assert_int_equal(db_batch_add_fn(b, kept_insert, kept_value(7), kept_free), 0);
    db_batch_free(b);
    assert_int_equal(kept_freed, 5);
    db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_basics),
        cmocka_unit_test(test_migrate),
        cmocka_unit_test(test_migrate_concurrent),
        cmocka_unit_test(test_params_and_values),
        cmocka_unit_test(test_conflict),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_affected_rows),
        cmocka_unit_test(test_query_many),
        cmocka_unit_test(test_returning),
        cmocka_unit_test(test_scripts_and_errors),
        cmocka_unit_test(test_statement_cache),
        cmocka_unit_test(test_prepared_statements),
        cmocka_unit_test(test_concurrent_counter),
        cmocka_unit_test(test_concurrent_stock),
        cmocka_unit_test(test_many_threads_and_dbs),
        cmocka_unit_test(test_pool_limits),
        cmocka_unit_test(test_query_once),
        cmocka_unit_test(test_conn_take_in),
        cmocka_unit_test(test_pg_unreachable),
        cmocka_unit_test(test_sqlite_file),
        cmocka_unit_test(test_sqlite_file_modes),
        cmocka_unit_test(test_migrate_rowid_ids),
        cmocka_unit_test(test_write_batch_outcomes),
        cmocka_unit_test(test_write_busy_retry),
        cmocka_unit_test(test_write_concurrent),
        cmocka_unit_test(test_shared_commits),
        cmocka_unit_test(test_shared_lock_wait),
        cmocka_unit_test(test_batch_functions),
    };
    return cmocka_run_group_tests_name(
        getenv("EMPORIUM_TEST_BACKEND") ? getenv("EMPORIUM_TEST_BACKEND") : "sqlite", tests,
        group_setup, group_teardown);
}
