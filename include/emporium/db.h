/* SPDX-License-Identifier: MIT */
/* db.h — the storage port: one SQL dialect over SQLite and PostgreSQL.
 *
 * A `struct db` is one logical database (users, products, orders_3, …). In embedded mode it is
 * the SQLite file DATA_DIR/<name>.db with one connection per thread that uses it (opened on
 * first use, prepared statements cached per connection). With a PostgreSQL URL it is the
 * database "<base>_<name>" (base = the URL's dbname), reached through a bounded pool of libpq
 * connections that only ever use unnamed statements (PQexecParams), so it works through
 * PgBouncer in transaction mode.
 *
 * SQL written by services uses $1, $2, … parameters in both dialects. Types used in schemas:
 * BIGINT, INTEGER, TEXT, and BOOLEAN-as-INTEGER (0/1). Timestamps are BIGINT Unix ms.
 * Where the dialects really differ (full-text search), a service asks db_dialect().
 *
 * Lifetimes: a connection is leased with db_conn_take() and must be given back with
 * db_conn_give() before the request ends; db_conn_take_in() ties the lease to an arena
 * instead (the request's: http_arena()), so no error path can forget it, and
 * db_query_once() is the take / one statement / give sequence in one call. Connections are
 * not thread-bound: a lease may be given back by another thread than the one that took it
 * (the arena of an offloaded request is freed on the server's thread). Rows returned by db_query() are
 * owned by the caller and freed with db_rows_free(); the strings they hold live as long as
 * the rows. */
#ifndef EMPORIUM_DB_H
#define EMPORIUM_DB_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
struct buf;

struct db;
struct db_conn;
struct db_rows;

enum db_dialect { DB_SQLITE, DB_POSTGRES };

enum db_type { DB_T_NULL, DB_T_INT, DB_T_TEXT };
struct db_val {
    enum db_type t;
    int64_t i;
    const char *s; /* DB_T_TEXT: borrowed for the call */
};
#define DB_INT(x) ((struct db_val){.t = DB_T_INT, .i = (int64_t)(x)})
#define DB_TEXT(x) ((struct db_val){.t = DB_T_TEXT, .s = (x)})
#define DB_NULLV ((struct db_val){.t = DB_T_NULL})

struct db_options {
    const char *url; /* NULL/"" or "sqlite": embedded; "postgres://…" or "postgresql://…" */
    const char *data_dir;    /* embedded: where <name>.db lives */
    int pool_size;           /* postgres: max connections per logical db (default 8) */
    int acquire_timeout_ms;  /* postgres: wait for a free connection (default 5000) */
    int write_batch_max;     /* sqlite: intents per group commit (default 64) */
    int write_batch_wait_us; /* sqlite: wait for more intents under load (default 0) */
    /* postgres: streaming replicas of the primary's cluster, "url,url" (host, port, user and
     * password are taken from each; the database is the primary's "<base>_<name>"). Reads
     * taken with db_conn_take_read() go to one of them when it is up, lags at most
     * replica_max_lag_ms (default 1000) and has replayed this process's last write to that
     * database; else to the primary. */
    const char *replica_urls;
    int replica_max_lag_ms;
    /* postgres: name the statements each connection runs (prepared once per server session,
     * then executed by name: no parsing and, mostly, no planning). Only where a client
     * connection keeps one server session: PostgreSQL directly or PgBouncer's session mode,
     * never its transaction mode. */
    bool prepare;
};

/* Opens (lazily connects) logical database `name`. For PostgreSQL, creates the database
 * if it does not exist. *out is yours to db_close(). */
int db_open(struct db **out, const char *name, const struct db_options *opt);
void db_close(struct db *db); /* NULL is a no-op; closes every connection */
enum db_dialect db_dialect(const struct db *db);
const char *db_name(const struct db *db);
/* Pool gauges for /metrics (postgres: leased and idle connections; sqlite: open ones). */
void db_pool_stats(const struct db *db, int *in_use, int *idle);
/* Cheap liveness check (SELECT 1). 0 when reachable. */
int db_ping(struct db *db);

int db_conn_take(struct db *db, struct db_conn **out); /* ERR_UNAVAILABLE on timeout/down */
void db_conn_give(struct db_conn *c);                  /* NULL is a no-op; rolls back an open tx */
/* A connection for read-only statements: a replica's when one is usable (see
 * db_options.replica_urls), else the primary's, as db_conn_take(). Read-your-writes: a
 * replica is used for database db only once it has replayed everything this process had
 * committed to db when the read began. A replica that turns out to be down on the first
 * statement is marked down and the lease moves to the primary, unseen by the caller. Never
 * write on it (the replica refuses). */
