/* SPDX-License-Identifier: MIT */
/* db.c — the front of the storage port: backend choice, result rows, migrations.
 *
 * db_open() picks the backend from the URL (nothing or "sqlite": embedded SQLite files;
 * postgres:// or postgresql://: libpq) and every other public call is a thin dispatch through
 * the backend's ops table (db_internal.h). What both backends share lives here, so it cannot
 * drift between them: the result rows (every cell copied out as text into one growing
 * buffer, so a result is three allocations however many cells it has) and versioned
 * migrations, which only use the public API and therefore behave the same on both. */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <time.h>

#include "adapters/db_internal.h"
#include "emporium/arena.h"
#include "emporium/buf.h"
#include "emporium/err.h"
#include "emporium/id.h"
#include "emporium/log.h"

/* ---- rows ---------------------------------------------------------------------------- */

#define ROWS_NULL SIZE_MAX /* offset of a NULL cell */

struct db_rows {
    int ncols, nrows, cap_rows;
    size_t *off; /* nrows * ncols offsets into buf, ROWS_NULL for SQL NULL */
    char *buf;   /* NUL-terminated cell texts, back to back */
    size_t len, cap;
};

struct db_rows *db__rows_new(int ncols)
{
    struct db_rows *r = calloc(1, sizeof *r);
    if (r)
        r->ncols = ncols < 0 ? 0 : ncols;
    return r;
}

int db__rows_add_row(struct db_rows *r)
{
    if (r->nrows == r->cap_rows) {
        int cap = r->cap_rows ? r->cap_rows * 2 : 8;
        size_t cells = (size_t)cap * (size_t)(r->ncols ? r->ncols : 1);
        size_t *off = realloc(r->off, cells * sizeof *off);
        if (!off)
            return ERR_NOMEM;
        r->off = off;
        r->cap_rows = cap;
    }
    size_t *row = r->off + (size_t)r->nrows * (size_t)r->ncols;
    for (int c = 0; c < r->ncols; c++)
        row[c] = ROWS_NULL;
    r->nrows++;
    return 0;
}

int db__rows_set(struct db_rows *r, int col, const char *s, size_t len)
{
    if (r->nrows == 0 || col < 0 || col >= r->ncols)
        return ERR_INTERNAL;
    size_t *cell = r->off + (size_t)(r->nrows - 1) * (size_t)r->ncols + (size_t)col;
    if (!s) {
        *cell = ROWS_NULL;
        return 0;
    }
    if (r->cap - r->len < len + 1) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap - r->len < len + 1)
            cap *= 2;
        char *buf = realloc(r->buf, cap);
        if (!buf)
            return ERR_NOMEM;
        r->buf = buf;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, s, len);
    r->buf[r->len + len] = '\0';
    *cell = r->len;
    r->len += len + 1;
    return 0;
}

int db_rows_count(const struct db_rows *r) { return r ? r->nrows : 0; }
int db_rows_cols(const struct db_rows *r) { return r ? r->ncols : 0; }

const char *db_get(const struct db_rows *r, int row, int col)
{
    if (!r || row < 0 || row >= r->nrows || col < 0 || col >= r->ncols)
        return NULL;
    size_t o = r->off[(size_t)row * (size_t)r->ncols + (size_t)col];
    return o == ROWS_NULL ? NULL : r->buf + o;
}

int64_t db_get_i64(const struct db_rows *r, int row, int col)
{
    const char *s = db_get(r, row, col);
    return s ? (int64_t)strtoll(s, NULL, 10) : 0;
}

bool db_is_null(const struct db_rows *r, int row, int col) { return db_get(r, row, col) == NULL; }

void db_rows_free(struct db_rows *r)
{
    if (!r)
        return;
    free(r->off);
    free(r->buf);
    free(r);
}

/* ---- dispatch ------------------------------------------------------------------------ */

