/* SPDX-License-Identifier: MIT */
/* db_internal.h — what db.c shares with the two storage backends (db_sqlite.c, db_pg.c).
 *
 * The public handles are "base classes": each backend allocates a larger struct whose first
 * member is `struct db` (or `struct db_conn`) and casts back. db.c dispatches every public
 * call through the backend's ops table and owns what is common to both: the result rows
 * (filled by the backends through the db__rows_* builder), migrations and name checks. */
#ifndef EMPORIUM_DB_INTERNAL_H
#define EMPORIUM_DB_INTERNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emporium/db.h"

struct db__ops {
    void (*close)(struct db *db);
    void (*pool_stats)(const struct db *db, int *in_use, int *idle);
    int (*take)(struct db *db, struct db_conn **out);
    void (*give)(struct db_conn *c);
    int (*query)(struct db_conn *c, const char *sql, int n, const struct db_val *args,
                 struct db_rows **out);
    int (*exec_script)(struct db_conn *c, const char *sql);
    int (*begin)(struct db_conn *c);
    int (*commit)(struct db_conn *c);
    int (*rollback)(struct db_conn *c);
    /* Optional: the statements in one round trip (db_query_many); NULL: db.c runs them one
     * by one, inside a transaction of its own when atomic and in_tx() says none is open. */
    int (*query_many)(struct db_conn *c, struct db_stmt *st, int n, bool atomic);
    bool (*in_tx)(struct db_conn *c);
    int (*take_read)(struct db *db, struct db_conn **out); /* optional: db_conn_take_read */
    /* Optional (SQLite): commits and WAL frames written since the database was opened. */
    void (*wal_stats)(const struct db *db, uint64_t *commits, uint64_t *frames);
};

/* Logical names become file names and PostgreSQL database names: keep them boring. */
#define DB__NAME_MAX 48

struct db__writer; /* db_write.c */

struct db {
    const struct db__ops *ops;
    enum db_dialect dialect;
    char name[DB__NAME_MAX + 1];
    /* Group commit (db_write.c): the writer, started on the first db_write_submit(). */
    struct db__writer *_Atomic writer;
    int write_batch_max, write_batch_wait_us;
    /* db_query_many_shared() on PostgreSQL (db_combine.c): created on first use. */
    struct db__combiner *_Atomic combiner;
};

struct db_conn {
    struct db *db;
};

/* db_write.c: stops the writer (the queued intents are run first) before the backend closes. */
void db__writer_stop(struct db *db);
/* db_write.c: st[0..n) as one intent of the writer (db_query_many_shared on SQLite). */
int db__write_many(struct db *db, struct db_stmt *st, int n);
/* db_combine.c: frees the combiner (no call may be running); adds its counts to out. */
void db__combiner_free(struct db *db);
void db__combiner_stats(struct db *db, struct db_write_stats *out);
/* db.c: swaps the calling thread's test fault countdown (db_fault_set) for n, returns the
 * old one: the writer runs each intent with its submitter's countdown. */
long db__fault_exchange(long n);

/* True when name is 1..DB__NAME_MAX characters of [A-Za-z0-9_]. */
bool db__name_ok(const char *name);

int db__sqlite_open(struct db **out, const char *name, const struct db_options *opt);
int db__pg_open(struct db **out, const char *name, const struct db_options *opt);

/* Result builder. A backend creates the rows once it knows the column count, appends a row,
 * then sets its cells (unset cells stay NULL). Returns NULL / ERR_NOMEM on allocation failure. */
struct db_rows *db__rows_new(int ncols);
int db__rows_add_row(struct db_rows *r);
/* Sets column `col` of the last row to a copy of s[0..len) (s == NULL: SQL NULL). */
int db__rows_set(struct db_rows *r, int col, const char *s, size_t len);

#endif