int db_conn_take_read(struct db *db, struct db_conn **out);
/* Replication state for /metrics and tests: n replicas; per replica up (0/1) and lag in ms
 * (-1 when down or unknown); reads sent to replicas and to the primary since start. */
struct db_replica_stats {
    int n;
    int up[4];
    int64_t lag_ms[4];
    uint64_t reads_replica, reads_primary;
};
void db_replica_stats(struct db_replica_stats *out);

struct arena;
/* Like db_conn_take(), but the connection is given back (an open transaction rolled back)
 * when arena `a` is freed; never db_conn_give() it yourself. On failure *out is NULL and
 * nothing is registered (ERR_UNAVAILABLE, or ERR_NOMEM when the cleanup could not be
 * registered — the connection was then given back at once). Take a connection once per
 * request and pass it down, rather than once per query: each take holds one lease. */
int db_conn_take_in(struct arena *a, struct db *db, struct db_conn **out);
/* Takes a connection, runs one statement as db_query() does, gives the connection back.
 * Returns what db_query() returns (or the take's error); *out as with db_query(). */
int db_query_once(struct db *db, const char *sql, int n, const struct db_val *args,
                  struct db_rows **out);

/* Runs one statement with parameters $1..$n. *out (may be NULL when no rows are wanted)
 * receives the result rows. Returns the number of affected rows (>= 0) for INSERT/UPDATE/
 * DELETE, or 0; ERR_CONFLICT on a unique/primary-key violation or a row a CHECK constraint
 * refuses, ERR_BUSY when a lock could not be taken in time, ERR_UNAVAILABLE when the server
 * is unreachable, ERR_INTERNAL otherwise (the message is logged). */
int db_query(struct db_conn *c, const char *sql, int n, const struct db_val *args,
             struct db_rows **out);
/* Several statements sent together: on PostgreSQL in one round trip (libpq pipeline mode,
 * unnamed statements, so it works behind PgBouncer in transaction mode); on SQLite one after
 * another. Each st[i].rc receives what db_query() would return for it (and *st[i].out its
 * rows, when out is not NULL); once one fails, the ones after it are not run and get that
 * error too. With atomic set and no transaction open, the statements form one transaction
 * (on PostgreSQL the pipeline's implicit one: one commit, no BEGIN/COMMIT round trips); a
 * failure then leaves nothing of them. Inside a transaction they are part of it. Without
 * atomic (reads), SQLite runs them without a transaction. Returns 0 or the first error. */
struct db_stmt {
    const char *sql;
    int n;
    const struct db_val *args;
    struct db_rows **out; /* may be NULL */
    int rc;               /* set by db_query_many() */
};
#define DB_STMT_MAX 32 /* statements per db_query_many() call */
int db_query_many(struct db_conn *c, struct db_stmt *st, int n, bool atomic);
/* Runs SQL text with no parameters, possibly several statements (migrations). */
int db_exec_script(struct db_conn *c, const char *sql);

/* Write transactions. On SQLite db_begin takes the write lock at once (BEGIN IMMEDIATE). */
int db_begin(struct db_conn *c);
int db_commit(struct db_conn *c);
int db_rollback(struct db_conn *c); /* safe when no transaction is open */

/* Runs fn(c, ctx) inside one write transaction on a connection of db: commits when fn
 * returns 0; rolls back when it returns > 0 (nothing to change: success, 0 is returned) or
 * < 0 (that error is returned). The whole transaction is retried, with growing jittered
 * sleeps, while it fails with ERR_BUSY (at most 6 attempts). reset (may be NULL) runs before
 * every attempt so fn can forget what a failed attempt collected in ctx. */
typedef int (*db_tx_fn)(struct db_conn *c, void *ctx);
int db_transact(struct db *db, db_tx_fn fn, void (*reset)(void *ctx), void *ctx);