bool db__name_ok(const char *name)
{
    size_t n = 0;
    for (; name && name[n]; n++) {
        char ch = name[n];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return false;
    }
    return n >= 1 && n <= DB__NAME_MAX;
}

int db_open(struct db **out, const char *name, const struct db_options *opt)
{
    static const struct db_options none = {0};
    *out = NULL;
    if (!opt)
        opt = &none;
    if (!db__name_ok(name)) {
        log_error("db: invalid logical database name");
        return ERR_INVALID;
    }
    const char *url = opt->url;
    int rc;
    if (!url || !*url || strcmp(url, "sqlite") == 0 || strncmp(url, "sqlite:", 7) == 0) {
        rc = db__sqlite_open(out, name, opt);
    } else if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        rc = db__pg_open(out, name, opt);
    } else {
        log_error("db: unsupported database URL scheme (want postgres:// or sqlite)");
        return ERR_INVALID;
    }
    if (rc == 0) {
        (*out)->write_batch_max = opt->write_batch_max > 0 ? opt->write_batch_max : 64;
        (*out)->write_batch_wait_us = opt->write_batch_wait_us > 0 ? opt->write_batch_wait_us : 0;
    }
    return rc;
}

void db_close(struct db *db)
{
    if (!db)
        return;
    db__writer_stop(db);
    db__combiner_free(db);
    db->ops->close(db);
}

enum db_dialect db_dialect(const struct db *db) { return db->dialect; }

/* ---- PostgreSQL array literals ------------------------------------------------------------ */

void db_array_int(struct buf *b, int64_t v)
{
    buf_printf(b, "%s%lld", b->len ? "," : "{", (long long)v);
}

/* Quoted, with '"' and '\\' escaped: any text (JSON included) is one element. */
void db_array_text(struct buf *b, const char *v)
{
    buf_puts(b, b->len ? ",\"" : "{\"");
    const char *run = v;
    for (const char *p = v; *p; p++)
        if (*p == '"' || *p == '\\') {
            buf_append(b, run, (size_t)(p - run));
            buf_append(b, "\\", 1);
            run = p;
        }
    buf_puts(b, run);
    buf_append(b, "\"", 1);
}

const char *db_array_end(struct buf *b)
{
    buf_puts(b, b->len ? "}" : "{}");
    return b->err ? NULL : b->p;
}

/* ---- statement batches ----------------------------------------------------------------- */

#define BATCH_ARGS 16

struct db_batch_stmt {
    const char *sql;
    int n;
    struct db_val args[BATCH_ARGS]; /* text copied (owned) */
    /* or a function (db_batch_add_fn): sql is NULL then */
    db_tx_fn fn;
    void *ctx;
    void (*free_ctx)(void *ctx);
};

struct db_batch {
    struct db *db;
    pthread_mutex_t mu;
    int n, cap;
    struct db_batch_stmt *st;
};

struct db_batch *db_batch_new(struct db *db)
{
    struct db_batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->db = db;
    pthread_mutex_init(&b->mu, NULL);
    return b;
}

static void batch_stmt_free(struct db_batch_stmt *s)
{
    for (int i = 0; i < s->n; i++)
        if (s->args[i].t == DB_T_TEXT)
            free((char *)s->args[i].s);
    if (s->free_ctx)
        s->free_ctx(s->ctx);
}

/* The kept statements in order, consecutive ones DB_STMT_MAX to a round trip; a function
 * where one was kept. */
static int batch_tx(struct db_conn *c, void *ctx)
{
    struct db_batch *b = ctx;
    struct db_stmt st[DB_STMT_MAX];
    for (int i = 0; i < b->n;) {
        if (b->st[i].fn) {
            int rc = b->st[i].fn(c, b->st[i].ctx);
            if (rc < 0)
                return rc;
            i++;
            continue;
        }
        int k = 0;
        for (; k < DB_STMT_MAX && i + k < b->n && !b->st[i + k].fn; k++)
            st[k] = (struct db_stmt){
                .sql = b->st[i + k].sql, .n = b->st[i + k].n, .args = b->st[i + k].args};
        int rc = db_query_many(c, st, k, false);
        if (rc < 0)
            return rc;
        i += k;
    }
    return 0;
}