/* Group commit: write intents of many concurrent callers committed together.
 *
 * On SQLite each database has one writer thread (started on first use). It takes the queued
 * intents (at most db_options.write_batch_max, default 64, at a time), runs them in one
 * write transaction, each inside its own SAVEPOINT, and commits once. An intent's outcome is its own: fn returning
 * < 0 rolls back only that intent's savepoint (its neighbours still commit), > 0 means
 * "nothing to change" (success, 0 reported), 0 keeps its writes. An intent failing with
 * ERR_BUSY is run again in a later batch (at most 6 attempts in all). Its completion is
 * reported only once the batch that holds it has committed, i.e. it is exactly as durable
 * as a db_transact() commit (WAL, synchronous=NORMAL: survives a kill -9 of the process).
 * If the batch's transaction itself fails (the commit, or an error that aborts the whole
 * transaction), the intents that wanted to commit get that error, or are run again when it
 * is ERR_BUSY; nothing of theirs is kept.
 *
 * fn may run more than once (a retried batch): reset (may be NULL) runs before every run,
 * as with db_transact(). fn must not call db_write() itself, and should be short: every
 * other intent of the database waits behind it. Writes outside db_write() (db_transact,
 * db_query) still work and are serialised with the batches by the database's write lock.
 *
 * On PostgreSQL (row locks, many connections) db_write() is db_transact() on the calling
 * thread and db_write_submit() runs the intent at once too, before returning. */
struct db_write_req;
typedef void (*db_write_done_fn)(struct db_write_req *w, int rc);
/* An intent for db_write_submit(): caller-owned, untouched by the caller from the submit
 * until its done callback has been called (exactly once, on the writer thread, or on the
 * caller's when the submit fails). Fill fn/reset/ctx/done; the rest is the writer's. */
struct db_write_req {
    db_tx_fn fn;
    void (*reset)(void *ctx);
    void *ctx;
    db_write_done_fn done; /* rc: 0, or the intent's or the batch's error; keep it short */
    /* private to the writer */
    struct db_write_req *next_;
    int attempts_;
    int rc_;
    long fault_;
    char trace_[56]; /* the submitter's trace context (trace.h), current while fn runs */
};
/* Queues w; its done callback reports the outcome. Returns 0 (done will be called) or
 * ERR_UNAVAILABLE when db is NULL or closing (done is not called). */
int db_write_submit(struct db *db, struct db_write_req *w);
/* Queues one intent and waits for its outcome (the blocking form of db_write_submit()). */
int db_write(struct db *db, db_tx_fn fn, void (*reset)(void *ctx), void *ctx);
/* One statement committed as its own transaction (returns what db_query() would), but
 * sharing a commit with others: on SQLite as an intent of the database's group-commit
 * writer, on PostgreSQL through db_query_many_shared() (one round trip, no BEGIN/COMMIT).
 * args are borrowed until it returns. */
int db_write_one(struct db *db, const char *sql, int n, const struct db_val *args);
/* Several statements as one transaction of their own, as db_query_many(c, st, n, true) on a
 * connection of db would run them (st[i].rc and *st[i].out likewise), but committed together
 * with the same calls of other threads (group commit). On PostgreSQL the calls that queue
 * while one batch runs form the next: their statements (DB_STMT_MAX at most in all) go as one
 * pipeline, one implicit transaction, one commit. A call's outcome is still its own: when the
 * combined transaction fails, each of its calls is run again alone (a lost connection gives
 * every call ERR_UNAVAILABLE, as a lone call would: the commit's fate is unknown). Made for
 * writes that normally succeed. On SQLite the call is an intent of the group-commit writer.
 * 1 <= n <= DB_STMT_MAX. Do not hold a connection of db while calling it. */
int db_query_many_shared(struct db *db, struct db_stmt *st, int n);
/* Batches committed and intents run by the writer since the database was opened, and the
 * largest batch (on PostgreSQL the same for db_query_many_shared: combined round trips,
 * calls, the most calls in one); on SQLite also every commit of the file (the writer's and
 * any other connection's) and the WAL frames (pages) they wrote. */
struct db_write_stats {
    uint64_t batches, intents, max_batch;
    uint64_t commits, wal_frames;
};
void db_write_stats(struct db *db, struct db_write_stats *out);

/* PostgreSQL array literals, for set statements over unnest($1::bigint[], $2::text[], …):
 * append one element to b ({1,2} and {"a","b \"c\""}), then db_array_end() closes it
 * ({} when empty) and answers its text (b's, NULL when an append failed: b->err). */
void db_array_int(struct buf *b, int64_t v);
void db_array_text(struct buf *b, const char *v);
const char *db_array_end(struct buf *b);

/* Statements kept for later with copies of their parameters, then run together in one
 * write transaction on db (on PostgreSQL pipelined, DB_STMT_MAX statements a round trip): for
 * a consumer that applies a batch's events at its end (bus_subscribe_flush) — one commit for
 * the batch instead of one per event. sql must outlive the batch (a literal). Safe to share
 * between threads. db_batch_add() runs what is kept first once DB_BATCH_MAX statements are;
 * db_batch_run() empties the batch whatever it returns (on a failure nothing of it is
 * written). */
#define DB_BATCH_MAX 256
struct db_batch;
struct db_batch *db_batch_new(struct db *db); /* NULL: out of memory */
int db_batch_add(struct db_batch *b, const char *sql, int n, const struct db_val *args);
/* Keeps a function for the batch's transaction instead of a statement: fn(c, ctx) runs in its
 * place, in order (it may run again should the transaction be retried). The batch owns ctx:
 * free_ctx(ctx) (NULL: none) once it ran or was dropped, also when this call fails. */
int db_batch_add_fn(struct db_batch *b, db_tx_fn fn, void *ctx, void (*free_ctx)(void *ctx));
/* The ctx of the batch's last kept entry when that entry is the function fn, else NULL: for
 * the one thread that adds to a batch, to fold more work into that entry before it runs
 * (once it ran or was dropped, the entry is gone and this answers NULL). */
void *db_batch_last(struct db_batch *b, db_tx_fn fn);
int db_batch_run(struct db_batch *b);
void db_batch_free(struct db_batch *b); /* drops what was not run; NULL is a no-op */

int db_rows_count(const struct db_rows *r);
int db_rows_cols(const struct db_rows *r);
/* Text of a cell; NULL for SQL NULL. Borrowed until db_rows_free(). */
const char *db_get(const struct db_rows *r, int row, int col);
int64_t db_get_i64(const struct db_rows *r, int row, int col); /* 0 for NULL */
bool db_is_null(const struct db_rows *r, int row, int col);
void db_rows_free(struct db_rows *r); /* NULL is a no-op */

/* The full-text tokenizer of the embedded backend (FTS5's own, e.g. "porter unicode61"), so
 * that an in-memory index cuts and stems text exactly as an FTS5 table with that tokenize=
 * option does. ERR_UNSUPPORTED on PostgreSQL. *out is yours to db_tokenizer_free(); one
 * tokenizer is used by one thread at a time. */
struct db_tokenizer;
int db_tokenizer_new(struct db *db, const char *spec, struct db_tokenizer **out);
void db_tokenizer_free(struct db_tokenizer *t); /* NULL is a no-op */
/* Calls fn(ctx, token, len) for every token of text[0..len) in order; query: cut as a MATCH
 * term (prefix: a prefix term) rather than as a document. Stops with fn's value when it
 * returns non-zero. Tokens are borrowed for the call. */
typedef int (*db_token_fn)(void *ctx, const char *token, int len);
int db_tokenize(struct db_tokenizer *t, const char *text, int len, bool query, bool prefix,
                db_token_fn fn, void *ctx);

/* Versioned migrations: migration i (1-based) is steps[i-1]; applied in order inside a
 * transaction each, recorded in table schema_migrations(version, applied_at). A step may
 * hold several statements. dialect-specific text: pg != NULL overrides sql on PostgreSQL. */
/* On SQLite every "BIGINT PRIMARY KEY" of sql is applied as "INTEGER PRIMARY KEY" (the id
 * becomes the table's rowid: one B-tree instead of two; docs/architecture.md). */
struct db_migration {
    const char *sql;
    const char *pg; /* optional PostgreSQL variant */
    /* Expand/contract (docs/operations.md, "Schema changes"): false (expand, additive) lets
     * a program that knows fewer migrations run on the result; true (contract) does not. */
    bool contract;
};
/* Refuses (ERR_CONFLICT, logged) a database whose schema is newer than n unless the program
 * that applied it marked it readable by programs that know n (schema_compat.min_reader). */
int db_migrate(struct db *db, const struct db_migration *steps, int n);
/* The lowest migration count a program must know to run on this database (0 when every
 * applied migration was an expand), or an error. */
int db_schema_min_reader(struct db *db);
/* Highest applied version (0 when none). */
int db_schema_version(struct db *db);

#endif