/* b->mu held. */
static int batch_run_locked(struct db_batch *b)
{
    int rc = b->n ? db_transact(b->db, batch_tx, NULL, b) : 0;
    for (int i = 0; i < b->n; i++)
        batch_stmt_free(&b->st[i]);
    b->n = 0;
    return rc;
}

/* b->mu held: a free entry at the end (what is kept runs first when the batch is full). */
static int batch_slot(struct db_batch *b, struct db_batch_stmt **out)
{
    int rc = b->n >= DB_BATCH_MAX ? batch_run_locked(b) : 0;
    if (rc == 0 && b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 32;
        struct db_batch_stmt *st = realloc(b->st, (size_t)cap * sizeof *st);
        if (!st)
            return ERR_NOMEM;
        b->st = st;
        b->cap = cap;
    }
    if (rc == 0)
        *out = memset(&b->st[b->n], 0, sizeof b->st[0]);
    return rc;
}

int db_batch_add_fn(struct db_batch *b, db_tx_fn fn, void *ctx, void (*free_ctx)(void *ctx))
{
    pthread_mutex_lock(&b->mu);
    struct db_batch_stmt *s;
    int rc = batch_slot(b, &s);
    if (rc == 0) {
        s->fn = fn;
        s->ctx = ctx;
        s->free_ctx = free_ctx;
        b->n++;
    } else if (free_ctx) {
        free_ctx(ctx);
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void *db_batch_last(struct db_batch *b, db_tx_fn fn)
{
    pthread_mutex_lock(&b->mu);
    void *ctx = b->n > 0 && b->st[b->n - 1].fn == fn ? b->st[b->n - 1].ctx : NULL;
    pthread_mutex_unlock(&b->mu);
    return ctx;
}

int db_batch_add(struct db_batch *b, const char *sql, int n, const struct db_val *args)
{
    if (n < 0 || n > BATCH_ARGS)
        return ERR_INVALID;
    pthread_mutex_lock(&b->mu);
    struct db_batch_stmt *s;
    int rc = batch_slot(b, &s);
    if (rc == 0) {
        s->sql = sql;
        s->n = 0;
        for (int i = 0; i < n && rc == 0; i++) {
            s->args[i] = args[i];
            if (args[i].t == DB_T_TEXT && !(s->args[i].s = strdup(args[i].s ? args[i].s : "")))
                rc = ERR_NOMEM;
            else
                s->n = i + 1;
        }
        if (rc == 0)
            b->n++;
        else
            batch_stmt_free(s);
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

int db_batch_run(struct db_batch *b)
{
    pthread_mutex_lock(&b->mu);
    int rc = batch_run_locked(b);
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void db_batch_free(struct db_batch *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->n; i++)
        batch_stmt_free(&b->st[i]);
    free(b->st);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

const char *db_name(const struct db *db) { return db->name; }

void db_pool_stats(const struct db *db, int *in_use, int *idle)
{
    int u = 0, i = 0;
    if (db)
        db->ops->pool_stats(db, &u, &i);
    if (in_use)
        *in_use = u;
    if (idle)
        *idle = i;
}

int db_ping(struct db *db)
{
    int rc = db_query_once(db, "SELECT 1", 0, NULL, NULL);
    return rc < 0 ? rc : 0;
}

/* Test-only fault injection (tests/integration/test_faults.c): armed with n > 0, the n-th
 * of the next take/query/begin/commit calls made on the arming thread fails with
 * ERR_UNAVAILABLE, as if the database went away. Inert unless a test arms it. */
void db_fault_set(long n);
long db_fault_pending(void);
static _Thread_local long fault_countdown;
void db_fault_set(long n) { fault_countdown = n; }
long db__fault_exchange(long n)
{
    long old = fault_countdown;
    fault_countdown = n;
    return old;
}
long db_fault_pending(void) { return fault_countdown; }
#define DB_FAULT()                                                                                 \
    if (fault_countdown > 0 && --fault_countdown == 0)                                             \
    return ERR_UNAVAILABLE

int db_conn_take(struct db *db, struct db_conn **out)
{
    *out = NULL;
    DB_FAULT();
    /* NULL: the database belongs to a service this process does not run (--services). */
    if (!db)
        return ERR_UNAVAILABLE;
    return db->ops->take(db, out);
}

int db_conn_take_read(struct db *db, struct db_conn **out)
{
    *out = NULL;
    DB_FAULT();
    if (!db)
        return ERR_UNAVAILABLE;
    return db->ops->take_read ? db->ops->take_read(db, out) : db->ops->take(db, out);
}

void db_conn_give(struct db_conn *c)
{
    if (c)
        c->db->ops->give(c);
}

static void conn_give_cb(void *c) { db_conn_give(c); }

int db_conn_take_in(struct arena *a, struct db *db, struct db_conn **out)
{
    int rc = db_conn_take(db, out);
    if (rc < 0)
        return rc;
    if (arena_defer(a, conn_give_cb, *out) < 0) {
        db_conn_give(*out);
        *out = NULL;
        return ERR_NOMEM;
    }
    return 0;
}

int db_query_once(struct db *db, const char *sql, int n, const struct db_val *args,
                  struct db_rows **out)
{
    if (out)
        *out = NULL;
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    rc = db_query(c, sql, n, args, out);
    db_conn_give(c);
    return rc;
}

int db_query(struct db_conn *c, const char *sql, int n, const struct db_val *args,
             struct db_rows **out)
{
    if (out)
        *out = NULL;
    if (n < 0 || (n > 0 && !args))
        return ERR_INVALID;
    DB_FAULT();
    return c->db->ops->query(c, sql, n, args, out);
}

int db_exec_script(struct db_conn *c, const char *sql) { return c->db->ops->exec_script(c, sql); }
int db_query_many(struct db_conn *c, struct db_stmt *st, int n, bool atomic)
{
    if (n < 0 || n > DB_STMT_MAX || (n > 0 && !st))
        return ERR_INVALID;
    for (int i = 0; i < n; i++) {
        st[i].rc = ERR_INVALID;
        if (st[i].out)
            *st[i].out = NULL;
        if (!st[i].sql || st[i].n < 0 || (st[i].n > 0 && !st[i].args))
            return ERR_INVALID;
    }
    if (n == 0)
        return 0;
    DB_FAULT();
    if (c->db->ops->query_many)
        return c->db->ops->query_many(c, st, n, atomic);
    bool own = atomic && !c->db->ops->in_tx(c);
    int rc = own ? db_begin(c) : 0;
    for (int i = 0; i < n; i++) {
        if (rc >= 0)
            rc = c->db->ops->query(c, st[i].sql, st[i].n, st[i].args, st[i].out);
        st[i].rc = rc;
    }
    if (own) {
        if (rc >= 0)
            rc = db_commit(c);
        else
            db_rollback(c);
    }
    if (rc < 0) {
        for (int i = 0; i < n; i++) {
            if (st[i].rc >= 0 && own)
                st[i].rc = rc; /* rolled back with the rest */
            if (st[i].rc < 0 && st[i].out) {
                db_rows_free(*st[i].out);
                *st[i].out = NULL;
            }
        }
    }
    return rc < 0 ? rc : 0;
}

int db_begin(struct db_conn *c)
{
    DB_FAULT();
    return c->db->ops->begin(c);
}
int db_commit(struct db_conn *c)
{
    DB_FAULT();
    return c->db->ops->commit(c);
}
int db_rollback(struct db_conn *c) { return c->db->ops->rollback(c); }

/* ---- migrations ---------------------------------------------------------------------- */

/* 0 when the migrations table is missing, so db_schema_version() on a fresh database does
 * not create anything. */
static int migrations_table_exists(struct db_conn *c)
{
    const char *sql = c->db->dialect == DB_SQLITE
                          ? "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'schema_migrations'"
                          : "SELECT 1 FROM pg_catalog.pg_tables WHERE "
                            "tablename = 'schema_migrations' AND schemaname = current_schema()";
    struct db_rows *r;
    int rc = db_query(c, sql, 0, NULL, &r);
    if (rc < 0)
        return rc;
    rc = db_rows_count(r) > 0;
    db_rows_free(r);
    return rc;
}

static int read_version(struct db_conn *c)
{
    int rc = migrations_table_exists(c);
    if (rc <= 0)
        return rc;
    struct db_rows *r;
    rc = db_query(c, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", 0, NULL, &r);
    if (rc < 0)
        return rc;
    int64_t v = db_get_i64(r, 0, 0);
    db_rows_free(r);
    return (int)v;
}

int db_schema_version(struct db *db)
{
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    rc = read_version(c);
    db_conn_give(c);
    return rc;
}

#define ROWID_FROM "BIGINT PRIMARY KEY"
#define ROWID_TO "INTEGER PRIMARY KEY"

/* SQLite: sql with every "BIGINT PRIMARY KEY" written "INTEGER PRIMARY KEY" (malloc'd).
 * Only that exact type makes the column the rowid: otherwise SQLite keeps the table keyed
 * by a hidden rowid and the id in a unique index beside it, so every insert writes two
 * B-trees and a lookup by id walks both. Ids are 64-bit integers either way; a table made
 * before this rewrite keeps its index and behaves the same. */
static char *sqlite_rowid_ids(const char *sql)
{
    size_t n = 0, from = strlen(ROWID_FROM), to = strlen(ROWID_TO);
    for (const char *p = sql; (p = strstr(p, ROWID_FROM)) != NULL; p += from)
        n++;
    char *out = malloc(strlen(sql) + n * (to - from) + 1), *o = out;
    if (!out)
        return NULL;
    const char *p = sql, *q;
    while ((q = strstr(p, ROWID_FROM)) != NULL) {
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, ROWID_TO, to);
        o += to;
        p = q + from;
    }
    strcpy(o, p);
    return out;
}

/* Applies step `v` unless another process did it first: the check and the work happen in
 * one transaction, and on PostgreSQL the table lock makes concurrent migrators queue up
 * (it is transaction-scoped, so it is fine behind PgBouncer; SQLite's BEGIN IMMEDIATE
 * already serialises writers). */
static int apply_step(struct db_conn *c, int v, const struct db_migration *m, int min_reader)
{
    bool pg = c->db->dialect == DB_POSTGRES;
    int rc = db_begin(c);
    if (rc < 0)
        return rc;
    if (pg) {
        rc = db_query(c, "LOCK TABLE schema_migrations IN SHARE ROW EXCLUSIVE MODE", 0, NULL, NULL);
        if (rc < 0)
            goto fail;
    }
    struct db_val args[2] = {DB_INT(v), DB_INT(now_ms())};
    struct db_rows *r;
    rc = db_query(c, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, args, &r);
    if (rc < 0)
        goto fail;
    bool done = db_rows_count(r) > 0;
    db_rows_free(r);
    if (done)
        return db_rollback(c);

    const char *sql = pg && m->pg ? m->pg : m->sql;
    char *own = NULL;
    if (!pg && sql && strstr(sql, ROWID_FROM)) {
        if (!(own = sqlite_rowid_ids(sql))) {
            rc = ERR_NOMEM;
            goto fail;
        }
        sql = own;
    }
    if (sql && *sql) {
        rc = db_exec_script(c, sql);
        free(own);
        if (rc < 0) {
            log_error("db %s: migration %d failed; nothing of it was applied", c->db->name, v);
            goto fail;
        }
    }
    rc = db_query(c, "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", 2, args,
                  NULL);
    if (rc < 0)
        goto fail;
    /* Beside the version, in the same transaction: who may still read this schema. */
    struct db_val cargs[2] = {DB_INT(v), DB_INT(min_reader)};
    rc = db_query(c, "INSERT INTO schema_compat (version, min_reader) VALUES ($1, $2)", 2, cargs,
                  NULL);
    if (rc < 0)
        goto fail;
    rc = db_commit(c);
    if (rc < 0)
        goto fail;
    log_info("db %s: applied migration %d", c->db->name, v);
    return 0;
fail:
    db_rollback(c);
    return rc;
}

/* On PostgreSQL, CREATE TABLE IF NOT EXISTS is not safe against a concurrent creator (either
 * can fail on the catalog's unique index or with "already exists"), so creators queue on a
 * transaction-scoped advisory lock, which unlike a session lock works behind PgBouncer. */
static int create_migrations_table(struct db_conn *c)
{
    int rc = db_begin(c);
    if (rc < 0)
        return rc;
    if (c->db->dialect == DB_POSTGRES)
        rc = db_query(c, "SELECT pg_advisory_xact_lock(5829361741)", 0, NULL, NULL);
    if (rc >= 0)
        rc = db_exec_script(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                               "version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)");
    if (rc >= 0)
        rc = db_commit(c);
    if (rc < 0)
        db_rollback(c);
    return rc < 0 ? rc : 0;
}

/* schema_compat(version, min_reader): for each applied migration, the lowest migration
 * count a program must know to run on the schema it left (expand: the previous one's; contract:
 * its own). Created beside schema_migrations, also in databases made before it existed (their
 * migrations were all expands: no row reads as 0). */
static int ensure_compat_table(struct db_conn *c)
{
    const char *sql = c->db->dialect == DB_SQLITE
                          ? "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'schema_compat'"
                          : "SELECT 1 FROM pg_catalog.pg_tables WHERE "
                            "tablename = 'schema_compat' AND schemaname = current_schema()";
    struct db_rows *r;
    int rc = db_query(c, sql, 0, NULL, &r);
    if (rc < 0)
        return rc;
    bool exists = db_rows_count(r) > 0;
    db_rows_free(r);
    if (exists)
        return 0;
    if ((rc = db_begin(c)) < 0)
        return rc;
    if (c->db->dialect == DB_POSTGRES)
        rc = db_query(c, "SELECT pg_advisory_xact_lock(5829361741)", 0, NULL, NULL);
    if (rc >= 0)
        rc = db_exec_script(c, "CREATE TABLE IF NOT EXISTS schema_compat ("
                               "version INTEGER PRIMARY KEY, min_reader INTEGER NOT NULL)");
    if (rc >= 0)
        rc = db_commit(c);
    if (rc < 0)
        db_rollback(c);
    return rc < 0 ? rc : 0;
}

static int read_min_reader(struct db_conn *c)
{
    struct db_rows *r;
    int rc = db_query(c, "SELECT COALESCE(MAX(min_reader), 0) FROM schema_compat", 0, NULL, &r);
    if (rc < 0)
        return rc;
    int64_t v = db_get_i64(r, 0, 0);
    db_rows_free(r);
    return (int)v;
}

int db_schema_min_reader(struct db *db)
{
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    const char *sql = c->db->dialect == DB_SQLITE
                          ? "SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'schema_compat'"
                          : "SELECT 1 FROM pg_catalog.pg_tables WHERE "
                            "tablename = 'schema_compat' AND schemaname = current_schema()";
    struct db_rows *r;
    rc = db_query(c, sql, 0, NULL, &r);
    if (rc >= 0) {
        bool exists = db_rows_count(r) > 0;
        db_rows_free(r);
        rc = exists ? read_min_reader(c) : 0;
    }
    db_conn_give(c);
    return rc;
}

/* Both bookkeeping tables in one look: *both is set when schema_migrations and schema_compat
 * exist, and then *have / *floor hold the version and the lowest reader (two round trips;
 * the general path below takes five on a database that is up to date). */
static int read_state(struct db_conn *c, bool *both, int *have, int *floor)
{
    const char *sql = c->db->dialect == DB_SQLITE
                          ? "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                            "name IN ('schema_migrations', 'schema_compat')"
                          : "SELECT (to_regclass('schema_migrations') IS NOT NULL)::int + "
                            "(to_regclass('schema_compat') IS NOT NULL)::int";
    struct db_rows *r;
    int rc = db_query(c, sql, 0, NULL, &r);
    if (rc < 0)
        return rc;
    *both = db_get_i64(r, 0, 0) == 2;
    db_rows_free(r);
    if (!*both)
        return 0;
    rc = db_query(c,
                  "SELECT (SELECT COALESCE(MAX(version), 0) FROM schema_migrations), "
                  "(SELECT COALESCE(MAX(min_reader), 0) FROM schema_compat)",
                  0, NULL, &r);
    if (rc < 0)
        return rc;
    *have = (int)db_get_i64(r, 0, 0);
    *floor = (int)db_get_i64(r, 0, 1);
    db_rows_free(r);
    return 0;
}

int db_migrate(struct db *db, const struct db_migration *steps, int n)
{
    struct db_conn *c;
    int rc = db_conn_take(db, &c);
    if (rc < 0)
        return rc;
    /* The common case (every start after the first): both tables there and nothing to
     * apply, decided in two round trips. Anything else takes the general path. */
    bool both = false;
    int have = 0, floor = 0;
    rc = read_state(c, &both, &have, &floor);
    if (rc < 0)
        goto out;
    if (both && have == n)
        goto out; /* rc is 0 */
    rc = migrations_table_exists(c);
    if (rc == 0)
        rc = create_migrations_table(c);
    if (rc >= 0)
        rc = ensure_compat_table(c);
    have = rc < 0 ? rc : read_version(c);
    floor = have < 0 ? have : read_min_reader(c);
    if (have < 0 || floor < 0) {
        rc = have < 0 ? have : floor;
        goto out;
    }
    if (have > n && floor > n) {
        log_error("db %s: schema version %d needs a program that knows at least %d migrations; "
                  "this one knows %d: refusing to start (roll forward, or restore the backup "
                  "taken before the upgrade)",
                  db->name, have, floor, n);
        rc = ERR_CONFLICT;
        goto out;
    }
    if (have > n)
        log_warn("db %s: schema version %d is newer than this program's %d, and marked readable "
                 "by it (expand migrations only): running",
                 db->name, have, n);
    for (int v = have + 1; v <= n; v++) {
        if (steps[v - 1].contract)
            floor = v;
        rc = apply_step(c, v, &steps[v - 1], floor);
        if (rc < 0)
            goto out;
    }
    rc = 0;
out:
    db_conn_give(c);
    return rc;
}

/* 2, 4, 8 … ms plus jitter, so retried writers do not collide again in lockstep. */
static void db_backoff(int attempt)
{
    long us = (1000L << attempt) + (long)randombytes_uniform(1000u << attempt);
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

int db_transact(struct db *db, db_tx_fn fn, void (*reset)(void *ctx), void *ctx)
{
    enum { ATTEMPTS = 6 };
    if (!db)
        return ERR_UNAVAILABLE;
    int rc = ERR_BUSY;
    for (int attempt = 0; attempt < ATTEMPTS && rc == ERR_BUSY; attempt++) {
        if (attempt > 0)
            db_backoff(attempt);
        if (reset)
            reset(ctx);
        struct db_conn *c;
        if ((rc = db_conn_take(db, &c)) < 0)
            continue;
        rc = db_begin(c);
        if (rc >= 0) {
            rc = fn(c, ctx);
            if (rc == 0) {
                rc = db_commit(c);
            } else {
                db_rollback(c);
                if (rc > 0)
                    rc = 0;
            }
        }
        db_conn_give(c);
    }
    return rc;
}
